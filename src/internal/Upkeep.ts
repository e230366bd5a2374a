/**
 * The outbox's upkeep besides delivering: quarantining a row that no longer decodes, pruning finished rows past their
 * retention, taking back the rows an earlier boot of this node left in flight, and writing the acks kept when their
 * write failed.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type { EntryId, OutboxEntry } from "../Delivery.js"
import type { StoreError } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import * as Metrics from "../Metrics.js"
import type { OutboxConfigShape } from "../OutboxConfig.js"
import { OutboxEvent } from "../OutboxEvent.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import { WriteOp } from "../OutboxRepo.js"
import type { Deps as DeliverEntryDeps } from "./DeliverEntry.js"
import type { Journal } from "./Journal.js"

const SPAN_OPTIONS = { captureStackTrace: false } as const

/** The upkeep operations of one outbox. */
export interface Upkeep {
  /** Marks a row that no longer decodes `failed_terminal` (`decode_error`), announced and logged. */
  readonly quarantine: (
    bad: { readonly id: EntryId; readonly message: string },
    now: number
  ) => Effect.Effect<void, StoreError>
  /** Deletes finished rows past their retention; the number deleted. */
  readonly prune: Effect.Effect<number, StoreError>
  /** Makes this node's rows left in flight by its earlier boots due at once; the number taken back. */
  readonly reclaimPreviousBoots: Effect.Effect<number, StoreError>
}

/** Builds the upkeep over the outbox's store; `emit` publishes on its event stream. */
export const make = (deps: {
  readonly repo: OutboxRepoShape
  readonly config: OutboxConfigShape
  readonly owner: string
  readonly emit: (event: OutboxEvent) => Effect.Effect<void>
}): Upkeep => {
  const { config, emit, owner, repo } = deps
  return {
    quarantine: (bad, now) =>
      Effect.gen(function*() {
        yield* repo.quarantine(bad.id, bad.message, now)
        yield* Metric.increment(Metrics.quarantined)
        yield* Metric.increment(Metrics.terminal("decode_error"))
        yield* emit(OutboxEvent.terminal({ entryId: bad.id, reason: "decode_error", error: bad.message }))
        yield* Effect.logError(`quarantined entry ${bad.id}: ${bad.message}`)
      }),
    prune: Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const result = yield* repo.prune(now, {
        deliveredMs: Duration.toMillis(config.deliveredRetention),
        terminalMs: Duration.toMillis(config.terminalRetention)
      })
      if (result.delivered + result.terminal > 0) {
        yield* Effect.logInfo(`pruned ${result.delivered} delivered and ${result.terminal} failed/expired rows`)
      }
      return result.delivered + result.terminal
    }).pipe(Effect.withSpan("Outbox.prune", SPAN_OPTIONS)),
    reclaimPreviousBoots: Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      yield* repo.heartbeat(owner, now) // this boot is alive before it judges others
      const reclaimed = yield* repo.reclaimPreviousBoots({ nodeId: config.nodeId, owner, now })
      if (reclaimed.length > 0) {
        yield* Effect.logWarning(
          `reclaimed ${reclaimed.length} rows left in flight by a previous boot of ${config.nodeId}`
        )
      }
      return reclaimed.length
    }).pipe(Effect.withSpan("Outbox.reclaimPreviousBoots", SPAN_OPTIONS))
  }
}

/**
 * Writes the acks kept from failed ack writes (the rows went out; this process never sends them again); the number
 * written. A kept ack the store refuses (the row is no longer leased to this process) is logged and dropped.
 */
export const flushKeptAcks = (deps: {
  readonly journal: Journal
  readonly owner: string
  readonly pendingAcks: DeliverEntryDeps["pendingAcks"]
  readonly emit: (event: OutboxEvent) => Effect.Effect<void>
  /** the row's conversation goes on (its lane starts the next due row) */
  readonly continueConversation: (entry: OutboxEntry) => Effect.Effect<void>
}): Effect.Effect<number, StoreError> =>
  Effect.gen(function*() {
    const { emit, journal, owner, pendingAcks } = deps
    let written = 0
    for (const [id, { entry, partsDelivered }] of pendingAcks) {
      const now = yield* Clock.currentTimeMillis
      const spec = Machine.writeSpec(entry, Machine.EntryEvent.Ack({ owner, partsDelivered }), now)
      const result = spec._tag === "Right"
        ? yield* journal.write(WriteOp.Update({ spec: spec.right }))
        : { _tag: "Rejected" }
      pendingAcks.delete(id)
      if (result._tag !== "Updated") {
        yield* Effect.logWarning(`pending ack of entry ${id} was rejected: the row is no longer leased to this process`)
        continue
      }
      written++
      yield* Metric.increment(Metrics.delivered)
      yield* emit(OutboxEvent.delivered({ entryId: id, channel: entry.channel }))
      yield* deps.continueConversation(entry)
    }
    return written
  })
