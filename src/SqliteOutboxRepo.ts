/**
 * The embedded default store: `outbox_entries` in a SQLite file (WAL). `layer` needs a `SqlClient` from the
 * gateway; `layerFile` builds one with the pragmas this store relies on.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import type { EntryId, OutboxEntry } from "./Delivery.js"
import { orderingKey } from "./Delivery.js"
import { EntryNotFound, StoreError } from "./DeliveryError.js"
import type { EntryEvent } from "./EntryStateMachine.js"
import * as Machine from "./EntryStateMachine.js"
import * as GatewayLock from "./internal/gatewayLock.js"
import { DEFAULT_LIST_LIMIT, deferBusy, foldStats, jsonProblem } from "./internal/repoSupport.js"
import type { Row } from "./internal/rowCodec.js"
import { fromRow, groupChanges, ROW_SELECT, rowFromValues, toRow } from "./internal/rowCodec.js"
import { enableWal, withWriteLock } from "./internal/sqliteLocks.js"
import type { ClaimedEntry, MalformedRow, OutboxRepoShape, WriteOp, WriteResult } from "./OutboxRepo.js"
import { InsertResult, OutboxRepo } from "./OutboxRepo.js"

/** The schema, owned by the library and applied in order. */
export const migrations = {
  "0001_create_outbox": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE outbox_entries (
      id TEXT PRIMARY KEY,
      idempotency_key TEXT UNIQUE,
      channel TEXT NOT NULL,
      account_id TEXT,
      recipient TEXT NOT NULL,
      thread_id TEXT,
      reply_to_id TEXT,
      ordering_key TEXT NOT NULL,
      dispatch_kind TEXT NOT NULL CHECK (dispatch_kind IN ('tool', 'block', 'final')),
      payloads_json TEXT NOT NULL,
      options_json TEXT NOT NULL,
      state TEXT NOT NULL
        CHECK (state IN ('queued', 'in_flight', 'delivered', 'failed_retryable', 'failed_terminal', 'expired')),
      attempt_count INTEGER NOT NULL DEFAULT 0,
      parts_delivered INTEGER NOT NULL DEFAULT 0,
      enqueued_at INTEGER NOT NULL,
      next_attempt_at INTEGER,
      last_attempt_at INTEGER,
      delivered_at INTEGER,
      expires_at INTEGER,
      last_error TEXT,
      terminal_reason TEXT,
      lease_owner TEXT,
      lease_expires_at INTEGER,
      updated_at INTEGER NOT NULL
    ) STRICT`
    // only pending rows carry next_attempt_at, so the partial indexes stay the size of the backlog
    yield* sql`CREATE INDEX outbox_entries_due ON outbox_entries (next_attempt_at, id)
      WHERE next_attempt_at IS NOT NULL`
    yield* sql`CREATE INDEX outbox_entries_conversation ON outbox_entries (ordering_key, enqueued_at, id)
      WHERE next_attempt_at IS NOT NULL`
    yield* sql`CREATE INDEX outbox_entries_expiry ON outbox_entries (expires_at)
      WHERE next_attempt_at IS NOT NULL`
    yield* sql`CREATE INDEX outbox_entries_admin ON outbox_entries (state, channel, enqueued_at)`
    yield* sql`CREATE INDEX outbox_entries_retention ON outbox_entries (state, updated_at)`
    yield* sql`CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT`
    yield* sql`INSERT INTO outbox_meta (key, value) VALUES ('schema', 'effect-outbox')`
  }),
  "0002_delivered_parts": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // best-effort parts delivered past a failed one (JSON array of part indexes), so a retry skips them
    yield* sql`ALTER TABLE outbox_entries ADD COLUMN delivered_parts TEXT`
  }),
  "0003_pending_flag": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // 1 while the row may still be sent (next_attempt_at is set), NULL once it is finished. The conversation and expiry
    // indexes are partial on it instead of on next_attempt_at, which every claim rewrites: SQLite updates an index
    // whose WHERE clause names an assigned column, so each claim moved two index entries on random pages for nothing
    yield* sql`ALTER TABLE outbox_entries ADD COLUMN pending INTEGER CHECK (pending = 1)`
    yield* sql`UPDATE outbox_entries SET pending = 1 WHERE next_attempt_at IS NOT NULL`
    yield* sql`DROP INDEX outbox_entries_conversation`
    yield* sql`DROP INDEX outbox_entries_expiry`
    yield* sql`CREATE INDEX outbox_entries_conversation ON outbox_entries (ordering_key, enqueued_at, id) WHERE pending = 1`
    yield* sql`CREATE INDEX outbox_entries_expiry ON outbox_entries (expires_at) WHERE pending = 1`
  }),
  "0004_finished_indexes": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The admin and retention indexes lead with state, which a claim and an ack both rewrite: every delivery moved
    // four entries in them. They now hold finished rows only (pending IS NULL), which a claim leaves alone and an ack
    // adds once; the backlog's rows are listed through the pending indexes. A drain's CPU per message fell about 20 %.
    yield* sql`DROP INDEX outbox_entries_admin`
    yield* sql`DROP INDEX outbox_entries_retention`
    yield* sql`CREATE INDEX outbox_entries_finished ON outbox_entries (state, channel, enqueued_at) WHERE pending IS NULL`
    yield* sql`CREATE INDEX outbox_entries_retention ON outbox_entries (state, updated_at) WHERE pending IS NULL`
  })
}

const LATEST_MIGRATION = Math.max(...Object.keys(migrations).map((name) => Number.parseInt(name, 10)))

/**
 * Runs the migrations into `effect_outbox_migrations`, holding SQLite's write lock: processes opening one file
 * together take turns, and each finds the schema complete when its turn ends.
 */
export const migrate: Effect.Effect<void, StoreError, SqlClient.SqlClient> = withWriteLock(Effect.gen(function*() {
  yield* Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: "effect_outbox_migrations" })
  // The Migrator takes any failure to record a migration for "already running elsewhere" and succeeds. Under the
  // write lock nothing else runs them, so a schema short of the latest is an error, never something to go on with
  const sql = yield* SqlClient.SqlClient
  const [applied] = yield* sql<{ id: number | null }>`SELECT max(migration_id) AS id FROM effect_outbox_migrations`
  if ((applied?.id ?? 0) < LATEST_MIGRATION) {
    return yield* Effect.fail(
      new StoreError({ operation: "migrate", message: `the schema is at migration ${applied?.id ?? 0}, not ${LATEST_MIGRATION}` })
    )
  }
})).pipe(
  Effect.mapError((e) =>
    e._tag === "StoreError"
      ? e
      : new StoreError({ operation: "migrate", message: e._tag === "SqlError" ? describe(e) : e.message, cause: e })
  )
)

const describe = (e: SqlError): string => {
  const cause = e.cause instanceof Error ? e.cause.message : e.cause === undefined ? "" : String(e.cause)
  return cause ? `${e.message}: ${cause}` : e.message
}

const storeError = (operation: string) => (e: SqlError) =>
  new StoreError({ operation, message: describe(e), cause: e })

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
  const writeTx = <A, E, R>(effect: Effect.Effect<A, E, R>) => sql.withTransaction(Effect.zipRight(lockForWrite, effect))

  const run = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
    effect.pipe(
      Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) => Effect.fail(storeError(operation)(e))),
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
          : Effect.fail(new StoreError({ operation: "insert", message: `entry ${entry.id} was neither inserted nor found` }))
      })
    })

  /** The conversations among `entries` that already have a pending row. */
  const busyConversations = (entries: ReadonlyArray<OutboxEntry>) =>
    Effect.map(
      Effect.forEach(chunks([...new Set(entries.map(orderingKey))], IN_CHUNK), (part) =>
        sql<{ ordering_key: string }>`SELECT DISTINCT ordering_key FROM outbox_entries
          WHERE ordering_key IN ${sql.in(part)} AND pending = 1`),
      (found) => new Set(found.flat().map((r) => r.ordering_key))
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
        results[at] ?? (updated.has(op._tag === "Update" ? op.spec.guard.id : "") ? { _tag: "Updated" } : { _tag: "Rejected" })
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

    claim: ({ leaseMs, limit, now, orderingKey: conversation, owner }) =>
      writeTx(Effect.gen(function*() {
        // the oldest pending row of each conversation is its head; only heads are claimable
        // read as arrays: better-sqlite3 builds a row object at about 4 µs, half the cost of the whole query per row
        const values = yield* sql`SELECT ${sql.literal(ROW_SELECT)} FROM outbox_entries e
          WHERE e.next_attempt_at IS NOT NULL AND e.next_attempt_at <= ${now}
            ${conversation === undefined ? sql`` : sql`AND e.ordering_key = ${conversation} AND e.pending = 1`}
            AND NOT EXISTS (
              SELECT 1 FROM outbox_entries p
              WHERE p.ordering_key = e.ordering_key AND p.pending = 1
                AND (p.enqueued_at, p.id) < (e.enqueued_at, e.id))
          ORDER BY e.next_attempt_at, e.id
          LIMIT ${limit}`.values
        const claim = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
        const { malformed, pairs } = claimRows(values.map(rowFromValues), claim, now)
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
          reclaimed: before.state === "in_flight"
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
          WHERE pending IS NULL AND state IN ${sql.in(terminalStates)} AND updated_at <= ${now - retention.terminalMs}`.raw
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
          ...(filter.before === undefined ? [] : [sql`enqueued_at < ${filter.before}`])
        ])
      }
        ORDER BY enqueued_at DESC, id DESC
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

/** Options of `layerFile`. */
export interface FileOptions {
  readonly filename: string
  /** set on every open; NORMAL is durable across process crashes in WAL mode, FULL also across power loss */
  readonly synchronous?: "NORMAL" | "FULL" | undefined
  readonly busyTimeoutMs?: number | undefined
  /**
   * pages the WAL may hold before a commit copies it into the database (SQLite's `wal_autocheckpoint`); 10,000 by
   * default (the `-wal` file reaches about 44 MB under load), against SQLite's own 1,000
   */
  readonly walAutocheckpointPages?: number | undefined
  /**
   * Whether this process is the file's one gateway (default true): it holds an exclusive lock on
   * `<filename>-gateway.lock` while the layer is open, and a second gateway on the file fails at start with a
   * `StoreError` (operation "lock") naming the holder's pid, host and start. The operating system drops the lock when
   * the process ends, however it ends. `false` takes no lock: for a process that only enqueues or administers the file
   * beside a running gateway (it must not `deliver` or run the worker). A gateway that provides its own `SqlClient`
   * through `layer` takes no lock either.
   */
  readonly exclusive?: boolean | undefined
}

/** The WAL size that triggers a checkpoint, in pages, when `walAutocheckpointPages` is not given. */
export const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 10_000

// better-sqlite3 would create the file with the process umask; an outbox holds user messages, so 0600
const createPrivateFile = (filename: string) =>
  Effect.try({
    try: () => {
      if (filename === ":memory:") return
      const stat = fs.statSync(filename, { throwIfNoEntry: false })
      if (stat?.isDirectory()) throw new Error(`${filename} is a directory`)
      if (stat === undefined) fs.closeSync(fs.openSync(filename, fs.constants.O_CREAT | fs.constants.O_RDWR, 0o600))
      fs.accessSync(filename, fs.constants.R_OK | fs.constants.W_OK)
      fs.accessSync(path.dirname(path.resolve(filename)), fs.constants.W_OK) // WAL needs -wal/-shm beside it
    },
    catch: (cause) =>
      new StoreError({
        operation: "open",
        message: `cannot open outbox database ${filename}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

/** `walAutocheckpointPages` or its default; anything but a whole number ≥ 1 is refused before the file is touched. */
const checkpointPages = (options: Omit<FileOptions, "filename">): Effect.Effect<number, StoreError> => {
  const pages = options.walAutocheckpointPages ?? DEFAULT_WAL_AUTOCHECKPOINT_PAGES
  // 0 would turn automatic checkpoints off and let the WAL grow without bound
  return Number.isSafeInteger(pages) && pages >= 1 ? Effect.succeed(pages) : Effect.fail(
    new StoreError({ operation: "open", message: `walAutocheckpointPages must be a whole number of pages ≥ 1, got ${pages}` })
  )
}

/** Sets the pragmas this store relies on, on the client's connection. */
export const configureConnection = (options: Omit<FileOptions, "filename">) =>
  Effect.gen(function*() {
    const pages = yield* checkpointPages(options)
    const sql = yield* SqlClient.SqlClient
    const busyTimeoutMs = Math.trunc(options.busyTimeoutMs ?? 5000)
    yield* sql.unsafe(`PRAGMA synchronous = ${options.synchronous ?? "NORMAL"}`)
    // before anything reads the file, the WAL switch included
    yield* sql.unsafe(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
    // Fewer, larger checkpoints: an index page that many batches dirty is copied and synced once per 10,000 WAL pages
    // rather than once per 1,000. The worker drain gained about 7 % (median of 16 interleaved pairs; BENCHMARKS.md)
    yield* sql.unsafe(`PRAGMA wal_autocheckpoint = ${pages}`)
    const mode = yield* enableWal(busyTimeoutMs)
    if (mode !== "wal" && mode !== "memory") {
      return yield* Effect.fail(new StoreError({ operation: "open", message: `journal_mode is ${mode}, not wal` }))
    }
  }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(storeError("open")(e))))

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
      return Layer.fail(new StoreError({ operation: "open", message: `cannot open outbox database ${options.filename}: ${why}`, cause }))
    })
  )
  const cannotOpen = (e: StoreError) =>
    new StoreError({ operation: "open", message: `cannot open outbox database ${options.filename}: ${e.message}`, cause: e })
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
