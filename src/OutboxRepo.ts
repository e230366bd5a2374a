/**
 * The storage port: rows, leases and state transitions. Backends: `MemoryOutboxRepo`, `SqliteOutboxRepo`
 * (and `PgOutboxRepo`). Every write a backend makes is a transition accepted by `EntryStateMachine`; an ack may be
 * applied as its guarded write (`EntryStateMachine.ackWrite`) without reading the row first.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type { EntryId, EntryState, OutboxEntry, OutboxStats } from "./Delivery.js"
import type { EntryEvent } from "./EntryStateMachine.js"
import type { EntryNotFound, LeaseLost, StoreError, TransitionRejected } from "./DeliveryError.js"

/** What an insert did: a new row, or the row that already had this id or idempotency key (nothing written). */
export type InsertResult = Data.TaggedEnum<{
  Inserted: { readonly entry: OutboxEntry }
  Duplicate: { readonly entry: OutboxEntry }
}>
/** Constructors and matchers for `InsertResult`. */
export const InsertResult = Data.taggedEnum<InsertResult>()

/** A claimed row; `reclaimed` is true when it was taken from an expired (crashed) lease: a possible duplicate. */
export interface ClaimedEntry {
  readonly entry: OutboxEntry
  readonly reclaimed: boolean
}

/** A due row whose stored data no longer decodes; it was not leased. Move it aside with `quarantine`. */
export interface MalformedRow {
  readonly id: EntryId
  readonly message: string
}

/** The result of one claim: the leased rows in claim order, and the rows that could not be decoded. */
export interface ClaimBatch {
  readonly claimed: ReadonlyArray<ClaimedEntry>
  readonly malformed: ReadonlyArray<MalformedRow>
  /** what the acks given with the claim did (present when there were any) */
  readonly acked?: BatchWriteResult
}

/** Which of a batch of fenced writes landed; `rejected` rows are no longer leased to the writer. */
export interface BatchWriteResult {
  readonly written: ReadonlyArray<EntryId>
  readonly rejected: ReadonlyArray<EntryId>
}

/** A failed attempt to record on a leased row: the state machine's `Retry` or `Fail` event without its owner. */
export type FailureRecord =
  | ({ readonly _tag: "Retryable" } & Omit<Extract<EntryEvent, { readonly _tag: "Retry" }>, "_tag" | "owner">)
  | ({ readonly _tag: "Terminal" } & Omit<Extract<EntryEvent, { readonly _tag: "Fail" }>, "_tag" | "owner">)

/** Filters of the admin listing; newest first. `before` pages by `enqueuedAt` (exclusive). */
export interface ListFilter {
  readonly state?: EntryState | undefined
  readonly channel?: string | undefined
  readonly limit?: number | undefined
  readonly before?: number | undefined
}

/** Ages after which retention deletes finished rows; delivered and failed rows never share a policy. */
export interface Retention {
  readonly deliveredMs: number
  readonly terminalMs: number
}

/** How many rows a prune removed, by kind. */
export interface PruneResult {
  readonly delivered: number
  readonly terminal: number
}

/** The outbox store. Times are epoch millis supplied by the caller from Effect's `Clock`. */
export interface OutboxRepoShape {
  /**
   * Inserts rows in one transaction; a row whose id or idempotency key exists is a `Duplicate`, not an error.
   * With `deferBusyConversations`, an `in_flight` row whose conversation already has a pending row (stored, or
   * earlier in the batch) is inserted `queued` instead, so a live send never overtakes an older reply.
   */
  readonly insert: (
    entries: ReadonlyArray<OutboxEntry>,
    options?: { readonly deferBusyConversations?: boolean }
  ) => Effect.Effect<ReadonlyArray<InsertResult>, StoreError>
  /**
   * Leases up to `limit` due rows to `owner`, oldest due first, at most one (the oldest pending) per conversation.
   * `ack` rows (leased to `owner`) are marked delivered first, in the same transaction: a worker acks the sends of one
   * batch with the claim of the next. If the claim fails, those acks are not written either. A backend that does not
   * do this must leave `acked` out of its result; the worker then writes the acks with `ack`.
   */
  readonly claim: (
    options: {
      readonly owner: string
      readonly now: number
      readonly leaseMs: number
      readonly limit: number
      readonly ack?: ReadonlyArray<{ readonly id: EntryId; readonly partsDelivered: number }> | undefined
    }
  ) => Effect.Effect<ClaimBatch, StoreError>
  /** Marks leased rows delivered in one transaction. */
  readonly ack: (
    owner: string,
    items: ReadonlyArray<{ readonly id: EntryId; readonly partsDelivered: number }>,
    now: number
  ) => Effect.Effect<BatchWriteResult, StoreError>
  /** Records a failed attempt on a leased row (retry later, or terminal). */
  readonly recordFailure: (
    id: EntryId,
    owner: string,
    failure: FailureRecord,
    now: number
  ) => Effect.Effect<OutboxEntry, StoreError | LeaseLost>
  /** Records progress on a leased row and optionally extends its lease. */
  readonly recordProgress: (
    id: EntryId,
    owner: string,
    progress: { readonly partsDelivered: number; readonly leaseUntil?: number | undefined },
    now: number
  ) => Effect.Effect<OutboxEntry, StoreError | LeaseLost>
  /** Gives leases back without an attempt (rows become claimable now). */
  readonly release: (owner: string, ids: ReadonlyArray<EntryId>, now: number) => Effect.Effect<BatchWriteResult, StoreError>
  /** Makes claimable at once the in-flight rows of this node's earlier boots (owner `${nodeId}/…` but not `owner`). */
  readonly reclaimPreviousBoots: (
    options: { readonly nodeId: string; readonly owner: string; readonly now: number }
  ) => Effect.Effect<ReadonlyArray<EntryId>, StoreError>
  /** Expires waiting rows past their `expiresAt` (and, for `owner`, its own in-flight rows). */
  readonly expire: (
    now: number,
    options?: { readonly ids?: ReadonlyArray<EntryId>; readonly owner?: string; readonly limit?: number }
  ) => Effect.Effect<ReadonlyArray<EntryId>, StoreError>
  /** Deletes finished rows past retention; queued and retrying rows are kept whatever their age. */
  readonly prune: (now: number, retention: Retention) => Effect.Effect<PruneResult, StoreError>
  /** Reads one row. */
  readonly get: (id: EntryId) => Effect.Effect<Option.Option<OutboxEntry>, StoreError>
  /** Admin listing, newest first. */
  readonly list: (filter: ListFilter) => Effect.Effect<ReadonlyArray<OutboxEntry>, StoreError>
  /** Counts by state and channel, and the oldest pending row's age at `now`. */
  readonly stats: (now: number) => Effect.Effect<OutboxStats, StoreError>
  /** Admin retry: a failed_terminal or expired row back to queued with attempts reset. */
  readonly requeue: (
    id: EntryId,
    now: number,
    expiresAt: number | null
  ) => Effect.Effect<OutboxEntry, StoreError | EntryNotFound | TransitionRejected>
  /** How many rows may still be sent (queued, in flight, retrying). */
  readonly pendingCount: Effect.Effect<number, StoreError>
  /** Reads a value of `outbox_meta`. */
  readonly getMeta: (key: string) => Effect.Effect<Option.Option<string>, StoreError>
  /** Writes a value of `outbox_meta` (insert or replace). */
  readonly setMeta: (key: string, value: string) => Effect.Effect<void, StoreError>
  /** Moves a row whose data does not decode to `failed_terminal(decode_error)`. */
  readonly quarantine: (id: EntryId, message: string, now: number) => Effect.Effect<void, StoreError>
}

/** The `OutboxRepo` service tag. */
export class OutboxRepo extends Context.Tag("effect-outbox/OutboxRepo")<OutboxRepo, OutboxRepoShape>() {}
