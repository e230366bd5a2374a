/**
 * The shared store: `outbox_entries` in PostgreSQL, for several gateway processes (replicas, hosts) on one outbox.
 * `layer` needs the gateway's `SqlClient` (a `PgClient`); `layerUrl` / `layerConfig` build one. The tables live in
 * the client's `search_path` (its first schema), so a gateway picks the schema on its pool.
 *
 * What holds across processes:
 * - **Conversation order** is a database-assigned `seq` (bigserial), never ids or clocks, which only increase within
 *   one process. Rows of one insert batch are numbered in (enqueuedAt, id) order.
 * - **One lease per conversation.** A claim runs in one READ COMMITTED transaction: (1) it picks due conversation
 *   heads and takes `pg_try_advisory_xact_lock(ns, hashtext(ordering_key))` on each, skipping conversations another
 *   claimer holds; (2) in a new statement, so a snapshot taken *after* the locks, it re-reads those heads
 *   `FOR UPDATE SKIP LOCKED`, keeping a head only when no other row of its conversation holds a live lease; (3) it
 *   leases them. Row locks alone are not enough: two claimers whose snapshots differ (one sees a row committed late
 *   with a lower seq, the other does not) would lock two *different* rows of one conversation. The advisory lock
 *   serializes claims per conversation, and the fresh snapshot sees every earlier claim's lease. A live insert that
 *   may start in flight (`deferIfBusy`) takes the same lock (blocking, in key order) before it looks for a pending
 *   row. Claimers only ever *try* locks, so they never wait and cannot deadlock. Chosen over a head table because it
 *   adds no write to an enqueue and no hot row per conversation; a hash collision only serializes two conversations.
 * - **Leases** are fenced by owner on every write (`UPDATE … WHERE id IN … AND state = $ AND lease_owner IS NOT
 *   DISTINCT FROM $ RETURNING id`). An expired lease is claimable by anyone.
 * - **Liveness.** Each process calls `heartbeat(owner, now)` (table `outbox_nodes`). `reclaimPreviousBoots` takes at
 *   once only the leases of this node's other owners with no heartbeat newer than `heartbeatStaleMs`, so a restart
 *   never takes a live replica's rows, even one configured with the same `nodeId`.
 * - **Wake-ups.** A write or insert that makes a row claimable (an enqueue; a row leaving `in_flight` while its
 *   conversation has another pending row) sends `pg_notify(channel, …)` in its transaction, delivered at commit;
 *   `notifications` is the stream to wake on. A finished row alone in its conversation (most live replies) wakes
 *   nobody.
 * - **Rate limits** (`rateBuckets`): an account's bucket is a row of `outbox_rate_buckets`, reserved by one
 *   `UPDATE … RETURNING` per send, so a channel's limit holds for all processes together; a 429's pause is written to
 *   the row and announced on `<channel>_rate` (see `RateLimits`).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as crypto from "node:crypto"
import { StoreError } from "./DeliveryError.js"
import { transaction } from "./internal/pgContext.js"
import * as PgRateBuckets from "./internal/pgRateBuckets.js"
import { makeShape } from "./internal/pgStore.js"
import type { OutboxRepoShape } from "./OutboxRepo.js"
import { OutboxRepo } from "./OutboxRepo.js"

/** How long after its last heartbeat a boot counts as dead for `reclaimPreviousBoots` (30 s: dead once `now - heartbeatAt >= 30 s`). */
export const DEFAULT_HEARTBEAT_STALE_MS = 30_000

/** The channel `write` and `insert` notify on when a row became claimable. */
export const DEFAULT_CHANNEL = "effect_outbox"

/** Options of `layerWith`. */
export interface Options {
  /** a boot whose last heartbeat is older than this is dead; call `heartbeat` at least three times per period */
  readonly heartbeatStaleMs?: number | undefined
  /** the NOTIFY channel; give outboxes sharing one database (in different schemas) different channels */
  readonly channel?: string | undefined
}

/** The advisory lock under which migrations run (one process migrates, the others wait and find them done). */
const MIGRATION_LOCK = 0x6f627830 // "obx0"

/** The schema, owned by the library and applied in order: the SQLite columns with native types. */
export const migrations = {
  "0001_create_outbox": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE outbox_entries (
      id TEXT PRIMARY KEY,
      seq BIGSERIAL NOT NULL UNIQUE,
      idempotency_key TEXT UNIQUE,
      channel TEXT NOT NULL,
      account_id TEXT,
      recipient TEXT NOT NULL,
      thread_id TEXT,
      reply_to_id TEXT,
      ordering_key TEXT NOT NULL,
      dispatch_kind TEXT NOT NULL CHECK (dispatch_kind IN ('tool', 'block', 'final')),
      payloads_json JSONB NOT NULL,
      options_json JSONB NOT NULL,
      state TEXT NOT NULL
        CHECK (state IN ('queued', 'in_flight', 'delivered', 'failed_retryable', 'failed_terminal', 'expired')),
      attempt_count INTEGER NOT NULL DEFAULT 0,
      parts_delivered INTEGER NOT NULL DEFAULT 0,
      delivered_parts TEXT,
      enqueued_at BIGINT NOT NULL,
      next_attempt_at BIGINT,
      last_attempt_at BIGINT,
      delivered_at BIGINT,
      expires_at BIGINT,
      last_error TEXT,
      terminal_reason TEXT,
      lease_owner TEXT,
      lease_expires_at BIGINT,
      updated_at BIGINT NOT NULL,
      pending SMALLINT CHECK (pending = 1),
      CHECK ((pending = 1) = (next_attempt_at IS NOT NULL))
    )`
    // pending rows only (the backlog), so a claim costs the same with 10 rows or 10 million
    yield* sql`CREATE INDEX outbox_entries_due ON outbox_entries (next_attempt_at, seq) WHERE pending = 1`
    yield* sql`CREATE INDEX outbox_entries_conversation ON outbox_entries (ordering_key, seq) WHERE pending = 1`
    yield* sql`CREATE INDEX outbox_entries_expiry ON outbox_entries (expires_at) WHERE pending = 1`
    yield* sql`CREATE INDEX outbox_entries_leases ON outbox_entries (lease_owner) WHERE state = 'in_flight'`
    yield* sql`CREATE INDEX outbox_entries_finished ON outbox_entries (state, channel, enqueued_at) WHERE pending IS NULL`
    yield* sql`CREATE INDEX outbox_entries_retention ON outbox_entries (state, updated_at) WHERE pending IS NULL`
    yield* sql`CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`
    yield* sql`INSERT INTO outbox_meta (key, value) VALUES ('schema', 'effect-outbox')`
    yield* sql`CREATE TABLE outbox_nodes (owner TEXT PRIMARY KEY, heartbeat_at BIGINT NOT NULL)`
  }),
  "0002_listing_order": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // the admin listing, newest first: unfiltered (a key that never changes after the insert), and by finished state
    yield* sql`CREATE INDEX outbox_entries_enqueued ON outbox_entries (enqueued_at, id)`
    yield* sql`CREATE INDEX outbox_entries_finished_order ON outbox_entries (state, enqueued_at, id) WHERE pending IS NULL`
  }),
  // rate limit buckets shared by the processes (see internal/pgRateBuckets.ts)
  "0003_rate_buckets": Effect.flatMap(SqlClient.SqlClient, PgRateBuckets.createTable)
}

const LATEST_MIGRATION = Math.max(...Object.keys(migrations).map((name) => Number.parseInt(name, 10)))

const describe = (e: SqlError): string => {
  const cause = e.cause instanceof Error ? e.cause.message : e.cause === undefined ? "" : String(e.cause)
  return cause ? `${e.message}: ${cause}` : e.message
}

/**
 * Runs the migrations into `effect_outbox_migrations` in one transaction holding an advisory lock: processes starting
 * together take turns (the Migrator's own `CREATE TABLE IF NOT EXISTS` is not safe when two run it at once).
 */
export const migrate: Effect.Effect<void, StoreError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* transaction(
    sql,
    Effect.gen(function*() {
      yield* sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK}, hashtext(current_schema()))`
      // the Migrator probes its table with a query whose failure would abort this transaction: create it first
      yield* sql`CREATE TABLE IF NOT EXISTS effect_outbox_migrations (
      migration_id integer PRIMARY KEY, created_at timestamp with time zone NOT NULL DEFAULT now(), name text NOT NULL)`
      yield* Migrator.make({})({ loader: Migrator.fromRecord(migrations), table: "effect_outbox_migrations" })
      // the Migrator reads a failure to record a migration as "running elsewhere"; under the lock that is an error
      const [applied] = yield* sql<{ id: number | null }>`SELECT max(migration_id) AS id FROM effect_outbox_migrations`
      if ((applied?.id ?? 0) < LATEST_MIGRATION) {
        return yield* Effect.fail(
          new StoreError({
            operation: "migrate",
            message: `the schema is at migration ${applied?.id ?? 0}, not ${LATEST_MIGRATION}`
          })
        )
      }
    })
  )
}).pipe(
  Effect.mapError((e) =>
    e._tag === "StoreError"
      ? e
      : new StoreError({ operation: "migrate", message: e._tag === "SqlError" ? describe(e) : e.message, cause: e })
  )
)

/**
 * Builds the store over the `SqlClient` in context (the schema must be migrated). When that client is a `PgClient`,
 * the store's `wakeups` listen on its notification channel, so an outbox wakes on other processes' writes.
 */
export const make = (options: Options = {}): Effect.Effect<OutboxRepoShape, never, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const pg = yield* Effect.serviceOption(PgClient.PgClient)
    const channel = options.channel ?? DEFAULT_CHANNEL
    // the claim protocol needs READ COMMITTED; when the server's default for these connections is something else,
    // (or cannot be read) every transaction sets it
    const isolation = yield* sql<{ level: string }>`SELECT current_setting('default_transaction_isolation') AS level`
      .pipe(Effect.map((rows) => rows[0]?.level), Effect.orElseSucceed(() => undefined))
    const base = makeShape(sql, {
      heartbeatStaleMs: options.heartbeatStaleMs ?? DEFAULT_HEARTBEAT_STALE_MS,
      channel,
      setIsolation: isolation !== "read committed"
    })
    const shape = {
      ...base,
      rateBuckets: PgRateBuckets.make(sql, { channel, pg: pg._tag === "Some" ? pg.value : undefined })
    }
    if (pg._tag === "None") return shape
    const wakeups = notifications(channel, { probeEveryMs: shape.heartbeatEveryMs })
    return { ...shape, wakeups: wakeups.pipe(Stream.provideService(PgClient.PgClient, pg.value)) }
  })

/** The store over a gateway-provided `SqlClient` (a `PgClient`), with options; migrates on construction. */
export const layerWith = (options: Options): Layer.Layer<OutboxRepo, StoreError, SqlClient.SqlClient> =>
  Layer.effect(OutboxRepo, Effect.zipRight(migrate, make(options)))

/** The store over a gateway-provided `SqlClient` (a `PgClient`); migrates on construction. */
export const layer: Layer.Layer<OutboxRepo, StoreError, SqlClient.SqlClient> = layerWith({})

const clientError = (e: unknown) =>
  new StoreError({
    operation: "open",
    message: `cannot connect to the outbox database: ${
      typeof e === "object" && e !== null && "_tag" in e && e._tag === "SqlError" ? describe(e as SqlError) : String(e)
    }`,
    cause: e
  })

/**
 * The store on a pool it builds from `PgClient` configuration (`Config`), migrated. The statement timeout of
 * `layerUrl` is not added here: set it in the URL's options (`-c statement_timeout=30000`) or on the database role.
 */
export const layerConfig = (
  config: Config.Config.Wrap<PgClient.PgClientConfig>,
  options: Options = {}
): Layer.Layer<OutboxRepo | PgClient.PgClient | SqlClient.SqlClient, StoreError> =>
  layerWith(options).pipe(Layer.provideMerge(Layer.mapError(PgClient.layerConfig(config), clientError)))

/** The statement timeout of a pool `layerUrl` builds, unless told otherwise. */
export const DEFAULT_STATEMENT_TIMEOUT: Duration.DurationInput = "30 seconds"

/** Options of `layerUrl`: the store's, the pool's (`PgClient`'s), and the statement timeout. */
export interface UrlOptions extends Options {
  /** the pool: `maxConnections` (10 by default), `connectTimeout` (5 s), `idleTimeout`, `applicationName`… */
  readonly client?: Omit<PgClient.PgClientConfig, "url"> | undefined
  /**
   * how long one statement may run before the server cancels it (30 s by default; `Duration.infinity` for none): a
   * statement stuck behind a lock fails with `StoreError` instead of holding the outbox's writes forever
   */
  readonly statementTimeout?: Duration.DurationInput | undefined
}

/** `url` with `-c statement_timeout=…` added to its `options` parameter (kept as it is if it cannot be parsed). */
const withStatementTimeout = (url: string, timeout: Duration.DurationInput): string => {
  const duration = Duration.decode(timeout)
  if (!Duration.isFinite(duration)) return url
  try {
    const parsed = new URL(url)
    const existing = parsed.searchParams.get("options")
    const setting = `-c statement_timeout=${Math.max(1, Math.round(Duration.toMillis(duration)))}`
    parsed.searchParams.set("options", existing === null ? setting : `${existing} ${setting}`)
    return parsed.toString()
  } catch {
    return url
  }
}

/**
 * The store on a pool it builds for `url` (`postgres://user@host:5432/db`; the schema through the URL's
 * `search_path`, e.g. `?options=-c%20search_path%3Doutbox`), migrated. A connection that drops is replaced by the
 * pool on the next statement; the statements it was running fail with `StoreError`.
 */
export const layerUrl = (
  url: string,
  options: UrlOptions = {}
): Layer.Layer<OutboxRepo | PgClient.PgClient | SqlClient.SqlClient, StoreError> =>
  layerWith(options).pipe(
    Layer.provideMerge(
      Layer.mapError(
        PgClient.layer({
          applicationName: "effect-outbox",
          ...options.client,
          url: Redacted.make(withStatementTimeout(url, options.statementTimeout ?? DEFAULT_STATEMENT_TIMEOUT))
        }),
        clientError
      )
    )
  )

/** The payload of a write's notification; anything else on the channel (probes) wakes no worker. */
const WAKE = "w"

/**
 * One element each time another transaction (any process) made a row claimable: an enqueue, or a row that left
 * `in_flight` (its conversation's next row may be due). Notifications sent while nobody listens are lost and
 * several may arrive as one, so a worker still claims on its interval; this only makes it claim sooner.
 *
 * `PgClient.listen` holds one dedicated connection and stays silent, without failing, when that connection drops. So
 * the stream probes it: every `probeEveryMs` it notifies itself on the channel (through the pool) and fails with
 * `StoreError` when its previous probe did not come back, which ends the listening connection; listened to again
 * (the outbox does, with a backoff), a new one is opened. A lost connection is noticed within two probe periods.
 */
export const notifications = (
  channel: string = DEFAULT_CHANNEL,
  options: { readonly probeEveryMs?: number | undefined } = {}
): Stream.Stream<void, StoreError, PgClient.PgClient> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const client = yield* PgClient.PgClient
    const probeEvery = Duration.millis(options.probeEveryMs ?? DEFAULT_HEARTBEAT_STALE_MS / 3)
    const probe = `probe:${crypto.randomUUID()}`
    let returned = true
    const watchdog = Effect.gen(function*() {
      yield* Effect.sleep(probeEvery) // the LISTEN is issued when the stream starts: give it a period
      for (;;) {
        returned = false
        // (not `client.notify`: it sends `NOTIFY channel, $1`, which PostgreSQL refuses as a syntax error)
        yield* client`SELECT pg_notify(${channel}, ${probe})`
        yield* Effect.sleep(probeEvery)
        if (!returned) {
          return yield* Effect.fail(
            new StoreError({
              operation: "listen",
              message: "the listening connection is lost (a probe did not return)"
            })
          )
        }
      }
    })
    const wakes = client.listen(channel).pipe(
      Stream.filter((payload) => {
        if (payload === probe) returned = true
        return payload === WAKE
      }),
      Stream.as(undefined)
    )
    return Stream.merge(wakes, Stream.drain(Stream.fromEffect(watchdog)))
  })).pipe(
    Stream.mapError((e) =>
      e._tag === "StoreError" ? e : new StoreError({ operation: "listen", message: describe(e), cause: e })
    )
  )
