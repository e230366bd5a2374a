/**
 * The SQLite store's writes: inserts (deferring a live row whose conversation is busy) and the journal's batches of
 * inserts and guarded updates, each in one write transaction.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type { OutboxEntry } from "../Delivery.js"
import { orderingKey } from "../Delivery.js"
import { StoreError } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import type { OutboxRepoShape, WriteOp, WriteResult } from "../OutboxRepo.js"
import { InsertResult } from "../OutboxRepo.js"
import { deferBusy, jsonProblem } from "./repoSupport.js"
import type { Row } from "./rowCodec.js"
import { groupChanges, toRow } from "./rowCodec.js"
import type { SqliteContext } from "./sqliteContext.js"
import { run } from "./sqliteContext.js"
import { chunks, decodeOrFail, IN_CHUNK } from "./sqliteRows.js"

/** Inserts rows (ids and keys already checked by the caller's batch) and returns what each became. */
const insertRows = (sql: SqlClient.SqlClient, entries: ReadonlyArray<OutboxEntry>) =>
  Effect.gen(function*() {
    const inserted = new Set<string>()
    for (const part of chunks(entries, IN_CHUNK / 2)) {
      const rows = yield* sql<{ id: string }>`INSERT INTO outbox_entries ${sql.insert(part.map(toRow))}
          ON CONFLICT DO NOTHING RETURNING id`
      for (const r of rows) inserted.add(r.id)
    }
    const duplicates = entries.filter((e) => !inserted.has(e.id))
    if (duplicates.length === 0) return entries.map((entry) => InsertResult.Inserted({ entry }))
    const keys = duplicates.flatMap((e) => (e.idempotencyKey ? [e.idempotencyKey] : []))
    const existing = yield* sql<Row>`SELECT * FROM outbox_entries WHERE id IN ${sql.in(duplicates.map((e) => e.id))}
        ${keys.length > 0 ? sql`OR idempotency_key IN ${sql.in(keys)}` : sql``}`
    const decoded = yield* Effect.forEach(existing, decodeOrFail("insert"))
    return yield* Effect.forEach(entries, (entry): Effect.Effect<InsertResult, StoreError> => {
      if (inserted.has(entry.id)) return Effect.succeed(InsertResult.Inserted({ entry }))
      // a row inserted earlier in this same batch is matched by key too
      const match = decoded.find((e) => e.id === entry.id) ??
        decoded.find((e) => entry.idempotencyKey !== undefined && e.idempotencyKey === entry.idempotencyKey)
      return match
        ? Effect.succeed(InsertResult.Duplicate({ entry: match }))
        : Effect.fail(
          new StoreError({ operation: "insert", message: `entry ${entry.id} was neither inserted nor found` })
        )
    })
  })

/** The conversations among `entries` that already have a pending row. */
const busyConversations = (sql: SqlClient.SqlClient, entries: ReadonlyArray<OutboxEntry>) =>
  Effect.map(
    Effect.forEach(chunks([...new Set(entries.map(orderingKey))], IN_CHUNK), (part) =>
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
 * Guarded updates: specs with the same guard and the same changed columns are one `UPDATE … RETURNING id`
 * (a batch of acks at one instant is usually a single statement); the ids it did not return were rejected.
 */
export const updateRows = (sql: SqlClient.SqlClient, specs: ReadonlyArray<Machine.WriteSpec>) =>
  Effect.gen(function*() {
    const done = new Set<string>()
    const byGuard = new Map<string, Array<Machine.WriteSpec>>()
    for (const spec of specs) {
      const key = `${spec.guard.state}\u0000${spec.guard.leaseOwner ?? ""}`
      const group = byGuard.get(key)
      if (group === undefined) byGuard.set(key, [spec])
      else group.push(spec)
    }
    for (const group of byGuard.values()) {
      const { leaseOwner, state } = group[0]!.guard
      for (const change of groupChanges(group.map((spec) => [spec.before, spec.next] as const))) {
        for (const ids of chunks(change.ids, IN_CHUNK)) {
          const rows = yield* sql<{ id: string }>`UPDATE outbox_entries SET ${sql.update(change.set)}
              WHERE id IN ${sql.in(ids)} AND state = ${state} AND lease_owner IS ${leaseOwner}
              RETURNING id`
          for (const row of rows) done.add(row.id)
        }
      }
    }
    return done
  })

/** A journal batch in one transaction: inserts first (in order), then the guarded updates. */
const writeOps = (sql: SqlClient.SqlClient, ops: ReadonlyArray<WriteOp>) =>
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
      const deferring = inserts.filter((i) => i.deferIfBusy && i.entry.state === "in_flight")
      const busy = deferring.length > 0
        ? yield* busyConversations(sql, deferring.map((i) => i.entry))
        : new Set<string>()
      const entries = inserts.map(({ deferIfBusy, entry }) => {
        if (deferIfBusy) return deferBusy([entry], busy)[0]!
        busy.add(orderingKey(entry)) // a stored pending row makes its conversation busy for the later rows of the batch
        return entry
      })
      const stored = yield* insertRows(sql, entries)
      inserts.forEach((insert, i) => void (results[insert.at] = stored[i]!))
    }
    const updated = specs.length > 0 ? yield* updateRows(sql, specs) : new Set<string>()
    return ops.map((op, at): WriteResult =>
      results[at] ??
        (updated.has(op._tag === "Update" ? op.spec.guard.id : "") ? { _tag: "Updated" } : { _tag: "Rejected" })
    )
  })

/** `OutboxRepoShape.insert`: checked rows in one write transaction. */
export const insert = ({ sql, writeTx }: SqliteContext): OutboxRepoShape["insert"] => (input, options = {}) =>
  Effect.gen(function*() {
    if (input.length === 0) return []
    const bad = input.map(Machine.checkInvariants).find((m) => m !== null)
    if (bad) return yield* Effect.fail(new StoreError({ operation: "insert", message: bad }))
    return yield* writeTx(Effect.gen(function*() {
      let entries = input
      if (options.deferBusyConversations && input.some((e) => e.state === "in_flight")) {
        entries = deferBusy(input, yield* busyConversations(sql, input))
      }
      return yield* insertRows(sql, entries)
    }))
  }).pipe(run("insert"))

/** `OutboxRepoShape.write`: a journal batch in one write transaction. */
export const write = ({ sql, writeTx }: SqliteContext): OutboxRepoShape["write"] => (ops) =>
  ops.length === 0 ? Effect.succeed([]) : writeTx(writeOps(sql, ops)).pipe(run("write"))
