/** What `Outbox.deliver` answers: sent, deferred to the worker, or a duplicate of an earlier request. */
import * as Data from "effect/Data"
import type { EntryId, EntryState } from "./Delivery.js"
import type { DeliveredPart } from "./Sender.js"

/** What `deliver` did. */
export type DeliveryOutcome = Data.TaggedEnum<{
  /** sent and acked */
  Delivered: { readonly entryId: EntryId; readonly results: ReadonlyArray<DeliveredPart> }
  /**
   * stored, sent later by the outbox: behind an older pending reply of the same conversation (sent as soon as that
   * one finishes), or because its rate-limit token is further away than `maxRateWait` (sent when it comes)
   */
  Deferred: { readonly entryId: EntryId; readonly reason: "conversation_busy" | "rate_limited" }
  /** the idempotency key was seen before: nothing was sent */
  Duplicate: { readonly entryId: EntryId; readonly state: EntryState }
}>
/** Constructors and matchers for `DeliveryOutcome`. */
export const DeliveryOutcome = Data.taggedEnum<DeliveryOutcome>()
