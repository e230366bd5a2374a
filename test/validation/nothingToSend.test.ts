/**
 * #7: a payload with nothing to send (text that is only whitespace, and no media or channelData) is InvalidRequest
 * naming the field, and nothing is stored; before, such a request was recorded `delivered` with 0 parts.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import { OutboxEntry } from "../../src/Delivery.js"
import * as Metrics from "../../src/Metrics.js"
import { Outbox } from "../../src/Outbox.js"
import { outboxLayer, scriptedAdapter } from "../outbox/harness.js"
import { outcome, valid } from "./support.js"

describe("#7 a payload with nothing to send", () => {
  const blank = ["   ", "\n\t", "\u00A0", "\u2028", ""]
  for (const text of blank) {
    it(`text ${JSON.stringify(text)} and nothing else is InvalidRequest naming payloads[0].text`, () => {
      expect(outcome({ ...valid, payloads: [{ text }] })).toBe(
        "InvalidRequest: payloads[0].text: must contain a non-whitespace character (the payload has no mediaUrls or channelData)"
      )
    })
  }

  it("names the one blank payload among good ones", () => {
    expect(outcome({ ...valid, payloads: [{ text: "hi" }, { text: " " }] })).toMatch(
      /^InvalidRequest: payloads\[1\]\.text: /
    )
  })

  it("blank text with no media (an empty list) is still nothing to send", () => {
    expect(outcome({ ...valid, payloads: [{ text: " ", mediaUrls: [] }] })).toMatch(
      /^InvalidRequest: payloads\[0\]\.text: /
    )
  })

  it("blank text beside media or channelData is fine: those are sent", () => {
    expect(outcome({ ...valid, payloads: [{ text: " ", mediaUrls: ["https://x.test/a.png"] }] })).toBe("accepted")
    expect(outcome({ ...valid, payloads: [{ text: "\n", channelData: {} }] })).toBe("accepted")
    expect(outcome({ ...valid, payloads: [{ text: " x " }] })).toBe("accepted")
  })

  it.effect("deliver and enqueue refuse it and store nothing, send nothing, count nothing delivered", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const deliveredBefore = (yield* Metric.value(Metrics.delivered)).count
        const request = { ...valid, payloads: [{ text: " \n " }] }
        for (
          const error of [yield* Effect.flip(outbox.deliver(request)), yield* Effect.flip(outbox.enqueue(request))]
        ) {
          expect(error._tag).toBe("InvalidRequest")
          expect(error.message).toMatch(/^payloads\[0\]\.text: must contain a non-whitespace character/)
        }
        expect((yield* outbox.stats).total).toBe(0)
        expect(yield* chat.calls).toEqual([])
        expect((yield* Metric.value(Metrics.delivered)).count).toBe(deliveredBefore)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))

  it("a stored row from before the rule still reads back (rows are not re-judged)", () => {
    const row = Schema.decodeUnknownEither(OutboxEntry.fields.payloads)([{ text: " " }])
    expect(Either.isRight(row)).toBe(true)
  })
})
