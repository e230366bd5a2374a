/**
 * Bad input corpus: FastCheck-generated requests (wrong types, missing and unknown fields, huge strings, unicode
 * edge cases, prototype-pollution keys and data JSON cannot hold in channelData/metadata, non-URL media, payloads
 * with nothing to send, values whose every read throws) go through `Outbox.deliver` on a SQLite file. Each one
 * either delivers exactly what was asked — the adapter gets the payload as given, and the stored row reads back the
 * same (what recovery would replay) — or fails with InvalidRequest/UnknownChannel and leaves the table unchanged and
 * the adapter uncalled. Nothing may ever pollute Object.prototype.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type { AdapterV2, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import { MAX_JSON_DEPTH, MAX_TEXT_BYTES } from "../../src/Delivery.js"
import type { OutboxEntry } from "../../src/Delivery.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { tempDatabases } from "../support/files.js"

const fc = FastCheck
const databases = tempDatabases("badinput")

/** An outbox on a fresh SQLite file whose "chat" channel (v2: whole payloads) records every call. */
const recordingOutbox = () => {
  const calls: Array<SendContext> = []
  const chat: AdapterV2 = {
    outboundContract: "v2",
    sendFinal: (ctx) =>
      Effect.sync(() => {
        calls.push(ctx)
        return { messageId: `m-${calls.length}` }
      })
  }
  const layer = Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
    SqliteOutboxRepo.layerFile({ filename: databases.fresh() }),
    ChannelRegistry.layer({ chat }),
    OutboxConfig.layer({ nodeId: "bad-input", retryJitter: false })
  )))
  return { calls, layer }
}

// ------------------------------------------------------------------------------------------------------------
// arbitraries

const HUGE = {
  ascii1MB: "x".repeat(MAX_TEXT_BYTES),
  ascii1MBPlus1: "x".repeat(MAX_TEXT_BYTES + 1),
  twoByte1MB: "é".repeat(MAX_TEXT_BYTES / 2),
  twoByte1MBPlus: "é".repeat(MAX_TEXT_BYTES / 2 + 1),
  longRecipient: "u".repeat(100_000)
}

const edgeStrings = [
  "",
  " ",
  "\t\n",
  "\u0000",
  "a\u0000b",
  "\uFEFFbom",
  "e\u0301",
  "👩‍👩‍👧‍👦",
  "\u202Eevil",
  "𝕳𝖊𝖑𝖑𝖔",
  "null",
  "__proto__",
  "constructor",
  "toString",
  "\r\n\r\n",
  "\u2028\u2029",
  "💩".repeat(64),
  "\u00A0",
  "ｆｕｌｌ",
  "<script>alert(1)</script>",
  "'; DROP TABLE outbox_entries; --"
]
/** halves of surrogate pairs: not well-formed Unicode, cannot be stored as SQLite TEXT as they are */
const loneSurrogates = ["\uD800", "x\uDC00", "a\uD83D", "\uDFFF\uD800"]

const wellFormedText = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 3, arbitrary: fc.constantFrom(...edgeStrings) },
  { weight: 1, arbitrary: fc.constantFrom(HUGE.ascii1MB, HUGE.twoByte1MB) }
)
const anyText = fc.oneof(
  { weight: 8, arbitrary: wellFormedText },
  { weight: 1, arbitrary: fc.constantFrom(...loneSurrogates) },
  { weight: 1, arbitrary: fc.constantFrom(HUGE.ascii1MBPlus1, HUGE.twoByte1MBPlus) }
)
const wrongType = fc.constantFrom<unknown>(
  42,
  null,
  true,
  {},
  [],
  ["x"],
  undefined,
  Object.create(null),
  Symbol("s"),
  7n,
  NaN,
  () => 1
)

/**
 * Values whose reads throw, made when a mutation runs: the test runner would read them itself if they were generated
 * values (and a revoked Proxy throws on any look at all).
 */
const unreadable: ReadonlyArray<() => unknown> = [
  () => {
    const boom = () => {
      throw new Error("trap")
    }
    return new Proxy({}, { get: boom, ownKeys: boom, getPrototypeOf: boom, getOwnPropertyDescriptor: boom })
  },
  () => {
    const { proxy, revoke } = Proxy.revocable([], {})
    revoke()
    return proxy
  },
  () => ({
    toString() {
      throw new Error("toString")
    }
  })
]

const goodUrl = fc.oneof(
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
  fc.constantFrom("file:///tmp/a.png", "https://example.com/ä?q=1#x", "http://[::1]:8080/x", "HTTPS://EXAMPLE.COM/A")
)
const badUrl = fc.constantFrom(
  "not a url",
  "",
  " ",
  "javascript:alert(1)",
  "ftp://example.com/x",
  "data:image/png;base64,AAAA",
  "//example.com/x",
  "http//missing-colon",
  "https://",
  "mailto:a@b.c",
  "\uD800"
)

/** JSON as a gateway might receive it: parsed, so `__proto__` is an own key, not a prototype */
const prototypeKeys = [
  `{"__proto__":{"polluted":true}}`,
  `{"constructor":{"prototype":{"polluted":true}}}`,
  `{"a":{"__proto__":{"polluted":true}},"b":[{"__proto__":{"polluted":true}}]}`,
  `{"__proto__":null,"x":1}`,
  `{"__proto__":[1,2]}`,
  `{"toString":"x","hasOwnProperty":1,"valueOf":null}`,
  `{"prototype":{"polluted":true},"__defineGetter__":"x"}`
]
const goodRecord = fc.oneof(
  fc.constantFrom(...prototypeKeys).map((json): Record<string, unknown> => JSON.parse(json)),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }))
)
const nested = (levels: number): unknown => {
  let out: unknown = "leaf"
  for (let i = 0; i < levels; i++) out = [out]
  return out
}
const cyclic: Record<string, unknown> = { a: [1] }
;(cyclic.a as Array<unknown>).push({ back: cyclic })
/** Records JSON cannot hold (the store would keep something else, or throw while encoding): always InvalidRequest. */
const nonJsonRecord = fc.constantFrom<unknown>(
  { n: NaN },
  { n: -Infinity },
  { n: 1n },
  { u: undefined },
  { a: [1, undefined] },
  { f: () => 1 },
  { s: Symbol("s") },
  { d: new Date(0) },
  { m: new Map([[1, 2]]) },
  cyclic,
  { deep: nested(20_000) },
  { deep: nested(MAX_JSON_DEPTH) }
)
const anyRecord = fc.oneof(
  { weight: 4, arbitrary: goodRecord },
  { weight: 1, arbitrary: fc.constantFrom<unknown>("s", 5, null, [1, 2]) },
  { weight: 1, arbitrary: nonJsonRecord }
)

/** Builds an object from optional fields: `undefined` from `fc.option` means "absent". */
const compact = (fields: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(fields)) {
    if (v !== ABSENT) {
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
    }
  }
  return out
}
const ABSENT = Symbol("absent")
const opt = <A>(arb: FastCheck.Arbitrary<A>) => fc.option(arb, { nil: ABSENT, freq: 2 })

const validPayload = fc.record({
  text: opt(wellFormedText),
  mediaUrls: opt(fc.array(goodUrl, { maxLength: 3 })),
  channelData: opt(goodRecord)
}).map(compact).filter((p) =>
  (typeof p.text === "string" && p.text.trim().length > 0) || (Array.isArray(p.mediaUrls) && p.mediaUrls.length > 0) ||
  p.channelData !== undefined
)

/** Requests a gateway could legitimately send, with every edge case they may contain. */
const validRequest = fc.record({
  channel: fc.constant("chat"),
  to: fc.string({ unit: "binary", minLength: 1, maxLength: 30 }).filter((s) => s.trim().length > 0),
  accountId: opt(fc.string({ unit: "binary", maxLength: 20 })),
  threadId: opt(fc.string({ unit: "binary", maxLength: 20 })),
  replyToId: opt(fc.string({ unit: "binary", maxLength: 20 })),
  payloads: fc.array(validPayload, { minLength: 1, maxLength: 3 }),
  kind: opt(fc.constantFrom("tool", "block", "final")),
  bestEffort: opt(fc.boolean()),
  silent: opt(fc.boolean()),
  metadata: opt(goodRecord)
}).map(compact)

/** One thing wrong (or merely odd) with a request. */
type Mutation = (request: Record<string, unknown>) => void

const fields = [
  "channel",
  "to",
  "accountId",
  "threadId",
  "replyToId",
  "payloads",
  "kind",
  "bestEffort",
  "silent",
  "idempotencyKey",
  "metadata"
]

/** A payload that is wrong (whitespace-only text and nothing else: nothing to send), or odd but valid (lone surrogates in text, 1 MB). */
const oddPayload = fc.oneof(
  fc.record({ text: fc.oneof(anyText, wrongType) }),
  fc.record({
    mediaUrls: fc.oneof(fc.array(fc.oneof(goodUrl, badUrl), { minLength: 1, maxLength: 3 }), wrongType, goodUrl)
  }),
  fc.record({ channelData: anyRecord }),
  fc.record({ text: fc.constantFrom(" ", "\n\t", "\u00A0") }),
  fc.record({ text: fc.constant("hi"), caption: fc.constant("unknown field") }),
  fc.constant({}),
  wrongType
)

const mutation: FastCheck.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.constantFrom(...fields), wrongType).map(([field, value]): Mutation => (r) => {
    r[field] = value
  }),
  fc.constantFrom("channel", "to", "payloads").map((field): Mutation => (r) => {
    delete r[field]
  }),
  fc.constantFrom("unexpected", "__proto__", "constructor").map((field): Mutation => (r) => {
    Object.defineProperty(r, field, { value: { polluted: true }, enumerable: true, writable: true, configurable: true })
  }),
  fc.constantFrom("nope", "", " ", "CHAT").map((channel): Mutation => (r) => {
    r.channel = channel
  }),
  fc.tuple(
    fc.constantFrom("to", "accountId", "threadId", "replyToId", "idempotencyKey"),
    fc.constantFrom(...loneSurrogates, ...edgeStrings)
  )
    .map(([field, value]): Mutation => (r) => {
      r[field] = value
    }),
  fc.constantFrom<unknown>([], "hello", null, [null], [{}], [[]]).map((payloads): Mutation => (r) => {
    r.payloads = payloads
  }),
  fc.tuple(oddPayload, fc.nat(2)).map(([payload, i]): Mutation => (r) => {
    const payloads = Array.isArray(r.payloads) ? [...r.payloads] : []
    payloads[Math.min(i, payloads.length)] = payload
    r.payloads = payloads
  }),
  fc.constantFrom<unknown>("FINAL", 1, null, "").map((kind): Mutation => (r) => {
    r.kind = kind
  }),
  fc.constantFrom<unknown>("yes", 0, "true").map((value): Mutation => (r) => {
    r.bestEffort = value
  }),
  fc.oneof(fc.uuid(), fc.constantFrom("", " ", "\uD800")).map((key): Mutation => (r) => {
    r.idempotencyKey = key
  }),
  fc.constantFrom<unknown>("s", 5, null, [1, 2]).map((metadata): Mutation => (r) => {
    r.metadata = metadata
  }),
  nonJsonRecord.map((metadata): Mutation => (r) => {
    r.metadata = metadata
  }),
  fc.tuple(fc.constantFrom(...fields), fc.nat(unreadable.length - 1)).map(([field, i]): Mutation => (r) => {
    r[field] = unreadable[i]!()
  }),
  fc.tuple(fc.constantFrom("payload", "text", "mediaUrls", "channelData"), fc.nat(unreadable.length - 1))
    .map(([at, i]): Mutation => (r) => {
      r.payloads = [at === "payload" ? unreadable[i]!() : { [at]: unreadable[i]!() }]
    })
)

/** Anything: a legitimate request with up to three things wrong or odd about it (a fresh copy: samples are reused when shrinking). */
const anyRequest = fc.tuple(validRequest, fc.array(mutation, { maxLength: 3 })).map(([request, mutations]) => {
  const copy = { ...request }
  for (const mutate of mutations) mutate(copy)
  return copy
})

// ------------------------------------------------------------------------------------------------------------
// the check of one request

/** A comparable form of any JSON-like value that keeps own keys such as `__proto__` as data. */
const canonical = (u: unknown): unknown => {
  if (Array.isArray(u)) return u.map(canonical)
  if (typeof u === "object" && u !== null) {
    return ["object", Object.keys(u).sort().map((k) => [k, canonical(Reflect.get(u, k))])]
  }
  // JSON has no -0: stored data comes back as 0, which is the same number to any channel
  return Object.is(u, -0) ? 0 : u
}

/** Own enumerable keys equal the keys `for…in` sees: nothing inherited from a planted prototype. */
const inheritsNothing = (u: unknown): boolean => {
  if (typeof u !== "object" || u === null) return true
  if (Array.isArray(u)) return u.every(inheritsNothing)
  const proto = Object.getPrototypeOf(u)
  if (proto !== Object.prototype && proto !== null) return false
  const inherited: Array<string> = []
  for (const k in u) if (!Object.hasOwn(u, k)) inherited.push(k)
  return inherited.length === 0 && Object.keys(u).every((k) => inheritsNothing(Reflect.get(u, k)))
}

const expectNoPollution = () => {
  for (const key of ["polluted", "x", "0"]) {
    expect(Reflect.get(Object.prototype, key)).toBeUndefined()
    expect(Reflect.get({}, key)).toBeUndefined()
  }
}

const addressOf = (e: Pick<OutboxEntry, "channel" | "to" | "accountId" | "threadId" | "replyToId">) => ({
  channel: e.channel,
  to: e.to,
  accountId: e.accountId,
  threadId: e.threadId,
  replyToId: e.replyToId
})

type Verdict = "delivered" | "duplicate" | "rejected"

const checkOne = (calls: Array<SendContext>, seenKeys: Set<string>) => (input: Record<string, unknown>) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const before = (yield* outbox.stats).total
    const callsBefore = calls.length
    // decoded at run time as a JavaScript caller's request is
    const result = yield* Effect.either(outbox.deliver(input as unknown as Outbox.DeliverInput))
    const after = (yield* outbox.stats).total
    expectNoPollution()
    if (Either.isLeft(result)) {
      expect(["InvalidRequest", "UnknownChannel"]).toContain(result.left._tag)
      expect(after).toBe(before)
      expect(calls.length).toBe(callsBefore)
      return "rejected" satisfies Verdict
    }
    const key = input.idempotencyKey
    if (typeof key === "string" && seenKeys.has(key)) {
      expect(result.right._tag).toBe("Duplicate")
      expect(after).toBe(before)
      return "duplicate" satisfies Verdict
    }
    if (typeof key === "string") seenKeys.add(key)
    expect(result.right._tag).toBe("Delivered")
    expect(after).toBe(before + 1)
    const payloads = input.payloads as ReadonlyArray<Record<string, unknown>>
    const sent = calls.slice(callsBefore)
    // the adapter got exactly the payloads asked for, as data, with nothing planted in their prototypes
    // every payload of an accepted request has something to send
    expect(sent.map((c) => canonical(c.payload))).toEqual(payloads.map(canonical))
    for (const c of sent) expect(inheritsNothing(c.payload)).toBe(true)
    const request = {
      channel: input.channel,
      to: input.to,
      accountId: input.accountId,
      threadId: input.threadId,
      replyToId: input.replyToId
    }
    for (const c of sent) expect(addressOf(c)).toEqual(request)
    // and the row reads back as the same request: a replay by recovery would send the same thing to the same place
    const row = Option.getOrThrow(yield* outbox.get(result.right.entryId))
    expect(row.state).toBe("delivered")
    expect(addressOf(row)).toEqual(request)
    expect(canonical(row.payloads)).toEqual(canonical(payloads))
    expect(canonical(row.metadata)).toEqual(canonical(input.metadata))
    expect(inheritsNothing(row.payloads) && inheritsNothing(row.metadata)).toBe(true)
    return "delivered" satisfies Verdict
  })

/** Runs `property` over `arbitrary` inside the current Effect runtime. */
const assertProperty = <A>(
  arbitrary: FastCheck.Arbitrary<A>,
  property: (a: A) => Effect.Effect<void, unknown, Outbox.Outbox>,
  numRuns: number
) =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<Outbox.Outbox>()
    yield* Effect.promise(() =>
      fc.assert(fc.asyncProperty(arbitrary, (a) => Runtime.runPromise(runtime)(property(a))), {
        numRuns,
        seed: 20_240_605
      })
    )
  })

describe("bad input corpus", () => {
  it.effect(
    "every request either delivers exactly what was asked, or fails InvalidRequest/UnknownChannel with nothing stored or sent",
    () => {
      const { calls, layer } = recordingOutbox()
      const seenKeys = new Set<string>()
      const verdicts: Record<Verdict, number> = { delivered: 0, duplicate: 0, rejected: 0 }
      return Effect.gen(function*() {
        yield* assertProperty(anyRequest, (input) =>
          Effect.map(checkOne(calls, seenKeys)(input), (v) => {
            verdicts[v]++
          }), 400)
        // the corpus is not one-sided
        expect(verdicts.delivered).toBeGreaterThan(40)
        expect(verdicts.rejected).toBeGreaterThan(40)
      }).pipe(Effect.provide(layer))
    },
    60_000
  )

  it.effect(
    "requests with edge-case content that a gateway may legitimately send are always delivered, exactly",
    () => {
      const { calls, layer } = recordingOutbox()
      return assertProperty(validRequest, (input) =>
        Effect.map(checkOne(calls, new Set())(input), (verdict) => {
          expect(verdict).toBe("delivered")
        }), 200).pipe(Effect.provide(layer))
    },
    60_000
  )

  it.effect("__proto__ in channelData and metadata is kept as data, through the store and back, and pollutes nothing", () => {
    const { calls, layer } = recordingOutbox()
    return Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const input = JSON.parse(
        `{"channel":"chat","to":"u","payloads":[{"text":"hi","channelData":{"__proto__":{"polluted":true},"line":{"a":1}}}],
        "metadata":{"__proto__":{"polluted":true}}}`
      )
      const outcome = yield* outbox.deliver(input)
      const channelData = calls[0]!.payload.channelData!
      expect(Object.keys(channelData)).toEqual(["__proto__", "line"])
      expect(Reflect.get(Reflect.getOwnPropertyDescriptor(channelData, "__proto__")?.value ?? {}, "polluted")).toBe(
        true
      )
      expect(Object.getPrototypeOf(channelData)).toBe(Object.prototype)
      expect(Reflect.get(channelData, "polluted")).toBeUndefined()
      expect(JSON.stringify(channelData)).toBe(`{"__proto__":{"polluted":true},"line":{"a":1}}`)
      const row = Option.getOrThrow(yield* outbox.get(outcome.entryId))
      expect(JSON.stringify(row.payloads[0]!.channelData)).toBe(`{"__proto__":{"polluted":true},"line":{"a":1}}`)
      expect(JSON.stringify(row.metadata)).toBe(`{"__proto__":{"polluted":true}}`)
      expect(Reflect.get(row.payloads[0]!.channelData!, "polluted")).toBeUndefined()
      expectNoPollution()
    }).pipe(Effect.provide(layer))
  })

  it.effect("a recipient, thread or idempotency key with a lone surrogate is refused: SQLite would store another string", () => {
    const { calls, layer } = recordingOutbox()
    return Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      for (const field of ["to", "threadId", "accountId", "replyToId", "idempotencyKey"]) {
        const error = yield* Effect.flip(
          outbox.deliver({ channel: "chat", to: "u", payloads: [{ text: "x" }], [field]: "user\uD800" })
        )
        expect(error._tag).toBe("InvalidRequest")
        expect(error.message).toMatch(new RegExp(`^${field}: .*well-formed`))
      }
      expect((yield* outbox.stats).total).toBe(0)
      expect(calls).toHaveLength(0)
      // in text it is JSON-escaped in the row and comes back as it went in
      const outcome = yield* outbox.deliver({ channel: "chat", to: "u", payloads: [{ text: "a\uD800b" }] })
      const row = Option.getOrThrow(yield* outbox.get(outcome.entryId))
      expect(row.payloads[0]!.text).toBe("a\uD800b")
    }).pipe(Effect.provide(layer))
  })
})
