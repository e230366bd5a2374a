/** Builders of outbox rows for store tests. */
import type { EntryId, OutboxEntry } from "../../src/Delivery.js"

let counter = 0

/** A queued row enqueued at `enqueuedAt`, with overrides. */
export const queuedEntry = (overrides: Partial<OutboxEntry> = {}): OutboxEntry => {
  const enqueuedAt = overrides.enqueuedAt ?? 0
  counter++
  return {
    id: `01TEST${String(counter).padStart(20, "0")}` as EntryId,
    channel: "slack",
    to: "C1",
    payloads: [{ text: `hello ${counter}` }],
    kind: "final",
    bestEffort: false,
    state: "queued",
    attemptCount: 0,
    partsDelivered: 0,
    enqueuedAt,
    nextAttemptAt: enqueuedAt,
    lastAttemptAt: null,
    deliveredAt: null,
    expiresAt: enqueuedAt + 30 * 60_000,
    lastError: null,
    terminalReason: null,
    leaseOwner: null,
    leaseExpiresAt: null,
    updatedAt: enqueuedAt,
    ...overrides
  }
}

/** An id with a chosen sort position. */
export const entryId = (s: string): EntryId => s as EntryId
