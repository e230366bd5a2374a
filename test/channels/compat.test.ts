/**
 * The compat rules of the channel layer, each named after the seed bug it prevents.
 * Everything goes through the public path: registry → sender → recording adapter.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type { Adapter } from "../../src/ChannelAdapter.js"
import * as ChannelAdapter from "../../src/ChannelAdapter.js"
import { ChannelRegistry } from "../../src/ChannelRegistry.js"
import * as Registry from "../../src/ChannelRegistry.js"
import type { ReplyPayload } from "../../src/Delivery.js"
import { SendError } from "../../src/DeliveryError.js"
import * as Sender from "../../src/Sender.js"
import { captureLogs, entry, makeRecorder, v1Adapter, v2Adapter } from "./fixtures.js"

const media = ["https://cdn.test/1.png", "https://cdn.test/2.png", "https://cdn.test/3.png"]

/** Registers `adapter` as channel "chat" and sends `payloads` through it. */
const deliver = (adapter: Adapter, payloads: ReadonlyArray<ReplyPayload>) =>
  Effect.gen(function*() {
    const registry = yield* Registry.make({ chat: adapter })
    const channel = yield* registry.get("chat")
    return yield* (yield* Sender.make()).send(entry(payloads), channel, { attempt: 1 })
  })

describe("rule 1: v1 adapters keep core chunking and per-URL media", () => {
  it.scoped("seed bug: channelData + 3 media to a plain v1 adapter made 1 call — it makes 3 sendMedia calls", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const report = yield* deliver(v1Adapter(rec), [{ text: "look", mediaUrls: media, channelData: { flex: {} } }])
      const calls = yield* rec.calls
      expect(calls.map((c) => c.method)).toEqual(["sendMedia", "sendMedia", "sendMedia"])
      expect(calls.map((c) => c.ctx.mediaUrl)).toEqual(media)
      expect(calls.map((c) => c.ctx.text)).toEqual(["look", "", ""])
      expect(report.outcomes.map((o) => o.kind)).toEqual(["media", "media", "media"])
    }))

  it.scoped("seed bug: long text to a v1 adapter went out whole — it is chunked at the adapter's limit", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const text = "a".repeat(250)
      yield* deliver(v1Adapter(rec, { textChunkLimit: 100 }), [{ text }])
      const calls = yield* rec.calls
      expect(calls.map((c) => c.method)).toEqual(["sendText", "sendText", "sendText"])
      expect(calls.map((c) => c.ctx.text.length)).toEqual([100, 100, 50])
      expect(calls.map((c) => c.ctx.text).join("")).toBe(text)
    }))

  it.scoped("a v1 adapter's chunking uses the 4000 default without textChunkLimit", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      yield* deliver(v1Adapter(rec), [{ text: "b".repeat(9000) }])
      expect((yield* rec.calls).map((c) => c.ctx.text.length)).toEqual([4000, 4000, 1000])
    }))
})

describe("rule 2: the whole-payload fast path only where the adapter has it natively", () => {
  it.scoped("LINE-style v1 sendPayload takes a channelData payload in exactly one call, no sendText/sendMedia", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const payload = { text: "menu", mediaUrls: media, channelData: { line: { quickReply: { items: [] } } } }
      yield* deliver(v1Adapter(rec, { payload: true }), [payload])
      const calls = yield* rec.calls
      expect(calls.map((c) => c.method)).toEqual(["sendPayload"])
      expect(calls[0]!.ctx.payload).toEqual(payload)
      expect(calls[0]!.ctx.text).toBe("menu")
    }))

  it.scoped("v2 sendFinal takes a channelData payload in exactly one call", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const payload = { text: "card", mediaUrls: media, channelData: { slack: { blocks: [] } } }
      yield* deliver(v2Adapter(rec), [payload])
      const calls = yield* rec.calls
      expect(calls.map((c) => c.method)).toEqual(["sendFinal"])
      expect(calls[0]!.ctx.payload).toEqual(payload)
    }))

  it.scoped("a v1 sendPayload is not used for payloads without channelData", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      yield* deliver(v1Adapter(rec, { payload: true }), [{ text: "plain" }, { mediaUrls: [media[0]!] }])
      expect(yield* rec.methods).toEqual(["sendText", "sendMedia"])
    }))
})

describe("rule 3: v2 only if declared AND implemented", () => {
  it.scoped("seed bug: outboundContract v2 without sendFinal was treated as v2 and sent nothing — registration fails", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const broken = {
        outboundContract: "v2",
        sendText: (ctx: ChannelAdapter.SendContext, o: ChannelAdapter.CallOptions) =>
          rec.respond("sendText", ctx, o.signal)
      }
      const exit = yield* Layer.build(Registry.layer({ chat: broken as unknown as Adapter })).pipe(
        Effect.scoped,
        Effect.exit
      )
      expect(exit).toStrictEqual(
        Exit.fail(
          new ChannelAdapter.InvalidAdapter({
            channel: "chat",
            reason: `it declares outboundContract "v2" but does not implement sendFinal(ctx)`
          })
        )
      )
      expect(Exit.isFailure(exit) && String(exit.cause).includes("sendFinal")).toBe(true)
      expect(yield* rec.calls).toEqual([])
    }))

  it.scoped("a v1 adapter is warned about once at registration, not on every send", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const rec = yield* makeRecorder()
      yield* Effect.gen(function*() {
        const registry = yield* ChannelRegistry
        const channel = yield* registry.get("chat")
        const sender = yield* Sender.make()
        for (let i = 0; i < 3; i++) yield* sender.send(entry([{ text: `msg ${i}` }]), channel, { attempt: 1 })
      }).pipe(
        Effect.provide(Registry.layer({ chat: v1Adapter(rec), modern: v2Adapter(rec) })),
        Effect.provide(logs.layer)
      )
      expect(yield* rec.methods).toEqual(["sendText", "sendText", "sendText"])
      const v1Warnings = logs.lines.filter((l) =>
        l.level === "WARN" && l.message.includes("v1 outbound adapter contract")
      )
      expect(v1Warnings).toHaveLength(1)
      expect(v1Warnings[0]!.message).toContain(`channel "chat"`)
    }))
})

describe("rule 4: media to an adapter without sendMedia", () => {
  it.scoped("seed bug #32788: a media-only payload was acked with nothing sent — it fails permanently", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const error = yield* deliver(v1Adapter(rec, { media: false }), [{ mediaUrls: media }]).pipe(Effect.flip)
      expect(error).toBeInstanceOf(SendError)
      expect(error._tag).toBe("SendError")
      const sendError = error as SendError
      expect(sendError.retryable).toBe(false)
      expect(sendError.message).toContain("no sendMedia")
      expect(sendError.partsDelivered).toBe(0)
      expect(yield* rec.calls).toEqual([])
    }))

  it.scoped("text + media to an adapter without sendMedia sends the text and logs a warning", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const rec = yield* makeRecorder()
      const report = yield* deliver(v1Adapter(rec, { media: false }), [{ text: "see attached", mediaUrls: media }])
        .pipe(
          Effect.provide(logs.layer)
        )
      const calls = yield* rec.calls
      expect(calls.map((c) => [c.method, c.ctx.text])).toEqual([["sendText", "see attached"]])
      expect(report.partsDelivered).toBe(1)
      expect(logs.lines).toContainEqual({
        level: "WARN",
        message: `channel "chat" has no sendMedia: payload 0 sent as text only, 3 media URL(s) dropped`
      })
    }))

  it.scoped("a channelData-only payload to a v1 adapter without sendPayload fails rather than sending nothing", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const error = yield* deliver(v1Adapter(rec), [{ channelData: { flex: {} } }]).pipe(Effect.flip)
      expect(error).toMatchObject({ _tag: "SendError", retryable: false })
      expect(yield* rec.calls).toEqual([])
    }))
})

describe("rule 5: v2 adapters get whole payloads", () => {
  it.scoped("sendFinal exactly once per payload; its v1 methods are never called", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const payloads = [{ text: "x".repeat(9000) }, { text: "pics", mediaUrls: media }, { mediaUrls: [media[0]!] }]
      const report = yield* deliver(v2Adapter(rec), payloads)
      const calls = yield* rec.calls
      expect(calls.map((c) => c.method)).toEqual(["sendFinal", "sendFinal", "sendFinal"])
      expect(calls.map((c) => c.ctx.payload)).toEqual(payloads)
      expect(calls.map((c) => c.ctx.text)).toEqual(["x".repeat(9000), "pics", ""])
      expect(report.outcomes.map((o) => o.kind)).toEqual(["payload", "payload", "payload"])
    }))
})
