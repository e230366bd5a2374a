/**
 * The gateway of the real-server test, run as a child process (`node --import tsx test/xmpp/gateway.ts`): an outbox
 * on a SQLite file (`OUTBOX_DB`) with a RecoveryWorker, and the XMPP channel registered exactly as the README's
 * example does it (`examples/xmpp.ts`, its account from `XMPP_*`). It answers `GATEWAY_CONVERSATIONS` conversations
 * with `GATEWAY_MESSAGES` replies in all, sent to `GATEWAY_TO`, each conversation one reply after the other (as an
 * agent answers a chat) every `GATEWAY_PACE_MS`; a thread per conversation. Every reply has an idempotency key
 * (`c<conversation>-<n>`), so a restarted gateway runs the same script: the replies already stored come back
 * `Duplicate` at once and only the rest are produced.
 *
 * Stdout, one line each: `ready`; `retry {entryId, attempt, error}` per retry the outbox schedules (from
 * `outbox.events`); `live-error <message>` when a reply could not be stored (the test expects none);
 * `produced-all`; and `report {…}` (metrics and counts by state) for each `report` line read from stdin.
 * Logs (warnings and errors) go to stderr.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Runtime from "effect/Runtime"
import * as Stream from "effect/Stream"
import * as readline from "node:readline"
import { XmppChannels } from "../../examples/xmpp.js"
import * as XmppChannel from "../../src/channels/Xmpp.js"
import * as Metrics from "../../src/Metrics.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const db = env("OUTBOX_DB")
const to = env("GATEWAY_TO")
const messages = Number(env("GATEWAY_MESSAGES"))
const conversations = Number(env("GATEWAY_CONVERSATIONS"))
const pace = Duration.millis(Number(env("GATEWAY_PACE_MS")))

/** The outbox of every boot: a fixed node id (a restart reclaims the killed boot's rows at once), quick retries. */
const config = OutboxConfig.layer({
  nodeId: "xmpp-gateway",
  workerInterval: "200 millis",
  retryDelays: ["250 millis", "500 millis", "1 second", "2 seconds"],
  retryJitter: false,
  maxAttempts: 50,
  sendTimeout: "10 seconds",
  shutdownGrace: "2 seconds"
})

const app = Outbox.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(SqliteOutboxRepo.layerFile({ filename: db }), XmppChannels, config))
)

const say = (line: string) => Effect.sync(() => void process.stdout.write(`${line}\n`))

const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

let produced = 0

const report = Effect.gen(function*() {
  const outbox = yield* Outbox.Outbox
  const stats = yield* outbox.stats
  const xmpp = XmppChannel.metrics
  return {
    produced,
    byState: stats.byState,
    retryScheduled: yield* counter(Metrics.retryScheduled),
    possibleDuplicates: yield* counter(Metrics.possibleDuplicates),
    delivered: yield* counter(Metrics.delivered),
    xmppConnections: yield* counter(xmpp.connections("default")),
    xmppDisconnects: yield* counter(xmpp.disconnects("default")),
    xmppConnectFailures: yield* counter(xmpp.connectFailures("default")),
    xmppUnacknowledged: yield* counter(xmpp.unacknowledged("default")),
    xmppAcked: yield* counter(xmpp.acked("default"))
  }
})

/** One conversation's replies, in order, each after the previous one was handed to the outbox. */
const converse = (c: number) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    for (let n = c; n < messages; n += conversations) {
      const outcome = yield* outbox.deliver({
        channel: "xmpp",
        to,
        threadId: `conv-${c}`,
        idempotencyKey: `c${c}-${n}`,
        payloads: [{ text: `reply ${n} in conversation ${c}` }]
      }).pipe(
        Effect.map((outcome) => outcome._tag),
        // stored in each of these cases: the worker retries the row
        Effect.catchTags({
          SendFailed: () => Effect.succeed("SendFailed"),
          PartialDeliveryFailure: () => Effect.succeed("PartialDeliveryFailure"),
          AckFailed: () => Effect.succeed("AckFailed")
        }),
        Effect.catchAll((error) => Effect.as(say(`live-error ${error._tag}: ${error.message}`), "error"))
      )
      if (outcome === "Duplicate") continue
      produced++
      yield* Effect.sleep(pace)
    }
  })

const main = Effect.gen(function*() {
  const outbox = yield* Outbox.Outbox
  yield* outbox.events.pipe(
    Stream.runForEach((event) =>
      event._tag === "retry_scheduled"
        ? say(`retry ${JSON.stringify({ entryId: event.entryId, attempt: event.attemptCount, error: event.error })}`)
        : Effect.void
    ),
    Effect.forkScoped
  )
  // the worker starts once events are watched, so its first retries are seen too
  yield* Effect.yieldNow()
  yield* Layer.build(RecoveryWorker.layer)
  const runtime = yield* Effect.runtime<Outbox.Outbox>()
  readline.createInterface({ input: process.stdin }).on("line", (line) => {
    if (line.trim() === "report") {
      Runtime.runFork(runtime)(Effect.flatMap(report, (r) => say(`report ${JSON.stringify(r)}`)))
    }
  })
  yield* say("ready")
  yield* Effect.forEach(Array.from({ length: conversations }, (_, c) => c), converse, {
    concurrency: "unbounded",
    discard: true
  })
  yield* say("produced-all")
  yield* Effect.never
})

main.pipe(
  Effect.scoped,
  Effect.provide(app),
  Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withLeveledConsole(Logger.logfmtLogger))),
  Logger.withMinimumLogLevel(LogLevel.Warning),
  NodeRuntime.runMain
)
