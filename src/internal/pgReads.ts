/** The PostgreSQL store's reads: one row, the admin listing, counts, activity, the backlog size, `outbox_meta`. */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { OutboxEntry } from "../Delivery.js"
import { StoreError } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import { activityProblem, foldActivity } from "./adminSupport.js"
import type { PgContext } from "./pgContext.js"
import { run } from "./pgContext.js"
import { decodeOrFail, SELECT } from "./pgRows.js"
import { DEFAULT_LIST_LIMIT, foldStats } from "./repoSupport.js"

/** `OutboxRepoShape.get`: one row by id. */
export const get = ({ sql }: PgContext): OutboxRepoShape["get"] => (id) =>
  sql`SELECT ${sql.literal(SELECT)} FROM outbox_entries e WHERE e.id = ${id}`.values.pipe(
    Effect.flatMap((rows) =>
      rows[0] === undefined ? Effect.succeedNone : Effect.map(decodeOrFail("get")(rows[0]), Option.some)
    ),
    run("get")
  )

/** `OutboxRepoShape.list`: the admin listing, newest first. */
export const list = ({ sql }: PgContext): OutboxRepoShape["list"] => (filter) =>
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
  )

/** `OutboxRepoShape.stats`: counts by channel and state, and the oldest pending row's age. */
export const stats = ({ sql }: PgContext): OutboxRepoShape["stats"] => (now) =>
  Effect.all([
    sql<{ channel: string; state: OutboxEntry["state"]; count: number }>`
          SELECT channel, state, count(*)::int AS count FROM outbox_entries GROUP BY channel, state`,
    sql<{ oldest: number | null }>`SELECT min(enqueued_at)::float8 AS oldest FROM outbox_entries WHERE pending = 1`
  ]).pipe(
    Effect.map(([counts, [oldest]]) => foldStats(counts, oldest?.oldest ?? null, now)),
    run("stats")
  )

/** `OutboxRepoShape.activity`: finished and retrying rows by the time bucket of their last change. */
export const activity = ({ sql }: PgContext): OutboxRepoShape["activity"] => (options) =>
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
  }).pipe(run("activity"))

/** `OutboxRepoShape.pendingCount`: how many rows may still be sent. */
export const pendingCount = ({ sql }: PgContext): OutboxRepoShape["pendingCount"] =>
  sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox_entries WHERE pending = 1`.pipe(
    Effect.map((rows) => rows[0]?.n ?? 0),
    run("pendingCount")
  )

/** `OutboxRepoShape.getMeta`: a value of `outbox_meta`. */
export const getMeta = ({ sql }: PgContext): OutboxRepoShape["getMeta"] => (key) =>
  sql<{ value: string }>`SELECT value FROM outbox_meta WHERE key = ${key}`.pipe(
    Effect.map((rows) => Option.fromNullable(rows[0]?.value)),
    run("getMeta")
  )
