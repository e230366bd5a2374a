/** The board's shared counts (`Snapshot`): when a request gets the last count, a stale one, or waits for a fresh one. */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import * as Snapshot from "../../src/admin/Snapshot.js"

/** A snapshot of a count that takes `takes` ms and returns how many counts ran so far. */
const counting = (maxAgeMs: number, takes = 0) =>
  Effect.gen(function*() {
    const counts = yield* Ref.make(0)
    const compute = Effect.zipRight(Effect.sleep(takes), Ref.updateAndGet(counts, (n) => n + 1))
    const snapshot = yield* Snapshot.make(compute, maxAgeMs, yield* Effect.scope)
    const get = Effect.map(snapshot.get, (s) => s.value)
    return { snapshot, get, counts: Ref.get(counts) }
  })

describe("Snapshot", () => {
  it.scoped("shares a count within maxAge, shows it while recounting after, waits once it is too old", () =>
    Effect.gen(function*() {
      const { counts, get } = yield* counting(5_000)
      expect(yield* get).toBe(1)
      yield* TestClock.adjust(4_999)
      expect(yield* get).toBe(1)
      expect(yield* counts).toBe(1)
      yield* TestClock.adjust(1)
      // stale: answered at once with the last count, one recount started
      expect(yield* get).toBe(1)
      yield* Effect.yieldNow()
      expect(yield* counts).toBe(2)
      expect(yield* get).toBe(2)
      // six times maxAge later nobody gets the old count: the request waits for a new one
      yield* TestClock.adjust(30_000)
      expect(yield* get).toBe(3)
    }))

  it.scoped("concurrent requests share one count; invalidate makes the next request wait for a fresh one", () =>
    Effect.gen(function*() {
      const { counts, get, snapshot } = yield* counting(5_000, 100)
      const waiting = yield* Effect.fork(Effect.all([get, get, get], { concurrency: "unbounded" }))
      yield* TestClock.adjust(100)
      expect(yield* Fiber.join(waiting)).toEqual([1, 1, 1])
      yield* snapshot.invalidate
      const fresh = yield* Effect.fork(get)
      yield* TestClock.adjust(100)
      expect(yield* Fiber.join(fresh)).toBe(2)
      expect(yield* counts).toBe(2)
    }))

  it.scoped("a slow count is repeated at most every 50 times its duration", () =>
    Effect.gen(function*() {
      const { counts, get } = yield* counting(5_000, 1_000)
      const first = yield* Effect.fork(get)
      yield* TestClock.adjust(1_000)
      expect(yield* Fiber.join(first)).toBe(1)
      // 49 s after the count started: still fresh enough, although maxAge is 5 s
      yield* TestClock.adjust(48_000)
      expect(yield* get).toBe(1)
      expect(yield* counts).toBe(1)
      yield* TestClock.adjust(1_000)
      expect(yield* get).toBe(1) // 50 s: stale, a recount starts
      yield* TestClock.adjust(1_000)
      expect(yield* counts).toBe(2)
    }))
})
