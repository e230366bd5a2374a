/**
 * Pipeline benchmark: the whole Outbox on a SQLite file. Every section runs in a child process of its own (so peak RSS
 * is the section's), once per round; the parent prints each run as it ends and then a table of medians.
 *
 * - live1, live64, live512: `deliver` by 1 / 64 / 512 concurrent callers, each message to its own chat (2,000 /
 *   20,000 / LIVE deliveries); live512Async: the same at 512 with a plugin-style adapter whose send returns a
 *   resolved Promise (it suspends, as a network call does, with no latency).
 * - drain, drainAsync: a backlog of BACKLOG rows (5,000 chats) enqueued by a prepare process (untimed), then drained
 *   by a fresh process running recovery passes back to back (claim batch 500, 512 send slots).
 * - burst, burstAsync: BURST_SIZE replies delivered at once to one chat, BURST_CHATS chats, BURST_PARALLEL chats at a
 *   time, with a RecoveryWorker running as in a gateway (default configuration). Latency of each reply after the first:
 *   from its predecessor's `delivered` event (seen on `outbox.events`) to its own adapter call; also the gap between
 *   the two adapter calls (which includes the predecessor's own send and ack).
 * - raw: better-sqlite3 alone on a minimal table (insert + mark delivered): the machine's speed in this run.
 * - floor: better-sqlite3 alone running the outbox's own statements on its schema in batches of 500: the database's
 *   share of a message. journal: Effect's share of a write with no SQL: 512 fibers each waiting once on the library's
 *   group-commit writer (`internal/Journal`, or `internal/groupCommit` in builds before it), without and with a span.
 *
 * Every live, drain and burst section reports msgs/s, CPU µs per message (process.cpuUsage, all threads, timed section
 * only), event-loop lag during the timed section (the longest gap between firings of a 5 ms setInterval, and
 * monitorEventLoopDelay's max and p99) and memory (the child's maxRSS, the peak heap and external memory seen by a
 * 20 ms sampler, and the heap still reachable after a full GC at the end).
 *
 * Run: npm run bench:pipeline. Env: ONLY=live512,drain (sections), RUNS=3 (rounds), BACKLOG=100000, LIVE=50000,
 * BURST_CHATS=200, BURST_SIZE=20, BURST_PARALLEL=10, SYNC=FULL, WAL_PAGES=<pages>, ALLOC=1 (also KB allocated per
 * message in live/drain sections, from V8's sampling heap profiler; it slows the run, so CPU figures are then off;
 * ALLOC_OUT=<file> also writes that profile, for DevTools).
 * COMPARE=<another checkout>: runs the same sections against that checkout's build too, interleaved (A B, then B A in
 * the next round), and adds a ratio column; that checkout must hold this bench compiled against its own src
 * (copy bench/pipeline.ts and bench/probes.ts there, then `npx tsc -p tsconfig.bench.json` in it).
 * The script is compiled with the library by tsc (tsconfig.bench.json, into bench/.build) and run by node, as a
 * gateway runs the built library.
 */
import Database from "better-sqlite3"
import type * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as inspector from "node:inspector"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath, pathToFileURL } from "node:url"
import * as ChannelRegistry from "../src/ChannelRegistry.js"
import { Outbox } from "../src/Outbox.js"
import * as Outboxes from "../src/Outbox.js"
import * as OutboxConfig from "../src/OutboxConfig.js"
import { OutboxRepo } from "../src/OutboxRepo.js"
import * as RecoveryWorker from "../src/RecoveryWorker.js"
import * as SqliteOutboxRepo from "../src/SqliteOutboxRepo.js"
import type { Figures } from "./probes.js"
import { cpuMicros, median, percentile, report, runChild, watchEventLoop, watchMemory } from "./probes.js"

const env = process.env
const SYNC = (env.SYNC ?? "NORMAL") as "NORMAL" | "FULL"
const WAL_PAGES = env.WAL_PAGES === undefined ? undefined : Number(env.WAL_PAGES)
const ALLOC = env.ALLOC === "1"
const script = fileURLToPath(import.meta.url)

type Adapter = ReturnType<typeof adapterFor>
/** no-op adapters: Effect-native (completes without suspending) or plugin-style (a resolved Promise); `onCall` sees each call */
const adapterFor = (
  async: boolean,
  onCall: (ctx: { readonly entryId: string; readonly to: string }) => void = () => {}
) =>
  async
    ? {
      outboundContract: "v2" as const,
      sendFinal: (ctx: { entryId: string; to: string }) => (onCall(ctx), Promise.resolve({ messageId: "ok" }))
    }
    : {
      outboundContract: "v2" as const,
      sendFinal: (ctx: { entryId: string; to: string }) => Effect.sync(() => (onCall(ctx), { messageId: "ok" }))
    }

const outboxOn = (filename: string, adapter: Adapter, config: Partial<OutboxConfig.OutboxConfigShape> = {}) =>
  Outboxes.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      SqliteOutboxRepo.layerFile({ filename, synchronous: SYNC, walAutocheckpointPages: WAL_PAGES }),
      ChannelRegistry.layer({ chat: adapter }),
      OutboxConfig.layer({ nodeId: "bench", retryJitter: false, ...config })
    )),
    Layer.orDie
  )

const drainConfig = { workerInterval: Duration.minutes(10), claimBatch: 500, workerConcurrency: 512 }
const request = (to: string, i: number) => ({ channel: "chat", to, payloads: [{ text: `reply ${i}` }] })

/** KB allocated per message (all allocations, collected or not), from V8's sampling heap profiler; ALLOC=1 only. */
const allocationProbe = Effect.promise(async (): Promise<(messages: number) => Effect.Effect<Figures>> => {
  if (!ALLOC) return () => Effect.succeed({})
  const session = new inspector.Session()
  session.connect()
  const post = <A>(method: string, params?: object) =>
    new Promise<A>((resolve, reject) => session.post(method, params, (e, r) => (e ? reject(e) : resolve(r as A))))
  await post("HeapProfiler.startSampling", {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true
  })
  return (messages) =>
    Effect.promise(async () => {
      type Node = { readonly selfSize: number; readonly children: ReadonlyArray<Node> }
      const { profile } = await post<{ profile: { head: Node } }>("HeapProfiler.stopSampling")
      const total = (n: Node): number => n.selfSize + n.children.reduce((s, c) => s + total(c), 0)
      session.disconnect()
      if (env.ALLOC_OUT !== undefined) fs.writeFileSync(env.ALLOC_OUT, JSON.stringify(profile))
      return { "allocated KB/msg": total(profile.head) / 1024 / messages }
    })
})

/** Runs `body` (which returns how many messages it handled) with the CPU, event-loop and memory probes around it. */
const measured = <E, R>(body: Effect.Effect<number, E, R>): Effect.Effect<Figures, E, R> =>
  Effect.gen(function*() {
    const stopMemory = watchMemory()
    const allocation = yield* allocationProbe
    const stopLag = watchEventLoop()
    const cpu0 = cpuMicros()
    const t0 = performance.now()
    const messages = yield* body
    const ms = performance.now() - t0
    const cpu = cpuMicros() - cpu0
    const lag = stopLag()
    const alloc = yield* allocation(messages)
    const memory = stopMemory()
    return {
      "msgs/s": (messages / ms) * 1000,
      "CPU µs/msg": cpu / messages,
      "timer max gap ms": lag.timerMaxGapMs,
      "timer max gap CPU ms": lag.timerMaxGapCpuMs,
      "timer firings / expected": lag.timerFirings / Math.max(1, lag.timerExpected),
      "loop delay max ms": lag.loopDelayMaxMs,
      "loop delay p99 ms": lag.loopDelayP99Ms,
      "max RSS MiB": memory.maxRssMiB,
      "peak heapUsed MiB": memory.peakHeapUsedMiB,
      "peak heapTotal MiB": memory.peakHeapTotalMiB,
      "peak external MiB": memory.peakExternalMiB,
      "heap after GC MiB": memory.heapAfterGcMiB,
      ...alloc
    }
  })

// ---- sections (each runs in its own child) ----

const live = (args: { concurrency: number; total: number; async: boolean; dir: string }) =>
  measured(Effect.gen(function*() {
    const outbox = yield* Outbox
    yield* Effect.forEach(
      Array.from({ length: args.total }, (_, i) => i),
      (i) => outbox.deliver(request(`user-${i}`, i)),
      { concurrency: args.concurrency, discard: true }
    )
    const stats = yield* outbox.stats
    if (stats.byState.delivered !== args.total) {
      return yield* Effect.dieMessage(`delivered ${stats.byState.delivered} of ${args.total}`)
    }
    return args.total
  })).pipe(Effect.provide(outboxOn(path.join(args.dir, `live-${process.pid}.db`), adapterFor(args.async))))

/** The drain's backlog, written by a process of its own so the drain's process holds none of it. */
const prepare = (args: { file: string; backlog: number }) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox
    yield* Effect.forEach(
      Array.from({ length: args.backlog }, (_, i) => request(`user-${i % 5000}`, i)),
      (r) => outbox.enqueue(r),
      { concurrency: 500, discard: true }
    )
    return {}
  }).pipe(Effect.provide(outboxOn(args.file, adapterFor(false))))

const drain = (args: { file: string; backlog: number; async: boolean }) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox
    const repo = yield* OutboxRepo
    let passes = 0
    const figures = yield* measured(Effect.gen(function*() {
      while ((yield* repo.pendingCount) > 0) {
        yield* outbox.runRecoveryPass
        passes++
      }
      const stats = yield* outbox.stats
      if (stats.byState.delivered !== args.backlog) {
        return yield* Effect.dieMessage(`delivered ${stats.byState.delivered} of ${args.backlog}`)
      }
      return args.backlog
    }))
    return { ...figures, passes }
  }).pipe(Effect.provide(outboxOn(args.file, adapterFor(args.async), drainConfig)))

const burst = (args: { chats: number; size: number; parallel: number; async: boolean; dir: string }) => {
  const calls = new Map<string, { readonly at: number; readonly to: string }>()
  const deliveredAt = new Map<string, number>()
  const waiting = new Map<string, { remaining: number; readonly done: Deferred.Deferred<void> }>()
  const adapter = adapterFor(args.async, (ctx) => void calls.set(ctx.entryId, { at: performance.now(), to: ctx.to }))
  const oneChat = (outbox: Context.Tag.Service<Outbox>, c: number) =>
    Effect.gen(function*() {
      const chat = `chat-${c}`
      const done = yield* Deferred.make<void>()
      waiting.set(chat, { remaining: args.size, done })
      yield* Effect.forEach(Array.from({ length: args.size }, (_, i) => i), (i) => outbox.deliver(request(chat, i)), {
        concurrency: "unbounded",
        discard: true
      })
      yield* Deferred.await(done).pipe(
        Effect.timeoutFail({
          duration: "120 seconds",
          onTimeout: () => new Error(`${chat}: not all delivered in 120 s`)
        })
      )
    })
  return Effect.gen(function*() {
    const outbox = yield* Outbox
    yield* Effect.forkScoped(Stream.runForEach(outbox.events, (event) =>
      Effect.suspend(() => {
        if (event._tag !== "delivered") return Effect.void
        deliveredAt.set(event.entryId, performance.now())
        const chat = calls.get(event.entryId)?.to
        const w = chat === undefined ? undefined : waiting.get(chat)
        return w !== undefined && --w.remaining === 0 ? Deferred.succeed(w.done, undefined) : Effect.void
      })))
    yield* Effect.sleep("50 millis") // the subscription is open before the first burst
    const figures = yield* measured(
      Effect.as(
        Effect.forEach(Array.from({ length: args.chats }, (_, c) => c), (c) => oneChat(outbox, c), {
          concurrency: args.parallel,
          discard: true
        }),
        args.chats * args.size
      )
    )
    const sent = new Map<string, Array<string>>() // chat → its entry ids, in the order of their sends
    for (const [id, call] of [...calls].sort((a, b) => a[1].at - b[1].at)) {
      sent.set(call.to, [...(sent.get(call.to) ?? []), id])
    }
    const fromEvent: Array<number> = []
    const gaps: Array<number> = []
    let outOfOrder = 0
    for (const ids of sent.values()) {
      for (let k = 1; k < ids.length; k++) {
        fromEvent.push(calls.get(ids[k]!)!.at - deliveredAt.get(ids[k - 1]!)!)
        gaps.push(calls.get(ids[k]!)!.at - calls.get(ids[k - 1]!)!.at)
        if (ids[k]! < ids[k - 1]!) outOfOrder++ // entry ids grow with enqueue time
      }
    }
    return {
      ...figures,
      "burst p50 ms (predecessor's delivered event → send)": percentile(fromEvent, 50),
      "burst p99 ms (predecessor's delivered event → send)": percentile(fromEvent, 99),
      "burst max ms (predecessor's delivered event → send)": percentile(fromEvent, 100),
      "burst p50 ms (send → next send)": percentile(gaps, 50),
      "burst p99 ms (send → next send)": percentile(gaps, 99),
      "burst sends out of enqueue order": outOfOrder
    }
  }).pipe(
    Effect.scoped,
    Effect.provide(
      RecoveryWorker.layer.pipe(Layer.provideMerge(outboxOn(path.join(args.dir, `burst-${process.pid}.db`), adapter)))
    )
  )
}

/** better-sqlite3 with a minimal table, insert then mark delivered, `batch` rows per transaction: msgs/s. */
const rawRate = (file: string, total: number, batch: number) => {
  const db = new Database(file)
  db.exec("PRAGMA journal_mode = WAL")
  db.exec(`PRAGMA synchronous = ${SYNC}`)
  db.exec("CREATE TABLE t (id TEXT PRIMARY KEY, body TEXT NOT NULL, state TEXT NOT NULL) STRICT")
  const insert = db.prepare("INSERT INTO t (id, body, state) VALUES (?, ?, 'in_flight')")
  const ack = db.prepare("UPDATE t SET state = 'delivered' WHERE id = ?")
  const t0 = performance.now()
  for (let i = 0; i < total; i += batch) {
    db.exec("BEGIN")
    for (let j = i; j < i + batch; j++) insert.run(`id-${j}`, `reply ${j}`)
    db.exec("COMMIT")
    db.exec("BEGIN")
    for (let j = i; j < i + batch; j++) ack.run(`id-${j}`)
    db.exec("COMMIT")
  }
  const ms = performance.now() - t0
  db.close()
  return (total / ms) * 1000
}

const raw = (args: { dir: string }) =>
  Effect.sync(() => ({
    "raw better-sqlite3 msgs/s, one commit per message": rawRate(
      path.join(args.dir, `raw1-${process.pid}.db`),
      5_000,
      1
    ),
    "raw better-sqlite3 msgs/s, batches of 500": rawRate(path.join(args.dir, `raw500-${process.pid}.db`), 100_000, 500)
  }))

/** better-sqlite3 alone running the outbox's statements on its schema (indexes included), batches of 500: µs per row. */
const floor = (args: { dir: string; rows: number }) => Effect.promise(() => floorRun(args))

const floorRun = async (args: { dir: string; rows: number }) => {
  const filename = path.join(args.dir, `floor-${process.pid}.db`)
  await Effect.runPromise(
    Effect.provide(Effect.void, SqliteOutboxRepo.layerFile({ filename, synchronous: SYNC }).pipe(Layer.orDie))
  )
  const db = new Database(filename)
  db.exec(`PRAGMA synchronous = ${SYNC}`)
  db.exec(`PRAGMA wal_autocheckpoint = ${WAL_PAGES ?? SqliteOutboxRepo.DEFAULT_WAL_AUTOCHECKPOINT_PAGES}`) // as layerFile sets it
  const batch = 500
  const marks = Array.from({ length: batch }, () => "?").join(", ")
  const insert = db.prepare(
    `INSERT INTO outbox_entries (id, channel, recipient, ordering_key, dispatch_kind, payloads_json,
    options_json, state, enqueued_at, next_attempt_at, expires_at, updated_at, pending)
    VALUES (?, 'chat', ?, ?, 'final', ?, '{"bestEffort":false}', 'queued', 0, 0, 1800000, 0, 1)`
  )
  const claim = db.prepare(`SELECT * FROM outbox_entries e
    WHERE e.next_attempt_at IS NOT NULL AND e.next_attempt_at <= 1
      AND NOT EXISTS (SELECT 1 FROM outbox_entries p WHERE p.ordering_key = e.ordering_key
        AND p.pending = 1 AND (p.enqueued_at, p.id) < (e.enqueued_at, e.id))
    ORDER BY e.next_attempt_at, e.id LIMIT ${batch}`)
  const lease = db.prepare(`UPDATE outbox_entries SET state = 'in_flight', lease_owner = 'bench/1',
    lease_expires_at = 300001, next_attempt_at = 300001, last_attempt_at = 1, updated_at = 1 WHERE id IN (${marks})`)
  const ack = db.prepare(
    `UPDATE outbox_entries SET state = 'delivered', parts_delivered = 1, next_attempt_at = NULL, pending = NULL,
    delivered_at = 2, lease_owner = NULL, lease_expires_at = NULL, updated_at = 2 WHERE id IN (${marks})`
  )
  let t0 = performance.now()
  for (let i = 0; i < args.rows; i += batch) {
    db.exec("BEGIN IMMEDIATE")
    for (let j = i; j < i + batch; j++) {
      insert.run(
        `01BENCH${String(j).padStart(19, "0")}`,
        `user-${j}`,
        JSON.stringify(["chat", null, `user-${j}`, null]),
        JSON.stringify([{ text: `reply ${j}` }])
      )
    }
    db.exec("COMMIT")
  }
  const insertMicros = ((performance.now() - t0) * 1000) / args.rows
  let claimMs = 0
  let ackMs = 0
  for (let done = 0; done < args.rows; done += batch) {
    t0 = performance.now()
    db.exec("BEGIN IMMEDIATE")
    const ids = (claim.all() as Array<{ id: string }>).map((r) => r.id)
    lease.run(...ids)
    db.exec("COMMIT")
    const t1 = performance.now()
    db.exec("BEGIN IMMEDIATE")
    ack.run(...ids)
    db.exec("COMMIT")
    claimMs += t1 - t0
    ackMs += performance.now() - t1
  }
  db.close()
  const claimMicros = (claimMs * 1000) / args.rows
  const ackMicros = (ackMs * 1000) / args.rows
  return {
    "floor insert µs/row": insertMicros,
    "floor claim µs/row": claimMicros,
    "floor ack µs/row": ackMicros,
    "database-only ceiling, live (1e6 / (insert + ack)) msgs/s": 1e6 / (insertMicros + ackMicros),
    "database-only ceiling, drain (1e6 / (claim + ack)) msgs/s": 1e6 / (claimMicros + ackMicros)
  }
}

/**
 * Effect's share of one write: 512 fibers each waiting once on the library's group-commit writer over a store that does
 * nothing. The writer is an internal module (`internal/Journal` since d3c31df, `internal/groupCommit` before), loaded
 * by path so this file compiles against either build. µs (wall) per call.
 */
const journal = (args: { total: number }) => Effect.promise(() => journalRun(args))

const journalRun = async (args: { total: number }) => {
  const here = path.dirname(script)
  const load = async (name: string) => {
    const file = path.join(here, "../src/internal", name)
    return fs.existsSync(file)
      ? (await import(pathToFileURL(file).href)) as {
        make: (...a: ReadonlyArray<unknown>) => Effect.Effect<unknown, never, Scope.Scope>
      }
      : undefined
  }
  const journalModule = await load("Journal.js")
  const groupCommit = await load("groupCommit.js")
  type Submit = (i: number) => Effect.Effect<unknown>
  const writer: Effect.Effect<Submit, never, Scope.Scope> = journalModule !== undefined
    ? Effect.map(
      journalModule.make({
        write: (ops: ReadonlyArray<unknown>) => Effect.succeed(ops.map(() => ({ _tag: "Updated" })))
      }, 500),
      (j) => () => (j as { write: (op: unknown) => Effect.Effect<unknown> }).write({ _tag: "Update", spec: undefined })
    )
    : groupCommit !== undefined
    ? Effect.map(
      groupCommit.make((items: ReadonlyArray<number>) => Effect.succeed(items), 500),
      (w) => (i: number) => (w as { submit: Submit }).submit(i)
    )
    : Effect.die(new Error("neither internal/Journal.js nor internal/groupCommit.js in this build"))
  const perCall = (span: boolean) =>
    Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const submit = yield* writer
      const t0 = performance.now()
      yield* Effect.forEach(
        Array.from({ length: args.total }, (_, i) => i),
        (i) => span ? Effect.useSpan("Outbox.deliver", { captureStackTrace: false }, () => submit(i)) : submit(i),
        { concurrency: 512, discard: true }
      )
      return ((performance.now() - t0) * 1000) / args.total
    })))
  return {
    "Effect only: one writer wait per call, 512 fibers, µs/call": await perCall(false),
    "Effect only: the same inside a deliver span, µs/call": await perCall(true)
  }
}

const sections: Record<string, (args: never) => Effect.Effect<Figures, unknown>> = {
  live,
  prepare,
  drain,
  burst,
  raw,
  floor,
  journal
}

// ---- the parent: rounds of child runs, interleaved between builds, then medians ----

interface Plan {
  readonly name: string
  readonly run: (childScript: string, dir: string) => Figures
}

const plans = (): ReadonlyArray<Plan> => {
  const backlog = Number(env.BACKLOG ?? 100_000)
  const liveTotal = Number(env.LIVE ?? 50_000)
  const burstArgs = {
    chats: Number(env.BURST_CHATS ?? 200),
    size: Number(env.BURST_SIZE ?? 20),
    parallel: Number(env.BURST_PARALLEL ?? 10)
  }
  const drainPlan = (name: string, async: boolean): Plan => ({
    name,
    run: (child, dir) => {
      const file = path.join(dir, `${name}-${Date.now()}.db`)
      runChild(child, "prepare", { file, backlog })
      const figures = runChild(child, "drain", { file, backlog, async })
      for (const f of fs.readdirSync(dir)) if (f.startsWith(path.basename(file))) fs.rmSync(path.join(dir, f))
      return figures
    }
  })
  const all: ReadonlyArray<Plan> = [
    { name: "raw", run: (child, dir) => runChild(child, "raw", { dir }) },
    { name: "floor", run: (child, dir) => runChild(child, "floor", { dir, rows: 20_000 }) },
    { name: "journal", run: (child) => runChild(child, "journal", { total: 50_000 }) },
    ...([[1, 2_000], [64, 20_000], [512, liveTotal]] as const).map(([concurrency, total]): Plan => ({
      name: `live${concurrency}`,
      run: (child, dir) => runChild(child, "live", { concurrency, total, async: false, dir })
    })),
    {
      name: "live512Async",
      run: (child, dir) => runChild(child, "live", { concurrency: 512, total: liveTotal, async: true, dir })
    },
    drainPlan("drain", false),
    drainPlan("drainAsync", true),
    { name: "burst", run: (child, dir) => runChild(child, "burst", { ...burstArgs, async: false, dir }) },
    { name: "burstAsync", run: (child, dir) => runChild(child, "burst", { ...burstArgs, async: true, dir }) }
  ]
  const only = env.ONLY?.split(",")
  return only === undefined ? all : all.filter((p) => only.includes(p.name))
}

const label = (root: string) => {
  try {
    return execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
  } catch {
    return path.basename(root)
  }
}

const parent = () => {
  const runs = Number(env.RUNS ?? 3)
  const root = path.resolve(path.dirname(script), "../../..")
  const builds = [{ name: label(root), script }]
  if (env.COMPARE !== undefined) {
    const other = path.resolve(env.COMPARE)
    builds.push({ name: label(other), script: path.join(other, "bench/.build/bench/pipeline.js") })
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-pipeline-bench-"))
  const results = new Map<string, Array<Figures>>() // `${section}\u0000${build}` → one Figures per round
  console.log(
    JSON.stringify({
      builds: builds.map((b) => b.name),
      runs,
      sync: SYNC,
      node: process.version,
      cpus: os.cpus().length,
      load1m: os.loadavg()[0]
    })
  )
  for (let round = 0; round < runs; round++) {
    for (const plan of plans()) {
      // interleaved: A B in even rounds, B A in odd ones, so a drift of the machine's speed hits both alike
      for (const build of round % 2 === 0 ? builds : [...builds].reverse()) {
        const figures = plan.run(build.script, dir)
        console.log(JSON.stringify({ round, section: plan.name, build: build.name, ...figures }))
        const key = `${plan.name}\u0000${build.name}`
        results.set(key, [...(results.get(key) ?? []), figures])
      }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true })
  const round2 = (
    x: number
  ) => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(x >= 10 ? 1 : 2))
  const header = [
    "section",
    "figure",
    ...builds.map((b) => `${b.name} (median of ${runs})`),
    ...(builds.length > 1 ? [`${builds[0]!.name} / ${builds[1]!.name}`] : [])
  ]
  console.log(`\n| ${header.join(" | ")} |\n| ${header.map(() => "---").join(" | ")} |`)
  for (const plan of plans()) {
    const names = Object.keys(results.get(`${plan.name}\u0000${builds[0]!.name}`)?.[0] ?? {})
    for (const name of names) {
      const medians = builds.map((b) =>
        median((results.get(`${plan.name}\u0000${b.name}`) ?? []).map((f) => f[name] ?? Number.NaN))
      )
      const ratio = builds.length === 1
        ? []
        : name === "load1m" || !(medians[1]! > 0)
        ? ["–"]
        : [`${(medians[0]! / medians[1]!).toFixed(2)}×`]
      console.log(
        `| ${plan.name} | ${name} | ${medians.map(round2).join(" | ")} | ${ratio.join("")}`.trimEnd() +
          (ratio.length > 0 ? " |" : "")
      )
    }
  }
}

const child = async (section: string, args: string) => {
  const run = sections[section]
  if (run === undefined) throw new Error(`unknown section ${section}`)
  const effect = run(JSON.parse(args) as never)
  report(
    await Effect.runPromise(effect)
  )
  process.exit(0) // a section's timers (the worker's interval) must not keep the child alive
}

if (process.argv[2] === "--child") {
  child(process.argv[3]!, process.argv[4]!).catch((e) => {
    console.error(e)
    process.exit(1)
  })
} else {
  parent()
}
