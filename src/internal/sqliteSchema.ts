/**
 * The SQLite store's schema: the migrations record (owned by the library, applied in order) and `migrate`, which
 * runs them under SQLite's write lock. Public through `SqliteOutboxRepo`. Also the one mapping from a driver
 * `SqlError` to the `StoreError` the store's callers see.
 */
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import { StoreError } from "../DeliveryError.js"
import { withWriteLock } from "./sqliteLocks.js"

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
  }),
  "0005_listing_order": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // The admin listing, newest first: without these a page of the board sorted every row (2.9 s for the delivered
    // rows of a 1,000,000-row file). The first serves unfiltered pages; its key never changes after the insert, so a
    // claim or an ack does not touch it. The second serves pages of one finished state; like the other finished-rows
    // indexes it gets one entry when a row finishes and none while it is pending
    yield* sql`CREATE INDEX outbox_entries_enqueued ON outbox_entries (enqueued_at, id)`
    yield* sql`CREATE INDEX outbox_entries_finished_order ON outbox_entries (state, enqueued_at, id) WHERE pending IS NULL`
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
      new StoreError({
        operation: "migrate",
        message: `the schema is at migration ${applied?.id ?? 0}, not ${LATEST_MIGRATION}`
      })
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

/** A driver failure as the `StoreError` of `operation`, with the driver's reason in its message. */
export const storeError = (operation: string) => (e: SqlError) =>
  new StoreError({ operation, message: describe(e), cause: e })
