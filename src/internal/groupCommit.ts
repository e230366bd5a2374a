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

/** The submit side of a group-commit writer. */
export interface GroupCommit<A, B, E> {
  /** submits one item and waits for its result */
  readonly submit: (item: A) => Effect.Effect<B, E>
  /**
   * submits one item without waiting; `onDone` runs in the writer fiber with the item's result, right after its batch
   * (it must be quick: the next batch waits for it)
   */
  readonly submitWith: (item: A, onDone: (exit: Exit.Exit<B, E>) => Effect.Effect<void>) => Effect.Effect<void>
  /** waits until every item submitted before it is written and its `onDone` has run */
  readonly flush: Effect.Effect<void>
}

type Entry<A, B, E> =
  | { readonly _tag: "Item"; readonly item: A; readonly onDone: (exit: Exit.Exit<B, E>) => Effect.Effect<void> }
  | { readonly _tag: "Flush"; readonly done: Deferred.Deferred<void> }

/** Starts the writer fiber in the current scope. */
export const make = <A, B, E>(
  write: (items: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>,
  maxBatch: number
): Effect.Effect<GroupCommit<A, B, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Entry<A, B, E>>()
    const writeBatch = Effect.gen(function*() {
      const taken = Chunk.toReadonlyArray(yield* Queue.takeBetween(queue, 1, maxBatch))
      const items = taken.filter((e): e is Extract<Entry<A, B, E>, { _tag: "Item" }> => e._tag === "Item")
      const flushes = taken.filter((e): e is Extract<Entry<A, B, E>, { _tag: "Flush" }> => e._tag === "Flush")
      // every taken item hears of its outcome, and a failing handler cannot stop the writer (it would stall all callers)
      const settle = (outcome: (i: number) => Exit.Exit<B, E>, flushed: (done: Deferred.Deferred<void>) => Effect.Effect<boolean>) =>
        Effect.zipRight(
          Effect.forEach(items, (e, i) =>
            e.onDone(outcome(i)).pipe(
              Effect.catchAllCause((cause) => Effect.logError("group commit: a completion handler failed", cause))
            ), { discard: true }),
          // flushes taken with this batch waited only for items before them, all of which are settled now
          Effect.forEach(flushes, (f) => flushed(f.done), { discard: true })
        )
      const exit = items.length === 0 ? Exit.succeed<ReadonlyArray<B>>([]) : yield* Effect.exit(write(items.map((e) => e.item))).pipe(
        // closing the scope mid-write: the callers of this batch are interrupted rather than left waiting
        Effect.onInterrupt(() =>
          Effect.fiberIdWith((id) => settle(() => Exit.interrupt(id), (done) => Deferred.interrupt(done)))
        )
      )
      yield* Effect.uninterruptible(settle(
        (i) =>
          Exit.isFailure(exit)
            ? Exit.failCause(exit.cause)
            : i < exit.value.length
            ? Exit.succeed(exit.value[i]!)
            : Exit.die(new Error(`group commit: no result for item ${i} of ${items.length}`)),
        (done) => Deferred.succeed(done, undefined)
      ))
    })
    yield* Effect.forkScoped(Effect.forever(writeBatch))
    // callers still waiting when the scope closes are interrupted rather than left hanging
    yield* Effect.addFinalizer(() =>
      Queue.takeAll(queue).pipe(
        Effect.flatMap((rest) =>
          Effect.forEach(
            rest,
            (e) => e._tag === "Flush" ? Deferred.interrupt(e.done) : Effect.fiberIdWith((id) => e.onDone(Exit.interrupt(id))),
            { discard: true }
          )
        ),
        Effect.zipRight(Queue.shutdown(queue))
      )
    )
    const submitWith: GroupCommit<A, B, E>["submitWith"] = (item, onDone) =>
      Effect.asVoid(Queue.offer(queue, { _tag: "Item", item, onDone }))
    return {
      submit: (item) =>
        Effect.flatMap(Deferred.make<B, E>(), (done) =>
          Effect.zipRight(submitWith(item, (exit) => Deferred.done(done, exit)), Deferred.await(done))),
      submitWith,
      flush: Effect.flatMap(Deferred.make<void>(), (done) =>
        Effect.zipRight(Queue.offer(queue, { _tag: "Flush", done }), Deferred.await(done)))
    }
  })
