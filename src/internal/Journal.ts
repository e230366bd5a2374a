/**
 * The journal: the only code that writes rows on the delivery path. Callers submit write ops (a new row, or a guarded
 * transition from `EntryStateMachine.writeSpec`); one fiber takes whatever is waiting and writes it as one store
 * batch (group commit, no time window, so TestClock needs no nudging), then completes each caller's `Deferred` with
 * its own result. It runs no adapter code and holds nothing of its callers but their `Deferred`s.
 *
 * Between two batches it yields to Node's event loop (a macrotask): a synchronous SQLite driver would otherwise chain
 * batch after batch through Effect's microtask scheduler, and the gateway's sockets and timers would never run.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { StoreError } from "../DeliveryError.js"
import type { OutboxRepoShape, WriteOp, WriteResult } from "../OutboxRepo.js"

/** The submit side of the journal. */
export interface Journal {
  /** Writes one op with whatever else is waiting and returns its result (uninterruptible: the caller learns it). */
  readonly write: (op: WriteOp) => Effect.Effect<WriteResult, StoreError>
}

interface Pending {
  readonly op: WriteOp
  readonly done: Deferred.Deferred<WriteResult, StoreError>
}

/** Resumes on the next turn of Node's event loop, after pending I/O and timers (`setImmediate`), whatever the clock. */
export const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Starts the journal's writer fiber in the current scope; `maxBatch` bounds the ops of one transaction. */
export const make = (repo: OutboxRepoShape, maxBatch: number): Effect.Effect<Journal, never, Scope.Scope> =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Pending>()

    /** Writes a taken batch and tells each caller its result, even when the scope closes meanwhile. */
    const writeBatch = (batch: ReadonlyArray<Pending>) =>
      Effect.flatMap(Effect.exit(repo.write(batch.map((p) => p.op))), (exit) =>
        Effect.forEach(batch, ({ done }, i) => {
          if (Exit.isFailure(exit)) return Deferred.failCause(done, exit.cause)
          const result = exit.value[i]
          return result === undefined
            ? Deferred.die(done, new Error(`journal: the store returned no result for op ${i} of ${batch.length}`))
            : Deferred.succeed(done, result)
        }, { discard: true })).pipe(Effect.uninterruptible)

    const loop = Queue.takeBetween(queue, 1, maxBatch).pipe(
      Effect.flatMap((taken) => writeBatch(Array.from(taken))),
      Effect.zipRight(yieldToEventLoop),
      Effect.forever
    )
    yield* Effect.forkScoped(loop)
    // callers still waiting when the scope closes are interrupted rather than left hanging
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(
        Queue.takeAll(queue),
        (rest) =>
          Effect.zipRight(
            Effect.forEach(rest, (p) => Deferred.interrupt(p.done), { discard: true }),
            Queue.shutdown(queue)
          )
      )
    )

    return {
      // uninterruptible: a caller always learns what became of its write (an interrupted live insert would leave a
      // leased row nobody sends); the wait is one batch write, and closing the journal ends it
      write: (op) =>
        Effect.flatMap(
          Deferred.make<WriteResult, StoreError>(),
          (done) => Effect.zipRight(Queue.offer(queue, { op, done }), Deferred.await(done))
        ).pipe(Effect.uninterruptible)
    }
  })
