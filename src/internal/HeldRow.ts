/**
 * The delivery's copy of the row it holds, and its writes through the journal. Two fibers write one row, the delivery
 * and the lease keeper's renewal; a store writes only the columns a spec changes, so each write's changes are applied
 * to the copy as it is when the write lands (a renewal between two writes of the delivery keeps its new lease).
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { OutboxEntry } from "../Delivery.js"
import type { StoreError } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import { WriteOp } from "../OutboxRepo.js"
import type { Journal } from "./Journal.js"

/** The held copy: the stored row as this delivery last wrote or read it. */
export interface Held {
  entry: OutboxEntry
}

/** `current` with the columns that differ between `before` and `next` taken from `next`. */
const withChanges = (current: OutboxEntry, before: OutboxEntry, next: OutboxEntry): OutboxEntry => {
  if (current === before) return next
  const merged: Record<string, unknown> = { ...current }
  const from = before as unknown as Record<string, unknown>
  const to = next as unknown as Record<string, unknown>
  for (const key of new Set([...Object.keys(from), ...Object.keys(to)])) {
    if (from[key] === to[key]) continue
    if (key in to) merged[key] = to[key]
    else delete merged[key]
  }
  return merged as unknown as OutboxEntry
}

/**
 * Writes `event` on the held row through the journal (at `at`, else now): true once written, false when its guard no
 * longer held (the lease is gone). The copy follows every write, so the next spec is made from the stored row.
 */
export const writer =
  (journal: Journal) => (held: Held, event: Machine.EntryEvent, at?: number): Effect.Effect<boolean, StoreError> =>
    Effect.flatMap(at === undefined ? Clock.currentTimeMillis : Effect.succeed(at), (now) => {
      const before = held.entry
      const spec = Machine.writeSpec(before, event, now)
      // the held row is the stored row, so a transition refused here would be refused by the store too
      if (Either.isLeft(spec)) return Effect.succeed(false)
      return Effect.map(journal.write(WriteOp.Update({ spec: spec.right })), (result) => {
        if (result._tag !== "Updated") return false
        held.entry = withChanges(held.entry, before, spec.right.next)
        return true
      })
    })
