/**
 * The deliveries in progress in this process, live and by the worker: each runs `deliverEntry` in a fiber of the
 * outbox's scope, so a shutdown can wait for all of them within the grace and interrupt the rest.
 *
 * Conversation lanes: only the oldest pending row of a conversation is claimable, so when a row finishes (delivered,
 * failed for good, expired) the next due row of its conversation is claimed and started at once, and a burst of
 * replies to one chat goes out back to back rather than one per worker tick. A live row whose conversation has no
 * row waiting behind it in this process's view (the common case) skips that claim: a row waits when it was stored
 * behind another (a deferred live reply), enqueued, or found behind a claimed row (a backlog, a previous boot's rows).
 */
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { EntryId, OutboxEntry } from "../Delivery.js"
import { orderingKey } from "../Delivery.js"
import type { StoreError } from "../DeliveryError.js"
import * as Metrics from "../Metrics.js"
import type { OutboxConfigShape } from "../OutboxConfig.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import type { Claimed, Outcome } from "./DeliverEntry.js"
import { yieldToEventLoop } from "./Journal.js"

/** The most conversations one lane claim takes. */
const LANE_BATCH = 500

/** The deliveries of one outbox. */
export interface Deliveries {
  /** Delivers a row in a fiber of its own; `finally_` runs when that fiber ends. */
  readonly start: (claimed: Claimed, finally_?: Effect.Effect<void>) => Effect.Effect<Fiber.RuntimeFiber<Outcome>>
  /** Notes that a row of `entry`'s conversation waits behind another, so the lane claims it when its head finishes. */
  readonly noteWaiting: (entry: OutboxEntry) => void
  /** The lane: claims the conversation's next due row, if any, and starts it without waiting for it. */
  readonly continueConversation: (entry: OutboxEntry) => Effect.Effect<void>
  /** Waits until no delivery is in progress. */
  readonly awaitIdle: Effect.Effect<void>
  /** Stops starting rows, waits up to `grace` for the deliveries in progress, interrupts the rest; true if all finished. */
  readonly drain: (grace: Duration.DurationInput) => Effect.Effect<boolean>
}

/** What the deliveries need from the outbox. */
export interface Deps {
  readonly deliverEntry: (claimed: Claimed) => Effect.Effect<Outcome>
  readonly repo: OutboxRepoShape
  readonly config: OutboxConfigShape
  readonly owner: string
  readonly quarantine: (
    bad: { readonly id: EntryId; readonly message: string },
    now: number
  ) => Effect.Effect<void, StoreError>
  /** wakes the worker (a worker row finished: its slot is free) */
  readonly signalWork: Effect.Effect<void>
}

/** Makes the deliveries of an outbox in its scope. */
export const make = (deps: Deps): Effect.Effect<Deliveries, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { config, owner, repo } = deps
    const leaseMs = Duration.toMillis(config.leaseDuration)
    const running = yield* FiberSet.make<Outcome>()
    // conversations that may have a row waiting behind their head (see the module doc)
    const waiting = new Set<string>()
    let closing = false

    const start = (claimed: Claimed, finally_: Effect.Effect<void> = Effect.void) => {
      if (claimed.followed === true) waiting.add(orderingKey(claimed.entry))
      return FiberSet.run(
        running,
        deps.deliverEntry(claimed).pipe(
          Effect.tap((outcome) => {
            if (!outcome.finished) return Effect.void
            const next = continueConversation(claimed.entry)
            return claimed.live ? next : Effect.zipRight(deps.signalWork, next)
          }),
          Effect.ensuring(finally_),
          // started from uninterruptible regions (a claim, a lane), it must still be interruptible itself: its send
          // timeout and a shutdown interrupt it
          Effect.interruptible
        )
      )
    }

    // lanes are claimed in batches: the conversations whose rows finished while the last claim ran, in one statement
    const lanes = yield* Queue.unbounded<{ readonly key: string; readonly done: Deferred.Deferred<void> }>()

    /** Claims the next due row of each conversation in `keys` (their heads) and starts them. */
    const claimHeads = (keys: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const batch = yield* repo.claim({ owner, now, leaseMs, limit: keys.length, orderingKeys: keys })
        for (const bad of batch.malformed) yield* deps.quarantine(bad, now)
        const found = new Set(batch.claimed.map((c) => orderingKey(c.entry)))
        for (const key of keys) if (!found.has(key) && batch.malformed.length === 0) waiting.delete(key)
        for (const next of batch.claimed) yield* start({ ...next, live: false })
      }).pipe(
        Effect.catchAll((error) =>
          Effect.zipRight(
            Metric.increment(Metrics.writeFailures("claim")),
            Effect.logWarning(
              `could not start the next replies of ${keys.length} conversations; the worker will: ${error.message}`
            )
          )
        )
      )

    const laneClaimer = Queue.takeBetween(lanes, 1, LANE_BATCH).pipe(
      Effect.flatMap((taken) => {
        const items = Array.from(taken)
        return Effect.zipRight(
          claimHeads([...new Set(items.map((item) => item.key))]),
          Effect.forEach(items, (item) => Deferred.succeed(item.done, undefined), { discard: true })
        ).pipe(Effect.uninterruptible)
      }),
      Effect.zipRight(yieldToEventLoop),
      Effect.forever
    )
    yield* Effect.forkScoped(laneClaimer)

    /** Hands the conversation to the lane claimer and waits for its batch, so the row's fiber ends after its successor started. */
    const continueConversation = (entry: OutboxEntry): Effect.Effect<void> =>
      Effect.suspend(() => {
        const key = orderingKey(entry)
        if (closing || !waiting.has(key)) return Effect.void
        return Effect.flatMap(
          Deferred.make<void>(),
          (done) => Effect.zipRight(Queue.offer(lanes, { key, done }), Deferred.await(done))
        )
      })

    const drain = (grace: Duration.DurationInput) =>
      Effect.gen(function*() {
        closing = true
        // a finalizer runs uninterruptibly: the wait must be made interruptible, or the timeout could not cut it
        const finished = yield* Effect.interruptible(FiberSet.awaitEmpty(running)).pipe(Effect.timeoutOption(grace))
        if (finished._tag === "Some") return true
        yield* Effect.logWarning(
          `${yield* FiberSet.size(
            running
          )} deliveries did not finish within the shutdown grace; their rows stay in flight and are reclaimed at the next start`
        )
        yield* FiberSet.clear(running)
        return false
      })

    return {
      start,
      noteWaiting: (entry) => void waiting.add(orderingKey(entry)),
      continueConversation,
      awaitIdle: FiberSet.awaitEmpty(running),
      drain
    }
  })
