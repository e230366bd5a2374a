/**
 * A value recomputed at most every `maxAge` and shared by every request: the board's counts and activity. A request
 * within `maxAge` of the last count gets it as is; a later one gets it too (its `asOf` says how old it is) while one
 * recount runs in the background; only the first request, and the first after `invalidate`, waits for a count.
 * So N open boards and a Prometheus scraper cost one count per `maxAge`, and a page never waits on a 1,000,000-row
 * count once the first is done (see BENCHMARKS.md, admin board).
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

/** Makes a snapshot of `compute`, its background recounts running in `scope`. */
export const make = <A, E>(
  compute: Effect.Effect<A, E>,
  maxAgeMs: number,
  scope: Scope.Scope
): Effect.Effect<Snapshot<A, E>> =>
  Effect.sync(() => {
    let current: { readonly value: A; readonly asOf: number } | undefined
    let running: Deferred.Deferred<{ readonly value: A; readonly asOf: number }, E> | undefined
    // bumped by invalidate: a count that started before it is not kept
    let generation = 0

    /** Starts a count unless one runs; the count's result, shared by everyone waiting. */
    const refresh = Effect.suspend(() => {
      if (running !== undefined) return Effect.succeed(running)
      return Effect.gen(function*() {
        const done = yield* Deferred.make<{ readonly value: A; readonly asOf: number }, E>()
        running = done
        const started = generation
        yield* Effect.gen(function*() {
          const asOf = yield* Clock.currentTimeMillis
          const exit = yield* Effect.exit(compute)
          if (running === done) running = undefined
          if (Exit.isSuccess(exit) && started === generation) current = { value: exit.value, asOf }
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
      if (last !== undefined && now - last.asOf < maxAgeMs) return last
      const pending = yield* refresh
      // stale: answer with what there is while the recount runs
      if (last !== undefined) return last
      return yield* Deferred.await(pending)
    })

    const invalidate = Effect.sync(() => {
      current = undefined
      running = undefined // a count already running may predate the change: the next get starts its own
      generation++
    })

    return { get, invalidate }
  })
