/** An in-process `OutboxRepo` for tests and throwaway setups: the same contract as the SQL stores, nothing durable. */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { EntryId, OutboxEntry } from "./Delivery.js"
import { orderingKey } from "./Delivery.js"
import { EntryNotFound, LeaseLost, StoreError, type TransitionRejected } from "./DeliveryError.js"
import type { EntryEvent } from "./EntryStateMachine.js"
import * as Machine from "./EntryStateMachine.js"
import { byDueThenId, byEnqueuedThenId, DEFAULT_LIST_LIMIT, deferBusy, failureEvent, foldStats } from "./internal/repoSupport.js"
import type { BatchWriteResult, ClaimedEntry, OutboxRepoShape } from "./OutboxRepo.js"
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

  const fenced = (id: EntryId, owner: string, event: EntryEvent, now: number) =>
    Effect.suspend(() => {
      const entry = rows.get(id)
      if (entry === undefined) return Effect.fail(new LeaseLost({ id, owner }))
      return Either.match(apply(entry, event, now), {
        onLeft: () => Effect.fail(new LeaseLost({ id, owner })),
        onRight: Effect.succeed
      })
    })

  const batch = (ids: ReadonlyArray<EntryId>, eventFor: (id: EntryId) => EntryEvent, now: number): BatchWriteResult => {
    const written: Array<EntryId> = []
    const rejected: Array<EntryId> = []
    for (const id of ids) {
      const entry = rows.get(id)
      const ok = entry !== undefined && Either.isRight(apply(entry, eventFor(id), now))
      ;(ok ? written : rejected).push(id)
    }
    return { written, rejected }
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

  const ackNow = (owner: string, items: ReadonlyArray<{ readonly id: EntryId; readonly partsDelivered: number }>, now: number) => {
    const parts = new Map(items.map((i) => [i.id, i.partsDelivered]))
    return batch(items.map((i) => i.id), (id) => Machine.EntryEvent.Ack({ owner, partsDelivered: parts.get(id)! }), now)
  }

  const repo: OutboxRepoShape = {
    insert: (input, options = {}) =>
      Effect.suspend(() => {
        const bad = input.map(Machine.checkInvariants).find((m) => m !== null)
        if (bad) return Effect.fail(new StoreError({ operation: "insert", message: bad }))
        const entries = options.deferBusyConversations ? deferBusy(input, new Set(conversationHeads().keys())) : input
        return Effect.succeed(entries.map((entry) => {
          const existingId = rows.has(entry.id) ? entry.id : entry.idempotencyKey && byKey.get(entry.idempotencyKey)
          if (existingId) return InsertResult.Duplicate({ entry: rows.get(existingId)! })
          rows.set(entry.id, entry)
          if (entry.idempotencyKey) byKey.set(entry.idempotencyKey, entry.id)
          return InsertResult.Inserted({ entry })
        }))
      }),

    claim: ({ ack, leaseMs, limit, now, owner }) =>
      Effect.sync(() => {
        const acked = ack === undefined || ack.length === 0 ? undefined : ackNow(owner, ack, now)
        const heads = conversationHeads()
        const due = [...rows.values()]
          .filter((e) => Machine.isDue(e, now) && heads.get(orderingKey(e))?.id === e.id)
          .sort(byDueThenId)
          .slice(0, limit)
        const claimed: Array<ClaimedEntry> = []
        for (const entry of due) {
          const event = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
          Either.map(apply(entry, event, now), (next) => claimed.push({ entry: next, reclaimed: entry.state === "in_flight" }))
        }
        return { claimed, malformed: [], ...(acked === undefined ? {} : { acked }) }
      }),

    ack: (owner, items, now) => Effect.sync(() => ackNow(owner, items, now)),

    recordFailure: (id, owner, failure, now) => fenced(id, owner, failureEvent(owner, failure), now),

    recordProgress: (id, owner, progress, now) =>
      fenced(id, owner, Machine.EntryEvent.Progress({ owner, partsDelivered: progress.partsDelivered }), now).pipe(
        Effect.flatMap((entry) =>
          progress.leaseUntil === undefined
            ? Effect.succeed(entry)
            : fenced(id, owner, Machine.EntryEvent.Renew({ owner, leaseUntil: progress.leaseUntil }), now)
        )
      ),

    release: (owner, ids, now) => Effect.sync(() => batch(ids, () => Machine.EntryEvent.Release({ owner }), now)),

    reclaimPreviousBoots: ({ nodeId, now, owner }) =>
      Effect.sync(() => {
        const stale = [...rows.values()].filter((e) =>
          e.state === "in_flight" && e.leaseOwner !== owner && e.leaseOwner?.startsWith(`${nodeId}/`)
        )
        return batch(stale.map((e) => e.id), () => Machine.EntryEvent.Reclaim(), now).written
      }),

    expire: (now, options = {}) =>
      Effect.sync(() => {
        const candidates = options.ids ? options.ids.flatMap((id) => rows.get(id) ?? []) : [...rows.values()]
        const expirable = candidates
          .filter((e) => e.expiresAt !== null && e.expiresAt <= now && Machine.isPending(e.state))
          .slice(0, options.limit ?? Number.MAX_SAFE_INTEGER)
        const event = Machine.EntryEvent.Expire(options.owner === undefined ? {} : { owner: options.owner })
        return batch(expirable.map((e) => e.id), () => event, now).written
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
          isDelivered ? delivered++ : terminal++
        }
        return { delivered, terminal }
      }),

    get: (id) => Effect.sync(() => Option.fromNullable(rows.get(id))),

    list: (filter) =>
      Effect.sync(() =>
        [...rows.values()]
          .filter((e) =>
            (filter.state === undefined || e.state === filter.state) &&
            (filter.channel === undefined || e.channel === filter.channel) &&
            (filter.before === undefined || e.enqueuedAt < filter.before)
          )
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
