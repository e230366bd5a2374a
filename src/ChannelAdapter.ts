/**
 * The plugin contracts a channel adapter implements, and `normalize`, which turns any of them
 * (v1, v2, Promise-based or Effect-native) into the one internal `Channel` the sender talks to.
 *
 * Compat rules enforced here and in `SendPlan` (each one a bug found in review of the seed):
 * 1. a v1 adapter keeps the core's chunking and one `sendMedia` per media URL; nothing is
 *    inferred for it beyond what it implements (no invented whole-payload fast path);
 * 2. the whole-payload fast path exists only where the adapter has it natively: v2 `sendFinal`,
 *    or a v1 adapter's own `sendPayload`;
 * 3. an adapter is v2 only if it says so AND implements `sendFinal`; otherwise registration fails;
 * 4. a v1 adapter is warned about once, at registration, not on every send; one that declares
 *    `outboundContract: "v1"` chose per-part sends on purpose (the shipped Telegram and Slack channels) and is not.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Chunker, ChunkerMode } from "./Chunking.js"
import type { ReplyPayload } from "./Delivery.js"
import { SendError } from "./DeliveryError.js"
import { call } from "./internal/adapterCall.js"
import type { ChannelLimit } from "./RateLimits.js"
import { channelProblems } from "./RateLimits.js"

export { classify, permanentPatterns } from "./internal/classify.js"

/** What every adapter call receives. `text` is the chunk or caption; `payload` the whole reply the part belongs to. */
export interface SendContext {
  readonly channel: string
  readonly to: string
  readonly accountId?: string
  readonly threadId?: string
  readonly replyToId?: string
  readonly text: string
  readonly mediaUrl?: string
  readonly payload: ReplyPayload
  readonly silent?: boolean
  /** the entry's idempotencyKey, else its id; the same for every part — combine with `partIndex` to dedupe per message */
  readonly idempotencyKey: string
  readonly entryId: string
  readonly attempt: number
  /** position of this call in the entry's send plan (stable across retries and recovery) */
  readonly partIndex: number
  readonly partCount: number
}

/** What a successful send resolves to; extra fields are kept and passed through to the caller. */
export interface SendResult {
  readonly messageId: string
}

/** Passed as the second argument: `signal` aborts when the send times out or is interrupted. */
export interface CallOptions {
  readonly signal: AbortSignal
}

/** An adapter method's result: a Promise (plugin style) or an Effect (Effect-native adapters). */
export type Returned<A> = PromiseLike<A> | Effect.Effect<A, SendError>

/** One adapter send method. Throw/reject/fail with `{ retryable: false }` or `{ retryAfterMs }` to classify it yourself. */
export type SendMethod = (ctx: SendContext, options: CallOptions) => Returned<SendResult>

/** Whether a message of a possibly interrupted send reached the channel. */
export type ReconcileResult = "sent" | "not_sent" | "unknown"

/** Optional capability: asked before replaying a row found in flight after a crash. */
export type ReconcileMethod = (ctx: SendContext, options: CallOptions) => Returned<ReconcileResult>

/** The v1 contract: the core chunks text and fans media out; `sendPayload` (LINE-style) takes `channelData` payloads whole. */
export interface AdapterV1 {
  /** declared: the adapter wants the core's chunking and per-part progress, and is not warned about */
  readonly outboundContract?: "v1"
  readonly sendText: SendMethod
  readonly sendMedia?: SendMethod
  readonly sendPayload?: SendMethod
  /** `null` sends every text whole; omitted uses the core length chunker */
  readonly chunker?: Chunker | null
  readonly chunkerMode?: ChunkerMode
  readonly textChunkLimit?: number
  readonly reconcile?: ReconcileMethod
  /** the channel's published limits, used when `OutboxConfig.rateLimits` has no entry for its id (see `RateLimits`) */
  readonly rateLimit?: ChannelLimit
}

/** The v2 contract: the adapter takes each payload whole; any v1 methods it also has are never called. */
export interface AdapterV2 {
  readonly outboundContract: "v2"
  readonly sendFinal: SendMethod
  readonly reconcile?: ReconcileMethod
  /** the channel's published limits, used when `OutboxConfig.rateLimits` has no entry for its id (see `RateLimits`) */
  readonly rateLimit?: ChannelLimit
  readonly sendText?: SendMethod
  readonly sendMedia?: SendMethod
  readonly sendPayload?: SendMethod
}

/** Any adapter a gateway may register. */
export type Adapter = AdapterV1 | AdapterV2

/** The contract `normalize` took for an adapter. */
export type Contract = "v1" | "v2"

/**
 * A normalized send: never throws, never rejects; every failure is a classified `SendError`. Interrupting it (the
 * sender's per-part timeout, a shutdown) aborts the plugin's `signal`.
 */
export type Send = (ctx: SendContext, deadline?: CallDeadline) => Effect.Effect<SendResult, SendError>

/** A normalized reconcile. */
export type Reconcile = (ctx: SendContext, deadline?: CallDeadline) => Effect.Effect<ReconcileResult, SendError>

/**
 * The deadline the sender puts on one call: armed only once the call has suspended (a call that completes at once
 * needs none); when it passes, the call is aborted (its `signal`, or the Effect interrupted) and fails with `error()`.
 */
export interface CallDeadline {
  /** starts the deadline; `expire` runs once if it passes first; the returned function disarms it */
  readonly arm: (expire: () => void) => () => void
  readonly error: () => SendError
}

/** The internal form of any adapter: what it can do, and Effect-returning methods. */
export interface Channel {
  readonly channel: string
  readonly contract: Contract
  /** v1 chunking settings; irrelevant for v2, which chunks itself */
  readonly textChunkLimit: number | undefined
  readonly chunker: Chunker | null | undefined
  readonly chunkerMode: ChunkerMode
  readonly sendText: Option.Option<Send>
  readonly sendMedia: Option.Option<Send>
  /** the native whole-payload send: v2 `sendFinal` or a v1 adapter's own `sendPayload`; never inferred */
  readonly sendPayload: Option.Option<Send>
  readonly reconcile: Option.Option<Reconcile>
  /** the adapter's suggested rate limits (`OutboxConfig.rateLimits` overrides them) */
  readonly rateLimit?: ChannelLimit | undefined
}

/** The adapter registered for `channel` breaks its contract; raised at registration, before anything is sent. */
export class InvalidAdapter extends Schema.TaggedError<InvalidAdapter>("effect-outbox/InvalidAdapter")(
  "InvalidAdapter",
  { channel: Schema.String, reason: Schema.String }
) {
  override get message() {
    return `invalid adapter for channel "${this.channel}": ${this.reason}`
  }
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const preview = (u: unknown): string => {
  if (u === undefined) return "undefined"
  try {
    const json = JSON.stringify(u)
    return json === undefined ? String(u) : json.length > 200 ? `${json.slice(0, 200)}…` : json
  } catch {
    try {
      return Object.prototype.toString.call(u)
    } catch {
      return "a value that cannot be read"
    }
  }
}

/** The result's `messageId` if it is a string; a result whose reading throws is as malformed as one without it. */
const messageIdOf = (result: unknown): string | undefined => {
  try {
    return isRecord(result) && typeof result["messageId"] === "string" ? result["messageId"] : undefined
  } catch {
    return undefined
  }
}

const toSend = (channel: string, name: string, method: SendMethod): Send => {
  const checked = (result: unknown): Effect.Effect<SendResult, SendError> =>
    messageIdOf(result) !== undefined
      ? Effect.succeed(result as SendResult)
      : Effect.fail(
        new SendError({
          // the message may well have gone out: retrying a broken adapter would only duplicate it
          message: `${channel}.${name} returned a malformed result (expected { messageId: string }, got ${
            preview(result)
          })`,
          retryable: false
        })
      )
  return (ctx, deadline) => Effect.flatMap(call(method, ctx, deadline), checked)
}

const reconcileResults: ReadonlyArray<unknown> = ["sent", "not_sent", "unknown"]

const toReconcile = (channel: string, method: ReconcileMethod): Reconcile => (ctx, deadline) =>
  call(method, ctx, deadline).pipe(
    Effect.flatMap((result) =>
      reconcileResults.includes(result)
        ? Effect.succeed(result as ReconcileResult)
        : Effect.fail(
          new SendError({
            message: `${channel}.reconcile returned ${preview(result)} (expected "sent", "not_sent" or "unknown")`,
            retryable: false
          })
        )
    )
  )

const optionalMethod = <M>(
  adapter: Record<string, unknown>,
  name: string
): { readonly ok: true; readonly value: M | undefined } | { readonly ok: false; readonly reason: string } => {
  const value = adapter[name]
  if (value === undefined) return { ok: true, value: undefined }
  if (typeof value === "function") return { ok: true, value: value as M }
  return { ok: false, reason: `${name} must be a function, got ${typeof value}` }
}

/** Turns an adapter into a `Channel`, failing with `InvalidAdapter` if it breaks its contract; warns once for v1. */
export const normalize = (adapter: Adapter, channel: string): Effect.Effect<Channel, InvalidAdapter> =>
  Effect.suspend(() => {
    const invalid = (reason: string) => Effect.fail(new InvalidAdapter({ channel, reason }))
    const raw: unknown = adapter
    if (!isRecord(raw)) return invalid(`an adapter must be an object, got ${raw === null ? "null" : typeof raw}`)
    const declared = raw["outboundContract"]
    if (declared !== undefined && declared !== "v1" && declared !== "v2") {
      return invalid(`unknown outboundContract ${preview(declared)} (expected "v1" or "v2")`)
    }
    const reconcile = optionalMethod<ReconcileMethod>(raw, "reconcile")
    if (!reconcile.ok) return invalid(reconcile.reason)
    const reconcileOption = Option.map(Option.fromNullable(reconcile.value), (m) => toReconcile(channel, m))
    const rateLimit = raw["rateLimit"]
    if (rateLimit !== undefined) {
      const problems = isRecord(rateLimit) ? channelProblems("rateLimit", rateLimit) : ["rateLimit must be an object"]
      if (problems.length > 0) return invalid(problems.join("; "))
    }
    const limits = rateLimit === undefined ? {} : { rateLimit: rateLimit as ChannelLimit }

    if (declared === "v2") {
      // rule 3: saying "v2" is not enough; treating it as v2 would send nothing, treating it as v1 would hide the mistake
      if (typeof raw["sendFinal"] !== "function") {
        return invalid(`it declares outboundContract "v2" but does not implement sendFinal(ctx)`)
      }
      return Effect.succeed<Channel>({
        channel,
        contract: "v2",
        textChunkLimit: undefined,
        chunker: undefined,
        chunkerMode: "text",
        sendText: Option.none(),
        sendMedia: Option.none(),
        sendPayload: Option.some(toSend(channel, "sendFinal", raw["sendFinal"] as SendMethod)),
        reconcile: reconcileOption,
        ...limits
      })
    }

    if (typeof raw["sendText"] !== "function") {
      return invalid(
        typeof raw["sendFinal"] === "function"
          ? `it implements sendFinal but does not declare outboundContract: "v2" (and has no v1 sendText)`
          : `it implements neither sendText(ctx) (v1) nor outboundContract: "v2" with sendFinal(ctx)`
      )
    }
    const sendMedia = optionalMethod<SendMethod>(raw, "sendMedia")
    if (!sendMedia.ok) return invalid(sendMedia.reason)
    const sendPayload = optionalMethod<SendMethod>(raw, "sendPayload")
    if (!sendPayload.ok) return invalid(sendPayload.reason)
    const chunker = raw["chunker"]
    if (chunker !== undefined && chunker !== null && typeof chunker !== "function") {
      return invalid(`chunker must be a function or null, got ${typeof chunker}`)
    }
    const chunkerMode = raw["chunkerMode"]
    if (chunkerMode !== undefined && chunkerMode !== "text" && chunkerMode !== "markdown") {
      return invalid(`chunkerMode must be "text" or "markdown", got ${preview(chunkerMode)}`)
    }
    const limit = raw["textChunkLimit"]
    if (limit !== undefined && !(typeof limit === "number" && Number.isInteger(limit) && limit >= 1)) {
      return invalid(`textChunkLimit must be a positive integer, got ${preview(limit)}`)
    }
    const normalized: Channel = {
      channel,
      contract: "v1",
      textChunkLimit: limit,
      chunker: chunker as Chunker | null | undefined,
      chunkerMode: chunkerMode ?? "text",
      sendText: Option.some(toSend(channel, "sendText", raw["sendText"] as SendMethod)),
      sendMedia: Option.map(Option.fromNullable(sendMedia.value), (m) => toSend(channel, "sendMedia", m)),
      sendPayload: Option.map(Option.fromNullable(sendPayload.value), (m) => toSend(channel, "sendPayload", m)),
      reconcile: reconcileOption,
      ...limits
    }
    if (declared === "v1") return Effect.succeed(normalized)
    // logged here, at registration, so a busy channel does not repeat it on every send
    return Effect.logWarning(
      `channel "${channel}" uses the v1 outbound adapter contract (sendText/sendMedia); ` +
        `declare outboundContract: "v2" with sendFinal(ctx) to take whole payloads`
    ).pipe(Effect.annotateLogs({ channel }), Effect.as(normalized))
  })
