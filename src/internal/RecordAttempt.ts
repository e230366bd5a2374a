/**
 * The end of a delivery: the attempt's result written on the held row through the journal (`Ack` retried on the ack
 * schedule, `Retry`/`Fail` by the retry policy, `Expire`, a release for a postponed row), with the metrics, events and
 * log lines that announce it, and the outcome the caller or the pass sees.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberRef from "effect/FiberRef"
import * as Metric from "effect/Metric"
import type * as MetricLabel from "effect/MetricLabel"
import * as Schedule from "effect/Schedule"
import type { OutboxEntry, TerminalReason } from "../Delivery.js"
import type { SendError, StoreError } from "../DeliveryError.js"
import { AckFailed, PartialDeliveryFailure, SendFailed } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import * as Metrics from "../Metrics.js"
import * as RetryPolicy from "../RetryPolicy.js"
import type { SendReport } from "../Sender.js"
import type { Deps } from "./DeliverEntry.js"
import * as FailurePolicy from "./FailurePolicy.js"
import type { Held } from "./HeldRow.js"
import * as HeldRow from "./HeldRow.js"
import { withSpan } from "./tracing.js"

/** What recording an attempt came to (see `DeliverEntry.Outcome`). */
export type Result =
  | { readonly _tag: "Delivered"; readonly report: SendReport; readonly finished: true }
  | { readonly _tag: "Failed"; readonly error: SendFailed | PartialDeliveryFailure; readonly finished: boolean }
  | { readonly _tag: "Expired"; readonly finished: true }
  | { readonly _tag: "Skipped"; readonly reason: TerminalReason; readonly finished: true }
  /** sent, but the ack could not be written: kept in memory, written by the next pass; the row is not sent again */
  | { readonly _tag: "AckFailed"; readonly error: AckFailed; readonly finished: false }
  /** another owner holds the row now (its lease ran out): this process stopped */
  | { readonly _tag: "LeaseLost"; readonly finished: false }
  /** its rate-limit token was too far away: put back (no attempt), due at `until` */
  | { readonly _tag: "Postponed"; readonly until: number; readonly finished: false }

/** An attempt's result, to be recorded on the held row. */
export type Recordable =
  | { readonly _tag: "Sent"; readonly report: SendReport }
  | { readonly _tag: "SendFailed"; readonly error: SendError | PartialDeliveryFailure }
  | { readonly _tag: "Expired" }
  | { readonly _tag: "Skip"; readonly reason: TerminalReason; readonly message: string }
  | { readonly _tag: "Postponed"; readonly until: number; readonly claimAt: number }

/** Updates several metrics in one step, with the fiber's metric labels (what `Metric.update` reads for each). */
const updateMetrics = (update: (labels: ReadonlyArray<MetricLabel.MetricLabel>) => void): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    update(fiber.getFiberRef(FiberRef.currentMetricLabels))
    return Effect.void
  })

/** `effect` with its log lines annotated with the row's id and channel. */
export const annotated = (entry: OutboxEntry) => <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.annotateLogs(effect, { entryId: entry.id, channel: entry.channel })

/** What the recorder's steps share. */
interface Recorder {
  readonly deps: Deps
  readonly policy: RetryPolicy.RetryPolicy
  readonly writeHeld: ReturnType<typeof HeldRow.writer>
  /** the ack write's retries after its first (at ackRetryBase): twice that, then doubling */
  readonly ackRetriesAfterFirst: Schedule.Schedule<unknown>
}

/** Builds the recorder over the outbox's journal and configuration. */
export const make = (deps: Deps): (held: Held, attempt: Recordable) => Effect.Effect<Result> => {
  const recorder: Recorder = {
    deps,
    policy: RetryPolicy.fromConfig(deps.config),
    writeHeld: HeldRow.writer(deps.journal),
    // the first delay and the rest of the schedule are apart so a write that succeeds (nearly all) builds no schedule
    ackRetriesAfterFirst: Schedule.exponential(Duration.times(deps.config.ackRetryBase, 2)).pipe(
      Schedule.intersect(Schedule.recurs(Math.max(0, deps.config.ackRetries - 1)))
    )
  }
  return (held, attempt) => record(recorder, held, attempt)
}

/** The ack write, retried on failure; `onGiveUp` runs when the retries are interrupted (the caller left, a shutdown). */
const retryAck = <A, E>(r: Recorder, write: Effect.Effect<A, E>, onGiveUp: Effect.Effect<void>): Effect.Effect<A, E> =>
  r.deps.config.ackRetries <= 0 ? write : Effect.catchAll(
    write,
    () =>
      Effect.zipRight(Effect.sleep(r.deps.config.ackRetryBase), Effect.retry(write, r.ackRetriesAfterFirst)).pipe(
        Effect.onInterrupt(() => onGiveUp)
      )
  )

/** Records an attempt's outcome on the held row (each write is uninterruptible; an interrupted ack is kept, see `ack`). */
const record = (r: Recorder, held: Held, attempt: Recordable): Effect.Effect<Result> =>
  attempt._tag === "Sent"
    ? ack(r, held, held.entry, attempt.report)
    : annotated(held.entry)(recordUnsent(r, held, attempt))

/** Records an attempt that sent nothing more: a failure, an expiry, a postponement or a skip. */
const recordUnsent = (
  r: Recorder,
  held: Held,
  attempt: Exclude<Recordable, { readonly _tag: "Sent" }>
): Effect.Effect<Result> =>
  Effect.gen(function*() {
    const entry = held.entry
    switch (attempt._tag) {
      case "SendFailed":
        return yield* recordFailure(r, held, entry, attempt.error)
      case "Expired": {
        const written = yield* Effect.either(r.writeHeld(held, Machine.EntryEvent.Expire({ owner: r.deps.owner })))
        if (Either.isRight(written) && written.right) {
          yield* Metric.increment(Metrics.expired)
          yield* r.deps.events.expired(entry)
          yield* Effect.logWarning(`entry ${entry.id} expired before sending`)
        } else yield* writeFailed("expire", entry, written)
        return { _tag: "Expired", finished: true } as const
      }
      case "Postponed": {
        // a progress message is only meaningful live: it is not kept for a later token (nor replayed by recovery)
        if (entry.kind !== "final") {
          return yield* recordUnsent(r, held, {
            _tag: "Skip",
            reason: "non_final_recovery_skip",
            message: `a ${entry.kind} message whose rate-limit token is further away than maxRateWait is not sent later`
          })
        }
        // not an attempt: the row waits in the store for its token, so no lease or send slot is held meanwhile
        const until = Math.ceil(attempt.until)
        const written = yield* Effect.either(
          r.writeHeld(held, Machine.EntryEvent.Release({ owner: r.deps.owner, until: Math.ceil(attempt.claimAt) }))
        )
        if (Either.isLeft(written) || !written.right) yield* writeFailed("release", entry, written)
        else yield* Effect.logDebug(`entry ${entry.id} waits for its rate-limit token (at ${until})`)
        return { _tag: "Postponed", until, finished: false } as const
      }
      case "Skip": {
        const written = yield* Effect.either(
          r.writeHeld(
            held,
            Machine.EntryEvent.Fail({
              owner: r.deps.owner,
              error: attempt.message,
              reason: attempt.reason,
              partsDelivered: entry.partsDelivered
            })
          )
        )
        if (Either.isRight(written) && written.right) yield* announceTerminal(r, entry, attempt.reason, attempt.message)
        else yield* writeFailed("fail", entry, written)
        return { _tag: "Skipped", reason: attempt.reason, finished: true } as const
      }
    }
  })

const writeFailed = (operation: string, entry: OutboxEntry, written: Either.Either<boolean, StoreError>) =>
  Effect.zipRight(
    Metric.increment(Metrics.writeFailures(operation)),
    Effect.logError(
      `entry ${entry.id}: could not write ${operation} (${
        Either.isLeft(written) ? written.left.message : "the row is no longer leased to this process"
      }); the row is retried after its lease`
    )
  )

const announceTerminal = (r: Recorder, entry: OutboxEntry, reason: TerminalReason, error: string) =>
  Effect.all([
    Metric.increment(Metrics.terminal(reason)),
    r.deps.events.terminal(entry, reason, error),
    Effect.logWarning(`entry ${entry.id} failed for good (${reason}): ${error}`)
  ], { discard: true })

/** Acks a sent row, the write retried on the ack schedule; what cannot be written is kept for the next pass. */
const ack = (r: Recorder, held: Held, entry: OutboxEntry, report: SendReport) =>
  Effect.gen(function*() {
    if (report.outcomes.length > 0) yield* r.deps.events.sent(entry, report.outcomes.length)
    // delivered when the channel accepted it, whenever the write lands
    const now = yield* Clock.currentTimeMillis
    const keep = Effect.sync(() =>
      void r.deps.pendingAcks.set(entry.id, { entry, partsDelivered: report.partsDelivered })
    )
    const written = yield* Effect.either(
      retryAck(
        r,
        r.writeHeld(held, Machine.EntryEvent.Ack({ owner: r.deps.owner, partsDelivered: report.partsDelivered }), now),
        // given up while retrying (its caller left, a shutdown): the message went out, so the ack is kept
        keep
      ).pipe(withSpan("Outbox.ack", { captureStackTrace: false }))
    )
    if (Either.isRight(written) && written.right) {
      r.deps.pendingAcks.delete(entry.id)
      yield* updateMetrics((labels) => {
        Metrics.delivered.unsafeUpdate(1, labels)
        Metrics.deliveryLatency.unsafeUpdate(Math.max(0, now - entry.enqueuedAt), labels)
      })
      yield* r.deps.events.delivered(entry)
      return { _tag: "Delivered", report, finished: true } as const
    }
    const message = Either.isLeft(written)
      ? `sent, but the ack write failed: ${written.left.message}`
      : "sent, but the row is no longer leased to this process (another worker may send it again)"
    if (Either.isLeft(written)) yield* keep
    yield* Metric.increment(Metrics.ackFailures)
    yield* annotated(entry)(Effect.logError(`entry ${entry.id}: ${message}`))
    return { _tag: "AckFailed", error: new AckFailed({ entryId: entry.id, message }), finished: false } as const
  })

/** Records a failed send (retry at the policy's next delay, or terminal) and builds the caller's error. */
const recordFailure = (
  r: Recorder,
  held: Held,
  entry: OutboxEntry,
  error: SendError | PartialDeliveryFailure
) =>
  Effect.gen(function*() {
    const event = yield* FailurePolicy.failureEvent(entry, error, {
      owner: r.deps.owner,
      maxAttempts: r.deps.config.maxAttempts,
      policy: r.policy
    })
    const written = yield* Effect.either(r.writeHeld(held, event))
    const recorded = held.entry
    const stored = Either.isRight(written) && written.right
    if (!stored) yield* writeFailed("failure", entry, written)
    else if (recorded.state === "failed_retryable") {
      yield* Metric.increment(Metrics.retryScheduled)
      yield* r.deps.events.retryScheduled(recorded, error.message)
      yield* Effect.logInfo(
        `entry ${entry.id} failed (attempt ${
          entry.attemptCount + 1
        }), retry at ${recorded.nextAttemptAt}: ${error.message}`
      )
    } else yield* announceTerminal(r, entry, recorded.terminalReason ?? "permanent_error", error.message)
    const retryable = stored ? recorded.state === "failed_retryable" : true
    const willRetryAt = stored && recorded.state === "failed_retryable" && recorded.nextAttemptAt !== null
      ? { willRetryAt: recorded.nextAttemptAt }
      : {}
    const callerError = error._tag === "SendError"
      ? new SendFailed({
        entryId: entry.id,
        channel: entry.channel,
        retryable,
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
        retryable,
        ...(error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {}),
        ...willRetryAt
      })
    return { _tag: "Failed", error: callerError, finished: stored && recorded.state !== "failed_retryable" } as const
  })
