/**
 * Admin board benchmark: its API over HTTP on a ROWS-row SQLite file (1,000,000 by default), served as
 * `effect-outbox serve --read-only` serves it (`Admin.openOutbox` + `OutboxAdmin.layerServer`). The target: `stats` and
 * a 50-row page each answer in ≤ 50 ms.
 * Run: npm run bench:admin   (ROWS=200000 for a quicker run; the file is built once, about 40 s for 1,000,000 rows,
 * and kept in the temp directory for the next run; RUNS=30 requests per figure)
 * Prints a table of median / p95 / max milliseconds and a JSON line.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as OutboxAdmin from "../src/admin/OutboxAdmin.js"
import { openOutbox } from "../src/cli/Admin.js"
import { OutboxRepo } from "../src/OutboxRepo.js"
import { build, NOW } from "./adminData.js"

const ROWS = Number(process.env.ROWS ?? 1_000_000)
const RUNS = Number(process.env.RUNS ?? 30)
const file = process.env.BENCH_DB ?? path.join(os.tmpdir(), `outbox-admin-bench-${ROWS}.db`)

const quantile = (xs: ReadonlyArray<number>, q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}
const summary = (xs: ReadonlyArray<number>) => ({
  median: quantile(xs, 0.5),
  p95: quantile(xs, 0.95),
  max: Math.max(...xs)
})

if (!fs.existsSync(file)) {
  const started = performance.now()
  process.stderr.write(`building ${file} (${ROWS} rows)…\n`)
  await Effect.runPromise(build(file, ROWS))
  process.stderr.write(`built in ${((performance.now() - started) / 1000).toFixed(1)} s\n`)
}

const runtime = ManagedRuntime.make(
  OutboxAdmin.layerServer({ port: 0, readOnly: true, live: false }).pipe(
    Layer.provideMerge(openOutbox(file, "read")),
    Layer.provide(NodeContext.layer)
  )
)
const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
const base = `http://127.0.0.1:${address.port}/`

/** Milliseconds of one GET, body read; fails on a status other than 200. */
const timed = async (url: string): Promise<{ readonly ms: number; readonly body: unknown }> => {
  const t = performance.now()
  const response = await fetch(new URL(url, base))
  const body: unknown = await response.json()
  const ms = performance.now() - t
  if (response.status !== 200) throw new Error(`${url}: HTTP ${response.status} ${JSON.stringify(body)}`)
  return { ms, body }
}

const measure = async (url: string | (() => string)) => {
  const times: Array<number> = []
  for (let i = 0; i < RUNS; i++) times.push((await timed(typeof url === "string" ? url : url())).ms)
  return summary(times)
}

const results: Record<string, ReturnType<typeof summary>> = {}
// the first stats request waits for the count; later ones share it for statsMaxAge (5 s)
const cold = await timed("api/stats")
results["stats, first request (counts the file)"] = { median: cold.ms, p95: cold.ms, max: cold.ms }
results["stats (shared count)"] = await measure("api/stats")
results["activity, last hour (shared count)"] = await measure("api/activity")
// what each recount costs, and how long it holds the event loop (better-sqlite3 is synchronous)
const recount: Array<number> = []
for (let i = 0; i < Math.min(RUNS, 10); i++) {
  recount.push(
    await runtime.runPromise(Effect.flatMap(OutboxRepo, (repo) =>
      Effect.gen(function*() {
        const t = performance.now()
        yield* repo.stats(yield* Clock.currentTimeMillis)
        return performance.now() - t
      })))
  )
}
results["recount (repo.stats, in process)"] = summary(recount)
const first = (await timed("api/entries?limit=50")).body as { readonly nextCursor: string }
results["page of 50, newest"] = await measure("api/entries?limit=50")
results["page of 50, second (cursor)"] = await measure(`api/entries?limit=50&before=${first.nextCursor}`)
results["page of 50, three days back"] = await measure(`api/entries?limit=50&before=${NOW - 3 * 86_400_000}`)
for (const state of ["failed_terminal", "expired", "delivered", "queued", "failed_retryable", "in_flight"]) {
  results[`page of 50, state=${state}`] = await measure(`api/entries?limit=50&state=${state}`)
}
results["page of 50, channel=line"] = await measure("api/entries?limit=50&channel=line")
results["page of 50, failed_terminal + line"] = await measure("api/entries?limit=50&state=failed_terminal&channel=line")
results["page of 50, conversation (no index)"] = await measure("api/entries?limit=50&conversation=chat-77")
const someId = (first as unknown as { readonly entries: ReadonlyArray<{ readonly id: string }> }).entries[7]!.id
results["one entry"] = await measure(`api/entries/${someId}`)
// what opening the board costs: stats and the first page together, one after the other, counts shared
const both: Array<number> = []
for (let i = 0; i < RUNS; i++) {
  const t = performance.now()
  await timed("api/stats")
  await timed("api/entries?limit=50")
  both.push(performance.now() - t)
}
results["stats + page of 50"] = summary(both)

await runtime.dispose()

const width = Math.max(...Object.keys(results).map((k) => k.length))
console.log(`admin board on ${ROWS.toLocaleString("en")} rows (${file}), ${RUNS} requests per line, milliseconds`)
console.log(`${"".padEnd(width)}  ${"median".padStart(8)}  ${"p95".padStart(8)}  ${"max".padStart(8)}`)
for (const [name, r] of Object.entries(results)) {
  console.log(
    `${name.padEnd(width)}  ${r.median.toFixed(2).padStart(8)}  ${r.p95.toFixed(2).padStart(8)}  ${
      r.max.toFixed(2).padStart(8)
    }`
  )
}
console.log(JSON.stringify({ bench: "admin", rows: ROWS, runs: RUNS, load: os.loadavg(), results }))
