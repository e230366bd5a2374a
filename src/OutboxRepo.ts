/**
 * The storage port: rows, leases and state transitions. Backends: `MemoryOutboxRepo`, `SqliteOutboxRepo`
 * (and `PgOutboxRepo`). Every write a backend makes is a transition accepted by `EntryStateMachine`; the writes of a
 * leased row arrive as guarded write specs (`EntryStateMachine.writeSpec`), applied without reading the row first.
 */
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import type * as Stream from "effect/Stream"
import type { EntryId, EntryState, OutboxEntry, OutboxStats } from "./Delivery.js"
import type { EntryNotFound, StoreError, TransitionRejected } from "./DeliveryError.js"
import type { WriteSpec } from "./EntryStateMachine.js"
import type { BucketStore } from "./RateLimits.js"

/** What an insert did: a new row, or the row that already had this id or idempotency key (nothing written). */
export type InsertResult = Data.TaggedEnum<{
  Inserted: { readonly entry: OutboxEntry }
  Duplicate: { readonly entry: OutboxEntry }
}>
/** Constructors and matchers for `InsertResult`. */
export const InsertResult = Data.taggedEnum<InsertResult>()

/**
 * A claimed row; `reclaimed` is true when it was taken from an expired (crashed) lease: a possible duplicate.
 * `followed`: another pending row of its conversation waits behind it (its lane will have a row to start).
 */
export interface ClaimedEntry {
  readonly entry: OutboxEntry
  readonly reclaimed: boolean
  readonly followed: boolean
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
}

/** One write of a journal batch: a new row, or a guarded transition of a row (see `EntryStateMachine.writeSpec`). */
export type WriteOp = Data.TaggedEnum<{
  /** with `deferIfBusy`, an `in_flight` row whose conversation has a pending row (stored or earlier in the batch) is stored `queued` */
  Insert: { readonly entry: OutboxEntry; readonly deferIfBusy: boolean }
  Update: { readonly spec: WriteSpec }
}>
/** Constructors for `WriteOp`. */
export const WriteOp = Data.taggedEnum<WriteOp>()

/** What one write of a batch did. */
export type WriteResult =
  | InsertResult
  /** the transition was written */
  | { readonly _tag: "Updated" }
  /** the guard did not hold (the row is gone, or no longer in that state under that owner): nothing written */
  | { readonly _tag: "Rejected" }
  /** this write alone could not be made (its row cannot be encoded); the others of the batch were */
  | { readonly _tag: "Invalid"; readonly message: string }

/**
 * Filters of the admin listing; newest first, in (`enqueuedAt`, `id`) order. `before` alone pages by `enqueuedAt`
 * (exclusive); with `beforeId` it is a cursor, the last row of the previous page: rows strictly after it in that order,
 * so rows enqueued in the same millisecond are neither skipped nor repeated.
 */
export interface ListFilter {
  readonly state?: EntryState | undefined
  readonly channel?: string | undefined
  /** the recipient (`to`): one chat's rows, every thread of it */
  readonly to?: string | undefined
  readonly limit?: number | undefined
  readonly before?: number | undefined
  readonly beforeId?: EntryId | undefined
}

/** The rows that reached a state within one time bucket, by the state they are in now (see `OutboxRepoShape.activity`). */
export interface ActivityBucket {
  /** the bucket's first millisecond; it holds [start, start + bucketMs) */
  readonly start: number
  readonly delivered: number
  readonly retrying: number
  readonly failed: number
  readonly expired: number
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
   * Writes a journal batch in one transaction, one result per op in order. Updates with the same guard and the same
   * columns are one guarded `UPDATE … RETURNING`. An op that cannot be encoded is `Invalid` and does not fail the rest;
   * the whole batch fails with `StoreError` only when the transaction does (nothing of it is written then).
   */
  readonly write: (ops: ReadonlyArray<WriteOp>) => Effect.Effect<ReadonlyArray<WriteResult>, StoreError>
  /**
   * Leases up to `limit` due rows to `owner`, oldest due first, at most one (the oldest pending) per conversation;
   * with `orderingKeys`, only those conversations' heads (how finished rows start their conversations' next ones).
   */
  readonly claim: (
    options: {
      readonly owner: string
      readonly now: number
      readonly leaseMs: number
      readonly limit: number
      readonly orderingKeys?: ReadonlyArray<string> | undefined
    }
  ) => Effect.Effect<ClaimBatch, StoreError>
  /**
   * Makes claimable at once the in-flight rows of this node's earlier boots (owner `${nodeId}/…` but not `owner`).
   * A store shared by several processes (PostgreSQL) takes only the rows of owners whose last `heartbeat` is stale,
   * so a restart never takes a live replica's rows, whatever `nodeId`s are configured.
   */
  readonly reclaimPreviousBoots: (
    options: { readonly nodeId: string; readonly owner: string; readonly now: number }
  ) => Effect.Effect<ReadonlyArray<EntryId>, StoreError>
  /**
   * Records that `owner` (one boot of one process) is alive at `now`. A process sharing a store with others calls it
   * at start and then regularly, well within the store's staleness threshold (`PgOutboxRepo`: 30 s by default, so
   * every 10 s); a boot that stopped calling it counts as dead once its last heartbeat is older than the threshold.
   * Leases are not renewed by it (the delivery program renews its own). Stores of one process (memory, SQLite) do
   * nothing.
   */
  readonly heartbeat: (owner: string, now: number) => Effect.Effect<void, StoreError>
  /** How often a process using this store must call `heartbeat` (absent: never, the store belongs to one process). */
  readonly heartbeatEveryMs?: number | undefined
  /**
   * Optional: an element each time another process wrote something a worker may want (an enqueued row, a finished
   * one). The outbox wakes its worker on each; a stream that fails is restarted with a backoff, and the worker's
   * interval covers whatever was missed meanwhile.
   */
  readonly wakeups?: Stream.Stream<void, StoreError> | undefined
  /**
   * Optional: rate limit buckets shared by every process using this store, so a channel's limit holds for the gateway
   * as a whole (see `RateLimits`). Without it, each process limits its own sends.
   */
  readonly rateBuckets?: BucketStore | undefined
  /**
   * Expires waiting rows (queued, failed_retryable) past their `expiresAt`, without reading their data (a row that no
   * longer decodes expires too). In-flight rows are expired by their lease owner, through `write`.
   */
  readonly expire: (
    now: number,
    options?: { readonly limit?: number }
  ) => Effect.Effect<ReadonlyArray<EntryId>, StoreError>
  /** Deletes finished rows past retention; queued and retrying rows are kept whatever their age. */
  readonly prune: (now: number, retention: Retention) => Effect.Effect<PruneResult, StoreError>
  /** Reads one row. */
  readonly get: (id: EntryId) => Effect.Effect<Option.Option<OutboxEntry>, StoreError>
  /** Admin listing, newest first. */
  readonly list: (filter: ListFilter) => Effect.Effect<ReadonlyArray<OutboxEntry>, StoreError>
  /** Counts by state and channel, and the oldest pending row's age at `now`. */
  readonly stats: (now: number) => Effect.Effect<OutboxStats, StoreError>
  /**
   * Rows by the bucket of `[since, until)` in which they reached their current state (`updatedAt`): delivered,
   * failed_retryable (`retrying`), failed_terminal (`failed`) and expired. Every bucket is returned, oldest first,
   * zeros included. It reads rows as they are now: a row that failed and was delivered later counts once, as delivered.
   */
  readonly activity: (
    options: { readonly since: number; readonly until: number; readonly bucketMs: number }
  ) => Effect.Effect<ReadonlyArray<ActivityBucket>, StoreError>
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
