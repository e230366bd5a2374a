import { describe, expect, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import type { PendingCall } from "../../src/ChannelAdapter.js"
import { SendError } from "../../src/DeliveryError.js"
import { awaitCall, DeadlineWatch, syncFirstTimeout } from "../../src/internal/syncFirstTimeout.js"

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

/** A plugin call still pending, settled (or not) by the test; counts its aborts. */
const pendingCall = () => {
  let callback: ((exit: Exit.Exit<string, SendError>) => void) | undefined
  let aborts = 0
  const call: PendingCall<string> = {
    _tag: "PendingCall",
    onSettled: (f) => void (callback = f),
    abort: () => void aborts++
  }
  return { call, settle: (exit: Exit.Exit<string, SendError>) => callback?.(exit), aborts: () => aborts }
}

describe("awaitCall", () => {
  const wait = (watch: DeadlineWatch, call: PendingCall<string>, seconds = 30) =>
    awaitCall(call, { duration: Duration.seconds(seconds), onTimeout: () => "timed out" as const, watch })

  it.effect("a call that settles in time gives its outcome, success or failure; it is not aborted and leaves the watch", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const ok = pendingCall()
      const failing = pendingCall()
      const a = yield* Effect.fork(wait(watch, ok.call))
      const b = yield* Effect.fork(wait(watch, failing.call))
      yield* TestClock.adjust("1 second")
      expect(watch.active).toBe(true)
      ok.settle(Exit.succeed("m-1"))
      failing.settle(Exit.fail(new SendError({ message: "HTTP 500", retryable: true })))
      expect(yield* Fiber.join(a)).toBe("m-1")
      expect(yield* Effect.flip(Fiber.join(b))).toMatchObject({ _tag: "SendError", message: "HTTP 500" })
      expect([ok.aborts(), failing.aborts()]).toEqual([0, 0])
      expect(watch.active).toBe(false)
    }))

  it.effect("a call past its deadline fails with the timeout at that moment, is aborted, and a late outcome is ignored", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const late = pendingCall()
      const fiber = yield* Effect.fork(wait(watch, late.call, 10))
      yield* TestClock.adjust("9999 millis")
      expect(yield* Fiber.poll(fiber)).toEqual(Option.none())
      yield* TestClock.adjust("1 milli")
      expect(yield* Fiber.await(fiber)).toEqual(Exit.fail("timed out"))
      expect(late.aborts()).toBe(1)
      expect(watch.active).toBe(false)
      late.settle(Exit.succeed("too late"))
      expect(yield* Fiber.await(fiber)).toEqual(Exit.fail("timed out"))
    }))

  it.effect("one watchdog times out pending calls and running effects alike, each at its own deadline", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const call = pendingCall()
      const interrupted = yield* Ref.make(false)
      const a = yield* Effect.fork(wait(watch, call.call))
      yield* TestClock.adjust("10 seconds")
      const b = yield* Effect.fork(timeout(watch)(Effect.never.pipe(Effect.onInterrupt(() => Ref.set(interrupted, true)))))
      yield* TestClock.adjust("20 seconds")
      expect(yield* Fiber.await(a)).toEqual(Exit.fail("timed out"))
      expect(yield* Fiber.poll(b)).toEqual(Option.none())
      yield* TestClock.adjust("10 seconds")
      expect(yield* Fiber.await(b)).toEqual(Exit.fail("timed out"))
      expect(yield* Ref.get(interrupted)).toBe(true)
      expect(watch.active).toBe(false)
    }))

  it.effect("a caller that is interrupted aborts its call and leaves the watch", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const call = pendingCall()
      const fiber = yield* Effect.fork(wait(watch, call.call))
      yield* TestClock.adjust("1 second")
      yield* Fiber.interrupt(fiber)
      expect(call.aborts()).toBe(1)
      expect(watch.active).toBe(false)
    }))

  it.effect("a call that settles while its callback is being registered (a thenable that calls back at once) gives that outcome", () =>
    Effect.gen(function*() {
      const watch = new DeadlineWatch()
      const call: PendingCall<string> = { _tag: "PendingCall", onSettled: (f) => f(Exit.succeed("at once")), abort: () => {} }
      expect(yield* wait(watch, call)).toBe("at once")
      expect(watch.active).toBe(false)
    }))
})
