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

/** Builds an empty in-memory store. */
export const make: Effect.Effect<OutboxRepoShape> = Effect.sync(() => {
  const rows = new Map<string, OutboxEntry>()
  const byKey = new Map<string, string>()
  const meta = new Map<string, string>()

  // each operation is one synchronous step, so it is atomic with respect to other fibers
  const apply = (entry: OutboxEntry, event: EntryEvent, now: number) =>
    Either.map(Machine.transition(entry, event, now), (next) => {
      rows.set(next.id, next)
      return next
    })

  const batch = (ids: ReadonlyArray<EntryId>, eventFor: (id: EntryId) => EntryEvent, now: number): Array<EntryId> => {
    const written: Array<EntryId> = []
    for (const id of ids) {
      const entry = rows.get(id)
      if (entry !== undefined && Either.isRight(apply(entry, eventFor(id), now))) written.push(id)
    }
    return written
  }

  const conversationHeads = () => {
    const heads = new Map<string, OutboxEntry>()
    for (const entry of rows.values()) {
      if (!Machine.isPending(entry.state)) continue
      const key = orderingKey(entry)
      const head = heads.get(key)
      if (head === undefined || byEnqueuedThenId(entry, head) < 0) heads.set(key, entry)
    }
    return heads
  }

  const insertNow = (entry: OutboxEntry): InsertResult => {
    const existingId = rows.has(entry.id) ? entry.id : entry.idempotencyKey && byKey.get(entry.idempotencyKey)
    if (existingId) return InsertResult.Duplicate({ entry: rows.get(existingId)! })
    rows.set(entry.id, entry)
    if (entry.idempotencyKey) byKey.set(entry.idempotencyKey, entry.id)
    return InsertResult.Inserted({ entry })
  }

  /** The write of one op; the SQL stores' checks, applied to the map. */
  const writeOne = (op: WriteOp, busy: Set<string>): WriteResult => {
    if (op._tag === "Update") {
      const row = rows.get(op.spec.guard.id)
      if (row === undefined || !Machine.guardHolds(row, op.spec.guard)) return { _tag: "Rejected" }
      rows.set(row.id, op.spec.next)
      return { _tag: "Updated" }
    }
    const bad = Machine.checkInvariants(op.entry) ?? jsonProblem(op.entry)
    if (bad !== null) return { _tag: "Invalid", message: bad }
    const [entry] = op.deferIfBusy ? deferBusy([op.entry], busy) : [op.entry]
    return insertNow(entry!)
  }

  const repo: OutboxRepoShape = {
    insert: (input, options = {}) =>
      Effect.suspend(() => {
        const bad = input.map(Machine.checkInvariants).find((m) => m !== null)
        if (bad) return Effect.fail(new StoreError({ operation: "insert", message: bad }))
        const entries = options.deferBusyConversations ? deferBusy(input, new Set(conversationHeads().keys())) : input
        return Effect.succeed(entries.map(insertNow))
      }),

    write: (ops) =>
      Effect.sync(() => {
        const busy = ops.some((op) => op._tag === "Insert" && op.deferIfBusy)
          ? new Set(conversationHeads().keys())
          : new Set<string>()
        return ops.map((op) => writeOne(op, busy))
      }),

    claim: ({ leaseMs, limit, now, orderingKeys, owner }) =>
      Effect.sync(() => {
        const heads = conversationHeads()
        const candidates = orderingKeys === undefined
          ? [...heads.values()]
          : orderingKeys.flatMap((key) => heads.get(key) ?? [])
        const due = candidates.filter((e) => Machine.isDue(e, now)).sort(byDueThenId).slice(0, limit)
        const claimed: Array<ClaimedEntry> = []
        for (const entry of due) {
          const event = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
          const followed = [...rows.values()].some((e) =>
            e.id !== entry.id && Machine.isPending(e.state) && orderingKey(e) === orderingKey(entry) &&
            byEnqueuedThenId(entry, e) < 0
          )
          Either.map(apply(entry, event, now), (next) =>
            claimed.push({ entry: next, reclaimed: entry.state === "in_flight", followed }))
        }
        return { claimed, malformed: [] }
      }),

    reclaimPreviousBoots: ({ nodeId, now, owner }) =>
      Effect.sync(() => {
        const stale = [...rows.values()].filter((e) =>
          e.state === "in_flight" && e.leaseOwner !== owner && e.leaseOwner?.startsWith(`${nodeId}/`)
        )
        return batch(stale.map((e) => e.id), () => Machine.EntryEvent.Reclaim(), now)
      }),

    // one process: no other boot to tell apart
    heartbeat: () => Effect.void,

    expire: (now, options = {}) =>
      Effect.sync(() => {
        const expirable = [...rows.values()]
          .filter((e) =>
            e.expiresAt !== null && e.expiresAt <= now && (e.state === "queued" || e.state === "failed_retryable")
          )
          .slice(0, options.limit ?? Number.MAX_SAFE_INTEGER)
        return batch(expirable.map((e) => e.id), () => Machine.EntryEvent.Expire({}), now)
      }),

    prune: (now, retention) =>
      Effect.sync(() => {
        let delivered = 0
        let terminal = 0
        for (const entry of [...rows.values()]) {
          if (!Machine.isPrunable(entry.state)) continue
          const isDelivered = entry.state === "delivered"
          const cutoff = now - (isDelivered ? retention.deliveredMs : retention.terminalMs)
          if (entry.updatedAt > cutoff) continue
          rows.delete(entry.id)
          if (entry.idempotencyKey) byKey.delete(entry.idempotencyKey)
          if (isDelivered) delivered++
          else terminal++
        }
        return { delivered, terminal }
      }),

    get: (id) => Effect.sync(() => Option.fromNullable(rows.get(id))),

    list: (filter) =>
      Effect.sync(() =>
        [...rows.values()]
          .filter((e) => matchesFilter(e, filter))
          .sort((a, b) => byEnqueuedThenId(b, a))
          .slice(0, filter.limit ?? DEFAULT_LIST_LIMIT)
      ),

    stats: (now) =>
      Effect.sync(() => {
        const counts = new Map<string, { channel: string; state: OutboxEntry["state"]; count: number }>()
        let oldest: number | null = null
        for (const e of rows.values()) {
          const key = `${e.channel}\u0000${e.state}`
          const row = counts.get(key) ?? { channel: e.channel, state: e.state, count: 0 }
          row.count++
          counts.set(key, row)
          if (Machine.isPending(e.state) && (oldest === null || e.enqueuedAt < oldest)) oldest = e.enqueuedAt
        }
        return foldStats([...counts.values()], oldest, now)
      }),

    activity: (options) =>
      Effect.suspend(() => {
        const bad = activityProblem(options)
        if (bad !== null) return Effect.fail(new StoreError({ operation: "activity", message: bad }))
        const counts = new Map<string, { state: string; bucket: number; count: number }>()
        for (const e of rows.values()) {
          if (!(e.state in activityStates) || e.updatedAt < options.since || e.updatedAt >= options.until) continue
          const bucket = Math.floor((e.updatedAt - options.since) / options.bucketMs)
          const key = `${e.state}/${bucket}`
          const row = counts.get(key) ?? { state: e.state, bucket, count: 0 }
          row.count++
          counts.set(key, row)
        }
        return Effect.succeed(foldActivity([...counts.values()], options))
      }),

    requeue: (id, now, expiresAt) =>
      Effect.suspend((): Effect.Effect<OutboxEntry, EntryNotFound | TransitionRejected> => {
        const entry = rows.get(id)
        if (entry === undefined) return Effect.fail(new EntryNotFound({ id }))
        return apply(entry, Machine.EntryEvent.Requeue({ expiresAt }), now)
      }),

    pendingCount: Effect.sync(() => [...rows.values()].filter((e) => Machine.isPending(e.state)).length),

    getMeta: (key) => Effect.sync(() => Option.fromNullable(meta.get(key))),

    setMeta: (key, value) => Effect.sync(() => void meta.set(key, value)),

    quarantine: (id, message, now) =>
      Effect.sync(() => {
        const entry = rows.get(id)
        if (entry !== undefined) apply(entry, Machine.EntryEvent.Quarantine({ error: message }), now)
      })
  }
  return repo
})

/** A fresh in-memory store per layer build. */
export const layer: Layer.Layer<OutboxRepo> = Layer.effect(OutboxRepo, make)
