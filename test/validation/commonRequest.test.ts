/**
 * `decodeRequest` checks the common request by hand (`internal/commonRequest`) and sends the rest to the Schema: on
 * every input here both give the same answer (`outcome` compares them), and the common shapes do take the hand check.
 */
import { describe, expect, it } from "@effect/vitest"
import { commonRequest, MAX_TEXT_BYTES } from "../../src/internal/commonRequest.js"
import { decoded, outcome, valid } from "./support.js"

/** Values of every kind a field may be given. */
const values: ReadonlyArray<unknown> = [
  "chat",
  "u1",
  "",
  " ",
  "\t\n",
  "a\uD800b",
  "\uD83D\uDE00",
  "final",
  "tool",
  "block",
  "FINAL",
  0,
  1,
  Number.NaN,
  true,
  false,
  null,
  undefined,
  {},
  [],
  ["x"],
  { text: "hi" },
  Object.create(null),
  new Date(0),
  10n,
  Symbol("s")
]

const fields = [
  "channel",
  "to",
  "accountId",
  "threadId",
  "replyToId",
  "payloads",
  "kind",
  "bestEffort",
  "idempotencyKey",
  "silent",
  "metadata",
  "mediaUrls",
  "other"
]

const payloadVariants: ReadonlyArray<unknown> = [
  [{ text: "hi" }],
  [{ text: "hi" }, { text: "second" }],
  [{ text: "" }],
  [{ text: "   " }],
  [{ text: "hi", mediaUrls: [] }],
  [{ text: " ", mediaUrls: ["https://example.com/a.png"] }],
  [{ text: "hi", channelData: { a: 1 } }],
  [{ text: "hi", extra: 1 }],
  [{ text: 5 }],
  [{ text: undefined }],
  [{}],
  [Object.assign(Object.create(null), { text: "hi" })],
  [
    new (class Payload {
      text = "hi"
    })()
  ],
  [],
  // eslint-disable-next-line no-sparse-arrays
  [, { text: "hi" }],
  [{ text: "x".repeat(Math.floor(MAX_TEXT_BYTES / 3)) }],
  [{ text: "é".repeat(Math.floor(MAX_TEXT_BYTES / 3) + 1) }],
  [{ text: "é".repeat(MAX_TEXT_BYTES / 2 + 1) }],
  [{ text: "a\uD800" }],
  { 0: { text: "hi" }, length: 1 },
  "hi"
]

describe("the hand check of the common request gives the Schema's answer", () => {
  it("on every value in every field", () => {
    for (const field of fields) {
      for (const value of values) {
        outcome({ ...valid, [field]: value })
      }
    }
  })

  it("on payloads of every shape, and on a field present but undefined", () => {
    for (const payloads of payloadVariants) outcome({ ...valid, payloads })
    for (const field of ["accountId", "threadId", "replyToId", "kind", "bestEffort", "idempotencyKey", "silent"]) {
      outcome({ ...valid, [field]: undefined })
    }
    const { channel: _channel, ...noChannel } = valid
    outcome(noChannel)
    outcome({ ...valid, [Symbol("s")]: 1 })
    outcome(Object.defineProperty({ ...valid }, "hidden", { value: 1, enumerable: false }))
    outcome(Object.assign(Object.create(null), valid))
    outcome(
      new (class Request {
        channel = "chat"
        to = "u"
        payloads = [{ text: "hi" }]
      })()
    )
  })

  it("on requests with every optional field set", () => {
    const full = {
      ...valid,
      accountId: "acct",
      threadId: "t1",
      replyToId: "m1",
      kind: "tool",
      bestEffort: true,
      idempotencyKey: "k1",
      silent: false
    }
    expect(outcome(full)).toBe("accepted")
    expect(decoded(full)).toMatchObject({ ...full, payloads: [{ text: "hi" }] })
    for (const field of Object.keys(full)) {
      for (const value of values) outcome({ ...full, [field]: value })
    }
  })

  it("takes the hand check for the common shapes, with the Schema's defaults", () => {
    expect(commonRequest(valid)).toStrictEqual({
      channel: "chat",
      to: "u",
      payloads: [{ text: "hi" }],
      kind: "final",
      bestEffort: false
    })
    expect(commonRequest({ ...valid, threadId: "t", idempotencyKey: "k", silent: true, kind: "block" })).toBeDefined()
    expect(commonRequest({ ...valid, payloads: [{ text: "a" }, { text: "b" }] })).toBeDefined()
    // the rest is the Schema's
    expect(commonRequest({ ...valid, metadata: {} })).toBeUndefined()
    expect(commonRequest({ ...valid, payloads: [{ text: "hi", mediaUrls: [] }] })).toBeUndefined()
    expect(commonRequest({ ...valid, to: " " })).toBeUndefined()
  })

  it("gives a request that is a DeliveryRequest, as the Schema's is", () => {
    const request = decoded(valid)
    expect(request.constructor.name).toBe("DeliveryRequest")
    expect(JSON.stringify(request)).toBe(
      JSON.stringify({ channel: "chat", to: "u", payloads: [{ text: "hi" }], kind: "final", bestEffort: false })
    )
  })
})
