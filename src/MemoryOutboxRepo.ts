/** An in-process `OutboxRepo` for tests and throwaway setups: the same contract as the SQL stores, nothing durable. */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { EntryId, OutboxEntry } from "./Delivery.js"
import { orderingKey } from "./Delivery.js"
import { EntryNotFound, StoreError, type TransitionRejected } from "./DeliveryError.js"
import type { EntryEvent } from "./EntryStateMachine.js"
import * as Machine from "./EntryStateMachine.js"
import { activityProblem, activityStates, foldActivity, matchesFilter } from "./internal/adminSupport.js"
import {
  byDueThenId,
  byEnqueuedThenId,
  DEFAULT_LIST_LIMIT,
  deferBusy,
  foldStats,
  jsonProblem
} from "./internal/repoSupport.js"
import type { ClaimedEntry, OutboxRepoShape, WriteOp, WriteResult } from "./OutboxRepo.js"
import { InsertResult, OutboxRepo } from "./OutboxRepo.js"

/**
 * The store's state: the rows by id, the ids by idempotency key, the meta values. Each operation is one synchronous
 * step on them, so it is atomic with respect to other fibers.
 */
interface Rows {
  readonly rows: Map<string, OutboxEntry>
  readonly byKey: Map<string, string>
  readonly meta: Map<string, string>
}

/** Builds an empty in-memory store. */
export const make: Effect.Effect<OutboxRepoShape> = Effect.sync(() => {
  const s: Rows = { rows: new Map(), byKey: new Map(), meta: new Map() }
  const repo: OutboxRepoShape = {
    insert: (input, options = {}) =>
      Effect.suspend(() => {
        const bad = input.map(Machine.checkInvariants).find((m) => m !== null)
        if (bad) return Effect.fail(new StoreError({ operation: "insert", message: bad }))
        const entries = options.deferBusyConversations ? deferBusy(input, new Set(conversationHeads(s).keys())) : input
        return Effect.succeed(entries.map((entry) => insertNow(s, entry)))
      }),

    write: (ops) =>
      Effect.sync(() => {
        const busy = ops.some((op) => op._tag === "Insert" && op.deferIfBusy)
          ? new Set(conversationHeads(s).keys())
          : new Set<string>()
        return ops.map((op) => writeOne(s, op, busy))
      }),

    claim: (args) => claim(s, args),

    reclaimPreviousBoots: ({ nodeId, now, owner }) =>
      Effect.sync(() => {
        const stale = [...s.rows.values()].filter((e) =>
          e.state === "in_flight" && e.leaseOwner !== owner && e.leaseOwner?.startsWith(`${nodeId}/`)
        )
        return batch(s, stale.map((e) => e.id), () => Machine.EntryEvent.Reclaim(), now)
      }),

    // one process: no other boot to tell apart
    heartbeat: () => Effect.void,

    expire: (now, options = {}) =>
      Effect.sync(() => {
        const expirable = [...s.rows.values()]
          .filter((e) =>
            e.expiresAt !== null && e.expiresAt <= now && (e.state === "queued" || e.state === "failed_retryable")
          )
          .slice(0, options.limit ?? Number.MAX_SAFE_INTEGER)
        return batch(s, expirable.map((e) => e.id), () => Machine.EntryEvent.Expire({}), now)
      }),

    prune: (now, retention) => prune(s, now, retention),

    get: (id) => Effect.sync(() => Option.fromNullable(s.rows.get(id))),

    list: (filter) =>
      Effect.sync(() =>
        [...s.rows.values()]
          .filter((e) => matchesFilter(e, filter))
          .sort((a, b) => byEnqueuedThenId(b, a))
          .slice(0, filter.limit ?? DEFAULT_LIST_LIMIT)
      ),

    stats: (now) => stats(s, now),

    activity: (options) => activity(s, options),

    requeue: (id, now, expiresAt) =>
      Effect.suspend((): Effect.Effect<OutboxEntry, EntryNotFound | TransitionRejected> => {
        const entry = s.rows.get(id)
        if (entry === undefined) return Effect.fail(new EntryNotFound({ id }))
        return apply(s, entry, Machine.EntryEvent.Requeue({ expiresAt }), now)
      }),

    pendingCount: Effect.sync(() => [...s.rows.values()].filter((e) => Machine.isPending(e.state)).length),

    getMeta: (key) => Effect.sync(() => Option.fromNullable(s.meta.get(key))),

    setMeta: (key, value) => Effect.sync(() => void s.meta.set(key, value)),

    quarantine: (id, message, now) =>
      Effect.sync(() => {
        const entry = s.rows.get(id)
        if (entry !== undefined) apply(s, entry, Machine.EntryEvent.Quarantine({ error: message }), now)
      })
  }
  return repo
})

/** Applies `event` to a row and stores the result. */
const apply = (s: Rows, entry: OutboxEntry, event: EntryEvent, now: number) =>
  Either.map(Machine.transition(entry, event, now), (next) => {
    s.rows.set(next.id, next)
    return next
  })

/** Applies each id's event; the ids written. */
const batch = (
  s: Rows,
  ids: ReadonlyArray<EntryId>,
  eventFor: (id: EntryId) => EntryEvent,
  now: number
): Array<EntryId> => {
  const written: Array<EntryId> = []
  for (const id of ids) {
    const entry = s.rows.get(id)
    if (entry !== undefined && Either.isRight(apply(s, entry, eventFor(id), now))) written.push(id)
  }
  return written
}

/** The oldest pending row of each conversation. */
const conversationHeads = (s: Rows) => {
  const heads = new Map<string, OutboxEntry>()
  for (const entry of s.rows.values()) {
    if (!Machine.isPending(entry.state)) continue
    const key = orderingKey(entry)
    const head = heads.get(key)
    if (head === undefined || byEnqueuedThenId(entry, head) < 0) heads.set(key, entry)
  }
  return heads
}

/** Inserts a row, or finds the row with its id or idempotency key. */
const insertNow = (s: Rows, entry: OutboxEntry): InsertResult => {
  const existingId = s.rows.has(entry.id) ? entry.id : entry.idempotencyKey && s.byKey.get(entry.idempotencyKey)
  if (existingId) return InsertResult.Duplicate({ entry: s.rows.get(existingId)! })
  s.rows.set(entry.id, entry)
  if (entry.idempotencyKey) s.byKey.set(entry.idempotencyKey, entry.id)
  return InsertResult.Inserted({ entry })
}

/** The write of one op; the SQL stores' checks, applied to the map. */
const writeOne = (s: Rows, op: WriteOp, busy: Set<string>): WriteResult => {
  if (op._tag === "Update") {
    const row = s.rows.get(op.spec.guard.id)
    if (row === undefined || !Machine.guardHolds(row, op.spec.guard)) return { _tag: "Rejected" }
    s.rows.set(row.id, op.spec.next)
    return { _tag: "Updated" }
  }
  const bad = Machine.checkInvariants(op.entry) ?? jsonProblem(op.entry)
  if (bad !== null) return { _tag: "Invalid", message: bad }
  const [entry] = op.deferIfBusy ? deferBusy([op.entry], busy) : [op.entry]
  return insertNow(s, entry!)
}

/** `OutboxRepoShape.claim` on the map. */
const claim = (s: Rows, { leaseMs, limit, now, orderingKeys, owner }: Parameters<OutboxRepoShape["claim"]>[0]) =>
  Effect.sync(() => {
    const heads = conversationHeads(s)
    const candidates = orderingKeys === undefined
      ? [...heads.values()]
      : orderingKeys.flatMap((key) => heads.get(key) ?? [])
    const due = candidates.filter((e) => Machine.isDue(e, now)).sort(byDueThenId).slice(0, limit)
    const claimed: Array<ClaimedEntry> = []
    for (const entry of due) {
      const event = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
      const followed = [...s.rows.values()].some((e) =>
        e.id !== entry.id && Machine.isPending(e.state) && orderingKey(e) === orderingKey(entry) &&
        byEnqueuedThenId(entry, e) < 0
      )
      Either.map(
        apply(s, entry, event, now),
        (next) => claimed.push({ entry: next, reclaimed: entry.state === "in_flight", followed })
      )
    }
    return { claimed, malformed: [] }
  })

/** `OutboxRepoShape.prune` on the map. */
const prune = (s: Rows, now: number, retention: Parameters<OutboxRepoShape["prune"]>[1]) =>
  Effect.sync(() => {
    let delivered = 0
    let terminal = 0
    for (const entry of [...s.rows.values()]) {
      if (!Machine.isPrunable(entry.state)) continue
      const isDelivered = entry.state === "delivered"
      const cutoff = now - (isDelivered ? retention.deliveredMs : retention.terminalMs)
      if (entry.updatedAt > cutoff) continue
      s.rows.delete(entry.id)
      if (entry.idempotencyKey) s.byKey.delete(entry.idempotencyKey)
      if (isDelivered) delivered++
      else terminal++
    }
    return { delivered, terminal }
  })

/** `OutboxRepoShape.stats` on the map. */
const stats = (s: Rows, now: number) =>
  Effect.sync(() => {
    const counts = new Map<string, { channel: string; state: OutboxEntry["state"]; count: number }>()
    let oldest: number | null = null
    for (const e of s.rows.values()) {
      const key = `${e.channel}\u0000${e.state}`
      const row = counts.get(key) ?? { channel: e.channel, state: e.state, count: 0 }
      row.count++
      counts.set(key, row)
      if (Machine.isPending(e.state) && (oldest === null || e.enqueuedAt < oldest)) oldest = e.enqueuedAt
    }
    return foldStats([...counts.values()], oldest, now)
  })

/** `OutboxRepoShape.activity` on the map. */
const activity = (s: Rows, options: Parameters<OutboxRepoShape["activity"]>[0]) =>
  Effect.suspend(() => {
    const bad = activityProblem(options)
    if (bad !== null) return Effect.fail(new StoreError({ operation: "activity", message: bad }))
    const counts = new Map<string, { state: string; bucket: number; count: number }>()
    for (const e of s.rows.values()) {
      if (!(e.state in activityStates) || e.updatedAt < options.since || e.updatedAt >= options.until) continue
      const bucket = Math.floor((e.updatedAt - options.since) / options.bucketMs)
      const key = `${e.state}/${bucket}`
      const row = counts.get(key) ?? { state: e.state, bucket, count: 0 }
      row.count++
      counts.set(key, row)
    }
    return Effect.succeed(foldActivity([...counts.values()], options))
  })

/** A fresh in-memory store per layer build. */
export const layer: Layer.Layer<OutboxRepo> = Layer.effect(OutboxRepo, make)
