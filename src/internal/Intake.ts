/**
 * The two ways in: `deliver` (the request stored leased to this process, delivered at once in a fiber of the outbox,
 * its outcome answered) and `enqueue` (stored for the worker). Both decode the request and write its row through the
 * journal; a reply stored behind its conversation's pending row is left to that conversation's lane.
 */
import * as Clock from "effect/Clock"
import type { Tag } from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import type { ChannelRegistry } from "../ChannelRegistry.js"
import type { DeliveryRequest } from "../Delivery.js"
import { decodeRequest } from "../Delivery.js"
import { InvalidRequest, StoreError } from "../DeliveryError.js"
import { DeliveryOutcome } from "../DeliveryOutcome.js"
import * as Metrics from "../Metrics.js"
import type { DeliverInput, OutboxShape } from "../Outbox.js"
import { OutboxEvent } from "../OutboxEvent.js"
import type { InsertResult } from "../OutboxRepo.js"
import { WriteOp } from "../OutboxRepo.js"
import type { Outcome } from "./DeliverEntry.js"
import type { Deliveries } from "./Deliveries.js"
import { onFairScheduler } from "./fairScheduler.js"
import type { EntryIdGenerator } from "./ids.js"
import type { Journal } from "./Journal.js"
import { answer, newEntry } from "./LiveDelivery.js"
import { withSpan } from "./tracing.js"

const SPAN_OPTIONS = { captureStackTrace: false } as const

/** What the entry points need from the outbox. */
export interface Deps {
  readonly registry: Tag.Service<typeof ChannelRegistry>
  readonly journal: Journal
  readonly deliveries: Deliveries
  readonly ids: EntryIdGenerator
  readonly owner: string
  readonly leaseMs: number
  readonly maxAgeMs: number
  /** publishes an event when someone listens (built only then) */
  readonly announce: (event: () => OutboxEvent) => Effect.Effect<void>
  /** wakes the worker (an enqueued row waits for it) */
  readonly signalWork: Effect.Effect<void>
}

/** Builds `deliver` and `enqueue` over the outbox's journal and deliveries. */
export const make = (deps: Deps): Pick<OutboxShape, "deliver" | "enqueue"> => {
  const { deliveries, ids, journal, leaseMs, maxAgeMs, owner, registry, signalWork } = deps
  const entryFor = (request: DeliveryRequest, now: number, live: boolean) =>
    Effect.map(ids.at(now), (id) => newEntry(request, { id, now, live, owner, leaseMs, maxAgeMs }))

  /** Decodes, resolves the channel and writes the new row through the journal (`live`: in flight, leased to us). */
  const store = (input: DeliverInput, live: boolean) =>
    Effect.gen(function*() {
      const request = yield* decodeRequest(input)
      yield* registry.get(request.channel)
      const entry = yield* entryFor(request, yield* Clock.currentTimeMillis, live)
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
        const { channel, id } = result.entry
        yield* deps.announce(() => OutboxEvent.enqueued({ entryId: id, channel }))
      }
      return result satisfies InsertResult
    })

  /** `Outbox.deliver`. */
  const deliver: OutboxShape["deliver"] = (input) =>
    Effect.gen(function*() {
      // stored and started in one step: a caller interrupted meanwhile never leaves a leased row nobody delivers
      const started = yield* Effect.uninterruptible(Effect.flatMap(store(input, true), (stored) =>
        stored._tag === "Inserted" && stored.entry.state === "in_flight"
          ? Effect.map(
            deliveries.start({ entry: stored.entry, live: true, reclaimed: false }),
            (fiber) => ({ stored, fiber })
          )
          : Effect.succeed<{ stored: InsertResult; fiber: Fiber.RuntimeFiber<Outcome> | undefined }>({
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
      const results = yield* answer(exit.value, entry)
      return DeliveryOutcome.Delivered({ entryId: entry.id, results })
    }).pipe(withSpan("Outbox.deliver", SPAN_OPTIONS), onFairScheduler)

  /** `Outbox.enqueue`. */
  const enqueue: OutboxShape["enqueue"] = (input) =>
    Effect.gen(function*() {
      const stored = yield* store(input, false)
      if (stored._tag === "Inserted") yield* signalWork
      return stored.entry.id
    }).pipe(withSpan("Outbox.enqueue", SPAN_OPTIONS), onFairScheduler)

  return { deliver, enqueue }
}
