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
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Metric from "effect/Metric"
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
  /** The lane of a row finished outside a delivery (a kept ack written): starts the conversation's next due row. */
  readonly continueConversation: (entry: OutboxEntry) => Effect.Effect<void>
  /** Waits until no delivery is in progress. */
  readonly awaitIdle: Effect.Effect<void>
  /** Stops starting rows, waits up to `grace` for the deliveries in progress, interrupts the rest; true if all finished. */
  readonly drain: (grace: Duration.DurationInput) => Effect.Effect<boolean>
}

/** A finished row whose conversation may go on: its slot passes to the next row, or back when there is none. */
interface LaneItem {
  readonly key: string
  /** the finished row's `finally_` (a worker slot's release) */
  readonly slot: Effect.Effect<void>
  /** resumes the finished row's fiber once the lane claim it waits for has run */
  resume: (done: Effect.Effect<void>) => void
  /** handed: the next row took the slot; released: the finished row's fiber gave it back (interrupted) */
  state: "waiting" | "handed" | "released"
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

/** What the deliveries' steps share: the outbox's parts, the fibers running, the lanes' queue and state. */
interface State {
  readonly deps: Deps
  readonly leaseMs: number
  readonly running: FiberSet.FiberSet<Outcome>
  /** conversations that may have a row waiting behind their head (see the module doc) */
  readonly waiting: Set<string>
  /**
   * lanes are claimed in batches: the conversations whose rows finished while the last claim ran, in one statement
   * (a plain array and each waiter's own resume, as the journal's: a Deferred per finished row cost ~1 % of a drain)
   */
  lanes: Array<LaneItem>
  readonly lanesWaiting: Effect.Latch
  closing: boolean
}

/** Makes the deliveries of an outbox in its scope. */
export const make = (deps: Deps): Effect.Effect<Deliveries, never, Scope.Scope> =>
  Effect.gen(function*() {
    const state: State = {
      deps,
      leaseMs: Duration.toMillis(deps.config.leaseDuration),
      running: yield* FiberSet.make<Outcome>(),
      waiting: new Set<string>(),
      lanes: [],
      lanesWaiting: Effect.unsafeMakeLatch(false),
      closing: false
    }
    yield* Effect.forkScoped(laneClaimer(state))
    return {
      start: (claimed, finally_) => start(state, claimed, finally_),
      noteWaiting: (entry) => void state.waiting.add(orderingKey(entry)),
      continueConversation: (entry) =>
        Effect.suspend(() => {
          const key = orderingKey(entry)
          return state.closing || !state.waiting.has(key) ? Effect.void : enterLane(state, laneItem(key, Effect.void))
        }),
      awaitIdle: FiberSet.awaitEmpty(state.running),
      drain: (grace) => drain(state, grace)
    }
  })

const laneItem = (key: string, slot: Effect.Effect<void>): LaneItem => ({
  key,
  slot,
  resume: () => {},
  state: "waiting"
})

/** Hands a finished row's conversation to the lane claimer and waits for its batch (so awaitIdle sees the next row). */
const enterLane = (state: State, item: LaneItem) =>
  Effect.async<void>((resume) => {
    item.resume = resume
    state.lanes.push(item)
    if (state.lanes.length === 1) state.lanesWaiting.unsafeOpen()
  })

/** Takes up to a batch of finished conversations (closing the latch when none is left). */
const takeLanes = (state: State) =>
  Effect.sync(() => {
    const { lanes } = state
    const items = lanes.length <= LANE_BATCH ? lanes : lanes.slice(0, LANE_BATCH)
    state.lanes = lanes.length <= LANE_BATCH ? [] : lanes.slice(LANE_BATCH)
    if (state.lanes.length === 0) state.lanesWaiting.unsafeClose()
    return items
  })

/** `Deliveries.start`. */
const start = (state: State, claimed: Claimed, finally_: Effect.Effect<void> = Effect.void) => {
  const { deps, running, waiting } = state
  if (claimed.followed === true) waiting.add(orderingKey(claimed.entry))
  let handOff: LaneItem | undefined
  return FiberSet.run(
    running,
    // a forked fiber's first step is already a task of its scheduler, and it inherits the time-sliced one from the
    // fiber that starts it (a `deliver` caller, a pass, the lane claimer: each runs on it), so a pass that starts
    // hundreds of rows does not run them in one go
    deps.deliverEntry(claimed).pipe(
      Effect.tap((outcome) =>
        Effect.suspend(() => {
          const key = orderingKey(claimed.entry)
          if (!outcome.finished || state.closing || !waiting.has(key)) {
            return claimed.live ? Effect.void : deps.signalWork
          }
          // the conversation goes on: its next row is claimed and takes over this row's slot (`finally_`), so a
          // drain holds `workerConcurrency` deliveries, not one per conversation with a backlog
          const item = laneItem(key, finally_)
          handOff = item
          return Effect.zipRight(
            enterLane(state, item),
            Effect.suspend(() => item.state === "handed" || claimed.live ? Effect.void : deps.signalWork)
          )
        })
      ),
      Effect.ensuring(Effect.suspend(() => {
        if (handOff?.state === "handed") return Effect.void
        if (handOff !== undefined) handOff.state = "released"
        return finally_
      })),
      // started from uninterruptible regions (a claim, a lane), it must still be interruptible itself: its send
      // timeout and a shutdown interrupt it
      Effect.interruptible
    )
  )
}

/** Claims the next due row of each conversation of `items` (their heads) and starts each in its predecessor's slot. */
const claimHeads = (state: State, items: ReadonlyArray<LaneItem>) =>
  Effect.gen(function*() {
    const { deps, leaseMs, waiting } = state
    const keys = [...new Set(items.map((item) => item.key))]
    const now = yield* Clock.currentTimeMillis
    const batch = yield* deps.repo.claim({ owner: deps.owner, now, leaseMs, limit: keys.length, orderingKeys: keys })
    for (const bad of batch.malformed) yield* deps.quarantine(bad, now)
    const found = new Set(batch.claimed.map((c) => orderingKey(c.entry)))
    for (const key of keys) if (!found.has(key) && batch.malformed.length === 0) waiting.delete(key)
    for (const next of batch.claimed) {
      const key = orderingKey(next.entry)
      const predecessor = items.find((item) => item.key === key && item.state === "waiting")
      if (predecessor !== undefined) predecessor.state = "handed"
      yield* start(state, { ...next, live: false }, predecessor?.slot)
    }
  }).pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(
        Metric.increment(Metrics.writeFailures("claim")),
        Effect.logWarning(
          `could not start the next replies of ${items.length} conversations; the worker will: ${error.message}`
        )
      )
    )
  )

/** The lane claimer's loop: a batch of finished conversations at a time, a turn of the event loop between batches. */
const laneClaimer = (state: State) => {
  // taken, claimed and answered in one uninterruptible step: a finished row taken is always resumed
  const claimBatch = Effect.flatMap(takeLanes(state), (items) =>
    items.length === 0 ? Effect.void : Effect.ensuring(
      claimHeads(state, items),
      Effect.sync(() => {
        for (const item of items) item.resume(Effect.void)
      })
    ))
  return state.lanesWaiting.await.pipe(
    Effect.zipRight(Effect.uninterruptible(claimBatch)),
    Effect.zipRight(yieldToEventLoop),
    Effect.forever
  )
}

/** `Deliveries.drain`. */
const drain = (state: State, grace: Duration.DurationInput) =>
  Effect.gen(function*() {
    const { running } = state
    state.closing = true
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
