/**
 * Conversation lanes: when a row finishes, its conversation's next due row starts at once in this process, so a
 * burst of replies to one chat goes out back to back, in order, without waiting for a worker tick. The clock is
 * never moved in these tests unless a retry delay is the point.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type { EntryId } from "../../src/Delivery.js"
import { Outbox } from "../../src/Outbox.js"
import { outboxLayer, reply, scriptedAdapter } from "./harness.js"

const SEC = 1000

const stateOf = (id: EntryId) =>
  Effect.flatMap(Outbox, (o) => Effect.map(o.get(id), (row) => Option.getOrThrow(row).state))

describe("conversation lanes", () => {
  it.effect("20 concurrent replies to one chat are all delivered, in order, with the clock never moved", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const texts = Array.from({ length: 20 }, (_, i) => `reply ${i}`)
        const outcomes = yield* Effect.forEach(texts, (text) => outbox.deliver(reply(text)), {
          concurrency: "unbounded"
        })
        // the first goes out live; the others wait their turn in the outbox
        expect(outcomes.map((o) => o._tag)).toEqual(["Delivered", ...texts.slice(1).map(() => "Deferred")])
        yield* outbox.awaitIdle
        expect((yield* chat.calls).map((c) => c.text)).toEqual(texts)
        for (const outcome of outcomes) expect(yield* stateOf(outcome.entryId)).toBe("delivered")
        const delivered = yield* outbox.list({ state: "delivered", limit: 100 })
        expect(delivered.every((row) => row.deliveredAt === 0 && row.attemptCount === 0)).toBe(true)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("after a 503, a conversation's later replies go out right after its retry succeeds, not one per pass", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ status: 503 }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const first = yield* Effect.flip(outbox.deliver(reply("first")))
        expect(first).toMatchObject({ _tag: "SendFailed", retryable: true, willRetryAt: 5 * SEC })
        const later = yield* Effect.forEach(["second", "third", "fourth"], (text) => outbox.deliver(reply(text)))
        expect(later.map((o) => o._tag)).toEqual(["Deferred", "Deferred", "Deferred"])
        // other conversations are not held up meanwhile
        expect((yield* outbox.deliver(reply("elsewhere", { to: "user-2" })))._tag).toBe("Delivered")
        yield* TestClock.adjust(5 * SEC)
        const report = yield* outbox.runRecoveryPass // claims only the head; its lane does the rest
        expect(report).toMatchObject({ claimed: 1, delivered: 1 })
        yield* outbox.awaitIdle
        expect((yield* chat.calls).map((c) => c.text)).toEqual([
          "first",
          "elsewhere",
          "first",
          "second",
          "third",
          "fourth"
        ])
        const rows = yield* outbox.list({ state: "delivered", limit: 10 })
        expect(rows).toHaveLength(5)
        expect(rows.filter((r) => r.to === "user-1").every((r) => r.deliveredAt === 5 * SEC)).toBe(true)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a reply that fails for good does not hold its conversation: the next one starts at once", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter((
        call
      ) => (call.text === "doomed" ? { permanent: "chat not found" } : { ok: true }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const [doomed, next] = yield* Effect.forEach(["doomed", "next"], (text) => outbox.enqueue(reply(text)))
        yield* outbox.runRecoveryPass
        yield* outbox.awaitIdle
        expect(yield* stateOf(doomed!)).toBe("failed_terminal")
        expect(yield* stateOf(next!)).toBe("delivered")
        expect((yield* chat.calls).map((c) => c.text)).toEqual(["doomed", "next"])
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it.effect("a drain of many conversations never sends more rows at once than workerConcurrency: a conversation's next row takes over its predecessor's slot", () =>
    Effect.gen(function*() {
      let inFlight = 0
      let most = 0
      const sent: Array<string> = []
      const adapter = {
        outboundContract: "v2" as const,
        sendFinal: (ctx: { readonly to: string; readonly text: string }) => {
          inFlight++
          most = Math.max(most, inFlight)
          // resolves on a later turn of the event loop, so sends of different conversations overlap
          return new Promise<{ messageId: string }>((resolve) =>
            setImmediate(() => {
              inFlight--
              sent.push(`${ctx.to}:${ctx.text}`)
              resolve({ messageId: `${ctx.to}:${ctx.text}` })
            })
          )
        }
      }
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        for (let n = 0; n < 5; n++) {
          for (let c = 0; c < 10; c++) yield* outbox.enqueue(reply(`reply ${n}`, { to: `chat-${c}` }))
        }
        while ((yield* outbox.stats).byState.delivered !== 50) {
          yield* outbox.runRecoveryPass
          yield* outbox.awaitIdle
        }
        expect(most).toBeLessThanOrEqual(4)
        expect(most).toBeGreaterThan(1)
        for (let c = 0; c < 10; c++) {
          expect(sent.filter((s) => s.startsWith(`chat-${c}:`))).toEqual(
            [0, 1, 2, 3, 4].map((n) => `chat-${c}:reply ${n}`)
          )
        }
      }).pipe(Effect.provide(outboxLayer({ chat: adapter }, { config: { workerConcurrency: 4 } })))
    }))
})
