import { describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type { EntryId } from "../../src/Delivery.js"
import * as Metrics from "../../src/Metrics.js"
import { Outbox } from "../../src/Outbox.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { tempDatabases } from "../support/files.js"
import { outboxLayer, reply, scriptedAdapter } from "./harness.js"

const { fresh: freshFile } = tempDatabases("pipeline")
const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)

describe("Outbox on a SQLite file", () => {
  it.effect("delivers live, retries through the worker, and the rows say so", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter((
        call
      ) => (call.to === "flaky" && call.attempt === 1 ? { status: 502 } : { ok: true }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const results = yield* Effect.forEach(
          ["a", "b", "flaky", "c"],
          (to) => Effect.either(outbox.deliver(reply(`hi ${to}`, { to }))),
          { concurrency: "unbounded" }
        )
        expect(results.map((r) => r._tag)).toEqual(["Right", "Right", "Left", "Right"])
        expect((yield* outbox.stats).byState).toMatchObject({ delivered: 3, failed_retryable: 1 })
        yield* TestClock.setTime(5_000)
        const report = yield* outbox.runRecoveryPass
        expect(report).toMatchObject({ claimed: 1, delivered: 1 })
        const flaky = yield* outbox.list({ channel: "chat", limit: 10 }).pipe(
          Effect.map((es) => es.find((e) => e.to === "flaky")!)
        )
        expect(flaky).toMatchObject({ state: "delivered", attemptCount: 1, lastError: "HTTP 502" })
        expect((yield* chat.calls).filter((c) => c.to === "flaky").map((c) => c.attempt)).toEqual([1, 2])
      }).pipe(
        Effect.provide(
          outboxLayer({ chat: chat.adapter }, { store: SqliteOutboxRepo.layerFile({ filename: freshFile() }) })
        )
      )
    }))

  it.effect("with jitter on (the default), a retry time is stored as whole milliseconds and the retry happens", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ status: 503 }, { status: 503 }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver(reply("jittered")))
        expect(error._tag).toBe("SendFailed")
        const failed = error as unknown as { entryId: EntryId; willRetryAt: number }
        expect(Number.isInteger(failed.willRetryAt)).toBe(true)
        // ±20 % around 5 s
        expect(failed.willRetryAt).toBeGreaterThanOrEqual(4_000)
        expect(failed.willRetryAt).toBeLessThanOrEqual(6_000)
        yield* TestClock.setTime(failed.willRetryAt)
        yield* outbox.runRecoveryPass
        const row = yield* outbox.get(failed.entryId).pipe(Effect.map(Option.getOrThrow))
        expect(row).toMatchObject({ state: "failed_retryable", attemptCount: 2 })
        expect(Number.isInteger(row.nextAttemptAt)).toBe(true)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, {
        store: SqliteOutboxRepo.layerFile({ filename: freshFile() }),
        config: { retryJitter: true }
      })))
    }))

  it.live("an ack blocked by another connection's write lock: AckFailed, counted, never delivered until written; then written without a re-send", () =>
    Effect.gen(function*() {
      const filename = freshFile()
      const locker = { db: null as Database.Database | null }
      const chat = yield* scriptedAdapter([{
        run: () =>
          Effect.sync(() => {
            // a second connection takes the write lock while the message is on its way
            locker.db = new Database(filename)
            locker.db.exec("BEGIN IMMEDIATE")
            return { messageId: "m-1" }
          })
      }])
      const store = SqliteOutboxRepo.layerFile({ filename, busyTimeoutMs: 50 })
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const repo = yield* OutboxRepo
        const ackFailuresBefore = yield* counter(Metrics.ackFailures)
        const deliveredBefore = yield* counter(Metrics.delivered)
        const error = yield* Effect.flip(outbox.deliver(reply("hello")))
        expect(error._tag).toBe("AckFailed")
        expect(error.message).toMatch(/database is locked/)
        expect((yield* counter(Metrics.ackFailures)) - ackFailuresBefore).toBe(1)
        expect((yield* counter(Metrics.delivered)) - deliveredBefore).toBe(0)
        // the worker keeps going while the lock is held
        const blocked = yield* Effect.either(outbox.runRecoveryPass)
        expect(blocked._tag).toBe("Left")
        locker.db!.exec("COMMIT")
        locker.db!.close()
        const report = yield* outbox.runRecoveryPass
        expect(report.acksFlushed).toBe(1)
        const row = yield* repo.get((error as unknown as { entryId: EntryId }).entryId).pipe(
          Effect.map(Option.getOrThrow)
        )
        expect(row.state).toBe("delivered")
        expect((yield* chat.calls).length).toBe(1)
        expect((yield* counter(Metrics.delivered)) - deliveredBefore).toBe(1)
      }).pipe(
        Effect.provide(outboxLayer({ chat: chat.adapter }, {
          store,
          config: { ackRetries: 2, ackRetryBase: Duration.millis(5) }
        }))
      )
    }))
})
