/** Pieces the stores share for the admin board's queries: the activity window and the listing filter. */
import type { EntryState, OutboxEntry } from "../Delivery.js"
import type { ActivityBucket, ListFilter } from "../OutboxRepo.js"

/** The states `activity` counts, and the field of a bucket each one adds to. */
export const activityStates = {
  delivered: "delivered",
  failed_retryable: "retrying",
  failed_terminal: "failed",
  expired: "expired"
} as const satisfies Partial<Record<EntryState, keyof Omit<ActivityBucket, "start">>>

/** The largest number of buckets `activity` returns (a day of minutes). */
export const MAX_ACTIVITY_BUCKETS = 1440

/** Checks `activity`'s window: a message for a window no store should be asked for, or null. */
export const activityProblem = (options: { since: number; until: number; bucketMs: number }): string | null =>
  !Number.isSafeInteger(options.since) || !Number.isSafeInteger(options.until) || options.until <= options.since
    ? "activity: until must be a whole number of millis after since"
    : !Number.isSafeInteger(options.bucketMs) || options.bucketMs <= 0
    ? "activity: bucketMs must be a whole number of millis ≥ 1"
    : Math.ceil((options.until - options.since) / options.bucketMs) > MAX_ACTIVITY_BUCKETS
    ? `activity: at most ${MAX_ACTIVITY_BUCKETS} buckets`
    : null

/** Folds (state, bucket index, count) rows into every bucket of the window, oldest first. */
export const foldActivity = (
  rows: ReadonlyArray<{ readonly state: string; readonly bucket: number; readonly count: number }>,
  options: { readonly since: number; readonly until: number; readonly bucketMs: number }
): ReadonlyArray<ActivityBucket> => {
  const size = Math.ceil((options.until - options.since) / options.bucketMs)
  const buckets = Array.from({ length: size }, (_, i) => ({
    start: options.since + i * options.bucketMs,
    delivered: 0,
    retrying: 0,
    failed: 0,
    expired: 0
  }))
  for (const row of rows) {
    const field = activityStates[row.state as keyof typeof activityStates]
    const bucket = buckets[Number(row.bucket)]
    if (field !== undefined && bucket !== undefined) bucket[field] += Number(row.count)
  }
  return buckets
}

/** Whether an entry passes a listing's filters (the memory store's `WHERE`). */
export const matchesFilter = (e: OutboxEntry, filter: ListFilter): boolean =>
  (filter.state === undefined || e.state === filter.state) &&
  (filter.channel === undefined || e.channel === filter.channel) &&
  (filter.to === undefined || e.to === filter.to) &&
  (filter.before === undefined ||
    e.enqueuedAt < filter.before ||
    (filter.beforeId !== undefined && e.enqueuedAt === filter.before && e.id < filter.beforeId))
