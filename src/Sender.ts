/**
 * The sender: runs an entry's send plan against its channel, part by part, in order, starting
 * at `partsDelivered`, with a timeout on every part. It knows nothing of the store; the caller
 * persists what the report or failure says.
 *
 * Outcomes:
 * - success: a `SendReport` listing every part sent this time, with its `messageId`;
 * - without `bestEffort`: the first failing part stops the entry; the failure is that part's
 *   `SendError` with `partIndex` and `partsDelivered` (= `partIndex`: where the retry resumes);
 * - with `bestEffort`: every remaining part is tried; any failure gives `PartialDeliveryFailure`
 *   (never success) whose `partsDelivered` is the resume point (the parts before the first failed
 *   one), `retryable` is true only if every failed part is, and `retryAfterMs` is the longest asked for.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type { Channel, ReconcileResult, Send, SendContext, SendResult } from "./ChannelAdapter.js"
import { isPendingCall } from "./ChannelAdapter.js"
import type { ChunkConfig } from "./Chunking.js"
import type { OutboxEntry } from "./Delivery.js"
import { PartialDeliveryFailure, SendError } from "./DeliveryError.js"
import { describeFailure } from "./internal/classify.js"
import { isCompleted } from "./internal/completed.js"
import { awaitCall, DeadlineWatch, syncFirstTimeout } from "./internal/syncFirstTimeout.js"
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

/** Sends entries through normalized channels. */
export class Sender extends Context.Tag("effect-outbox/Sender")<Sender, {
  /** the plan `send` follows (the same for the live path and recovery) */
  readonly plan: (entry: SendPlan.PlanEntry, channel: Channel) => SendPlan.SendPlan
  /** sends the parts from `entry.partsDelivered` on; see the module doc for the failure shapes */
  readonly send: (
    entry: SendEntry,
    channel: Channel,
    options: SendOptions
  ) => Effect.Effect<SendReport, SendError | PartialDeliveryFailure>
  /**
   * `send`, started now: the adapter calls that complete without suspending are made here, and a send that completed
   * comes back as an `Exit` (no fiber needed); otherwise as the rest of the send, still to run once (it never repeats
   * a call already made)
   */
  readonly sendNow: (
    entry: SendEntry,
    channel: Channel,
    options: SendOptions
  ) => Effect.Effect<SendReport, SendError | PartialDeliveryFailure>
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

/** Builds a sender; `options` come from config (send timeout, chunk limits and modes). */
export const make = (options: SenderOptions = {}): Context.Tag.Service<Sender> => {
  const timeout = Duration.decode(options.sendTimeout ?? DEFAULT_SEND_TIMEOUT)
  // one watchdog times out every part of this sender that suspends, instead of a timer race per part
  const watch = new DeadlineWatch()
  const plan = (entry: SendPlan.PlanEntry, channel: Channel) => SendPlan.make(entry, channel, options.chunking)

  /** Calls the adapter for one part at once; an `Exit` if the call completed without suspending. */
  const sendPart = (
    entry: SendEntry,
    channel: Channel,
    part: SendPlan.Part,
    partCount: number,
    attempt: number
  ): Effect.Effect<DeliveredPart, SendError> => {
    const method = methodFor(channel, part)
    // content the adapter cannot take will not become sendable by retrying
    if (Either.isLeft(method)) return Exit.fail(new SendError({ message: method.left, retryable: false }))
    const send = method.right
    const ctx = contextFor(entry, part, partCount, attempt)
    const started = send.now === undefined ? send(ctx) : send.now(ctx)
    const delivered = (result: SendResult): DeliveredPart => ({
      index: part.index,
      kind: part.kind as DeliveredPart["kind"],
      messageId: result.messageId,
      result
    })
    // a plugin's Promise still pending is waited for without a fiber; the watchdog times it out
    if (isPendingCall(started)) return Effect.map(awaitCall(started, timeoutFor(channel, part)), delivered)
    // an adapter call that completed at once needs no fiber and no timer
    if (isCompleted(started)) return Exit.map(started, delivered)
    return Effect.map(syncFirstTimeout(started, timeoutFor(channel, part)), delivered)
  }

  /** The per-part timeout of a call that did not complete at once. */
  const timeoutFor = (channel: Channel, part: SendPlan.Part) => ({
    duration: timeout,
    watch,
    onTimeout: () =>
      new SendError({
        message: `${channel.channel}: ${part.kind} part ${part.index} timed out after ${Duration.format(timeout)}`,
        retryable: true
      })
  })

  /**
   * Starts the send at once: every part whose adapter call completes without suspending is sent right here, and the
   * result is an `Exit` when all of them did. Otherwise it is the rest of the send, still to run (the parts already
   * called are never called again). A loop of effects rather than a generator: this runs once per message, and a
   * generator costs more than a no-op send.
   */
  const sendNow = (
    entry: SendEntry,
    channel: Channel,
    sendOptions: SendOptions
  ): Effect.Effect<SendReport, SendError | PartialDeliveryFailure> => {
    const { parts, warnings } = plan(entry, channel)
    const start = Math.min(Math.max(0, entry.partsDelivered), parts.length)
    // best effort: parts that went out in an earlier attempt past a failed one are not sent again
    const already = new Set(entry.deliveredParts ?? [])
    const remaining = already.size === 0 ? parts.slice(start) : parts.slice(start).filter((part) => !already.has(part.index))
    const outcomes: Array<DeliveredPart> = []
    const failures: Array<{ readonly index: number; readonly kind: SendPlan.PartKind; readonly error: SendError }> = []
    const finish = (): Exit.Exit<SendReport, PartialDeliveryFailure> => {
      if (failures.length === 0) {
        return Exit.succeed({ entryId: entry.id, partsTotal: parts.length, partsDelivered: parts.length, outcomes })
      }
      const retryable = failures.every((f) => f.error.retryable)
      const retryAfterMs = retryable
        ? failures.reduce<number | undefined>(
          (max, f) => f.error.retryAfterMs === undefined ? max : Math.max(max ?? 0, f.error.retryAfterMs),
          undefined
        )
        : undefined
      const resumeAt = failures[0]!.index
      const deliveredPast = [...already, ...outcomes.map((o) => o.index)].filter((i) => i > resumeAt).sort((a, b) => a - b)
      return Exit.fail(
        new PartialDeliveryFailure({
          entryId: entry.id,
          partsDelivered: resumeAt,
          ...(deliveredPast.length > 0 ? { deliveredParts: deliveredPast } : {}),
          partsFailed: failures.length,
          errors: failures.map((f) => `part ${f.index} (${f.kind}): ${f.error.message}`),
          retryable,
          ...(retryAfterMs !== undefined ? { retryAfterMs } : {})
        })
      )
    }
    const onSent = (i: number) => (delivered: DeliveredPart) => {
      outcomes.push(delivered)
      return from(i + 1)
    }
    const onFailed = (i: number, part: SendPlan.Part) => (error: SendError) => {
      if (!entry.bestEffort) return Exit.fail(withProgress(error, part.index, part.index))
      failures.push({ index: part.index, kind: part.kind, error })
      return from(i + 1)
    }
    const from = (i: number): Effect.Effect<SendReport, SendError | PartialDeliveryFailure> => {
      const part = remaining[i]
      if (part === undefined) return finish()
      const started = sendPart(entry, channel, part, parts.length, sendOptions.attempt)
      if (isCompleted(started)) {
        if (Exit.isSuccess(started)) return onSent(i)(started.value)
        const failure = Cause.failureOption(started.cause)
        // a defect is not a send failure: it ends the send as it would have ended a running one
        if (Option.isNone(failure)) return started as Exit.Exit<never, never>
        return onFailed(i, part)(failure.value)
      }
      return Effect.matchEffect(started, { onSuccess: onSent(i), onFailure: onFailed(i, part) })
    }
    if (warnings.length === 0) return from(0)
    return Effect.zipRight(
      Effect.forEach(warnings, (warning) => Effect.logWarning(warning), { discard: true }).pipe(
        Effect.annotateLogs({ channel: entry.channel, entryId: entry.id })
      ),
      Effect.suspend(() => from(0))
    )
  }

  const send = (
    entry: SendEntry,
    channel: Channel,
    sendOptions: SendOptions
  ): Effect.Effect<SendReport, SendError | PartialDeliveryFailure> => Effect.suspend(() => sendNow(entry, channel, sendOptions))
  // no span or log annotation per send: on this hot path they cost more than a no-op adapter call
  // (the caller's `Outbox.deliver` / `Outbox.runRecoveryPass` spans cover it)

  const reconcile = (entry: SendEntry, channel: Channel, sendOptions: SendOptions): Effect.Effect<ReconcileResult> =>
    Option.match(channel.reconcile, {
      onNone: () => Effect.succeed<ReconcileResult>("unknown"),
      onSome: (ask) => {
        const { parts } = plan(entry, channel)
        const part = parts[Math.max(0, entry.partsDelivered)]
        if (part === undefined) return Effect.succeed<ReconcileResult>("sent")
        return ask(contextFor(entry, part, parts.length, sendOptions.attempt)).pipe(
          Effect.timeoutFail({
            duration: timeout,
            onTimeout: () => new SendError({ message: `reconcile timed out after ${Duration.format(timeout)}`, retryable: true })
          }),
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

  return { plan, send, sendNow, reconcile }
}

/** The sender as a layer. */
export const layer = (options: SenderOptions = {}): Layer.Layer<Sender> => Layer.succeed(Sender, make(options))
