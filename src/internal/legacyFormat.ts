/**
 * The format of one file of openclaw's delivery queue and its reading: the file's schema (public through
 * `LegacyFileQueue`), and the mapping of an entry to the outbox row it becomes, checked by today's request rules.
 */
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import * as fs from "node:fs/promises"
import type {
  DeliveryRequest,
  DeliveryRequestInput,
  EntryId,
  EntryState,
  OutboxEntry,
  TerminalReason
} from "../Delivery.js"
import { decodeRequest, formatParseError, JsonRecord } from "../Delivery.js"

// openclaw writes `undefined` fields away but keeps explicit nulls (`threadId?: string | number | null`)
const optionalNullable = <S extends Schema.Schema.All>(schema: S) =>
  Schema.optionalWith(schema, { exact: true, nullable: true })

// stored in INTEGER columns (STRICT tables refuse a REAL), so fractional millis are malformed
const Millis = Schema.NonNegativeInt

/** One payload of a legacy entry (openclaw's `ReplyPayload`; fields the outbox does not know are ignored). */
export const LegacyPayload = Schema.Struct({
  text: optionalNullable(Schema.String),
  mediaUrl: optionalNullable(Schema.String),
  mediaUrls: optionalNullable(Schema.Array(Schema.String)),
  channelData: optionalNullable(JsonRecord)
})
export type LegacyPayload = typeof LegacyPayload.Type

/** A file of openclaw's queue (`QueuedDelivery`), as DESIGN.md "Legacy file queue import" lists it. */
export const LegacyDelivery = Schema.Struct({
  id: Schema.String.pipe(Schema.filter((s) => s.trim().length > 0 || "must be a non-empty string")),
  enqueuedAt: Millis,
  channel: Schema.String,
  to: Schema.String,
  accountId: optionalNullable(Schema.String),
  payloads: Schema.Array(LegacyPayload),
  threadId: optionalNullable(Schema.Union(Schema.String, Schema.Number.pipe(Schema.finite()))),
  replyToId: optionalNullable(Schema.String),
  bestEffort: optionalNullable(Schema.Boolean),
  gifPlayback: optionalNullable(Schema.Boolean),
  silent: optionalNullable(Schema.Boolean),
  mirror: optionalNullable(Schema.Unknown),
  agentId: optionalNullable(Schema.String),
  sessionKey: optionalNullable(Schema.String),
  retryCount: Schema.NonNegativeInt,
  lastAttemptAt: optionalNullable(Millis),
  lastError: optionalNullable(Schema.String)
})
export type LegacyDelivery = typeof LegacyDelivery.Type

/** A thrown value's message, for the reason a file or directory could not be read. */
export const describeCause = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** What decides where an imported row starts: this run's time and the outbox's age and attempt limits. */
export interface MappingContext {
  readonly now: number
  readonly maxAgeMs: number
  readonly maxAttempts: number
  readonly expireAction: "fail" | "deliver"
}

const decodeLegacy = Schema.decodeUnknown(LegacyDelivery, { errors: "all" })

// keeps order and drops repeats: openclaw set `mediaUrl` to the first of `mediaUrls` when it filled both
const mergeMedia = (p: LegacyPayload): ReadonlyArray<string> => [
  ...new Set([...(p.mediaUrl === undefined ? [] : [p.mediaUrl]), ...(p.mediaUrls ?? [])])
]

const legacyMetadata = (legacy: LegacyDelivery): Record<string, unknown> | undefined => {
  const fields = {
    ...(legacy.gifPlayback === undefined ? {} : { gifPlayback: legacy.gifPlayback }),
    ...(legacy.mirror === undefined ? {} : { mirror: legacy.mirror }),
    ...(legacy.agentId === undefined ? {} : { agentId: legacy.agentId }),
    ...(legacy.sessionKey === undefined ? {} : { sessionKey: legacy.sessionKey })
  }
  return Object.keys(fields).length === 0 ? undefined : { legacy: fields }
}

/** The request today's `deliver` would get for this entry, so the same rules validate it. */
const toRequestInput = (legacy: LegacyDelivery): DeliveryRequestInput => {
  const metadata = legacyMetadata(legacy)
  return {
    channel: legacy.channel,
    to: legacy.to,
    ...(legacy.accountId === undefined ? {} : { accountId: legacy.accountId }),
    ...(legacy.threadId === undefined ? {} : { threadId: String(legacy.threadId) }),
    ...(legacy.replyToId === undefined ? {} : { replyToId: legacy.replyToId }),
    payloads: legacy.payloads.map((p) => {
      const mediaUrls = mergeMedia(p)
      return {
        ...(p.text === undefined ? {} : { text: p.text }),
        ...(mediaUrls.length === 0 ? {} : { mediaUrls }),
        ...(p.channelData === undefined ? {} : { channelData: p.channelData })
      }
    }),
    kind: "final",
    bestEffort: legacy.bestEffort ?? false,
    ...(legacy.silent === undefined ? {} : { silent: legacy.silent }),
    ...(metadata === undefined ? {} : { metadata })
  }
}

/** Where the row starts: the legacy history decides, and age is checked as before any send. */
const disposition = (
  legacy: LegacyDelivery,
  deadLetter: boolean,
  ctx: MappingContext
): { state: EntryState; nextAttemptAt: number | null; terminalReason: TerminalReason | null } => {
  if (deadLetter) {
    const reason = legacy.retryCount >= ctx.maxAttempts ? "max_attempts" : "permanent_error"
    return { state: "failed_terminal", nextAttemptAt: null, terminalReason: reason }
  }
  // openclaw moves such an entry to failed/ at its next start without sending it again
  if (legacy.retryCount >= ctx.maxAttempts) {
    return { state: "failed_terminal", nextAttemptAt: null, terminalReason: "max_attempts" }
  }
  if (ctx.expireAction === "fail" && legacy.enqueuedAt + ctx.maxAgeMs <= ctx.now) {
    return { state: "expired", nextAttemptAt: null, terminalReason: null }
  }
  if (legacy.retryCount > 0) return { state: "failed_retryable", nextAttemptAt: ctx.now, terminalReason: null }
  // as if enqueued back then: due at once, and older replies are claimed first
  return { state: "queued", nextAttemptAt: Math.min(legacy.enqueuedAt, ctx.now), terminalReason: null }
}

const toEntry = (
  legacy: LegacyDelivery,
  req: DeliveryRequest,
  deadLetter: boolean,
  ctx: MappingContext
): OutboxEntry => ({
  id: legacy.id as EntryId,
  channel: req.channel,
  to: req.to,
  ...(req.accountId === undefined ? {} : { accountId: req.accountId }),
  ...(req.threadId === undefined ? {} : { threadId: req.threadId }),
  ...(req.replyToId === undefined ? {} : { replyToId: req.replyToId }),
  payloads: req.payloads,
  kind: "final",
  bestEffort: req.bestEffort,
  ...(req.silent === undefined ? {} : { silent: req.silent }),
  ...(req.metadata === undefined ? {} : { metadata: req.metadata }),
  ...disposition(legacy, deadLetter, ctx),
  attemptCount: legacy.retryCount,
  partsDelivered: 0,
  enqueuedAt: legacy.enqueuedAt,
  // openclaw did not record attempt times before `lastAttemptAt` existed; enqueuedAt is the earliest it can be
  lastAttemptAt: legacy.lastAttemptAt ?? (legacy.retryCount > 0 ? legacy.enqueuedAt : null),
  deliveredAt: null,
  expiresAt: legacy.enqueuedAt + ctx.maxAgeMs,
  lastError: legacy.lastError ?? null,
  leaseOwner: null,
  leaseExpiresAt: null,
  updatedAt: ctx.now
})

/** Reads and decodes one file; the failure is the reason it is malformed (never a defect, never an abort). */
export const readCandidate = (
  candidate: { readonly absolute: string; readonly deadLetter: boolean },
  ctx: MappingContext
): Effect.Effect<OutboxEntry, string> =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => fs.readFile(candidate.absolute, "utf8"),
      catch: (cause) => `cannot read the file (${describeCause(cause)})`
    })
    const json = yield* Effect.try({
      try: (): unknown => JSON.parse(text),
      catch: (cause) => `invalid JSON (${describeCause(cause)})`
    })
    const legacy = yield* Effect.mapError(decodeLegacy(json), (e) => `not a legacy queue entry: ${formatParseError(e)}`)
    const req = yield* Effect.mapError(
      decodeRequest(toRequestInput(legacy)),
      (e) => `rejected by the current delivery rules: ${e.message}`
    )
    return toEntry(legacy, req, candidate.deadLetter, ctx)
  })
