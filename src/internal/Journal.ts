/**
 * The journal: the only code that writes rows on the delivery path. Callers submit write ops (a new row, or a guarded
 * transition from `EntryStateMachine.writeSpec`); one fiber takes whatever is waiting and writes it as one store
 * batch (group commit, no time window, so TestClock needs no nudging), then resumes each caller with its own result.
 * It runs no adapter code and holds nothing of its callers but their resume callbacks.
 *
 * Between two batches it yields to Node's event loop (a macrotask): a synchronous SQLite driver would otherwise chain
 * batch after batch through Effect's microtask scheduler, and the gateway's sockets and timers would never run.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
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
  readonly resume: (result: Effect.Effect<WriteResult, StoreError>) => void
}

/** Resumes on the next turn of Node's event loop, after pending I/O and timers (`setImmediate`), whatever the clock. */
export const yieldToEventLoop: Effect.Effect<void> = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Starts the journal's writer fiber in the current scope; `maxBatch` bounds the ops of one transaction. */
export const make = (repo: OutboxRepoShape, maxBatch: number): Effect.Effect<Journal, never, Scope.Scope> =>
  Effect.gen(function*() {
    // a plain array and each caller's own resume: a Queue and a Deferred per write cost three times the wait
    let pending: Array<Pending> = []
    let closed = false
    const waiting = Effect.unsafeMakeLatch(false)

    /** Takes up to `maxBatch` waiting writes (closing the latch when none is left). */
    const take = Effect.sync(() => {
      const batch = pending.length <= maxBatch ? pending : pending.slice(0, maxBatch)
      pending = pending.length <= maxBatch ? [] : pending.slice(maxBatch)
      if (pending.length === 0) waiting.unsafeClose()
      return batch
    })

    /** Writes a taken batch and tells each caller its result, even when the scope closes meanwhile. */
    const writeBatch = (batch: ReadonlyArray<Pending>) =>
      Effect.map(Effect.exit(repo.write(batch.map((p) => p.op))), (exit) => {
        batch.forEach(({ resume }, i) => {
          if (Exit.isFailure(exit)) return resume(Exit.failCause(exit.cause))
          const result = exit.value[i]
          resume(
            result === undefined
              ? Effect.die(new Error(`journal: the store returned no result for op ${i} of ${batch.length}`))
              : Exit.succeed(result)
          )
        })
      }).pipe(Effect.uninterruptible)

    const loop = waiting.await.pipe(
      // taken and written in one uninterruptible step: a batch taken is always answered, even at shutdown
      Effect.zipRight(
        Effect.uninterruptible(Effect.flatMap(take, (batch) => batch.length === 0 ? Effect.void : writeBatch(batch)))
      ),
      Effect.zipRight(yieldToEventLoop),
      Effect.forever
    )
    yield* Effect.forkScoped(loop)
    // callers still waiting when the scope closes are interrupted rather than left hanging
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
        const rest = pending
        pending = []
        for (const p of rest) p.resume(Effect.interrupt)
      })
    )

    return {
      // uninterruptible: a caller always learns what became of its write (an interrupted live insert would leave a
      // leased row nobody sends); the wait is one batch write, and closing the journal ends it
      write: (op) =>
        Effect.async<WriteResult, StoreError>((resume) => {
          if (closed) return resume(Effect.interrupt)
          pending.push({ op, resume })
          if (pending.length === 1) waiting.unsafeOpen()
        }).pipe(Effect.uninterruptible)
    }
  })
