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

export { EntryId } from "./EntryId.js"

/** The kind of reply: `tool`/`block` are progress messages that recovery never replays; `final` is the answer. */
export const DispatchKind = Schema.Literal("tool", "block", "final")
export type DispatchKind = typeof DispatchKind.Type

/** Where a row is in its life; see the state machine in `EntryStateMachine`. */
export const EntryState = Schema.Literal("queued", "in_flight", "delivered", "failed_retryable", "failed_terminal", "expired")
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

/** The largest text a single payload may carry (UTF-8 bytes). */
export const MAX_TEXT_BYTES = 1024 * 1024

const utf8 = new TextEncoder()

/**
 * A string kept in its own column. Half of a surrogate pair is not well-formed Unicode: SQLite's TEXT (UTF-8)
 * would store U+FFFD in its place, so a replay would go to another recipient or thread than the live send, and a
 * repeated idempotency key would no longer be found. Refused on entry instead.
 */
const StoredString = Schema.String.pipe(
  Schema.filter((s) => !/\p{Cs}/u.test(s) || "must be well-formed Unicode (it contains half of a surrogate pair)")
)

const NonEmptyString = StoredString.pipe(
  Schema.filter((s) => s.trim().length > 0 || "must be a non-empty string")
)

const Text = Schema.String.pipe(
  Schema.filter((s) =>
    // cheap length test first: a string of n UTF-16 units is at most 3n UTF-8 bytes
    s.length * 3 <= MAX_TEXT_BYTES || utf8.encode(s).byteLength <= MAX_TEXT_BYTES ||
    `text is larger than ${MAX_TEXT_BYTES} bytes`
  )
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

const isRecordObject = (u: unknown): u is { readonly [x: string]: unknown } =>
  typeof u === "object" && u !== null && !Array.isArray(u)

type JsonObject = { [x: string]: unknown }

/** A plain object's prototype: none, or `Object.prototype` of this realm or another (whose own prototype is null). */
const isPlainPrototype = (proto: object | null): boolean =>
  proto === null || proto === Object.prototype || Object.getPrototypeOf(proto) === null

/** The name of the class an object belongs to, read from data properties only (a getter could throw or lie). */
const className = (proto: object | null): string => {
  const ctor: unknown = proto === null ? undefined : Object.getOwnPropertyDescriptor(proto, "constructor")?.value
  const name: unknown = typeof ctor === "function" ? Object.getOwnPropertyDescriptor(ctor, "name")?.value : undefined
  return typeof name === "string" && name !== "" ? name : "an unnamed class"
}

/**
 * The deepest nesting of objects and arrays in `channelData` or `metadata`, the record itself being level 1. Chat
 * data nests a few levels; the bound keeps validation, storage and every later JSON.stringify off the stack's edge.
 */
export const MAX_JSON_DEPTH = 64

/**
 * The most values one `channelData` or `metadata` record may hold, a shared object counted at each place it appears
 * (as JSON writes it out): shared references would otherwise make a small object expand without bound.
 */
export const MAX_JSON_VALUES = 100_000

/** Where a record stops being JSON, and why. */
interface JsonProblem {
  readonly path: ReadonlyArray<string | number>
  readonly message: string
}

/** The walk over one record: the path to the current value, the objects enclosing it, the values counted so far. */
interface JsonWalk {
  readonly path: Array<string | number>
  readonly ancestors: Array<object>
  values: number
  problem: JsonProblem | undefined
}

const INVALID: unique symbol = Symbol("effect-outbox/InvalidJson")

const fail = (walk: JsonWalk, message: string, path: ReadonlyArray<string | number> = walk.path.slice()): typeof INVALID => {
  walk.problem = { path, message }
  return INVALID
}

/** A copy of `u` made of JSON values only, or INVALID with `walk.problem` set. Recursion stops at MAX_JSON_DEPTH. */
const copyJson = (walk: JsonWalk, u: unknown, depth: number): unknown => {
  if (++walk.values > MAX_JSON_VALUES) return fail(walk, `holds more than ${MAX_JSON_VALUES} values`, [])
  switch (typeof u) {
    case "string":
    case "boolean":
      return u
    case "number":
      // JSON has no -0: the stored row would give 0 back, so the live send gets 0 too
      return Number.isFinite(u) ? (u === 0 ? 0 : u) : fail(walk, `must be a finite number, got ${u}`)
    case "bigint":
      return fail(walk, "must be a finite number, got a BigInt")
    case "object":
      return u === null ? null : copyContainer(walk, u, depth + 1)
    default:
      return fail(walk, `must be JSON data, got ${u === undefined ? "undefined" : `a ${typeof u}`}`)
  }
}

const copyContainer = (walk: JsonWalk, u: object, depth: number): unknown => {
  if (walk.ancestors.includes(u)) return fail(walk, "contains itself (a cycle), which JSON cannot hold")
  if (depth > MAX_JSON_DEPTH) return fail(walk, `nests deeper than ${MAX_JSON_DEPTH} levels`)
  const proto: object | null = Object.getPrototypeOf(u)
  const isArray = Array.isArray(u)
  // an array's prototype is an array itself (any realm's Array.prototype); a subclass's prototype is not
  if (isArray ? !Array.isArray(proto) : !isPlainPrototype(proto)) {
    return fail(walk, `must be a plain object or array, got an instance of ${className(proto)}`)
  }
  walk.ancestors.push(u)
  const out = isArray ? copyArray(walk, u, depth) : copyObject(walk, u as JsonObject, depth)
  walk.ancestors.pop()
  return out
}

const copyArray = (walk: JsonWalk, u: ReadonlyArray<unknown>, depth: number): unknown => {
  const out: Array<unknown> = []
  // read once: a Proxy could answer differently each time
  const length = u.length
  for (let i = 0; i < length; i++) {
    walk.path.push(i)
    const value = copyJson(walk, u[i], depth)
    if (value === INVALID) return INVALID
    walk.path.pop()
    out.push(value)
  }
  return out
}

const copyObject = (walk: JsonWalk, u: JsonObject, depth: number): unknown => {
  const out: JsonObject = {}
  for (const key of Object.keys(u)) {
    walk.path.push(key)
    const value = copyJson(walk, u[key], depth)
    if (value === INVALID) return INVALID
    walk.path.pop()
    // `__proto__` stays a key, as JSON.parse made it: an assignment would make its value the copy's prototype instead
    if (key === "__proto__") Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
    else out[key] = value
  }
  return out
}

/**
 * A deep copy of a record made of JSON values only, so the live send and a replay from the store see the same data
 * (and later changes by the caller reach neither), or where and why it is not JSON. Never throws.
 */
const toJsonRecord = (u: unknown): Either.Either<JsonObject, JsonProblem> => {
  const walk: JsonWalk = { path: [], ancestors: [], values: 0, problem: undefined }
  try {
    if (!isRecordObject(u)) return Either.left({ path: [], message: `must be an object, got ${formatValue(u)}` })
    const copy = copyJson(walk, u, 0)
    return copy === INVALID ? Either.left(walk.problem!) : Either.right(copy as JsonObject)
  } catch (error) {
    // a getter or Proxy trap threw: the path still points at the value being read
    return Either.left({ path: walk.path.slice(), message: `could not be read: ${formatError(error)}` })
  }
}

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

/**
 * Copies the own enumerable keys as data properties. `__proto__` stays a key, as `JSON.parse` made it: an
 * assignment (what `Schema.Record` does) would drop it and make its value the copy's prototype instead.
 */
const copyRecord = (u: { readonly [x: string]: unknown }): { readonly [x: string]: unknown } => {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(u)) {
    Object.defineProperty(out, key, { value: u[key], enumerable: true, writable: true, configurable: true })
  }
  return out
}

/** A record read back from a stored row: JSON when it was stored, so copied but not walked again. */
const StoredJsonRecord: Schema.Schema<{ readonly [x: string]: unknown }> = Schema.declare([], {
  decode: () => (u, _, ast) => isRecordObject(u) ? ParseResult.succeed(copyRecord(u)) : ParseResult.fail(new ParseResult.Type(ast, u)),
  encode: () => (u, _, ast) => isRecordObject(u) ? ParseResult.succeed(copyRecord(u)) : ParseResult.fail(new ParseResult.Type(ast, u))
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

const clip = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max)}…` : s)

/** A short description of any value for an error message. Never throws, whatever getters, Proxy traps or toString do. */
const formatValue = (u: unknown): string => {
  try {
    return clip(describe(u, 2), 120)
  } catch {
    return "a value that could not be read"
  }
}

const describe = (u: unknown, depth: number): string => {
  switch (typeof u) {
    case "string":
      return JSON.stringify(clip(u, 80))
    case "bigint":
      return `${clip(String(u), 40)}n`
    case "function":
      return "a function"
    case "object":
      return u === null ? "null" : describeObject(u, depth)
    default:
      // number, boolean, undefined, symbol: String() runs no user code on these
      return String(u)
  }
}

const describeObject = (u: object, depth: number): string => {
  const items = (keys: ReadonlyArray<string | number>, show: (key: string | number) => string) =>
    depth === 0 ? "…" : keys.slice(0, 3).map(show).join(",") + (keys.length > 3 ? ",…" : "")
  if (Array.isArray(u)) {
    const indices = Array.from({ length: Math.min(u.length, 4) }, (_, i) => i)
    return `[${items(indices, (i) => describe(u[i as number], depth - 1))}]`
  }
  const proto: object | null = Object.getPrototypeOf(u)
  if (!isPlainPrototype(proto)) return `an instance of ${className(proto)}`
  const record = u as JsonObject
  return `{${items(Object.keys(record), (k) => `${JSON.stringify(clip(String(k), 40))}:${describe(record[k], depth - 1)}`)}}`
}

const formatError = (error: unknown): string => {
  try {
    return error instanceof Error ? clip(String(error.message), 120) : formatValue(error)
  } catch {
    return "an error that could not be read"
  }
}

const requestFields = {
  channel: NonEmptyString,
  to: NonEmptyString,
  accountId: Schema.optionalWith(StoredString, { exact: true }),
  threadId: Schema.optionalWith(StoredString, { exact: true }),
  replyToId: Schema.optionalWith(StoredString, { exact: true }),
  payloads: Payloads,
  kind: Schema.optionalWith(
    DispatchKind.annotations({
      message: (issue) => ({ message: `must be "tool", "block" or "final", got ${formatValue(issue.actual)}`, override: true })
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
const decodeRequestKnownKeys = Schema.decodeUnknownEither(DeliveryRequest)
const requestKeys: ReadonlySet<PropertyKey> = new Set(Object.keys(requestFields))
const payloadKeys: ReadonlySet<PropertyKey> = new Set(Object.keys(ReplyPayloadFields.fields))

/** Whether the request and its payloads hold only keys the schema declares (then no excess-property check can fail). */
const onlyKnownKeys = (u: unknown): boolean => {
  if (!isRecordObject(u)) return false
  for (const key of Reflect.ownKeys(u)) if (!requestKeys.has(key)) return false
  const payloads = u["payloads"]
  if (!Array.isArray(payloads)) return true
  for (const payload of payloads) {
    if (isRecordObject(payload)) for (const key of Reflect.ownKeys(payload)) if (!payloadKeys.has(key)) return false
  }
  return true
}

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
        : new ParseResult.Type(issue.ast, issue.actual, `Expected ${expected(issue.ast)}, actual ${formatValue(issue.actual)}`)
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

const isIssueList = (issues: ParseResult.Composite["issues"]): issues is Arr.NonEmptyReadonlyArray<ParseResult.ParseIssue> =>
  Array.isArray(issues)

/** What Schema's default message says was expected (its own rule, which it does not export). */
const expected = (ast: AST.AST): string =>
  AST.isRefinement(ast)
    ? AST.getDescriptionAnnotation(ast).pipe(
      Option.orElse(() => AST.getTitleAnnotation(ast)),
      Option.orElse(() => AST.getIdentifierAnnotation(ast)),
      Option.getOrElse(() => `{ ${ast.from} | filter }`)
    )
    : String(ast)

/** The strict Schema decode: the reference `decodeRequest` must agree with (exported for the equivalence test). */
export const decodeRequestWithSchema = (input: unknown): Either.Either<DeliveryRequest, InvalidRequest> => {
  try {
    return Either.mapLeft(decodeRequestUnknown(input), (error) => new InvalidRequest({ message: formatParseError(error) }))
  } catch (error) {
    // a getter or Proxy trap on the request or a payload threw while Schema read it
    return Either.left(new InvalidRequest({ message: `request: could not be read: ${formatError(error)}` }))
  }
}

/** Decodes untrusted input into a `DeliveryRequest`, failing with an `InvalidRequest` that names the field. */
export const decodeRequest = (input: unknown): Effect.Effect<DeliveryRequest, InvalidRequest> => {
  // Fast paths with the same result (a property test holds them to the strict decode):
  // - the common request (declared keys only, plain field values, no metadata) is checked by hand with Schema only on
  //   its payloads, as the full decode costs ~8 µs, a twentieth of a delivery;
  // - any other request with declared keys only is decoded without the excess-property check (a third of a decode).
  // Anything else, and any failure, goes through the strict decode and its full message.
  try {
    if (onlyKnownKeys(input)) {
      const quick = quickRequest(input as { readonly [x: string]: unknown })
      if (quick !== undefined) return Either.right(quick)
      const decoded = decodeRequestKnownKeys(input)
      if (Either.isRight(decoded)) return Either.right(decoded.right)
    }
  } catch {
    // a getter or Proxy trap threw: the strict decode below reports it
  }
  return decodeRequestWithSchema(input)
}

const decodePayloads = Schema.decodeUnknownEither(Payloads)
const dispatchKinds: ReadonlySet<unknown> = new Set(DispatchKind.literals)
const isStored = (u: unknown): u is string => typeof u === "string" && !/\p{Cs}/u.test(u)
const isNonEmpty = (u: unknown): u is string => isStored(u) && u.trim().length > 0
/** An optional field: absent, or present with a value `ok` accepts (a present `undefined` is not absent to Schema). */
const absentOr = (u: { readonly [x: string]: unknown }, key: string, ok: (value: unknown) => boolean): boolean =>
  !Object.hasOwn(u, key) || ok(u[key])
const isBoolean = (u: unknown): u is boolean => typeof u === "boolean"

/** The request checked field by field as the schema would; undefined when it is not the common case or not valid. */
const quickRequest = (u: { readonly [x: string]: unknown }): DeliveryRequest | undefined => {
  if (
    !isNonEmpty(u.channel) || !isNonEmpty(u.to) || !absentOr(u, "accountId", isStored) ||
    !absentOr(u, "threadId", isStored) || !absentOr(u, "replyToId", isStored) ||
    !absentOr(u, "kind", (k) => dispatchKinds.has(k)) || !absentOr(u, "bestEffort", isBoolean) ||
    !absentOr(u, "idempotencyKey", isNonEmpty) || !absentOr(u, "silent", isBoolean) || Object.hasOwn(u, "metadata")
  ) return undefined
  const payloads = decodePayloads(u.payloads)
  if (Either.isLeft(payloads)) return undefined
  return new DeliveryRequest({
    channel: u.channel,
    to: u.to,
    ...(Object.hasOwn(u, "accountId") ? { accountId: u.accountId as string } : {}),
    ...(Object.hasOwn(u, "threadId") ? { threadId: u.threadId as string } : {}),
    ...(Object.hasOwn(u, "replyToId") ? { replyToId: u.replyToId as string } : {}),
    payloads: payloads.right,
    kind: Object.hasOwn(u, "kind") ? u.kind as DispatchKind : "final",
    bestEffort: Object.hasOwn(u, "bestEffort") ? u.bestEffort as boolean : false,
    ...(Object.hasOwn(u, "idempotencyKey") ? { idempotencyKey: u.idempotencyKey as string } : {}),
    ...(Object.hasOwn(u, "silent") ? { silent: u.silent as boolean } : {})
  }, true) // checked above
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
