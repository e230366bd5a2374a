/**
 * A timeout that costs nothing when the effect completes synchronously. `Effect.timeoutFail` races two forked
 * fibers and a timer on every call, which under a few hundred concurrent sends cost more CPU than the rest of the
 * delivery; most adapter calls that are cheap to make (in-process channels, buffers, test doubles) never suspend.
 * Here the effect starts at once in a fiber of its own that carries the caller's context and fiber refs (span,
 * log annotations, clock); only if it suspends is a timer raced against it, and on timeout the fiber is
 * interrupted (its interruption awaited) before the timeout error is returned.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"

/** `effect` with a timeout that is only armed if the effect suspends. */
export const syncFirstTimeout = <A, E, R, E2>(
  effect: Effect.Effect<A, E, R>,
  options: { readonly duration: Duration.Duration; readonly onTimeout: () => E2 }
): Effect.Effect<A, E | E2, R> =>
  Effect.flatMap(Effect.runtime<R>(), (runtime) => {
    // the fiber succeeds with the effect's exit, so a failing send is not also reported as an unhandled fiber error
    const fiber = Runtime.runFork(runtime)(Effect.exit(effect))
    const done = fiber.unsafePoll()
    if (done !== null) return Exit.flatten(done)
    return Fiber.await(fiber).pipe(
      Effect.timeoutOption(options.duration),
      Effect.flatMap((exit): Effect.Effect<A, E | E2> =>
        Option.isSome(exit)
          ? Exit.flatten(exit.value)
          : Effect.zipRight(Fiber.interrupt(fiber), Effect.fail(options.onTimeout()))
      ),
      // the caller gave up (interrupted): the send must not go on without it
      Effect.onInterrupt(() => Fiber.interrupt(fiber))
    )
  })
