/** The `effect-outbox` process: runs the command line on Node and exits with its code (see `Cli.run`). */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Cli from "./Cli.js"

// a reader that stops early (`effect-outbox list | head`) closes the pipe: what is left to print goes nowhere and
// the command finishes as usual, instead of Node's unhandled 'error' event ending it with a stack trace
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") return
    throw error
  })
}

Cli.run(process.argv).pipe(
  Effect.provide(NodeContext.layer),
  // every error is printed by Cli.run as one line and logs go to stderr (Logging), so runMain adds neither its
  // error report nor its pretty logger (which writes to stdout); the teardown turns the result into the exit code
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true, teardown: Cli.teardown })
)
