/**
 * Group commit: callers submit one item each; a writer fiber takes whatever is waiting (up to `maxBatch`)
 * and writes it in one go. No time window, so it works the same under TestClock.
 */
import * as Chunk from "effect/Chunk"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"

/** Starts the writer fiber in the current scope and returns the submit function. */
export const make = <A, B, E>(
  write: (items: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>,
  maxBatch: number
): Effect.Effect<(item: A) => Effect.Effect<B, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<readonly [A, Deferred.Deferred<B, E>]>()
    const writeBatch = Effect.gen(function*() {
      const batch = Chunk.toReadonlyArray(yield* Queue.takeBetween(queue, 1, maxBatch))
      const exit = yield* Effect.exit(write(batch.map(([item]) => item)))
      yield* Exit.match(exit, {
        onFailure: (cause) => Effect.forEach(batch, ([, done]) => Deferred.failCause(done, cause), { discard: true }),
        onSuccess: (results) =>
          Effect.forEach(batch, ([, done], i) =>
            i < results.length
              ? Deferred.succeed(done, results[i]!)
              : Deferred.die(done, new Error(`group commit: no result for item ${i} of ${batch.length}`)), { discard: true })
      })
    })
    yield* Effect.forkScoped(Effect.forever(writeBatch))
    // callers still waiting when the scope closes are interrupted rather than left hanging
    yield* Effect.addFinalizer(() =>
      Queue.takeAll(queue).pipe(
        Effect.flatMap((rest) => Effect.forEach(rest, ([, done]) => Deferred.interrupt(done), { discard: true })),
        Effect.zipRight(Queue.shutdown(queue))
      )
    )
    return (item: A) =>
      Effect.flatMap(Deferred.make<B, E>(), (done) => Effect.zipRight(Queue.offer(queue, [item, done]), Deferred.await(done)))
  })
