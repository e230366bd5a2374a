/**
 * What a failed send does to its row: the state machine's event for it. A permanent failure, or a failed tool/block
 * progress message, is `Fail` (terminal: recovery never replays progress messages, so waiting would only hold up the
 * conversation); a rate limit (`retryAfterMs`) is a `Retry` at the channel's time that does not use up an attempt;
 * anything else is a `Retry` at the retry policy's delay for this attempt, terminal `max_attempts` once the policy ends.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { OutboxEntry } from "../Delivery.js"
import type { PartialDeliveryFailure, SendError } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import * as RetryPolicy from "../RetryPolicy.js"

/** The event recording `error` on the leased `entry`, at the clock's time. */
export const failureEvent = (
  entry: OutboxEntry,
  error: SendError | PartialDeliveryFailure,
  options: { readonly owner: string; readonly maxAttempts: number; readonly policy: RetryPolicy.RetryPolicy }
): Effect.Effect<Machine.EntryEvent> =>
  Effect.gen(function*() {
    const { owner } = options
    const now = yield* Clock.currentTimeMillis
    const attempt = entry.attemptCount + 1
    const retryable = error._tag === "SendError" ? error.retryable : error.retryable ?? true
    const partsDelivered = Math.max(entry.partsDelivered, error.partsDelivered ?? entry.partsDelivered)
    const deliveredParts = error._tag === "PartialDeliveryFailure" && error.deliveredParts !== undefined
      ? { deliveredParts: error.deliveredParts }
      : {}
    if (!retryable) {
      return Machine.EntryEvent.Fail({ owner, error: error.message, reason: "permanent_error", partsDelivered })
    }
    if (entry.kind !== "final") {
      return Machine.EntryEvent.Fail({ owner, error: error.message, reason: "non_final_recovery_skip", partsDelivered })
    }
    if (error.retryAfterMs !== undefined) {
      return Machine.EntryEvent.Retry({
        owner,
        error: error.message,
        retryAt: now + Math.round(error.retryAfterMs),
        countsAttempt: false,
        partsDelivered,
        ...deliveredParts,
        maxAttempts: options.maxAttempts
      })
    }
    const delay = yield* RetryPolicy.delayAfterAttempt(options.policy, attempt)
    return Machine.EntryEvent.Retry({
      owner,
      error: error.message,
      // jitter makes fractional milliseconds; times are stored as integer millis
      retryAt: now + Math.round(Option.match(delay, {
        onNone: () => 0,
        onSome: Duration.toMillis
      })),
      countsAttempt: true,
      partsDelivered,
      ...deliveredParts,
      // the policy has the last word on whether another attempt follows
      maxAttempts: Option.isSome(delay) ? options.maxAttempts : attempt
    })
  })
