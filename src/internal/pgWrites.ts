/**
 * The PostgreSQL store's writes: inserts (numbered in SQLite's order, deferring busy conversations under their
 * advisory locks), the journal's guarded updates, and the NOTIFY that wakes other processes' workers.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type { OutboxEntry } from "../Delivery.js"
import { orderingKey } from "../Delivery.js"
import { StoreError } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import type { OutboxRepoShape, WriteOp, WriteResult } from "../OutboxRepo.js"
import { InsertResult } from "../OutboxRepo.js"
import type { PgContext } from "./pgContext.js"
import { run } from "./pgContext.js"
import { CHUNK, chunks, CONVERSATION_LOCK, decodeOrFail, SELECT } from "./pgRows.js"
import { deferBusy, jsonProblem } from "./repoSupport.js"
import { groupChanges, toRow } from "./rowCodec.js"

/** Database order of a batch's new rows: enqueue time, then id (the order `seq` numbers them in). */
const byEnqueuedThenId = (a: OutboxEntry, b: OutboxEntry) =>
  a.enqueuedAt - b.enqueuedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/**
 * What a write means to other processes' workers: "claimable" (a new row to claim), "finished" (a row left
 * `in_flight`: its conversation's next row may be due), or nothing.
 */
const wakes = (op: WriteOp, result: WriteResult): "claimable" | "finished" | undefined =>
  op._tag === "Insert"
    ? result._tag === "Inserted" && result.entry.state !== "in_flight" ? "claimable" : undefined
    : result._tag === "Updated" && op.spec.before.state === "in_flight" && op.spec.next.state !== "in_flight"
    ? "finished"
    : undefined

/** Blocks until this transaction holds the conversation locks of `keys` (in key order: no deadlock between two). */
const lockConversations = (sql: SqlClient.SqlClient, keys: ReadonlyArray<string>) =>
  keys.length === 0 ? Effect.void : sql`SELECT pg_advisory_xact_lock(${CONVERSATION_LOCK}, h)
      FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(${[...keys]}::text[]) k) x
      ORDER BY h`.pipe(Effect.asVoid)

/** Inserts rows numbered in the given order; what each became. */
const insertRows = (sql: SqlClient.SqlClient, entries: ReadonlyArray<OutboxEntry>) =>
  Effect.gen(function*() {
    const inserted = new Set<string>()
    for (const part of chunks(entries, CHUNK)) {
      const rows = yield* sql<{ id: string }>`INSERT INTO outbox_entries ${sql.insert(part.map(toRow))}
          ON CONFLICT DO NOTHING RETURNING id`
      for (const r of rows) inserted.add(r.id)
    }
    const duplicates = entries.filter((e) => !inserted.has(e.id))
    if (duplicates.length === 0) return entries.map((entry) => InsertResult.Inserted({ entry }))
    const keys = duplicates.flatMap((e) => (e.idempotencyKey ? [e.idempotencyKey] : []))
    const existing = yield* sql`SELECT ${sql.literal(SELECT)} FROM outbox_entries e
        WHERE e.id IN ${sql.in(duplicates.map((e) => e.id))}
        ${keys.length > 0 ? sql`OR e.idempotency_key IN ${sql.in(keys)}` : sql``}`.values
    const decoded = yield* Effect.forEach(existing, decodeOrFail("insert"))
    return yield* Effect.forEach(entries, (entry): Effect.Effect<InsertResult, StoreError> => {
      if (inserted.has(entry.id)) return Effect.succeed(InsertResult.Inserted({ entry }))
      const match = decoded.find((e) => e.id === entry.id) ??
        decoded.find((e) => entry.idempotencyKey !== undefined && e.idempotencyKey === entry.idempotencyKey)
      return match
        ? Effect.succeed(InsertResult.Duplicate({ entry: match }))
        : Effect.fail(
          new StoreError({ operation: "insert", message: `entry ${entry.id} was neither inserted nor found` })
        )
    })
  })

/** The conversations among `keys` with a pending row (read after their locks are held). */
const busyConversations = (sql: SqlClient.SqlClient, keys: ReadonlyArray<string>) =>
  Effect.map(
    Effect.forEach(chunks([...new Set(keys)], CHUNK), (part) =>
      sql<{ ordering_key: string }>`SELECT DISTINCT ordering_key FROM outbox_entries
          WHERE ordering_key IN ${sql.in(part)} AND pending = 1`),
    (found) =>
      new Set(
        found.flat().map((r) =>
          r.ordering_key
        )
      )
  )

/**
 * Inserts in (enqueuedAt, id) order, so `seq` numbers a batch the way SQLite orders it; with `defer`, an in-flight
 * row of a conversation that has a pending row (stored, or earlier in that order) is stored queued. Results are in
 * the given order.
 */
const insertOrdered = (
  sql: SqlClient.SqlClient,
  entries: ReadonlyArray<OutboxEntry>,
  defer: (entry: OutboxEntry) => boolean
) =>
  Effect.gen(function*() {
    const order = entries.map((_, i) => i).sort((a, b) => byEnqueuedThenId(entries[a]!, entries[b]!))
    const deferring = order.map((i) => entries[i]!).filter((e) => defer(e) && e.state === "in_flight").map(
      orderingKey
    )
    yield* lockConversations(sql, deferring)
    const busy = deferring.length > 0 ? yield* busyConversations(sql, deferring) : new Set<string>()
    const sorted = order.map((i) => {
      const entry = entries[i]!
      if (defer(entry)) return deferBusy([entry], busy)[0]!
      busy.add(orderingKey(entry)) // a stored pending row makes its conversation busy for the later rows
      return entry
    })
    const stored = yield* insertRows(sql, sorted)
    const results: Array<InsertResult> = new Array(entries.length)
    order.forEach((i, at) => void (results[i] = stored[at]!))
    return results
  })

/** Guarded updates, one statement per (guard, changed columns); the ids it returned were written. */
export const updateRows = (sql: SqlClient.SqlClient, specs: ReadonlyArray<Machine.WriteSpec>) =>
  Effect.gen(function*() {
    const done = new Set<string>()
    const byGuard = new Map<string, Array<Machine.WriteSpec>>()
    for (const spec of specs) {
      const key = `${spec.guard.state}\u0000${spec.guard.leaseOwner ?? "\u0000null"}`
      const group = byGuard.get(key)
      if (group === undefined) byGuard.set(key, [spec])
      else group.push(spec)
    }
    for (const group of byGuard.values()) {
      const { leaseOwner, state } = group[0]!.guard
      for (const change of groupChanges(group.map((spec) => [spec.before, spec.next] as const))) {
        for (const ids of chunks(change.ids, CHUNK)) {
          const rows = yield* sql<{ id: string }>`UPDATE outbox_entries SET ${sql.update(change.set)}
              WHERE id = ANY(${ids}::text[]) AND state = ${state} AND lease_owner IS NOT DISTINCT FROM ${leaseOwner}::text
              RETURNING id`
          for (const row of rows) done.add(row.id)
        }
      }
    }
    return done
  })

/** A journal batch: inserts first, then the guarded updates, then a NOTIFY if any row became claimable. */
const writeOps = ({ channel, notify, sql }: PgContext, ops: ReadonlyArray<WriteOp>) =>
  Effect.gen(function*() {
    const results: Array<WriteResult | undefined> = ops.map(() => undefined)
    const inserts: Array<{ readonly at: number; readonly entry: OutboxEntry; readonly deferIfBusy: boolean }> = []
    const specs: Array<Machine.WriteSpec> = []
    ops.forEach((op, at) => {
      if (op._tag === "Update") return void specs.push(op.spec)
      // one row that cannot be stored fails alone, before the transaction, never the batch
      const bad = Machine.checkInvariants(op.entry) ?? jsonProblem(op.entry)
      if (bad !== null) results[at] = { _tag: "Invalid", message: bad }
      else inserts.push({ at, entry: op.entry, deferIfBusy: op.deferIfBusy })
    })
    if (inserts.length > 0) {
      const deferred = new Set(inserts.filter((i) => i.deferIfBusy).map((i) => i.entry))
      const stored = yield* insertOrdered(sql, inserts.map((i) => i.entry), (e) => deferred.has(e))
      inserts.forEach((insert, i) => void (results[insert.at] = stored[i]!))
    }
    const updated = specs.length > 0 ? yield* updateRows(sql, specs) : new Set<string>()
    const out = ops.map((op, at): WriteResult =>
      results[at] ??
        (updated.has(op._tag === "Update" ? op.spec.guard.id : "") ? { _tag: "Updated" } : { _tag: "Rejected" })
    )
    // a finished row wakes the other workers only when its conversation still has a pending row: most live replies
    // are alone in their conversation, and a NOTIFY for each of their acks would send every worker claiming
    const woken = ops.map((op, at) => wakes(op, out[at]!))
    if (woken.includes("claimable")) yield* notify
    else if (woken.includes("finished")) {
      const keys = [
        ...new Set(
          ops.flatMap((op, at) => woken[at] === "finished" && op._tag === "Update" ? [orderingKey(op.spec.before)] : [])
        )
      ]
      yield* sql`SELECT pg_notify(${channel}, 'w') WHERE EXISTS (SELECT 1 FROM outbox_entries
          WHERE ordering_key = ANY(${keys}::text[]) AND pending = 1)`
    }
    return out
  })

/** `OutboxRepoShape.insert`: checked rows in one transaction, with a NOTIFY when one is claimable. */
export const insert = (ctx: PgContext): OutboxRepoShape["insert"] => (input, opts = {}) =>
  Effect.gen(function*() {
    if (input.length === 0) return []
    const bad = input.map((e) => Machine.checkInvariants(e) ?? jsonProblem(e)).find((m) => m !== null)
    if (bad) return yield* Effect.fail(new StoreError({ operation: "insert", message: bad }))
    return yield* ctx.tx(Effect.gen(function*() {
      const results = yield* insertOrdered(ctx.sql, input, () => opts.deferBusyConversations === true)
      if (results.some((r) => r._tag === "Inserted" && r.entry.state !== "in_flight")) yield* ctx.notify
      return results
    }))
  }).pipe(run("insert"))

/** `OutboxRepoShape.write`: a journal batch in one transaction. */
export const write = (ctx: PgContext): OutboxRepoShape["write"] => (ops) =>
  ops.length === 0 ? Effect.succeed([]) : ctx.tx(writeOps(ctx, ops)).pipe(run("write"))
