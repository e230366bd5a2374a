import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import { DeadlineWatch, syncFirstTimeout } from "../../src/internal/syncFirstTimeout.js"

const timeout = (watch: DeadlineWatch, seconds = 30) => <A, E>(effect: Effect.Effect<A, E>) =>
  syncFirstTimeout(effect, { duration: Duration.seconds(seconds), onTimeout: () => "timed out" as const, watch })

describe("syncFirstTimeout", () => {
  it.effect("an effect that does not suspend returns its result and never starts the watchdog", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      expect(yield* timeout(watch)(Effect.succeed(1))).toBe(1)
      expect(yield* Effect.exit(timeout(watch)(Effect.fail("boom")))).toEqual(Exit.fail("boom"))
      expect(watch.active).toBe(false)
    }))

  it.effect("a suspended effect that finishes in time keeps its result; the watchdog stops with the last one", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const fiber = yield* Effect.fork(timeout(watch)(Effect.as(Effect.sleep("1 second"), "done")))
      yield* TestClock.adjust("0 seconds")
      expect(watch.active).toBe(true)
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(fiber)).toBe("done")
      expect(watch.active).toBe(false) // an idle process keeps no timer pending
      yield* TestClock.adjust("1 minute")
      expect(yield* Fiber.await(fiber)).toEqual(Exit.succeed("done"))
    }))

  it.live("the watchdog fiber ends as soon as the last call leaves, without waiting out its timer", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      expect(yield* timeout(watch, 10)(Effect.as(Effect.sleep("5 millis"), "done"))).toBe("done")
      // its timer was 10 s away: a watchdog that could not be stopped would keep an idle process alive that long
      const stopped = yield* watch.stopped.pipe(Effect.timeoutOption("1 second"))
      expect(Option.isSome(stopped)).toBe(true)
      expect(watch.active).toBe(false)
    }))

  it.effect("one watchdog times out many calls, each at its own deadline, interrupting each (awaited)", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const interrupted = yield* Ref.make<Array<string>>([])
      const hang = (name: string) => Effect.never.pipe(Effect.onInterrupt(() => Ref.update(interrupted, (xs) => [...xs, name])))
      const a = yield* Effect.fork(timeout(watch)(hang("a")))
      yield* TestClock.adjust("10 seconds")
      const b = yield* Effect.fork(timeout(watch)(hang("b")))
      yield* TestClock.adjust("20 seconds")
      expect(yield* Fiber.await(a)).toEqual(Exit.fail("timed out"))
      expect(yield* Ref.get(interrupted)).toEqual(["a"])
      expect(yield* Fiber.poll(b)).toEqual(Option.none())
      yield* TestClock.adjust("10 seconds")
      expect(yield* Fiber.await(b)).toEqual(Exit.fail("timed out"))
      expect(yield* Ref.get(interrupted)).toEqual(["a", "b"])
      expect(watch.active).toBe(false)
    }))

  it.effect("a caller that is interrupted interrupts its call and leaves the watch", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const interrupted = yield* Ref.make(false)
      const fiber = yield* Effect.fork(timeout(watch)(Effect.never.pipe(Effect.onInterrupt(() => Ref.set(interrupted, true)))))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      expect(yield* Ref.get(interrupted)).toBe(true)
      expect(watch.active).toBe(false)
    }))

  it.effect("the call runs with the caller's services (the test clock here)", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      yield* TestClock.setTime(123_000)
      expect(yield* timeout(watch)(Effect.clockWith((clock) => clock.currentTimeMillis))).toBe(123_000)
    }))
})
