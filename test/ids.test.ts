import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"
import { makeEntryIdGenerator } from "../src/internal/ids.js"

describe("entry ids", () => {
  it.effect("are 26-character ULIDs that strictly increase: within a millisecond, across them, and if the clock goes back", () =>
    Effect.gen(function*() {
      const ids = yield* makeEntryIdGenerator
      yield* TestClock.setTime(1_000)
      const sameMs = [yield* ids.next, yield* ids.next, yield* ids.at(1_000)]
      yield* TestClock.setTime(1_001)
      const nextMs = yield* ids.next
      const clockBack = yield* ids.at(900)
      const all = [...sameMs, nextMs, clockBack]
      for (const id of all) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/)
      expect([...all].sort()).toEqual(all)
      expect(new Set(all).size).toBe(all.length)
      // the first ten characters are the millisecond, so ids sort by creation time
      expect(sameMs.map((id) => id.slice(0, 10))).toEqual(["00000000Z8", "00000000Z8", "00000000Z8"]) // 1000 = 31·32 + 8
      expect(nextMs.slice(0, 10)).toBe("00000000Z9")
      expect(clockBack.slice(0, 10)).toBe("00000000Z9") // the last id's millisecond, incremented
    }))
})
