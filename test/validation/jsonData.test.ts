/**
 * #10: `channelData` and `metadata` accept exactly what JSON holds. Anything else (a BigInt, NaN, a cycle, 20,000-deep
 * nesting, a Date…) is InvalidRequest naming the path to the value, and nothing reaches a store's JSON encoder.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { JsonRecord, MAX_JSON_DEPTH, MAX_JSON_VALUES } from "../../src/Delivery.js"
import { Outbox } from "../../src/Outbox.js"
import { outboxLayer, scriptedAdapter } from "../outbox/harness.js"
import { decoded, nestedArrays, outcome, throwingProxy, valid } from "./support.js"

/** A record whose containers nest `levels` deep in all, the record itself included. */
const nestedRecord = (levels: number): Record<string, unknown> => ({ a: nestedArrays(levels - 1, "leaf") })

describe("#10 channelData and metadata hold exactly what JSON holds", () => {
  class Point {
    x = 1
  }
  class List extends Array<number> {}
  const cycle: Record<string, unknown> = { a: 1 }
  cycle.self = cycle
  const ring: Array<unknown> = []
  const viaArray = { list: ring }
  ring.push({ back: viaArray })

  const rejected: Array<[name: string, data: unknown, message: string]> = [
    ["NaN", { a: { b: NaN } }, ".a.b: must be a finite number, got NaN"],
    ["Infinity", { a: [0, Infinity] }, ".a[1]: must be a finite number, got Infinity"],
    ["-Infinity", { a: -Infinity }, ".a: must be a finite number, got -Infinity"],
    ["a BigInt", { n: 10n }, ".n: must be a finite number, got a BigInt"],
    ["an undefined value", { a: undefined }, ".a: must be JSON data, got undefined"],
    ["undefined in an array", { a: [1, undefined] }, ".a[1]: must be JSON data, got undefined"],
    // eslint-disable-next-line no-sparse-arrays
    ["an array with a hole", { a: [1, , 3] }, ".a[1]: must be JSON data, got undefined"],
    ["a function", { f: () => 1 }, ".f: must be JSON data, got a function"],
    ["a symbol", { s: Symbol("s") }, ".s: must be JSON data, got a symbol"],
    ["a Date", { at: new Date(0) }, ".at: must be a plain object or array, got an instance of Date"],
    ["a Map", { m: new Map() }, ".m: must be a plain object or array, got an instance of Map"],
    ["a class instance", { p: new Point() }, ".p: must be a plain object or array, got an instance of Point"],
    ["an Array subclass", { l: List.from([1]) }, ".l: must be a plain object or array, got an instance of List"],
    [
      "a Uint8Array",
      { bytes: new Uint8Array(2) },
      ".bytes: must be a plain object or array, got an instance of Uint8Array"
    ],
    ["an object containing itself", cycle, ".self: contains itself (a cycle), which JSON cannot hold"],
    ["a cycle through an array", viaArray, ".list[0].back: contains itself (a cycle), which JSON cannot hold"],
    [
      `nesting one level past ${MAX_JSON_DEPTH}`,
      nestedRecord(MAX_JSON_DEPTH + 1),
      `.a${"[0]".repeat(MAX_JSON_DEPTH - 1)}: nests deeper than ${MAX_JSON_DEPTH} levels`
    ],
    ["a getter that throws", {
      get a() {
        throw new Error("no")
      }
    }, ".a: could not be read: no"],
    ["a Proxy whose traps throw", { p: throwingProxy() }, ".p: could not be read: trap"],
    ["not an object", [1, 2], ": must be an object, got [1,2]"]
  ]
  for (const [name, data, message] of rejected) {
    it(`rejects ${name}, naming the path, in channelData and in metadata`, () => {
      expect(outcome({ ...valid, payloads: [{ text: "hi", channelData: data }] })).toBe(
        `InvalidRequest: payloads[0].channelData${message}`
      )
      expect(outcome({ ...valid, metadata: data })).toBe(`InvalidRequest: metadata${message}`)
    })
  }

  it("20,000-deep nesting is refused at the bound, without overflowing the stack", () => {
    const deepArrays = { a: nestedArrays(20_000) }
    let deepObject: Record<string, unknown> = {}
    for (let i = 0; i < 20_000; i++) deepObject = { a: deepObject }
    for (const data of [deepArrays, deepObject]) {
      expect(outcome({ ...valid, metadata: data })).toMatch(
        new RegExp(`^InvalidRequest: metadata\\.a.*: nests deeper than ${MAX_JSON_DEPTH} levels$`)
      )
      expect(outcome({ ...valid, payloads: [{ channelData: data }] })).toMatch(
        /^InvalidRequest: payloads\[0\]\.channelData\.a.*: nests deeper/
      )
    }
  })

  it(`accepts exactly ${MAX_JSON_DEPTH} levels`, () => {
    expect(outcome({ ...valid, metadata: nestedRecord(MAX_JSON_DEPTH) })).toBe("accepted")
  })

  it("a shared object that is not a cycle is fine; shared references expanding past the value bound are refused, quickly", () => {
    const shared = { x: 1 }
    expect(outcome({ ...valid, metadata: { a: shared, b: [shared, shared] } })).toBe("accepted")
    let dag: Record<string, unknown> = { leaf: 1 }
    for (let i = 0; i < 60; i++) dag = { l: dag, r: dag }
    const started = Date.now()
    expect(outcome({ ...valid, metadata: dag })).toBe(
      `InvalidRequest: metadata: holds more than ${MAX_JSON_VALUES} values`
    )
    expect(Date.now() - started).toBeLessThan(2_000)
  })

  it("accepts JSON values: null-prototype objects, nested __proto__ keys, strings, booleans, null, finite numbers", () => {
    const data = JSON.parse(`{"__proto__":{"x":1},"a":[{"__proto__":2},null,true,"s",1.5,-3]}`)
    const bare = Object.assign(Object.create(null), { k: "v" })
    const request = decoded({ ...valid, payloads: [{ channelData: data }], metadata: { bare } })
    expect(JSON.stringify(request.payloads[0]!.channelData)).toBe(
      `{"__proto__":{"x":1},"a":[{"__proto__":2},null,true,"s",1.5,-3]}`
    )
    expect(Reflect.get({}, "x")).toBeUndefined()
    expect(request.metadata).toEqual({ bare: { k: "v" } })
  })

  it("the decoded data is a copy: what the caller changes later reaches neither the send nor the row; -0 becomes 0 as JSON stores it", () => {
    const data = { nested: { list: [1, -0] } }
    const request = decoded({ ...valid, metadata: data })
    data.nested.list.push(2)
    expect(request.metadata).toEqual({ nested: { list: [1, 0] } })
    expect(Object.is((request.metadata!.nested as { list: Array<number> }).list[1], 0)).toBe(true)
  })

  it("JsonRecord encodes with the same rules", () => {
    expect(Either.isLeft(Schema.encodeEither(JsonRecord)({ a: NaN }))).toBe(true)
    expect(Schema.encodeEither(JsonRecord)({ a: 1 })).toEqual(Either.right({ a: 1 }))
  })

  it.effect("deliver refuses data JSON cannot hold and stores nothing, so no store encoder ever sees it", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        for (const metadata of [{ id: 1n }, cycle, { a: nestedArrays(20_000) }, { n: NaN }]) {
          const error = yield* Effect.flip(outbox.deliver({ ...valid, metadata }))
          expect(error._tag).toBe("InvalidRequest")
          expect(error.message).toMatch(/^metadata\./)
        }
        expect((yield* outbox.stats).total).toBe(0)
        expect(yield* chat.calls).toEqual([])
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))
})
