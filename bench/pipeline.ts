/**
 * Pipeline benchmark: the whole Outbox on a SQLite file with a no-op adapter.
 * - live `deliver` msgs/s at concurrency 1, 64 and 512 (group commit shares insert and ack transactions);
 * - worker drain msgs/s of a 100,000-row backlog (recovery passes back to back);
 * - the same live (c=512) and drain figures with an adapter whose call suspends (a resolved Promise), so the
 *   send timeout's timer is armed as for a network call;
 * - the raw better-sqlite3 figure in the same run: insert + mark delivered, one commit per message and batched;
 * - better-sqlite3 alone running the outbox's own statements on its schema ("floor"): what the database costs;
 *   and, in the same section, Effect's share of a live delivery with no database (a span and a group-commit wait);
 * - peak RSS.
 * Run: npm run bench:pipeline   (SYNC=FULL for synchronous FULL; BACKLOG=20000 for a quick run; WAL_PAGES=1000 for
 * another checkpoint size; ONLY=raw,floor,live1,live64,live512,drain,live512Async,drainAsync to run some sections).
 * The script compiles the library and this file with tsc (tsconfig.bench.json, into bench/.build) and runs them with
 * node, as a gateway runs the built library: under tsx the same code used 15-25 % more CPU per message.
 */
import Database from "better-sqlite3"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as ChannelRegistry from "../src/ChannelRegistry.js"
import type { WriteSpec } from "../src/EntryStateMachine.js"
import * as Journal from "../src/internal/Journal.js"
import * as MemoryOutboxRepo from "../src/MemoryOutboxRepo.js"
import { Outbox } from "../src/Outbox.js"
import * as Outboxes from "../src/Outbox.js"
import * as OutboxConfig from "../src/OutboxConfig.js"
import { OutboxRepo, WriteOp } from "../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../src/SqliteOutboxRepo.js"

const SYNC = (process.env.SYNC ?? "NORMAL") as "NORMAL" | "FULL"
const BACKLOG = Number(process.env.BACKLOG ?? 100_000)
const RUNS = Number(process.env.RUNS ?? 3)
const WAL_PAGES = process.env.WAL_PAGES === undefined ? undefined : Number(process.env.WAL_PAGES)
const ONLY = process.env.ONLY?.split(",")
const wanted = (section: string) => ONLY === undefined || ONLY.includes(section)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-pipeline-bench-"))
let files = 0
const freshFile = () => path.join(dir, `p-${++files}.db`)

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const noop = { outboundContract: "v2" as const, sendFinal: () => Effect.succeed({ messageId: "ok" }) }
/** A plugin-style adapter whose send resolves a Promise: the call suspends, as a network call would, with no latency. */
const noopAsync = { outboundContract: "v2" as const, sendFinal: () => Promise.resolve({ messageId: "ok" }) }
let adapter: typeof noop | typeof noopAsync = noop

const outboxOn = (filename: string, config: Partial<OutboxConfig.OutboxConfigShape> = {}) =>
  Outboxes.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      SqliteOutboxRepo.layerFile({ filename, synchronous: SYNC, walAutocheckpointPages: WAL_PAGES }),
      ChannelRegistry.layer({ chat: adapter }),
      OutboxConfig.layer({ nodeId: "bench", retryJitter: false, ...config })
    )),
    Layer.orDie
  )

const cpuMicros = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

/** CPU µs per message of the last timed section: unlike wall time, barely moved by other load on the machine. */
let lastCpuPerMessage = 0

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>, messages: number) =>
  Effect.gen(function*() {
    const cpu0 = cpuMicros()
    const [d, a] = yield* Effect.timed(effect)
    lastCpuPerMessage = (cpuMicros() - cpu0) / messages
    return [Duration.toMillis(d), a] as const
  })

/** Live deliver throughput: `total` deliveries by `concurrency` callers over `conversations` chats. */
const live = (concurrency: number, total: number) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox
    const [ms] = yield* timed(
      Effect.forEach(
        Array.from({ length: total }, (_, i) => i),
        (i) => outbox.deliver({ channel: "chat", to: `user-${i}`, payloads: [{ text: `reply ${i}` }] }),
        { concurrency, discard: true }
      ),
      total
    )
    const stats = yield* outbox.stats
    if (stats.byState.delivered !== total) throw new Error(`delivered ${stats.byState.delivered} of ${total}`)
    return (total / ms) * 1000
  }).pipe(Effect.provide(outboxOn(freshFile())))

/** Worker drain: a backlog enqueued in batches, then recovery passes back to back until nothing is pending. */
const drain = (backlog: number) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox
    const repo = yield* OutboxRepo
    const requests = Array.from(
      { length: backlog },
      (_, i) => ({ channel: "chat", to: `user-${i % 5000}`, payloads: [{ text: `reply ${i}` }] })
    )
    yield* Effect.forEach(requests, (r) => outbox.enqueue(r), { concurrency: 500, discard: true })
    let passes = 0
    const [ms] = yield* timed(
      Effect.gen(function*() {
        while ((yield* repo.pendingCount) > 0) {
          yield* outbox.runRecoveryPass
          passes++
        }
      }),
      backlog
    )
    const stats = yield* outbox.stats
    if (stats.byState.delivered !== backlog) throw new Error(`delivered ${stats.byState.delivered} of ${backlog}`)
    return { rate: (backlog / ms) * 1000, passes }
  }).pipe(
    Effect.provide(
      outboxOn(freshFile(), { workerInterval: Duration.minutes(10), claimBatch: 500, workerConcurrency: 512 })
    )
  )

/** The floor: better-sqlite3 with a minimal table, insert then mark delivered. */
const raw = (total: number, batch: number) => {
  const db = new Database(freshFile())
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

/**
 * The database's share: better-sqlite3 alone running the statements the outbox runs, on its schema (indexes
 * included), in batches of 500 — insert (live `deliver`'s write-ahead), then claim and ack (the worker's drain).
 * Each returns µs per row, commits included; 1e6 / (the sum) bounds what the library could reach on this schema.
 */
const rawOnSchema = (rows: number) =>
  Effect.gen(function*() {
    const filename = freshFile()
    yield* Effect.provide(Effect.void, SqliteOutboxRepo.layerFile({ filename, synchronous: SYNC }).pipe(Layer.orDie))
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
    const lock = () => db.exec("BEGIN IMMEDIATE")
    let t0 = performance.now()
    for (let i = 0; i < rows; i += batch) {
      lock()
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
    const insertMicros = ((performance.now() - t0) * 1000) / rows
    let claimMs = 0
    let ackMs = 0
    for (let done = 0; done < rows; done += batch) {
      t0 = performance.now()
      lock()
      const ids = (claim.all() as Array<{ id: string }>).map((r) => r.id)
      lease.run(...ids)
      db.exec("COMMIT")
      const t1 = performance.now()
      lock()
      ack.run(...ids)
      db.exec("COMMIT")
      claimMs += t1 - t0
      ackMs += performance.now() - t1
    }
    db.close()
    return { insertMicros, claimMicros: (claimMs * 1000) / rows, ackMicros: (ackMs * 1000) / rows }
  })

/**
 * Effect's share: what live `deliver` at `concurrency` callers costs with no database and no library logic — each
 * caller is a fiber that waits once on the library's own group-commit writer, whose write does nothing (a send that
 * completes at once is inserted, sent and acked by the writer while its caller waits once), inside the
 * `Outbox.deliver` span if `span` (made as `deliver` makes it, no stack trace). Returns wall µs per message.
 */
const effectFloor = (concurrency: number, total: number, span: boolean) =>
  Effect.scoped(Effect.gen(function*() {
    // the journal over a store whose write does nothing: one group-commit wait per call, no SQL
    const store = yield* MemoryOutboxRepo.make
    const writes = yield* Journal.make({
      ...store,
      write: (ops) => Effect.succeed(ops.map(() => ({ _tag: "Updated" as const })))
    }, 500)
    // the stub store never reads the spec
    const op = WriteOp.Update({ spec: undefined as unknown as WriteSpec })
    const t0 = performance.now()
    yield* Effect.forEach(
      Array.from({ length: total }, (_, i) => i),
      () =>
        span
          ? Effect.useSpan("Outbox.deliver", { captureStackTrace: false }, () => writes.write(op))
          : writes.write(op),
      { concurrency, discard: true }
    )
    return ((performance.now() - t0) * 1000) / total
  }))

const main = Effect.gen(function*() {
  const out: Record<string, number> = {}
  /** prints a figure, rounded to `decimals` places */
  const record = (name: string, value: number, decimals = 0) => {
    out[name] = value
    console.log(JSON.stringify({ sync: SYNC, name, value: Math.round(value * 10 ** decimals) / 10 ** decimals }))
  }
  if (wanted("raw")) {
    record(
      "raw better-sqlite3 msgs/s, one commit per message",
      median(Array.from({ length: RUNS }, () => raw(5_000, 1)))
    )
    record("raw better-sqlite3 msgs/s, batches of 500", median(Array.from({ length: RUNS }, () => raw(100_000, 500))))
  }
  if (wanted("floor")) {
    const runs = yield* Effect.forEach(Array.from({ length: RUNS }, () => 20_000), rawOnSchema)
    const insertMicros = median(runs.map((r) => r.insertMicros))
    const claimMicros = median(runs.map((r) => r.claimMicros))
    const ackMicros = median(runs.map((r) => r.ackMicros))
    record("raw better-sqlite3 on the outbox schema, insert µs/row (batches of 500)", insertMicros, 1)
    record("raw better-sqlite3 on the outbox schema, claim µs/row (batches of 500)", claimMicros, 1)
    record("raw better-sqlite3 on the outbox schema, ack µs/row (batches of 500)", ackMicros, 1)
    record("database-only ceiling, live deliver (1e6 / (insert + ack)) msgs/s", 1e6 / (insertMicros + ackMicros))
    record("database-only ceiling, worker drain (1e6 / (claim + ack)) msgs/s", 1e6 / (claimMicros + ackMicros))
    const waitMicros = median(
      yield* Effect.forEach(Array.from({ length: RUNS }, () => 50_000), (n) => effectFloor(512, n, false))
    )
    const effectMicros = median(
      yield* Effect.forEach(Array.from({ length: RUNS }, () => 50_000), (n) => effectFloor(512, n, true))
    )
    record(
      "Effect only: a caller fiber and one group-commit wait per call, no SQL, concurrency 512, µs/msg",
      waitMicros,
      1
    )
    record("Effect only: the same inside a deliver span, µs/msg", effectMicros, 1)
    record(
      "ceiling with Effect's share, live deliver at 512 (1e6 / (Effect only + insert + ack)) msgs/s",
      1e6 / (effectMicros + insertMicros + ackMicros)
    )
  }
  for (const [concurrency, total] of [[1, 2_000], [64, 20_000], [512, 50_000]] as const) {
    if (!wanted(`live${concurrency}`)) continue
    const runs: Array<number> = []
    const cpu: Array<number> = []
    for (let r = 0; r < RUNS; r++) {
      runs.push(yield* live(concurrency, total))
      cpu.push(lastCpuPerMessage)
    }
    record(`live deliver msgs/s, concurrency ${concurrency}`, median(runs))
    record(`live deliver CPU µs/msg, concurrency ${concurrency}`, median(cpu))
  }
  for (const [section, label] of [["drain", ""], ["drainAsync", ", async adapter"]] as const) {
    if (!wanted(section)) continue
    adapter = section === "drain" ? noop : noopAsync
    const drains: Array<number> = []
    const drainCpu: Array<number> = []
    for (let r = 0; r < RUNS; r++) {
      drains.push((yield* drain(BACKLOG)).rate)
      drainCpu.push(lastCpuPerMessage)
    }
    record(`worker drain msgs/s, backlog ${BACKLOG}${label}`, median(drains))
    record(`worker drain CPU µs/msg, backlog ${BACKLOG}${label}`, median(drainCpu))
  }
  if (wanted("live512Async")) {
    adapter = noopAsync
    const runs: Array<number> = []
    const cpu: Array<number> = []
    for (let r = 0; r < RUNS; r++) {
      runs.push(yield* live(512, 50_000))
      cpu.push(lastCpuPerMessage)
    }
    record("live deliver msgs/s, concurrency 512, async adapter", median(runs))
    record("live deliver CPU µs/msg, concurrency 512, async adapter", median(cpu))
    adapter = noop
  }
  record("peak RSS MiB", process.resourceUsage().maxRSS / 1024)
  fs.rmSync(dir, { recursive: true, force: true })
})

Effect.runPromise(main).catch((e) => {
  console.error(e)
  process.exit(1)
})
