/**
 * Call deadlines: one watchdog fiber for every adapter call in flight, instead of a timeout race per call (two fibers
 * and a timer per part, a quarter of a delivery's CPU). A call arms its deadline only once it has suspended; all
 * deadlines have the same length, so the oldest armed is the earliest and the watchdog sleeps until it. The watchdog
 * waits on a latch while nothing is armed: an idle outbox keeps no timer (a gateway's TestClock can move by days).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import type * as Scope from "effect/Scope"

/** Deadlines of one length, watched by one fiber. */
export interface Deadlines {
  /** Starts a deadline for a suspended call: `expire` runs once if it passes first; the returned function disarms it. */
  readonly arm: (expire: () => void) => () => void
}

interface Armed {
  readonly at: number
  readonly expire: () => void
}

/** Starts the watchdog in the current scope; every deadline is `timeoutMs` from its arming, on the scope's clock. */
export const make = (timeoutMs: number): Effect.Effect<Deadlines, never, Scope.Scope> =>
  Effect.gen(function*() {
    const clock = yield* Effect.clock
    // insertion order is deadline order: every deadline has the same length
    const armed = new Set<Armed>()
    const latch = Effect.unsafeMakeLatch(false)

    const fireDue = Effect.sync(() => {
      const now = clock.unsafeCurrentTimeMillis()
      for (const a of armed) {
        if (a.at > now) break
        armed.delete(a)
        a.expire()
      }
      if (armed.size === 0) latch.unsafeClose()
    })
    const sleepUntilFirst = Effect.suspend(() => {
      const first = armed.values().next()
      if (first.done === true) {
        latch.unsafeClose()
        return Effect.void
      }
      return Effect.zipRight(Clock.sleep(Math.max(0, first.value.at - clock.unsafeCurrentTimeMillis())), fireDue)
    })
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(latch.await, sleepUntilFirst)))

    return {
      arm: (expire) => {
        const entry: Armed = { at: clock.unsafeCurrentTimeMillis() + timeoutMs, expire }
        armed.add(entry)
        if (armed.size === 1) latch.unsafeOpen()
        return () => void armed.delete(entry)
      }
    }
  })

/** The deadline a sender gives one adapter call: when it passes, the call fails with `error()` and is aborted. */
export interface CallDeadline<E> {
  /** arms the deadline (see `Deadlines.arm`) */
  readonly arm: (expire: () => void) => () => void
  readonly error: () => E
}

/**
 * Runs an Effect-native call under `deadline`, in a child fiber that is interrupted when the deadline passes (the one
 * fork an Effect-native call costs; a call that is already an `Exit` needs neither, see the adapter's normalization).
 */
export const within = <A, E, E2>(effect: Effect.Effect<A, E>, deadline: CallDeadline<E2>): Effect.Effect<A, E | E2> =>
  Effect.flatMap(Effect.fork(effect), (fiber) =>
    Effect.async<A, E | E2>((resume) => {
      let done = false
      const disarm = deadline.arm(() => {
        if (done) return
        done = true
        // the caller learns of the timeout once the call is interrupted, as with any race
        resume(Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(deadline.error())))
      })
      fiber.addObserver((exit) => {
        if (done) return
        done = true
        disarm()
        resume(exit)
      })
      return Effect.suspend(() => {
        done = true
        disarm()
        return Fiber.interrupt(fiber)
      })
    }))
