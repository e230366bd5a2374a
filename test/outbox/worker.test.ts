import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import type { Returned, SendContext, SendResult } from "../../src/ChannelAdapter.js"
import type { EntryId, OutboxEntry } from "../../src/Delivery.js"
import { SendError, StoreError } from "../../src/DeliveryError.js"
import * as Metrics from "../../src/Metrics.js"
import { Outbox } from "../../src/Outbox.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import { settle } from "../support/clock.js"
import { queuedEntry } from "../support/entries.js"
import { memoryStoreWith } from "../support/stores.js"
import { answerStyles, outboxLayer, reply, scriptedAdapter, testConfig } from "./harness.js"

const SEC = 1000
const MIN = 60 * SEC
const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
const getRow = (id: EntryId) => Effect.flatMap(OutboxRepo, (r) => r.get(id)).pipe(Effect.map(Option.getOrThrow))

/** Runs `body` with the worker started in its own scope, closed at the end. */
const withWorker = <A, E, R>(config: Parameters<typeof testConfig>[0], body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    yield* Layer.buildWithScope(RecoveryWorker.layer.pipe(Layer.provide(testConfig(config))), scope)
    const result = yield* body
    yield* Scope.close(scope, Exit.void)
    return result
  })

describe("RecoveryWorker", () => {
  // A pass starts each claimed row at once; a row whose adapter answers without suspending completes there, with no
  // fiber of its own. Each style must give the store, the events, the metrics and the pass's report the same thing,
  // with one adapter call per row.
  for (const [style, answer] of answerStyles) {
    it.scoped(`a pass over an adapter answering with ${style}: the same rows, events, metrics and report`, () =>
      Effect.gen(function*() {
        const calls: Array<string> = []
        const adapter = {
          outboundContract: "v2" as const,
          sendFinal: (ctx: SendContext): Returned<SendResult> => {
            calls.push(ctx.text)
            // the third call fails at once: recorded for a retry, as a failure that ran would be
            return calls.length === 3
              ? Effect.fail(new SendError({ message: "HTTP 503", retryable: true }))
              : answer(calls.length)
          }
        }
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          const ids = yield* Effect.forEach(["a", "b", "a", "c"], (to, i) => outbox.enqueue(reply(`${to}${i}`, { to })))
          const events: Array<[string, EntryId]> = []
          const watcher = yield* Effect.fork(
            Stream.runForEach(
              yield* outbox.subscribe,
              (event) =>
                Effect.sync(() => void events.push([event._tag, (event as { readonly entryId: EntryId }).entryId]))
            )
          )
          const deliveredBefore = yield* counter(Metrics.delivered)
          const first = yield* outbox.runRecoveryPass
          const second = yield* outbox.runRecoveryPass
          yield* TestClock.adjust(1)
          yield* Fiber.interrupt(watcher)
          // the heads a0, b1, c3 first, then a2 on its conversation's lane as soon as a0 is delivered, within the
          // first pass; c3 (the third call) fails
          expect(calls).toEqual(["a0", "b1", "c3", "a2"])
          expect(first).toMatchObject({ claimed: 3, delivered: 2, retried: 1, terminal: 0, inFlight: 0 })
          expect(second).toMatchObject({ claimed: 0, delivered: 0, retried: 0, terminal: 0, inFlight: 0 })
          const rows = yield* Effect.forEach(ids, getRow)
          expect(rows.map((r) => r.state)).toEqual(["delivered", "delivered", "delivered", "failed_retryable"])
          expect(rows[3]).toMatchObject({ attemptCount: 1, lastError: "HTTP 503", leaseOwner: null })
          for (const id of ids.slice(0, 3)) {
            expect(events.filter(([, of]) => of === id).map(([tag]) => tag)).toEqual(["sent", "delivered"])
          }
          expect(events.filter(([, of]) => of === ids[3]).map(([tag]) => tag)).toEqual(["retry_scheduled"])
          expect((yield* counter(Metrics.delivered)) - deliveredBefore).toBe(3)
        }).pipe(Effect.provide(outboxLayer({ chat: adapter })))
      }))
  }

  it.effect("a reply enqueued during a slow worker send goes out at once, not when the pass that started that send ends", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter((call) => (call.to === "slow-chat" ? { sleep: 5 * SEC } : { ok: true }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        yield* withWorker(
          {},
          Effect.gen(function*() {
            const slow = yield* outbox.enqueue(reply("slow", { to: "slow-chat" }))
            yield* settle
            expect((yield* chat.calls).map((c) => c.to)).toEqual(["slow-chat"]) // its send is under way
            const quick = yield* outbox.enqueue(reply("quick", { to: "quick-chat" }))
            yield* settle
            // the clock has not moved: the worker claimed the new reply on its wake-up, without waiting for the slow one
            expect((yield* chat.calls).map((c) => c.to)).toEqual(["slow-chat", "quick-chat"])
            expect(yield* Effect.map(getRow(quick), (row) => [row.state, row.deliveredAt])).toEqual(["delivered", 0])
            expect((yield* getRow(slow)).state).toBe("in_flight")
            yield* TestClock.adjust(5 * SEC)
            yield* outbox.awaitIdle
            expect((yield* getRow(slow)).state).toBe("delivered")
          })
        )
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a slow live send, longer than the worker interval, is never sent twice", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ sleep: 3 * SEC }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        yield* withWorker(
          {},
          Effect.gen(function*() {
            const live = yield* Effect.fork(outbox.deliver(reply("slow")))
            for (let i = 0; i < 5; i++) yield* TestClock.adjust(SEC)
            const outcome = yield* Fiber.join(live)
            expect(outcome._tag).toBe("Delivered")
            yield* TestClock.adjust(10 * MIN)
          })
        )
        expect((yield* chat.calls).length).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a send longer than half the lease renews it, so no other owner can take the row", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ sleep: 12 * MIN }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const repo = yield* OutboxRepo
        const live = yield* Effect.fork(outbox.deliver(reply("very slow")))
        yield* TestClock.adjust(11 * MIN)
        const stolen = yield* repo.claim({ owner: "other-node/1", now: 11 * MIN, leaseMs: MIN, limit: 10 })
        expect(stolen.claimed).toEqual([])
        yield* TestClock.adjust(MIN)
        expect((yield* Fiber.join(live))._tag).toBe("Delivered")
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { config: { sendTimeout: Duration.minutes(20) } })))
    }))

  it.effect("lease renewals run only while a delivery runs, live or in the worker: an idle outbox writes nothing", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ sleep: 3 * MIN }, { sleep: 3 * MIN }])
      const writes: Array<number> = []
      const counting = memoryStoreWith((repo) => ({
        write: (ops) =>
          Effect.zipRight(
            Effect.flatMap(Clock.currentTimeMillis, (now) => Effect.sync(() => void writes.push(now))),
            repo.write(ops)
          )
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const live = yield* Effect.fork(outbox.deliver(reply("slow", { to: "a" })))
        yield* TestClock.adjust(3 * MIN) // renewed at 2.5 min; the send ends at 3
        expect((yield* Fiber.join(live))._tag).toBe("Delivered")
        expect(writes).toEqual([0, 150 * SEC, 3 * MIN]) // insert, renewal, ack
        const id = yield* outbox.enqueue(reply("slow too", { to: "b" }))
        const pass = yield* Effect.fork(outbox.runRecoveryPass)
        yield* TestClock.adjust(3 * MIN)
        yield* Fiber.join(pass)
        yield* outbox.awaitIdle
        expect(yield* getRow(id)).toMatchObject({ state: "delivered" })
        expect(writes).toEqual([0, 150 * SEC, 3 * MIN, 3 * MIN, 3 * MIN + 150 * SEC, 6 * MIN])
        // two idle days: no renewal, nothing written
        yield* TestClock.adjust(48 * 60 * MIN)
        expect(writes).toHaveLength(6)
      }).pipe(
        Effect.provide(
          outboxLayer({ chat: chat.adapter }, { store: counting, config: { sendTimeout: Duration.minutes(20) } })
        )
      )
    }))

  it.effect("a worker send longer than half the lease renews it too, so no other owner can take the row", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ sleep: 12 * MIN }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const repo = yield* OutboxRepo
        const id = yield* outbox.enqueue(reply("very slow"))
        const pass = yield* Effect.fork(outbox.runRecoveryPass) // claims the row; its send suspends
        yield* TestClock.adjust(11 * MIN)
        expect((yield* Fiber.join(pass)).inFlight).toBe(1)
        const stolen = yield* repo.claim({ owner: "other-node/1", now: 11 * MIN, leaseMs: MIN, limit: 10 })
        expect(stolen.claimed).toEqual([])
        yield* TestClock.adjust(MIN)
        yield* outbox.awaitIdle
        expect(yield* getRow(id)).toMatchObject({ state: "delivered", attemptCount: 0 })
        expect((yield* chat.calls).length).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { config: { sendTimeout: Duration.minutes(20) } })))
    }))

  it.effect("rows left in flight by a dead boot of this node are recovered at start, counted as possible duplicates", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const crashed: OutboxEntry = queuedEntry({
          channel: "chat",
          state: "in_flight",
          leaseOwner: "test-node/previous-boot",
          leaseExpiresAt: 5 * MIN,
          nextAttemptAt: 5 * MIN,
          lastAttemptAt: 0
        })
        const otherNode = queuedEntry({
          channel: "chat",
          to: "someone-else",
          state: "in_flight",
          leaseOwner: "node-b/boot",
          leaseExpiresAt: 5 * MIN,
          nextAttemptAt: 5 * MIN,
          lastAttemptAt: 0
        })
        yield* repo.insert([crashed, otherNode])
        const duplicatesBefore = yield* counter(Metrics.possibleDuplicates)
        yield* withWorker({}, TestClock.adjust(SEC))
        expect(yield* getRow(crashed.id)).toMatchObject({ state: "delivered" })
        expect((yield* chat.calls).map((c) => c.entryId)).toEqual([crashed.id])
        expect((yield* counter(Metrics.possibleDuplicates)) - duplicatesBefore).toBe(1)
        // another node's lease is left alone until it expires
        expect(yield* getRow(otherNode.id)).toMatchObject({ state: "in_flight", leaseOwner: "node-b/boot" })
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a reclaimed row is asked to reconcile first: sent → delivered without a send; not_sent → replayed", () =>
    Effect.gen(function*() {
      const calls: Array<string> = []
      const adapter = {
        outboundContract: "v2" as const,
        sendFinal: (ctx: { entryId: string }) => {
          calls.push(`send ${ctx.entryId}`)
          return Promise.resolve({ messageId: "m" })
        },
        reconcile: (ctx: { entryId: string }) => {
          calls.push(`reconcile ${ctx.entryId}`)
          return Promise.resolve(ctx.entryId.endsWith("1") ? ("sent" as const) : ("not_sent" as const))
        }
      }
      yield* Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const outbox = yield* Outbox
        const leased = {
          channel: "chat",
          state: "in_flight" as const,
          leaseOwner: "test-node/old",
          leaseExpiresAt: MIN,
          nextAttemptAt: MIN,
          lastAttemptAt: 0
        }
        yield* repo.insert([
          queuedEntry({ id: "R1" as EntryId, to: "a", ...leased }),
          queuedEntry({ id: "R2" as EntryId, to: "b", ...leased })
        ])
        const duplicatesBefore = yield* counter(Metrics.possibleDuplicates)
        yield* outbox.reclaimPreviousBoots
        yield* outbox.runRecoveryPass
        expect(calls).toEqual(["reconcile R1", "reconcile R2", "send R2"])
        expect(yield* getRow("R1" as EntryId)).toMatchObject({ state: "delivered" })
        expect(yield* getRow("R2" as EntryId)).toMatchObject({ state: "delivered" })
        expect((yield* counter(Metrics.possibleDuplicates)) - duplicatesBefore).toBe(0)
      }).pipe(Effect.provide(outboxLayer({ chat: adapter })))
    }))

  it.effect("budget: with 1,000 due rows and 10 ms sends, a pass stops at 75 % of the interval; the rest keep their attempt count", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter(() => ({ sleep: 10 }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        for (let i = 0; i < 1000; i++) yield* outbox.enqueue(reply(`r${i}`, { to: `user-${i}` }))
        const pass = yield* Effect.fork(outbox.runRecoveryPass)
        for (let t = 0; t < 100; t++) yield* TestClock.adjust(10)
        const report = yield* Fiber.join(pass)
        // one slot: a row is claimed only when there is a slot to send it, so nothing is claimed past the budget
        expect(report.claimed).toBe(75)
        const stats = yield* outbox.stats
        expect(stats.byState).toMatchObject({ delivered: 75, queued: 925, in_flight: 0 })
        const waiting = yield* outbox.list({ state: "queued", limit: 1000 })
        expect(waiting.every((e) => e.attemptCount === 0)).toBe(true)
        expect((yield* chat.calls).length).toBe(75)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { config: { workerConcurrency: 1 } })))
    }))

  it.effect("the worker survives a store that fails a pass, counts it, and delivers on the next", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      let claimFailures = 1
      const flakyClaim = memoryStoreWith((repo) => ({
        claim: (options) =>
          claimFailures-- > 0
            ? Effect.fail(new StoreError({ operation: "claim", message: "disk I/O error" }))
            : repo.claim(options)
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const id = yield* outbox.enqueue(reply("eventually"))
        const failuresBefore = yield* counter(Metrics.workerPassFailures)
        yield* withWorker(
          {},
          Effect.gen(function*() {
            yield* TestClock.adjust(0)
            expect((yield* counter(Metrics.workerPassFailures)) - failuresBefore).toBe(1)
            yield* TestClock.adjust(SEC)
          })
        )
        expect(yield* getRow(id)).toMatchObject({ state: "delivered" })
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { store: flakyClaim })))
    }))

  it.effect("closing the scope stops the loop and lets started sends finish; nothing more is claimed", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter(() => ({ sleep: 100 }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        for (let i = 0; i < 10; i++) yield* outbox.enqueue(reply(`r${i}`, { to: `user-${i}` }))
        const scope = yield* Scope.make()
        yield* Layer.buildWithScope(
          RecoveryWorker.layer.pipe(Layer.provide(testConfig({ workerConcurrency: 2 }))),
          scope
        )
        yield* TestClock.adjust(50) // two sends started
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust(100)
        yield* Fiber.join(closing)
        const stats = yield* outbox.stats
        expect(stats.byState).toMatchObject({ delivered: 2, queued: 8, in_flight: 0 })
        expect((yield* chat.calls).length).toBe(2)
        // nothing runs any more
        yield* TestClock.adjust(10 * SEC)
        expect((yield* chat.calls).length).toBe(2)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { config: { workerConcurrency: 2 } })))
    }))
})
