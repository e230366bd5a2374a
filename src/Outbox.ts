/**
 * The public facade: `deliver` (write-ahead, then send, then ack), `enqueue`, admin reads and writes, and the
 * recovery pass the worker repeats. The live path and recovery run the same send-and-record program on a
 * stored entry, so a recovered delivery makes exactly the adapter calls the live one would have made.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import * as FiberRefs from "effect/FiberRefs"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Ref from "effect/Ref"
import * as Runtime from "effect/Runtime"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Tracer from "effect/Tracer"
import type { Channel } from "./ChannelAdapter.js"
import { ChannelRegistry } from "./ChannelRegistry.js"
import type { EntryId, EntryState, OutboxEntry, OutboxStats, TerminalReason } from "./Delivery.js"
import { decodeRequest } from "./Delivery.js"
import type { EntryNotFound, InvalidRequest, LeaseLost, SendError, TransitionRejected, UnknownChannel } from "./DeliveryError.js"
import { AckFailed, PartialDeliveryFailure, SendFailed, StoreError } from "./DeliveryError.js"
import { isCompleted, isDone } from "./internal/completed.js"
import * as GroupCommit from "./internal/groupCommit.js"
import { makeEntryIdGenerator } from "./internal/ids.js"
import * as Metrics from "./Metrics.js"
import { OutboxConfig } from "./OutboxConfig.js"
import type { BatchWriteResult, ClaimedEntry, FailureRecord, InsertResult, ListFilter } from "./OutboxRepo.js"
import { OutboxRepo } from "./OutboxRepo.js"
import * as RetryPolicy from "./RetryPolicy.js"
import type { DeliveredPart, SendReport } from "./Sender.js"
import * as Sender from "./Sender.js"

/** What `deliver` did. */
export type DeliveryOutcome = Data.TaggedEnum<{
  /** sent and acked */
  Delivered: { readonly entryId: EntryId; readonly results: ReadonlyArray<DeliveredPart> }
  /** stored, but an older reply of the same conversation is pending: the worker delivers both in order */
  Deferred: { readonly entryId: EntryId; readonly reason: "conversation_busy" }
  /** the idempotency key was seen before: nothing was sent */
  Duplicate: { readonly entryId: EntryId; readonly state: EntryState }
}>
/** Constructors and matchers for `DeliveryOutcome`. */
export const DeliveryOutcome = Data.taggedEnum<DeliveryOutcome>()

/** What happened to a row, as a stream for observers. */
export type OutboxEvent = Data.TaggedEnum<{
  enqueued: { readonly entryId: EntryId; readonly channel: string }
  sent: { readonly entryId: EntryId; readonly channel: string; readonly parts: number }
  delivered: { readonly entryId: EntryId; readonly channel: string }
  retry_scheduled: { readonly entryId: EntryId; readonly attemptCount: number; readonly retryAt: number; readonly error: string }
  terminal: { readonly entryId: EntryId; readonly reason: TerminalReason; readonly error: string }
  expired: { readonly entryId: EntryId }
}>
/** Constructors and matchers for `OutboxEvent`. */
export const OutboxEvent = Data.taggedEnum<OutboxEvent>()

/** What one recovery pass did. */
export interface RecoveryReport {
  readonly expired: number
  readonly claimed: number
  readonly delivered: number
  readonly retried: number
  readonly terminal: number
  /** worker sends still running when the pass ended (a slow channel; they finish in the background) */
  readonly inFlight: number
  readonly quarantined: number
  readonly acksFlushed: number
  readonly possibleDuplicates: number
  readonly pruned: number
}

/** A request as callers pass it: the plain-object form of `DeliveryRequest` (decoded and validated on entry). */
export type DeliverInput = unknown

/** The outbox service. */
export interface OutboxShape {
  /** Write-ahead delivery: store (leased to this process), send, ack. Failures are recorded before they are returned. */
  readonly deliver: (
    request: DeliverInput
  ) => Effect.Effect<
    DeliveryOutcome,
    InvalidRequest | UnknownChannel | SendFailed | PartialDeliveryFailure | AckFailed | StoreError
  >
  /** Stores the request for the worker to send; returns its id (the existing id for a repeated idempotency key). */
  readonly enqueue: (request: DeliverInput) => Effect.Effect<EntryId, InvalidRequest | UnknownChannel | StoreError>
  /** Reads one entry. */
  readonly get: (id: EntryId) => Effect.Effect<Option.Option<OutboxEntry>, StoreError>
  /** Admin listing, newest first. */
  readonly list: (filter: ListFilter) => Effect.Effect<ReadonlyArray<OutboxEntry>, StoreError>
  /** Counts by state and channel, and the oldest pending age. */
  readonly stats: Effect.Effect<OutboxStats, StoreError>
  /** Admin retry of a failed_terminal or expired entry: queued again, attempts reset, a fresh TTL. */
  readonly retry: (id: EntryId) => Effect.Effect<void, StoreError | EntryNotFound | TransitionRejected>
  /** One worker pass: flush pending acks, expire, claim and deliver within the budget, prune when due. */
  readonly runRecoveryPass: Effect.Effect<RecoveryReport, StoreError>
  /** A worker pass that also stops claiming once `stop` succeeds (used on shutdown). */
  readonly runRecoveryPassUntil: (stop: Effect.Effect<boolean>) => Effect.Effect<RecoveryReport, StoreError>
  /** Waits until no worker send is running. */
  readonly awaitWorkerSends: Effect.Effect<void>
  /** Interrupts the running worker sends (their rows stay leased and are reclaimed by this node's next start). */
  readonly interruptWorkerSends: Effect.Effect<void>
  /** Deletes delivered and failed rows past their retention; returns how many. */
  readonly prune: Effect.Effect<number, StoreError>
  /** Makes this node's earlier boots' in-flight rows claimable at once; returns how many. */
  readonly reclaimPreviousBoots: Effect.Effect<number, StoreError>
  /** Events of this process's outbox (a slow subscriber loses the oldest events past 10,000). */
  readonly events: Stream.Stream<OutboxEvent>
  /** This process's lease owner: `${nodeId}/${bootId}`. */
  readonly owner: string
}

/** The `Outbox` service tag. */
export class Outbox extends Context.Tag("effect-outbox/Outbox")<Outbox, OutboxShape>() {}

type Recovered =
  | Attempt
  | { readonly _tag: "Terminal" }
  /** the row could not be handled now (store trouble, lease lost); it stays leased and is retried after its lease */
  | { readonly _tag: "Errored" }

/**
 * A new row for the writer, with its channel, its caller's runtime and `deliver`'s span: a live send runs with the
 * caller's context, under that span.
 */
interface Write {
  readonly entry: OutboxEntry
  readonly channel: Channel
  readonly runtime: Runtime.Runtime<never>
  /** the caller's clock: the send's TTL check reads it, as it would in the caller's fiber */
  readonly clock: Clock.Clock
  readonly span: Tracer.Span | undefined
}

/** What the writer did with a row. */
type Written =
  /** stored and not sent: enqueued, deferred behind its conversation, or a repeated idempotency key */
  | { readonly _tag: "Stored"; readonly result: InsertResult }
  /** its send suspended: the caller waits for the fiber, which acks a sent row itself */
  | { readonly _tag: "Sending"; readonly entry: OutboxEntry; readonly fiber: Fiber.RuntimeFiber<Attempt, StoreError | AckFailed> }
  /** its send finished at once; `ack` is the writer's batched ack of a sent row (true: written, false: lease lost) */
  | {
    readonly _tag: "Done"
    readonly entry: OutboxEntry
    readonly attempt: Exit.Exit<Attempt, StoreError | AckFailed>
    readonly ack: Either.Either<boolean, StoreError> | undefined
  }

/** A row the adapter accepted, and the parts to record when it is acked. */
interface SentRow {
  readonly entry: OutboxEntry
  readonly partsDelivered: number
}

type RecoveredRow = Recovered & { readonly possibleDuplicate?: boolean }

/** Where a worker row's send leaves its outcome when it finishes while the pass is still starting it. */
interface Handoff {
  inline: boolean
  outcome: RecoveredRow | undefined
}

type Attempt =
  | { readonly _tag: "Sent"; readonly report: SendReport }
  | { readonly _tag: "Failed"; readonly error: SendFailed | PartialDeliveryFailure }
  | { readonly _tag: "Expired" }

const EVENT_BUFFER = 10_000

// the span's source location would be a line of this file, not the caller's; capturing it costs a stack trace per call
const SPAN_OPTIONS = { captureStackTrace: false } as const

const errorMessage = (u: unknown): string => (u instanceof Error ? u.message : String(u))

/** Builds the outbox in a scope (its group-commit writers live as long as the scope). */
export const make: Effect.Effect<OutboxShape, never, OutboxRepo | ChannelRegistry | OutboxConfig | Scope.Scope> = Effect.gen(
  function*() {
    const repo = yield* OutboxRepo
    const registry = yield* ChannelRegistry
    const config = yield* OutboxConfig
    const ids = yield* makeEntryIdGenerator
    const owner = `${config.nodeId}/${yield* ids.next}`
    const sender = Sender.make({ sendTimeout: config.sendTimeout, chunking: config.chunking })
    const policy = RetryPolicy.fromConfig(config)
    const leaseMs = Duration.toMillis(config.leaseDuration)
    const maxAgeMs = Duration.toMillis(config.maxAge)
    const events = yield* PubSub.sliding<OutboxEvent>(EVENT_BUFFER)
    const emit = (event: OutboxEvent) => PubSub.publish(events, event)
    /** Publishes at once, with no effect step while the buffer has room; when it is full, `emit` slides it. */
    const emitNow = (event: OutboxEvent): Effect.Effect<void> => (events.unsafeOffer(event) ? Effect.void : Effect.asVoid(emit(event)))
    // sent rows whose ack is not written yet (it failed, or waits for a caller's retries): the message went out, so
    // this process never sends the row again; the worker writes them
    const pendingAcks = yield* Ref.make(new Map<EntryId, SentRow>())
    const keepAcks = (rows: ReadonlyArray<SentRow>) =>
      Ref.update(pendingAcks, (m) => {
        const next = new Map(m)
        for (const row of rows) next.set(row.entry.id, row)
        return next
      })
    const dropAcks = (ids: ReadonlyArray<EntryId>) =>
      Ref.update(pendingAcks, (m) => {
        const next = new Map(m)
        for (const id of ids) next.delete(id)
        return next
      })
    const lastPrune = yield* Ref.make<number | null>(null)

    // every write-ahead insert goes through one group-commit writer; see `writeAndSend`
    const writes = yield* GroupCommit.make((items: ReadonlyArray<Write>) => writeAndSend(items), config.writeBatch)
    const ackBatch = yield* GroupCommit.make(
      (items: ReadonlyArray<{ readonly id: EntryId; readonly partsDelivered: number; readonly now: number }>) =>
        Effect.map(
          repo.ack(owner, items, Math.max(...items.map((i) => i.now))),
          (result) => items.map((i) => !result.rejected.includes(i.id))
        ),
      config.writeBatch
    )
    const ackSchedule = Schedule.exponential(config.ackRetryBase).pipe(Schedule.intersect(Schedule.recurs(config.ackRetries)))

    const newEntry = (request: Effect.Effect.Success<ReturnType<typeof decodeRequest>>, now: number, live: boolean) =>
      Effect.map(ids.at(now), (id): OutboxEntry => ({
        id,
        channel: request.channel,
        to: request.to,
        ...(request.accountId !== undefined ? { accountId: request.accountId } : {}),
        ...(request.threadId !== undefined ? { threadId: request.threadId } : {}),
        ...(request.replyToId !== undefined ? { replyToId: request.replyToId } : {}),
        payloads: request.payloads,
        kind: request.kind,
        bestEffort: request.bestEffort,
        ...(request.idempotencyKey !== undefined ? { idempotencyKey: request.idempotencyKey } : {}),
        ...(request.silent !== undefined ? { silent: request.silent } : {}),
        ...(request.metadata !== undefined ? { metadata: request.metadata } : {}),
        state: live ? "in_flight" : "queued",
        attemptCount: 0,
        partsDelivered: 0,
        enqueuedAt: now,
        nextAttemptAt: live ? now + leaseMs : now,
        lastAttemptAt: live ? now : null,
        deliveredAt: null,
        expiresAt: now + maxAgeMs,
        lastError: null,
        terminalReason: null,
        leaseOwner: live ? owner : null,
        leaseExpiresAt: live ? now + leaseMs : null,
        updatedAt: now
      }))

    /**
     * Decodes, resolves the channel, and hands the new row to the writer (leased to us, and sent, when `live`, in the
     * caller's runtime with `span` as its parent span).
     */
    const submit = (input: DeliverInput, live: boolean, span?: Tracer.Span) =>
      // effects chained rather than a generator on the per-message path (see Sender.send)
      Effect.flatMap(decodeRequest(input), (request) =>
        Effect.flatMap(registry.get(request.channel), (channel) =>
          // the time and the caller's runtime (`Effect.runtime`) read in one step
          Effect.withFiberRuntime<Written, StoreError>((fiber, status) => {
            const clock = Context.get(fiber.currentDefaultServices, Clock.Clock)
            const runtime = Runtime.make({ context: fiber.currentContext, fiberRefs: fiber.getFiberRefs(), runtimeFlags: status.runtimeFlags })
            return Effect.flatMap(
              newEntry(request, clock.unsafeCurrentTimeMillis(), live),
              (entry) => writes.submit({ entry, channel, runtime, clock, span })
            )
          })))

    /** The caller's runtime with `span` as the parent span of what runs in it. */
    const underSpan = (runtime: Runtime.Runtime<never>, span: Tracer.Span): Runtime.Runtime<never> =>
      Runtime.make({
        context: Context.add(runtime.context, Tracer.ParentSpan, span),
        fiberRefs: runtime.fiberRefs,
        runtimeFlags: runtime.runtimeFlags
      })

    /** Counts and announces a stored row (in the caller's fiber, which holds its metric labels). */
    const onEnqueued = (entry: OutboxEntry) =>
      FiberRef.getWith(FiberRef.currentMetricLabels, (labels) => countEnqueued(entry, labels))

    /** Counts a stored row under `labels` and announces it; the announcement is done at once while the buffer has room. */
    const countEnqueued = (entry: OutboxEntry, labels: ReadonlyArray<MetricLabel.MetricLabel>): Effect.Effect<void> => {
      Metrics.enqueued.unsafeUpdate(1, labels)
      return emitNow(OutboxEvent.enqueued({ entryId: entry.id, channel: entry.channel }))
    }

    const recordTerminal = (entry: OutboxEntry, reason: TerminalReason, error: string) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        yield* repo.recordFailure(entry.id, owner, { _tag: "Terminal", error, reason, partsDelivered: entry.partsDelivered }, now)
        yield* Metric.increment(Metrics.terminal(reason))
        yield* emit(OutboxEvent.terminal({ entryId: entry.id, reason, error }))
        yield* Effect.logWarning(`entry ${entry.id} failed for good (${reason}): ${error}`)
      })

    /** Records a failed send (retry at the policy's next delay, or terminal) and builds the caller's error. */
    const recordSendFailure = (entry: OutboxEntry, error: SendError | PartialDeliveryFailure) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const attempt = entry.attemptCount + 1
        const retryable = error._tag === "SendError" ? error.retryable : error.retryable ?? true
        const partsDelivered = Math.max(entry.partsDelivered, error.partsDelivered ?? entry.partsDelivered)
        const deliveredParts = error._tag === "PartialDeliveryFailure" && error.deliveredParts !== undefined
          ? { deliveredParts: error.deliveredParts }
          : {}
        let failure: FailureRecord
        if (!retryable) {
          failure = { _tag: "Terminal", error: error.message, reason: "permanent_error", partsDelivered }
        } else if (entry.kind !== "final") {
          // recovery never sends a tool/block row, so waiting for a retry would only hold up the conversation
          failure = { _tag: "Terminal", error: error.message, reason: "non_final_recovery_skip", partsDelivered }
        } else if (error.retryAfterMs !== undefined) {
          // rate limiting is not failure: the channel's delay, and no attempt used up
          failure = {
            _tag: "Retryable",
            error: error.message,
            retryAt: now + Math.round(error.retryAfterMs),
            countsAttempt: false,
            partsDelivered,
            ...deliveredParts,
            maxAttempts: config.maxAttempts
          }
        } else {
          const delay = yield* RetryPolicy.delayAfterAttempt(policy, attempt)
          failure = {
            _tag: "Retryable",
            error: error.message,
            // jitter makes fractional milliseconds; times are stored as integer millis
            retryAt: now + Math.round(Option.match(delay, { onNone: () => 0, onSome: Duration.toMillis })),
            countsAttempt: true,
            partsDelivered,
            ...deliveredParts,
            // the policy has the last word on whether another attempt follows
            maxAttempts: Option.isSome(delay) ? config.maxAttempts : attempt
          }
        }
        const recorded = yield* repo.recordFailure(entry.id, owner, failure, now).pipe(
          Effect.catchTag("LeaseLost", (e) =>
            Effect.fail(new StoreError({ operation: "recordFailure", message: e.message, cause: e })))
        )
        const willRetryAt = recorded.state === "failed_retryable" && recorded.nextAttemptAt !== null
          ? { willRetryAt: recorded.nextAttemptAt }
          : {}
        if (recorded.state === "failed_retryable") {
          yield* Metric.increment(Metrics.retryScheduled)
          yield* emit(OutboxEvent.retry_scheduled({
            entryId: entry.id,
            attemptCount: recorded.attemptCount,
            retryAt: recorded.nextAttemptAt ?? now,
            error: error.message
          }))
          yield* Effect.logInfo(`entry ${entry.id} failed (attempt ${attempt}), retry at ${recorded.nextAttemptAt}: ${error.message}`)
        } else {
          const reason = recorded.terminalReason ?? "permanent_error"
          yield* Metric.increment(Metrics.terminal(reason))
          yield* emit(OutboxEvent.terminal({ entryId: entry.id, reason, error: error.message }))
          yield* Effect.logWarning(`entry ${entry.id} failed for good (${reason}) after attempt ${attempt}: ${error.message}`)
        }
        return error._tag === "SendError"
          ? new SendFailed({
            entryId: entry.id,
            channel: entry.channel,
            retryable: recorded.state === "failed_retryable",
            ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
            message: error.message,
            ...willRetryAt
          })
          : new PartialDeliveryFailure({
            entryId: entry.id,
            partsDelivered: error.partsDelivered,
            ...(error.deliveredParts !== undefined ? { deliveredParts: error.deliveredParts } : {}),
            partsFailed: error.partsFailed,
            errors: error.errors,
            retryable: recorded.state === "failed_retryable",
            ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
            ...willRetryAt
          })
      })

    // Sends that suspended, by entry id, with the fiber running each and when its lease was last set. One keeper fiber
    // renews the lease of any send running longer than half the lease, so the worker cannot take the row however
    // slow the channel is (one fiber for all sends: forking a renewal fiber per send cost more than the send itself).
    // Only a send that suspends is registered (by the writer or the pass that started it): one that completes at once
    // needs no renewal, and a finalizer per send cost more effect steps than the send. A row's end takes it out; the
    // keeper takes out one whose fiber ended without that (interrupted, or a defect), so its lease lapses. The keeper
    // runs only while a send is registered, so an idle outbox keeps no timer (a gateway's tests that move a TestClock by
    // hours would otherwise wake it every quarter lease).
    const sending = new Map<EntryId, { readonly entry: OutboxEntry; readonly fiber: Fiber.RuntimeFiber<unknown, unknown>; renewedAt: number }>()
    const trackSuspended = (entry: OutboxEntry, fiber: Fiber.RuntimeFiber<unknown, unknown>) =>
      sending.set(entry.id, { entry, fiber, renewedAt: (entry.leaseExpiresAt ?? leaseMs) - leaseMs })
    const renewLeases = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      for (const [id, inFlight] of sending) {
        if (inFlight.fiber.unsafePoll() !== null) {
          sending.delete(id)
          continue
        }
        if (now - inFlight.renewedAt < leaseMs / 2) continue
        inFlight.renewedAt = now
        yield* repo.recordProgress(id, owner, { partsDelivered: inFlight.entry.partsDelivered, leaseUntil: now + leaseMs }, now).pipe(
          Effect.catchAll((e) => Effect.logWarning(`could not renew the lease of entry ${id}: ${e.message}`))
        )
      }
    })
    const scope = yield* Effect.scope
    let keeper: object | null = null
    /** Every quarter lease, renews what is due; ends once nothing is registered (checked and cleared in one step). */
    const keep = (self: object): Effect.Effect<void> =>
      Effect.flatMap(Effect.zipRight(Effect.sleep(Duration.millis(leaseMs / 4)), renewLeases), () => {
        if (sending.size > 0) return keep(self)
        if (keeper === self) keeper = null
        return Effect.void
      })
    /** Starts the keeper if a send is registered and none runs; the writer and the pass call it after registering. */
    const keepLeases: Effect.Effect<void> = Effect.suspend(() => {
      if (keeper !== null || sending.size === 0) return Effect.void
      const self = {}
      keeper = self
      // interruptible whatever region starts it, so closing the scope stops it; a keeper that dies lets the next start
      const ended = Effect.sync(() => {
        if (keeper === self) keeper = null
      })
      return Effect.asVoid(Effect.forkIn(Effect.interruptible(keep(self)).pipe(Effect.onExit(() => ended)), scope))
    })

    /** A sent row's attempt, its `sent` event published: at once (an `Exit`) while the event buffer has room. */
    const sentAttempt = (entry: OutboxEntry, report: SendReport): Effect.Effect<Attempt> => {
      const attempt: Attempt = { _tag: "Sent", report }
      const announced = emitNow(OutboxEvent.sent({ entryId: entry.id, channel: entry.channel, parts: report.outcomes.length }))
      return isCompleted(announced) ? Exit.succeed(attempt) : Effect.as(announced, attempt)
    }

    /**
     * TTL check at `now`, then send, then record a failure; success is acked by the caller (lease renewal: see
     * `sending`). Started at once: when the adapter answered without suspending and nothing else needs an effect, the
     * result is an `Exit` and the row needs no fiber; otherwise it is the rest of the attempt, still to run. Effects
     * chained rather than a generator: this runs once per message (see Sender.send).
     */
    const attemptNow = (entry: OutboxEntry, channel: Channel, now: number): Effect.Effect<Attempt, StoreError> => {
      if (entry.expiresAt !== null && entry.expiresAt <= now && config.expireAction === "fail") return expireUnsent(entry, now)
      const sent = sender.sendNow(entry, channel, { attempt: entry.attemptCount + 1 })
      if (isDone(sent)) return sentAttempt(entry, sent.value)
      return Effect.matchEffect(sent, {
        onSuccess: (report) => sentAttempt(entry, report),
        onFailure: (error) => Effect.map(recordSendFailure(entry, error), (recorded) => ({ _tag: "Failed", error: recorded }) as const)
      })
    }

    /** `attemptNow` at the time it runs. */
    const attemptSend = (entry: OutboxEntry, channel: Channel): Effect.Effect<Attempt, StoreError> =>
      Effect.clockWith((clock) => attemptNow(entry, channel, clock.unsafeCurrentTimeMillis()))

    /** A leased row found past its TTL before its send: expired, not sent. */
    const expireUnsent = (entry: OutboxEntry, now: number): Effect.Effect<Attempt, StoreError> =>
      Effect.gen(function*() {
        const expired = yield* repo.expire(now, { ids: [entry.id], owner })
        if (expired.length > 0) {
          yield* Metric.increment(Metrics.expired)
          yield* emit(OutboxEvent.expired({ entryId: entry.id }))
          yield* Effect.logWarning(`entry ${entry.id} expired before sending (enqueued ${now - entry.enqueuedAt} ms ago)`)
        }
        return { _tag: "Expired" } as const
      })

    /** Counts and measures delivered rows under the given metric labels (the context of the rows' caller). */
    const countDelivered = (entries: ReadonlyArray<OutboxEntry>, now: number, labels: ReadonlyArray<MetricLabel.MetricLabel>) => {
      Metrics.delivered.unsafeUpdate(entries.length, labels)
      for (const entry of entries) Metrics.deliveryLatency.unsafeUpdate(Math.max(0, now - entry.enqueuedAt), labels)
    }
    const announceDelivered = (entries: ReadonlyArray<OutboxEntry>) =>
      PubSub.publishAll(events, entries.map((entry) => OutboxEvent.delivered({ entryId: entry.id, channel: entry.channel })))

    /** Counts, measures and announces delivered rows: one metric update and one publish for a whole batch. */
    const onDelivered = (entries: ReadonlyArray<OutboxEntry>, now: number): Effect.Effect<void> =>
      entries.length === 0 ? Effect.void : Effect.zipRight(
        // the metric effects would read the labels once per row; a batch reads them once
        FiberRef.getWith(FiberRef.currentMetricLabels, (labels) => Effect.sync(() => countDelivered(entries, now, labels))),
        announceDelivered(entries)
      )

    /**
     * Acks one live delivery through the group-commit writer, retried on the ack schedule. `firstTry` is the failure
     * of a write already made for it (the writer's batched ack): it counts as the schedule's first try. Effects chained
     * rather than a generator, and the retry set up only once a try failed: a suspended send acks itself this way.
     */
    const ackLive = (entry: OutboxEntry, partsDelivered: number, firstTry?: StoreError): Effect.Effect<void, AckFailed> =>
      Effect.clockWith((clock) => {
        const now = clock.unsafeCurrentTimeMillis()
        const submit = ackBatch.submit({ id: entry.id, partsDelivered, now })
        // the schedule's first try is the one that failed; the schedule waits, then writes again
        const retried = (failed: StoreError) => {
          let replay: StoreError | undefined = failed
          const write = Effect.suspend(() => {
            if (replay === undefined) return submit
            const first = replay
            replay = undefined
            return Effect.fail(first)
          })
          return Effect.retry(write, ackSchedule)
        }
        const written = firstTry === undefined ? Effect.catchAll(submit, retried) : retried(firstTry)
        return Effect.flatMap(Effect.either(written), (result) => {
          const done = Either.isRight(result) && result.right ? onDelivered([entry], now) : ackFailed(entry, partsDelivered, result)
          // the writer kept a failed batched ack for the worker; written now, it is no longer needed
          return firstTry !== undefined && Either.isRight(result) ? Effect.zipRight(dropAcks([entry.id]), done) : done
        })
      })

    const ackFailed = (entry: OutboxEntry, partsDelivered: number, written: Either.Either<boolean, StoreError>) =>
      Effect.gen(function*() {
        const message = Either.isLeft(written)
          ? `sent, but the ack write failed: ${written.left.message}`
          : "sent, but the row is no longer leased to this process (another worker may send it again)"
        if (Either.isLeft(written)) yield* keepAcks([{ entry, partsDelivered }])
        yield* Metric.increment(Metrics.ackFailures)
        yield* Effect.logError(`entry ${entry.id}: ${message}`)
        return yield* Effect.fail(new AckFailed({ entryId: entry.id, message }))
      })

    /**
     * The writer's batch: one transaction inserts every row (write-ahead), then each live row's send starts at once in a
     * fiber of its own, with its caller's context. Sends that finish without suspending (the adapter answered at once)
     * are acked together in one more write; a send that suspends is handed back to its caller, who waits for it and
     * acks it. Failed sends are recorded by the send itself, as on every path.
     */
    const writeAndSend = (items: ReadonlyArray<Write>) =>
      Effect.gen(function*() {
        const stored = yield* repo.insert(items.map((item) => item.entry), { deferBusyConversations: true })
        const written: Array<Written> = []
        const sent: Array<{ readonly at: number; readonly id: EntryId; readonly partsDelivered: number }> = []
        for (let i = 0; i < items.length; i++) {
          const result = stored[i]!
          if (result._tag !== "Inserted" || result.entry.state !== "in_flight") {
            written.push({ _tag: "Stored", result })
            continue
          }
          const item = items[i]!
          let exit: Exit.Exit<Attempt, StoreError | AckFailed> | null
          const started = startLive(item, result.entry)
          if (isCompleted(started)) exit = started
          else {
            // it suspends, or has effects to run: the rest runs in a fiber of its own, in its caller's runtime under
            // `deliver`'s span (made here, not by the caller: held through the wait for the writer, it cost more)
            const handoff = { inline: true }
            const runtime = item.span === undefined ? item.runtime : underSpan(item.runtime, item.span)
            const fiber = Runtime.runFork(runtime)(liveSend(result.entry, started, handoff))
            handoff.inline = false
            exit = fiber.unsafePoll()
            if (exit === null) {
              trackSuspended(result.entry, fiber)
              written.push({ _tag: "Sending", entry: result.entry, fiber })
              continue
            }
          }
          written.push({ _tag: "Done", entry: result.entry, attempt: exit, ack: undefined })
          if (Exit.isSuccess(exit) && exit.value._tag === "Sent") {
            sent.push({ at: i, id: result.entry.id, partsDelivered: exit.value.report.partsDelivered })
          }
        }
        yield* keepLeases // starts only if a send above suspended and no keeper runs
        if (sent.length > 0) {
          const now = yield* Clock.currentTimeMillis
          const acked = yield* Effect.either(repo.ack(owner, sent, now))
          const rejected = new Set(Either.isRight(acked) ? acked.right.rejected : [])
          const delivered: Array<OutboxEntry> = []
          for (const { at, id } of sent) {
            const done = written[at] as Extract<Written, { readonly _tag: "Done" }>
            const ack = Either.map(acked, () => !rejected.has(id))
            written[at] = { ...done, ack }
            if (Either.isRight(ack) && ack.right) {
              // counted here, under its caller's metric labels, so a caller that is gone is counted too
              countDelivered([done.entry], now, FiberRefs.getOrDefault(items[at]!.runtime.fiberRefs, FiberRef.currentMetricLabels))
              delivered.push(done.entry)
            }
          }
          yield* announceDelivered(delivered)
          if (Either.isLeft(acked)) {
            // kept until the callers' retries write them: if a caller is gone, the worker does
            yield* keepAcks(sent.map(({ at, partsDelivered }) => ({ entry: items[at]!.entry, partsDelivered })))
          }
        }
        return written
      })

    /**
     * A live row's send, started by the writer at once: counted and announced under its caller's metric labels (before
     * the send starts, so observers see enqueued, then sent), then attempted on the caller's clock. An `Exit` when it
     * completed there; otherwise the rest, for `liveSend`. A defect thrown here (a bug in a send plan, say) ends
     * this row alone, as it would have ended the row's fiber.
     */
    const startLive = (item: Write, entry: OutboxEntry): Effect.Effect<Attempt, StoreError> => {
      try {
        const announced = countEnqueued(entry, FiberRefs.getOrDefault(item.runtime.fiberRefs, FiberRef.currentMetricLabels))
        const attempt = () => attemptNow(entry, item.channel, item.clock.unsafeCurrentTimeMillis())
        return isCompleted(announced) ? attempt() : Effect.zipRight(announced, Effect.suspend(attempt))
      } catch (defect) {
        return Exit.die(defect)
      }
    }

    /**
     * The rest of a live row's send, in a fiber of its own. One that finishes while the writer starts it leaves its ack
     * to the writer's batch; one that suspends acks itself when it ends, so its row is acked even if its caller is gone.
     */
    const liveSend = (entry: OutboxEntry, started: Effect.Effect<Attempt, StoreError>, handoff: { readonly inline: boolean }) =>
      Effect.tap(started, (attempt) => {
        sending.delete(entry.id) // sent or failed: no more renewals (an ack or failure write follows)
        return handoff.inline || attempt._tag !== "Sent" ? Effect.void : ackLive(entry, attempt.report.partsDelivered)
      })

    /**
     * The caller's side of a live send: waits for it if it suspended, and acks it if the writer could not (under
     * `span`, the caller's `Outbox.deliver` span, as the send was).
     */
    const finishLive = (written: Extract<Written, { readonly _tag: "Sending" | "Done" }>, span: Tracer.Span) => {
      const { entry } = written
      const attempted = written._tag === "Done"
        ? written.attempt
        // awaited, not joined: a join would copy the send fiber's context (its parent span) into the caller's fiber;
        // the caller gave up: its send must not go on without it
        : Effect.flatten(Fiber.await(written.fiber)).pipe(Effect.onInterrupt(() => Fiber.interrupt(written.fiber)))
      return Effect.flatMap(attempted, (attempt): Effect.Effect<DeliveryOutcome, SendFailed | PartialDeliveryFailure | AckFailed> => {
        switch (attempt._tag) {
          case "Expired":
            return Effect.fail(
              new SendFailed({ entryId: entry.id, channel: entry.channel, retryable: false, message: "expired before sending" })
            )
          case "Failed":
            return Effect.fail(attempt.error)
          case "Sent": {
            const { partsDelivered } = attempt.report
            const delivered = DeliveryOutcome.Delivered({ entryId: entry.id, results: attempt.report.outcomes })
            if (written._tag === "Sending") return Effect.succeed(delivered) // it acked itself
            const ack = written.ack
            if (ack !== undefined && Either.isRight(ack) && ack.right) return Effect.succeed(delivered) // acked and counted by the writer
            const acked = ack === undefined
              ? ackLive(entry, partsDelivered)
              : Either.isLeft(ack)
              ? ackLive(entry, partsDelivered, ack.left)
              : ackFailed(entry, partsDelivered, ack)
            return Effect.as(Effect.withParentSpan(acked, span), delivered)
          }
        }
      })
    }

    const deliver: OutboxShape["deliver"] = (input) =>
      // The span is the parent of the row's send (its adapter calls, spans and logs) and of the caller's ack retries,
      // not of this whole fiber: nothing else here runs user code or logs, and making it this fiber's parent span
      // (`Effect.withSpan`) cost about a fifth of a delivery at 512 concurrent callers.
      Effect.useSpan("Outbox.deliver", SPAN_OPTIONS, (span) =>
        Effect.flatMap(submit(input, true, span), (written) => {
          if (written._tag !== "Stored") return finishLive(written, span)
          const { entry } = written.result
          if (written.result._tag === "Duplicate") return Effect.succeed(DeliveryOutcome.Duplicate({ entryId: entry.id, state: entry.state }))
          return Effect.as(onEnqueued(entry), DeliveryOutcome.Deferred({ entryId: entry.id, reason: "conversation_busy" }))
        }))

    const enqueue: OutboxShape["enqueue"] = (input) =>
      Effect.gen(function*() {
        const written = yield* submit(input, false)
        // an enqueued row is never sent by the writer
        const { result } = written as Extract<Written, { readonly _tag: "Stored" }>
        if (result._tag === "Inserted") yield* onEnqueued(result.entry)
        return result.entry.id
      }).pipe(Effect.withSpan("Outbox.enqueue", SPAN_OPTIONS))

    const prune = Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const result = yield* repo.prune(now, {
        deliveredMs: Duration.toMillis(config.deliveredRetention),
        terminalMs: Duration.toMillis(config.terminalRetention)
      })
      yield* Ref.set(lastPrune, now)
      if (result.delivered + result.terminal > 0) {
        yield* Effect.logInfo(`pruned ${result.delivered} delivered and ${result.terminal} failed/expired rows`)
      }
      return result.delivered + result.terminal
    }).pipe(Effect.withSpan("Outbox.prune", SPAN_OPTIONS))

    /** One row's store trouble must not sink the batch: it is logged, and the others are still acked. */
    const orErrored = (claimed: ClaimedEntry, handling: Effect.Effect<RecoveredRow, StoreError | LeaseLost>): Effect.Effect<RecoveredRow> =>
      Effect.catchAll(handling, (error) =>
        Effect.as(Effect.logError(`recovery of entry ${claimed.entry.id} failed: ${error.message}`), { _tag: "Errored" } as const))

    /**
     * The worker's handling of one claimed row, started at once (a `Sent` row is acked by the caller). The common row
     * (a final reply of a known channel, not reclaimed from a crash, no ack pending in `pending`) goes straight to its
     * send at `now`; when that completed without suspending the result is an `Exit` and the row needs no fiber.
     * Otherwise it is the rest of the handling, still to run. A defect thrown here ends this row alone.
     */
    const startRecovery = (claimed: ClaimedEntry, pending: ReadonlyMap<EntryId, SentRow>, now: number): Effect.Effect<RecoveredRow> => {
      try {
        const { entry } = claimed
        if (pending.has(entry.id) || entry.kind !== "final" || claimed.reclaimed) return orErrored(claimed, recoverAny(claimed))
        const channel = registry.get(entry.channel)
        if (!isCompleted(channel)) {
          return orErrored(claimed, Effect.matchEffect(channel, {
            onFailure: () => recoverAny(claimed),
            onSuccess: (found) => attemptSend(entry, found)
          }))
        }
        if (Exit.isFailure(channel)) return orErrored(claimed, recoverAny(claimed))
        const attempt = attemptNow(entry, channel.value, now)
        return isDone(attempt) ? Exit.succeed(attempt.value) : orErrored(claimed, attempt)
      } catch (defect) {
        return Exit.die(defect)
      }
    }

    /** Any claimed row: an ack still pending, a progress message, an unknown channel, a row reclaimed from a crash. */
    const recoverAny = (claimed: ClaimedEntry): Effect.Effect<RecoveredRow, StoreError | LeaseLost> =>
      Effect.gen(function*() {
        const { entry, reclaimed } = claimed
        const pendingAck = (yield* Ref.get(pendingAcks)).get(entry.id)
        if (pendingAck !== undefined) {
          const parts = pendingAck.partsDelivered
          return { _tag: "Sent", report: { entryId: entry.id, partsTotal: parts, partsDelivered: parts, outcomes: [] } } as const
        }
        if (entry.kind !== "final") {
          // progress messages are only meaningful live; replaying them after the fact confuses the chat
          yield* recordTerminal(entry, "non_final_recovery_skip", `a ${entry.kind} message is not replayed by recovery`)
          return { _tag: "Terminal" } as const
        }
        const channel = yield* Effect.either(registry.get(entry.channel))
        if (Either.isLeft(channel)) {
          yield* recordTerminal(entry, "unknown_channel", channel.left.message)
          return { _tag: "Terminal" } as const
        }
        let possibleDuplicate = false
        if (reclaimed) {
          const verdict = yield* sender.reconcile(entry, channel.right, { attempt: entry.attemptCount + 1 })
          if (verdict === "sent") {
            return { _tag: "Sent", report: { entryId: entry.id, partsTotal: entry.partsDelivered, partsDelivered: entry.partsDelivered, outcomes: [] } } as const
          }
          possibleDuplicate = verdict === "unknown"
        }
        const attempt = yield* attemptSend(entry, channel.right)
        if (possibleDuplicate && attempt._tag !== "Expired") {
          yield* Metric.increment(Metrics.possibleDuplicates)
          yield* Effect.logWarning(`entry ${entry.id} was in flight when its owner stopped; replayed (possible duplicate)`)
        }
        return { ...attempt, possibleDuplicate }
      })

    const flushPendingAcks = Effect.gen(function*() {
      const pending = yield* Ref.get(pendingAcks)
      if (pending.size === 0) return 0
      const now = yield* Clock.currentTimeMillis
      const items = [...pending].map(([id, { partsDelivered }]) => ({ id, partsDelivered }))
      const result = yield* repo.ack(owner, items, now)
      yield* onDelivered(result.written.map((id) => pending.get(id)!.entry), now)
      for (const id of result.rejected) {
        yield* Effect.logWarning(`pending ack of entry ${id} was rejected: the row is no longer leased to this process`)
      }
      yield* dropAcks(items.map((item) => item.id))
      return result.written.length
    })

    // Worker sends run in fibers of their own, each holding one of `workerConcurrency` slots. A send that completes
    // while the pass starts it is acked with the rest of its claim batch in one write; one that suspends acks its own
    // row when it ends (the group-commit writer batches those acks). A pass claims only as many rows as there are
    // free slots, so a hanging channel holds its slots, never a whole batch, the acks of rows already sent, or the
    // next pass.
    const slots = yield* Effect.makeSemaphore(config.workerConcurrency)
    let freeSlots = config.workerConcurrency // only the pass takes slots, so this mirror sizes its claims
    const releaseSlots = (n: number) => Effect.zipRight(Effect.sync(() => void (freeSlots += n)), slots.release(n))
    const workerSends = yield* FiberSet.make<void, never>()
    // running totals; a pass reports the difference over its duration
    const tally = { delivered: 0, retried: 0, terminal: 0, possibleDuplicates: 0 }

    /**
     * Queues a worker row's ack without waiting for it (the send's slot is free at once); the writer records the
     * outcome. A failed write is not retried on the ack schedule here: the ack is kept and the next pass writes it
     * first (that pass is the worker's retry), and this process does not send the row again meanwhile.
     */
    const ackRecovered = (entry: OutboxEntry, partsDelivered: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        ackBatch.submitWith({ id: entry.id, partsDelivered, now }, (written) => {
          if (Exit.isSuccess(written)) {
            if (!written.value) return Effect.logWarning(`entry ${entry.id} was sent but its lease was lost before the ack`)
            tally.delivered++
            return onDelivered([entry], now)
          }
          return Effect.gen(function*() {
            yield* keepAcks([{ entry, partsDelivered }])
            yield* Metric.increment(Metrics.ackFailures)
            yield* Effect.logError(
              `entry ${entry.id} was sent but its ack failed; kept for the next pass: ${Cause.isInterruptedOnly(written.cause) ? "interrupted" : errorMessage(Cause.squash(written.cause))}`
            )
          })
        }))

    const count = (outcome: RecoveredRow) => {
      if (outcome.possibleDuplicate === true) tally.possibleDuplicates++
      if (outcome._tag === "Terminal" || (outcome._tag === "Failed" && !outcome.error.retryable)) tally.terminal++
      else if (outcome._tag === "Failed") tally.retried++
    }

    /**
     * The rest of a worker row's handling (see `startRecovery`), in a fiber of its own. One that finishes while the pass
     * starts it leaves its outcome in `handoff`, and the pass acks it with the rest of its batch in one write. One
     * that suspends acks itself when it ends, and its slot is freed when its fiber ends (an observer the pass adds).
     */
    const work = (claimed: ClaimedEntry, started: Effect.Effect<RecoveredRow>, handoff: Handoff) =>
      Effect.flatMap(started, (outcome) => {
        if (handoff.inline) {
          handoff.outcome = outcome
          return Effect.void
        }
        sending.delete(claimed.entry.id) // no more renewals (its ack follows)
        count(outcome)
        return outcome._tag === "Sent" ? ackRecovered(claimed.entry, outcome.report.partsDelivered) : Effect.void
      })
    // a suspended row's slot is freed when its fiber ends, however it ends (an observer, not a finalizer on every row)
    const freeSlotOnExit = () => Effect.runSync(releaseSlots(1))

    const ackItems = (sent: ReadonlyArray<SentRow>) => sent.map(({ entry, partsDelivered }) => ({ id: entry.id, partsDelivered }))

    /** Counts and announces the rows an ack write delivered; a rejected row lost its lease before the ack. */
    const onAcked = (sent: ReadonlyArray<SentRow>, result: BatchWriteResult, now: number) =>
      Effect.gen(function*() {
        const rejected = new Set(result.rejected)
        for (const id of rejected) yield* Effect.logWarning(`entry ${id} was sent but its lease was lost before the ack`)
        const delivered = sent.filter((row) => !rejected.has(row.entry.id)).map((row) => row.entry)
        tally.delivered += delivered.length
        yield* onDelivered(delivered, now)
      })

    /** Sent rows whose ack write failed: kept, counted and logged; the next pass writes them first. */
    const keepUnacked = (sent: ReadonlyArray<SentRow>, error: StoreError) =>
      sent.length === 0 ? Effect.void : Effect.gen(function*() {
        yield* keepAcks(sent)
        yield* Metric.incrementBy(Metrics.ackFailures, sent.length)
        yield* Effect.logError(
          `entries ${sent.map((row) => row.entry.id).join(", ")} were sent but their ack failed; kept for the next pass: ${error.message}`
        )
      })

    /** Acks in one write the rows a pass sent without suspending; a write that fails is kept for the next pass. */
    const ackSentInline = (sent: ReadonlyArray<SentRow>) =>
      sent.length === 0 ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.matchEffect(repo.ack(owner, ackItems(sent), now), {
          onFailure: (error) => keepUnacked(sent, error),
          onSuccess: (result) => onAcked(sent, result, now)
        }))

    const quarantine = (bad: { readonly id: EntryId; readonly message: string }, now: number) =>
      Effect.gen(function*() {
        yield* repo.quarantine(bad.id, bad.message, now)
        yield* Metric.increment(Metrics.quarantined)
        yield* Metric.increment(Metrics.terminal("decode_error"))
        yield* emit(OutboxEvent.terminal({ entryId: bad.id, reason: "decode_error", error: bad.message }))
        yield* Effect.logError(`quarantined entry ${bad.id}: ${bad.message}`)
      })

    const runRecoveryPassUntil = (stop: Effect.Effect<boolean>) =>
      Effect.gen(function*() {
        const clock = yield* Effect.clock
        const start = clock.unsafeCurrentTimeMillis()
        const deadline = start + Duration.toMillis(config.workerInterval) * config.workerBudget
        const untilDeadline = Effect.map(Clock.currentTimeMillis, (now) => Duration.millis(Math.max(0, deadline - now)))
        const outOfTime = Effect.zipWith(Clock.currentTimeMillis, stop, (now, stopping) => stopping || now >= deadline)
        const before = { ...tally }
        const counts = { expired: 0, claimed: 0, quarantined: 0, acksFlushed: 0, pruned: 0 }
        counts.acksFlushed = yield* flushPendingAcks

        const expired = yield* repo.expire(start, config.expireAction === "fail" ? {} : { ids: [] })
        counts.expired = expired.length
        for (const entryId of expired) yield* emit(OutboxEvent.expired({ entryId }))
        if (expired.length > 0) {
          yield* Metric.incrementBy(Metrics.expired, expired.length)
          yield* Effect.logWarning(`expired ${expired.length} rows past maxAge`)
        }

        // row fibers start at once: a send that does not suspend is done before the next row starts
        const startWork = yield* FiberSet.runtime(workerSends)()
        const running: Array<Fiber.RuntimeFiber<void, never>> = []
        // the sends of the last batch that finished at once: acked with the next claim, in its transaction, or
        // on their own when the pass claims no more (also if it fails or is interrupted)
        let unacked: ReadonlyArray<SentRow> = []
        const claimLoop = Effect.gen(function*() {
          while (!(yield* outOfTime)) {
            // a free slot, waited for no longer than the budget
            const slot = yield* slots.take(1).pipe(Effect.timeoutOption(yield* untilDeadline))
            if (Option.isNone(slot)) break
            freeSlots--
            if (yield* outOfTime) {
              yield* releaseSlots(1)
              break
            }
            const limit = Math.min(config.claimBatch, 1 + freeSlots)
            if (limit > 1) {
              yield* slots.take(limit - 1)
              freeSlots -= limit - 1
            }
            const now = yield* Clock.currentTimeMillis
            const acking = unacked
            unacked = []
            const batch = yield* repo.claim({ owner, now, leaseMs, limit, ack: ackItems(acking) }).pipe(
              Effect.tapError((error) => keepUnacked(acking, error)),
              // interrupted with its transaction: the acks go back to be written on the way out
              Effect.onInterrupt(() => Effect.sync(() => void (unacked = [...acking, ...unacked]))),
              Effect.onError(() => releaseSlots(limit))
            )
            // a store that does not take acks with its claim returns no `acked`: they are written on their own
            if (batch.acked !== undefined) yield* onAcked(acking, batch.acked, now)
            else yield* ackSentInline(acking)
            // hand every slot on (to a send, or back) before anything else here can fail
            if (batch.claimed.length < limit) yield* releaseSlots(limit - batch.claimed.length)
            let finished = 0
            const sent: Array<SentRow> = []
            const pending = yield* Ref.get(pendingAcks)
            for (const claimed of batch.claimed) {
              const started = startRecovery(claimed, pending, clock.unsafeCurrentTimeMillis())
              let outcome = isDone(started) ? started.value : undefined
              if (outcome === undefined) {
                const handoff: Handoff = { inline: true, outcome: undefined }
                const fiber = startWork(work(claimed, started, handoff))
                handoff.inline = false
                outcome = handoff.outcome
                if (outcome === undefined) {
                  const exit = fiber.unsafePoll()
                  if (exit === null) {
                    // suspended: it acks itself, and frees its slot when it ends
                    trackSuspended(claimed.entry, fiber)
                    fiber.addObserver(freeSlotOnExit)
                    running.push(fiber)
                    continue
                  }
                  // it ended without an outcome (a defect): its slot is the pass's to free
                  yield* Effect.logError(`recovery of entry ${claimed.entry.id} died`, Exit.isFailure(exit) ? exit.cause : Cause.empty)
                }
              }
              if (outcome !== undefined) {
                count(outcome)
                if (outcome._tag === "Sent") sent.push({ entry: claimed.entry, partsDelivered: outcome.report.partsDelivered })
              }
              finished++
            }
            yield* keepLeases
            yield* releaseSlots(finished)
            unacked = sent
            counts.claimed += batch.claimed.length
            for (const bad of batch.malformed) yield* quarantine(bad, now)
            counts.quarantined += batch.malformed.length
            if (batch.claimed.length + batch.malformed.length < limit) break // nothing more is due
          }
        })
        yield* claimLoop.pipe(
          Effect.ensuring(Effect.suspend(() => {
            const last = unacked
            unacked = []
            return ackSentInline(last)
          }))
        )
        // wait for this pass's sends within the budget; a slower one goes on in the background
        yield* Effect.forEach(running, Fiber.await, { discard: true }).pipe(Effect.timeoutOption(yield* untilDeadline))
        yield* ackBatch.flush // the acks of the rows sent so far are written before the pass reports them

        const last = yield* Ref.get(lastPrune)
        if (last === null || start - last >= Duration.toMillis(config.pruneInterval)) counts.pruned = yield* prune
        yield* Metric.set(Metrics.pending, yield* repo.pendingCount)
        return {
          ...counts,
          delivered: tally.delivered - before.delivered,
          retried: tally.retried - before.retried,
          terminal: tally.terminal - before.terminal,
          possibleDuplicates: tally.possibleDuplicates - before.possibleDuplicates,
          inFlight: yield* FiberSet.size(workerSends)
        } satisfies RecoveryReport
      }).pipe(Effect.withSpan("Outbox.runRecoveryPass", SPAN_OPTIONS))

    return {
      deliver,
      enqueue,
      get: (id) => repo.get(id).pipe(Effect.withSpan("Outbox.get", SPAN_OPTIONS)),
      list: (filter) => repo.list(filter).pipe(Effect.withSpan("Outbox.list", SPAN_OPTIONS)),
      stats: Effect.flatMap(Clock.currentTimeMillis, repo.stats).pipe(Effect.withSpan("Outbox.stats", SPAN_OPTIONS)),
      retry: (id) =>
        Effect.gen(function*() {
          const now = yield* Clock.currentTimeMillis
          yield* repo.requeue(id, now, now + maxAgeMs)
          yield* Effect.logInfo(`entry ${id} requeued by admin retry`)
        }).pipe(Effect.withSpan("Outbox.retry", SPAN_OPTIONS)),
      runRecoveryPass: runRecoveryPassUntil(Effect.succeed(false)),
      runRecoveryPassUntil,
      awaitWorkerSends: Effect.zipRight(FiberSet.awaitEmpty(workerSends), ackBatch.flush),
      interruptWorkerSends: FiberSet.clear(workerSends),
      prune,
      reclaimPreviousBoots: Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const ids = yield* repo.reclaimPreviousBoots({ nodeId: config.nodeId, owner, now })
        if (ids.length > 0) yield* Effect.logWarning(`reclaimed ${ids.length} rows left in flight by a previous boot of ${config.nodeId}`)
        return ids.length
      }).pipe(Effect.withSpan("Outbox.reclaimPreviousBoots", SPAN_OPTIONS)),
      events: Stream.fromPubSub(events),
      owner
    }
  }
)

/** The outbox; needs a store, the channel registry and the configuration. */
export const layer: Layer.Layer<Outbox, never, OutboxRepo | ChannelRegistry | OutboxConfig> = Layer.scoped(Outbox, make)
