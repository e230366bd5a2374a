/**
 * Part progress: after each accepted part of a multi-part reply the row records how far it got, so a process that
 * dies mid-reply is replayed by the next boot from the part that was in flight, never from the first part; and a
 * channel that can tell (`reconcile`) settles that one part alone, the rest are sent.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import type { ReconcileResult, SendContext, SendResult } from "../../src/ChannelAdapter.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import { Outbox } from "../../src/Outbox.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import { outboxLayer, scriptedAdapter } from "./harness.js"

const MIN = 60_000

const threeParts = { channel: "chat", to: "user-1", payloads: [{ text: "one" }, { text: "two" }, { text: "three" }] }

/**
 * Starts a delivery whose send hangs, then "kills" that boot: its scope closes and the shutdown grace (10 s) runs
 * out, so the send is interrupted mid-call and the row stays in flight, as after a crash.
 */
const crashMidSend = (store: Layer.Layer<OutboxRepo>, adapter: Parameters<typeof outboxLayer>[0]["chat"]) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(outboxLayer({ chat: adapter }, { store }), scope)
    const outbox = context.unsafeMap.get(Outbox.key) as Outbox["Type"]
    yield* Effect.fork(outbox.deliver(threeParts))
    yield* TestClock.adjust(1)
    const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
    yield* TestClock.adjust(10_000)
    yield* Fiber.join(closing)
    const [row] = yield* Effect.flatMap(OutboxRepo, (r) => r.list({})).pipe(Effect.provide(store))
    return row!.id
  })

describe("part progress", () => {
  it.effect("a crash mid-reply replays only the parts not yet accepted", () =>
    Effect.gen(function*() {
      const repo = yield* MemoryOutboxRepo.make
      const store = Layer.succeed(OutboxRepo, repo)
      const firstBoot = yield* scriptedAdapter([{ ok: true }, { ok: true }, { sleep: 10 * MIN }])
      const id = yield* crashMidSend(store, firstBoot.adapter)
      expect((yield* firstBoot.calls).map((c) => c.text)).toEqual(["one", "two", "three"])
      expect(Option.getOrThrow(yield* repo.get(id))).toMatchObject({
        state: "in_flight",
        partsDelivered: 2,
        attemptCount: 0
      })

      const nextBoot = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        expect(yield* outbox.reclaimPreviousBoots).toBe(1)
        yield* outbox.runRecoveryPass
        yield* outbox.awaitIdle
      }).pipe(Effect.provide(outboxLayer({ chat: nextBoot.adapter }, { store })))
      expect((yield* nextBoot.calls).map((c) => [c.text, c.partIndex])).toEqual([["three", 2]])
      expect(Option.getOrThrow(yield* repo.get(id))).toMatchObject({ state: "delivered", partsDelivered: 3 })
    }))

  it.effect("reconcile answering \"sent\" for the part in flight settles that part alone; the remaining parts are sent", () =>
    Effect.gen(function*() {
      const repo = yield* MemoryOutboxRepo.make
      const store = Layer.succeed(OutboxRepo, repo)
      // a two-payload-per-reply crash during the first payload: nothing recorded yet
      const firstBoot = yield* scriptedAdapter([{ sleep: 10 * MIN }])
      const id = yield* crashMidSend(store, firstBoot.adapter)
      expect(Option.getOrThrow(yield* repo.get(id))).toMatchObject({ state: "in_flight", partsDelivered: 0 })

      const sent: Array<string> = []
      const asked: Array<number> = []
      const adapter = {
        sendText: (ctx: SendContext): Promise<SendResult> => {
          sent.push(ctx.text)
          return Promise.resolve({ messageId: `m-${sent.length}` })
        },
        reconcile: (ctx: SendContext): Promise<ReconcileResult> => {
          asked.push(ctx.partIndex)
          return Promise.resolve("sent")
        }
      }
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        yield* outbox.reclaimPreviousBoots
        const report = yield* outbox.runRecoveryPass
        expect(report).toMatchObject({ claimed: 1, delivered: 1, possibleDuplicates: 0 })
      }).pipe(Effect.provide(outboxLayer({ chat: adapter }, { store })))
      expect(asked).toEqual([0])
      expect(sent).toEqual(["two", "three"])
      expect(Option.getOrThrow(yield* repo.get(id))).toMatchObject({ state: "delivered", partsDelivered: 3 })
    }))

  it.effect("progress is recorded after each accepted part (a multi-part send's row tells how far it got)", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ ok: true }, { sleep: 10_000 }, { ok: true }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const repo = yield* OutboxRepo
        const caller = yield* Effect.fork(outbox.deliver(threeParts))
        yield* TestClock.adjust(1)
        const [row] = yield* repo.list({})
        expect(row).toMatchObject({ state: "in_flight", partsDelivered: 1 })
        yield* TestClock.adjust(10_000)
        expect((yield* Fiber.join(caller))._tag).toBe("Delivered")
        expect(Option.getOrThrow(yield* repo.get(row!.id))).toMatchObject({ state: "delivered", partsDelivered: 3 })
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))
})
