/**
 * Group commit: callers submit one item each; a writer fiber takes whatever is waiting (up to `maxBatch`)
 * and writes it in one go. No time window, so it works the same under TestClock.
 *
 * The waiting items are a plain array, and a caller waits in an `Effect.async` that the writer resumes directly:
 * with hundreds of concurrent callers, a `Queue` offer and a `Deferred` per item cost more than the write itself.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as FiberId from "effect/FiberId"
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
  /** a caller waiting in `submit`: resumed with its result */
  | { readonly _tag: "Waiting"; readonly item: A; readonly resume: (exit: Exit.Exit<B, E>) => void }
  /** a `submitWith` item: its handler runs in the writer */
  | { readonly _tag: "Handled"; readonly item: A; readonly onDone: (exit: Exit.Exit<B, E>) => Effect.Effect<void> }
  | { readonly _tag: "Flush"; readonly resume: (exit: Exit.Exit<void>) => void }

/** Starts the writer fiber in the current scope. */
export const make = <A, B, E>(
  write: (items: ReadonlyArray<A>) => Effect.Effect<ReadonlyArray<B>, E>,
  maxBatch: number
): Effect.Effect<GroupCommit<A, B, E>, never, Scope.Scope> =>
  Effect.gen(function*() {
    let pending: Array<Entry<A, B, E>> = []
    let wake: (() => void) | null = null
    let closed = false

    const offer = (entry: Entry<A, B, E>) => {
      pending.push(entry)
      const writer = wake
      wake = null
      writer?.()
    }

    const awaitWork = Effect.async<void>((resume) => {
      if (pending.length > 0) return resume(Effect.void)
      wake = () => resume(Effect.void)
      return Effect.sync(() => void (wake = null))
    })

    /** Tells every taken entry its outcome; a failing handler is logged and cannot stop the writer (it would stall all callers). */
    const settle = (
      taken: ReadonlyArray<Entry<A, B, E>>,
      outcome: (i: number) => Exit.Exit<B, E>,
      flushed: Exit.Exit<void>
    ): Effect.Effect<void> =>
      Effect.suspend(() => {
        const handlers: Array<Effect.Effect<void>> = []
        let i = 0
        for (const entry of taken) {
          if (entry._tag === "Flush") continue
          const exit = outcome(i++)
          if (entry._tag === "Waiting") entry.resume(exit)
          else {
            handlers.push(
              Effect.suspend(() => entry.onDone(exit)).pipe(
                Effect.catchAllCause((cause) => Effect.logError("group commit: a completion handler failed", cause))
              )
            )
          }
        }
        // flushes taken with this batch waited only for entries before them, all of which are settled now
        const flushes = Effect.sync(() => {
          for (const entry of taken) if (entry._tag === "Flush") entry.resume(flushed)
        })
        return handlers.length === 0 ? flushes : Effect.zipRight(Effect.all(handlers, { discard: true }), flushes)
      })

    const interruptedBy = (id: FiberId.FiberId) => (): Exit.Exit<B, E> => Exit.interrupt(id)

    const writeBatch = Effect.flatMap(awaitWork, () => {
      const taken = pending.length <= maxBatch ? pending : pending.slice(0, maxBatch)
      pending = pending.length <= maxBatch ? [] : pending.slice(maxBatch)
      const items: Array<A> = []
      for (const entry of taken) if (entry._tag !== "Flush") items.push(entry.item)
      const written = items.length === 0 ? Effect.succeed(Exit.succeed<ReadonlyArray<B>>([])) : Effect.exit(write(items)).pipe(
        // closing the scope mid-write: the callers of this batch are interrupted rather than left waiting
        Effect.onInterrupt(() => Effect.fiberIdWith((id) => settle(taken, interruptedBy(id), Exit.interrupt(id))))
      )
      return Effect.flatMap(written, (exit) =>
        Effect.uninterruptible(settle(
          taken,
          (i) =>
            Exit.isFailure(exit)
              ? Exit.failCause(exit.cause)
              : i < exit.value.length
              ? Exit.succeed(exit.value[i]!)
              : Exit.die(new Error(`group commit: no result for item ${i} of ${items.length}`)),
          Exit.void
        )))
    })
    yield* Effect.forkScoped(Effect.forever(writeBatch))
    // callers still waiting when the scope closes are interrupted rather than left hanging
    yield* Effect.addFinalizer(() =>
      Effect.fiberIdWith((id) => {
        closed = true
        const rest = pending
        pending = []
        return settle(rest, interruptedBy(id), Exit.interrupt(id))
      })
    )

    return {
      submit: (item) =>
        Effect.async<B, E>((resume) => {
          if (closed) return resume(Effect.interrupt)
          offer({ _tag: "Waiting", item, resume })
        }),
      submitWith: (item, onDone) =>
        Effect.suspend(() => (closed ? Effect.interrupt : Effect.sync(() => offer({ _tag: "Handled", item, onDone })))),
      flush: Effect.async<void>((resume) => {
        if (closed) return resume(Effect.interrupt)
        offer({ _tag: "Flush", resume })
      })
    }
  })
