/**
 * Fairness: the gateway shares its event loop with the outbox. Under full load on a SQLite file (a synchronous
 * driver), the outbox yields to Node's event loop between database batches, so the gateway's macrotasks (sockets,
 * timers, `setImmediate` callbacks) keep running. Measured here by counting turns of a self-rescheduling
 * `setImmediate` during the load: before the journal's yield it stayed at 0 for the whole run.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import * as Outboxes from "../../src/Outbox.js"
import { Outbox } from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { tempDatabases } from "../support/files.js"

const databases = tempDatabases("fairness")

/** Counts event-loop turns (macrotasks) while `effect` runs. */
const countingTurns = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.acquireUseRelease(
    Effect.sync(() => {
      const state = { turns: 0, stopped: false }
      const tick = () => {
        if (state.stopped) return
        state.turns++
        setImmediate(tick)
      }
      setImmediate(tick)
      return state
    }),
    (state) => Effect.map(effect, (result) => ({ result, turns: state.turns })),
    (state) => Effect.sync(() => void (state.stopped = true))
  )

const sqliteOutbox = (adapter: Parameters<typeof ChannelRegistry.layer>[0][string]) =>
  Outboxes.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      SqliteOutboxRepo.layerFile({ filename: databases.fresh() }),
      ChannelRegistry.layer({ chat: adapter }),
      OutboxConfig.layer({ nodeId: "fairness", retryJitter: false })
    )),
    Layer.orDie
  )

const request = (fiber: number, i: number) => ({
  channel: "chat",
  to: `chat-${fiber}-${i % 50}`,
  payloads: [{ text: `m${i}` }]
})

describe("fairness", () => {
  it.live("8 fibers enqueueing 4,000 replies on a SQLite file leave the event loop its turns", () =>
    Effect.gen(function*() {
      const outbox = yield* Outbox
      const { turns } = yield* countingTurns(
        Effect.forEach(
          Array.from({ length: 8 }, (_, f) => f),
          (f) =>
            Effect.forEach(Array.from({ length: 500 }, (_, i) => i), (i) => outbox.enqueue(request(f, i)), {
              discard: true
            }),
          {
            concurrency: "unbounded",
            discard: true
          }
        )
      )
      expect((yield* outbox.stats).byState.queued).toBe(4_000)
      expect(turns).toBeGreaterThan(10)
    }).pipe(Effect.provide(sqliteOutbox({ sendText: () => Effect.succeed({ messageId: "m" }) }))))

  it.live("8 fibers delivering 2,000 replies through a Promise adapter leave the event loop its turns", () =>
    Effect.gen(function*() {
      const outbox = yield* Outbox
      const { turns } = yield* countingTurns(
        Effect.forEach(
          Array.from({ length: 8 }, (_, f) => f),
          (f) =>
            Effect.forEach(Array.from({ length: 250 }, (_, i) => i), (i) => outbox.deliver(request(f, i)), {
              discard: true
            }),
          {
            concurrency: "unbounded",
            discard: true
          }
        )
      )
      expect((yield* outbox.stats).byState.delivered).toBe(2_000)
      expect(turns).toBeGreaterThan(10)
    }).pipe(Effect.provide(sqliteOutbox({ sendText: () => Promise.resolve({ messageId: "m" }) }))))

  it.live("5,000 calls started at once run in the outbox's slices, not in the task that started them", () =>
    Effect.gen(function*() {
      const outbox = yield* Outbox
      // invalid requests: each call's whole life is its first steps (validation), so how many have ended when the
      // event loop first turns shows whether they ran as one chain of microtasks in the starting task
      const calls = 5_000
      let ended = 0
      let endedAtFirstTurn = -1
      setImmediate(() => void (endedAtFirstTurn = ended))
      const failures = yield* Effect.forEach(
        Array.from({ length: calls }, (_, i) => i),
        (i) =>
          Effect.flip(outbox.deliver({ channel: "chat", to: `chat-${i}`, payloads: [] })).pipe(
            Effect.ensuring(Effect.sync(() => void ended++))
          ),
        { concurrency: "unbounded" }
      )
      expect(failures.every((e) => e._tag === "InvalidRequest")).toBe(true)
      expect(endedAtFirstTurn).toBeGreaterThanOrEqual(0)
      expect(endedAtFirstTurn).toBeLessThan(calls)
      expect((yield* outbox.stats).total).toBe(0)
    }).pipe(Effect.provide(sqliteOutbox({ sendText: () => Effect.succeed({ messageId: "m" }) }))))

  it.live("the worker draining a 2,000-row backlog leaves the event loop its turns", () =>
    Effect.gen(function*() {
      const chat = { sendText: () => Effect.succeed({ messageId: "m" }) }
      const filename = databases.fresh()
      const store = SqliteOutboxRepo.layerFile({ filename })
      const base = Layer.mergeAll(
        store,
        ChannelRegistry.layer({ chat }),
        OutboxConfig.layer({ nodeId: "fairness", retryJitter: false })
      )
      // the backlog, written by one boot; drained by the next one's worker
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        yield* Effect.forEach(Array.from({ length: 2_000 }, (_, i) => i), (i) => outbox.enqueue(request(i % 8, i)), {
          concurrency: 8,
          discard: true
        })
      }).pipe(Effect.provide(Outboxes.layer.pipe(Layer.provideMerge(base), Layer.orDie)))
      const { turns } = yield* countingTurns(
        Effect.gen(function*() {
          const outbox = yield* Outbox
          // the worker wakes at start and on every finished row until nothing is left; the worker takes the same
          // wake-ups, so the last one may be its own: look again at least every 50 ms
          while ((yield* outbox.stats).byState.delivered < 2_000) {
            yield* Effect.race(outbox.awaitWork, Effect.sleep("50 millis"))
          }
        }).pipe(
          Effect.provide(
            RecoveryWorker.layer.pipe(Layer.provideMerge(Outboxes.layer), Layer.provideMerge(base), Layer.orDie)
          )
        )
      )
      expect(turns).toBeGreaterThan(10)
    }))
})
