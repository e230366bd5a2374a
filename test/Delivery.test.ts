import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { decodeRequest, MAX_TEXT_BYTES, orderingKey } from "../src/Delivery.js"

const valid = { channel: "slack", to: "C1", payloads: [{ text: "hi" }] }

const rejection = (input: unknown) =>
  Effect.runSync(Effect.either(decodeRequest(input))).pipe(
    Either.match({ onLeft: (e) => `${e._tag}: ${e.message}`, onRight: () => "accepted" })
  )

describe("DeliveryRequest decoding", () => {
  it("accepts a minimal request and applies defaults", () => {
    const req = Effect.runSync(decodeRequest(valid))
    expect(req.kind).toBe("final")
    expect(req.bestEffort).toBe(false)
    expect(req.payloads).toEqual([{ text: "hi" }])
  })

  it("accepts media-only, channelData-only and file URLs", () => {
    expect(rejection({ ...valid, payloads: [{ mediaUrls: ["https://x.test/a.png", "file:///tmp/a.pdf"] }] })).toBe(
      "accepted"
    )
    expect(rejection({ ...valid, payloads: [{ channelData: { line: { quickReply: {} } } }] })).toBe("accepted")
  })

  const cases: Array<[string, unknown, RegExp]> = [
    ["empty payloads", { ...valid, payloads: [] }, /^InvalidRequest: payloads: must contain at least one payload/],
    [
      "payload with nothing",
      { ...valid, payloads: [{}] },
      /payloads\[0\]: a payload needs text, mediaUrls or channelData/
    ],
    [
      "payload with empty text only",
      { ...valid, payloads: [{ text: "" }] },
      /payloads\[0\]\.text: must contain a non-whitespace character/
    ],
    [
      "payload with whitespace-only text",
      { ...valid, payloads: [{ text: " \n" }] },
      /payloads\[0\]\.text: must contain a non-whitespace character/
    ],
    ["empty channel", { ...valid, channel: "" }, /channel: must be a non-empty string/],
    ["blank to", { ...valid, to: "   " }, /to: must be a non-empty string/],
    ["missing to", { channel: "slack", payloads: [{ text: "x" }] }, /to: is missing/],
    ["numeric to", { ...valid, to: 42 }, /to: Expected string, actual 42/],
    ["numeric threadId", { ...valid, threadId: 42 }, /threadId: Expected string, actual 42/],
    ["numeric accountId", { ...valid, accountId: 7 }, /accountId: Expected string/],
    [
      "non-URL media",
      { ...valid, payloads: [{ mediaUrls: ["https://ok.test/a", "not a url"] }] },
      /payloads\[0\]\.mediaUrls\[1\]: must be an http\(s\) or file URL/
    ],
    [
      "ftp media",
      { ...valid, payloads: [{ mediaUrls: ["ftp://x.test/a"] }] },
      /mediaUrls\[0\]: must be an http\(s\) or file URL/
    ],
    [
      "text over 1 MB",
      { ...valid, payloads: [{ text: "é".repeat(MAX_TEXT_BYTES / 2 + 1) }] },
      /payloads\[0\]\.text: text is larger than 1048576 bytes/
    ],
    ["unknown kind", { ...valid, kind: "progress" }, /kind: must be "tool", "block" or "final", got "progress"$/],
    ["typo'd field", { ...valid, threadID: "T1" }, /threadID: is unexpected/],
    [
      "typo'd payload field",
      { ...valid, payloads: [{ text: "x" }, { text: "y", mediaURL: "https://ok.test/a" }] },
      /payloads\[1\]\.mediaURL: is unexpected/
    ],
    ["symbol key", { ...valid, [Symbol.for("extra")]: 1 }, /is unexpected/],
    [
      "typo'd field and a bad one, both named",
      { ...valid, to: "", threadID: "T1" },
      /to: must be a non-empty string.*threadID: is unexpected|threadID: is unexpected.*to: must be a non-empty string/
    ],
    ["not an object", "hello", /request: Expected/]
  ]
  for (const [name, input, expected] of cases) {
    it(`rejects ${name} with a message naming the field`, () => {
      expect(rejection(input)).toMatch(expected)
    })
  }

  it("accepts text of exactly 1 MB", () => {
    expect(rejection({ ...valid, payloads: [{ text: "a".repeat(MAX_TEXT_BYTES) }] })).toBe("accepted")
  })

  it("keys conversations by channel, account, recipient and thread without ambiguity", () => {
    expect(orderingKey({ channel: "a|b", to: "c" })).not.toBe(orderingKey({ channel: "a", accountId: "b", to: "c" }))
    expect(orderingKey({ channel: "s", to: "c", threadId: "t" })).toBe(
      orderingKey({ channel: "s", to: "c", threadId: "t" })
    )
  })
})
