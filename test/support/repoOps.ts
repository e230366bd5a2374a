/**
 * The writes the delivery program makes, as tests make them on a store: read the row (as the lease holder holds
 * it), build the state machine's write spec, and apply it with `OutboxRepo.write`, the one write path of a leased row.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { EntryId, OutboxEntry } from "../../src/Delivery.js"
import { LeaseLost } from "../../src/DeliveryError.js"
import type { EntryEvent } from "../../src/EntryStateMachine.js"
import * as Machine from "../../src/EntryStateMachine.js"
import type { OutboxRepoShape } from "../../src/OutboxRepo.js"
import { WriteOp } from "../../src/OutboxRepo.js"

/** A failure as the delivery program records it: the `Retry` or `Fail` event without its owner. */
export type FailureRecord =
  | ({ readonly _tag: "Retryable" } & Omit<Extract<EntryEvent, { readonly _tag: "Retry" }>, "_tag" | "owner">)
  | ({ readonly _tag: "Terminal" } & Omit<Extract<EntryEvent, { readonly _tag: "Fail" }>, "_tag" | "owner">)

/** Applies `event` to the stored row through `write`; the row after it, or `LeaseLost` when refused or not written. */
export const apply = (repo: OutboxRepoShape, id: EntryId, owner: string, event: EntryEvent, now: number) =>
  Effect.gen(function*() {
    const row = yield* repo.get(id)
    if (Option.isNone(row)) return yield* Effect.fail(new LeaseLost({ id, owner }))
    const spec = Machine.writeSpec(row.value, event, now)
    if (Either.isLeft(spec)) return yield* Effect.fail(new LeaseLost({ id, owner }))
    const [result] = yield* repo.write([WriteOp.Update({ spec: spec.right })])
    if (result?._tag !== "Updated") return yield* Effect.fail(new LeaseLost({ id, owner }))
    return spec.right.next
  })

/** Applies an event to several rows; which were written and which refused. */
const applyAll = (
  repo: OutboxRepoShape,
  ids: ReadonlyArray<EntryId>,
  owner: string,
  eventFor: (id: EntryId) => EntryEvent,
  now: number
) =>
  Effect.gen(function*() {
    const written: Array<EntryId> = []
    const rejected: Array<EntryId> = []
    for (const id of ids) {
      const result = yield* Effect.either(apply(repo, id, owner, eventFor(id), now))
      ;(Either.isRight(result) ? written : rejected).push(id)
    }
    return { written, rejected }
  })

/** Marks leased rows delivered. */
export const ack = (
  repo: OutboxRepoShape,
  owner: string,
  items: ReadonlyArray<{ readonly id: EntryId; readonly partsDelivered: number }>,
  now: number
) => {
  const parts = new Map(items.map((i) => [i.id, i.partsDelivered]))
  return applyAll(
    repo,
    items.map((i) => i.id),
    owner,
    (id) => Machine.EntryEvent.Ack({ owner, partsDelivered: parts.get(id)! }),
    now
  )
}

/** Records a failed attempt on a leased row. */
export const recordFailure = (
  repo: OutboxRepoShape,
  id: EntryId,
  owner: string,
  failure: FailureRecord,
  now: number
): Effect.Effect<OutboxEntry, LeaseLost | import("../../src/DeliveryError.js").StoreError> => {
  const { _tag, ...fields } = failure
  const event = _tag === "Retryable"
    ? Machine.EntryEvent.Retry({ owner, ...(fields as Omit<FailureRecord & { _tag: "Retryable" }, "_tag">) })
    : Machine.EntryEvent.Fail({ owner, ...(fields as Omit<FailureRecord & { _tag: "Terminal" }, "_tag">) })
  return apply(repo, id, owner, event, now)
}

/** Records progress on a leased row and optionally extends its lease. */
export const recordProgress = (
  repo: OutboxRepoShape,
  id: EntryId,
  owner: string,
  progress: { readonly partsDelivered: number; readonly leaseUntil?: number | undefined },
  now: number
) =>
  Effect.flatMap(
    apply(repo, id, owner, Machine.EntryEvent.Progress({ owner, partsDelivered: progress.partsDelivered }), now),
    (entry) =>
      progress.leaseUntil === undefined
        ? Effect.succeed(entry)
        : apply(repo, id, owner, Machine.EntryEvent.Renew({ owner, leaseUntil: progress.leaseUntil }), now)
  )

/** Gives leases back without an attempt. */
export const release = (repo: OutboxRepoShape, owner: string, ids: ReadonlyArray<EntryId>, now: number) =>
  applyAll(repo, ids, owner, () => Machine.EntryEvent.Release({ owner }), now)

/** Expires an in-flight row by its lease owner (what the delivery program does before a send past the TTL). */
export const expireHeld = (repo: OutboxRepoShape, id: EntryId, owner: string, now: number) =>
  apply(repo, id, owner, Machine.EntryEvent.Expire({ owner }), now)
