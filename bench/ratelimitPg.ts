/**
 * The cost of a shared rate limit bucket on PostgreSQL (`PgOutboxRepo`'s `rateBuckets`): what one send of a
 * rate-limited channel adds when several processes share the limit. On a fresh schema of the server at PG_URL:
 *
 * - sequential: N reservations one after another from one pool (the latency a send waits, the CPU it costs this
 *   process);
 * - contended: N reservations, CONCURRENCY at a time, from two pools (two processes' worth) on the same bucket row.
 *
 * Run: npm run bench:ratelimit-pg. Env: PG_URL (default postgres://postgres@127.0.0.1:5432/test), N=2000,
 * CONCURRENCY=16.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as os from "node:os"
import { performance } from "node:perf_hooks"
import { OutboxRepo } from "../src/OutboxRepo.js"
import * as PgOutboxRepo from "../src/PgOutboxRepo.js"
import type { BucketStore } from "../src/RateLimits.js"
import { cpuMicros, percentile } from "./probes.js"

const PG_URL = process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const N = Number(process.env.N ?? 2000)
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 16)
const SCHEMA = `outbox_bench_rate_${process.pid}`
const spacing = { intervalMs: 1000 / 30, toleranceMs: 0 }

const urlFor = (schema: string) =>
  `${PG_URL}${PG_URL.includes("?") ? "&" : "?"}options=${encodeURIComponent(`-c search_path=${schema}`)}`

const bucketsOf = (ctx: Context.Context<OutboxRepo>): BucketStore => {
  const buckets = Context.get(ctx, OutboxRepo).rateBuckets
  if (buckets === undefined) throw new Error("PgOutboxRepo offers no rateBuckets")
  return buckets
}

const program = Effect.gen(function*() {
  const admin = yield* PgClient.PgClient
  yield* Effect.acquireRelease(
    admin`CREATE SCHEMA ${admin(SCHEMA)}`,
    () => Effect.orDie(admin`DROP SCHEMA ${admin(SCHEMA)} CASCADE`)
  )
  const pool = () => Layer.build(PgOutboxRepo.layerUrl(urlFor(SCHEMA), { client: { maxConnections: 8 } }))
  const a = bucketsOf(yield* pool())
  const b = bucketsOf(yield* pool())
  const reserve = (store: BucketStore, key: string) => store.reserve(key, spacing, 0, Number.POSITIVE_INFINITY)
  yield* reserve(a, "warm") // the bucket's row and the pool's connections exist before the timing

  const latencies: Array<number> = []
  const cpu = cpuMicros()
  const started = performance.now()
  for (let i = 0; i < N; i++) {
    const t = performance.now()
    yield* reserve(a, "sequential")
    latencies.push(performance.now() - t)
  }
  const sequentialMs = performance.now() - started
  const sequentialCpu = cpuMicros() - cpu

  const cpu2 = cpuMicros()
  const started2 = performance.now()
  yield* Effect.forEach(Array.from({ length: N }, (_, i) => i), (i) => reserve(i % 2 === 0 ? a : b, "contended"), {
    concurrency: CONCURRENCY,
    discard: true
  })
  const contendedMs = performance.now() - started2
  const contendedCpu = cpuMicros() - cpu2

  console.log(JSON.stringify({
    n: N,
    sequential: {
      p50Ms: +percentile(latencies, 50).toFixed(3),
      p99Ms: +percentile(latencies, 99).toFixed(3),
      perSecond: Math.round((N * 1000) / sequentialMs),
      cpuUsPerReservation: Math.round(sequentialCpu / N)
    },
    contended: {
      concurrency: CONCURRENCY,
      pools: 2,
      perSecond: Math.round((N * 1000) / contendedMs),
      meanMsEach: +((contendedMs * CONCURRENCY) / N).toFixed(3),
      cpuUsPerReservation: Math.round(contendedCpu / N)
    },
    loadAverage: os.loadavg().map((l) => l.toFixed(2)).join(" ")
  }))
})

Effect.runPromise(
  program.pipe(Effect.scoped, Effect.provide(PgClient.layer({ url: Redacted.make(PG_URL), maxConnections: 1 })))
).catch((e) => {
  console.error(e)
  process.exit(1)
})
