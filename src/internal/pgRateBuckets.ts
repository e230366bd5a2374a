/**
 * Rate limit buckets in PostgreSQL (table `outbox_rate_buckets`), shared by every process of a gateway, so an
 * account's limit holds for the gateway as a whole. A bucket is one row; a reservation is one guarded
 * `UPDATE … RETURNING` on it (the GCRA step of `rateBuckets.memory`, in SQL), so concurrent processes queue on the
 * row's lock for the length of one statement and get distinct, evenly spaced slots. Chosen over dividing each limit
 * among the live nodes (heartbeats): that needs no statement per send, but a node with the whole backlog would send
 * at 1/N of the rate while the others idle, and a 429 paused one node only. The cost is one round trip per send of a
 * rate-limited channel (measured in BENCHMARKS.md), small next to the channel's own call at the rates chat APIs allow.
 *
 * A pause (429) is written to the row, so every later reservation starts after it, and announced with `pg_notify` on
 * `<channel>_rate`, so the other processes wake their sleeping sends to reserve again after it. Times are the
 * processes' own clocks (Effect `Clock`): the hosts' clocks must agree (NTP); a skew shifts that host's slots by it.
 */
import type * as PgClient from "@effect/sql-pg/PgClient"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { StoreError } from "../DeliveryError.js"
import type { BucketStore, Reservation } from "../RateLimits.js"

/** The table, created by `PgOutboxRepo`'s migration 0003. */
export const createTable = (sql: SqlClient.SqlClient) =>
  sql`CREATE TABLE outbox_rate_buckets (
    key TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL,
    paused_until DOUBLE PRECISION NOT NULL,
    planned DOUBLE PRECISION NOT NULL,
    last_slot DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_before DOUBLE PRECISION NOT NULL DEFAULT 0
  )`

const describe = (e: SqlError): string => {
  const cause = e.cause instanceof Error ? e.cause.message : e.cause === undefined ? "" : String(e.cause)
  return cause ? `${e.message}: ${cause}` : e.message
}

const PauseNotice = Schema.parseJson(Schema.Struct({ key: Schema.String, until: Schema.Number }))
const decodeNotice = Schema.decodeUnknownOption(PauseNotice)
const encodeNotice = Schema.encodeSync(PauseNotice)

interface Row {
  readonly slot: number
  readonly before: number
  readonly after: number
  readonly planned: number
}

/** The buckets over `sql`; with `pg`, pauses of other processes arrive through LISTEN on `<channel>_rate`. */
export const make = (
  sql: SqlClient.SqlClient,
  options: { readonly channel: string; readonly pg?: PgClient.PgClient | undefined }
): BucketStore => {
  const notifyChannel = `${options.channel}_rate`
  const run = (operation: string) => <A>(effect: Effect.Effect<A, SqlError>) =>
    effect.pipe(
      Effect.mapError((e) => new StoreError({ operation, message: describe(e), cause: e })),
      Effect.withSpan(`RateBuckets.${operation}`, { captureStackTrace: false })
    )
  // buckets known to have their row: a reservation on a new one inserts it first
  const known = new Set<string>()
  const ensure = (key: string) =>
    known.has(key) ? Effect.void : sql`INSERT INTO outbox_rate_buckets (key, tat, paused_until, planned)
      VALUES (${key}, '-infinity', '-infinity', 0) ON CONFLICT (key) DO NOTHING`.pipe(
      Effect.tap(() => Effect.sync(() => void known.add(key)))
    )

  /** The GCRA step as one statement; every SET expression reads the row as it was before it (the old `tat`). */
  const step = (key: string, iv: number, tol: number, at: number, latest: number) =>
    sql<Row>`UPDATE outbox_rate_buckets SET
        last_slot = greatest(${at}::float8, paused_until, tat - ${tol}::float8),
        last_before = tat,
        tat = CASE WHEN greatest(${at}::float8, paused_until, tat - ${tol}::float8) <= ${latest}::float8
          THEN greatest(tat, ${at}::float8, paused_until) + ${iv}::float8 ELSE tat END,
        planned = CASE WHEN greatest(${at}::float8, paused_until, tat - ${tol}::float8) > ${latest}::float8
          THEN greatest(${at}::float8, paused_until, tat - ${tol}::float8, planned) + ${iv}::float8 ELSE planned END
      WHERE key = ${key}
      RETURNING last_slot AS slot, last_before AS before, tat AS after, planned`

  const reserve: BucketStore["reserve"] = (key, spacing, at, latest) =>
    Effect.gen(function*() {
      const iv = spacing.intervalMs ?? 0
      yield* ensure(key)
      const [row] = yield* step(key, iv, spacing.intervalMs === undefined ? 0 : spacing.toleranceMs, at, latest)
      if (row === undefined) return yield* Effect.die(new Error(`rate bucket ${key} has no row`))
      return row.slot <= latest
        ? { _tag: "Reserved", slot: row.slot, before: row.before, after: row.after } satisfies Reservation
        : { _tag: "Full", until: row.planned - iv } satisfies Reservation
    }).pipe(run("reserve"))

  const pause: BucketStore["pause"] = (key, until, now) =>
    Effect.gen(function*() {
      yield* ensure(key)
      // the pause and its announcement in one statement: the NOTIFY goes out when it commits, only if it extended it
      const rows = yield* sql`WITH paused AS (
          UPDATE outbox_rate_buckets SET paused_until = ${until}::float8, tat = ${until}::float8,
            planned = CASE WHEN planned > ${now}::float8
              THEN planned + ${until}::float8 - greatest(${now}::float8, paused_until) ELSE ${until}::float8 END
          WHERE key = ${key} AND paused_until < ${until}::float8
          RETURNING key
        )
        SELECT pg_notify(${notifyChannel}, ${encodeNotice({ key, until })}) FROM paused`
      return rows.length > 0
    }).pipe(run("pause"))

  const cancel: BucketStore["cancel"] = (key, reservation) =>
    reservation._tag === "Full" ? Effect.void : sql`UPDATE outbox_rate_buckets SET tat = ${reservation.before}::float8
      WHERE key = ${key} AND tat = ${reservation.after}::float8`.pipe(
      run("cancel"),
      Effect.catchAll((error) => Effect.logWarning(`could not give back a rate limit slot: ${error.message}`)),
      Effect.asVoid
    )

  const pg = options.pg
  return {
    kind: "postgresql",
    reserve,
    pause,
    cancel,
    pauses: pg === undefined ? undefined : pg.listen(notifyChannel).pipe(
      Stream.mapError((e) => new StoreError({ operation: "listen", message: describe(e), cause: e })),
      Stream.filterMap(decodeNotice)
    )
  }
}
