import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type { Adapter, Channel } from "../../src/ChannelAdapter.js"
import * as ChannelAdapter from "../../src/ChannelAdapter.js"
import type { ChunkConfig } from "../../src/Chunking.js"
import { OutboxEntry, type ReplyPayload } from "../../src/Delivery.js"
import * as Sender from "../../src/Sender.js"
import * as SendPlan from "../../src/SendPlan.js"
import { entry, makeRecorder, type Recorder, v1Adapter, v2Adapter } from "./fixtures.js"

const normalize = (adapter: Adapter): Channel => Effect.runSync(ChannelAdapter.normalize(adapter, "chat"))

/** The adapters a gateway might register, built over one recorder. */
const adapters = (rec: Recorder): Record<string, Adapter> => ({
  v1: v1Adapter(rec, { textChunkLimit: 50 }),
  v1NoMedia: v1Adapter(rec, { media: false, textChunkLimit: 50 }),
  line: v1Adapter(rec, { payload: true, textChunkLimit: 50 }),
  whole: v1Adapter(rec, { chunker: null }),
  ownChunker: v1Adapter(rec, {
    chunker: (text, limit) => text.match(new RegExp(`[^]{1,${Math.ceil(limit / 2)}}`, "g")) ?? []
  }),
  v2: v2Adapter(rec)
})

/** What the store does to an entry: encode, serialize, parse, decode. */
const storeRoundTrip = (e: OutboxEntry): OutboxEntry =>
  Schema.decodeUnknownSync(OutboxEntry)(JSON.parse(JSON.stringify(Schema.encodeSync(OutboxEntry)(e))))

const chunking: ChunkConfig = {
  channels: { chat: { chunkMode: "newline", accounts: { small: { textChunkLimit: 20 } } } }
}

describe("SendPlan.make", () => {
  it.scoped("numbers the parts of all payloads in order", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const plan = SendPlan.make(
        entry([{ text: "hello" }, { text: "cap", mediaUrls: ["https://a.test/1", "https://a.test/2"] }, {
          text: "  "
        }]),
        normalize(v1Adapter(rec))
      )
      expect(plan).toEqual({
        parts: [
          { kind: "text", index: 0, payloadIndex: 0, text: "hello" },
          { kind: "media", index: 1, payloadIndex: 1, mediaUrl: "https://a.test/1", caption: "cap" },
          { kind: "media", index: 2, payloadIndex: 1, mediaUrl: "https://a.test/2", caption: "" }
        ],
        warnings: []
      })
    }))

  it.scoped("takes per-account and per-channel chunk settings from config", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const channel = normalize(v1Adapter(rec, { textChunkLimit: 1000 }))
      const text = "First paragraph is long enough.\n\nSecond."
      const texts = (e: OutboxEntry) =>
        SendPlan.make(e, channel, chunking).parts.map((p) => (p.kind === "text" ? p.text : p.kind))
      expect(texts(entry([{ text }]))).toEqual(["First paragraph is long enough.", "Second."])
      expect(texts(entry([{ text }], { accountId: "small" }))).toEqual([
        "First paragraph is ",
        "long enough.",
        "Second."
      ])
      expect(SendPlan.make(entry([{ text }]), channel).parts).toHaveLength(1)
    }))

  it.scoped("falls back to the core chunker when the adapter's chunker throws, and says so", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const channel = normalize(v1Adapter(rec, {
        textChunkLimit: 4,
        chunker: () => {
          throw new Error("bad regex")
        }
      }))
      const plan = SendPlan.make(entry([{ text: "abcdefgh" }]), channel)
      expect(plan.parts.map((p) => p.kind === "text" && p.text)).toEqual(["abcd", "efgh"])
      expect(plan.warnings).toEqual([`channel "chat" chunker threw (bad regex); used the core length chunker`])
    }))
})

const piece = fc.constantFrom("word ", "x", "\n", "\n\n", "```\n", "😀", "  ")
const payload: fc.Arbitrary<ReplyPayload> = fc
  .record(
    {
      text: fc.array(piece, { maxLength: 60 }).map((ps) => ps.join("")),
      mediaUrls: fc.array(fc.constantFrom("https://cdn.test/a.png", "file:///tmp/b.pdf", "http://x.test/c"), {
        maxLength: 3
      }),
      channelData: fc.dictionary(fc.constantFrom("flex", "blocks"), fc.jsonValue(), { maxKeys: 2 })
    },
    { requiredKeys: [] }
  )
  .filter((p) =>
    (p.text !== undefined && p.text.length > 0) || (p.mediaUrls?.length ?? 0) > 0 || p.channelData !== undefined
  )
const storedEntry = fc
  .record({
    payloads: fc.array(payload, { minLength: 1, maxLength: 4 }),
    accountId: fc.option(fc.constantFrom("small", "other"), { nil: undefined }),
    threadId: fc.option(fc.constant("T1"), { nil: undefined }),
    partsDelivered: fc.nat({ max: 5 })
  })
  .map(({ accountId, payloads, partsDelivered, threadId }) =>
    entry(payloads, {
      partsDelivered,
      ...(accountId !== undefined ? { accountId } : {}),
      ...(threadId !== undefined ? { threadId } : {})
    })
  )

describe("replay equivalence", () => {
  it.prop(
    "plan(entry) is equal before and after a store round trip, for every adapter kind",
    [storedEntry],
    ([e]) => {
      const rec = Effect.runSync(makeRecorder())
      const restored = storeRoundTrip(e)
      for (const adapter of Object.values(adapters(rec))) {
        const channel = normalize(adapter)
        expect(SendPlan.make(restored, channel, chunking)).toEqual(SendPlan.make(e, channel, chunking))
      }
    },
    { fastCheck: { numRuns: 150 } }
  )

  it.scoped("the live send and a recovery send of the stored row make identical adapter calls", () =>
    Effect.gen(function*() {
      const e = entry(
        [
          { text: "Intro paragraph.\n\n```\ncode\n\nmore code\n```\n\nOutro that is quite a bit longer than twenty." },
          { text: "pics", mediaUrls: ["https://cdn.test/a.png", "https://cdn.test/b.png"], channelData: { x: 1 } }
        ],
        { threadId: "T-42", replyToId: "M-7", accountId: "small", idempotencyKey: "reply-1", silent: true }
      )
      const sender = yield* Sender.make({ chunking })
      for (const name of ["v1", "line", "v2"] as const) {
        const live = yield* makeRecorder()
        const recovered = yield* makeRecorder()
        yield* sender.send(e, normalize(adapters(live)[name]!), { attempt: 1 })
        yield* sender.send(storeRoundTrip(e), normalize(adapters(recovered)[name]!), { attempt: 1 })
        const liveCalls = yield* live.calls
        expect(liveCalls.length).toBeGreaterThan(0)
        expect(yield* recovered.calls).toEqual(liveCalls)
        // the recovered reply still lands in the thread
        expect(liveCalls.every((c) => c.ctx.threadId === "T-42" && c.ctx.replyToId === "M-7")).toBe(true)
      }
    }))
})
