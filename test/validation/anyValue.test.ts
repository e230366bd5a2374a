/**
 * #11: any value in any field (a null-prototype object, a Proxy whose traps throw, an object whose toString throws, a
 * symbol…) is InvalidRequest naming the field; building the message never throws.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { Outbox } from "../../src/Outbox.js"
import { outboxLayer, scriptedAdapter } from "../outbox/harness.js"
import { nestedArrays, outcome, revokedProxy, throwingProxy, valid } from "./support.js"

describe("#11 any value in any field is InvalidRequest naming the field, never a defect", () => {
  const hostile: Array<[name: string, make: () => unknown]> = [
    ["a null-prototype object", () => Object.create(null)],
    ["a null-prototype object with keys", () => Object.assign(Object.create(null), { a: 1 })],
    ["a Proxy whose traps throw", throwingProxy],
    ["a revoked Proxy", revokedProxy],
    ["an object whose toString throws", () => ({
      toString() {
        throw new Error("no")
      }
    })],
    ["a symbol", () => Symbol("s")],
    ["a function", () => () => 1],
    ["a BigInt", () => 10n],
    ["a 20,000-deep array", () => nestedArrays(20_000)]
  ]
  const at: Array<[field: string, put: (value: unknown) => unknown]> = [
    ...[
      "channel",
      "to",
      "accountId",
      "threadId",
      "replyToId",
      "kind",
      "bestEffort",
      "idempotencyKey",
      "silent",
      "metadata"
    ]
      .map((field): [string, (value: unknown) => unknown] => [field, (value) => ({ ...valid, [field]: value })]),
    ["payloads", (value) => ({ ...valid, payloads: value })],
    ["payloads[0]", (value) => ({ ...valid, payloads: [value] })],
    ["payloads[0].text", (value) => ({ ...valid, payloads: [{ text: value }] })],
    ["payloads[0].mediaUrls", (value) => ({ ...valid, payloads: [{ mediaUrls: value }] })],
    ["payloads[0].mediaUrls[0]", (value) => ({ ...valid, payloads: [{ mediaUrls: [value] }] })],
    ["payloads[0].channelData", (value) => ({ ...valid, payloads: [{ channelData: value }] })]
  ]
  const escaped = (field: string) => field.replace(/[.[\]]/g, (c) => `\\${c}`)
  // a null-prototype object is JSON data
  const accepted = (name: string, field: string) =>
    name.startsWith("a null-prototype object") && (field === "metadata" || field === "payloads[0].channelData")

  for (const [name, make] of hostile) {
    it(`${name} in each field`, () => {
      for (const [field, put] of at) {
        const result = outcome(put(make()))
        if (accepted(name, field)) {
          expect(result, field).toBe("accepted")
          continue
        }
        // the message names the field, or a path inside it; a Proxy in place of a container Schema reads itself can
        // only be named as the request
        const where = name.includes("Proxy") && field.startsWith("payloads")
          ? `(${escaped(field)}|request)`
          : escaped(field)
        expect(result, field).toMatch(new RegExp(`^InvalidRequest: ${where}([.[][^:]*)?: `))
        expect(result.length, field).toBeLessThan(1_000)
      }
    })
  }

  it("a huge value is shown clipped", () => {
    const result = outcome({ ...valid, kind: "x".repeat(1_000_000) })
    expect(result).toBe(`InvalidRequest: kind: must be "tool", "block" or "final", got "${"x".repeat(80)}…"`)
  })

  it("kind as a null-prototype object: the message shows it", () => {
    expect(outcome({ ...valid, kind: Object.create(null) })).toBe(
      `InvalidRequest: kind: must be "tool", "block" or "final", got {}`
    )
    expect(outcome({ ...valid, kind: Symbol("k") })).toBe(
      `InvalidRequest: kind: must be "tool", "block" or "final", got Symbol(k)`
    )
  })

  it("the whole request as any value", () => {
    for (const [name, make] of hostile) {
      const result = outcome(make())
      expect(result, name).toMatch(/^InvalidRequest: /)
      expect(result.length, name).toBeLessThan(1_000)
    }
    expect(outcome(null)).toMatch(/^InvalidRequest: request: Expected .*, actual null$/)
  })

  it.effect("deliver returns the typed error for kind: Object.create(null) and stores nothing", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver({ ...valid, kind: Object.create(null) }))
        expect(error).toMatchObject({
          _tag: "InvalidRequest",
          message: `kind: must be "tool", "block" or "final", got {}`
        })
        expect((yield* outbox.stats).total).toBe(0)
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))
})
