/**
 * PostgreSQL benchmark: effect-outbox on `PgOutboxRepo` with one and with two processes, against pg-boss and
 * graphile-worker (peer-bench's own scripts, unchanged) on the same server, in interleaved rounds (round 1: every
 * system, round 2: every system, …), so that the machine's drift hits all of them alike.
 *
 *   npx tsc -p tsconfig.bench.json
 *   d=$(mktemp -d) && cp -r ../shared/peer-bench "$d/" && chmod -R u+w "$d" && (cd "$d/peer-bench" && npm ci --ignore-scripts)
 *   PEER_BENCH="$d/peer-bench" node bench/.build/bench/pg.js
 *
 * Environment: ROUNDS (3), DRAIN_N (100000), LIVE_N (20000, the peers keep peer-bench's 10,000 / 6,000), CONCURRENCY
 * (512 callers in all, split between the processes), ONLY (system ids, comma-separated), WORKLOADS (drain,live),
 * PG_ADMIN_URL (postgres://postgres@127.0.0.1:5432/test; the database `outbox_pgbench` is created there and dropped
 * at the end).
 *
 * Workloads, as peer-bench defines them:
 * - drain: N rows already stored (5,000 conversations of N/5,000, written by a prepare process through
 *   `Outbox.enqueue`, untimed), then the worker processes drain them: `runRecoveryPass` back to back until no row is
 *   pending, claim batch 500, 512 send slots. With two processes both drain the same table at once.
 * - live: N `Outbox.deliver` calls (store, send, ack), each to its own conversation, by 512 concurrent callers in all
 *   (two processes: 256 each).
 * effect-outbox on an SQLite file (one process) runs beside them as the one-machine reference. The adapter is a no-op
 * Effect. msgs/s = N ÷ wall time from "go" to the last process done; CPU = the outbox
 * processes' user+system seconds plus the PostgreSQL server's (every `postgres` process, from /proc) over the same
 * time, per 1,000 messages. Every commit is durable: the script refuses to run unless `synchronous_commit` is on.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as ChannelRegistry from "../src/ChannelRegistry.js"
import * as Outbox from "../src/Outbox.js"
import * as OutboxConfig from "../src/OutboxConfig.js"
import { OutboxRepo } from "../src/OutboxRepo.js"
import * as PgOutboxRepo from "../src/PgOutboxRepo.js"
import * as SqliteOutboxRepo from "../src/SqliteOutboxRepo.js"

const TEXT =
  "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. "
    .repeat(3).slice(0, 270)

// ---------------------------------------------------------------------------------------------------------------
// the child: one outbox process

/** The store: PostgreSQL for a URL, else an SQLite file (the reference: one process, no server). */
const storeOn = (target: string) =>
  target.startsWith("postgres")
    ? PgOutboxRepo.layerUrl(target, { client: { maxConnections: 8, applicationName: "outbox-pgbench" } })
    : SqliteOutboxRepo.layerFile({ filename: target, synchronous: "NORMAL" })

const outboxOn = (url: string, config: OutboxConfig.OutboxConfigInput = {}) =>
  Outbox.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      storeOn(url),
      ChannelRegistry.layer({
        chat: { outboundContract: "v2", sendFinal: () => Effect.succeed({ messageId: "ok" }) }
      }),
      OutboxConfig.layer({ nodeId: `pgbench-${process.pid}`, retryJitter: false, ...config })
    )),
    Layer.orDie
  )

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

/** Resolves when the parent writes `go` on stdin. */
const go = Effect.async<void>((resume) => {
  const lines = readline.createInterface({ input: process.stdin })
  lines.on("line", (line) => {
    if (line.trim() === "go") {
      lines.close()
      resume(Effect.void)
    }
  })
})

/** Runs `body` between `go` and a RESULT line with its wall time and this process's CPU. */
const timed = <A, E, R>(body: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    yield* say("ready")
    yield* go
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    const extra = yield* body
    const ms = performance.now() - t0
    const cpu = process.cpuUsage(cpu0)
    yield* say(`RESULT ${JSON.stringify({ ms, cpuSec: (cpu.user + cpu.system) / 1e6, extra })}`)
  })

const child = (role: string, url: string, n: number, offset: number, concurrency: number) => {
  if (role === "prepare") {
    return Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      yield* Effect.forEach(
        Array.from({ length: n }, (_, i) => i),
        (i) => outbox.enqueue({ channel: "chat", to: `user-${i % 5000}`, payloads: [{ text: `${TEXT} ${i}` }] }),
        { concurrency: 500, discard: true }
      )
      yield* say("RESULT {}")
    }).pipe(Effect.provide(outboxOn(url)))
  }
  if (role === "drain") {
    return timed(Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const repo = yield* OutboxRepo
      let passes = 0
      let delivered = 0
      while ((yield* repo.pendingCount) > 0) {
        const report = yield* outbox.runRecoveryPass
        delivered += report.delivered
        passes++
      }
      return { passes, delivered }
    })).pipe(
      Effect.provide(outboxOn(url, { workerInterval: "10 minutes", claimBatch: 500, workerConcurrency: 512 }))
    )
  }
  return timed(Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    yield* Effect.forEach(
      Array.from({ length: n }, (_, i) => offset + i),
      (i) => outbox.deliver({ channel: "chat", to: `user-${i}`, payloads: [{ text: `${TEXT} ${i}` }] }),
      { concurrency, discard: true }
    )
    return {}
  })).pipe(Effect.provide(outboxOn(url)))
}

// ---------------------------------------------------------------------------------------------------------------
// the parent

const HERE = fileURLToPath(import.meta.url)
const ADMIN_URL = process.env.PG_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const DB = "outbox_pgbench"
const DB_URL = (() => {
  const u = new URL(ADMIN_URL)
  u.pathname = `/${DB}`
  return u.toString()
})()
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const DRAIN_N = Number(process.env.DRAIN_N ?? 100_000)
const LIVE_N = Number(process.env.LIVE_N ?? 20_000)
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 512)
const WORKLOADS = (process.env.WORKLOADS ?? "drain,live").split(",")
const PEER_BENCH = process.env.PEER_BENCH

interface System {
  readonly id: string
  readonly n: { readonly drain: number; readonly live: number }
  readonly run: (workload: string, n: number) => Promise<Result>
}

interface Result {
  readonly n: number
  readonly ms: number
  readonly clientCpuSec: number
  readonly serverCpuSec: number
  readonly load1: number
}

/** CPU seconds used so far by every `postgres` process (reaped children included), from /proc. */
const serverCpuSeconds = (): number => {
  let ticks = 0
  for (const pid of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue
    let stat: string
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    } catch {
      continue
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))
    if (!comm.startsWith("postgres")) continue
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])
  }
  return ticks / 100
}

/** A child process and the lines it printed. */
const start = (args: ReadonlyArray<string>, env: Record<string, string> = {}, cwd?: string) => {
  const proc = spawn(process.execPath, [...args], {
    cwd: cwd ?? process.cwd(),
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  const lines: Array<string> = []
  const waiters: Array<{ readonly test: (l: string) => boolean; readonly resolve: (l: string) => void }> = []
  let stderr = ""
  proc.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
  readline.createInterface({ input: proc.stdout }).on("line", (line) => {
    lines.push(line)
    for (const w of waiters.splice(0)) {
      if (w.test(line)) w.resolve(line)
      else waiters.push(w)
    }
  })
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)))
  const waitFor = (prefix: string) =>
    new Promise<string>((resolve, reject) => {
      const found = lines.find((l) => l.startsWith(prefix))
      if (found !== undefined) return resolve(found)
      waiters.push({ test: (l) => l.startsWith(prefix), resolve })
      void exited.then((code) =>
        reject(new Error(`${args.join(" ")} exited (${code}) before "${prefix}": ${stderr.slice(-2000)}`))
      )
    })
  return { proc, waitFor, exited }
}

const resultOf = (line: string) => JSON.parse(line.slice("RESULT ".length)) as { ms: number; cpuSec: number }

const admin = <A>(f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>, url = ADMIN_URL) =>
  Effect.runPromise(
    Effect.flatMap(PgClient.PgClient, f).pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })),
      Effect.scoped
    ) as Effect.Effect<A, unknown>
  )

let schemas = 0
/** effect-outbox with `procs` processes: a fresh schema, the backlog (drain), then the timed run. */
const outboxSystem = (procs: number): System => ({
  id: procs === 1 ? "effect-outbox, 1 process" : `effect-outbox, ${procs} processes`,
  n: { drain: DRAIN_N, live: LIVE_N },
  run: async (workload, n) => {
    const schema = `bench_${process.pid}_${++schemas}`
    await admin((sql) => sql`CREATE SCHEMA ${sql(schema)}`, DB_URL)
    const url = `${DB_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`
    try {
      if (workload === "drain") {
        const prepare = start([HERE, "child", "prepare", url, String(n)])
        await prepare.waitFor("RESULT")
        await prepare.exited
      }
      const per = Math.ceil(n / procs)
      const children = Array.from({ length: procs }, (_, p) =>
        start([
          HERE,
          "child",
          workload,
          url,
          String(workload === "drain" ? n : Math.min(per, n - p * per)),
          String(p * per),
          String(Math.ceil(CONCURRENCY / procs))
        ]))
      await Promise.all(children.map((c) => c.waitFor("ready")))
      const server0 = serverCpuSeconds()
      const t0 = performance.now()
      for (const c of children) c.proc.stdin.write("go\n")
      const results = (await Promise.all(children.map((c) => c.waitFor("RESULT")))).map(resultOf)
      const ms = performance.now() - t0
      const serverCpuSec = serverCpuSeconds() - server0
      await Promise.all(children.map((c) => c.exited))
      const delivered = await admin(
        (sql) => sql<{ n: number }>`SELECT count(*)::int AS n FROM outbox_entries WHERE state = 'delivered'`,
        url
      )
      if (delivered[0]?.n !== n) throw new Error(`delivered ${delivered[0]?.n} of ${n}`)
      return {
        n,
        ms,
        clientCpuSec: results.reduce((sum, r) => sum + r.cpuSec, 0),
        serverCpuSec,
        load1: os.loadavg()[0]!
      }
    } finally {
      await admin((sql) => sql`DROP SCHEMA ${sql(schema)} CASCADE`, DB_URL)
    }
  }
})

/** effect-outbox on an SQLite file, one process: the reference for one machine (no server, `synchronous` NORMAL). */
const sqliteSystem: System = {
  id: "effect-outbox, SQLite file (reference)",
  n: { drain: DRAIN_N, live: LIVE_N },
  run: async (workload, n) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-pgbench-"))
    const file = path.join(dir, "outbox.db")
    try {
      if (workload === "drain") {
        const prepare = start([HERE, "child", "prepare", file, String(n)])
        await prepare.waitFor("RESULT")
        await prepare.exited
      }
      const runner = start([HERE, "child", workload, file, String(n), "0", String(CONCURRENCY)])
      await runner.waitFor("ready")
      const server0 = serverCpuSeconds()
      const t0 = performance.now()
      runner.proc.stdin.write("go\n")
      const result = resultOf(await runner.waitFor("RESULT"))
      const ms = performance.now() - t0
      const serverCpuSec = serverCpuSeconds() - server0
      await runner.exited
      return { n, ms, clientCpuSec: result.cpuSec, serverCpuSec, load1: os.loadavg()[0]! }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** A peer-bench system script: its prepare (drain) and run processes; its own RESULT line. */
const peerSystem = (id: string, script: string, n: { drain: number; live: number }): System => ({
  id,
  n,
  run: async (workload, count) => {
    if (PEER_BENCH === undefined) throw new Error("PEER_BENCH is not set")
    const file = path.join(PEER_BENCH, "systems", script)
    const env = { PB_PG_URL: DB_URL }
    if (workload === "drain") {
      const prepare = start([file, "prepare", workload, String(count), "-"], env, path.dirname(file))
      if ((await prepare.exited) !== 0) throw new Error(`${id} prepare failed`)
    }
    const runner = start([file, "run", workload, String(count), "-"], env, path.dirname(file))
    const line = await runner.waitFor("RESULT")
    await runner.exited
    const r = JSON.parse(line.slice("RESULT ".length)) as {
      ms: number
      cpuSecPer1k: number
      serverCpuSecPer1k: number
      load1: number
    }
    return {
      n: count,
      ms: r.ms,
      clientCpuSec: (r.cpuSecPer1k * count) / 1000,
      serverCpuSec: (r.serverCpuSecPer1k * count) / 1000,
      load1: r.load1
    }
  }
})

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const parent = async () => {
  const systems = [
    outboxSystem(1),
    outboxSystem(2),
    sqliteSystem,
    peerSystem("pg-boss", "pg-boss.mjs", { drain: DRAIN_N, live: 10_000 }),
    peerSystem("graphile-worker", "graphile-worker.mjs", { drain: DRAIN_N, live: 6_000 })
  ].filter((s) => process.env.ONLY === undefined || process.env.ONLY.split(",").some((o) => s.id.startsWith(o)))
  const settings = await admin((sql) =>
    sql<{ name: string; setting: string }>`SELECT name, setting FROM pg_settings
      WHERE name IN ('synchronous_commit', 'fsync', 'server_version', 'shared_buffers', 'max_connections')`
  )
  const setting = (name: string) => settings.find((s) => s.name === name)?.setting
  if (setting("synchronous_commit") !== "on" || setting("fsync") !== "on") {
    throw new Error("synchronous_commit and fsync must be on: every commit durable")
  }
  console.log(`PostgreSQL ${setting("server_version")}, ${settings.map((s) => `${s.name}=${s.setting}`).join(", ")}`)
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`)
  await admin((sql) => sql`DROP DATABASE IF EXISTS ${sql(DB)} WITH (FORCE)`)
  await admin((sql) => sql`CREATE DATABASE ${sql(DB)}`)
  const results: Array<{ system: string; workload: string; round: number } & Result> = []
  const started = Date.now()
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const workload of WORKLOADS) {
        for (const system of systems) {
          const n = system.n[workload as "drain" | "live"]
          const r = await system.run(workload, n)
          results.push({ system: system.id, workload, round, ...r })
          console.log(
            `[${((Date.now() - started) / 1000).toFixed(0)} s] round ${round} ${workload} ${system.id}: n=${n} ` +
              `${Math.round((n / r.ms) * 1000)} msgs/s, CPU s/1k client ${(r.clientCpuSec / n * 1000).toFixed(3)} ` +
              `server ${(r.serverCpuSec / n * 1000).toFixed(3)}, load ${r.load1.toFixed(2)}`
          )
        }
      }
    }
  } finally {
    await admin((sql) => sql`DROP DATABASE IF EXISTS ${sql(DB)} WITH (FORCE)`)
  }
  for (const workload of WORKLOADS) {
    console.log(`\n### ${workload} (medians of ${ROUNDS})\n`)
    console.log("| system | N | msgs/s | × pg-boss | × graphile-worker | client CPU s/1k | server CPU s/1k | load 1m |")
    console.log("| --- | --- | --- | --- | --- | --- | --- | --- |")
    const rate = (id: string) => {
      const rs = results.filter((r) => r.system === id && r.workload === workload)
      return rs.length === 0 ? undefined : median(rs.map((r) => (r.n / r.ms) * 1000))
    }
    for (const system of systems) {
      const rs = results.filter((r) => r.system === system.id && r.workload === workload)
      if (rs.length === 0) continue
      const mine = rate(system.id)!
      const vs = (id: string) => {
        const other = rate(id)
        return other === undefined ? "–" : `${(mine / other).toFixed(2)}×`
      }
      console.log(
        `| ${system.id} | ${rs[0]!.n.toLocaleString("en-US")} | ${Math.round(mine).toLocaleString("en-US")} | ` +
          `${vs("pg-boss")} | ${vs("graphile-worker")} | ` +
          `${median(rs.map((r) => r.clientCpuSec / r.n * 1000)).toFixed(3)} | ` +
          `${median(rs.map((r) => r.serverCpuSec / r.n * 1000)).toFixed(3)} | ${
            median(rs.map((r) => r.load1)).toFixed(2)
          } |`
      )
    }
  }
  console.log(`\ntotal ${((Date.now() - started) / 1000).toFixed(0)} s`)
}

const [, , mode, role, url, n, offset, concurrency] = process.argv
if (mode === "child") {
  Effect.runPromise(child(role!, url!, Number(n), Number(offset ?? 0), Number(concurrency ?? CONCURRENCY))).then(
    () => process.exit(0),
    (e) => {
      console.error(e)
      process.exit(1)
    }
  )
} else {
  parent().then(
    () => process.exit(0),
    (e) => {
      console.error(e)
      process.exit(1)
    }
  )
}
