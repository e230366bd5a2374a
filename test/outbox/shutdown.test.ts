/**
 * Shutdown: closing the outbox's scope (with or without the worker) stops claiming and waits for every delivery in
 * progress, live and worker alike, within `shutdownGrace`; a send still running then is interrupted (its adapter's
 * abort signal fires) and its row stays in flight under this boot's lease, with no attempt charged, for the next boot.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import type { CallOptions, SendContext, SendResult } from "../../src/ChannelAdapter.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import { Outbox } from "../../src/Outbox.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import { outboxLayer, reply, scriptedAdapter } from "./harness.js"

const SEC = 1000

/** A plugin whose sends hang until they are aborted; it records the aborts. */
const hangingPlugin = () => {
  const calls: Array<string> = []
  const aborted: Array<string> = []
  const adapter = {
    sendText: (ctx: SendContext, { signal }: CallOptions) =>
      new Promise<SendResult>(() => {
        calls.push(ctx.text)
        signal.addEventListener("abort", () => aborted.push(ctx.text))
      })
  }
  return { adapter, calls, aborted }
}

describe("shutdown", () => {
  it.effect("a worker send still running at the end of shutdownGrace is interrupted; its row stays in flight, no attempt charged", () =>
    Effect.gen(function*() {
      const repo = yield* MemoryOutboxRepo.make
      const store = Layer.succeed(OutboxRepo, repo)
      const plugin = hangingPlugin()
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        RecoveryWorker.layer.pipe(
          Layer.provideMerge(outboxLayer({ chat: plugin.adapter }, { store, config: { shutdownGrace: "10 seconds" } }))
        ),
        scope
      )
      const outbox = Layer.succeedContext(context).pipe(Layer.build, Effect.scoped)
      const { owner, enqueue } = yield* Effect.map(outbox, (c) => c.unsafeMap.get(Outbox.key) as Outbox["Type"])
      const id = yield* enqueue(reply("slow"))
      yield* TestClock.adjust(1) // the worker wakes on the enqueue and starts the send
      expect(plugin.calls).toEqual(["slow"])
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(10 * SEC - 1)
      expect(closing.unsafePoll()).toBeNull() // still waiting for the send, within the grace
      yield* TestClock.adjust(1)
      yield* Fiber.join(closing)
      expect(plugin.aborted).toEqual(["slow"])
      expect(Option.getOrThrow(yield* repo.get(id))).toMatchObject({
        state: "in_flight",
        attemptCount: 0,
        leaseOwner: owner
      })

      // the next boot of this node takes it over at once and sends it
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const next = yield* Outbox
        expect(yield* next.reclaimPreviousBoots).toBe(1)
        expect(yield* next.runRecoveryPass).toMatchObject({ claimed: 1, delivered: 1, possibleDuplicates: 1 })
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { store })))
      expect(Option.getOrThrow(yield* repo.get(id)).state).toBe("delivered")
    }))

  it.effect("a live delivery in progress at shutdown finishes within the grace: sent, acked, and its caller gets Delivered", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ sleep: 5 * SEC }])
      const repo = yield* MemoryOutboxRepo.make
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        outboxLayer({ chat: chat.adapter }, {
          store: Layer.succeed(OutboxRepo, repo),
          config: { shutdownGrace: "10 seconds" }
        }),
        scope
      )
      const outbox = context.unsafeMap.get(Outbox.key) as Outbox["Type"]
      const caller = yield* Effect.fork(outbox.deliver(reply("answer")))
      yield* TestClock.adjust(1)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(5 * SEC)
      yield* Fiber.join(closing)
      const outcome = yield* Fiber.join(caller)
      expect(outcome._tag).toBe("Delivered")
      expect(Option.getOrThrow(yield* repo.get(outcome.entryId))).toMatchObject({
        state: "delivered",
        deliveredAt: 5 * SEC
      })
    }))

  it.effect("a live delivery past the grace is interrupted; its row stays in flight for the next boot, nothing is lost", () =>
    Effect.gen(function*() {
      const plugin = hangingPlugin()
      const repo = yield* MemoryOutboxRepo.make
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        outboxLayer({ chat: plugin.adapter }, {
          store: Layer.succeed(OutboxRepo, repo),
          config: { shutdownGrace: "2 seconds" }
        }),
        scope
      )
      const outbox = context.unsafeMap.get(Outbox.key) as Outbox["Type"]
      const caller = yield* Effect.fork(outbox.deliver(reply("answer")))
      yield* TestClock.adjust(1)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust(2 * SEC)
      yield* Fiber.join(closing)
      expect(Exit.isInterrupted(yield* Fiber.await(caller))).toBe(true)
      expect(plugin.aborted).toEqual(["answer"])
      const [row] = yield* repo.list({})
      expect(row).toMatchObject({ state: "in_flight", attemptCount: 0, leaseOwner: outbox.owner })
    }))
})
