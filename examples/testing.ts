/**
 * Testing gateway code that uses the outbox: the memory store, a fake channel, retry jitter off and `TestClock`,
 * so a retry five seconds later takes no time. This file is a test: `npm test` runs it (test/cli/examples.test.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Ref, TestClock } from "effect"
import type { ChannelAdapter } from "../src/index.js"
import { ChannelRegistry, DeliveryError, MemoryOutboxRepo, Outbox, OutboxConfig, RecoveryWorker } from "../src/index.js"

/** A fake channel (an Effect-native adapter) that fails its first send with HTTP 503 and records the rest. */
const fakeChannel = Effect.gen(function*() {
  const sent = yield* Ref.make<ReadonlyArray<string>>([])
  const calls = yield* Ref.make(0)
  const adapter: ChannelAdapter.AdapterV1 = {
    sendText: (ctx) =>
      Effect.gen(function*() {
        const n = yield* Ref.updateAndGet(calls, (c) => c + 1)
        if (n === 1) {
          return yield* Effect.fail(new DeliveryError.SendError({ message: "HTTP 503", retryable: true, status: 503 }))
        }
        yield* Ref.update(sent, (texts) => [...texts, ctx.text])
        return { messageId: `message-${n}` }
      })
  }
  return { adapter, sent: Ref.get(sent) }
})

/** The outbox and its worker over the memory store; jitter off, so retry times are exact. */
const TestOutbox = (adapter: ChannelAdapter.Adapter) =>
  RecoveryWorker.layer.pipe(
    Layer.provideMerge(Outbox.layer),
    Layer.provide(Layer.mergeAll(
      MemoryOutboxRepo.layer,
      ChannelRegistry.layer({ chat: adapter }),
      OutboxConfig.layer({ retryJitter: false })
    ))
  )

describe("examples/testing.ts", () => {
  it.effect("a reply whose first send fails is retried by the worker 5 s later", () =>
    Effect.gen(function*() {
      const channel = yield* fakeChannel
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const error = yield* Effect.flip(
          outbox.deliver({ channel: "chat", to: "user-1", payloads: [{ text: "hello" }] })
        )
        expect(error).toMatchObject({ _tag: "SendFailed", retryable: true, willRetryAt: 5_000 })

        yield* TestClock.adjust("4 seconds")
        expect(yield* channel.sent).toEqual([]) // the first retry is due at 5 s

        yield* TestClock.adjust("1 second")
        expect(yield* channel.sent).toEqual(["hello"])
        expect((yield* outbox.stats).byState.delivered).toBe(1)
      }).pipe(Effect.provide(TestOutbox(channel.adapter)))
    }))
})
