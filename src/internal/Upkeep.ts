/**
 * The outbox's upkeep besides delivering: quarantining a row that no longer decodes, pruning finished rows past their
 * retention, and taking back the rows an earlier boot of this node left in flight.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type { EntryId } from "../Delivery.js"
import type { StoreError } from "../DeliveryError.js"
import * as Metrics from "../Metrics.js"
import type { OutboxConfigShape } from "../OutboxConfig.js"
import { OutboxEvent } from "../OutboxEvent.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"

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
