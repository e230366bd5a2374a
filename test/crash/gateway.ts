/**
 * A small gateway for the crash tests, run as a child process and killed with SIGKILL at random moments:
 *
 *   node --import tsx test/crash/gateway.ts <db> <sendlog> <livefile> [seed] [liveWaitMs]
 *
 * (the tests run an esbuild bundle of this file instead: same code, a tenth of the start-up time; see harness.ts).
 *
 * - The store is `SqliteOutboxRepo.layerFile` on `<db>`; the parent process enqueues rows into the same file
 *   through its own connection, and this process's RecoveryWorker drains them.
 * - The live path: `<livefile>` holds one request per line (JSON, each with an idempotencyKey), which this
 *   process `deliver`s, one conversation after another in file order and the conversations in parallel. At start
 *   it skips the requests whose key is already in the table: those rows exist and the worker owns them
 *   (a row left in flight by the killed boot is reclaimed at once, since the node id is fixed).
 * - The only channel, "chat", is a recording adapter: every send appends `entryId partIndex\n` to `<sendlog>`
 *   and fsyncs it before returning, after a seeded random delay of 0–4 ms so kills land before, during and after sends.
 *
 * Protocol on stdout, one line each: `ready` once the layers are up and the worker runs; `live <tag> <entryId>`
 * per live delivery outcome; `live-error <message>` when a live request could not be stored; `live-done` when
 * every request of the file has been handled. Logs go to stderr.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as fs from "node:fs"
import type { AdapterV1, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import type { EntryId } from "../../src/Delivery.js"
import { Outbox } from "../../src/Outbox.js"
import * as Outboxes from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { gatewayConfig, type LiveRequest } from "./protocol.js"

const main = (args: { db: string; sendLog: string; liveFile: string; seed: number; liveWaitMs: number }) => {
  const rng = Random.make(args.seed)
  const log = fs.openSync(args.sendLog, "a")
  const record = (ctx: SendContext) =>
    Effect.gen(function*() {
      const delay = yield* rng.nextIntBetween(0, 5)
      if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
      fs.writeSync(log, `${ctx.entryId} ${ctx.partIndex}\n`)
      fs.fsyncSync(log)
      return { messageId: `${ctx.entryId}/${ctx.partIndex}` }
    })
  const adapter: AdapterV1 = { sendText: record, chunker: null }

  const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

  const liveDriver = Effect.gen(function*() {
    const outbox = yield* Outbox
    const sql = yield* SqlClient.SqlClient
    const text = fs.existsSync(args.liveFile) ? fs.readFileSync(args.liveFile, "utf8") : ""
    const requests = text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as LiveRequest)
    const stored = yield* sql<{ key: string }>`SELECT idempotency_key AS key FROM outbox_entries
      WHERE idempotency_key IS NOT NULL`
    const done = new Set(stored.map((r) => r.key))
    const byConversation = new Map<string, Array<LiveRequest>>()
    for (const r of requests) {
      if (done.has(r.idempotencyKey)) continue
      byConversation.set(r.to, [...(byConversation.get(r.to) ?? []), r])
    }
    const delivered = (id: EntryId) =>
      outbox.get(id).pipe(
        Effect.repeat({
          schedule: Schedule.spaced(Duration.millis(25)),
          until: (row) => Option.isNone(row) || row.value.state === "delivered"
        }),
        Effect.timeout(Duration.millis(args.liveWaitMs)),
        Effect.ignore
      )
    const deliverOne = (request: LiveRequest) =>
      outbox.deliver(request).pipe(
        // only a failed write-ahead insert leaves nothing behind; the key makes the retry safe
        Effect.retry({
          while: (e) => e._tag === "StoreError",
          schedule: Schedule.spaced(Duration.millis(20)),
          times: 100
        }),
        Effect.matchEffect({
          onSuccess: (outcome) =>
            Effect.zipRight(
              say(`live ${outcome._tag} ${outcome.entryId}`),
              // as in a chat, the next reply of a conversation comes once the earlier ones are out; without this
              // pause every later request of a busy conversation would be deferred too, and the live path barely used
              outcome._tag === "Deferred" ? delivered(outcome.entryId) : Effect.void
            ),
          onFailure: (error) =>
            // SendFailed / AckFailed rows are recorded and finished by the worker; anything else is a lost request
            "entryId" in error
              ? say(`live ${error._tag} ${error.entryId}`)
              : say(`live-error ${error._tag}: ${error.message}`)
        })
      )
    yield* Effect.forEach(byConversation.values(), (rs) => Effect.forEach(rs, deliverOne, { discard: true }), {
      concurrency: "unbounded",
      discard: true
    })
    yield* say("live-done")
  })

  const outbox = Outboxes.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      SqliteOutboxRepo.layerFile({ filename: args.db }),
      ChannelRegistry.layer({ chat: adapter }),
      OutboxConfig.layer(gatewayConfig)
    ))
  )
  const app = RecoveryWorker.layer.pipe(Layer.provideMerge(outbox))

  return Effect.zipRight(say("ready"), Effect.zipRight(liveDriver, Effect.never)).pipe(
    Effect.provide(app),
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withLeveledConsole(Logger.logfmtLogger))),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )
}

const [db, sendLog, liveFile, seed, liveWaitMs] = process.argv.slice(2)
if (db === undefined || sendLog === undefined || liveFile === undefined) {
  process.stderr.write("usage: gateway <db> <sendlog> <livefile> [seed] [liveWaitMs]\n")
  process.exit(2)
}
NodeRuntime.runMain(main({ db, sendLog, liveFile, seed: Number(seed ?? 1), liveWaitMs: Number(liveWaitMs ?? 2000) }))
