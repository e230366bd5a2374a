/**
 * The life of an outbox row as a pure function: (entry, event, now) → next entry, or a rejected transition.
 * Every store writes only what this function returns, so the diagram in DESIGN.md holds for all backends.
 */
import * as Data from "effect/Data"
import * as Either from "effect/Either"
import type { EntryId, EntryState, OutboxEntry, TerminalReason } from "./Delivery.js"
import { TransitionRejected } from "./DeliveryError.js"

/** What can happen to a row. */
export type EntryEvent = Data.TaggedEnum<{
  /** lease a due row (queued, failed_retryable past nextAttemptAt, or in_flight with an expired lease) */
  Claim: { readonly owner: string; readonly leaseUntil: number }
  /** extend the lease of a row this owner holds (a slow send) */
  Renew: { readonly owner: string; readonly leaseUntil: number }
  /** record parts delivered so far, without finishing */
  Progress: { readonly owner: string; readonly partsDelivered: number }
  /** every part was delivered */
  Ack: { readonly owner: string; readonly partsDelivered: number }
  /** a retryable failure: retry at `retryAt`, or terminal `max_attempts` once the attempts are used up */
  Retry: {
    readonly owner: string
    readonly error: string
    readonly retryAt: number
    /** false for rate limiting (429 with retry-after): it does not use up an attempt */
    readonly countsAttempt: boolean
    readonly partsDelivered: number
    /** best effort: parts past `partsDelivered` already delivered */
    readonly deliveredParts?: ReadonlyArray<number>
    readonly maxAttempts: number
  }
  /** a failure that will not get better by retrying */
  Fail: {
    readonly owner: string
    readonly error: string
    readonly reason: TerminalReason
    readonly partsDelivered: number
  }
  /**
   * give the lease back without an attempt (shutdown, budget exhausted); with `until`, the row is not claimable before
   * then (a send waiting for its rate-limit token)
   */
  Release: { readonly owner: string; readonly until?: number }
  /** make a dead boot's lease claimable at once */
  Reclaim: {}
  /** the row is past its TTL; an in-flight row only by its own lease owner, before sending */
  Expire: { readonly owner?: string }
  /** admin retry of a finished failure: back to queued with attempts reset and a fresh TTL */
  Requeue: { readonly expiresAt: number | null }
  /** the row's data no longer decodes */
  Quarantine: { readonly error: string }
}>

/** Constructors for `EntryEvent`. */
export const EntryEvent = Data.taggedEnum<EntryEvent>()

/** The states each event may start from (stores use this as the guard of their SQL writes). */
export const sourceStates: { readonly [K in EntryEvent["_tag"]]: ReadonlyArray<EntryState> } = {
  Claim: ["queued", "failed_retryable", "in_flight"],
  Renew: ["in_flight"],
  Progress: ["in_flight"],
  Ack: ["in_flight"],
  Retry: ["in_flight"],
  Fail: ["in_flight"],
  Release: ["in_flight"],
  Reclaim: ["in_flight"],
  Expire: ["queued", "failed_retryable", "in_flight"],
  Requeue: ["failed_terminal", "expired"],
  Quarantine: ["queued", "in_flight", "failed_retryable", "failed_terminal", "expired"]
}

/** Whether retention may delete a row in this state (`delivered` leaves only this way). */
export const isPrunable = (state: EntryState): boolean =>
  state === "delivered" || state === "failed_terminal" || state === "expired"

/** Whether a row in this state may still be sent (it holds a `nextAttemptAt`). */
export const isPending = (state: EntryState): boolean =>
  state === "queued" || state === "in_flight" || state === "failed_retryable"

/** Whether the row's claim time has come. */
export const isDue = (entry: OutboxEntry, now: number): boolean =>
  entry.nextAttemptAt !== null && entry.nextAttemptAt <= now &&
  (entry.state !== "in_flight" || (entry.leaseExpiresAt !== null && entry.leaseExpiresAt <= now))

const finished = {
  nextAttemptAt: null,
  leaseOwner: null,
  leaseExpiresAt: null
} as const

/** What an event does to a row: the columns it changes (`finish` also clears the lease and due time), or why not. */
type Step = { readonly changes: Partial<OutboxEntry>; readonly finish: boolean } | { readonly refused: string }

const change = (changes: Partial<OutboxEntry>, finish = false): Step => ({ changes, finish })
const refuse = (refused: string): Step => ({ refused })

/** The events only the row's lease owner sends (its delivery), and the rest (housekeeping, admin, recovery). */
type OwnerEvent = Extract<EntryEvent, { readonly _tag: "Renew" | "Progress" | "Ack" | "Retry" | "Fail" | "Release" }>
type OtherEvent = Exclude<EntryEvent, OwnerEvent>

const isOwnerEvent = (event: EntryEvent): event is OwnerEvent =>
  event._tag === "Renew" || event._tag === "Progress" || event._tag === "Ack" || event._tag === "Retry" ||
  event._tag === "Fail" || event._tag === "Release"

/** Applies an event; the result is the next entry or a `TransitionRejected` saying why not. */
export const transition = (
  entry: OutboxEntry,
  event: EntryEvent,
  now: number
): Either.Either<OutboxEntry, TransitionRejected> => {
  const reject = (reason: string) =>
    Either.left(new TransitionRejected({ id: entry.id, from: entry.state, event: event._tag, reason }))
  if (!sourceStates[event._tag].includes(entry.state)) {
    return reject(`allowed only from ${sourceStates[event._tag].join(", ")}`)
  }
  const step = isOwnerEvent(event)
    ? entry.leaseOwner !== event.owner ? refuse(`lease held by ${entry.leaseOwner}`) : ownerStep(entry, event, now)
    : otherStep(entry, event, now)
  if ("refused" in step) return reject(step.refused)
  const merged: OutboxEntry = step.finish
    ? { ...entry, ...finished, ...step.changes, updatedAt: now }
    : { ...entry, ...step.changes, updatedAt: now }
  // an empty list is stored as no list, so every backend returns the same entry
  if (merged.deliveredParts === undefined || merged.deliveredParts.length > 0) return Either.right(merged)
  const { deliveredParts: _, ...rest } = merged
  return Either.right<OutboxEntry>(rest)
}

/** A delivery's event on the row it holds (the lease owner is checked already). */
const ownerStep = (entry: OutboxEntry, event: OwnerEvent, now: number): Step => {
  if (event._tag === "Renew") return change({ leaseExpiresAt: event.leaseUntil, nextAttemptAt: event.leaseUntil })
  if (event._tag === "Release") {
    return change({
      state: entry.attemptCount === 0 ? "queued" : "failed_retryable",
      nextAttemptAt: Math.max(now, event.until ?? now),
      leaseOwner: null,
      leaseExpiresAt: null
    })
  }
  if (event.partsDelivered < entry.partsDelivered) {
    return refuse(`partsDelivered cannot go back from ${entry.partsDelivered} to ${event.partsDelivered}`)
  }
  switch (event._tag) {
    case "Progress":
      return change({ partsDelivered: event.partsDelivered })
    case "Ack":
      // lastError stays: a delivered row still tells that an earlier attempt failed
      return change(
        { state: "delivered", deliveredAt: now, partsDelivered: event.partsDelivered, deliveredParts: [] },
        true
      )
    case "Retry": {
      const attemptCount = entry.attemptCount + (event.countsAttempt ? 1 : 0)
      const islands = deliveredPast(entry, event.partsDelivered, event.deliveredParts)
      const failed = { ...islands, attemptCount, partsDelivered: event.partsDelivered, lastError: event.error }
      return attemptCount >= event.maxAttempts
        ? change({ ...failed, state: "failed_terminal", terminalReason: "max_attempts" }, true)
        : change({
          ...failed,
          state: "failed_retryable",
          nextAttemptAt: event.retryAt,
          leaseOwner: null,
          leaseExpiresAt: null
        })
    }
    case "Fail":
      return change({
        state: "failed_terminal",
        terminalReason: event.reason,
        // an attempt that reached the channel counts; a skip (non-final, unknown channel) did not try
        attemptCount: event.reason === "permanent_error" ? entry.attemptCount + 1 : entry.attemptCount,
        partsDelivered: event.partsDelivered,
        lastError: event.error
      }, true)
  }
}

/** A claim, a reclaim, an expiry, an admin requeue or a quarantine. */
const otherStep = (entry: OutboxEntry, event: OtherEvent, now: number): Step => {
  switch (event._tag) {
    case "Claim":
      if (!isDue(entry, now)) return refuse("not due")
      if (event.leaseUntil <= now) return refuse("lease must end in the future")
      return change(claimWrite(event, now))
    case "Reclaim":
      // due since it was enqueued: a dead boot's rows go before the backlog, as they block their conversations
      return change({ leaseExpiresAt: now, nextAttemptAt: Math.min(now, entry.enqueuedAt) })
    case "Expire":
      if (entry.expiresAt === null || entry.expiresAt > now) return refuse("not past its expiry")
      if (entry.state === "in_flight" && (event.owner === undefined || entry.leaseOwner !== event.owner)) {
        return refuse("an in-flight row is expired only by its lease owner")
      }
      return change({ state: "expired" }, true)
    case "Requeue":
      // its data does not decode: queued again it could only be quarantined again
      if (entry.terminalReason === "decode_error") return refuse("its stored data does not decode")
      // progress messages are never replayed: queued again, the next pass would only fail them again
      if (entry.kind !== "final") return refuse(`a ${entry.kind} message is never replayed`)
      return change({
        state: "queued",
        attemptCount: 0,
        terminalReason: null,
        nextAttemptAt: now,
        expiresAt: event.expiresAt,
        leaseOwner: null,
        leaseExpiresAt: null
      })
    case "Quarantine":
      return change({ state: "failed_terminal", terminalReason: "decode_error", lastError: event.error }, true)
  }
}

/**
 * A transition of one row as a guarded write: `next` is written only while the stored row is still `guard` (its
 * state and lease owner), the way every backend applies it (`UPDATE … WHERE id = ? AND state = ? AND lease_owner = ?`).
 * The process holding a row's lease is the only writer of that row, so its `before` is the stored row.
 */
export interface WriteSpec {
  readonly guard: { readonly id: EntryId; readonly state: EntryState; readonly leaseOwner: string | null }
  readonly before: OutboxEntry
  readonly next: OutboxEntry
}

/** The write spec of `event` on `entry` at `now`, or the rejection `transition` gives. */
export const writeSpec = (
  entry: OutboxEntry,
  event: EntryEvent,
  now: number
): Either.Either<WriteSpec, TransitionRejected> =>
  Either.map(transition(entry, event, now), (next) => ({
    guard: { id: entry.id, state: entry.state, leaseOwner: entry.leaseOwner },
    before: entry,
    next
  }))

/** Whether a stored row satisfies a spec's guard. */
export const guardHolds = (row: OutboxEntry, guard: WriteSpec["guard"]): boolean =>
  row.state === guard.state && row.leaseOwner === guard.leaseOwner

/**
 * The columns the Claim transition sets on a row it accepts: the same for every row of a claim, so a store writes a
 * claimed batch as one UPDATE of these values. A property test holds `transition` to this.
 */
export const claimWrite = (event: { readonly owner: string; readonly leaseUntil: number }, now: number) => ({
  state: "in_flight",
  leaseOwner: event.owner,
  leaseExpiresAt: event.leaseUntil,
  // while leased, nextAttemptAt is when the lease runs out: the time the row becomes claimable again
  nextAttemptAt: event.leaseUntil,
  lastAttemptAt: now,
  updatedAt: now
} as const)

/**
 * The columns the Expire transition sets on a waiting row (queued or failed_retryable): the same for every row, so a
 * store expires a batch with one UPDATE and never reads (or decodes) the rows. A property test holds `transition` to this.
 */
export const expireWrite = (now: number) => ({
  state: "expired",
  nextAttemptAt: null,
  leaseOwner: null,
  leaseExpiresAt: null,
  updatedAt: now
} as const)

/** The delivered parts past the resume point, old and new, never forgetting one that went out. */
const deliveredPast = (
  entry: OutboxEntry,
  partsDelivered: number,
  added: ReadonlyArray<number> | undefined
): { readonly deliveredParts: ReadonlyArray<number> } => ({
  deliveredParts: [...new Set([...(entry.deliveredParts ?? []), ...(added ?? [])])]
    .filter((i) => i >= partsDelivered)
    .sort((a, b) => a - b)
})

/** Checks the invariants every stored row satisfies; stores refuse to insert a row that breaks them. */
export const checkInvariants = (entry: OutboxEntry): string | null => {
  const pending = isPending(entry.state)
  if (pending !== (entry.nextAttemptAt !== null)) {
    return pending ? `a ${entry.state} row needs nextAttemptAt` : `a ${entry.state} row has no nextAttemptAt`
  }
  if ((entry.state === "in_flight") !== (entry.leaseOwner !== null && entry.leaseExpiresAt !== null)) {
    return entry.state === "in_flight" ? "an in_flight row needs a lease" : `a ${entry.state} row holds no lease`
  }
  if ((entry.state === "failed_terminal") !== (entry.terminalReason !== null)) {
    return entry.state === "failed_terminal"
      ? "a failed_terminal row needs a terminalReason"
      : `a ${entry.state} row has no terminalReason`
  }
  if (entry.state === "delivered" && entry.deliveredAt === null) return "a delivered row needs deliveredAt"
  if (entry.attemptCount < 0 || entry.partsDelivered < 0) return "counts cannot be negative"
  return null
}
