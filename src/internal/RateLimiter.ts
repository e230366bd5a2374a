/**
 * The rate limiter: before each part's adapter call, a send waits for its token (see `RateLimits` for what limits
 * apply). Waiting is neither an attempt nor a failure; it happens in the delivering fiber, holding the row's lease
 * (renewed by the lease keeper) and its worker slot, so it is kept short:
 *
 * - the first part of a send whose token is further away than its horizon does not wait: it fails with `Postponed`
 *   and the delivery puts the row back, due when its token is (no attempt counted). The horizon is `maxRateWait` for
 *   a live `deliver` (its caller gets `Deferred`), and the worker interval for a worker row (half the lease at most):
 *   a pass comes at least that often, so nothing is gained by holding a slot longer, and rows of a saturated channel
 *   leave the worker's slots to other channels' rows instead of queueing in them;
 * - a later part of a send (the send is under way) waits however long it takes.
 *
 * Order: a conversation has one row in flight at a time (its lane), a recipient's sends take its windows under a lock,
 * and an account's bucket hands out slots in reservation order. Waits sleep on `Clock` (TestClock moves them).
 * A 429 with `retryAfterMs` pauses the account's bucket: waiting sends wake, and reserve again after the pause.
 *
 * Why not `effect/RateLimiter`: it keeps a refill fiber per limiter and hands out tokens without saying when one will
 * come, so it cannot tell a send its wait in advance (postponing, `maxRateWait`), be paused by a 429, or be shared
 * by processes through a database row; a reservation on a GCRA bucket does all three with no fiber per bucket.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { Channel } from "../ChannelAdapter.js"
import type { OutboxEntry } from "../Delivery.js"
import type { SendError, StoreError } from "../DeliveryError.js"
import * as Metrics from "../Metrics.js"
import type { OutboxConfigShape } from "../OutboxConfig.js"
import type { Rules } from "../RateLimits.js"
import { rulesOf } from "../RateLimits.js"
import type { BucketStore, Reservation } from "./rateBuckets.js"
import { memory } from "./rateBuckets.js"
import * as RateWindows from "./rateWindows.js"

/**
 * A send that would wait past its horizon: nothing was sent. Its token comes at `until`; the row is claimable again
 * from `claimAt`, a worker horizon earlier, so a worker pass (at most an interval apart) claims it before its token
 * comes and no slot of the channel goes unused.
 */
export class Postponed {
  readonly _tag = "Postponed"
  constructor(readonly until: number, readonly claimAt: number) {}
}

/** The limiter's hooks around one send's parts (see `Sender.PartHooks`). */
export interface Gate {
  /** waits for the token of the next part; the first part of the send may be `Postponed` instead */
  readonly before: (partIndex: number) => Effect.Effect<void, Postponed>
  /** a failed part: a `retryAfterMs` pauses the account */
  readonly failed: (error: SendError) => Effect.Effect<void>
}

/** The rate limiter of one outbox. */
export interface RateLimiter {
  /** The gate of one send of `entry` through `channel` (`live`: a `deliver` caller waits for it). */
  readonly gate: (entry: OutboxEntry, channel: Channel, live: boolean) => Gate
}

/** The announcements the limiter makes (the outbox's event stream). */
export interface Events {
  readonly throttled: (entry: OutboxEntry, waitMs: number) => Effect.Effect<void>
  readonly rateLimited: (entry: OutboxEntry, retryAfterMs: number, until: number) => Effect.Effect<void>
}

/** What the limiter needs from the outbox. */
export interface Deps {
  readonly config: OutboxConfigShape
  /** the buckets: a store's shared ones (PostgreSQL), else in memory */
  readonly store?: BucketStore | undefined
  readonly events: Events
}

/** This process's view of a bucket: its pause, and the sends sleeping on it (woken when a pause moves their slot). */
interface Local {
  pausedUntil: number
  epoch: number
  readonly waiters: Set<Deferred.Deferred<void>>
  /** when this process last sent on the bucket (for the spacing guard) */
  lastSentAt: number
}

const NO_RULES: Rules = { intervalMs: undefined, toleranceMs: 0, windows: [] }

/** Slots are fractional (1000 / 30 ms apart) and sums of them carry float noise: 3000.0000001 is still 3000. */
const EPSILON = 1e-6

/** The millis to sleep from `now` (integer) until `slot`, so the clock stays on whole millis. */
const millisUntil = (slot: number, now: number) => Math.max(0, Math.ceil(slot - now - EPSILON))

/** An account's bucket key: `["channel","account"]` (JSON: unambiguous, and storable as PostgreSQL text). */
const bucketKey = (entry: OutboxEntry) => JSON.stringify([entry.channel, entry.accountId ?? null])

/** The channel of a bucket key (for a pause another process announced). */
const channelOfKey = (key: string): string => {
  try {
    const parsed: unknown = JSON.parse(key)
    return Array.isArray(parsed) && typeof parsed[0] === "string" ? parsed[0] : key
  } catch {
    return key
  }
}

/** What the limiter's steps share: its configuration and clock, the buckets, and this process's view of them. */
interface Limiter {
  readonly config: OutboxConfigShape
  readonly events: Events
  readonly clock: Clock.Clock
  readonly scope: Scope.Scope
  readonly store: BucketStore
  /** used for a send whose shared bucket cannot be reached: the limit then holds per process until it comes back */
  readonly fallback: BucketStore
  readonly liveHorizon: number
  /** a worker row holds its slot at most until the next pass could claim it again (and never near its lease's end) */
  readonly workerHorizon: number
  readonly rulesCache: Map<string, Rules | null>
  readonly locals: Map<string, Local>
  readonly recipients: ReturnType<typeof RateWindows.make>
  /** a tagged metric is a new object each time it is made: one per channel is kept for the sends' hot path */
  readonly waitMetrics: Map<string, ReturnType<typeof Metrics.rateWait>>
}

/** Makes the limiter; pauses announced by other processes (a shared store) are followed for as long as `scope` lives. */
export const make = (deps: Deps): Effect.Effect<RateLimiter, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { config, events } = deps
    const clock = yield* Effect.clock
    const store = deps.store ?? memory()
    const l: Limiter = {
      config,
      events,
      clock,
      scope: yield* Effect.scope,
      store,
      fallback: store.kind === "memory" ? store : memory(),
      liveHorizon: Duration.toMillis(config.maxRateWait),
      workerHorizon: Math.min(Duration.toMillis(config.workerInterval), Duration.toMillis(config.leaseDuration) / 2),
      rulesCache: new Map(),
      locals: new Map(),
      recipients: RateWindows.make(() => clock.unsafeCurrentTimeMillis()),
      waitMetrics: new Map()
    }
    if (store.pauses !== undefined) {
      // a pause another process made: its channel is the key's first part
      yield* Stream.runForEach(store.pauses, ({ key, until }) => applyPause(l, key, channelOfKey(key), until)).pipe(
        Effect.zipRight(Effect.logWarning("the rate limit pause notifications ended; listening again")),
        Effect.catchAllCause((cause) =>
          Effect.logWarning(`rate limit pause notifications failed; listening again: ${Cause.pretty(cause)}`)
        ),
        Effect.repeat(Schedule.spaced("1 second")),
        Effect.annotateLogs({ module: "RateLimiter" }),
        Effect.forkScoped
      )
    }

    return { gate: (entry, channel, live) => gate(l, entry, channel, live) }
  })

/** The channel's wait histogram (made once per channel). */
const waitMetric = (l: Limiter, channel: string) => {
  let metric = l.waitMetrics.get(channel)
  if (metric === undefined) l.waitMetrics.set(channel, metric = Metrics.rateWait(channel))
  return metric
}

/** Fails a send whose token is at `until`: the row is put back, claimable a worker horizon before it. */
const postponed = (l: Limiter, until: number) =>
  Effect.fail(
    new Postponed(until, Math.max(l.clock.unsafeCurrentTimeMillis(), Math.ceil(until - EPSILON) - l.workerHorizon))
  )

/** The limits of a bucket (configuration over the adapter's suggestion), made once per bucket. */
const rulesFor = (l: Limiter, entry: OutboxEntry, channel: Channel, key: string): Rules | undefined => {
  let rules = l.rulesCache.get(key)
  if (rules === undefined) {
    const configured = Object.hasOwn(l.config.rateLimits, entry.channel)
      ? l.config.rateLimits[entry.channel]
      : channel.rateLimit
    rules = configured === undefined || configured === "none"
      ? null
      : rulesOf(configured, entry.accountId) ?? null
    l.rulesCache.set(key, rules)
  }
  return rules ?? undefined
}

/** This process's view of bucket `key`, made on first use. */
const localOf = (l: Limiter, key: string): Local => {
  let local = l.locals.get(key)
  if (local === undefined) {
    local = {
      pausedUntil: Number.NEGATIVE_INFINITY,
      epoch: 0,
      waiters: new Set(),
      lastSentAt: Number.NEGATIVE_INFINITY
    }
    l.locals.set(key, local)
  }
  return local
}

/** Follows a pause of bucket `key` until `until`: its sleeping sends wake and reserve again after it. */
const applyPause = (l: Limiter, key: string, channel: string, until: number) =>
  Effect.suspend(() => {
    const local = localOf(l, key)
    if (until <= local.pausedUntil) return Effect.void
    local.pausedUntil = until
    local.epoch++
    for (const waiter of local.waiters) Deferred.unsafeDone(waiter, Exit.void)
    local.waiters.clear()
    const remaining = until - l.clock.unsafeCurrentTimeMillis()
    return Effect.zipRight(
      Metric.set(Metrics.ratePause(channel), remaining),
      // the gauge goes back to 0 when the pause ends, unless a longer one replaced it meanwhile
      Effect.forkIn(
        Effect.zipRight(
          Clock.sleep(Math.max(0, Math.ceil(remaining))),
          Effect.suspend(() => local.pausedUntil === until ? Metric.set(Metrics.ratePause(channel), 0) : Effect.void)
        ),
        l.scope
      )
    )
  })

/** A store call that falls back to the in-process buckets when the shared store fails (logged and counted). */
const withFallback = <A>(
  operation: string,
  shared: Effect.Effect<A, StoreError>,
  local: Effect.Effect<A, StoreError>
): Effect.Effect<A> =>
  Effect.catchAll(shared, (error) =>
    Effect.zipRight(
      Effect.zipRight(
        Metric.increment(Metrics.writeFailures(operation)),
        Effect.logWarning(`rate limit ${operation} failed; this process limits alone meanwhile: ${error.message}`)
      ),
      Effect.orDie(local)
    ))

/**
 * The spacing guard: a send whose timer fired late (a busy event loop) would go out right before the next one,
 * whose timer did not, and a strict API counts both in one second. Without a burst, a send also waits until an
 * interval after this process's previous send on the bucket, and the slots after a late one shift by its delay.
 * A send on time counts from its slot (the clock's whole millis would otherwise add up to a slower rate).
 */
const spaced = (l: Limiter, local: Local, rules: Rules, slot: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (rules.intervalMs === undefined || rules.toleranceMs > 0) return Effect.void
    const now = l.clock.unsafeCurrentTimeMillis()
    const due = Math.max(slot, local.lastSentAt + rules.intervalMs)
    const wait = millisUntil(due, now)
    if (wait > 0) return Effect.zipRight(Clock.sleep(wait), spaced(l, local, rules, due))
    local.lastSentAt = Math.max(due, now - 1)
    return Effect.void
  })

/** Waits for a slot of the account's bucket no later than `latest` (else `Postponed`); follows pauses. */
const takeSlot = (
  l: Limiter,
  key: string,
  rules: Rules,
  horizon: { latest: number; readonly renewed: number | undefined },
  onWait: (waitMs: number) => Effect.Effect<void>
): Effect.Effect<void, Postponed> =>
  Effect.gen(function*() {
    const local = localOf(l, key)
    let latest = horizon.latest
    while (true) {
      const epoch = local.epoch
      const now = l.clock.unsafeCurrentTimeMillis()
      const reservation: Reservation = yield* withFallback(
        "rate_reserve",
        l.store.reserve(key, rules, now, latest),
        l.fallback.reserve(key, rules, now, latest)
      )
      if (reservation._tag === "Full") return yield* postponed(l, reservation.until)
      const wait = millisUntil(reservation.slot, now)
      if (wait === 0) return yield* spaced(l, local, rules, reservation.slot)
      yield* onWait(wait)
      const wake = Deferred.unsafeMake<void>(FiberId.none)
      local.waiters.add(wake)
      yield* Effect.raceFirst(Clock.sleep(wait), Deferred.await(wake)).pipe(
        Effect.ensuring(Effect.sync(() => local.waiters.delete(wake))),
        Effect.onInterrupt(() => l.store.cancel(key, reservation))
      )
      // woken by a pause: the queue restarted after it, so this send reserves again (a worker row that already
      // holds its slot may wait a horizon from now: putting it back and claiming it again would only cost writes)
      if (local.epoch === epoch) return yield* spaced(l, local, rules, reservation.slot)
      if (horizon.renewed !== undefined) {
        latest = Math.max(latest, l.clock.unsafeCurrentTimeMillis() + horizon.renewed)
      }
    }
  })

/** Waits for the recipient's windows, then for a bucket slot; at most until `latest`. */
const acquire = (
  l: Limiter,
  entry: OutboxEntry,
  key: string,
  rules: Rules,
  horizon: number,
  live: boolean
): Effect.Effect<void, Postponed> =>
  Effect.gen(function*() {
    const start = l.clock.unsafeCurrentTimeMillis()
    const latest = start + horizon + EPSILON
    const slotHorizon = { latest, renewed: live || !Number.isFinite(horizon) ? undefined : horizon }
    let announced = false
    const onWait = (waitMs: number) => {
      if (announced) return Effect.void
      announced = true
      return l.events.throttled(entry, waitMs)
    }
    const windows = rules.windows.filter((w) => w.match === undefined || w.match.test(entry.to))
    if (windows.length === 0) yield* takeSlot(l, key, rules, slotHorizon, onWait)
    else {
      yield* l.recipients.with(`${key}\u0000${entry.to}`, (recipient) =>
        Effect.gen(function*() {
          const at = RateWindows.earliest(recipient, windows, l.clock.unsafeCurrentTimeMillis())
          if (at > latest) return yield* postponed(l, at)
          const wait = millisUntil(at, l.clock.unsafeCurrentTimeMillis())
          if (wait > 0) {
            yield* onWait(wait)
            yield* Clock.sleep(wait)
          }
          yield* takeSlot(l, key, rules, slotHorizon, onWait)
          RateWindows.recordSend(recipient, windows, l.clock.unsafeCurrentTimeMillis())
        }))
    }
    yield* Metric.update(waitMetric(l, entry.channel), l.clock.unsafeCurrentTimeMillis() - start)
  }).pipe(
    Effect.tapError(() => Metric.increment(Metrics.ratePostponed(entry.channel)))
  )

/** A 429's retry-after: the account's bucket paused (shared when the store is), announced, counted and logged. */
const pause = (l: Limiter, entry: OutboxEntry, key: string, retryAfterMs: number) =>
  Effect.gen(function*() {
    const now = l.clock.unsafeCurrentTimeMillis()
    const until = now + retryAfterMs
    const extended = yield* withFallback(
      "rate_pause",
      l.store.pause(key, until, now),
      l.fallback.pause(key, until, now)
    )
    yield* applyPause(l, key, entry.channel, until)
    if (!extended) return
    yield* Metric.increment(Metrics.ratePauses(entry.channel))
    yield* l.events.rateLimited(entry, retryAfterMs, until)
    yield* Effect.logWarning(
      `channel ${entry.channel}${
        entry.accountId === undefined ? "" : ` (account ${entry.accountId})`
      } answered 429: paused for ${retryAfterMs} ms`
    )
  })

/** `RateLimiter.gate`. */
const gate = (l: Limiter, entry: OutboxEntry, channel: Channel, live: boolean): Gate => {
  const key = bucketKey(entry)
  let first = true
  return {
    before: () =>
      Effect.suspend(() => {
        const horizon = first ? (live ? l.liveHorizon : l.workerHorizon) : Number.POSITIVE_INFINITY
        first = false
        const rules = rulesFor(l, entry, channel, key)
        if (rules === undefined) {
          // no limits: only a pause (a 429) holds it
          const local = l.locals.get(key)
          if (local === undefined || local.pausedUntil <= l.clock.unsafeCurrentTimeMillis()) return Effect.void
          return acquire(l, entry, key, NO_RULES, horizon, live)
        }
        return acquire(l, entry, key, rules, horizon, live)
      }),
    failed: (error) =>
      error.retryAfterMs === undefined || !(error.retryAfterMs > 0)
        ? Effect.void
        : pause(l, entry, key, error.retryAfterMs)
  }
}
