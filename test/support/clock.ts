/**
 * Moving a TestClock through many timed steps of a busy outbox. The outbox's fibers hop through `setImmediate` turns
 * (time slices, the journal's yields), and `TestClock.adjust` judges them idle from two equal snapshots a
 * `setTimeout(0)` apart, which such hops can pass: it then runs the next sleep before a fiber has registered its own
 * earlier one. `advanceTo` moves the clock one pending sleep at a time and lets the fibers run to their next wait in
 * between, so every sleep fires at its own instant.
 */
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as TestClock from "effect/TestClock"

/** One turn of Node's event loop (what the outbox's fibers wait for between two steps). */
const turn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** The clock's time and pending sleeps, as one comparable text. */
const snapshot = Effect.gen(function*() {
  const now = yield* Clock.currentTimeMillis
  return `${now}:${Chunk.toReadonlyArray(yield* TestClock.sleeps()).join(",")}`
})

/**
 * Lets pending fibers run: event loop turns until the clock's sleeps have not changed for 4 turns, confirmed by
 * TestClock's own idle check (`adjust(0)`) and one more turn leaving them unchanged.
 */
export const settle: Effect.Effect<void> = Effect.gen(function*() {
  let last = yield* snapshot
  let stable = 0
  for (let i = 0; i < 100_000; i++) {
    yield* turn
    const now = yield* snapshot
    if (now !== last) {
      last = now
      stable = 0
      continue
    }
    if (++stable < 4) continue
    yield* TestClock.adjust(0)
    yield* turn
    const confirmed = yield* snapshot
    if (confirmed === last) return
    last = confirmed
    stable = 0
  }
})

/** Moves the clock to `target` (epoch millis), waking each pending sleep at its own instant, fibers settled between. */
export const advanceTo = (target: number): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (true) {
      yield* settle
      const now = yield* Clock.currentTimeMillis
      const pending = Chunk.toReadonlyArray(yield* TestClock.sleeps()).filter((at) => at > now)
      const next = pending.length === 0 ? undefined : Math.min(...pending)
      if (next === undefined || next > target) {
        if (target > now) yield* TestClock.setTime(target)
        return yield* settle
      }
      yield* TestClock.setTime(next)
    }
  })

/** Moves the clock `millis` ahead (see `advanceTo`). */
export const advance = (millis: number): Effect.Effect<void> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) => advanceTo(now + millis))
