/**
 * The embedded default store: `outbox_entries` in a SQLite file (WAL). `layer` needs a `SqlClient` from the
 * gateway; `layerFile` builds one with the pragmas this store relies on.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { EntryId, OutboxEntry } from "./Delivery.js"
import { orderingKey } from "./Delivery.js"
import { EntryNotFound, StoreError } from "./DeliveryError.js"
import type { EntryEvent } from "./EntryStateMachine.js"
import * as Machine from "./EntryStateMachine.js"
import { activityProblem, foldActivity } from "./internal/adminSupport.js"
import * as GatewayLock from "./internal/gatewayLock.js"
import { DEFAULT_LIST_LIMIT, deferBusy, foldStats, jsonProblem } from "./internal/repoSupport.js"
import type { Row } from "./internal/rowCodec.js"
import { fromRow, groupChanges, ROW_COLUMNS, ROW_SELECT, rowFromValues, toRow } from "./internal/rowCodec.js"
import type { FileOptions } from "./internal/sqliteFile.js"
import { checkpointPages, configureConnection, createPrivateFile } from "./internal/sqliteFile.js"
import { withWriteLock } from "./internal/sqliteLocks.js"
import { migrate, storeError } from "./internal/sqliteSchema.js"
import type { ClaimedEntry, MalformedRow, OutboxRepoShape, WriteOp, WriteResult } from "./OutboxRepo.js"
import { InsertResult, OutboxRepo } from "./OutboxRepo.js"

export { configureConnection, DEFAULT_WAL_AUTOCHECKPOINT_PAGES } from "./internal/sqliteFile.js"
export type { FileOptions } from "./internal/sqliteFile.js"
export { migrate, migrations } from "./internal/sqliteSchema.js"

const IN_CHUNK = 500

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** Builds the store over the `SqlClient` in context (the schema must be migrated). */
export const make: Effect.Effect<OutboxRepoShape, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  // Taking the write lock with the first statement means busy_timeout applies to it; a deferred
  // transaction that reads first could fail with SQLITE_BUSY at once when another process wrote meanwhile.
  const lockForWrite = sql`UPDATE outbox_meta SET value = value WHERE key = 'schema'`
  const writeTx = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    sql.withTransaction(Effect.zipRight(lockForWrite, effect))

  const run = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
    effect.pipe(
      Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) =>
        Effect.fail(storeError(operation)(e))),
      // no stack trace: it would point here, and it costs one per call
      Effect.withSpan(`OutboxRepo.${operation}`, { captureStackTrace: false })
    ) as Effect.Effect<A, Exclude<E, SqlError> | StoreError, R>

  /** Decodes claimed rows and runs the Claim transition on each; a row that does not decode is reported, not leased. */
  const claimRows = (rows: ReadonlyArray<Row>, event: EntryEvent, now: number) => {
    const pairs: Array<readonly [OutboxEntry, OutboxEntry]> = []
    const malformed: Array<MalformedRow> = []
    for (const row of rows) {
      const decoded = fromRow(row)
      if (Either.isLeft(decoded)) {
        malformed.push({ id: String(row.id) as EntryId, message: decoded.left })
        continue
      }
      const next = Machine.transition(decoded.right, event, now)
      if (Either.isRight(next)) pairs.push([decoded.right, next.right])
    }
    return { pairs, malformed }
  }

  const decodeOrFail = (operation: string) => (row: Row) =>
    Either.match(fromRow(row), {
      onLeft: (message) => Effect.fail(new StoreError({ operation, message })),
      onRight: Effect.succeed
    })

  /** Inserts rows (ids and keys already checked by the caller's batch) and returns what each became. */
  const insertRows = (entries: ReadonlyArray<OutboxEntry>) =>
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
  const busyConversations = (entries: ReadonlyArray<OutboxEntry>) =>
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
  const updateRows = (specs: ReadonlyArray<Machine.WriteSpec>) =>
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
        const deferring = inserts.filter((i) => i.deferIfBusy && i.entry.state === "in_flight")
        const busy = deferring.length > 0 ? yield* busyConversations(deferring.map((i) => i.entry)) : new Set<string>()
        const entries = inserts.map(({ deferIfBusy, entry }) => {
          if (deferIfBusy) return deferBusy([entry], busy)[0]!
          busy.add(orderingKey(entry)) // a stored pending row makes its conversation busy for the later rows of the batch
          return entry
        })
        const stored = yield* insertRows(entries)
        inserts.forEach((insert, i) => void (results[insert.at] = stored[i]!))
      }
      const updated = specs.length > 0 ? yield* updateRows(specs) : new Set<string>()
      return ops.map((op, at): WriteResult =>
        results[at] ??
          (updated.has(op._tag === "Update" ? op.spec.guard.id : "") ? { _tag: "Updated" } : { _tag: "Rejected" })
      )
    })

  const repo: OutboxRepoShape = {
    insert: (input, options = {}) =>
      Effect.gen(function*() {
        if (input.length === 0) return []
        const bad = input.map(Machine.checkInvariants).find((m) => m !== null)
        if (bad) return yield* Effect.fail(new StoreError({ operation: "insert", message: bad }))
        return yield* writeTx(Effect.gen(function*() {
          let entries = input
          if (options.deferBusyConversations && input.some((e) => e.state === "in_flight")) {
            entries = deferBusy(input, yield* busyConversations(input))
          }
          return yield* insertRows(entries)
        }))
      }).pipe(run("insert")),

    write: (ops) => (ops.length === 0 ? Effect.succeed([]) : writeTx(writeOps(ops)).pipe(run("write"))),

    claim: ({ leaseMs, limit, now, orderingKeys, owner }) =>
      writeTx(Effect.gen(function*() {
        // the oldest pending row of each conversation is its head; only heads are claimable
        // read as arrays: better-sqlite3 builds a row object at about 4 µs, half the cost of the whole query per row
        const values = yield* sql`SELECT ${sql.literal(ROW_SELECT)},
            EXISTS (SELECT 1 FROM outbox_entries n WHERE n.ordering_key = e.ordering_key AND n.pending = 1
              AND (n.enqueued_at, n.id) > (e.enqueued_at, e.id)) AS followed
          FROM outbox_entries e
          WHERE e.next_attempt_at IS NOT NULL AND e.next_attempt_at <= ${now}
            ${orderingKeys === undefined ? sql`` : sql`AND e.ordering_key IN ${sql.in(orderingKeys)} AND e.pending = 1`}
            AND NOT EXISTS (
              SELECT 1 FROM outbox_entries p
              WHERE p.ordering_key = e.ordering_key AND p.pending = 1
                AND (p.enqueued_at, p.id) < (e.enqueued_at, e.id))
          ORDER BY e.next_attempt_at, e.id
          LIMIT ${limit}`.values
        const claim = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
        const { malformed, pairs } = claimRows(values.map(rowFromValues), claim, now)
        const followed = new Set(values.filter((v) => v[ROW_COLUMNS.length] === 1).map((v) => String(v[0])))
        // every accepted row gets the same columns: one UPDATE, without diffing each row's before and after
        const set = Machine.claimWrite(claim, now)
        for (const ids of chunks(pairs.map(([, after]) => after.id), IN_CHUNK)) {
          yield* sql`UPDATE outbox_entries SET state = ${set.state}, lease_owner = ${set.leaseOwner},
            lease_expires_at = ${set.leaseExpiresAt}, next_attempt_at = ${set.nextAttemptAt},
            last_attempt_at = ${set.lastAttemptAt}, updated_at = ${set.updatedAt}
            WHERE id IN ${sql.in(ids)}`
        }
        const claimed: Array<ClaimedEntry> = pairs.map(([before, after]) => ({
          entry: after,
          reclaimed: before.state === "in_flight",
          followed: followed.has(after.id)
        }))
        return { claimed, malformed }
      })).pipe(run("claim")),

    reclaimPreviousBoots: ({ nodeId, now, owner }) =>
      // the Reclaim transition as one statement: due at once, and before the backlog (since it was enqueued)
      sql<{ id: EntryId }>`UPDATE outbox_entries
        SET lease_expires_at = ${now}, next_attempt_at = min(${now}, enqueued_at), updated_at = ${now}
        WHERE state = 'in_flight' AND substr(lease_owner, 1, ${nodeId.length + 1}) = ${nodeId + "/"}
          AND lease_owner != ${owner}
        RETURNING id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("reclaimPreviousBoots")),

    // one gateway per file (layerFile's lock): no live replica's rows to tell apart
    heartbeat: () => Effect.void,

    expire: (now, options = {}) => {
      // the Expire transition as one statement, never reading a row's data: a row that no longer decodes expires too
      const set = Machine.expireWrite(now)
      return sql<{ id: EntryId }>`UPDATE outbox_entries
        SET state = ${set.state}, next_attempt_at = ${set.nextAttemptAt}, pending = NULL, lease_owner = ${set.leaseOwner},
          lease_expires_at = ${set.leaseExpiresAt}, updated_at = ${set.updatedAt}
        WHERE id IN (
          SELECT id FROM outbox_entries
          WHERE pending = 1 AND expires_at IS NOT NULL AND expires_at <= ${now} AND state IN ('queued', 'failed_retryable')
          ORDER BY expires_at
          ${options.limit === undefined ? sql`` : sql`LIMIT ${options.limit}`})
        RETURNING id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("expire"))
    },

    prune: (now, retention) =>
      writeTx(Effect.gen(function*() {
        const prunable = (["delivered", "failed_terminal", "expired"] as const).filter(Machine.isPrunable)
        const terminalStates = prunable.filter((s) => s !== "delivered")
        // "pending IS NULL" lets SQLite use the retention index, which holds finished rows only
        const delivered = yield* sql`DELETE FROM outbox_entries
          WHERE pending IS NULL AND state = 'delivered' AND updated_at <= ${now - retention.deliveredMs}`.raw
        const terminal = yield* sql`DELETE FROM outbox_entries
          WHERE pending IS NULL AND state IN ${sql.in(terminalStates)} AND updated_at <= ${now - retention.terminalMs}`
          .raw
        return { delivered: changes(delivered), terminal: changes(terminal) }
      })).pipe(run("prune")),

    get: (id) =>
      sql<Row>`SELECT * FROM outbox_entries WHERE id = ${id}`.pipe(
        Effect.flatMap((rows) =>
          rows[0] === undefined ? Effect.succeedNone : Effect.map(decodeOrFail("get")(rows[0]), Option.some)
        ),
        run("get")
      ),

    list: (filter) =>
      sql<Row>`SELECT * FROM outbox_entries
        WHERE ${
        sql.and([
          // which set the state is in, so SQLite picks an index of that set: finished rows, or the backlog
          ...(filter.state === undefined ? [] : [
            sql`state = ${filter.state}`,
            Machine.isPending(filter.state) ? sql`pending = 1` : sql`pending IS NULL`
          ]),
          ...(filter.channel === undefined ? [] : [sql`channel = ${filter.channel}`]),
          ...(filter.to === undefined ? [] : [sql`recipient = ${filter.to}`]),
          ...(filter.before === undefined ? [] : [
            filter.beforeId === undefined
              ? sql`enqueued_at < ${filter.before}`
              : sql`(enqueued_at, id) < (${filter.before}, ${filter.beforeId})`
          ])
        ])
      }
        ${
        // a backlog state is listed from the pending rows, sorted (a cost bounded by the backlog): walking the listing
        // order index instead reads through every finished row between two pages of an old backlog
        filter.state !== undefined && Machine.isPending(filter.state)
          ? sql`ORDER BY +enqueued_at DESC, +id DESC`
          : sql`ORDER BY enqueued_at DESC, id DESC`}
        LIMIT ${filter.limit ?? DEFAULT_LIST_LIMIT}`.pipe(
        Effect.flatMap(Effect.forEach(decodeOrFail("list"))),
        run("list")
      ),

    stats: (now) =>
      Effect.all([
        // finished rows counted from their index alone, the backlog through the pending indexes
        sql<{ channel: string; state: OutboxEntry["state"]; count: number }>`
          SELECT channel, state, count(*) AS count FROM outbox_entries WHERE pending IS NULL GROUP BY state, channel
          UNION ALL
          SELECT channel, state, count(*) AS count FROM outbox_entries WHERE pending = 1 GROUP BY channel, state`,
        sql<{ oldest: number | null }>`SELECT min(enqueued_at) AS oldest FROM outbox_entries
          WHERE next_attempt_at IS NOT NULL`
      ]).pipe(
        Effect.map(([counts, [oldest]]) => foldStats(counts, oldest?.oldest ?? null, now)),
        run("stats")
      ),

    activity: (options) =>
      Effect.gen(function*() {
        const bad = activityProblem(options)
        if (bad !== null) return yield* Effect.fail(new StoreError({ operation: "activity", message: bad }))
        const { since, until } = options
        // the driver binds numbers as REAL: cast, so the division is an integer one
        const bucket = sql`(updated_at - CAST(${since} AS INTEGER)) / CAST(${options.bucketMs} AS INTEGER)`
        // finished rows through the retention index (state, updated_at); retrying rows are part of the backlog
        const rows = yield* sql<{ state: string; bucket: number; count: number }>`
          SELECT state, ${bucket} AS bucket, count(*) AS count FROM outbox_entries
          WHERE pending IS NULL AND state IN ('delivered', 'failed_terminal', 'expired')
            AND updated_at >= ${since} AND updated_at < ${until}
          GROUP BY state, bucket
          UNION ALL
          SELECT state, ${bucket} AS bucket, count(*) AS count FROM outbox_entries
          WHERE pending = 1 AND state = 'failed_retryable' AND updated_at >= ${since} AND updated_at < ${until}
          GROUP BY state, bucket`
        return foldActivity(rows, options)
      }).pipe(run("activity")),

    requeue: (id, now, expiresAt) =>
      writeTx(Effect.gen(function*() {
        const [row] = yield* sql<Row>`SELECT * FROM outbox_entries WHERE id = ${id}`
        if (row === undefined) return yield* Effect.fail(new EntryNotFound({ id }))
        const before = yield* decodeOrFail("requeue")(row)
        const spec = yield* Machine.writeSpec(before, Machine.EntryEvent.Requeue({ expiresAt }), now)
        yield* updateRows([spec])
        return spec.next
      })).pipe(run("requeue")),

    pendingCount: sql<{ n: number }>`SELECT count(*) AS n FROM outbox_entries WHERE next_attempt_at IS NOT NULL`.pipe(
      Effect.map((rows) => Number(rows[0]?.n ?? 0)),
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
      // the row does not decode, so the Quarantine transition is applied to its columns directly
      sql`UPDATE outbox_entries SET state = 'failed_terminal', terminal_reason = 'decode_error',
            last_error = ${message}, next_attempt_at = NULL, pending = NULL, lease_owner = NULL, lease_expires_at = NULL,
            updated_at = ${now}
          WHERE id = ${id} AND state IN ${sql.in(Machine.sourceStates.Quarantine)}`.pipe(
        Effect.asVoid,
        run("quarantine")
      )
  }
  return repo
})

const changes = (result: unknown): number =>
  typeof result === "object" && result !== null && "changes" in result ? Number(result.changes) : 0

/**
 * The store over a gateway-provided `SqlClient`; migrates on construction. It takes no gateway lock (`layerFile`'s
 * `exclusive`): keeping to one gateway per file is then up to the gateway.
 */
export const layer: Layer.Layer<OutboxRepo, StoreError, SqlClient.SqlClient> = Layer.effect(
  OutboxRepo,
  Effect.zipRight(migrate, make)
)

/**
 * A SQLite file with WAL, explicit `synchronous` (NORMAL default), busy_timeout 5 s, a checkpoint every 10,000 WAL pages
 * and mode 0600; migrated, and held as this process's gateway unless `exclusive: false`.
 */
export const layerFile = (options: FileOptions): Layer.Layer<OutboxRepo | SqlClient.SqlClient, StoreError> => {
  // WAL is switched on by configureConnection, once busy_timeout is set
  const client = SqliteClient.layer({ filename: options.filename, disableWAL: true }).pipe(
    Layer.catchAllCause((cause) => {
      const reason = Cause.squash(cause)
      // the driver's reason ("file is not a database", SQLITE_CANTOPEN…) belongs in the message a log line shows
      const why = reason instanceof Error ? reason.message : String(reason)
      return Layer.fail(
        new StoreError({ operation: "open", message: `cannot open outbox database ${options.filename}: ${why}`, cause })
      )
    })
  )
  const cannotOpen = (e: StoreError) =>
    new StoreError({
      operation: "open",
      message: `cannot open outbox database ${options.filename}: ${e.message}`,
      cause: e
    })
  // the file is first read here (a file that is not a database fails here)
  const configured = Effect.mapError(configureConnection(options), cannotOpen)
  const ready = Layer.effectDiscard(configured).pipe(Layer.provideMerge(client))
  const opened = Effect.zipRight(checkpointPages(options), createPrivateFile(options.filename))
  const exclusive = options.exclusive !== false && options.filename !== ":memory:"
  // the lock is taken, the schema migrated and the holder recorded in one write transaction (see GatewayLock.take)
  const started = withWriteLock(Effect.gen(function*() {
    const holder = exclusive ? yield* GatewayLock.take(options.filename) : undefined
    yield* migrate
    if (holder !== undefined) yield* GatewayLock.record(holder)
  })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(cannotOpen(storeError("open")(e)))))
  const store = Layer.scoped(OutboxRepo, Effect.zipRight(started, make))
  return Layer.unwrapEffect(Effect.as(opened, store.pipe(Layer.provideMerge(ready))))
}
