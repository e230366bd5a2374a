/**
 * The admin board's JSON API, as an `@effect/platform` `HttpApi`: the contract the page, scripts and the OpenAPI
 * document (`/api/openapi.json`) share. Parameters are Schema-validated; a bad one is a 400 `HttpApiDecodeError`
 * whose `issues` name the field. Times are epoch millis. Handlers live in `AdminHandlers`.
 */
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Schema from "effect/Schema"
import { DispatchKind, EntryState, TerminalReason } from "../Delivery.js"

/** The largest page `/api/entries` returns. */
export const MAX_PAGE = 500

/** The page size when `limit` is not given. */
export const DEFAULT_PAGE = 50

const Text = (max: number) =>
  Schema.String.pipe(Schema.minLength(1), Schema.maxLength(max)).annotations({
    message: () => ({ message: `must be a non-empty string of at most ${max} characters`, override: true })
  })

/**
 * A listing cursor: `<enqueuedAt>` (rows enqueued before that millisecond) or `<enqueuedAt>_<id>` (the last row of the
 * previous page, as `nextCursor` gives it).
 */
export const Cursor = Schema.String.pipe(
  Schema.pattern(/^\d{1,16}(_[\x21-\x7e]{1,200})?$/),
  Schema.annotations({
    description: "a cursor from nextCursor, or epoch millis",
    message: () => ({ message: "must be a cursor from nextCursor (<enqueuedAt>_<id>) or epoch millis", override: true })
  })
)

const Limit = Schema.NumberFromString.pipe(
  Schema.int(),
  Schema.between(1, MAX_PAGE),
  Schema.annotations({
    message: () => ({ message: `must be a whole number from 1 to ${MAX_PAGE}`, override: true })
  })
)

const StateParam = EntryState.annotations({
  message: () => ({ message: `must be one of ${EntryState.literals.join(", ")}`, override: true })
})

/** The query of `/api/entries`. */
export const ListParams = Schema.Struct({
  state: Schema.optionalWith(StateParam, { exact: true }),
  channel: Schema.optionalWith(Text(200), { exact: true }),
  /** the recipient (a chat id): every row sent to it, all threads */
  conversation: Schema.optionalWith(Text(500), { exact: true }),
  before: Schema.optionalWith(Cursor, { exact: true }),
  limit: Schema.optionalWith(Limit, { exact: true })
})

/** A row as the table shows it: no payloads, the first text clipped, the last error clipped. */
export const EntrySummary = Schema.Struct({
  id: Schema.String,
  state: EntryState,
  channel: Schema.String,
  to: Schema.String,
  threadId: Schema.NullOr(Schema.String),
  kind: DispatchKind,
  attemptCount: Schema.Number,
  partsDelivered: Schema.Number,
  payloadCount: Schema.Number,
  preview: Schema.String,
  enqueuedAt: Schema.Number,
  updatedAt: Schema.Number,
  nextAttemptAt: Schema.NullOr(Schema.Number),
  lastError: Schema.NullOr(Schema.String),
  terminalReason: Schema.NullOr(TerminalReason)
})
export type EntrySummary = typeof EntrySummary.Type

/** One page of the listing, newest first; `nextCursor` is null on the last page. */
export const EntryPage = Schema.Struct({
  entries: Schema.Array(EntrySummary),
  nextCursor: Schema.NullOr(Schema.String)
})

/** One adapter call of the entry's send plan, with whether it was delivered. */
export const PlanPart = Schema.Struct({
  index: Schema.Number,
  payloadIndex: Schema.Number,
  kind: Schema.Literal("text", "media", "payload", "unsupported"),
  text: Schema.NullOr(Schema.String),
  mediaUrl: Schema.NullOr(Schema.String),
  delivered: Schema.Boolean
})

/** A dated thing that happened to the entry: from its columns, or from this process's event stream. */
export const TimelineItem = Schema.Struct({
  at: Schema.Number,
  event: Schema.String,
  detail: Schema.NullOr(Schema.String),
  source: Schema.Literal("row", "events")
})

const JsonObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })

/** A stored entry as the API shows it: every field of `Delivery.OutboxEntry`. */
export const Entry = Schema.Struct({
  id: Schema.String,
  channel: Schema.String,
  to: Schema.String,
  accountId: Schema.optional(Schema.String),
  threadId: Schema.optional(Schema.String),
  replyToId: Schema.optional(Schema.String),
  payloads: Schema.Array(Schema.Struct({
    text: Schema.optional(Schema.String),
    mediaUrls: Schema.optional(Schema.Array(Schema.String)),
    channelData: Schema.optional(JsonObject)
  })),
  kind: DispatchKind,
  bestEffort: Schema.Boolean,
  idempotencyKey: Schema.optional(Schema.String),
  silent: Schema.optional(Schema.Boolean),
  metadata: Schema.optional(JsonObject),
  state: EntryState,
  attemptCount: Schema.Number,
  partsDelivered: Schema.Number,
  deliveredParts: Schema.optional(Schema.Array(Schema.Number)),
  enqueuedAt: Schema.Number,
  nextAttemptAt: Schema.NullOr(Schema.Number),
  lastAttemptAt: Schema.NullOr(Schema.Number),
  deliveredAt: Schema.NullOr(Schema.Number),
  expiresAt: Schema.NullOr(Schema.Number),
  lastError: Schema.NullOr(Schema.String),
  terminalReason: Schema.NullOr(TerminalReason),
  leaseOwner: Schema.NullOr(Schema.String),
  leaseExpiresAt: Schema.NullOr(Schema.Number),
  updatedAt: Schema.Number
})

/** Everything about one entry. `planExact` is false when the channel's adapter is not registered in this process. */
export const EntryDetail = Schema.Struct({
  entry: Entry,
  parts: Schema.Array(PlanPart),
  planExact: Schema.Boolean,
  timeline: Schema.Array(TimelineItem),
  retry: Schema.Struct({ allowed: Schema.Boolean, reason: Schema.NullOr(Schema.String) })
})

const Counts = Schema.Record({ key: EntryState, value: Schema.Number })

/** Counts by state and channel. `asOf`: when they were counted (the board reuses a count for `statsMaxAge`). */
export const StatsResponse = Schema.Struct({
  asOf: Schema.Number,
  total: Schema.Number,
  pending: Schema.Number,
  byState: Counts,
  byChannel: Schema.Record({ key: Schema.String, value: Counts }),
  oldestPendingAgeMs: Schema.NullOr(Schema.Number)
})

/** Rows per minute over the last hour, by the state they reached (see `OutboxRepoShape.activity`). */
export const ActivityResponse = Schema.Struct({
  asOf: Schema.Number,
  since: Schema.Number,
  bucketMs: Schema.Number,
  source: Schema.Literal("database"),
  buckets: Schema.Array(Schema.Struct({
    start: Schema.Number,
    delivered: Schema.Number,
    retrying: Schema.Number,
    failed: Schema.Number,
    expired: Schema.Number
  }))
})

/** What the page needs to know about the server before it asks for data. */
export const InfoResponse = Schema.Struct({
  readOnly: Schema.Boolean,
  live: Schema.Boolean,
  authRequired: Schema.Boolean,
  statsMaxAgeMs: Schema.Number
})

/** What `POST /api/retry` requeues: rows of one failed state, optionally one channel or recipient. */
export const RetryFilter = Schema.Struct({
  state: Schema.Literal("failed_terminal", "expired").annotations({
    message: () => ({ message: "must be failed_terminal or expired", override: true })
  }),
  channel: Schema.optionalWith(Text(200), { exact: true }),
  conversation: Schema.optionalWith(Text(500), { exact: true }),
  /** count what would be requeued, change nothing */
  dryRun: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/** What a filtered retry did (or, with `dryRun`, would do). */
export const RetryResult = Schema.Struct({
  dryRun: Schema.Boolean,
  requeued: Schema.Array(Schema.String),
  skipped: Schema.Array(Schema.String)
})

/** No such entry. */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  id: Schema.String,
  message: Schema.String
}, HttpApiSchema.annotations({ status: 404 })) {}

/** The entry is not in a state the action applies to (e.g. a retry of a delivered row). */
export class Conflict extends Schema.TaggedError<Conflict>()("Conflict", {
  message: Schema.String
}, HttpApiSchema.annotations({ status: 409 })) {}

/** The action is refused: a read-only board. */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String
}, HttpApiSchema.annotations({ status: 403 })) {}

/** The store failed; nothing was changed by this request. */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()("StoreUnavailable", {
  operation: Schema.String,
  message: Schema.String
}, HttpApiSchema.annotations({ status: 503 })) {}

const idParam = HttpApiSchema.param("id", Schema.String.pipe(Schema.minLength(1), Schema.maxLength(200)))

/** The endpoints, under `/api`. */
export class OutboxApiGroup extends HttpApiGroup.make("outbox")
  .add(HttpApiEndpoint.get("info", "/info").addSuccess(InfoResponse))
  .add(HttpApiEndpoint.get("stats", "/stats").addSuccess(StatsResponse).addError(StoreUnavailable))
  .add(HttpApiEndpoint.get("activity", "/activity").addSuccess(ActivityResponse).addError(StoreUnavailable))
  .add(
    HttpApiEndpoint.get("entries", "/entries").setUrlParams(ListParams).addSuccess(EntryPage).addError(StoreUnavailable)
  )
  .add(
    HttpApiEndpoint.get("entry")`/entries/${idParam}`
      .addSuccess(EntryDetail)
      .addError(NotFound)
      .addError(StoreUnavailable)
  )
  .add(
    HttpApiEndpoint.post("retryEntry")`/entries/${idParam}/retry`
      .addSuccess(Schema.Struct({ requeued: Schema.String, was: EntryState }))
      .addError(NotFound)
      .addError(Conflict)
      .addError(Forbidden)
      .addError(StoreUnavailable)
  )
  .add(
    HttpApiEndpoint.post("retry", "/retry")
      .setPayload(RetryFilter)
      .addSuccess(RetryResult)
      .addError(Forbidden)
      .addError(StoreUnavailable)
  )
  .add(
    HttpApiEndpoint.post("prune", "/prune")
      .addSuccess(Schema.Struct({ pruned: Schema.Number }))
      .addError(Forbidden)
      .addError(StoreUnavailable)
  )
  .prefix("/api")
{}

/** The admin API. */
export class AdminApi extends HttpApi.make("effect-outbox-admin").add(OutboxApiGroup).annotateContext(
  OpenApi.annotations({
    title: "effect-outbox admin",
    description: "Inspect and repair an outbox: counts, entries, retries, pruning. Mutations need the admin token " +
      "(when one is set) and a same-origin request; a read-only board refuses them with 403."
  })
) {}
