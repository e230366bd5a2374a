/**
 * One recovery pass: write the acks kept from failed ack writes, expire waiting rows past their TTL, then claim due
 * rows while there are free send slots and time left in the budget (75 % of the interval by default), starting
 * `deliverEntry` for each in a fiber of its own; wait for them within the budget (`runRecoveryPass`; the worker's
 * passes return once they have started them), prune when due. A send still running at the end of the budget goes on in the
 * background, holding its slot (so a hanging channel holds its slots, never the next pass). A claim that comes back
 * short ends the claiming: nothing more is due, and a conversation's next rows are started by its lane when its head
 * finishes, not by the next pass.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type { EntryId } from "../Delivery.js"
import type { StoreError } from "../DeliveryError.js"
import * as Metrics from "../Metrics.js"
import type { OutboxConfigShape } from "../OutboxConfig.js"
import type { ClaimedEntry, OutboxRepoShape } from "../OutboxRepo.js"
import type { Outcome } from "./DeliverEntry.js"
import { yieldToEventLoop } from "./Journal.js"
import { whenTraced } from "./tracing.js"

/** What one recovery pass did. */
export interface RecoveryReport {
  readonly expired: number
  readonly claimed: number
  readonly delivered: number
  readonly retried: number
  readonly terminal: number
  /** worker sends still running when the pass ended (a slow channel; they finish in the background) */
  readonly inFlight: number
  readonly quarantined: number
  readonly acksFlushed: number
  readonly possibleDuplicates: number
  readonly pruned: number
}

/** What a pass needs from the outbox. */
export interface Deps {
  readonly repo: OutboxRepoShape
  readonly config: OutboxConfigShape
  readonly owner: string
  /** starts delivering a claimed row in a fiber of the outbox's deliveries; `finally` runs when that fiber ends */
  readonly start: (claimed: ClaimedEntry, finally_: Effect.Effect<void>) => Effect.Effect<Fiber.RuntimeFiber<Outcome>>
  readonly flushPendingAcks: Effect.Effect<number, StoreError>
  readonly prune: Effect.Effect<number, StoreError>
  readonly quarantine: (
    bad: { readonly id: EntryId; readonly message: string },
    now: number
  ) => Effect.Effect<void, StoreError>
  readonly announceExpired: (ids: ReadonlyArray<EntryId>) => Effect.Effect<void>
}

/**
 * How a pass runs. `housekeeping`: whether it also expires rows past their TTL, prunes when the prune interval has
 * passed and sets the pending gauge — on every pass (`runRecoveryPass`) or when a worker interval has passed since a
 * pass last did (the worker's passes). `wait`: whether it waits, within the budget, for the sends it started
 * (`runRecoveryPass`, whose report then counts how they ended); the worker's passes return once their rows are
 * started, and count the ones still sending as in flight.
 */
export interface Options {
  readonly housekeeping: "always" | "whenDue"
  readonly wait: boolean
}

/** Builds the pass. */
export const make = (deps: Deps) =>
  Effect.gen(function*() {
    const { config, owner, repo } = deps
    const leaseMs = Duration.toMillis(config.leaseDuration)
    const slots = yield* Effect.makeSemaphore(config.workerConcurrency)
    // only passes take slots (one pass at a time), so this mirror sizes the claims
    let freeSlots = config.workerConcurrency
    const take = (n: number) => Effect.zipRight(slots.take(n), Effect.sync(() => void (freeSlots -= n)))
    const release = (n: number) => Effect.zipRight(Effect.sync(() => void (freeSlots += n)), slots.release(n))
    let lastPrune: number | null = null

    /** Claims rows for the free slots (waiting for one until `deadline`) and starts them; none when nothing is due. */
    const claimAndStart = (deadline: number, tally: Tally) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.gen(function*() {
          const wait = Duration.millis(Math.max(0, deadline - (yield* Clock.currentTimeMillis)))
          const first = yield* restore(Effect.timeoutOption(take(1), wait))
          if (Option.isNone(first)) return { full: false, quarantined: 0 }
          const now = yield* Clock.currentTimeMillis
          // a slot that came free as the budget ran out (the timeout and a finishing send at the same instant)
          if (now >= deadline) {
            yield* release(1)
            return { full: false, quarantined: 0 }
          }
          const limit = Math.min(config.claimBatch, 1 + freeSlots)
          if (limit > 1) yield* take(limit - 1)
          const batch = yield* Effect.onError(repo.claim({ owner, now, leaseMs, limit }), () => release(limit)).pipe(
            (claim) =>
              whenTraced(claim, (claim) =>
                claim.pipe(
                  Effect.tap((b) => Effect.annotateCurrentSpan("outbox.claimed", b.claimed.length)),
                  Effect.withSpan("Outbox.claim", { captureStackTrace: false, attributes: { "outbox.limit": limit } })
                ))
          )
          yield* release(limit - batch.claimed.length)
          // a claimed row is started at once, so an interruption (shutdown) never strands a claimed row unsent
          for (const claimed of batch.claimed) track(tally, yield* deps.start(claimed, release(1)))
          for (const bad of batch.malformed) yield* deps.quarantine(bad, now)
          return { full: batch.claimed.length + batch.malformed.length >= limit, quarantined: batch.malformed.length }
        })
      )

    let lastHousekeeping: number | null = null
    return (options: Options): Effect.Effect<RecoveryReport, StoreError> =>
      Effect.gen(function*() {
        const start = yield* Clock.currentTimeMillis
        const housekeeping = options.housekeeping === "always" || lastHousekeeping === null ||
          start - lastHousekeeping >= Duration.toMillis(config.workerInterval)
        if (housekeeping) lastHousekeeping = start
        const deadline = start + Duration.toMillis(config.workerInterval) * config.workerBudget
        const untilDeadline = Effect.map(Clock.currentTimeMillis, (now) => Duration.millis(Math.max(0, deadline - now)))
        // a pass is several synchronous database steps: let the event loop in first (a caller may run passes in a loop)
        yield* yieldToEventLoop
        const acksFlushed = yield* deps.flushPendingAcks

        const expired = housekeeping ? yield* repo.expire(start) : []
        if (expired.length > 0) {
          yield* Metric.incrementBy(Metrics.expired, expired.length)
          yield* deps.announceExpired(expired)
          yield* Effect.logWarning(`expired ${expired.length} rows past maxAge`)
        }

        const tally = makeTally()
        let quarantined = 0
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const claimed = yield* claimAndStart(deadline, tally)
          quarantined += claimed.quarantined
          if (!claimed.full) break
          yield* yieldToEventLoop // a backlog is claimed batch after batch: let the gateway's I/O in between
        }
        // this pass's sends, waited for within the budget (a slower one goes on in the background, and so do the rows
        // their conversations go on to); the worker's passes do not wait, so it takes its next wake-up (an enqueue
        // meanwhile) at once rather than when the slowest of these sends ends
        if (options.wait) yield* tally.idle.await.pipe(Effect.timeoutOption(yield* untilDeadline))

        let pruned = 0
        if (
          housekeeping && (lastPrune === null || start - lastPrune >= Duration.toMillis(config.pruneInterval))
        ) {
          pruned = yield* deps.prune
          lastPrune = start
        }
        if (housekeeping) yield* Metric.set(Metrics.pending, yield* repo.pendingCount)

        return reportOf(tally, { expired: expired.length, quarantined, acksFlushed, pruned })
      }).pipe(Effect.withSpan("Outbox.runRecoveryPass", { captureStackTrace: false }))
  })

/**
 * A pass's rows, counted as each one's fiber ends: a pass over a long backlog keeps counts, not the fibers of the rows
 * it has finished (each held its fiber refs and outcome until the pass ended).
 */
interface Tally {
  started: number
  running: number
  delivered: number
  retried: number
  terminal: number
  possibleDuplicates: number
  /** open while none of the pass's rows is running */
  readonly idle: Effect.Latch
}

/** The pass's report: its rows' counts as they stand now, and what else it did. */
const reportOf = (
  tally: Tally,
  rest: Pick<RecoveryReport, "expired" | "quarantined" | "acksFlushed" | "pruned">
): RecoveryReport => ({
  ...rest,
  claimed: tally.started,
  delivered: tally.delivered,
  retried: tally.retried,
  terminal: tally.terminal,
  inFlight: tally.running,
  possibleDuplicates: tally.possibleDuplicates
})

const makeTally = (): Tally => ({
  started: 0,
  running: 0,
  delivered: 0,
  retried: 0,
  terminal: 0,
  possibleDuplicates: 0,
  idle: Effect.unsafeMakeLatch(true)
})

/** Counts a started row, and its outcome when its fiber ends (at once if it has ended already). */
const track = (tally: Tally, fiber: Fiber.RuntimeFiber<Outcome>) => {
  tally.started++
  tally.running++
  tally.idle.unsafeClose()
  fiber.addObserver((exit) => {
    tally.running--
    if (Exit.isSuccess(exit)) {
      const outcome = exit.value
      if (outcome.possibleDuplicate) tally.possibleDuplicates++
      if (outcome._tag === "Delivered") tally.delivered++
      else if (outcome._tag === "Skipped" || (outcome._tag === "Failed" && outcome.finished)) tally.terminal++
      else if (outcome._tag === "Failed") tally.retried++
    }
    if (tally.running === 0) tally.idle.unsafeOpen()
  })
}
