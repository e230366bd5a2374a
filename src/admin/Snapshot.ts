/**
 * A value recomputed now and then and shared by every request: the board's counts and activity.
 * - A request within `maxAge` of the last count gets it as is.
 * - A request after that, but within `STALE_FACTOR` × `maxAge`, gets it too (its `asOf` says how old it is) while one
 *   recount runs in the background; a request after that, the first one, and the first after `invalidate` wait for a
 *   fresh count. So a board opened after a quiet night never shows the night's counts.
 * - `maxAge` grows to `BUSY_FACTOR` × the last count's duration: on SQLite a count runs on the event loop
 *   (better-sqlite3 is synchronous), and a recount every 5 s of a file whose count takes 200 ms would hold it 4 % of the
 *   time; this keeps it at 2 % at most.
 * N open boards and a Prometheus scraper cost one count per `maxAge` (see BENCHMARKS.md, admin board).
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"

/** A shared, periodically recomputed value. */
export interface Snapshot<A, E> {
  /** the value and when it was computed (see the module doc for when this waits) */
  readonly get: Effect.Effect<{ readonly value: A; readonly asOf: number }, E>
  /** forgets the value: the next `get` waits for a fresh one (after this board changed rows) */
  readonly invalidate: Effect.Effect<void>
}

/** How much older than `maxAge` a count may be and still be shown while a recount runs. */
const STALE_FACTOR = 6

/** The share of time recounts may take: `maxAge` is at least this many times the last count's duration. */
const BUSY_FACTOR = 50

type Counted<A> = { readonly value: A; readonly asOf: number }

/** Makes a snapshot of `compute`, its background recounts running in `scope`. */
export const make = <A, E>(
  compute: Effect.Effect<A, E>,
  maxAgeMs: number,
  scope: Scope.Scope
): Effect.Effect<Snapshot<A, E>> =>
  Effect.sync(() => {
    let current: Counted<A> | undefined
    let running: Deferred.Deferred<Counted<A>, E> | undefined
    let effectiveMaxAge = maxAgeMs
    // bumped by invalidate: a count that started before it is not kept
    let generation = 0

    /** Starts a count unless one runs; the count's result, shared by everyone waiting. */
    const refresh = Effect.suspend(() => {
      if (running !== undefined) return Effect.succeed(running)
      return Effect.gen(function*() {
        const done = yield* Deferred.make<Counted<A>, E>()
        running = done
        const started = generation
        yield* Effect.gen(function*() {
          const asOf = yield* Clock.currentTimeMillis
          const exit = yield* Effect.exit(compute)
          const took = (yield* Clock.currentTimeMillis) - asOf
          if (running === done) running = undefined
          if (Exit.isSuccess(exit) && started === generation) {
            current = { value: exit.value, asOf }
            effectiveMaxAge = Math.max(maxAgeMs, took * BUSY_FACTOR)
          }
          if (Exit.isFailure(exit) && current !== undefined) {
            yield* Effect.logWarning("admin board: a background recount failed; the last count is shown", exit.cause)
          }
          yield* Deferred.done(done, Exit.map(exit, (value) => ({ value, asOf })))
        }).pipe(Effect.forkIn(scope))
        return done
      })
    })

    const get = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const last = current
      if (last !== undefined && now - last.asOf < effectiveMaxAge) return last
      const pending = yield* refresh
      if (last !== undefined && now - last.asOf < effectiveMaxAge * STALE_FACTOR) return last
      return yield* Deferred.await(pending)
    })

    const invalidate = Effect.sync(() => {
      current = undefined
      running = undefined // a count already running may predate the change: the next get starts its own
      generation++
    })

    return { get, invalidate }
  })
