/**
 * Busy database: a second process (test/faults/locker.ts) with its own connection takes SQLite's write lock with
 * `BEGIN IMMEDIATE` right when a live ack, a worker's ack, or the worker's claim pass needs it, and holds it until
 * the test has seen the outcome — far past the store's busy_timeout (100 ms). Real processes and a real lock, so
 * real time; every wait is for an outcome (bounded by WAIT), none races a timer.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { AdapterV1, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import type { EntryId } from "../../src/Delivery.js"
import { SendError } from "../../src/DeliveryError.js"
import * as Metrics from "../../src/Metrics.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { startLocker } from "./locker.js"

const WAIT = Duration.seconds(10)
const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
const request = (to: string, text: string) => ({ channel: "chat", to, payloads: [{ text }] })

/**
 * Runs `body` with an outbox and its worker over a fresh SQLite file (busy_timeout 100 ms) and a locker process on
 * the same file. The adapter records every call; a text starting with "lock" has the locker take the write lock
 * before the send returns, and "fail once" fails its first attempt with a 503.
 */
const withBusyOutbox = <A, E>(
  body: (env: {
    readonly outbox: Outbox.OutboxShape
    readonly locker: Effect.Effect.Success<ReturnType<typeof startLocker>>
    readonly calls: ReadonlyArray<{ readonly entryId: string; readonly ok: boolean }>
  }) => Effect.Effect<A, E, Outbox.Outbox>
) =>
  Effect.gen(function*() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-busy-"))
    const filename = path.join(dir, "outbox.db")
    const calls: Array<{ entryId: string; ok: boolean }> = []
    const hooks: { lock: Effect.Effect<void> } = { lock: Effect.void }
    const send = (ctx: SendContext) =>
      Effect.gen(function*() {
        if (ctx.text.startsWith("lock")) yield* hooks.lock
        const ok = !(ctx.text === "fail once" && ctx.attempt === 1)
        calls.push({ entryId: ctx.entryId, ok })
        if (!ok) return yield* Effect.fail(new SendError({ message: "HTTP 503", retryable: true, status: 503 }))
        return { messageId: `m-${calls.length}` }
      })
    const adapter: AdapterV1 = { sendText: send }
    const layer = RecoveryWorker.layer.pipe(Layer.provideMerge(Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
      SqliteOutboxRepo.layerFile({ filename, busyTimeoutMs: 100 }),
      ChannelRegistry.layer({ chat: adapter }),
      OutboxConfig.layer({
        nodeId: "busy-test",
        retryJitter: false,
        retryDelays: [Duration.millis(300)],
        workerInterval: Duration.millis(50),
        ackRetries: 2,
        ackRetryBase: Duration.millis(20)
      })
    )))))
    return yield* Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const locker = yield* startLocker(filename)
      hooks.lock = locker.lock
      return yield* body({ outbox, locker, calls })
    }).pipe(
      Effect.provide(layer),
      Effect.scoped,
      // the worker logs every failed pass and ack; the assertions below say what matters
      Logger.withMinimumLogLevel(LogLevel.None),
      Effect.ensuring(Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true })))
    )
  })

const stateOf = (id: EntryId) =>
  Effect.flatMap(Outbox.Outbox, (o) => o.get(id)).pipe(Effect.map(Option.map((e) => e.state)))

const waitDelivered = (ids: ReadonlyArray<EntryId>) =>
  Effect.forEach(ids, stateOf).pipe(
    Effect.repeat({
      schedule: Schedule.spaced(Duration.millis(25)),
      until: (states) => states.every((s) => Option.getOrNull(s) === "delivered")
    }),
    Effect.timeoutFail({ duration: WAIT, onTimeout: () => new Error(`not delivered: ${ids.join(", ")}`) })
  )

/** Waits until the worker has failed a pass since `before` (it tried to write while the lock was held). */
const passFailedSince = (before: number) =>
  counter(Metrics.workerPassFailures).pipe(
    Effect.repeat({ schedule: Schedule.spaced(Duration.millis(10)), until: (n) => n > before }),
    Effect.timeoutFail({ duration: WAIT, onTimeout: () => new Error("no worker pass met the lock") })
  )

/** After everything: each row delivered, and sent successfully exactly once. */
const expectAllDeliveredOnce = (
  outbox: Outbox.OutboxShape,
  calls: ReadonlyArray<{ entryId: string; ok: boolean }>,
  rows: number
) =>
  Effect.gen(function*() {
    const all = yield* outbox.list({ limit: 100 })
    expect(all).toHaveLength(rows)
    expect(all.map((e) => e.state)).toEqual(all.map(() => "delivered"))
    expect(calls.filter((c) => c.ok).map((c) => c.entryId).sort()).toEqual(all.map((e) => e.id).sort())
  })

describe("a database kept busy by another process", () => {
  it.live(
    "a live ack meets the lock: AckFailed, counted, not delivered until written; the worker writes it, no second send",
    () =>
      withBusyOutbox(({ calls, locker, outbox }) =>
        Effect.gen(function*() {
          expect((yield* outbox.deliver(request("u0", "before the lock")))._tag).toBe("Delivered")
          const acksFailed = yield* counter(Metrics.ackFailures)
          const delivered = yield* counter(Metrics.delivered)
          const passFailures = yield* counter(Metrics.workerPassFailures)

          const error = yield* Effect.flip(outbox.deliver(request("u1", "lock while this goes out")))
          if (error._tag !== "AckFailed") return expect.fail(`expected AckFailed, got ${error._tag}: ${error.message}`)
          expect(error.message).toMatch(/database is locked/)
          const id = error.entryId as EntryId
          expect((yield* counter(Metrics.ackFailures)) - acksFailed).toBe(1)
          expect((yield* counter(Metrics.delivered)) - delivered).toBe(0) // sent, but not counted while not written
          expect(yield* stateOf(id)).toEqual(Option.some("in_flight"))
          // a request that cannot even be stored is refused before anything is sent: the caller knows, nothing is lost
          const refused = yield* Effect.flip(outbox.deliver(request("u2", "while locked")))
          expect(refused._tag).toBe("StoreError")
          expect(calls).toHaveLength(2)

          yield* passFailedSince(passFailures) // the worker tried meanwhile: its pass failed, and it goes on
          expect((yield* counter(Metrics.delivered)) - delivered).toBe(0)
          yield* locker.release
          yield* waitDelivered([id])
          // the worker counts the row right after its ack commits: a poll of the row can see it a moment before
          yield* counter(Metrics.delivered).pipe(
            Effect.repeat({ schedule: Schedule.spaced(Duration.millis(10)), until: (n) => n > delivered }),
            Effect.timeoutFail({ duration: WAIT, onTimeout: () => new Error("the written ack was never counted") })
          )
          expect((yield* counter(Metrics.delivered)) - delivered).toBe(1)
          yield* expectAllDeliveredOnce(outbox, calls, 2) // the refused request left no row
        })
      ),
    30_000
  )

  it.live(
    "a worker ack meets the lock: kept and counted, the row stays in flight, written after; no second send",
    () =>
      withBusyOutbox(({ calls, locker, outbox }) =>
        Effect.gen(function*() {
          const acksFailed = yield* counter(Metrics.ackFailures)
          const passFailures = yield* counter(Metrics.workerPassFailures)
          const ids = yield* Effect.forEach(
            [request("w1", "first"), request("w2", "lock during the batch"), request("w3", "third")],
            outbox.enqueue,
            { concurrency: "unbounded" }
          )
          // each worker send acks itself: a row sent while the lock is held cannot be acked, a row acked before the
          // lock is delivered. Once the sends and their ack retries are over, every row still in flight is an ack that
          // failed and was counted, and none is counted delivered.
          const probe = Effect.gen(function*() {
            const states = (yield* Effect.forEach(ids, stateOf)).map(Option.getOrNull)
            const failed = (yield* counter(Metrics.ackFailures)) - acksFailed
            return { states, failed, inFlight: states.filter((s) => s === "in_flight").length }
          })
          yield* probe.pipe(
            Effect.repeat({
              schedule: Schedule.spaced(Duration.millis(10)),
              until: (r) => calls.length === 3 && r.failed >= 1 && r.failed === r.inFlight
            }),
            Effect.timeoutFail({ duration: WAIT, onTimeout: () => new Error("no worker ack failed") })
          )
          const { states } = yield* probe
          expect(states.every((s) => s === "in_flight" || s === "delivered")).toBe(true)
          expect(states[1]).toBe("in_flight") // the one whose send took the lock
          expect(calls).toHaveLength(3)

          yield* passFailedSince(passFailures)
          yield* locker.release
          yield* waitDelivered(ids)
          // the worker is alive: a row enqueued now is delivered too
          yield* waitDelivered([yield* outbox.enqueue(request("w4", "after the lock"))])
          yield* expectAllDeliveredOnce(outbox, calls, 4)
        })
      ),
    30_000
  )

  it.live(
    "the worker's claim pass meets the lock while a retry falls due: nothing sent meanwhile, delivered once released",
    () =>
      withBusyOutbox(({ calls, locker, outbox }) =>
        Effect.gen(function*() {
          const failed = yield* Effect.flip(outbox.deliver(request("r1", "fail once")))
          if (failed._tag !== "SendFailed") return expect.fail(`expected SendFailed, got ${failed._tag}`)
          expect(failed.willRetryAt).toBeDefined()
          const passFailures = yield* counter(Metrics.workerPassFailures)
          yield* locker.lock
          // past the retry time (300 ms), the row is due, but no pass can write its claim
          yield* Effect.sleep(Duration.millis(800))
          yield* passFailedSince(passFailures)
          expect(yield* stateOf(failed.entryId as EntryId)).toEqual(Option.some("failed_retryable"))
          expect(calls).toHaveLength(1)
          yield* locker.release
          yield* waitDelivered([failed.entryId as EntryId])
          expect(calls.map((c) => c.ok)).toEqual([false, true])
          yield* expectAllDeliveredOnce(outbox, calls, 1)
        })
      ),
    30_000
  )
})
