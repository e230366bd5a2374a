/**
 * The parent's side of test/xmpp/gateway.ts: starts it as a child process, reads its protocol lines, asks it for
 * reports, stops it with SIGTERM or kills it with SIGKILL. Closing the scope SIGKILLs a gateway still running.
 */
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

/** What the gateway's `report` says. */
export interface Report {
  readonly produced: number
  readonly byState: Readonly<Record<string, number>>
  readonly retryScheduled: number
  readonly possibleDuplicates: number
  readonly delivered: number
  readonly xmppConnections: number
  readonly xmppDisconnects: number
  readonly xmppConnectFailures: number
  readonly xmppUnacknowledged: number
  readonly xmppAcked: number
}

/** A retry the gateway's outbox scheduled. */
export interface Retry {
  readonly entryId: string
  readonly attempt: number
  readonly error: string
}

/** A running gateway. */
export interface Gateway {
  readonly retries: ReadonlyArray<Retry>
  readonly liveErrors: ReadonlyArray<string>
  readonly stderr: () => string
  readonly producedAll: Effect.Effect<void>
  /** asks for a report and waits for it */
  readonly report: Effect.Effect<Report>
  /** reports until `done` holds, failing with the last report after `within` */
  readonly awaitReport: (done: (r: Report) => boolean, within: Duration.DurationInput) => Effect.Effect<Report, Error>
  /** SIGTERM, and waits for the exit; fails if it does not exit cleanly within 20 s */
  readonly stop: Effect.Effect<void, Error>
  /** SIGKILL, and waits for the exit */
  readonly kill: Effect.Effect<void>
}

/** Starts a gateway with `env` added to this process's environment and waits for its `ready` (60 s deadline). */
export const start = (env: Record<string, string>): Effect.Effect<Gateway, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void, Error>()
    const exited = yield* Deferred.make<number | null>()
    const producedAll = yield* Deferred.make<void>()
    const retries: Array<Retry> = []
    const liveErrors: Array<string> = []
    const reports: Array<Deferred.Deferred<Report>> = []
    let stderr = ""
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["--import", "tsx", path.join(repoRoot, "test/xmpp/gateway.ts")], {
          cwd: repoRoot,
          env: { ...process.env, ...env },
          stdio: ["pipe", "pipe", "pipe"]
        })
      ),
      (child) =>
        Effect.suspend(() => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
          return Deferred.await(exited)
        })
    )
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("exit", (code) => {
      Deferred.unsafeDone(ready, Effect.fail(new Error(`the gateway exited (${code}) before it was ready:\n${stderr}`)))
      Deferred.unsafeDone(exited, Effect.succeed(code))
    })
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      const [word, ...rest] = line.split(" ")
      const json = rest.join(" ")
      if (word === "ready") Deferred.unsafeDone(ready, Effect.void)
      else if (word === "produced-all") Deferred.unsafeDone(producedAll, Effect.void)
      else if (word === "retry") retries.push(JSON.parse(json) as Retry)
      else if (word === "live-error") liveErrors.push(json)
      else if (word === "report") {
        const waiting = reports.shift()
        if (waiting !== undefined) Deferred.unsafeDone(waiting, Effect.succeed(JSON.parse(json) as Report))
      }
    })
    yield* Deferred.await(ready).pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(60),
        onTimeout: () => new Error(`the gateway was not ready within 60 s:\n${stderr}`)
      })
    )
    const report = Effect.gen(function*() {
      const answer = yield* Deferred.make<Report>()
      reports.push(answer)
      child.stdin!.write("report\n")
      return yield* Deferred.await(answer)
    })
    let last: Report | undefined
    return {
      retries,
      liveErrors,
      stderr: () => stderr,
      producedAll: Deferred.await(producedAll),
      report,
      awaitReport: (done, within) =>
        Effect.tap(report, (r) => void (last = r)).pipe(
          Effect.filterOrFail(done, () => new Error("not yet")),
          Effect.retry(Schedule.spaced(Duration.millis(200))),
          Effect.timeoutFail({
            duration: within,
            onTimeout: () => new Error(`the gateway's report never met the condition; last: ${JSON.stringify(last)}`)
          })
        ),
      stop: Effect.suspend(() => {
        child.kill("SIGTERM")
        return Deferred.await(exited).pipe(
          Effect.timeoutFail({
            duration: Duration.seconds(20),
            onTimeout: () => new Error(`the gateway did not stop within 20 s after SIGTERM:\n${stderr}`)
          }),
          Effect.flatMap((code) =>
            code === 0 ? Effect.void : Effect.fail(new Error(`the gateway exited with ${code}:\n${stderr}`))
          )
        )
      }),
      kill: Effect.suspend(() => {
        child.kill("SIGKILL")
        return Effect.asVoid(Deferred.await(exited))
      })
    } satisfies Gateway
  })
