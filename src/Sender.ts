/**
 * The sender: runs an entry's send plan against its channel, part by part, in order, starting
 * at `partsDelivered`, with a timeout on every part. It knows nothing of the store; the caller
 * persists what the report or failure says, and what `onProgress` reports after each accepted part.
 *
 * Outcomes:
 * - success: a `SendReport` listing every part sent this time, with its `messageId`;
 * - without `bestEffort`: the first failing part stops the entry; the failure is that part's
 *   `SendError` with `partIndex` and `partsDelivered` (= `partIndex`: where the retry resumes);
 * - with `bestEffort`: every remaining part is tried; any failure gives `PartialDeliveryFailure`
 *   (never success) whose `partsDelivered` is the resume point (the parts before the first failed
 *   one), `retryable` is true only if every failed part is, and `retryAfterMs` is the longest asked for.
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { CallDeadline, Channel, ReconcileResult, Send, SendContext, SendResult } from "./ChannelAdapter.js"
import type { ChunkConfig } from "./Chunking.js"
import type { OutboxEntry } from "./Delivery.js"
import { PartialDeliveryFailure, SendError } from "./DeliveryError.js"
import { describeFailure } from "./internal/classify.js"
import * as Deadlines from "./internal/Deadlines.js"
import { withSpan } from "./internal/tracing.js"
import * as SendPlan from "./SendPlan.js"

/** Defaults to 30 seconds per part (OutboxConfig's send timeout). */
export const DEFAULT_SEND_TIMEOUT: Duration.Duration = Duration.seconds(30)

/** How the sender is configured (the outbox wires these from `OutboxConfig`). */
export interface SenderOptions {
  /** per part; a part that takes longer fails with a retryable `SendError` and its call is aborted */
  readonly sendTimeout?: Duration.DurationInput
  readonly chunking?: ChunkConfig
}

/** Per-send context the entry does not hold. */
export interface SendOptions {
  /** 1 for the first attempt; passed to the adapter */
  readonly attempt: number
}

/** The fields of an entry the sender reads. */
export type SendEntry = Pick<
  OutboxEntry,
  | "id"
  | "channel"
  | "to"
  | "accountId"
  | "threadId"
  | "replyToId"
  | "payloads"
  | "bestEffort"
  | "idempotencyKey"
  | "silent"
  | "partsDelivered"
  | "deliveredParts"
>

/** A part the adapter accepted. */
export interface DeliveredPart {
  readonly index: number
  readonly kind: Exclude<SendPlan.PartKind, "unsupported">
  readonly messageId: string
  readonly result: SendResult
}

/** What a successful send did: every part from the resume point on was accepted. */
export interface SendReport {
  readonly entryId: string
  readonly partsTotal: number
  /** always `partsTotal` on success; the value to persist */
  readonly partsDelivered: number
  /** the parts sent by this call, in order (parts delivered by earlier attempts are not repeated) */
  readonly outcomes: ReadonlyArray<DeliveredPart>
}

/** Called after each accepted part that moves the resume point, with the new `partsDelivered` (never after the last part). */
export type OnProgress<E> = (partsDelivered: number) => Effect.Effect<void, E>

/**
 * Hooks around each part's adapter call (the outbox's rate limiter): `before` runs before the call and its failure
 * stops the send (it is the send's failure; parts sent so far were reported through `onProgress`); `failed` sees
 * each failed call.
 */
export interface PartHooks<E> {
  readonly before: (partIndex: number) => Effect.Effect<void, E>
  readonly failed: (error: SendError) => Effect.Effect<void>
}

/** Sends entries through normalized channels. */
export class Sender extends Context.Tag("effect-outbox/Sender")<Sender, {
  /** the plan `send` follows (the same for the live path and recovery) */
  readonly plan: (entry: SendPlan.PlanEntry, channel: Channel) => SendPlan.SendPlan
  /** sends the parts from `entry.partsDelivered` on; see the module doc for the failure shapes */
  readonly send: <E = never>(
    entry: SendEntry,
    channel: Channel,
    options: SendOptions & { readonly onProgress?: OnProgress<E>; readonly parts?: PartHooks<E> }
  ) => Effect.Effect<SendReport, SendError | PartialDeliveryFailure | E>
  /** asks the adapter whether the first undelivered part went out; `"unknown"` if it cannot tell, fails or times out */
  readonly reconcile: (entry: SendEntry, channel: Channel, options: SendOptions) => Effect.Effect<ReconcileResult>
}>() {}

const optionalFields = (entry: SendEntry) => ({
  ...(entry.accountId !== undefined ? { accountId: entry.accountId } : {}),
  ...(entry.threadId !== undefined ? { threadId: entry.threadId } : {}),
  ...(entry.replyToId !== undefined ? { replyToId: entry.replyToId } : {}),
  ...(entry.silent !== undefined ? { silent: entry.silent } : {})
})

/** The context the adapter gets for one part: everything comes from the stored entry. */
const contextFor = (entry: SendEntry, part: SendPlan.Part, partCount: number, attempt: number): SendContext => {
  const payload = entry.payloads[part.payloadIndex] ?? {}
  const firstMedia = payload.mediaUrls?.[0]
  const text = part.kind === "text" ? part.text : part.kind === "media" ? part.caption : payload.text ?? ""
  const mediaUrl = part.kind === "media" ? part.mediaUrl : part.kind === "payload" ? firstMedia : undefined
  return {
    channel: entry.channel,
    to: entry.to,
    ...optionalFields(entry),
    text,
    ...(mediaUrl !== undefined ? { mediaUrl } : {}),
    payload,
    idempotencyKey: entry.idempotencyKey ?? entry.id,
    entryId: entry.id,
    attempt,
    partIndex: part.index,
    partCount
  }
}

const methodFor = (channel: Channel, part: SendPlan.Part): Either.Either<Send, string> => {
  const pick = (method: Option.Option<Send>, name: string) =>
    Option.match(method, {
      onNone: () => Either.left(`channel "${channel.channel}" has no ${name}`),
      onSome: Either.right
    })
  switch (part.kind) {
    case "text":
      return pick(channel.sendText, "sendText")
    case "media":
      return pick(channel.sendMedia, "sendMedia")
    case "payload":
      return pick(channel.sendPayload, channel.contract === "v2" ? "sendFinal" : "sendPayload")
    case "unsupported":
      return Either.left(part.reason)
  }
}

const withProgress = (error: SendError, partIndex: number, partsDelivered: number): SendError =>
  new SendError({
    message: error.message,
    retryable: error.retryable,
    ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
    ...(error.status !== undefined ? { status: error.status } : {}),
    partIndex,
    partsDelivered
  })

/** The outcome of a best-effort send with failed parts: the resume point, the parts delivered past it, the errors. */
const partialFailure = (
  entry: SendEntry,
  failures: ReadonlyArray<{ readonly index: number; readonly kind: SendPlan.PartKind; readonly error: SendError }>,
  delivered: ReadonlyArray<number>
): PartialDeliveryFailure => {
  const retryable = failures.every((f) => f.error.retryable)
  const retryAfterMs = retryable
    ? failures.reduce<number | undefined>(
      (max, f) => f.error.retryAfterMs === undefined ? max : Math.max(max ?? 0, f.error.retryAfterMs),
      undefined
    )
    : undefined
  const resumeAt = failures[0]!.index
  const deliveredPast = delivered.filter((i) => i > resumeAt).sort((a, b) => a - b)
  return new PartialDeliveryFailure({
    entryId: entry.id,
    partsDelivered: resumeAt,
    ...(deliveredPast.length > 0 ? { deliveredParts: deliveredPast } : {}),
    partsFailed: failures.length,
    errors: failures.map((f) => `part ${f.index} (${f.kind}): ${f.error.message}`),
    retryable,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {})
  })
}

/** Builds a sender in a scope (its call watchdog lives as long as it); `options` come from config. */
export const make = (options: SenderOptions = {}): Effect.Effect<Context.Tag.Service<Sender>, never, Scope.Scope> =>
  Effect.map(
    Deadlines.make(Duration.toMillis(Duration.decode(options.sendTimeout ?? DEFAULT_SEND_TIMEOUT))),
    (deadlines) => makeWith(options, deadlines)
  )

/** What a sender's calls share: its plan, its timeout and the deadline each call gets. */
interface Calls {
  readonly plan: (entry: SendPlan.PlanEntry, channel: Channel) => SendPlan.SendPlan
  readonly timeout: Duration.Duration
  readonly deadline: (message: () => string) => CallDeadline
}

const makeWith = (options: SenderOptions, deadlines: Deadlines.Deadlines): Context.Tag.Service<Sender> => {
  const calls: Calls = {
    plan: (entry, channel) => SendPlan.make(entry, channel, options.chunking),
    timeout: Duration.decode(options.sendTimeout ?? DEFAULT_SEND_TIMEOUT),
    deadline: (message) => ({
      arm: deadlines.arm,
      error: () => new SendError({ message: message(), retryable: true })
    })
  }
  return {
    plan: calls.plan,
    send: (entry, channel, sendOptions) => send(calls, entry, channel, sendOptions),
    reconcile: (entry, channel, sendOptions) => reconcile(calls, entry, channel, sendOptions)
  }
}

/** One adapter call for one part, under the per-part deadline (which aborts the call when it passes). */
const sendPart = (
  c: Calls,
  entry: SendEntry,
  channel: Channel,
  part: SendPlan.Part,
  partCount: number,
  attempt: number
): Effect.Effect<DeliveredPart, SendError> => {
  const method = methodFor(channel, part)
  // content the adapter cannot take will not become sendable by retrying
  if (Either.isLeft(method)) return Effect.fail(new SendError({ message: method.left, retryable: false }))
  const timedOut = c.deadline(() =>
    `${channel.channel}: ${part.kind} part ${part.index} timed out after ${Duration.format(c.timeout)}`
  )
  return Effect.map(method.right(contextFor(entry, part, partCount, attempt), timedOut), (result): DeliveredPart => ({
    index: part.index,
    kind: part.kind as DeliveredPart["kind"],
    messageId: result.messageId,
    result
  })).pipe(
    withSpan("Sender.sendPart", {
      captureStackTrace: false,
      attributes: {
        "outbox.entry_id": entry.id,
        "outbox.channel": entry.channel,
        "outbox.attempt": attempt,
        "outbox.part_index": part.index,
        "outbox.part_kind": part.kind
      }
    })
  )
}

const send = <E = never>(
  c: Calls,
  entry: SendEntry,
  channel: Channel,
  sendOptions: SendOptions & { readonly onProgress?: OnProgress<E>; readonly parts?: PartHooks<E> }
): Effect.Effect<SendReport, SendError | PartialDeliveryFailure | E> =>
  Effect.gen(function*() {
    const { parts, warnings } = c.plan(entry, channel)
    if (warnings.length > 0) {
      yield* Effect.forEach(warnings, (warning) => Effect.logWarning(warning), { discard: true }).pipe(
        Effect.annotateLogs({ channel: entry.channel, entryId: entry.id })
      )
    }
    const start = Math.min(Math.max(0, entry.partsDelivered), parts.length)
    // best effort: parts that went out in an earlier attempt past a failed one are not sent again
    const already = new Set(entry.deliveredParts ?? [])
    const remaining = parts.slice(start).filter((part) => !already.has(part.index))
    const outcomes: Array<DeliveredPart> = []
    const failures: Array<{ readonly index: number; readonly kind: SendPlan.PartKind; readonly error: SendError }> = []
    let resumePoint = start
    const hooks = sendOptions.parts
    for (const part of remaining) {
      if (hooks !== undefined) yield* hooks.before(part.index)
      const sent = yield* Effect.either(sendPart(c, entry, channel, part, parts.length, sendOptions.attempt))
      if (Either.isLeft(sent) && hooks !== undefined) yield* hooks.failed(sent.left)
      if (Either.isLeft(sent)) {
        if (!entry.bestEffort) return yield* Effect.fail(withProgress(sent.left, part.index, part.index))
        failures.push({ index: part.index, kind: part.kind, error: sent.left })
        continue
      }
      outcomes.push(sent.right)
      if (failures.length > 0) continue // past a failed part the resume point stays put
      // the resume point moves over this part and any delivered in an earlier attempt right after it
      resumePoint = part.index + 1
      while (already.has(resumePoint)) resumePoint++
      if (resumePoint < parts.length && sendOptions.onProgress !== undefined) {
        yield* sendOptions.onProgress(resumePoint)
      }
    }
    if (failures.length > 0) {
      return yield* Effect.fail(partialFailure(entry, failures, [...already, ...outcomes.map((o) => o.index)]))
    }
    return {
      entryId: entry.id,
      partsTotal: parts.length,
      partsDelivered: parts.length,
      outcomes
    } satisfies SendReport
  })

const reconcile = (
  c: Calls,
  entry: SendEntry,
  channel: Channel,
  sendOptions: SendOptions
): Effect.Effect<ReconcileResult> =>
  Option.match(channel.reconcile, {
    onNone: () => Effect.succeed<ReconcileResult>("unknown"),
    onSome: (ask) => {
      const { parts } = c.plan(entry, channel)
      const part = parts[Math.max(0, entry.partsDelivered)]
      if (part === undefined) return Effect.succeed<ReconcileResult>("sent")
      const timedOut = c.deadline(() => `reconcile timed out after ${Duration.format(c.timeout)}`)
      return ask(contextFor(entry, part, parts.length, sendOptions.attempt), timedOut).pipe(
        // reconcile is advisory: when it cannot answer, the row is replayed (at-least-once)
        Effect.catchAll((error) =>
          Effect.logWarning(`reconcile failed, treating the outcome as unknown: ${describeFailure(error)}`).pipe(
            Effect.as<ReconcileResult>("unknown")
          )
        ),
        Effect.annotateLogs({ channel: entry.channel, entryId: entry.id })
      )
    }
  })

/** The sender as a layer. */
export const layer = (options: SenderOptions = {}): Layer.Layer<Sender> => Layer.scoped(Sender, make(options))
