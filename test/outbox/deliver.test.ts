import { describe, expect, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import type { Returned, SendResult } from "../../src/ChannelAdapter.js"
import type { EntryId } from "../../src/Delivery.js"
import { SendError, StoreError } from "../../src/DeliveryError.js"
import * as Metrics from "../../src/Metrics.js"
import { Outbox, type OutboxEvent } from "../../src/Outbox.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import { isAck, memoryStoreWith } from "../support/stores.js"
import { answerStyles, outboxLayer, reply, scriptedAdapter } from "./harness.js"

const SEC = 1000
const MIN = 60 * SEC

const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)

const entryIdOf = (error: unknown): EntryId => (error as { entryId: EntryId }).entryId

const getRow = (id: EntryId) => Effect.flatMap(OutboxRepo, (r) => r.get(id)).pipe(Effect.map(Option.getOrThrow))

describe("Outbox.deliver", () => {
  it.effect("writes the row ahead of the send: the adapter sees it in flight, leased to this process", () =>
    Effect.gen(function*() {
      let seen: unknown = null
      const chat = yield* scriptedAdapter([{
        run: (ctx) =>
          Effect.gen(function*() {
            const row = yield* Effect.flatMap(OutboxRepo, (r) => r.get(ctx.entryId as EntryId))
            seen = Option.map(row, (r) => ({ state: r.state, leaseOwner: r.leaseOwner }))
            return { messageId: "m-1" }
          }).pipe(Effect.provide(layerRef.current!), Effect.orDie)
      }])
      const layer = outboxLayer({ chat: chat.adapter })
      const layerRef: { current: Layer.Layer<OutboxRepo> | null } = { current: null }
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const repo = yield* OutboxRepo
        layerRef.current = Layer.succeed(OutboxRepo, repo)
        yield* TestClock.setTime(1000)
        const outcome = yield* outbox.deliver(reply("hello"))
        expect(outcome._tag).toBe("Delivered")
        expect(seen).toEqual(Option.some({ state: "in_flight", leaseOwner: outbox.owner }))
        const row = yield* repo.get(outcome.entryId).pipe(Effect.map(Option.getOrThrow))
        expect(row).toMatchObject({
          state: "delivered",
          deliveredAt: 1000,
          attemptCount: 0,
          partsDelivered: 1,
          leaseOwner: null
        })
      }).pipe(Effect.provide(layer))
    }))

  it.effect("nothing is sent when the write-ahead insert fails; the caller gets StoreError", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      const failingInsert = memoryStoreWith((repo) => ({
        write: (ops) =>
          ops.some((op) => op._tag === "Insert")
            ? Effect.fail(new StoreError({ operation: "write", message: "disk I/O error" }))
            : repo.write(ops)
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver(reply("hello")))
        expect(error).toMatchObject({ _tag: "StoreError", message: "disk I/O error" })
        expect(yield* chat.calls).toEqual([])
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { store: failingInsert })))
    }))

  it.effect("bad input and unknown channels fail before anything is stored or sent", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const invalid = yield* Effect.flip(outbox.deliver({ channel: "chat", to: "u", payloads: [] }))
        expect(invalid).toMatchObject({ _tag: "InvalidRequest" })
        expect(invalid.message).toMatch(/payloads/)
        const unknown = yield* Effect.flip(outbox.deliver({ ...reply("x"), channel: "fax" }))
        expect(unknown).toMatchObject({ _tag: "UnknownChannel", channel: "fax" })
        expect((yield* outbox.stats).total).toBe(0)
        expect(yield* chat.calls).toEqual([])
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("retries at exactly the schedule's delays (not before), and the 5th failure is terminal max_attempts", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter(() => ({ status: 500 }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver(reply("hello")))
        expect(error).toMatchObject({ _tag: "SendFailed", retryable: true, willRetryAt: 5 * SEC })
        const id = error._tag === "SendFailed" ? (error.entryId as EntryId) : ("" as EntryId)
        let now = 0
        for (const delay of [5 * SEC, 25 * SEC, 2 * MIN, 10 * MIN]) {
          const callsBefore = (yield* chat.calls).length
          yield* TestClock.setTime(now + delay - 1)
          yield* outbox.runRecoveryPass
          expect((yield* chat.calls).length).toBe(callsBefore)
          now += delay
          yield* TestClock.setTime(now)
          yield* outbox.runRecoveryPass
          expect((yield* chat.calls).length).toBe(callsBefore + 1)
        }
        const row = yield* getRow(id)
        expect(row).toMatchObject({
          state: "failed_terminal",
          terminalReason: "max_attempts",
          attemptCount: 5,
          lastError: "HTTP 500"
        })
        expect((yield* chat.calls).map((c) => c.attempt)).toEqual([1, 2, 3, 4, 5])
        yield* TestClock.adjust(60 * MIN)
        yield* outbox.runRecoveryPass
        expect((yield* chat.calls).length).toBe(5)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { config: { maxAge: Duration.minutes(120) } })))
    }))

  it.effect("a permanent error pattern goes terminal after one attempt", () =>
    Effect.gen(function*() {
      // a plain Error from a plugin: the core's classifier recognises the permanent message
      const chat = yield* scriptedAdapter([{ reject: new Error("Forbidden: bot was blocked by the user") }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const terminalBefore = yield* counter(Metrics.terminal("permanent_error"))
        const error = yield* Effect.flip(outbox.deliver(reply("hello")))
        expect(error).toMatchObject({ _tag: "SendFailed", retryable: false })
        expect(error).not.toHaveProperty("willRetryAt")
        const row = yield* getRow(entryIdOf(error))
        expect(row).toMatchObject({ state: "failed_terminal", terminalReason: "permanent_error", attemptCount: 1 })
        expect((yield* counter(Metrics.terminal("permanent_error"))) - terminalBefore).toBe(1)
        yield* TestClock.adjust(20 * MIN)
        yield* outbox.runRecoveryPass
        expect((yield* chat.calls).length).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("429 with retry-after: the channel's delay is honoured and no attempt is used up", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ status: 429, retryAfterMs: 42 * SEC }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver(reply("hello")))
        expect(error).toMatchObject({
          _tag: "SendFailed",
          retryable: true,
          retryAfterMs: 42 * SEC,
          willRetryAt: 42 * SEC
        })
        const id = entryIdOf(error)
        expect(yield* getRow(id)).toMatchObject({ state: "failed_retryable", attemptCount: 0, nextAttemptAt: 42 * SEC })
        yield* TestClock.setTime(42 * SEC - 1)
        yield* outbox.runRecoveryPass
        expect((yield* chat.calls).length).toBe(1)
        yield* TestClock.setTime(42 * SEC)
        yield* outbox.runRecoveryPass
        expect(yield* getRow(id)).toMatchObject({ state: "delivered", attemptCount: 0 })
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("best effort: a failing part does not stop the others, the row is not acked, the retry sends only what is missing", () =>
    Effect.gen(function*() {
      // parts: text, media a, media b — media b fails once
      const chat = yield* scriptedAdapter([{ ok: true }, { ok: true }, { status: 503 }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver({
          channel: "chat",
          to: "user-1",
          bestEffort: true,
          payloads: [{ text: "see attached" }, { mediaUrls: ["https://x.test/a.png", "https://x.test/b.png"] }]
        }))
        expect(error).toMatchObject({
          _tag: "PartialDeliveryFailure",
          partsDelivered: 2,
          partsFailed: 1,
          willRetryAt: 5 * SEC
        })
        const id = entryIdOf(error)
        expect(yield* getRow(id)).toMatchObject({ state: "failed_retryable", partsDelivered: 2, attemptCount: 1 })
        yield* TestClock.setTime(5 * SEC)
        yield* outbox.runRecoveryPass
        const calls = yield* chat.calls
        expect(calls.map((c) => [c.method, c.mediaUrl ?? c.text])).toEqual([
          ["sendText", "see attached"],
          ["sendMedia", "https://x.test/a.png"],
          ["sendMedia", "https://x.test/b.png"],
          ["sendMedia", "https://x.test/b.png"]
        ])
        expect(yield* getRow(id)).toMatchObject({ state: "delivered", partsDelivered: 3 })
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("best effort: parts that went out after a failed one are not sent again by the retry", () =>
    Effect.gen(function*() {
      // parts: text, media a (fails once), media b
      const chat = yield* scriptedAdapter([{ ok: true }, { status: 503 }, { ok: true }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver({
          channel: "chat",
          to: "user-1",
          bestEffort: true,
          payloads: [{ text: "see attached" }, { mediaUrls: ["https://x.test/a.png", "https://x.test/b.png"] }]
        }))
        expect(error).toMatchObject({
          _tag: "PartialDeliveryFailure",
          partsDelivered: 1,
          deliveredParts: [2],
          partsFailed: 1
        })
        const id = entryIdOf(error)
        expect(yield* getRow(id)).toMatchObject({ state: "failed_retryable", partsDelivered: 1, deliveredParts: [2] })
        yield* TestClock.setTime(5 * SEC)
        yield* outbox.runRecoveryPass
        expect((yield* chat.calls).map((c) => c.mediaUrl ?? c.text)).toEqual([
          "see attached",
          "https://x.test/a.png",
          "https://x.test/b.png",
          "https://x.test/a.png"
        ])
        const row = yield* getRow(id)
        expect(row).toMatchObject({ state: "delivered", partsDelivered: 3 })
        expect(row.deliveredParts).toBeUndefined()
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("without best effort the first failing part stops the batch", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ ok: true }, { status: 500 }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver({
          channel: "chat",
          to: "user-1",
          payloads: [{ text: "one" }, { text: "two" }, { text: "three" }]
        }))
        expect(error._tag).toBe("SendFailed")
        expect((yield* chat.calls).map((c) => c.text)).toEqual(["one", "two"])
        expect(yield* getRow(entryIdOf(error))).toMatchObject({ partsDelivered: 1, state: "failed_retryable" })
        yield* TestClock.setTime(5 * SEC)
        yield* outbox.runRecoveryPass
        expect((yield* chat.calls).map((c) => c.text)).toEqual(["one", "two", "two", "three"])
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a repeated idempotency key returns the first entry and sends nothing more", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const first = yield* outbox.deliver(reply("hello", { idempotencyKey: "turn-7" }))
        const second = yield* outbox.deliver(reply("hello again", { idempotencyKey: "turn-7" }))
        expect(second).toEqual({ _tag: "Duplicate", entryId: first.entryId, state: "delivered" })
        expect(yield* outbox.enqueue(reply("x", { idempotencyKey: "turn-7" }))).toBe(first.entryId)
        expect((yield* chat.calls).length).toBe(1)
        expect((yield* outbox.stats).total).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a reply behind a pending one in its conversation is deferred; the worker delivers both in order", () =>
    Effect.gen(function*() {
      let firstFailures = 2
      const chat = yield* scriptedAdapter((
        call
      ) => (call.text === "first" && firstFailures-- > 0 ? { status: 500 } : { ok: true }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const first = yield* Effect.flip(outbox.deliver(reply("first")))
        expect(first._tag).toBe("SendFailed")
        const second = yield* outbox.deliver(reply("second"))
        expect(second).toMatchObject({ _tag: "Deferred", reason: "conversation_busy" })
        const elsewhere = yield* outbox.deliver(reply("other chat", { to: "user-2" }))
        expect(elsewhere._tag).toBe("Delivered")
        yield* TestClock.setTime(5 * SEC)
        yield* outbox.runRecoveryPass // first fails again
        yield* TestClock.setTime(30 * SEC)
        yield* outbox.runRecoveryPass // first delivered; its conversation's lane sends second right after
        yield* outbox.awaitIdle
        expect((yield* chat.calls).map((c) => c.text)).toEqual(["first", "other chat", "first", "first", "second"])
        expect((yield* outbox.list({ state: "delivered" })).length).toBe(3)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("TTL: a row past maxAge is expired and never sent; expireAction deliver sends it anyway", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ status: 500 }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const live = yield* Effect.flip(outbox.deliver(reply("too late")))
        const id = entryIdOf(live)
        yield* TestClock.setTime(30 * MIN)
        const report = yield* outbox.runRecoveryPass
        expect(report.expired).toBe(1)
        expect(yield* getRow(id)).toMatchObject({ state: "expired", attemptCount: 1 })
        expect((yield* chat.calls).length).toBe(1)
        // a zero maxAge expires a live delivery before its send
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))

      const chat2 = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver(reply("stale")))
        expect(error).toMatchObject({ _tag: "SendFailed", retryable: false, message: "expired before sending" })
        expect(yield* getRow(entryIdOf(error))).toMatchObject({ state: "expired" })
        expect(yield* chat2.calls).toEqual([])
      }).pipe(Effect.provide(outboxLayer({ chat: chat2.adapter }, { config: { maxAge: Duration.zero } })))

      const chat3 = yield* scriptedAdapter([{ status: 500 }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver(reply("late but wanted")))
        yield* TestClock.setTime(31 * MIN)
        const report = yield* outbox.runRecoveryPass
        expect(report.expired).toBe(0)
        expect(yield* getRow(entryIdOf(error))).toMatchObject({ state: "delivered" })
        expect((yield* chat3.calls).length).toBe(2)
      }).pipe(Effect.provide(outboxLayer({ chat: chat3.adapter }, { config: { expireAction: "deliver" } })))
    }))

  it.effect("tool/block rows are never replayed by recovery, also when they failed after boot; live they go out", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ ok: true }, { status: 500 }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        expect((yield* outbox.deliver(reply("thinking…", { kind: "tool" })))._tag).toBe("Delivered")
        const failed = yield* Effect.flip(outbox.deliver(reply("step 2", { kind: "block", to: "user-2" })))
        // it will never be retried, so it does not hold up the final answer behind it
        expect(failed).toMatchObject({ _tag: "SendFailed", retryable: false })
        expect(yield* getRow(entryIdOf(failed))).toMatchObject({
          state: "failed_terminal",
          terminalReason: "non_final_recovery_skip"
        })
        expect((yield* outbox.deliver(reply("the answer", { to: "user-2" })))._tag).toBe("Delivered")
        const queued = yield* outbox.enqueue(reply("tool output", { kind: "tool", to: "user-3" }))
        yield* TestClock.setTime(5 * SEC)
        yield* outbox.runRecoveryPass
        for (const id of [entryIdOf(failed), queued]) {
          expect(yield* getRow(id)).toMatchObject({
            state: "failed_terminal",
            terminalReason: "non_final_recovery_skip"
          })
        }
        expect((yield* chat.calls).map((c) => c.text)).toEqual(["thinking…", "step 2", "the answer"])
        // an admin retry does not requeue one: the next pass would only fail it again
        const refused = yield* Effect.flip(outbox.retry(entryIdOf(failed)))
        expect(refused).toMatchObject({ _tag: "TransitionRejected", event: "Requeue" })
        expect(yield* getRow(entryIdOf(failed))).toMatchObject({
          state: "failed_terminal",
          terminalReason: "non_final_recovery_skip"
        })
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a caller that gives up while its row waits for the writer: the row is still written, sent once, acked and counted under its labels", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      const gate = yield* Deferred.make<void>()
      let inserts = 0
      // the journal's first batch waits at the gate, so the second request waits for the journal behind it
      const gatedInsert = memoryStoreWith((repo) => ({
        write: (ops) => Effect.zipRight(inserts++ === 0 ? Deferred.await(gate) : Effect.void, repo.write(ops))
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const deliveredBefore = yield* counter(Metrics.delivered)
        const first = yield* Effect.fork(outbox.deliver(reply("first", { to: "user-1" })))
        yield* TestClock.adjust(0)
        const second = yield* Effect.fork(
          outbox.deliver(reply("second", { to: "user-2" })).pipe(Effect.tagMetrics("gateway", "gone-caller"))
        )
        yield* TestClock.adjust(0)
        // the caller gives up; its write, once submitted, is made, and the interruption waits for it
        const givingUp = yield* Effect.fork(Fiber.interrupt(second))
        yield* Deferred.succeed(gate, undefined)
        expect((yield* Fiber.join(first))._tag).toBe("Delivered")
        yield* Fiber.join(givingUp)
        yield* outbox.awaitIdle
        const rows = yield* outbox.list({})
        expect(rows.map((r) => [r.to, r.state]).sort()).toEqual([["user-1", "delivered"], ["user-2", "delivered"]])
        expect((yield* chat.calls).map((c) => c.text).sort()).toEqual(["first", "second"])
        expect((yield* counter(Metrics.delivered)) - deliveredBefore).toBe(1) // the first
        // the second is counted although its caller was gone, under the labels its caller had when it gave up (not
        // those of wherever its fiber went next)
        expect(yield* counter(Metric.tagged(Metrics.delivered, "gateway", "gone-caller"))).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { store: gatedInsert })))
    }))

  it.effect("a delivery is counted and timed under its caller's metric labels, whether the writer or the send itself acked it", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter((call) => (call.text === "slow" ? { sleep: 1000 } : { ok: true }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const delivered = (gateway: string) => counter(Metric.tagged(Metrics.delivered, "gateway", gateway))
        const latencies = (gateway: string) =>
          Effect.map(Metric.value(Metric.tagged(Metrics.deliveryLatency, "gateway", gateway)), (h) => [h.count, h.sum])
        // the adapter answers at once: the writer's batched ack counts it
        const fast = yield* outbox.deliver(reply("fast", { to: "user-1" })).pipe(
          Effect.tagMetrics("gateway", "labels-fast")
        )
        // the adapter suspends: the send acks its own row
        const slow = yield* Effect.fork(
          outbox.deliver(reply("slow", { to: "user-2" })).pipe(Effect.tagMetrics("gateway", "labels-slow"))
        )
        yield* TestClock.adjust(1000)
        expect(fast._tag).toBe("Delivered")
        expect((yield* Fiber.join(slow))._tag).toBe("Delivered")
        expect([yield* delivered("labels-fast"), yield* delivered("labels-slow")]).toEqual([1, 1])
        expect([yield* latencies("labels-fast"), yield* latencies("labels-slow")]).toEqual([[1, 0], [1, 1000]])
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  // The writer starts each send at once; an adapter that answers without suspending completes there, with no fiber
  // of its own. Each style must give the caller, the store, the events and the metrics the same thing.
  for (const [style, answer] of answerStyles) {
    it.scoped(`an adapter answering with ${style}: the same outcomes, rows, events and metrics`, () =>
      Effect.gen(function*() {
        let calls = 0
        const adapter = { outboundContract: "v2" as const, sendFinal: () => answer(++calls) }
        const gateway = `answer-${style}`
        const tagged = (metric: Metric.Metric.Counter<number>) => counter(Metric.tagged(metric, "gateway", gateway))
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          const events: Array<[string, EntryId]> = []
          const watcher = yield* Effect.fork(
            Stream.runForEach(
              yield* outbox.subscribe,
              (event) =>
                Effect.sync(() => void events.push([event._tag, (event as { readonly entryId: EntryId }).entryId]))
            )
          )
          const outcomes = yield* Effect.forEach(
            ["a", "b", "c"],
            (to) => outbox.deliver(reply(`to ${to}`, { to })).pipe(Effect.tagMetrics("gateway", gateway)),
            { concurrency: "unbounded" }
          )
          yield* TestClock.adjust(1)
          yield* Fiber.interrupt(watcher)
          expect(calls).toBe(3)
          expect(outcomes.map((o) => o._tag)).toEqual(["Delivered", "Delivered", "Delivered"])
          const ids = outcomes.map((o) => o.entryId)
          const rows = yield* Effect.forEach(ids, getRow)
          expect(rows.map((r) => [r.state, r.partsDelivered, r.leaseOwner])).toEqual(
            Array(3).fill(["delivered", 1, null])
          )
          for (const id of ids) {
            expect(events.filter(([, of]) => of === id).map(([tag]) => tag)).toEqual(["enqueued", "sent", "delivered"])
          }
          expect([yield* tagged(Metrics.enqueued), yield* tagged(Metrics.delivered)]).toEqual([3, 3])
        }).pipe(Effect.provide(outboxLayer({ chat: adapter })))
      }))
  }

  it.scoped(
    "with the event buffer full, deliveries whose adapter answers at once still go out, and events slide",
    () =>
      Effect.gen(function*() {
        const adapter = {
          outboundContract: "v2" as const,
          sendFinal: () => ({ messageId: "m" }) as unknown as Returned<SendResult>
        }
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          const gate = yield* Deferred.make<void>()
          const all: Array<string> = []
          const fast = yield* Effect.fork(
            Stream.runForEach(yield* outbox.subscribe, (event) => Effect.sync(() => void all.push(event._tag)))
          )
          // a subscriber that stops reading: the buffer fills, and publishing goes through the sliding publish
          const behind = yield* Effect.fork(Stream.runForEach(yield* outbox.subscribe, () => Deferred.await(gate)))
          const outcomes = yield* Effect.forEach(
            Array.from({ length: 4_000 }, (_, i) => i),
            (i) => outbox.deliver(reply(`m${i}`, { to: `user-${i}` })),
            { concurrency: 500 }
          )
          yield* TestClock.adjust(1)
          yield* Fiber.interrupt(fast)
          yield* Fiber.interrupt(behind)
          expect(outcomes.every((o) => o._tag === "Delivered")).toBe(true)
          expect((yield* outbox.stats).byState.delivered).toBe(4_000)
          // three events a delivery, more than the 10,000 the buffer holds; the reader that kept up saw all of them
          expect(all.length).toBe(12_000)
          expect(["enqueued", "sent", "delivered"].map((tag) => all.filter((t) => t === tag).length)).toEqual([
            4_000,
            4_000,
            4_000
          ])
        }).pipe(Effect.provide(outboxLayer({ chat: adapter })))
      }),
    60_000
  )

  it.effect("the adapter call runs under the caller's Outbox.deliver span, which ends with the outcome", () =>
    Effect.gen(function*() {
      // a tracer other than Effect's built-in one (which the outbox makes no spans for), as an exporter would be
      const builtIn = yield* Effect.tracer
      const exporting = Tracer.make({ span: (...args) => builtIn.span(...args), context: builtIn.context })
      yield* Effect.withTracer(
        Effect.gen(function*() {
          const gateway = yield* Effect.makeSpan("gateway.handle")
          const current: Array<Option.Option<Tracer.Span>> = []
          const chat = yield* scriptedAdapter((call) => ({
            run: () =>
              Effect.zipRight(
                Effect.map(Effect.option(Effect.currentSpan), (span) => void current.push(span)),
                call.text === "slow"
                  ? Effect.as(Effect.sleep(1000), { messageId: "m-slow" })
                  : call.text === "fail"
                  ? Effect.fail(new SendError({ message: "HTTP 500", retryable: true }))
                  : Effect.succeed({ messageId: "m-fast" })
              )
          }))
          yield* Effect.gen(function*() {
            const outbox = yield* Outbox
            const fast = yield* outbox.deliver(reply("fast", { to: "user-1" }))
            const slow = yield* Effect.fork(outbox.deliver(reply("slow", { to: "user-2" })))
            yield* TestClock.adjust(1000)
            yield* Fiber.join(slow)
            const failed = yield* Effect.flip(outbox.deliver(reply("fail", { to: "user-3" })))
            expect([fast._tag, failed._tag]).toEqual(["Delivered", "SendFailed"])
            // the adapter runs in its part's span, under the attempt's, under the caller's Outbox.deliver
            const chain = (span: Tracer.AnySpan): Array<Tracer.AnySpan> =>
              span._tag === "Span" && Option.isSome(span.parent) ? [span, ...chain(span.parent.value)] : [span]
            const chains = current.map((span) => chain(Option.getOrThrow(span)))
            for (const c of chains) {
              expect(c.map((s) => s._tag === "Span" ? s.name : "external")).toEqual([
                "Sender.sendPart",
                "Outbox.deliverEntry",
                "Outbox.deliver",
                "gateway.handle"
              ])
            }
            const spans = chains.map((c) => c[2] as Tracer.Span)
            expect(new Set(spans.map((s) => s.spanId)).size).toBe(3)
            // each is a child of the gateway's span, and ended with its call's outcome
            for (const span of spans) {
              expect(Option.map(span.parent, (p) => p.spanId)).toEqual(Option.some(gateway.spanId))
            }
            expect(spans.map((s) => s.status._tag === "Ended" && s.status.exit._tag)).toEqual([
              "Success",
              "Success",
              "Failure"
            ])
          }).pipe(Effect.withParentSpan(gateway), Effect.provide(outboxLayer({ chat: chat.adapter })))
        }),
        exporting
      )
    }))

  it.effect("a caller that gives up while its ack is retried only stops waiting: the ack goes on and is written, nothing is sent twice", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      let failing = true
      const flakyAck = memoryStoreWith((repo) => ({
        write: (ops) =>
          failing && ops.some(isAck)
            ? Effect.fail(new StoreError({ operation: "write", message: "database is locked" }))
            : repo.write(ops)
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const caller = yield* Effect.fork(outbox.deliver(reply("hello")))
        yield* TestClock.adjust(0) // sent; the ack failed; its first retry waits 50 ms
        expect((yield* chat.calls).length).toBe(1)
        yield* Fiber.interrupt(caller)
        failing = false
        const [row] = yield* outbox.list({})
        expect(row).toMatchObject({ state: "in_flight" })
        yield* TestClock.adjust(50) // the retry writes it
        yield* outbox.awaitIdle
        expect(yield* getRow(row!.id)).toMatchObject({ state: "delivered" })
        yield* TestClock.adjust(10 * MIN) // past its lease: it is not sent again
        yield* outbox.runRecoveryPass
        expect((yield* chat.calls).length).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { store: flakyAck })))
    }))

  it.effect("a caller that gives up during its send only stops waiting: the send goes on and is acked, once", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ sleep: 10 * SEC }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const duplicatesBefore = yield* counter(Metrics.possibleDuplicates)
        const caller = yield* Effect.fork(outbox.deliver(reply("hello")))
        yield* TestClock.adjust(SEC)
        expect((yield* chat.calls).length).toBe(1)
        yield* Fiber.interrupt(caller)
        const [row] = yield* outbox.list({})
        expect(row).toMatchObject({ state: "in_flight", leaseOwner: outbox.owner })
        yield* TestClock.adjust(10 * SEC)
        yield* outbox.awaitIdle
        expect(yield* getRow(row!.id)).toMatchObject({ state: "delivered" })
        yield* TestClock.adjust(6 * MIN)
        expect(yield* outbox.runRecoveryPass).toMatchObject({ claimed: 0 })
        expect((yield* chat.calls).length).toBe(1)
        expect((yield* counter(Metrics.possibleDuplicates)) - duplicatesBefore).toBe(0)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("an ack that cannot be written: AckFailed and a metric; never counted delivered; the worker writes it later without re-sending", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      let ackFailuresLeft = 4 // the first try and its 3 retries
      const flakyAck = memoryStoreWith((repo) => ({
        write: (ops) =>
          ops.some(isAck) && ackFailuresLeft-- > 0
            ? Effect.fail(new StoreError({ operation: "write", message: "database is locked" }))
            : repo.write(ops)
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const ackFailuresBefore = yield* counter(Metrics.ackFailures)
        const deliveredBefore = yield* counter(Metrics.delivered)
        const fiber = yield* Effect.fork(Effect.flip(outbox.deliver(reply("hello"))))
        yield* TestClock.adjust(SEC) // the ack retry schedule: 50, 100, 200 ms
        const error = yield* Fiber.join(fiber)
        expect(error).toMatchObject({ _tag: "AckFailed" })
        expect(error.message).toMatch(/database is locked/)
        const id = entryIdOf(error)
        expect(yield* getRow(id)).toMatchObject({ state: "in_flight" })
        expect((yield* counter(Metrics.ackFailures)) - ackFailuresBefore).toBe(1)
        expect((yield* counter(Metrics.delivered)) - deliveredBefore).toBe(0)
        // even once its lease has run out, this process does not send the row again: it acks it
        yield* TestClock.adjust(6 * MIN)
        const report = yield* outbox.runRecoveryPass
        expect(report.acksFlushed).toBe(1)
        expect(yield* getRow(id)).toMatchObject({ state: "delivered" })
        expect((yield* chat.calls).length).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { store: flakyAck })))
    }))

  it.effect("a send that suspended acks its own row on the ack schedule: tries right away, then 50 and 100 ms later", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ sleep: SEC }])
      const tries: Array<number> = []
      const flakyAck = memoryStoreWith((repo) => ({
        write: (ops) =>
          !ops.some(isAck) ? repo.write(ops) : Effect.flatMap(Clock.currentTimeMillis, (at) => {
            tries.push(at)
            return tries.length <= 2
              ? Effect.fail(new StoreError({ operation: "write", message: "database is locked" }))
              : repo.write(ops)
          })
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const fiber = yield* Effect.fork(outbox.deliver(reply("hello")))
        yield* TestClock.adjust(SEC) // the send ends; its ack fails
        expect(tries).toEqual([SEC])
        yield* TestClock.adjust(49)
        expect(tries).toEqual([SEC])
        yield* TestClock.adjust(1)
        expect(tries).toEqual([SEC, SEC + 50])
        yield* TestClock.adjust(100)
        expect(tries).toEqual([SEC, SEC + 50, SEC + 150])
        const outcome = yield* Fiber.join(fiber)
        expect(outcome._tag).toBe("Delivered")
        expect(yield* getRow(outcome.entryId)).toMatchObject({ state: "delivered", deliveredAt: SEC })
        expect((yield* chat.calls).length).toBe(1)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { store: flakyAck })))
    }))

  it.effect("the recovery pass prunes on its first run, then only once the prune interval has passed", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        yield* outbox.deliver(reply("old news"))
        yield* TestClock.setTime(25 * 60 * MIN) // past the 24 h retention of delivered rows
        expect((yield* outbox.runRecoveryPass).pruned).toBe(1)
        yield* outbox.deliver(reply("newer"))
        yield* TestClock.adjust(25 * 60 * MIN)
        expect((yield* outbox.runRecoveryPass).pruned).toBe(0) // the prune interval (2 days here) has not passed
        yield* TestClock.adjust(24 * 60 * MIN)
        expect((yield* outbox.runRecoveryPass).pruned).toBe(1)
        expect((yield* outbox.stats).total).toBe(0)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { config: { pruneInterval: Duration.hours(48) } })))
    }))

  it.scoped("events: enqueued, sent, delivered, retry_scheduled, terminal", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ ok: true }, { status: 500 }, { permanent: "chat not found" }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const collected = yield* Effect.fork(Stream.runCollect(Stream.take(yield* outbox.subscribe, 7)))
        yield* outbox.deliver(reply("a"))
        yield* Effect.flip(outbox.deliver(reply("b", { to: "user-2" })))
        yield* Effect.flip(outbox.deliver(reply("c", { to: "user-3" })))
        const events = Chunk.toReadonlyArray(yield* Fiber.join(collected)).map((e) => e._tag)
        expect(events).toEqual(["enqueued", "sent", "delivered", "enqueued", "retry_scheduled", "enqueued", "terminal"])
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.scoped(
    "a subscriber that falls behind loses the oldest events past the buffer, never the newest",
    () =>
      Effect.gen(function*() {
        const chat = yield* scriptedAdapter()
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          const gate = yield* Deferred.make<void>()
          const idOf = (event: OutboxEvent) => (event as { readonly entryId: EntryId }).entryId
          const all: Array<EntryId> = []
          const slow: Array<EntryId> = []
          const fast = yield* Effect.fork(
            Stream.runForEach(yield* outbox.subscribe, (event) => Effect.sync(() => void all.push(idOf(event))))
          )
          // takes one chunk, then stops reading until the gate opens
          const behind = yield* Effect.fork(Stream.runForEach(yield* outbox.subscribe, (event) =>
            Effect.zipRight(
              Deferred.await(gate),
              Effect.sync(() => void slow.push(idOf(event)))
            )))
          yield* Effect.forEach(Array.from({ length: 15_000 }, (_, i) => i), (i) =>
            outbox.enqueue(reply(`m${i}`, { to: `user-${i}` })), {
            concurrency: 500,
            discard: true
          })
          yield* TestClock.adjust(1)
          yield* Deferred.succeed(gate, undefined)
          yield* TestClock.adjust(1)
          yield* Fiber.interrupt(fast)
          yield* Fiber.interrupt(behind)
          expect(all.length).toBe(15_000)
          // what it got came in order, ends with the newest event, and is the chunk it held plus the newest 10,000
          expect(slow.at(-1)).toBe(all.at(-1))
          expect(slow.length).toBeLessThan(all.length)
          expect(slow.slice(-10_000)).toEqual(all.slice(-10_000))
          expect(slow.slice(0, slow.length - 10_000)).toEqual(all.slice(0, slow.length - 10_000))
        }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
      }),
    60_000
  )
})
