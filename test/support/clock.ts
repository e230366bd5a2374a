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

/** Lets pending fibers run until the clock's sleeps have not changed for 6 turns in a row (at least 10 turns). */
export const settle: Effect.Effect<void> = Effect.gen(function*() {
  let last = ""
  let stable = 0
  for (let i = 0; i < 10_000; i++) {
    yield* turn
    const now = yield* Clock.currentTimeMillis
    const key = `${now}:${Chunk.toReadonlyArray(yield* TestClock.sleeps()).join(",")}`
    stable = key === last ? stable + 1 : 0
    last = key
    if (i >= 10 && stable >= 6) return
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
