/** The outbox's event stream: what happened to a row, for observers (`Outbox.events`, `Outbox.subscribe`). */
import * as Data from "effect/Data"
import type { EntryId, TerminalReason } from "./Delivery.js"

/** What happened to a row, as a stream for observers. */
export type OutboxEvent = Data.TaggedEnum<{
  enqueued: { readonly entryId: EntryId; readonly channel: string }
  sent: { readonly entryId: EntryId; readonly channel: string; readonly parts: number }
  delivered: { readonly entryId: EntryId; readonly channel: string }
  retry_scheduled: {
    readonly entryId: EntryId
    readonly attemptCount: number
    readonly retryAt: number
    readonly error: string
  }
  terminal: { readonly entryId: EntryId; readonly reason: TerminalReason; readonly error: string }
  expired: { readonly entryId: EntryId }
  /** a send waits for its rate-limit token (about `waitMs`); not an attempt, not a failure */
  throttled: { readonly entryId: EntryId; readonly channel: string; readonly waitMs: number }
  /** the channel answered 429 with a retry-after: its (account's) limiter is paused until `until` */
  rate_limited: {
    readonly entryId: EntryId
    readonly channel: string
    readonly accountId: string | undefined
    readonly retryAfterMs: number
    readonly until: number
  }
}>
/** Constructors and matchers for `OutboxEvent`. */
export const OutboxEvent = Data.taggedEnum<OutboxEvent>()
