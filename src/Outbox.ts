/**
 * The public facade: `deliver` (write-ahead, then send, then ack), `enqueue`, and the admin reads and writes.
 *
 * The live path and recovery run one program, `deliverEntry`, on a stored row: a recovered delivery makes exactly the
 * adapter calls the live one would have made. Every row being delivered runs in a fiber of this outbox's scope, so a
 * shutdown waits for all of them (live and worker) within `shutdownGrace`. When a row finishes (delivered, failed for
 * good, expired), its conversation's next due row is started at once: a burst of replies to one chat goes out back
 * to back, not one per worker tick.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { ChannelRegistry } from "./ChannelRegistry.js"
import type { DeliveryRequestInput, EntryId, OutboxEntry, OutboxStats } from "./Delivery.js"
import type {
  AckFailed,
  EntryNotFound,
  PartialDeliveryFailure,
  TransitionRejected,
  UnknownChannel
} from "./DeliveryError.js"
import { InvalidRequest, SendFailed, StoreError } from "./DeliveryError.js"
import type { DeliveryOutcome } from "./DeliveryOutcome.js"
import * as DeliverEntry from "./internal/DeliverEntry.js"
import * as Deliveries from "./internal/Deliveries.js"
import * as EventHub from "./internal/EventHub.js"
import { onFairScheduler } from "./internal/fairScheduler.js"
import { makeEntryIdGenerator } from "./internal/ids.js"
import * as Intake from "./internal/Intake.js"
import * as Journal from "./internal/Journal.js"
import * as RateLimiter from "./internal/RateLimiter.js"
import * as RecoveryPass from "./internal/RecoveryPass.js"
import * as SharedStore from "./internal/SharedStore.js"
import * as Upkeep from "./internal/Upkeep.js"
import * as Metrics from "./Metrics.js"
import { OutboxConfig } from "./OutboxConfig.js"
import { OutboxEvent } from "./OutboxEvent.js"
import type { ClaimedEntry, ListFilter, OutboxRepoShape } from "./OutboxRepo.js"
import { OutboxRepo } from "./OutboxRepo.js"
import * as Sender from "./Sender.js"

export { DeliveryOutcome } from "./DeliveryOutcome.js"

export { OutboxEvent } from "./OutboxEvent.js"

/** What one recovery pass did. */
export type RecoveryReport = RecoveryPass.RecoveryReport

/** A request as callers pass it: the plain-object form of `DeliveryRequest` (decoded and validated again at run time). */
export type DeliverInput = DeliveryRequestInput

/** The outbox service. */
export interface OutboxShape {
  /**
   * Write-ahead delivery: store (leased to this process), send, ack. Failures are recorded before they are returned.
   * `StoreError` means nothing was stored; once stored, a caller that gives up only stops waiting (the reply is sent).
   */
  readonly deliver: (
    request: DeliverInput
  ) => Effect.Effect<
    DeliveryOutcome,
    InvalidRequest | UnknownChannel | SendFailed | PartialDeliveryFailure | AckFailed | StoreError
  >
  /** Stores the request for the worker to send; returns its id (the existing id for a repeated idempotency key). */
  readonly enqueue: (request: DeliverInput) => Effect.Effect<EntryId, InvalidRequest | UnknownChannel | StoreError>
  /** Reads one entry. */
  readonly get: (id: EntryId) => Effect.Effect<Option.Option<OutboxEntry>, StoreError>
  /** Admin listing, newest first. */
  readonly list: (filter: ListFilter) => Effect.Effect<ReadonlyArray<OutboxEntry>, StoreError>
  /** Counts by state and channel, and the oldest pending age. */
  readonly stats: Effect.Effect<OutboxStats, StoreError>
  /** Admin retry of a failed_terminal or expired final reply: queued again, attempts reset, a fresh TTL. */
  readonly retry: (id: EntryId) => Effect.Effect<void, StoreError | EntryNotFound | TransitionRejected>
  /**
   * One worker pass: write kept acks, expire, claim and deliver within the budget (waiting for the sends it starts),
   * prune when due. The worker runs it without the wait (`runClaimPass`).
   */
  readonly runRecoveryPass: Effect.Effect<RecoveryReport, StoreError>
  /**
   * The worker's pass, on its interval and on every wake-up: `runRecoveryPass` without the wait for the sends it
   * starts (its report counts rows still sending as in flight), and expiring, pruning and setting the pending gauge
   * only when a worker interval has passed since it last did.
   */
  readonly runClaimPass: Effect.Effect<RecoveryReport, StoreError>
  /** Waits until no delivery is in progress in this process (live or by the worker). */
  readonly awaitIdle: Effect.Effect<void>
  /** Waits until this process enqueued a row or finished one (the worker's wake-up besides its interval). */
  readonly awaitWork: Effect.Effect<void>
  /**
   * Stops starting rows, waits up to `grace` for every delivery in progress (live and worker), then interrupts the
   * rest: their rows stay in flight under this lease and are reclaimed by this node's next start. True if all finished.
   */
  readonly drain: (grace: Duration.DurationInput) => Effect.Effect<boolean>
  /** Deletes delivered and failed rows past their retention; returns how many. */
  readonly prune: Effect.Effect<number, StoreError>
  /** Makes this node's earlier boots' in-flight rows claimable at once; returns how many. */
  readonly reclaimPreviousBoots: Effect.Effect<number, StoreError>
  /** Events of this process's outbox from when the stream starts (a slow subscriber loses the oldest past 10,000). */
  readonly events: Stream.Stream<OutboxEvent>
  /**
   * Subscribes at once: every event published after this returns is in the stream, which lasts as long as the scope
   * (a test subscribes, then triggers what it waits for; `events` subscribes only when its stream starts running).
   */
  readonly subscribe: Effect.Effect<Stream.Stream<OutboxEvent>, never, Scope.Scope>
  /** This process's lease owner: `${nodeId}/${bootId}`. */
  readonly owner: string
}

/** The `Outbox` service tag. */
export class Outbox extends Context.Tag("effect-outbox/Outbox")<Outbox, OutboxShape>() {}

const SPAN_OPTIONS = { captureStackTrace: false } as const

/** The admin reads and writes: straight to the store, each in its span. */
const adminOps = (
  repo: OutboxRepoShape,
  maxAgeMs: number,
  signalWork: Effect.Effect<void>
): Pick<OutboxShape, "get" | "list" | "stats" | "retry"> => ({
  get: (id) => repo.get(id).pipe(Effect.withSpan("Outbox.get", SPAN_OPTIONS)),
  list: (filter) => repo.list(filter).pipe(Effect.withSpan("Outbox.list", SPAN_OPTIONS)),
  stats: Effect.flatMap(Clock.currentTimeMillis, repo.stats).pipe(Effect.withSpan("Outbox.stats", SPAN_OPTIONS)),
  retry: (id) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* repo.requeue(id, now, now + maxAgeMs)
      yield* signalWork
      yield* Effect.logInfo(`entry ${id} requeued by admin retry`)
    }).pipe(Effect.withSpan("Outbox.retry", SPAN_OPTIONS))
})

/** `OutboxShape.drain`: waits for the deliveries within the grace, then writes what kept acks it can. */
const drainThenFlush =
  (deliveries: Deliveries.Deliveries, flushKeptAcks: Effect.Effect<number, StoreError>) =>
  (grace: Duration.DurationInput): Effect.Effect<boolean> =>
    Effect.zipLeft(
      deliveries.drain(grace),
      // acks that still cannot be written are lost with the process: their rows are replayed (possible duplicates)
      Effect.catchAll(flushKeptAcks, (error) =>
        Effect.zipRight(
          Metric.increment(Metrics.ackFailures),
          Effect.logError(`kept acks could not be written at shutdown: ${error.message}`)
        ))
    ).pipe(Effect.annotateLogs({ module: "Outbox" }))

/** The outbox's construction (its journal and the deliveries in progress live as long as the scope). */
const build: Effect.Effect<OutboxShape, never, OutboxRepo | ChannelRegistry | OutboxConfig | Scope.Scope> = Effect
  .gen(
    function*() {
      const repo = yield* OutboxRepo
      const registry = yield* ChannelRegistry
      const config = yield* OutboxConfig
      const ids = yield* makeEntryIdGenerator
      const owner = `${config.nodeId}/${yield* ids.next}`
      const leaseMs = Duration.toMillis(config.leaseDuration)
      const maxAgeMs = Duration.toMillis(config.maxAge)
      const journal = yield* Journal.make(repo, config.writeBatch)
      const hub = yield* EventHub.make
      const emit = hub.emit
      const work = yield* Queue.sliding<void>(1)
      // a wake-up already waiting covers this one: most finished rows find one, and skip the offer's steps
      const signalWork = Effect.suspend(() =>
        Option.getOrElse(work.unsafeSize(), () => 0) > 0 ? Effect.void : Effect.asVoid(Queue.offer(work, undefined))
      )
      const pendingAcks: DeliverEntry.Deps["pendingAcks"] = new Map()
      yield* SharedStore.keepAliveAndListen(repo, owner, signalWork)
      const limiter = yield* RateLimiter.make({ config, store: repo.rateBuckets, events: EventHub.limiterEvents(hub) })

      const upkeep = Upkeep.make({ repo, config, owner, emit })

      const deliverEntry = DeliverEntry.make({
        journal,
        sender: yield* Sender.make({ sendTimeout: config.sendTimeout, chunking: config.chunking }),
        registry,
        config,
        owner,
        pendingAcks,
        limiter,
        events: EventHub.deliveryEvents(hub)
      }, yield* Effect.scope)

      const deliveries: Deliveries.Deliveries = yield* Deliveries.make({
        deliverEntry,
        repo,
        config,
        owner,
        quarantine: (bad, now) => upkeep.quarantine(bad, now),
        signalWork
      })
      const { deliver, enqueue } = Intake.make({
        registry,
        journal,
        deliveries,
        ids,
        owner,
        leaseMs,
        maxAgeMs,
        announce: hub.announce,
        signalWork
      })
      const { continueConversation } = deliveries
      const flushPendingAcks = Upkeep.flushKeptAcks({ journal, owner, pendingAcks, emit, continueConversation })

      const runPass = yield* RecoveryPass.make({
        repo,
        config,
        owner,
        start: (claimed: ClaimedEntry, finally_) => deliveries.start({ ...claimed, live: false }, finally_),
        flushPendingAcks,
        prune: upkeep.prune,
        quarantine: upkeep.quarantine,
        announceExpired: (expired) =>
          Effect.forEach(expired, (entryId) => emit(OutboxEvent.expired({ entryId })), { discard: true })
      })

      const drain = drainThenFlush(deliveries, flushPendingAcks)

      // a scope that closes without a worker (or after it) still lets live deliveries finish within the grace
      yield* Effect.addFinalizer(() => drain(config.shutdownGrace))

      return {
        deliver,
        enqueue,
        ...adminOps(repo, maxAgeMs, signalWork),
        runRecoveryPass: onFairScheduler(runPass({ housekeeping: "always", wait: true })),
        runClaimPass: onFairScheduler(runPass({ housekeeping: "whenDue", wait: false })),
        awaitIdle: deliveries.awaitIdle,
        awaitWork: Queue.take(work),
        drain,
        prune: upkeep.prune,
        reclaimPreviousBoots: upkeep.reclaimPreviousBoots,
        events: Stream.unwrapScoped(hub.subscribe),
        subscribe: hub.subscribe,
        owner
      }
    }
  )

/** Builds the outbox in a scope; its own fibers (journal, lanes, call watchdog) run on the time-sliced scheduler. */
export const make: Effect.Effect<OutboxShape, never, OutboxRepo | ChannelRegistry | OutboxConfig | Scope.Scope> =
  onFairScheduler(build)

/** The outbox; needs a store, the channel registry and the configuration. */
export const layer: Layer.Layer<Outbox, never, OutboxRepo | ChannelRegistry | OutboxConfig> = Layer.scoped(Outbox, make)
