/**
 * Rate limit buckets in PostgreSQL, shared by processes (each "process" its own pool on one schema): concurrent
 * reservations get distinct, evenly spaced slots; a full bucket spreads the sends it turns away; a pause is written
 * to the row (never shortened) and announced to the other processes; an unused slot is given back. The cost of a
 * reservation is printed (BENCHMARKS.md quotes a longer run of bench/ratelimit.ts).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Stream from "effect/Stream"
import { performance } from "node:perf_hooks"
import * as RateBuckets from "../../src/internal/rateBuckets.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import type { BucketStore, Reservation } from "../../src/RateLimits.js"
import { freshSchema, urlFor } from "../support/pg.js"

/** `count` processes' bucket stores on one fresh schema. */
const processes = (count: number) =>
  Effect.gen(function*() {
    const schema = freshSchema()
    yield* Layer.build(schema.layer)
    return yield* Effect.all(
      Array.from({ length: count }, () =>
        Effect.map(
          Layer.build(PgOutboxRepo.layerUrl(urlFor(schema.name), { client: { maxConnections: 4 } })),
          (ctx) => {
            const buckets = Context.get(ctx, OutboxRepo).rateBuckets
            if (buckets === undefined) throw new Error("PgOutboxRepo offers no rateBuckets")
            return { buckets, client: Context.get(ctx, PgClient.PgClient) }
          }
        )),
      { concurrency: "unbounded" }
    )
  })

const slotOf = (r: Reservation) => (r._tag === "Reserved" ? r.slot : Number.NaN)
const spacing = { intervalMs: 10, toleranceMs: 0 }

describe("PgRateBuckets", () => {
  it.live(
    "concurrent reservations from two processes get distinct slots, exactly one interval apart",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const [a, b] = yield* processes(2)
        const reserve = (store: BucketStore) =>
          store.reserve("[\"chat\",null]", spacing, 1_000, Number.POSITIVE_INFINITY)
        const started = performance.now()
        const results = yield* Effect.all(
          Array.from({ length: 200 }, (_, i) => reserve(i % 2 === 0 ? a!.buckets : b!.buckets)),
          { concurrency: 16 }
        )
        const elapsed = performance.now() - started
        const slots = results.map(slotOf).sort((x, y) => x - y)
        expect(slots).toEqual(Array.from({ length: 200 }, (_, i) => 1_000 + i * 10))
        console.log(`200 reservations, 16 at a time over two pools: ${(elapsed / 200).toFixed(2)} ms each on average`)
      })),
    30_000
  )

  it.live(
    "a full bucket reserves nothing and spreads the sends it turns away over the following slots",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const [a] = yield* processes(1)
        const store = a!.buckets
        const key = "[\"slow\",null]"
        const first = yield* store.reserve(key, { intervalMs: 1000, toleranceMs: 0 }, 0, 500)
        expect(first).toMatchObject({ _tag: "Reserved", slot: 0 })
        const turnedAway = yield* Effect.forEach(
          [0, 0, 0],
          () => store.reserve(key, { intervalMs: 1000, toleranceMs: 0 }, 0, 500)
        )
        expect(turnedAway).toEqual([
          { _tag: "Full", until: 1000 },
          { _tag: "Full", until: 2000 },
          { _tag: "Full", until: 3000 }
        ])
        // nothing was reserved by them: a send that may wait a second gets the slot right after the first
        expect(yield* store.reserve(key, { intervalMs: 1000, toleranceMs: 0 }, 0, 1000)).toMatchObject({ slot: 1000 })
        // an unused reservation is given back while no later one was made
        const last = yield* store.reserve(key, { intervalMs: 1000, toleranceMs: 0 }, 0, 5000)
        expect(last).toMatchObject({ slot: 2000 })
        yield* store.cancel(key, last)
        expect(yield* store.reserve(key, { intervalMs: 1000, toleranceMs: 0 }, 0, 5000)).toMatchObject({ slot: 2000 })
      })),
    30_000
  )

  it.live(
    "a pause is written to the row (never shortened) and announced to the other processes",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const [a, b] = yield* processes(2)
        const key = "[\"tg\",\"bot1\"]"
        const heard = yield* Effect.fork(Stream.runHead(b!.buckets.pauses!))
        // LISTEN starts in the background: pause (a little longer each time) until the other process hears one
        let until = 5_000
        while ((yield* Fiber.poll(heard))._tag === "None" && until < 5_050) {
          expect(yield* a!.buckets.pause(key, ++until, 0)).toBe(true)
          yield* Effect.sleep("100 millis")
        }
        const received = yield* Fiber.join(heard)
        expect(received).toMatchObject({ _tag: "Some", value: { key } })
        if (received._tag === "Some") expect(received.value.until).toBeGreaterThan(5_000)
        // a shorter pause changes nothing; every reservation starts after the pause, from either process
        expect(yield* b!.buckets.pause(key, 1_000, 0)).toBe(false)
        const after = yield* b!.buckets.reserve(key, spacing, 0, Number.POSITIVE_INFINITY)
        expect(slotOf(after)).toBeGreaterThan(5_000)
        const next = yield* a!.buckets.reserve(key, spacing, 0, Number.POSITIVE_INFINITY)
        expect(slotOf(next)).toBe(slotOf(after) + 10)
      })),
    30_000
  )

  /** A pause restarts the queue at its end and moves the sends planned for later by as much: the same in both stores. */
  const pausePlan = (store: BucketStore) =>
    Effect.gen(function*() {
      const key = "[\"plan\",null]"
      const second = { intervalMs: 1000, toleranceMs: 0 }
      expect(yield* store.reserve(key, second, 0, 500)).toMatchObject({ _tag: "Reserved", slot: 0 })
      expect(yield* store.reserve(key, second, 0, 500)).toEqual({ _tag: "Full", until: 1000 })
      expect(yield* store.reserve(key, second, 0, 500)).toEqual({ _tag: "Full", until: 2000 })
      expect(yield* store.pause(key, 5000, 100)).toBe(true)
      // the queue starts again at 5 s; what was planned (up to 3 s) moved by 4.9 s: the next comes after it
      expect(yield* store.reserve(key, second, 200, 5000)).toMatchObject({ _tag: "Reserved", slot: 5000 })
      expect(yield* store.reserve(key, second, 200, 500)).toEqual({ _tag: "Full", until: 7900 })
    })

  it.live(
    "a pause moves the plan of the sends turned away before it (PostgreSQL)",
    () => Effect.scoped(Effect.flatMap(processes(1), ([a]) => pausePlan(a!.buckets))),
    30_000
  )

  it.effect("a pause moves the plan of the sends turned away before it (memory)", () => pausePlan(RateBuckets.memory()))
})
