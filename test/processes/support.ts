/**
 * Starts test/processes/opener.ts as a child process and talks to it: every command waits for its own answer, so a
 * test never waits on a timer. The scope's end SIGKILLs whatever is still running.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import type { Answer, Command } from "./opener.js"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

/** A running opener process. */
export interface Opener {
  readonly pid: number
  /** sends `command` and waits for the answer carrying its tag */
  readonly send: (command: Command) => Effect.Effect<Answer>
  /** SIGKILLs the process and waits until it has exited */
  readonly kill: Effect.Effect<void>
}

/** Starts an opener and waits until it has loaded its modules. */
export const startOpener: Effect.Effect<Opener, Error, Scope.Scope> = Effect.gen(function*() {
  const ready = yield* Deferred.make<void, Error>()
  const exited = yield* Deferred.make<void>()
  const answers = new Map<string, Deferred.Deferred<Answer>>()
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "test/processes/opener.ts")], {
        cwd: repoRoot,
        stdio: ["pipe", "pipe", "inherit"]
      })
    ),
    (child) => Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), Deferred.await(exited))
  )
  child.on("exit", () => {
    Deferred.unsafeDone(exited, Effect.void)
    Deferred.unsafeDone(ready, Effect.fail(new Error("the opener exited before it was ready")))
  })
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    const message = JSON.parse(line) as Answer | { readonly ready: true }
    if ("ready" in message) return Deferred.unsafeDone(ready, Effect.void)
    const answer = answers.get(message.tag)
    if (answer !== undefined) Deferred.unsafeDone(answer, Effect.succeed(message))
  })
  yield* Deferred.await(ready)
  return {
    pid: child.pid!,
    send: (command) =>
      Effect.gen(function*() {
        const answer = yield* Deferred.make<Answer>()
        answers.set(command.tag, answer)
        child.stdin!.write(`${JSON.stringify(command)}\n`)
        return yield* Deferred.await(answer)
      }),
    kill: Effect.zipRight(Effect.sync(() => child.kill("SIGKILL")), Deferred.await(exited))
  }
})
