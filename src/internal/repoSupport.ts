/** Pieces every OutboxRepo backend shares: event mapping, orderings, stats folding. */
import type { EntryState, OutboxEntry, OutboxStats } from "../Delivery.js"
import { entryStates, orderingKey } from "../Delivery.js"

/**
 * Why a row cannot be stored as JSON the way it was given, or null: both stores refuse the same rows, so a replay
 * sends what the live send did (`JSON.stringify` throws on a BigInt or a cycle; requests are validated before this,
 * so this guards rows built by other code, such as an import).
 */
export const jsonProblem = (entry: OutboxEntry): string | null => {
  try {
    JSON.stringify(entry.payloads)
    JSON.stringify(entry.metadata ?? null)
    return null
  } catch (error) {
    return `entry ${entry.id} cannot be stored as JSON: ${error instanceof Error ? error.message : String(error)}`
  }
}

/** Claim order: due time, then id. */
export const byDueThenId = (a: OutboxEntry, b: OutboxEntry): number =>
  (a.nextAttemptAt ?? 0) - (b.nextAttemptAt ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** Conversation order: enqueue time, then id. */
export const byEnqueuedThenId = (a: OutboxEntry, b: OutboxEntry): number =>
  a.enqueuedAt - b.enqueuedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

/** A zero count for every state. */
export const emptyCounts = (): Record<EntryState, number> =>
  Object.fromEntries(entryStates.map((s) => [s, 0])) as Record<EntryState, number>

/** Folds (channel, state, count) rows into `OutboxStats`. */
export const foldStats = (
  rows: ReadonlyArray<{ readonly channel: string; readonly state: EntryState; readonly count: number }>,
  oldestPendingEnqueuedAt: number | null,
  now: number
): OutboxStats => {
  const byState = emptyCounts()
  const byChannel: Record<string, Record<EntryState, number>> = {}
  let total = 0
  for (const row of rows) {
    byState[row.state] += row.count
    const channel = (byChannel[row.channel] ??= emptyCounts())
    channel[row.state] += row.count
    total += row.count
  }
  return {
    total,
    byState,
    byChannel,
    oldestPendingAgeMs: oldestPendingEnqueuedAt === null ? null : Math.max(0, now - oldestPendingEnqueuedAt)
  }
}

/** Default page size of the admin listing. */
export const DEFAULT_LIST_LIMIT = 100

/** Demotes in-flight rows whose conversation is already busy to queued (see `OutboxRepo.insert`). */
export const deferBusy = (entries: ReadonlyArray<OutboxEntry>, busy: Set<string>): ReadonlyArray<OutboxEntry> =>
  entries.map((entry) => {
    const key = orderingKey(entry)
    const demote = entry.state === "in_flight" && busy.has(key)
    busy.add(key)
    return demote
      ? {
        ...entry,
        state: "queued" as const,
        nextAttemptAt: entry.enqueuedAt,
        leaseOwner: null,
        leaseExpiresAt: null,
        lastAttemptAt: null
      }
      : entry
  })
