/**
 * The edges of a request: the row a `deliver` or `enqueue` stores, and the answer a live `deliver` gives its caller
 * from the delivery's outcome.
 */
import * as Effect from "effect/Effect"
import type { DeliveryRequest, EntryId, OutboxEntry } from "../Delivery.js"
import type { AckFailed, PartialDeliveryFailure } from "../DeliveryError.js"
import { SendFailed } from "../DeliveryError.js"
import type { DeliveredPart } from "../Sender.js"
import type { Outcome } from "./DeliverEntry.js"

/** The new row for `request`: leased to `owner` when `live` (sent at once), else queued for the worker. */
export const newEntry = (
  request: DeliveryRequest,
  at: {
    readonly id: EntryId
    readonly now: number
    readonly live: boolean
    readonly owner: string
    readonly leaseMs: number
    readonly maxAgeMs: number
  }
): OutboxEntry => {
  const { id, leaseMs, live, now } = at
  return {
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
    expiresAt: now + at.maxAgeMs,
    lastError: null,
    terminalReason: null,
    leaseOwner: live ? at.owner : null,
    leaseExpiresAt: live ? now + leaseMs : null,
    updatedAt: now
  }
}

/** What a live `deliver` of `entry` answers for the delivery's outcome: the parts sent, or the caller's error. */
export const answer = (
  outcome: Exclude<Outcome, { readonly _tag: "Postponed" }>,
  entry: OutboxEntry
): Effect.Effect<ReadonlyArray<DeliveredPart>, SendFailed | PartialDeliveryFailure | AckFailed> => {
  const failed = (message: string, retryable: boolean) =>
    Effect.fail(new SendFailed({ entryId: entry.id, channel: entry.channel, retryable, message }))
  switch (outcome._tag) {
    case "Delivered":
      return Effect.succeed(outcome.report.outcomes)
    case "Failed":
    case "AckFailed":
      return Effect.fail(outcome.error)
    case "Expired":
      return failed("expired before sending", false)
    case "Skipped":
      return failed(`failed for good: ${outcome.reason}`, false)
    case "LeaseLost":
      return failed("its lease was taken over by another worker", true)
  }
}
