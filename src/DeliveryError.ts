/**
 * The typed errors of effect-outbox. Every public operation lists exactly the errors it can fail with;
 * infrastructure errors (SqlError, ParseError) are collapsed into `StoreError` at the port boundary.
 */
import * as Schema from "effect/Schema"
import { EntryId } from "./EntryId.js"

/** A request that does not decode; `message` names the offending field. Nothing was persisted. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>("effect-outbox/InvalidRequest")(
  "InvalidRequest",
  { message: Schema.String }
) {}

/** The request names a channel that has no registered adapter. Nothing was persisted. */
export class UnknownChannel extends Schema.TaggedError<UnknownChannel>("effect-outbox/UnknownChannel")(
  "UnknownChannel",
  { channel: Schema.String }
) {
  override get message() {
    return `no adapter is registered for channel "${this.channel}"`
  }
}

/** No row has this id. */
export class EntryNotFound extends Schema.TaggedError<EntryNotFound>("effect-outbox/EntryNotFound")(
  "EntryNotFound",
  { id: Schema.String }
) {
  override get message() {
    return `no outbox entry with id ${this.id}`
  }
}

/** What an adapter send failed with, already classified (retryable or permanent, optional retry-after). */
export class SendError extends Schema.TaggedError<SendError>("effect-outbox/SendError")(
  "SendError",
  {
    message: Schema.String,
    retryable: Schema.Boolean,
    retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true }),
    status: Schema.optionalWith(Schema.Number, { exact: true }),
    /** set by the sender: the plan part that failed */
    partIndex: Schema.optionalWith(Schema.Number, { exact: true }),
    /** set by the sender: parts delivered before this one (where a retry resumes) */
    partsDelivered: Schema.optionalWith(Schema.Number, { exact: true })
  }
) {}

/** The send failed; the row is recorded (`failed_retryable` with `willRetryAt`, or `failed_terminal`). */
export class SendFailed extends Schema.TaggedError<SendFailed>("effect-outbox/SendFailed")(
  "SendFailed",
  {
    entryId: EntryId,
    channel: Schema.String,
    retryable: Schema.Boolean,
    retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true }),
    message: Schema.String,
    willRetryAt: Schema.optionalWith(Schema.Number, { exact: true })
  }
) {}

/** A best-effort delivery where some parts failed: the row is not acked, the retry sends only the missing parts. */
export class PartialDeliveryFailure extends Schema.TaggedError<PartialDeliveryFailure>(
  "effect-outbox/PartialDeliveryFailure"
)("PartialDeliveryFailure", {
  entryId: EntryId,
  partsDelivered: Schema.Number,
  /** parts past `partsDelivered` that went out in this attempt (the retry skips them) */
  deliveredParts: Schema.optionalWith(Schema.Array(Schema.Number), { exact: true }),
  partsFailed: Schema.Number,
  errors: Schema.Array(Schema.String),
  willRetryAt: Schema.optionalWith(Schema.Number, { exact: true }),
  /** set by the sender: true only if every failed part is retryable */
  retryable: Schema.optionalWith(Schema.Boolean, { exact: true }),
  /** set by the sender: the longest retry-after any failed part asked for */
  retryAfterMs: Schema.optionalWith(Schema.Number, { exact: true })
}) {
  override get message() {
    return `${this.partsFailed} part(s) of entry ${this.entryId} failed: ${this.errors.join("; ")}`
  }
}

/** The message was sent but the `delivered` write failed; the worker retries the ack, this process never re-sends. */
export class AckFailed extends Schema.TaggedError<AckFailed>("effect-outbox/AckFailed")(
  "AckFailed",
  { entryId: EntryId, message: Schema.String }
) {}

/** The store could not do `operation` (I/O, lock timeout, constraint, corrupt database). */
export class StoreError extends Schema.TaggedError<StoreError>("effect-outbox/StoreError")(
  "StoreError",
  { operation: Schema.String, message: Schema.String, cause: Schema.optionalWith(Schema.Defect, { exact: true }) }
) {}

/** A fenced write by a process that no longer holds the row's lease (or the row is not in flight). */
export class LeaseLost extends Schema.TaggedError<LeaseLost>("effect-outbox/LeaseLost")(
  "LeaseLost",
  { id: EntryId, owner: Schema.String }
) {
  override get message() {
    return `entry ${this.id} is not in flight under lease owner ${this.owner}`
  }
}

/** The state machine refused a transition (e.g. anything but pruning out of `delivered`). */
export class TransitionRejected extends Schema.TaggedError<TransitionRejected>("effect-outbox/TransitionRejected")(
  "TransitionRejected",
  { id: EntryId, from: Schema.String, event: Schema.String, reason: Schema.String }
) {
  override get message() {
    return `entry ${this.id}: ${this.event} is not allowed from ${this.from} (${this.reason})`
  }
}
