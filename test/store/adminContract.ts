/**
 * The admin board's part of the OutboxRepo contract (cursor paging, the recipient filter, activity buckets), run
 * inside `outboxRepoContract` against every backend.
 */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import type { EntryState, OutboxEntry } from "../../src/Delivery.js"
import type { StoreError } from "../../src/DeliveryError.js"
import type { ListFilter } from "../../src/OutboxRepo.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import { entryId, queuedEntry } from "../support/entries.js"

/** A row stored directly in `state`, which it reached at `at` (its `updatedAt`). */
export const rowIn = (state: EntryState, at: number, overrides: Partial<OutboxEntry> = {}): OutboxEntry =>
  queuedEntry({
    enqueuedAt: at - 10,
    state,
    updatedAt: at,
    nextAttemptAt: state === "queued" || state === "failed_retryable" ? at + 1000 : null,
    deliveredAt: state === "delivered" ? at : null,
    terminalReason: state === "failed_terminal" ? "permanent_error" : null,
    lastError: state === "failed_terminal" || state === "failed_retryable" ? "boom" : null,
    attemptCount: state === "queued" ? 0 : 1,
    ...overrides
  })

/** Registers the admin tests with the contract's `test` helper. */
export const adminContract = (
  test: (title: string, body: Effect.Effect<void, unknown, OutboxRepo>) => void
) => {
  const ids = (filter: ListFilter) =>
    Effect.flatMap(OutboxRepo, (repo) => Effect.map(repo.list(filter), (es) => es.map((e) => e.id as string)))

  test(
    "list pages with a (enqueuedAt, id) cursor: rows of one millisecond are neither skipped nor repeated",
    Effect.gen(function*() {
      const repo = yield* OutboxRepo
      yield* repo.insert([
        queuedEntry({ id: entryId("P1"), enqueuedAt: 10, to: "a" }),
        queuedEntry({ id: entryId("P2a"), enqueuedAt: 20, to: "b" }),
        queuedEntry({ id: entryId("P2b"), enqueuedAt: 20, to: "c" }),
        queuedEntry({ id: entryId("P2c"), enqueuedAt: 20, to: "d" }),
        queuedEntry({ id: entryId("P3"), enqueuedAt: 30, to: "e" })
      ])
      expect(yield* ids({ limit: 2 })).toEqual(["P3", "P2c"])
      expect(yield* ids({ limit: 2, before: 20, beforeId: entryId("P2c") })).toEqual(["P2b", "P2a"])
      expect(yield* ids({ limit: 2, before: 20, beforeId: entryId("P2a") })).toEqual(["P1"])
      // `before` alone keeps its meaning: enqueued strictly before that millisecond
      expect(yield* ids({ before: 20 })).toEqual(["P1"])
    })
  )

  test(
    "list filters by recipient, with state and channel",
    Effect.gen(function*() {
      const repo = yield* OutboxRepo
      yield* repo.insert([
        queuedEntry({ id: entryId("R1"), enqueuedAt: 1, to: "chat-1", threadId: "t1" }),
        queuedEntry({ id: entryId("R2"), enqueuedAt: 2, to: "chat-2" }),
        queuedEntry({ id: entryId("R3"), enqueuedAt: 3, to: "chat-1", channel: "telegram" }),
        rowIn("failed_terminal", 4, { id: entryId("R4"), to: "chat-1", enqueuedAt: 4 })
      ])
      expect(yield* ids({ to: "chat-1" })).toEqual(["R4", "R3", "R1"])
      expect(yield* ids({ to: "chat-1", channel: "slack" })).toEqual(["R4", "R1"])
      expect(yield* ids({ to: "chat-1", state: "failed_terminal" })).toEqual(["R4"])
      expect(yield* ids({ to: "nobody" })).toEqual([])
    })
  )

  test(
    "activity counts rows by the bucket they reached their state in, every bucket returned",
    Effect.gen(function*() {
      const repo = yield* OutboxRepo
      yield* repo.insert([
        rowIn("delivered", 1000, { to: "a" }),
        rowIn("delivered", 1500, { to: "b" }),
        rowIn("delivered", 2999, { to: "c" }),
        rowIn("failed_terminal", 2000, { to: "d" }),
        rowIn("failed_retryable", 2100, { to: "e" }),
        rowIn("expired", 3500, { to: "f" }),
        // outside the window, or not a state the board draws
        rowIn("delivered", 999, { to: "g" }),
        rowIn("delivered", 4000, { to: "h" }),
        rowIn("queued", 1200, { to: "i" })
      ])
      const buckets = yield* repo.activity({ since: 1000, until: 4000, bucketMs: 1000 })
      expect(buckets).toEqual([
        { start: 1000, delivered: 2, retrying: 0, failed: 0, expired: 0 },
        { start: 2000, delivered: 1, retrying: 1, failed: 1, expired: 0 },
        { start: 3000, delivered: 0, retrying: 0, failed: 0, expired: 1 }
      ])
      // a window that does not divide evenly ends with a shorter bucket
      const uneven = yield* repo.activity({ since: 1000, until: 2500, bucketMs: 1000 })
      expect(uneven.map((b) => [b.start, b.delivered, b.failed])).toEqual([[1000, 2, 0], [2000, 0, 1]])
      const empty = yield* repo.activity({ since: 10_000, until: 12_000, bucketMs: 1000 })
      expect(empty.every((b) => b.delivered + b.retrying + b.failed + b.expired === 0)).toBe(true)
      expect(empty).toHaveLength(2)
    })
  )

  test(
    "activity refuses a window it should not be asked for",
    Effect.gen(function*() {
      const repo = yield* OutboxRepo
      const fail = (options: { since: number; until: number; bucketMs: number }) =>
        Effect.map(Effect.flip(repo.activity(options)), (e: StoreError) => e.message)
      expect(yield* fail({ since: 10, until: 10, bucketMs: 1 })).toMatch(/after since/)
      expect(yield* fail({ since: 0, until: 10, bucketMs: 0 })).toMatch(/bucketMs/)
      expect(yield* fail({ since: 0, until: 10_000, bucketMs: 1 })).toMatch(/at most 1440 buckets/)
    })
  )
}
