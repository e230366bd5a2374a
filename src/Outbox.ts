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
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import type * as Option from "effect/Option"
import * as PubSub from "effect/PubSub"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { ChannelRegistry } from "./ChannelRegistry.js"
import type {
  DeliveryRequest,
  DeliveryRequestInput,
  EntryId,
  EntryState,
  OutboxEntry,
  OutboxStats
} from "./Delivery.js"
import { decodeRequest } from "./Delivery.js"
import type {
  AckFailed,
  EntryNotFound,
  PartialDeliveryFailure,
  TransitionRejected,
  UnknownChannel
} from "./DeliveryError.js"
import { InvalidRequest, SendFailed, StoreError } from "./DeliveryError.js"
import * as Machine from "./EntryStateMachine.js"
import * as DeliverEntry from "./internal/DeliverEntry.js"
import * as Deliveries from "./internal/Deliveries.js"
import { onFairScheduler } from "./internal/fairScheduler.js"
import { makeEntryIdGenerator } from "./internal/ids.js"
import * as Journal from "./internal/Journal.js"
import * as LiveDelivery from "./internal/LiveDelivery.js"
import * as RateLimiter from "./internal/RateLimiter.js"
import * as RecoveryPass from "./internal/RecoveryPass.js"
import * as SharedStore from "./internal/SharedStore.js"
import { withSpan } from "./internal/tracing.js"
import * as Upkeep from "./internal/Upkeep.js"
import * as Metrics from "./Metrics.js"
import { OutboxConfig } from "./OutboxConfig.js"
import { OutboxEvent } from "./OutboxEvent.js"
import type { ClaimedEntry, InsertResult, ListFilter } from "./OutboxRepo.js"
import { OutboxRepo, WriteOp } from "./OutboxRepo.js"
import type { DeliveredPart } from "./Sender.js"
import * as Sender from "./Sender.js"

/** What `deliver` did. */
export type DeliveryOutcome = Data.TaggedEnum<{
  /** sent and acked */
  Delivered: { readonly entryId: EntryId; readonly results: ReadonlyArray<DeliveredPart> }
  /**
   * stored, sent later by the outbox: behind an older pending reply of the same conversation (sent as soon as that
   * one finishes), or because its rate-limit token is further away than `maxRateWait` (sent when it comes)
   */
  Deferred: { readonly entryId: EntryId; readonly reason: "conversation_busy" | "rate_limited" }
  /** the idempotency key was seen before: nothing was sent */
  Duplicate: { readonly entryId: EntryId; readonly state: EntryState }
}>
/** Constructors and matchers for `DeliveryOutcome`. */
export const DeliveryOutcome = Data.taggedEnum<DeliveryOutcome>()

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
  /** One worker pass: write kept acks, expire, claim and deliver within the budget, prune when due. */
  readonly runRecoveryPass: Effect.Effect<RecoveryReport, StoreError>
  /** A pass that only writes kept acks and claims due rows (no expiry, prune or gauge): the worker's pass on a wake-up. */
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

const EVENT_BUFFER = 10_000
const SPAN_OPTIONS = { captureStackTrace: false } as const

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
      const events = yield* PubSub.sliding<OutboxEvent>(EVENT_BUFFER)
      // nothing is published while nobody listens (most gateways never do): a publish per event costs a delivery ~5 %
      let subscribers = 0
      const emit = (event: OutboxEvent) =>
        Effect.suspend(() => subscribers === 0 ? Effect.void : Effect.asVoid(PubSub.publish(events, event)))
      /** `emit` for the delivery path, checked when called: the event is built only when someone listens. */
      const announce = (event: () => OutboxEvent) =>
        subscribers === 0 ? Effect.void : Effect.asVoid(PubSub.publish(events, event()))
      const work = yield* Queue.sliding<void>(1)
      const signalWork = Effect.asVoid(Queue.offer(work, undefined))
      const pendingAcks: DeliverEntry.Deps["pendingAcks"] = new Map()
      yield* SharedStore.keepAliveAndListen(repo, owner, signalWork)
      const limiter = yield* RateLimiter.make({
        config,
        store: repo.rateBuckets,
        events: {
          throttled: (entry, waitMs) =>
            emit(OutboxEvent.throttled({ entryId: entry.id, channel: entry.channel, waitMs })),
          rateLimited: (entry, retryAfterMs, until) =>
            emit(OutboxEvent.rate_limited({
              entryId: entry.id,
              channel: entry.channel,
              accountId: entry.accountId,
              retryAfterMs,
              until
            }))
        }
      })

      const upkeep = Upkeep.make({ repo, config, owner, emit })

      const subscribe = Effect.zipRight(
        Effect.acquireRelease(Effect.sync(() => subscribers++), () => Effect.sync(() => subscribers--)),
        Effect.map(PubSub.subscribe(events), (dequeue) => Stream.fromQueue(dequeue))
      )

      const deliverEntry = DeliverEntry.make({
        journal,
        sender: yield* Sender.make({ sendTimeout: config.sendTimeout, chunking: config.chunking }),
        registry,
        config,
        owner,
        pendingAcks,
        limiter,
        events: {
          sent: (entry, parts) =>
            announce(() => OutboxEvent.sent({ entryId: entry.id, channel: entry.channel, parts })),
          delivered: (entry) => announce(() => OutboxEvent.delivered({ entryId: entry.id, channel: entry.channel })),
          retryScheduled: (entry, error) =>
            emit(
              OutboxEvent.retry_scheduled({
                entryId: entry.id,
                attemptCount: entry.attemptCount,
                retryAt: entry.nextAttemptAt ?? 0,
                error
              })
            ),
          terminal: (entry, reason, error) => emit(OutboxEvent.terminal({ entryId: entry.id, reason, error })),
          expired: (entry) => emit(OutboxEvent.expired({ entryId: entry.id }))
        }
      }, yield* Effect.scope)

      const deliveries: Deliveries.Deliveries = yield* Deliveries.make({
        deliverEntry,
        repo,
        config,
        owner,
        quarantine: (bad, now) => upkeep.quarantine(bad, now),
        signalWork
      })
      const newEntry = (request: DeliveryRequest, now: number, live: boolean) =>
        Effect.map(ids.at(now), (id) => LiveDelivery.newEntry(request, { id, now, live, owner, leaseMs, maxAgeMs }))

      /** Decodes, resolves the channel and writes the new row through the journal (`live`: in flight, leased to us). */
      const store = (input: DeliverInput, live: boolean) =>
        Effect.gen(function*() {
          const request = yield* decodeRequest(input)
          yield* registry.get(request.channel)
          const entry = yield* newEntry(request, yield* Clock.currentTimeMillis, live)
          const result = yield* journal.write(WriteOp.Insert({ entry, deferIfBusy: live }))
          if (result._tag === "Invalid") return yield* Effect.fail(new InvalidRequest({ message: result.message }))
          if (result._tag !== "Inserted" && result._tag !== "Duplicate") {
            return yield* Effect.fail(
              new StoreError({ operation: "insert", message: `the store answered ${result._tag} to an insert` })
            )
          }
          if (result._tag === "Inserted") {
            // a row stored to wait (enqueued, or behind its conversation's pending row): its lane sends it
            if (result.entry.state === "queued") deliveries.noteWaiting(result.entry)
            yield* Metric.increment(Metrics.enqueued)
            yield* emit(OutboxEvent.enqueued({ entryId: result.entry.id, channel: result.entry.channel }))
          }
          return result satisfies InsertResult
        })

      const deliver: OutboxShape["deliver"] = (input) =>
        Effect.gen(function*() {
          // stored and started in one step: a caller interrupted meanwhile never leaves a leased row nobody delivers
          const started = yield* Effect.uninterruptible(Effect.flatMap(store(input, true), (stored) =>
            stored._tag === "Inserted" && stored.entry.state === "in_flight"
              ? Effect.map(
                deliveries.start({ entry: stored.entry, live: true, reclaimed: false }),
                (fiber) => ({ stored, fiber })
              )
              : Effect.succeed<{ stored: InsertResult; fiber: Fiber.RuntimeFiber<DeliverEntry.Outcome> | undefined }>({
                stored,
                fiber: undefined
              })))
          const { entry } = started.stored
          if (started.stored._tag === "Duplicate") {
            return DeliveryOutcome.Duplicate({ entryId: entry.id, state: entry.state })
          }
          if (started.fiber === undefined) {
            return DeliveryOutcome.Deferred({ entryId: entry.id, reason: "conversation_busy" })
          }
          // awaited, not joined (a join would merge the delivery fiber's refs into the caller's); a caller that gives up
          // only stops waiting: the stored reply is still delivered
          const exit = yield* Fiber.await(started.fiber)
          if (Exit.isFailure(exit)) {
            return yield* Exit.failCause(exit.cause)
          }
          if (exit.value._tag === "Postponed") {
            return DeliveryOutcome.Deferred({ entryId: entry.id, reason: "rate_limited" })
          }
          const results = yield* LiveDelivery.answer(exit.value, entry)
          return DeliveryOutcome.Delivered({ entryId: entry.id, results })
        }).pipe(withSpan("Outbox.deliver", SPAN_OPTIONS), onFairScheduler)

      const enqueue: OutboxShape["enqueue"] = (input) =>
        Effect.gen(function*() {
          const stored = yield* store(input, false)
          if (stored._tag === "Inserted") yield* signalWork
          return stored.entry.id
        }).pipe(withSpan("Outbox.enqueue", SPAN_OPTIONS), onFairScheduler)

      /** Writes the acks kept from failed ack writes (the rows went out; this process never sends them again). */
      const flushPendingAcks = Effect.gen(function*() {
        let written = 0
        for (const [id, { entry, partsDelivered }] of pendingAcks) {
          const now = yield* Clock.currentTimeMillis
          const spec = Machine.writeSpec(entry, Machine.EntryEvent.Ack({ owner, partsDelivered }), now)
          const result = spec._tag === "Right"
            ? yield* journal.write(WriteOp.Update({ spec: spec.right }))
            : { _tag: "Rejected" }
          pendingAcks.delete(id)
          if (result._tag !== "Updated") {
            yield* Effect.logWarning(
              `pending ack of entry ${id} was rejected: the row is no longer leased to this process`
            )
            continue
          }
          written++
          yield* Metric.increment(Metrics.delivered)
          yield* emit(OutboxEvent.delivered({ entryId: id, channel: entry.channel }))
          yield* deliveries.continueConversation(entry)
        }
        return written
      })

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

      /** Drains the deliveries (see `OutboxShape.drain`), then writes what acks it can. */
      const drain = (grace: Duration.DurationInput) =>
        Effect.zipLeft(
          deliveries.drain(grace),
          // acks that still cannot be written are lost with the process: their rows are replayed (possible duplicates)
          Effect.catchAll(flushPendingAcks, (error) =>
            Effect.zipRight(
              Metric.increment(Metrics.ackFailures),
              Effect.logError(`kept acks could not be written at shutdown: ${error.message}`)
            ))
        ).pipe(
          Effect.annotateLogs({ module: "Outbox" })
        )

      // a scope that closes without a worker (or after it) still lets live deliveries finish within the grace
      yield* Effect.addFinalizer(() => drain(config.shutdownGrace))

      return {
        deliver,
        enqueue,
        get: (id) => repo.get(id).pipe(Effect.withSpan("Outbox.get", SPAN_OPTIONS)),
        list: (filter) => repo.list(filter).pipe(Effect.withSpan("Outbox.list", SPAN_OPTIONS)),
        stats: Effect.flatMap(Clock.currentTimeMillis, repo.stats).pipe(Effect.withSpan("Outbox.stats", SPAN_OPTIONS)),
        retry: (id) =>
          Effect.gen(function*() {
            const now = yield* Clock.currentTimeMillis
            yield* repo.requeue(id, now, now + maxAgeMs)
            yield* signalWork
            yield* Effect.logInfo(`entry ${id} requeued by admin retry`)
          }).pipe(Effect.withSpan("Outbox.retry", SPAN_OPTIONS)),
        runRecoveryPass: onFairScheduler(runPass({ housekeeping: true })),
        runClaimPass: onFairScheduler(runPass({ housekeeping: false })),
        awaitIdle: deliveries.awaitIdle,
        awaitWork: Queue.take(work),
        drain,
        prune: upkeep.prune,
        reclaimPreviousBoots: upkeep.reclaimPreviousBoots,
        events: Stream.unwrapScoped(subscribe),
        subscribe,
        owner
      }
    }
  )

/** Builds the outbox in a scope; its own fibers (journal, lanes, call watchdog) run on the time-sliced scheduler. */
export const make: Effect.Effect<OutboxShape, never, OutboxRepo | ChannelRegistry | OutboxConfig | Scope.Scope> =
  onFairScheduler(build)

/** The outbox; needs a store, the channel registry and the configuration. */
export const layer: Layer.Layer<Outbox, never, OutboxRepo | ChannelRegistry | OutboxConfig> = Layer.scoped(Outbox, make)
