/**
 * A large outbox file for the admin board's benchmark: ROWS rows (1,000,000 by default) over a week, in the shape of
 * a busy gateway's: mostly delivered, a little failed and expired, a backlog mostly from the last minutes plus a few
 * stuck old rows, four channels, 20,000 chats. Written through `SqliteOutboxRepo.insert` in batches, so every row is
 * one the store itself would write. Deterministic (a fixed seed), so two runs measure the same file.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { EntryId, EntryState, OutboxEntry } from "../src/Delivery.js"
import { OutboxRepo } from "../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../src/SqliteOutboxRepo.js"

/** The end of the data's week: "now" for the benchmark. */
export const NOW = Date.UTC(2026, 2, 1, 12, 0, 0)
const WEEK = 7 * 24 * 3_600_000

/** A small deterministic generator (mulberry32). */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const CHANNELS = [["telegram", 0.45], ["slack", 0.8], ["webhook", 0.95], ["line", 1]] as const
const STATES: ReadonlyArray<readonly [EntryState, number]> = [
  ["delivered", 0.965],
  ["failed_terminal", 0.975],
  ["expired", 0.98],
  ["failed_retryable", 0.985],
  ["queued", 0.999],
  ["in_flight", 1]
]
const pick = <A>(table: ReadonlyArray<readonly [A, number]>, r: number): A => table.find(([, p]) => r < p)![0]

/** The i-th row (ids sort by time, as the outbox's own do). */
const row = (i: number, rows: number, next: () => number): OutboxEntry => {
  const state = pick(STATES, next())
  const pending = state === "queued" || state === "failed_retryable" || state === "in_flight"
  // rows spread evenly over the week; most of the backlog is from the last ten minutes, one in twenty stuck for hours
  const spread = NOW - WEEK + Math.floor((i / rows) * WEEK)
  const enqueuedAt = pending && next() < 0.95 ? NOW - Math.floor(next() * 600_000) : spread
  const updatedAt = Math.min(NOW, enqueuedAt + Math.floor(next() * 5_000))
  const channel = pick(CHANNELS, next())
  const failed = state === "failed_terminal" || state === "failed_retryable"
  return {
    id: `${enqueuedAt.toString(36).padStart(10, "0")}${i.toString(36).padStart(8, "0")}` as EntryId,
    channel,
    to: `chat-${Math.floor(next() * 20_000)}`,
    ...(next() < 0.3 ? { threadId: `t-${Math.floor(next() * 1000)}` } : {}),
    payloads: [{ text: `reply ${i}: the answer to the question asked, with a line or two of detail.` }],
    kind: "final",
    bestEffort: false,
    state,
    attemptCount: state === "queued" ? 0 : failed ? 1 + Math.floor(next() * 4) : 1,
    partsDelivered: 0,
    enqueuedAt,
    nextAttemptAt: pending ? updatedAt + 30_000 : null,
    lastAttemptAt: state === "queued" ? null : updatedAt,
    deliveredAt: state === "delivered" ? updatedAt : null,
    expiresAt: enqueuedAt + 30 * 60_000,
    lastError: failed ? "HTTP 502 from the channel" : state === "expired" ? null : null,
    terminalReason: state === "failed_terminal" ? "permanent_error" : null,
    leaseOwner: state === "in_flight" ? "bench/boot" : null,
    leaseExpiresAt: state === "in_flight" ? updatedAt + 300_000 : null,
    updatedAt
  }
}

/** Writes `rows` rows into a new file at `filename` (which must not exist). */
export const build = (filename: string, rows: number) =>
  Effect.gen(function*() {
    const repo = yield* OutboxRepo
    const next = random(42)
    const BATCH = 5_000
    for (let start = 0; start < rows; start += BATCH) {
      const batch: Array<OutboxEntry> = []
      for (let i = start; i < Math.min(rows, start + BATCH); i++) batch.push(row(i, rows, next))
      yield* repo.insert(batch)
    }
  }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename }).pipe(Layer.orDie)))
