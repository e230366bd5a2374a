/** The SQLite store's reads: one row, the admin listing, counts, activity, the backlog size, `outbox_meta`. */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { OutboxEntry } from "../Delivery.js"
import { StoreError } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import { activityProblem, foldActivity } from "./adminSupport.js"
import { DEFAULT_LIST_LIMIT, foldStats } from "./repoSupport.js"
import type { Row } from "./rowCodec.js"
import type { SqliteContext } from "./sqliteContext.js"
import { run } from "./sqliteContext.js"
import { decodeOrFail } from "./sqliteRows.js"

/** `OutboxRepoShape.get`: one row by id. */
export const get = ({ sql }: SqliteContext): OutboxRepoShape["get"] => (id) =>
  sql<Row>`SELECT * FROM outbox_entries WHERE id = ${id}`.pipe(
    Effect.flatMap((rows) =>
      rows[0] === undefined ? Effect.succeedNone : Effect.map(decodeOrFail("get")(rows[0]), Option.some)
    ),
    run("get")
  )

/** `OutboxRepoShape.list`: the admin listing, newest first. */
export const list = ({ sql }: SqliteContext): OutboxRepoShape["list"] => (filter) =>
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
  )

/** `OutboxRepoShape.stats`: counts by channel and state, and the oldest pending row's age. */
export const stats = ({ sql }: SqliteContext): OutboxRepoShape["stats"] => (now) =>
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
  )

/** `OutboxRepoShape.activity`: finished and retrying rows by the time bucket of their last change. */
export const activity = ({ sql }: SqliteContext): OutboxRepoShape["activity"] => (options) =>
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
  }).pipe(run("activity"))

/** `OutboxRepoShape.pendingCount`: how many rows may still be sent. */
export const pendingCount = ({ sql }: SqliteContext): OutboxRepoShape["pendingCount"] =>
  sql<{ n: number }>`SELECT count(*) AS n FROM outbox_entries WHERE next_attempt_at IS NOT NULL`.pipe(
    Effect.map((rows) => Number(rows[0]?.n ?? 0)),
    run("pendingCount")
  )

/** `OutboxRepoShape.getMeta`: a value of `outbox_meta`. */
export const getMeta = ({ sql }: SqliteContext): OutboxRepoShape["getMeta"] => (key) =>
  sql<{ value: string }>`SELECT value FROM outbox_meta WHERE key = ${key}`.pipe(
    Effect.map((rows) => Option.fromNullable(rows[0]?.value)),
    run("getMeta")
  )
