/**
 * The `effect-outbox` command line: the admin commands and the demo under one root, built with `@effect/cli`.
 * `run(argv)` never fails: it prints a one-line error to stderr and returns the process exit code —
 * 0 ok, 1 a runtime error (missing database, store error, unknown entry…), 2 wrong arguments (with the usage).
 */
import * as Command from "@effect/cli/Command"
import * as ValidationError from "@effect/cli/ValidationError"
import * as FileSystem from "@effect/platform/FileSystem"
import type { Teardown } from "@effect/platform/Runtime"
import * as Cause from "effect/Cause"
import * as ConfigError from "effect/ConfigError"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import { fileURLToPath } from "node:url"
import * as Admin from "./Admin.js"
import * as Demo from "./Demo.js"
import * as Help from "./Help.js"
import * as Logging from "./Logging.js"
import * as Serve from "./Serve.js"
import * as Styles from "./Styles.js"
import { UsageError } from "./UsageError.js"

/** The name the package installs the CLI under. */
export const NAME = Help.NAME

/** Exit codes. */
export const ExitCode = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const

const DESCRIPTION = "durable outbound delivery for chat gateways: inspect and repair an outbox, or run the demo"

const root = Command.make(NAME, {}, () => Effect.fail(new UsageError({ message: "missing command" }))).pipe(
  Command.withDescription(DESCRIPTION),
  Command.withSubcommands([...Admin.commands, Serve.command, Demo.command])
)

/** The list of commands, printed after an argument error that names no command. */
export const usage: string = Help.usageOf(undefined)

const describe = (error: unknown): string => {
  if (ConfigError.isConfigError(error)) return `invalid OUTBOX_* configuration: ${String(error)}`
  const tagged = error as { readonly _tag?: unknown; readonly message?: unknown; readonly operation?: unknown }
  if (tagged._tag === "StoreError") return `store error (${String(tagged.operation)}): ${String(tagged.message)}`
  return typeof tagged.message === "string" && tagged.message !== "" ? tagged.message : String(error)
}

const readVersion = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(fileURLToPath(new URL("../../package.json", import.meta.url)))
  return yield* Schema.decodeUnknown(Schema.parseJson(Schema.Struct({ version: Schema.String })))(text)
}).pipe(
  Effect.map((pkg) => pkg.version),
  Effect.catchAll((e) => Effect.as(Effect.logDebug(`cannot read the package version: ${e.message}`), "unknown"))
)

/**
 * Runs the command line `argv` (as `process.argv`: runtime, script, arguments) and returns the exit code; help and
 * errors are styled only on the streams `styles` allows (by default, those that are terminals).
 */
export const run = (argv: ReadonlyArray<string>, styles: Styles.Styles = Styles.fromProcess()) => {
  const request = Help.check(argv.slice(2))
  const usageError = (message: string) =>
    Effect.as(Console.error(`${NAME}: ${message}\n\n${Help.usageOf(request.command)}`), ExitCode.usage)
  return Effect.gen(function*() {
    const version = yield* readVersion
    if (request._tag === "Help") {
      yield* Console.log(
        request.command === undefined ? Help.topHelp(version, DESCRIPTION) : Help.commandHelp(request.command)
      )
      return ExitCode.ok as number
    }
    if (request._tag === "Invalid") return yield* Effect.fail(new UsageError({ message: request.message }))
    // @effect/cli prints its own argument errors before failing with them; they are kept here and printed in the
    // CLI's form instead (prefixed, with the command's usage)
    const printed: Array<string> = []
    yield* Command.run(root, { name: NAME, version, executable: NAME })([...argv.slice(0, 2), ...request.args]).pipe(
      (effect) =>
        Console.consoleWith((base) =>
          Console.withConsole(effect, {
            ...base,
            error: (...args) => Effect.sync(() => void printed.push(args.map(String).join(" ")))
          })
        ),
      Effect.mapError((error) =>
        ValidationError.isValidationError(error)
          ? new UsageError({
            message: Styles.stripStyles(printed.join("\n")).trim().replace(/\s*\n\s*/g, "; ") || "invalid arguments"
          })
          : error
      )
    )
    return ExitCode.ok as number
  }).pipe(
    Effect.catchAll((error) => {
      if (error instanceof UsageError) return usageError(error.message)
      return Effect.as(Console.error(`${NAME}: ${describe(error)}`), ExitCode.failure)
    }),
    Effect.catchAllDefect((defect) =>
      Effect.as(Console.error(`${NAME}: unexpected error: ${describe(defect)}`), ExitCode.failure)
    ),
    Styles.within(styles),
    Effect.provide(Logging.layer())
  )
}

/** The process exit code of `run`'s exit (interrupted by a signal: 130). */
export const teardown: Teardown = (exit, onExit) =>
  onExit(
    Exit.isSuccess(exit) && typeof exit.value === "number"
      ? exit.value
      : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
      ? ExitCode.interrupted
      : ExitCode.failure
  )
