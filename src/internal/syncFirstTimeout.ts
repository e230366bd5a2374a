/**
 * Timeouts for many concurrent calls that share one duration (the sender's per-part timeout).
 *
 * `Effect.timeoutFail` races two forked fibers and arms a timer on every call; under a few hundred concurrent sends
 * that cost more CPU than the rest of the delivery. Here the call starts at once in a fiber of its own that carries
 * the caller's context and fiber refs (span, log annotations, clock):
 * - if it completes without suspending (in-process channels, buffers, test doubles), nothing else happens;
 * - if it suspends (a network call), its fiber and deadline join a `DeadlineWatch`, whose one watchdog fiber sleeps
 *   until the earliest deadline and interrupts the calls whose time is up (their interruption is awaited before the
 *   timeout error is returned, as with `Effect.timeout`).
 *
 * A plugin call that returned a Promise needs no fiber at all (`awaitCall`): it joins the watch with its deadline,
 * and the watchdog settles it with the timeout error and aborts it.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Equal from "effect/Equal"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as FiberId from "effect/FiberId"
import * as Runtime from "effect/Runtime"
import type { PendingCall } from "../ChannelAdapter.js"
import type { SendError } from "../DeliveryError.js"

interface Watched {
  readonly deadline: number
  /** ends the call whose time is up: interrupts its fiber, or settles a pending call */
  readonly stop: (by: FiberId.FiberId) => void
  timedOut: boolean
}

/**
 * The calls in flight past their first suspension, and the one watchdog fiber that times them out. The watchdog runs
 * only while a call is registered (it is stopped when the last one leaves, so an idle process has no timer pending),
 * on the clock of the call that started it.
 */
export class DeadlineWatch {
  private readonly watched = new Set<Watched>()
  private watchdog: Fiber.RuntimeFiber<void, never> | null = null
  private lastWatchdog: Fiber.RuntimeFiber<void, never> | null = null

  private readonly loop: Effect.Effect<void> = Effect.fiberIdWith((self) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      // a watchdog that was stopped (or replaced) while its next step was already scheduled ends here
      if (this.watchdog === null || !Equal.equals(this.watchdog.id(), self)) return Effect.void
      let next = Number.POSITIVE_INFINITY
      for (const w of this.watched) {
        if (w.deadline <= now) {
          this.watched.delete(w)
          w.timedOut = true
          w.stop(self)
        } else if (w.deadline < next) {
          next = w.deadline
        }
      }
      if (this.watched.size === 0) {
        this.watchdog = null
        return Effect.void
      }
      return Effect.zipRight(Effect.sleep(next - now), this.loop)
    })
  )

  /** Whether the watchdog is running (only while a call is watched). */
  get active(): boolean {
    return this.watchdog !== null
  }

  /** Waits until the most recent watchdog fiber has ended (for tests: an idle watch holds no fiber or timer). */
  get stopped(): Effect.Effect<void> {
    return this.lastWatchdog === null ? Effect.void : Effect.asVoid(Fiber.await(this.lastWatchdog))
  }

  /** Watches a call until `deadline`, when the watchdog calls `stop`; the returned entry says whether it did. */
  readonly watch = (deadline: number, stop: (by: FiberId.FiberId) => void): Effect.Effect<Watched> =>
    Effect.suspend(() => {
      const w: Watched = { deadline, stop, timedOut: false }
      this.watched.add(w)
      if (this.watchdog !== null) return Effect.succeed(w)
      // a daemon, as the watchdog serves every caller, not only the one that started it; interruptible although
      // started from an acquire step (a fiber forked there inherits uninterruptibility), so `unwatch` can stop it
      return Effect.map(Effect.forkDaemon(Effect.interruptible(this.loop)), (watchdog) => {
        this.watchdog = watchdog
        this.lastWatchdog = watchdog
        return w
      })
    })

  /** Stops watching (the call finished or was abandoned); the last one out stops the watchdog and its timer. */
  readonly unwatch = (w: Watched): Effect.Effect<void> =>
    Effect.suspend(() => {
      this.watched.delete(w)
      const watchdog = this.watchdog
      if (this.watched.size > 0 || watchdog === null) return Effect.void
      this.watchdog = null
      return Effect.fiberIdWith((self) => Effect.sync(() => watchdog.unsafeInterruptAsFork(self)))
    })
}

/** `effect` with a timeout that is only armed (on `watch`) if the effect suspends. */
export const syncFirstTimeout = <A, E, R, E2>(
  effect: Effect.Effect<A, E, R>,
  options: { readonly duration: Duration.Duration; readonly onTimeout: () => E2; readonly watch: DeadlineWatch }
): Effect.Effect<A, E | E2, R> =>
  // the runtime (context, fiber refs, interruptibility) is the caller's; the start is masked so that an interruption
  // cannot fall between starting the call and watching it, which would leave it running unwatched
  Effect.flatMap(Effect.runtime<R>(), (runtime) =>
    Effect.uninterruptibleMask((restore) => {
      // the fiber succeeds with the effect's exit, so a failing send is not also reported as an unhandled fiber error
      const fiber = Runtime.runFork(runtime)(Effect.exit(effect))
      const done = fiber.unsafePoll()
      if (done !== null) return Exit.flatten(done)
      return Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(options.watch.watch(now + Duration.toMillis(options.duration), (by) => fiber.unsafeInterruptAsFork(by)), (w) =>
          restore(Fiber.await(fiber)).pipe(
            // the caller gave up (interrupted): the call must not go on without it
            Effect.onInterrupt(() => Fiber.interrupt(fiber)),
            Effect.ensuring(options.watch.unwatch(w)),
            Effect.flatMap((exit): Effect.Effect<A, E | E2> =>
              Exit.isFailure(exit) && w.timedOut ? Effect.fail(options.onTimeout()) : Exit.flatten(exit)
            )
          )))
    }))

/**
 * A pending plugin call, waited for with a timeout but without a fiber: at its deadline the watchdog aborts it and
 * the wait fails with `onTimeout`. A caller that is interrupted aborts it too; either way it leaves the watch.
 */
export const awaitCall = <A, E2>(
  call: PendingCall<A>,
  options: { readonly duration: Duration.Duration; readonly onTimeout: () => E2; readonly watch: DeadlineWatch }
): Effect.Effect<A, SendError | E2> =>
  Effect.suspend(() => {
    // the outcome, whichever comes first (the call's own, or the timeout), and the waiting fiber once it waits
    let outcome: Exit.Exit<A, SendError | E2> | undefined
    let resume: ((exit: Exit.Exit<A, SendError | E2>) => void) | undefined
    const settle = (exit: Exit.Exit<A, SendError | E2>) => {
      if (outcome !== undefined) return
      outcome = exit
      resume?.(exit)
    }
    const timedOut = () => {
      call.abort()
      settle(Exit.fail(options.onTimeout()))
    }
    // masked so that an interruption cannot fall between joining the watch and the wait that leaves it
    return Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.flatMap(options.watch.watch(now + Duration.toMillis(options.duration), timedOut), (w) =>
          restore(Effect.async<A, SendError | E2>((wake) => {
            if (outcome !== undefined) return wake(outcome)
            resume = wake
            call.onSettled(settle)
            // the caller gave up: the call must not go on without it
            return Effect.sync(call.abort)
          })).pipe(Effect.ensuring(options.watch.unwatch(w)))))
    )
  })
