import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import type { Adapter, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelAdapter from "../../src/ChannelAdapter.js"
import { SendError } from "../../src/DeliveryError.js"
import * as Sender from "../../src/Sender.js"
import { captureLogs, entry, makeRecorder, v1Adapter, v2Adapter } from "./fixtures.js"

const reject = (adapter: unknown) =>
  ChannelAdapter.normalize(adapter as Adapter, "chat").pipe(Effect.flip, Effect.map((e) => e.reason))

describe("ChannelAdapter.normalize", () => {
  it.scoped("reports the contract it took and what the adapter can do", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const v1 = yield* ChannelAdapter.normalize(
        v1Adapter(rec, { media: false, payload: true, textChunkLimit: 4096 }),
        "line"
      )
      expect(v1).toMatchObject({ channel: "line", contract: "v1", textChunkLimit: 4096, chunkerMode: "text" })
      expect([Option.isSome(v1.sendText), Option.isSome(v1.sendMedia), Option.isSome(v1.sendPayload)]).toEqual([
        true,
        false,
        true
      ])

      const v2 = yield* ChannelAdapter.normalize(v2Adapter(rec), "slack")
      expect(v2.contract).toBe("v2")
      // its v1 methods are not reachable from the channel
      expect([Option.isSome(v2.sendText), Option.isSome(v2.sendMedia), Option.isSome(v2.sendPayload)]).toEqual([
        false,
        false,
        true
      ])
    }))

  it.scoped("warns about a v1 adapter once when normalized, and not about a v2 one", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const rec = yield* makeRecorder()
      yield* Effect.all([
        ChannelAdapter.normalize(v1Adapter(rec), "tg"),
        ChannelAdapter.normalize(v2Adapter(rec), "slack")
      ]).pipe(
        Effect.provide(logs.layer)
      )
      expect(logs.lines).toEqual([{
        level: "WARN",
        message:
          `channel "tg" uses the v1 outbound adapter contract (sendText/sendMedia); declare outboundContract: "v2" with sendFinal(ctx) to take whole payloads`
      }])
    }))

  it.scoped("rejects adapters that break their contract, with a reason a plugin author can act on", () =>
    Effect.gen(function*() {
      const send = () => Promise.resolve({ messageId: "1" })
      expect(yield* reject({ outboundContract: "v2", sendText: send })).toBe(
        `it declares outboundContract "v2" but does not implement sendFinal(ctx)`
      )
      expect(yield* reject({ sendFinal: send })).toBe(
        `it implements sendFinal but does not declare outboundContract: "v2" (and has no v1 sendText)`
      )
      expect(yield* reject({ outboundContract: "v3", sendFinal: send })).toBe(
        `unknown outboundContract "v3" (expected "v1" or "v2")`
      )
      expect(yield* reject(null)).toBe("an adapter must be an object, got null")
      expect(yield* reject({ sendText: send, sendMedia: "yes" })).toBe("sendMedia must be a function, got string")
      expect(yield* reject({ sendText: send, textChunkLimit: 0 })).toBe(
        "textChunkLimit must be a positive integer, got 0"
      )
      expect(yield* reject({ sendText: send, chunker: 5 })).toBe("chunker must be a function or null, got number")
      expect(yield* reject({ sendText: send, chunkerMode: "html" })).toBe(
        `chunkerMode must be "text" or "markdown", got "html"`
      )
      expect(yield* reject({ outboundContract: "v2", sendFinal: send, reconcile: {} })).toBe(
        "reconcile must be a function, got object"
      )
    }))

  it.scoped("a v1 adapter that also has sendFinal but does not declare v2 stays v1", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const adapter = {
        ...v1Adapter(rec),
        sendFinal: (ctx: SendContext) => rec.respond("sendFinal", ctx, new AbortController().signal)
      }
      const channel = yield* ChannelAdapter.normalize(adapter, "chat")
      expect(channel.contract).toBe("v1")
      yield* (yield* Sender.make()).send(entry([{ text: "hi", channelData: { a: 1 } }]), channel, { attempt: 1 })
      expect(yield* rec.methods).toEqual(["sendText"])
    }))
})

describe("Effect-native adapters", () => {
  it.scoped("are called with the send context and their SendError classification is kept", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make<ReadonlyArray<string>>([])
      let n = 0
      const channel = yield* ChannelAdapter.normalize({
        outboundContract: "v2",
        sendFinal: (ctx) =>
          Effect.gen(function*() {
            yield* Ref.update(seen, (xs) => [...xs, ctx.text])
            n += 1
            if (n === 2) return yield* Effect.fail(new SendError({ message: "quota", retryable: false }))
            return { messageId: `m${n}`, ts: "1700000000.000100" }
          })
      }, "native")
      const report = yield* (yield* Sender.make()).send(entry([{ text: "a" }]), channel, { attempt: 1 })
      expect(report.outcomes[0]).toEqual({
        index: 0,
        kind: "payload",
        messageId: "m1",
        result: { messageId: "m1", ts: "1700000000.000100" }
      })
      const error = yield* (yield* Sender.make()).send(entry([{ text: "b" }]), channel, { attempt: 1 }).pipe(
        Effect.flip
      )
      expect(error).toMatchObject({ _tag: "SendError", message: "quota", retryable: false })
      expect(yield* Ref.get(seen)).toEqual(["a", "b"])
    }))

  it.scoped("an adapter whose Effect is already complete (an Exit) gets the same outcome as one that runs", () =>
    Effect.gen(function*() {
      const results: ReadonlyArray<Exit.Exit<unknown, unknown>> = [
        Exit.succeed({ messageId: "m1" }),
        Exit.succeed({ id: "no messageId" }),
        Exit.fail(new SendError({ message: "quota", retryable: false })),
        Exit.fail({ status: 429, headers: { "retry-after": "3" }, message: "slow down" }),
        Exit.die(new Error("adapter bug")),
        Exit.interrupt(FiberId.none)
      ]
      for (const result of results) {
        const outcome = (wrap: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<unknown, unknown>) =>
          Effect.gen(function*() {
            const channel = yield* ChannelAdapter.normalize({
              outboundContract: "v2",
              sendFinal: () => wrap(result) as Effect.Effect<{ messageId: string }, SendError>
            }, "native")
            return yield* Effect.exit((yield* Sender.make()).send(entry([{ text: "a" }]), channel, { attempt: 1 }))
          })
        const completed = yield* outcome((exit) => exit)
        const running = yield* outcome((exit) => Effect.suspend(() => exit))
        expect(completed).toStrictEqual(running)
      }
      const plain = yield* ChannelAdapter.normalize(
        { outboundContract: "v2", sendFinal: () => ({ messageId: "p1" }) } as never,
        "plain"
      )
      const report = yield* (yield* Sender.make()).send(entry([{ text: "a" }]), plain, { attempt: 1 })
      expect(report.outcomes.map((o) => o.messageId)).toEqual(["p1"])
    }))

  it.scoped("a defect inside an Effect-native adapter becomes a SendError, not a crash", () =>
    Effect.gen(function*() {
      const channel = yield* ChannelAdapter.normalize({
        sendText: () => Effect.die(new Error("adapter bug"))
      }, "native")
      const error = yield* (yield* Sender.make()).send(entry([{ text: "x" }]), channel, { attempt: 1 }).pipe(
        Effect.flip
      )
      expect(error).toMatchObject({ _tag: "SendError", message: "adapter bug", retryable: true })
    }))
})
