/**
 * The span of one delivery attempt (`Outbox.deliverEntry`): the row's id, channel and attempt number, whether it is
 * live or reclaimed, and its outcome once known. Its children are the adapter calls (`Sender.sendPart`) and the ack.
 */
import * as Effect from "effect/Effect"
import type { Claimed, Outcome } from "./DeliverEntry.js"
import { whenTraced } from "./tracing.js"

/** The `outbox.outcome` attribute of an outcome. */
const outcomeName = (outcome: Outcome): string =>
  outcome._tag === "Failed"
    ? (outcome.finished ? "failed_terminal" : "retry_scheduled")
    : outcome._tag === "AckFailed"
    ? "ack_failed"
    : outcome._tag === "LeaseLost"
    ? "lease_lost"
    : outcome._tag.toLowerCase()

/** Runs one delivery of `claimed` in its span (when a tracer that exports spans is installed). */
export const traced = (claimed: Claimed) => <E, R>(delivery: Effect.Effect<Outcome, E, R>) =>
  whenTraced(delivery, (delivery) =>
    delivery.pipe(
      Effect.tap((outcome) => Effect.annotateCurrentSpan("outbox.outcome", outcomeName(outcome))),
      Effect.withSpan("Outbox.deliverEntry", {
        captureStackTrace: false,
        attributes: {
          "outbox.entry_id": claimed.entry.id,
          "outbox.channel": claimed.entry.channel,
          "outbox.attempt": claimed.entry.attemptCount + 1,
          "outbox.live": claimed.live,
          "outbox.reclaimed": claimed.reclaimed
        }
      })
    ))
