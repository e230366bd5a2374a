/**
 * The domain of effect-outbox, defined with Schema: what a gateway asks to deliver (`DeliveryRequest`),
 * what the outbox stores (`OutboxEntry`) and the vocabularies of states, kinds and terminal reasons.
 */
import * as Arr from "effect/Array"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import { isBlank } from "./Chunking.js"
import { InvalidRequest } from "./DeliveryError.js"
import { EntryId } from "./EntryId.js"
import { commonRequest, isNonEmpty, isWellFormed, MAX_TEXT_BYTES, textFits } from "./internal/commonRequest.js"
import type { JsonObject } from "./internal/jsonValue.js"
import { copyRecord, isRecordObject, toJsonRecord } from "./internal/jsonValue.js"
import { clip, formatError, formatValue } from "./internal/safeFormat.js"

export { EntryId } from "./EntryId.js"
export { MAX_JSON_DEPTH, MAX_JSON_VALUES } from "./internal/jsonValue.js"

/** The kind of reply: `tool`/`block` are progress messages that recovery never replays; `final` is the answer. */
export const DispatchKind = Schema.Literal("tool", "block", "final")
export type DispatchKind = typeof DispatchKind.Type

/** Where a row is in its life; see the state machine in `EntryStateMachine`. */
export const EntryState = Schema.Literal(
  "queued",
  "in_flight",
  "delivered",
  "failed_retryable",
  "failed_terminal",
  "expired"
)
export type EntryState = typeof EntryState.Type

/** All states, in lifecycle order (useful for stats and admin listings). */
export const entryStates: ReadonlyArray<EntryState> = EntryState.literals

/** Why a row ended in `failed_terminal`. */
export const TerminalReason = Schema.Literal(
  "permanent_error",
  "max_attempts",
  "non_final_recovery_skip",
  "unknown_channel",
  "decode_error",
  "cancelled",
  "manual"
)
export type TerminalReason = typeof TerminalReason.Type

export { MAX_TEXT_BYTES } from "./internal/commonRequest.js"

/**
 * A string kept in its own column. Half of a surrogate pair is not well-formed Unicode: SQLite's TEXT (UTF-8)
 * would store U+FFFD in its place, so a replay would go to another recipient or thread than the live send, and a
 * repeated idempotency key would no longer be found. Refused on entry instead.
 */
const StoredString = Schema.String.pipe(
  Schema.filter((s) => isWellFormed(s) || "must be well-formed Unicode (it contains half of a surrogate pair)")
)

const NonEmptyString = StoredString.pipe(
  Schema.filter((s) => isNonEmpty(s) || "must be a non-empty string")
)

const Text = Schema.String.pipe(
  Schema.filter((s) => textFits(s) || `text is larger than ${MAX_TEXT_BYTES} bytes`)
)

const isMediaUrl = (s: string): boolean => {
  if (!URL.canParse(s)) return false
  const protocol = new URL(s).protocol
  return protocol === "http:" || protocol === "https:" || protocol === "file:"
}

/** A media reference: an http(s) or file URL. */
export const MediaUrl = Schema.String.pipe(
  Schema.filter((s) => isMediaUrl(s) || `must be an http(s) or file URL, got ${JSON.stringify(s.slice(0, 80))}`)
)

const decodeJsonRecord = (u: unknown, ast: AST.AST): Either.Either<JsonObject, ParseResult.ParseIssue> =>
  Either.mapLeft(toJsonRecord(u), ({ message, path }) => {
    const issue = new ParseResult.Type(ast, u, message)
    return Arr.isNonEmptyReadonlyArray(path) ? new ParseResult.Pointer(path, u, issue) : issue
  })

/**
 * Free-form data passed through to adapters: exactly what JSON holds (plain objects and arrays, strings, booleans,
 * null, finite numbers; no cycles; at most MAX_JSON_DEPTH levels and MAX_JSON_VALUES values), deep-copied, every own
 * key kept as data (`__proto__` too). Anything else fails with a message naming the path to the value.
 */
export const JsonRecord: Schema.Schema<{ readonly [x: string]: unknown }> = Schema.declare([], {
  decode: () => (u, _, ast) => decodeJsonRecord(u, ast),
  encode: () => (u, _, ast) => decodeJsonRecord(u, ast)
}, { title: "{ readonly [x: string]: unknown }" })

/** A record read back from a stored row: JSON when it was stored, so copied but not walked again. */
const StoredJsonRecord: Schema.Schema<{ readonly [x: string]: unknown }> = Schema.declare([], {
  decode: () => (u, _, ast) =>
    isRecordObject(u) ? ParseResult.succeed(copyRecord(u)) : ParseResult.fail(new ParseResult.Type(ast, u)),
  encode: () => (u, _, ast) =>
    isRecordObject(u) ? ParseResult.succeed(copyRecord(u)) : ParseResult.fail(new ParseResult.Type(ast, u))
}, { title: "{ readonly [x: string]: unknown }" })

const payloadFields = (record: Schema.Schema<{ readonly [x: string]: unknown }>) =>
  Schema.Struct({
    text: Schema.optionalWith(Text, { exact: true }),
    mediaUrls: Schema.optionalWith(Schema.Array(MediaUrl), { exact: true }),
    channelData: Schema.optionalWith(record, { exact: true })
  })
const ReplyPayloadFields = payloadFields(JsonRecord)
type ReplyPayloadFields = typeof ReplyPayloadFields.Type

/** The rule rows were stored under: some text (blank counted), media or data. */
const hasContent = (p: ReplyPayloadFields): true | string =>
  (p.text !== undefined && p.text.length > 0) ||
  (p.mediaUrls !== undefined && p.mediaUrls.length > 0) ||
  p.channelData !== undefined ||
  "a payload needs text, mediaUrls or channelData"

/** Whether a payload has something to send: the sender skips blank text (`Chunking.isBlank`), so it does not count. */
const sendable = (p: ReplyPayloadFields): true | string | Schema.FilterIssue => {
  if ((p.mediaUrls !== undefined && p.mediaUrls.length > 0) || p.channelData !== undefined) return true
  if (p.text === undefined) return "a payload needs text, mediaUrls or channelData"
  return !isBlank(p.text) ||
    { path: ["text"], message: "must contain a non-whitespace character (the payload has no mediaUrls or channelData)" }
}

/** One reply: text, media, channel-specific rich data, or a mix. It must have something to send. */
export const ReplyPayload = ReplyPayloadFields.pipe(Schema.filter(sendable))
export type ReplyPayload = typeof ReplyPayload.Type

/**
 * A payload read back from a stored row: its data was JSON when stored, so it is not walked again, and rows stored
 * before the blank-text rule still read.
 */
const StoredReplyPayload = payloadFields(StoredJsonRecord).pipe(Schema.filter(hasContent))

const Payloads = Schema.Array(ReplyPayload).pipe(
  Schema.filter((ps) => ps.length > 0 || "must contain at least one payload")
)

const requestFields = {
  channel: NonEmptyString,
  to: NonEmptyString,
  accountId: Schema.optionalWith(StoredString, { exact: true }),
  threadId: Schema.optionalWith(StoredString, { exact: true }),
  replyToId: Schema.optionalWith(StoredString, { exact: true }),
  payloads: Payloads,
  kind: Schema.optionalWith(
    DispatchKind.annotations({
      message: (issue) => ({
        message: `must be "tool", "block" or "final", got ${formatValue(issue.actual)}`,
        override: true
      })
    }),
    { default: () => "final" as const, exact: true }
  ),
  bestEffort: Schema.optionalWith(Schema.Boolean, { default: () => false, exact: true }),
  idempotencyKey: Schema.optionalWith(NonEmptyString, { exact: true }),
  silent: Schema.optionalWith(Schema.Boolean, { exact: true }),
  metadata: Schema.optionalWith(JsonRecord, { exact: true })
}

/** What a gateway asks the outbox to deliver. `threadId` is the effective reply thread, resolved before enqueue. */
export class DeliveryRequest extends Schema.Class<DeliveryRequest>("effect-outbox/DeliveryRequest")(requestFields) {}

/** The plain-object form a caller passes in (defaults not yet applied). */
export type DeliveryRequestInput = typeof DeliveryRequest.Encoded

// the synchronous decoder: the schema has no effectful parts, and the Effect-mode parser costs a third more per request
const decodeRequestUnknown = Schema.decodeUnknownEither(DeliveryRequest, { errors: "all", onExcessProperty: "error" })

/** Formats a parse error as `field.path: problem; …` so the caller sees which field is wrong. Never throws. */
export const formatParseError = (error: ParseResult.ParseError): string =>
  ParseResult.ArrayFormatter.formatIssueSync(withSafeMessages(error.issue))
    .map((issue) => `${issue.path.length === 0 ? "request" : formatPath(issue.path)}: ${issue.message}`)
    .join("; ")

const identifier = /^[A-Za-z_$][\w$]*$/

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.map((k, i) =>
    typeof k === "number"
      ? `[${k}]`
      : typeof k === "string" && identifier.test(k)
      ? (i === 0 ? k : `.${k}`)
      : `[${typeof k === "string" ? JSON.stringify(clip(k, 40)) : String(k)}]`
  ).join("")

/**
 * The issue with Schema's default "Expected …, actual …" messages written by `formatValue`: Schema's own rendering of
 * the actual value runs the caller's code (toString, getters, Proxy traps) and throws on a null-prototype object.
 */
const withSafeMessages = (issue: ParseResult.ParseIssue): ParseResult.ParseIssue => {
  switch (issue._tag) {
    case "Type":
      return issue.message !== undefined
        ? issue
        : new ParseResult.Type(
          issue.ast,
          issue.actual,
          `Expected ${expected(issue.ast)}, actual ${formatValue(issue.actual)}`
        )
    case "Pointer":
      return new ParseResult.Pointer(issue.path, issue.actual, withSafeMessages(issue.issue))
    case "Refinement":
      return new ParseResult.Refinement(issue.ast, issue.actual, issue.kind, withSafeMessages(issue.issue))
    case "Transformation":
      return new ParseResult.Transformation(issue.ast, issue.actual, issue.kind, withSafeMessages(issue.issue))
    case "Composite":
      return new ParseResult.Composite(
        issue.ast,
        issue.actual,
        isIssueList(issue.issues) ? Arr.map(issue.issues, withSafeMessages) : withSafeMessages(issue.issues),
        issue.output
      )
    default:
      // Missing, Unexpected, Forbidden: their messages show no value
      return issue
  }
}

const isIssueList = (
  issues: ParseResult.Composite["issues"]
): issues is Arr.NonEmptyReadonlyArray<ParseResult.ParseIssue> => Array.isArray(issues)

/** What Schema's default message says was expected (its own rule, which it does not export). */
const expected = (ast: AST.AST): string =>
  AST.isRefinement(ast)
    ? AST.getDescriptionAnnotation(ast).pipe(
      Option.orElse(() => AST.getTitleAnnotation(ast)),
      Option.orElse(() => AST.getIdentifierAnnotation(ast)),
      Option.getOrElse(() => `{ ${ast.from} | filter }`)
    )
    : String(ast)

/** The Schema decode of a request, as an `Either` (what `decodeRequest` runs). */
export const decodeRequestWithSchema = (input: unknown): Either.Either<DeliveryRequest, InvalidRequest> => {
  try {
    return Either.mapLeft(
      decodeRequestUnknown(input),
      (error) => new InvalidRequest({ message: formatParseError(error) })
    )
  } catch (error) {
    // a getter or Proxy trap on the request or a payload threw while Schema read it
    return Either.left(new InvalidRequest({ message: `request: could not be read: ${formatError(error)}` }))
  }
}

/**
 * Decodes untrusted input into a `DeliveryRequest`, failing with an `InvalidRequest` that names the field. The answer
 * is the Schema's (`decodeRequestWithSchema`); the common request is checked by hand for it (`internal/commonRequest`).
 */
export const decodeRequest = (input: unknown): Effect.Effect<DeliveryRequest, InvalidRequest> => {
  const common = commonRequest(input)
  return common === undefined ? decodeRequestWithSchema(input) : Either.right(new DeliveryRequest(common, true))
}

/** The conversation a request belongs to; rows with the same key are delivered in enqueue order. */
export const orderingKey = (
  req: { readonly channel: string; readonly accountId?: string; readonly to: string; readonly threadId?: string }
): string => JSON.stringify([req.channel, req.accountId ?? null, req.to, req.threadId ?? null])

/** A stored row: the request plus its delivery state. All times are epoch millis from Effect's `Clock`. */
export const OutboxEntry = Schema.Struct({
  id: EntryId,
  channel: Schema.String,
  to: Schema.String,
  accountId: Schema.optionalWith(Schema.String, { exact: true }),
  threadId: Schema.optionalWith(Schema.String, { exact: true }),
  replyToId: Schema.optionalWith(Schema.String, { exact: true }),
  payloads: Schema.Array(StoredReplyPayload),
  kind: DispatchKind,
  bestEffort: Schema.Boolean,
  idempotencyKey: Schema.optionalWith(Schema.String, { exact: true }),
  silent: Schema.optionalWith(Schema.Boolean, { exact: true }),
  metadata: Schema.optionalWith(StoredJsonRecord, { exact: true }),
  state: EntryState,
  attemptCount: Schema.Number,
  /** the resume point: parts before this index were all delivered */
  partsDelivered: Schema.Number,
  /** best effort only: parts at or past `partsDelivered` that were delivered anyway, so a retry skips them */
  deliveredParts: Schema.optionalWith(Schema.Array(Schema.Number), { exact: true }),
  enqueuedAt: Schema.Number,
  nextAttemptAt: Schema.NullOr(Schema.Number),
  lastAttemptAt: Schema.NullOr(Schema.Number),
  deliveredAt: Schema.NullOr(Schema.Number),
  /** when the row stops being sendable (enqueuedAt + maxAge at enqueue time); null = never */
  expiresAt: Schema.NullOr(Schema.Number),
  lastError: Schema.NullOr(Schema.String),
  terminalReason: Schema.NullOr(TerminalReason),
  leaseOwner: Schema.NullOr(Schema.String),
  leaseExpiresAt: Schema.NullOr(Schema.Number),
  updatedAt: Schema.Number
})
export interface OutboxEntry extends Schema.Schema.Type<typeof OutboxEntry> {}

/** Counts by state and by channel, and the age of the oldest row still waiting to be delivered. */
export interface OutboxStats {
  readonly total: number
  readonly byState: Readonly<Record<EntryState, number>>
  readonly byChannel: Readonly<Record<string, Readonly<Record<EntryState, number>>>>
  readonly oldestPendingAgeMs: number | null
}

/** States from which a row may still be sent. */
export const pendingStates: ReadonlyArray<EntryState> = ["queued", "in_flight", "failed_retryable"]

/** States that retention may prune. */
export const finishedStates: ReadonlyArray<EntryState> = ["delivered", "failed_terminal", "expired"]
