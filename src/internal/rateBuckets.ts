/**
 * The account buckets of the rate limiter: one per (channel, account), the virtual-scheduling form of a token bucket
 * (GCRA). A bucket holds `tat`, the time the next evenly spaced send is due; a send may go `toleranceMs` ahead of it
 * (the burst). A reservation takes the next slot at once, so waiters queue in reservation order with no fiber or
 * timer per bucket, and its slot is known in advance: a send that would wait past its horizon reserves nothing and
 * is told when to come back instead (`planned` spreads those over the following slots, so they do not all return at
 * once). A pause (a 429's retry-after) restarts the queue at its end: waiters re-reserve after it, in order.
 *
 * The store behind the buckets is in-process (`memory`) or shared by every process of a gateway (PostgreSQL,
 * `pgRateBuckets`), so the limit holds for the gateway as a whole.
 */
import * as Effect from "effect/Effect"
import type { BucketStore, Reservation, Spacing } from "../RateLimits.js"

export type { BucketStore, Reservation, Spacing } from "../RateLimits.js"

interface Bucket {
  tat: number
  pausedUntil: number
  planned: number
}

/** The slot a reservation at `at` gets in a bucket, and the bucket's next `tat` if it is taken. */
export const slotOf = (
  bucket: { readonly tat: number; readonly pausedUntil: number },
  spacing: Spacing,
  at: number
): number =>
  spacing.intervalMs === undefined
    ? Math.max(at, bucket.pausedUntil)
    : Math.max(at, bucket.pausedUntil, bucket.tat - spacing.toleranceMs)

/** Buckets in this process's memory. */
export const memory = (): BucketStore => {
  const buckets = new Map<string, Bucket>()
  const get = (key: string) => {
    let bucket = buckets.get(key)
    if (bucket === undefined) {
      bucket = { tat: Number.NEGATIVE_INFINITY, pausedUntil: Number.NEGATIVE_INFINITY, planned: 0 }
      buckets.set(key, bucket)
    }
    return bucket
  }
  return {
    kind: "memory",
    reserve: (key, spacing, at, latest) =>
      Effect.sync((): Reservation => {
        const bucket = get(key)
        const slot = slotOf(bucket, spacing, at)
        const interval = spacing.intervalMs ?? 0
        if (slot > latest) {
          const until = Math.max(slot, bucket.planned)
          bucket.planned = until + interval
          return { _tag: "Full", until }
        }
        const before = bucket.tat
        if (spacing.intervalMs !== undefined) bucket.tat = Math.max(bucket.tat, slot) + interval
        return { _tag: "Reserved", slot, before, after: bucket.tat }
      }),
    pause: (key, until, now) =>
      Effect.sync(() => {
        const bucket = get(key)
        if (until <= bucket.pausedUntil) return false
        // the sends planned for later move by as much as the pause grew, so the ones planned next still come first
        const extension = until - Math.max(now, bucket.pausedUntil)
        bucket.planned = bucket.planned > now ? bucket.planned + extension : until
        // the queue restarts at the pause's end: waiting sends reserve again, in order, after it
        bucket.pausedUntil = until
        bucket.tat = until
        return true
      }),
    cancel: (key, reservation) =>
      Effect.sync(() => {
        const bucket = buckets.get(key)
        if (bucket !== undefined && reservation._tag === "Reserved" && bucket.tat === reservation.after) {
          bucket.tat = reservation.before
        }
      })
  }
}
