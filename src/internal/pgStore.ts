/** The PostgreSQL `OutboxRepoShape` (see `PgOutboxRepo` for what holds across processes and why). */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import type { EntryId, OutboxEntry } from "../Delivery.js"
import { orderingKey } from "../Delivery.js"
import { EntryNotFound, StoreError } from "../DeliveryError.js"
import type { EntryEvent } from "../EntryStateMachine.js"
import * as Machine from "../EntryStateMachine.js"
import type { ClaimedEntry, MalformedRow, OutboxRepoShape, WriteOp, WriteResult } from "../OutboxRepo.js"
import { InsertResult } from "../OutboxRepo.js"
import { activityProblem, foldActivity } from "./adminSupport.js"
import { DEFAULT_LIST_LIMIT, deferBusy, foldStats, jsonProblem } from "./repoSupport.js"
import type { Row } from "./rowCodec.js"
import { fromRow, groupChanges, ROW_COLUMNS, rowFromValues, toRow } from "./rowCodec.js"

/** Advisory lock namespace of conversation keys (two-key form: apart from the gateway's own one-key locks). */
const CONVERSATION_LOCK = 0x6f627831 // "obx1"

const BIGINT_COLUMNS = new Set<string>([
  "enqueued_at",
  "next_attempt_at",
  "last_attempt_at",
  "delivered_at",
  "expires_at",
  "lease_expires_at",
  "updated_at"
])
// bigint comes back from pg as a string and jsonb as a parsed object; the row codec wants numbers and JSON text
const SELECT = ROW_COLUMNS.map((c) =>
  BIGINT_COLUMNS.has(c) ? `e.${c}::float8 AS ${c}` : c.endsWith("_json") ? `e.${c}::text AS ${c}` : `e.${c}`
).join(", ")

const CHUNK = 1000

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

const describe = (e: SqlError): string => {
  const cause = e.cause instanceof Error ? e.cause.message : e.cause === undefined ? "" : String(e.cause)
  return cause ? `${e.message}: ${cause}` : e.message
}

/**
 * `sql.withTransaction`, with a lost connection as a failure. @effect/sql turns a failed COMMIT or ROLLBACK into a
 * defect; on a connection that dropped mid-transaction the ROLLBACK after the failed statement fails too, so without
 * this every connection loss would kill its callers instead of giving them `StoreError`. A failed COMMIT leaves the
 * outcome unknown to the caller (the server may have committed before the connection went): a retry of an insert
 * with the same id or idempotency key then finds the row (`Duplicate`).
 */
export const transaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  sql.withTransaction(effect).pipe(
    Effect.catchSomeDefect((defect) => isSqlError(defect) ? Option.some(Effect.fail(defect)) : Option.none())
  )

const isSqlError = (u: unknown): u is SqlError =>
  typeof u === "object" && u !== null && (u as { readonly _tag?: unknown })._tag === "SqlError"

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

/** The store's operations over `sql`. */
export const makeShape = (
  sql: SqlClient.SqlClient,
  options: {
    readonly heartbeatStaleMs: number
    readonly channel: string
    /** false when the connections already default to READ COMMITTED: one statement less per transaction */
    readonly setIsolation: boolean
  }
): OutboxRepoShape => {
  const run = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
    effect.pipe(
      Effect.catchIf(
        (e): e is SqlError => isSqlError(e),
        (e) => Effect.fail(new StoreError({ operation, message: describe(e), cause: e }))
      ),
      Effect.withSpan(`OutboxRepo.${operation}`, { captureStackTrace: false })
    ) as Effect.Effect<A, Exclude<E, SqlError> | StoreError, R>

  const inTransaction = <A, E, R>(effect: Effect.Effect<A, E, R>) => transaction(sql, effect)

  // every statement of these transactions must see what committed before it (the claim protocol relies on it),
  // whatever default_transaction_isolation the gateway's database has
  const tx = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    inTransaction(
      options.setIsolation ? Effect.zipRight(sql`SET TRANSACTION ISOLATION LEVEL READ COMMITTED`, effect) : effect
    )

  const notify = sql`SELECT pg_notify(${options.channel}, 'w')`

  const decodeOrFail = (operation: string) => (values: ReadonlyArray<unknown>) =>
    Either.match(fromRow(rowFromValues(values)), {
      onLeft: (message) => Effect.fail(new StoreError({ operation, message })),
      onRight: Effect.succeed
    })

  /** Blocks until this transaction holds the conversation locks of `keys` (in key order: no deadlock between two). */
  const lockConversations = (keys: ReadonlyArray<string>) =>
    keys.length === 0 ? Effect.void : sql`SELECT pg_advisory_xact_lock(${CONVERSATION_LOCK}, h)
      FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(${[...keys]}::text[]) k) x
      ORDER BY h`.pipe(Effect.asVoid)

  /** Inserts rows numbered in the given order; what each became. */
  const insertRows = (entries: ReadonlyArray<OutboxEntry>) =>
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
  const busyConversations = (keys: ReadonlyArray<string>) =>
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
  const insertOrdered = (entries: ReadonlyArray<OutboxEntry>, defer: (entry: OutboxEntry) => boolean) =>
    Effect.gen(function*() {
      const order = entries.map((_, i) => i).sort((a, b) => byEnqueuedThenId(entries[a]!, entries[b]!))
      const deferring = order.map((i) => entries[i]!).filter((e) => defer(e) && e.state === "in_flight").map(
        orderingKey
      )
      yield* lockConversations(deferring)
      const busy = deferring.length > 0 ? yield* busyConversations(deferring) : new Set<string>()
      const sorted = order.map((i) => {
        const entry = entries[i]!
        if (defer(entry)) return deferBusy([entry], busy)[0]!
        busy.add(orderingKey(entry)) // a stored pending row makes its conversation busy for the later rows
        return entry
      })
      const stored = yield* insertRows(sorted)
      const results: Array<InsertResult> = new Array(entries.length)
      order.forEach((i, at) => void (results[i] = stored[at]!))
      return results
    })

  /** Guarded updates, one statement per (guard, changed columns); the ids it returned were written. */
  const updateRows = (specs: ReadonlyArray<Machine.WriteSpec>) =>
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
  const writeOps = (ops: ReadonlyArray<WriteOp>) =>
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
        const stored = yield* insertOrdered(inserts.map((i) => i.entry), (e) => deferred.has(e))
        inserts.forEach((insert, i) => void (results[insert.at] = stored[i]!))
      }
      const updated = specs.length > 0 ? yield* updateRows(specs) : new Set<string>()
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
            ops.flatMap((op, at) =>
              woken[at] === "finished" && op._tag === "Update" ? [orderingKey(op.spec.before)] : []
            )
          )
        ]
        yield* sql`SELECT pg_notify(${options.channel}, 'w') WHERE EXISTS (SELECT 1 FROM outbox_entries
          WHERE ordering_key = ANY(${keys}::text[]) AND pending = 1)`
      }
      return out
    })

  /**
   * Decodes leased rows (as they were before the lease) and runs the Claim transition on each: a row that does not
   * decode is reported in `malformed`; it and a row the transition refuses are in `refused`, to be put back.
   */
  const claimRows = (rows: ReadonlyArray<Row>, event: EntryEvent, now: number) => {
    const pairs: Array<readonly [OutboxEntry, OutboxEntry]> = []
    const malformed: Array<MalformedRow> = []
    const refused: Array<Row> = []
    for (const row of rows) {
      const decoded = fromRow(row)
      if (Either.isLeft(decoded)) {
        malformed.push({ id: String(row.id) as EntryId, message: decoded.left })
        refused.push(row)
        continue
      }
      const next = Machine.transition(decoded.right, event, now)
      if (Either.isRight(next)) pairs.push([decoded.right, next.right])
      else refused.push(row)
    }
    return { pairs, malformed, refused }
  }

  /** Puts rows back as they were before a claim leased them (the columns a claim sets). */
  const restore = (rows: ReadonlyArray<Row>) => {
    const before = rows.map((r) => ({
      id: r.id,
      state: r.state,
      lease_owner: r.lease_owner,
      lease_expires_at: r.lease_expires_at,
      next_attempt_at: r.next_attempt_at,
      last_attempt_at: r.last_attempt_at,
      updated_at: r.updated_at
    }))
    return sql`UPDATE outbox_entries u SET state = v.state, lease_owner = v.lease_owner,
        lease_expires_at = v.lease_expires_at, next_attempt_at = v.next_attempt_at,
        last_attempt_at = v.last_attempt_at, updated_at = v.updated_at
      FROM jsonb_to_recordset(${JSON.stringify(before)}::jsonb) AS v(id text, state text, lease_owner text,
        lease_expires_at bigint, next_attempt_at bigint, last_attempt_at bigint, updated_at bigint)
      WHERE u.id = v.id`
  }

  // a head: due, and no pending row of its conversation before it
  const isHead = (now: number) =>
    sql`e.pending = 1 AND e.next_attempt_at <= ${now} AND NOT EXISTS (
      SELECT 1 FROM outbox_entries p WHERE p.ordering_key = e.ordering_key AND p.pending = 1 AND p.seq < e.seq)`

  const repo: OutboxRepoShape = {
    insert: (input, opts = {}) =>
      Effect.gen(function*() {
        if (input.length === 0) return []
        const bad = input.map((e) => Machine.checkInvariants(e) ?? jsonProblem(e)).find((m) => m !== null)
        if (bad) return yield* Effect.fail(new StoreError({ operation: "insert", message: bad }))
        return yield* tx(Effect.gen(function*() {
          const results = yield* insertOrdered(input, () => opts.deferBusyConversations === true)
          if (results.some((r) => r._tag === "Inserted" && r.entry.state !== "in_flight")) yield* notify
          return results
        }))
      }).pipe(run("insert")),

    write: (ops) => (ops.length === 0 ? Effect.succeed([]) : tx(writeOps(ops)).pipe(run("write"))),

    claim: ({ leaseMs, limit, now, orderingKeys, owner }) =>
      tx(Effect.gen(function*() {
        // 1. candidate heads, one per conversation, each conversation locked unless another claimer holds it
        const candidates = yield* sql<{ id: string }>`WITH c AS MATERIALIZED (
            SELECT e.id, e.ordering_key, e.next_attempt_at, e.seq FROM outbox_entries e
            WHERE ${isHead(now)} ${
          orderingKeys === undefined ? sql`` : sql`AND e.ordering_key IN ${sql.in(orderingKeys)}`
        }
            ORDER BY e.next_attempt_at, e.seq LIMIT ${limit})
          SELECT id FROM c WHERE pg_try_advisory_xact_lock(${CONVERSATION_LOCK}, hashtext(ordering_key))
          ORDER BY next_attempt_at, seq`
        if (candidates.length === 0) return { claimed: [], malformed: [] }
        // 2. a new snapshot, taken under the locks: still the head, and no other row of it holds a live lease; leased
        //    in the same statement (every row gets the same columns), which returns the rows as they were before
        const claim = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
        const set = Machine.claimWrite(claim, now)
        const values = yield* sql`WITH picked AS (
            SELECT ${sql.literal(SELECT)},
              EXISTS (SELECT 1 FROM outbox_entries n
                WHERE n.ordering_key = e.ordering_key AND n.pending = 1 AND n.seq > e.seq) AS followed,
              e.seq AS claim_seq
            FROM outbox_entries e
            WHERE e.id IN ${sql.in(candidates.map((c) => c.id))} AND ${isHead(now)}
              AND NOT EXISTS (SELECT 1 FROM outbox_entries l WHERE l.ordering_key = e.ordering_key AND l.id <> e.id
                AND l.pending = 1 AND l.state = 'in_flight' AND l.lease_expires_at > ${now})
            FOR UPDATE OF e SKIP LOCKED),
          leased AS (UPDATE outbox_entries u SET state = ${set.state}, lease_owner = ${set.leaseOwner},
              lease_expires_at = ${set.leaseExpiresAt}, next_attempt_at = ${set.nextAttemptAt},
              last_attempt_at = ${set.lastAttemptAt}, updated_at = ${set.updatedAt}
            FROM picked WHERE u.id = picked.id)
          SELECT * FROM picked ORDER BY next_attempt_at, claim_seq`.values
        const { malformed, pairs, refused } = claimRows(
          values.map((v) => rowFromValues(v.slice(0, ROW_COLUMNS.length))),
          claim,
          now
        )
        // 3. rare: a row that does not decode (or that the state machine refuses) was leased with the others; it is
        //    put back as it was, so it stays claimable (and the claimer quarantines it)
        if (refused.length > 0) yield* restore(refused)
        const followed = new Set(values.filter((v) => v[ROW_COLUMNS.length] === true).map((v) => String(v[0])))
        const claimed: Array<ClaimedEntry> = pairs.map(([before, after]) => ({
          entry: after,
          reclaimed: before.state === "in_flight",
          followed: followed.has(after.id)
        }))
        return { claimed, malformed }
      })).pipe(run("claim")),

    reclaimPreviousBoots: ({ nodeId, now, owner }) =>
      // the Reclaim transition as one statement, for owners of this node with no fresh heartbeat only
      sql<{ id: EntryId }>`UPDATE outbox_entries e
        SET lease_expires_at = ${now}, next_attempt_at = LEAST(${now}::bigint, e.enqueued_at), updated_at = ${now}
        WHERE e.state = 'in_flight' AND starts_with(e.lease_owner, ${nodeId + "/"}) AND e.lease_owner <> ${owner}
          AND NOT EXISTS (SELECT 1 FROM outbox_nodes n WHERE n.owner = e.lease_owner
            AND n.heartbeat_at > ${now - options.heartbeatStaleMs})
        RETURNING e.id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("reclaimPreviousBoots")),

    // a third of the staleness threshold: two beats may be lost before a live process counts as dead
    heartbeatEveryMs: Math.max(1, Math.floor(options.heartbeatStaleMs / 3)),

    heartbeat: (owner, now) =>
      sql`INSERT INTO outbox_nodes (owner, heartbeat_at) VALUES (${owner}, ${now})
        ON CONFLICT (owner) DO UPDATE SET heartbeat_at = GREATEST(outbox_nodes.heartbeat_at, excluded.heartbeat_at)`
        .pipe(
          Effect.asVoid,
          run("heartbeat")
        ),

    expire: (now, opts = {}) => {
      const set = Machine.expireWrite(now)
      // SKIP LOCKED: a row another transaction is claiming right now is left for the next pass
      return sql<{ id: EntryId }>`UPDATE outbox_entries
        SET state = ${set.state}, next_attempt_at = ${set.nextAttemptAt}, pending = NULL, lease_owner = ${set.leaseOwner},
          lease_expires_at = ${set.leaseExpiresAt}, updated_at = ${set.updatedAt}
        WHERE id IN (
          SELECT id FROM outbox_entries
          WHERE pending = 1 AND expires_at IS NOT NULL AND expires_at <= ${now} AND state IN ('queued', 'failed_retryable')
          ORDER BY expires_at
          ${opts.limit === undefined ? sql`` : sql`LIMIT ${opts.limit}`}
          FOR UPDATE SKIP LOCKED)
        RETURNING id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("expire"))
    },

    prune: (now, retention) =>
      inTransaction(Effect.gen(function*() {
        const terminalStates = (["failed_terminal", "expired"] as const).filter(Machine.isPrunable)
        const [delivered] = yield* sql<{ n: number }>`WITH d AS (DELETE FROM outbox_entries
          WHERE pending IS NULL AND state = 'delivered' AND updated_at <= ${now - retention.deliveredMs} RETURNING 1)
          SELECT count(*)::int AS n FROM d`
        const [terminal] = yield* sql<{ n: number }>`WITH d AS (DELETE FROM outbox_entries
          WHERE pending IS NULL AND state IN ${sql.in(terminalStates)} AND updated_at <= ${now - retention.terminalMs}
          RETURNING 1) SELECT count(*)::int AS n FROM d`
        // boots silent for as long as a failed row is kept hold no lease anyone waits for
        yield* sql`DELETE FROM outbox_nodes WHERE heartbeat_at <= ${now - retention.terminalMs}`
        return { delivered: delivered?.n ?? 0, terminal: terminal?.n ?? 0 }
      })).pipe(run("prune")),

    get: (id) =>
      sql`SELECT ${sql.literal(SELECT)} FROM outbox_entries e WHERE e.id = ${id}`.values.pipe(
        Effect.flatMap((rows) =>
          rows[0] === undefined ? Effect.succeedNone : Effect.map(decodeOrFail("get")(rows[0]), Option.some)
        ),
        run("get")
      ),

    list: (filter) =>
      sql`SELECT ${sql.literal(SELECT)} FROM outbox_entries e
        WHERE ${
        sql.and([
          ...(filter.state === undefined ? [] : [
            sql`e.state = ${filter.state}`,
            Machine.isPending(filter.state) ? sql`e.pending = 1` : sql`e.pending IS NULL`
          ]),
          ...(filter.channel === undefined ? [] : [sql`e.channel = ${filter.channel}`]),
          ...(filter.to === undefined ? [] : [sql`e.recipient = ${filter.to}`]),
          ...(filter.before === undefined ? [] : [
            filter.beforeId === undefined
              ? sql`e.enqueued_at < ${filter.before}`
              : sql`(e.enqueued_at, e.id) < (${filter.before}::bigint, ${filter.beforeId}::text)`
          ])
        ])
      }
        ORDER BY e.enqueued_at DESC, e.id DESC
        LIMIT ${filter.limit ?? DEFAULT_LIST_LIMIT}`.values.pipe(
        Effect.flatMap(Effect.forEach(decodeOrFail("list"))),
        run("list")
      ),

    stats: (now) =>
      Effect.all([
        sql<{ channel: string; state: OutboxEntry["state"]; count: number }>`
          SELECT channel, state, count(*)::int AS count FROM outbox_entries GROUP BY channel, state`,
        sql<{ oldest: number | null }>`SELECT min(enqueued_at)::float8 AS oldest FROM outbox_entries WHERE pending = 1`
      ]).pipe(
        Effect.map(([counts, [oldest]]) => foldStats(counts, oldest?.oldest ?? null, now)),
        run("stats")
      ),

    activity: (options) =>
      Effect.gen(function*() {
        const bad = activityProblem(options)
        if (bad !== null) return yield* Effect.fail(new StoreError({ operation: "activity", message: bad }))
        const since = sql`${options.since}::bigint`
        const until = sql`${options.until}::bigint`
        const bucket = sql`((updated_at - ${since}) / ${options.bucketMs}::bigint)::int`
        // finished rows through the retention index (state, updated_at); retrying rows are part of the backlog
        const rows = yield* sql<{ state: string; bucket: number; count: number }>`
          SELECT state, ${bucket} AS bucket, count(*)::int AS count FROM outbox_entries
          WHERE pending IS NULL AND state IN ('delivered', 'failed_terminal', 'expired')
            AND updated_at >= ${since} AND updated_at < ${until}
          GROUP BY 1, 2
          UNION ALL
          SELECT state, ${bucket} AS bucket, count(*)::int AS count FROM outbox_entries
          WHERE pending = 1 AND state = 'failed_retryable' AND updated_at >= ${since} AND updated_at < ${until}
          GROUP BY 1, 2`
        return foldActivity(rows, options)
      }).pipe(run("activity")),

    requeue: (id, now, expiresAt) =>
      inTransaction(Effect.gen(function*() {
        const [row] = yield* sql`SELECT ${sql.literal(SELECT)} FROM outbox_entries e WHERE e.id = ${id} FOR UPDATE`
          .values
        if (row === undefined) return yield* Effect.fail(new EntryNotFound({ id }))
        const before = yield* decodeOrFail("requeue")(row)
        const spec = yield* Machine.writeSpec(before, Machine.EntryEvent.Requeue({ expiresAt }), now)
        yield* updateRows([spec])
        yield* notify
        return spec.next
      })).pipe(run("requeue")),

    pendingCount: sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox_entries WHERE pending = 1`.pipe(
      Effect.map((rows) => rows[0]?.n ?? 0),
      run("pendingCount")
    ),

    getMeta: (key) =>
      sql<{ value: string }>`SELECT value FROM outbox_meta WHERE key = ${key}`.pipe(
        Effect.map((rows) => Option.fromNullable(rows[0]?.value)),
        run("getMeta")
      ),

    setMeta: (key, value) =>
      sql`INSERT INTO outbox_meta (key, value) VALUES (${key}, ${value})
          ON CONFLICT (key) DO UPDATE SET value = excluded.value`.pipe(Effect.asVoid, run("setMeta")),

    quarantine: (id, message, now) =>
      sql`UPDATE outbox_entries SET state = 'failed_terminal', terminal_reason = 'decode_error',
            last_error = ${message}, next_attempt_at = NULL, pending = NULL, lease_owner = NULL, lease_expires_at = NULL,
            updated_at = ${now}
          WHERE id = ${id} AND state IN ${sql.in(Machine.sourceStates.Quarantine)}`.pipe(
        Effect.asVoid,
        run("quarantine")
      )
  }
  return repo
}
