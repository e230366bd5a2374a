/**
 * The parent side of the crash tests (`test/crash/crash.test.ts`) and of the soak (`bench/crash-soak.ts`).
 *
 * One run: a SQLite file, a send log and a live-request file in a fresh directory. For each of `kills` cycles the
 * parent appends that cycle's live requests to the live file, starts the gateway (`gateway.ts`) as a child
 * process, waits for its `ready`, enqueues that cycle's queued messages into the file through its own outbox
 * (a second connection), and SIGKILLs the child after a seeded random delay; once the child is dead it records
 * which rows were left `in_flight` (exact: nobody else writes them). Then one last boot drains everything and is
 * stopped with SIGTERM, and `verify` checks the send log and the table against what was asked:
 *
 * - lost: a message never stored, or a part of it never in the send log (must be 0);
 * - every `delivered` row has all its parts in the send log;
 * - duplicates (an entry whose part 0 was sent more than once) only for rows found in flight after a kill, at most
 *   one extra send per such kill, and at most a claim batch plus one live send per live conversation per kill;
 * - per conversation, the first sends follow enqueue order;
 * - the table ends with every row `delivered` (none `in_flight`, none `queued`).
 *
 * Messages go to two kinds of conversations: "queued" ones are enqueued by the parent and only the child's
 * RecoveryWorker sends them; "live" ones are `deliver`ed by the child itself (a kill there leaves a leased
 * in-flight row that the next boot reclaims). The two kinds never share a conversation: two processes stamping
 * `enqueued_at` from their own clocks could interleave one conversation in an order neither of them asked for.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import { type ChildProcess, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import { SendError } from "../../src/DeliveryError.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { gatewayConfig, type LiveRequest, parseSendLog, type Send } from "./protocol.js"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const gatewaySource = path.join(repoRoot, "test", "crash", "gateway.ts")

// ---------------------------------------------------------------------------------------------------------------
// starting the gateway

interface Esbuild {
  readonly build: (options: Record<string, unknown>) => Promise<unknown>
}

const bundles = new Map<string, Promise<ReadonlyArray<string>>>()

/**
 * The node arguments that run the gateway. `node --import tsx gateway.ts` costs ~2 s of start-up per boot on a
 * 2-core machine (tsx transforms every module again in each process), which would leave no room for 20+ kills in
 * CI; so the gateway is bundled once per test process with the esbuild that tsx itself runs on, and each boot starts
 * the bundle (~0.2 s). The bundle lives in node_modules/.cache so that better-sqlite3 (native, kept external)
 * resolves. If esbuild cannot be found, the gateway runs through tsx.
 */
export const gatewayArgs: Effect.Effect<ReadonlyArray<string>> = Effect.suspend(() => bundledArgs(gatewaySource))

/** The node arguments that run the program at `source` (a .ts file) from a bundle built once per test process. */
export const bundledArgs = (source: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(() => {
    const existing = bundles.get(source)
    if (existing !== undefined) return existing
    const bundle = (async () => {
      try {
        const fromTsx = createRequire(createRequire(import.meta.url).resolve("tsx/package.json"))
        const esbuild = fromTsx("esbuild") as Esbuild
        const outDir = path.join(repoRoot, "node_modules", ".cache", "effect-outbox-crash")
        fs.mkdirSync(outDir, { recursive: true })
        const name = path.basename(source, ".ts")
        // built under a private name and renamed: test files building at once each replace it whole
        const outfile = path.join(outDir, `${name}.mjs`)
        const building = path.join(outDir, `${name}-${process.pid}-${crypto.randomUUID()}.mjs`)
        await esbuild.build({
          entryPoints: [source],
          outfile: building,
          bundle: true,
          platform: "node",
          format: "esm",
          target: "node20",
          external: ["better-sqlite3"],
          // CommonJS dependencies inside an ESM bundle still call require
          banner: {
            js:
              "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);"
          },
          logLevel: "silent"
        })
        fs.renameSync(building, outfile)
        return [outfile]
      } catch {
        return ["--import", "tsx", source]
      }
    })()
    bundles.set(source, bundle)
    return bundle
  })

/** A running gateway and what it has said so far. */
interface Gateway {
  readonly process: ChildProcess
  readonly ready: Deferred.Deferred<void, Error>
  readonly exited: Deferred.Deferred<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
  readonly liveDone: Deferred.Deferred<void>
  readonly stderrTail: Array<string>
}

/** Starts the gateway; closing the scope SIGKILLs it if it is still running. */
const startGateway = (args: ReadonlyArray<string>, onLine: (line: string) => void) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const ready = yield* Deferred.make<void, Error>()
      const exited = yield* Deferred.make<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>()
      const liveDone = yield* Deferred.make<void>()
      const stderrTail: Array<string> = []
      const child = spawn(process.execPath, [...args], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] })
      readline.createInterface({ input: child.stdout! }).on("line", (line) => {
        if (line === "ready") Deferred.unsafeDone(ready, Effect.void)
        else if (line === "live-done") Deferred.unsafeDone(liveDone, Effect.void)
        else onLine(line)
      })
      readline.createInterface({ input: child.stderr! }).on("line", (line) => {
        stderrTail.push(line)
        if (stderrTail.length > 40) stderrTail.shift()
      })
      child.on("exit", (code, signal) => {
        Deferred.unsafeDone(ready, Effect.fail(new Error(`the gateway exited before it was ready (${code ?? signal})`)))
        Deferred.unsafeDone(exited, Effect.succeed({ code, signal }))
      })
      return { process: child, ready, exited, liveDone, stderrTail } satisfies Gateway
    }),
    (gateway) =>
      Effect.gen(function*() {
        if (gateway.process.exitCode === null && gateway.process.signalCode === null) gateway.process.kill("SIGKILL")
        yield* Deferred.await(gateway.exited)
      })
  )

// ---------------------------------------------------------------------------------------------------------------
// the run

/** What a run does. */
export interface CrashOptions {
  readonly messages: number
  readonly kills: number
  readonly seed: number
  /** conversations the parent enqueues into (default 32) */
  readonly queuedConversations?: number
  /** conversations the gateway delivers live, one request at a time each (default 8) */
  readonly liveConversations?: number
  /** share of the messages delivered live (default 0.25) */
  readonly liveShare?: number
  /** the kill comes this long after `ready` (default 50–400 ms) */
  readonly killAfterMs?: readonly [number, number]
  /**
   * after a live request was deferred behind its conversation, the gateway waits up to this long for it to be
   * delivered before the conversation's next request (default 2000 ms); a long backlog makes every such wait last
   * this long, so a soak that outruns the gateway wants it short
   */
  readonly liveWaitMs?: number
  /** how long the last boot may take to drain everything (default 60 s) */
  readonly drainTimeout?: Duration.DurationInput
  /** prints progress (the soak) */
  readonly progress?: (line: string) => void
  /** keep the database, send log and live file even when every check passed (their directory is `CrashReport.dir`) */
  readonly keepFiles?: boolean
}

/** One message the parent asks for. */
export interface MessageSpec {
  readonly key: string
  readonly conversation: string
  /** position in its conversation: the enqueue order */
  readonly seq: number
  readonly parts: number
  readonly live: boolean
}

/** What a run found; `violations` is empty when every promise held. */
export interface CrashReport {
  readonly messages: number
  readonly live: number
  readonly kills: number
  /** kills that left at least one row in flight */
  readonly killsMidFlight: number
  /** rows found in flight after the kills, summed */
  readonly inFlightAtKills: number
  readonly lost: number
  /** extra sends of part 0, summed over entries */
  readonly duplicates: number
  readonly duplicatedEntries: number
  /** kills × (claim batch + live conversations) — see `perKillBound` */
  readonly duplicateBound: number
  /** outcomes of the gateway's live `deliver` calls, by tag */
  readonly liveOutcomes: Readonly<Record<string, number>>
  readonly finalStates: Readonly<Record<string, number>>
  readonly elapsedMs: number
  readonly violations: ReadonlyArray<string>
  /** where the run's files are (removed after a clean run unless `keepFiles`) */
  readonly dir: string
}

const parentLayer = (filename: string) =>
  Outbox.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      // not the file's gateway (the child is): it only enqueues
      SqliteOutboxRepo.layerFile({ filename, exclusive: false }),
      ChannelRegistry.layer({
        // the parent only enqueues; its outbox never runs a worker or a live send
        chat: { sendText: () => Effect.fail(new SendError({ message: "the parent never sends", retryable: false })) }
      }),
      OutboxConfig.layer({ nodeId: "crash-parent" })
    ))
  )

const generate = (options: CrashOptions, rng: Random.Random) =>
  Effect.gen(function*() {
    const queuedConversations = options.queuedConversations ?? 32
    const liveConversations = options.liveConversations ?? 8
    const liveShare = options.liveShare ?? 0.25
    const seqs = new Map<string, number>()
    const specs: Array<MessageSpec> = []
    for (let i = 0; i < options.messages; i++) {
      const live = (yield* rng.next) < liveShare
      const conversation = live
        ? `live-${yield* rng.nextIntBetween(0, liveConversations)}`
        : `queued-${yield* rng.nextIntBetween(0, queuedConversations)}`
      const seq = seqs.get(conversation) ?? 0
      seqs.set(conversation, seq + 1)
      const parts = (yield* rng.next) < 0.25 ? 2 : 1
      specs.push({ key: `${conversation}:${seq}`, conversation, seq, parts, live })
    }
    return specs
  })

const payloadsOf = (spec: MessageSpec) =>
  Array.from({ length: spec.parts }, (_, p) => ({ text: `${spec.key} part ${p}` }))

const groupBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string): Map<string, Array<A>> => {
  const out = new Map<string, Array<A>>()
  for (const item of items) out.set(key(item), [...(out.get(key(item)) ?? []), item])
  return out
}

/** Runs the scenario in a fresh directory (removed afterwards unless a check failed). */
export const runCrashScenario = (options: CrashOptions): Effect.Effect<CrashReport, Error> =>
  Effect.gen(function*() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-crash-"))
    const db = path.join(dir, "outbox.db")
    const sendLog = path.join(dir, "sends.log")
    const liveFile = path.join(dir, "live.jsonl")
    fs.writeFileSync(sendLog, "")
    fs.writeFileSync(liveFile, "")
    const progress = options.progress ?? (() => {})
    const [killMin, killMax] = options.killAfterMs ?? [50, 400]
    const rng = Random.make(options.seed)

    const context = yield* Layer.build(parentLayer(db))
    const outbox = Context.get(context, Outbox.Outbox)
    const sql = Context.get(context, SqlClient.SqlClient)
    const specs = yield* generate(options, rng)
    const args = yield* gatewayArgs
    const started = Date.now()

    const liveOutcomes: Record<string, number> = {}
    const violations: Array<string> = []
    const onLine = (line: string) => {
      const [kind, tag] = line.split(" ")
      if (kind === "live" && tag !== undefined) liveOutcomes[tag] = (liveOutcomes[tag] ?? 0) + 1
      else if (kind === "live-error") violations.push(`gateway: ${line}`)
    }
    const boot = (cycle: number) =>
      Effect.gen(function*() {
        const gateway = yield* startGateway(
          [...args, db, sendLog, liveFile, String(options.seed * 10_000 + cycle), String(options.liveWaitMs ?? 2000)],
          onLine
        )
        yield* Deferred.await(gateway.ready).pipe(
          Effect.timeoutFail({
            duration: Duration.seconds(30),
            onTimeout: () => new Error("the gateway did not get ready in 30 s")
          }),
          Effect.mapError((e) => new Error(`${e.message}\n${gateway.stderrTail.join("\n")}`))
        )
        return gateway
      })
    const inFlightRows = sql<{ id: string }>`SELECT id FROM outbox_entries WHERE state = 'in_flight'`.pipe(
      Effect.map((rows) => new Set(rows.map((r) => r.id)))
    )

    const inFlightAtKills: Array<ReadonlySet<string>> = []
    for (let cycle = 0; cycle < options.kills; cycle++) {
      const chunk = specs.slice(
        Math.floor((cycle * specs.length) / options.kills),
        Math.floor(((cycle + 1) * specs.length) / options.kills)
      )
      const live = chunk.filter((s) => s.live)
      if (live.length > 0) {
        fs.appendFileSync(
          liveFile,
          live.map((s) =>
            JSON.stringify(
              {
                channel: "chat",
                to: s.conversation,
                idempotencyKey: s.key,
                payloads: payloadsOf(s)
              } satisfies LiveRequest
            )
          ).join("\n") + "\n"
        )
      }
      yield* Effect.scoped(Effect.gen(function*() {
        const gateway = yield* boot(cycle)
        // the parent writes while the gateway works: conversations in parallel, each in order
        const feeding = yield* Effect.fork(Effect.forEach(
          groupBy(chunk.filter((s) => !s.live), (s) => s.conversation).values(),
          (group) =>
            Effect.forEach(
              group,
              (s) =>
                outbox.enqueue({ channel: "chat", to: s.conversation, idempotencyKey: s.key, payloads: payloadsOf(s) }),
              { discard: true }
            ),
          { concurrency: "unbounded", discard: true }
        ))
        yield* Effect.sleep(Duration.millis(yield* rng.nextIntBetween(killMin, killMax + 1)))
        if (gateway.process.exitCode !== null || gateway.process.signalCode !== null) {
          violations.push(
            `cycle ${cycle}: the gateway exited by itself (${gateway.process.exitCode}):\n${
              gateway.stderrTail.join("\n")
            }`
          )
        }
        gateway.process.kill("SIGKILL")
        yield* Deferred.await(gateway.exited)
        yield* Fiber.join(feeding)
      }))
      inFlightAtKills.push(yield* inFlightRows)
      progress(`kill ${cycle + 1}/${options.kills}: ${inFlightAtKills.at(-1)!.size} rows in flight`)
    }

    // the last boot drains everything and is stopped gracefully
    yield* Effect.scoped(Effect.gen(function*() {
      const gateway = yield* boot(options.kills)
      const stats = sql<{ total: number; pending: number }>`SELECT count(*) AS total,
          count(next_attempt_at) AS pending FROM outbox_entries`.pipe(Effect.map((rows) => rows[0]!))
      const drained = yield* Deferred.await(gateway.liveDone).pipe(
        Effect.zipRight(stats),
        Effect.repeat(
          Schedule.spaced(Duration.millis(50)).pipe(
            Schedule.whileInput((s: { total: number; pending: number }) => s.total < specs.length || s.pending > 0),
            Schedule.passthrough
          )
        ),
        Effect.tap((s) => progress(`drained: ${s.total} rows`)),
        Effect.timeout(options.drainTimeout ?? Duration.seconds(60)),
        Effect.option
      )
      if (drained._tag === "None") {
        const left = yield* stats
        violations.push(`the last boot did not drain the outbox in time (${left.total} rows, ${left.pending} pending)`)
      }
      gateway.process.kill("SIGTERM")
      const stopped = yield* Deferred.await(gateway.exited).pipe(Effect.timeout(Duration.seconds(10)), Effect.option)
      if (stopped._tag === "None") violations.push("the gateway did not stop within 10 s of SIGTERM")
    }))
    const elapsedMs = Date.now() - started

    const rows = yield* sql<{ id: string; key: string | null; state: string }>`
      SELECT id, idempotency_key AS key, state FROM outbox_entries`
    const sends = parseSendLog(fs.readFileSync(sendLog, "utf8"))
    const report = verify({
      specs,
      rows,
      sends,
      inFlightAtKills,
      // a kill can leave in flight one worker batch (or as many sends as the worker runs at once) and one live
      // send per live conversation
      perKillBound: Math.max(gatewayConfig.claimBatch, gatewayConfig.workerConcurrency) +
        (options.liveConversations ?? 8)
    })
    violations.push(...report.violations)
    if (violations.length === 0 && options.keepFiles !== true) fs.rmSync(dir, { recursive: true, force: true })
    else if (violations.length > 0) violations.push(`files kept in ${dir}`)
    return { ...report, liveOutcomes, elapsedMs, violations, kills: options.kills, dir }
  }).pipe(
    Effect.scoped,
    Logger.withMinimumLogLevel(LogLevel.Error),
    Effect.mapError((e) => (e instanceof Error ? e : new Error(String(e))))
  )

// ---------------------------------------------------------------------------------------------------------------
// the checks

/** Checks a finished run; pure, so the checks themselves can be tested on made-up logs. */
export const verify = (input: {
  readonly specs: ReadonlyArray<MessageSpec>
  readonly rows: ReadonlyArray<{ readonly id: string; readonly key: string | null; readonly state: string }>
  readonly sends: ReadonlyArray<Send>
  readonly inFlightAtKills: ReadonlyArray<ReadonlySet<string>>
  readonly perKillBound: number
}): Omit<CrashReport, "liveOutcomes" | "elapsedMs" | "kills" | "dir"> => {
  const { inFlightAtKills, rows, sends, specs } = input
  const violations: Array<string> = []
  const sample = (ids: ReadonlyArray<string>) => `${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ", …" : ""}`

  const idOfKey = new Map(rows.flatMap((r) => (r.key === null ? [] : [[r.key, r.id] as const])))
  const rowById = new Map(rows.map((r) => [r.id, r]))
  const partsSent = new Map<string, Map<number, number>>()
  const firstSend = new Map<string, number>()
  sends.forEach((s, i) => {
    const parts = partsSent.get(s.entryId) ?? new Map<number, number>()
    parts.set(s.partIndex, (parts.get(s.partIndex) ?? 0) + 1)
    partsSent.set(s.entryId, parts)
    if (s.partIndex === 0 && !firstSend.has(s.entryId)) firstSend.set(s.entryId, i)
  })

  // lost: never stored, or some part never sent
  const lost: Array<string> = []
  for (const spec of specs) {
    const id = idOfKey.get(spec.key)
    const parts = id === undefined ? undefined : partsSent.get(id)
    if (parts === undefined || Array.from({ length: spec.parts }, (_, p) => p).some((p) => !parts.has(p))) {
      lost.push(`${spec.key}${id === undefined ? " (never stored)" : ` (${id}, ${rowById.get(id)?.state})`}`)
    }
  }
  if (lost.length > 0) violations.push(`${lost.length} messages lost: ${sample(lost)}`)
  if (rows.length !== specs.length) violations.push(`${rows.length} rows for ${specs.length} messages`)
  const unknownSends = [...partsSent.keys()].filter((id) => !rowById.has(id))
  if (unknownSends.length > 0) violations.push(`sends of entries not in the table: ${sample(unknownSends)}`)

  // every delivered row was sent, all of it
  const partsOfId = new Map(specs.flatMap((s) => (idOfKey.has(s.key) ? [[idOfKey.get(s.key)!, s.parts] as const] : [])))
  const deliveredUnsent = rows.filter((r) =>
    r.state === "delivered" &&
    Array.from({ length: partsOfId.get(r.id) ?? 1 }, (_, p) => p).some((p) => !partsSent.get(r.id)?.has(p))
  )
  if (deliveredUnsent.length > 0) {
    violations.push(`rows delivered without being sent: ${sample(deliveredUnsent.map((r) => r.id))}`)
  }

  // duplicates: only rows found in flight after a kill, one extra send per such kill at most
  let duplicates = 0
  const duplicated: Array<string> = []
  for (const [id, parts] of partsSent) {
    const extra = (parts.get(0) ?? 0) - 1
    if (extra <= 0) continue
    duplicates += extra
    duplicated.push(id)
    const kills = inFlightAtKills.filter((set) => set.has(id)).length
    if (extra > kills) {
      violations.push(`entry ${id} was sent ${extra + 1} times but found in flight after ${kills} kills`)
    }
  }
  const duplicateBound = inFlightAtKills.length * input.perKillBound
  if (duplicates > duplicateBound) violations.push(`${duplicates} duplicates exceed ${duplicateBound}`)

  // per conversation, the first sends follow the enqueue order
  for (const [conversation, group] of groupBy(specs, (s) => s.conversation)) {
    // (a message never sent is counted as lost above)
    const order = [...group].sort((a, b) => a.seq - b.seq).flatMap((s) => {
      const pos = firstSend.get(idOfKey.get(s.key) ?? "")
      return pos === undefined ? [] : [{ seq: s.seq, pos }]
    })
    const broken = order.findIndex((o, i) => i > 0 && o.pos < order[i - 1]!.pos)
    if (broken !== -1) {
      violations.push(
        `conversation ${conversation}: message ${order[broken]!.seq} was first sent before message ${
          order[broken - 1]!.seq
        }`
      )
    }
  }

  // the table ends with every row delivered
  const finalStates: Record<string, number> = {}
  for (const r of rows) finalStates[r.state] = (finalStates[r.state] ?? 0) + 1
  for (const [state, n] of Object.entries(finalStates)) {
    if (state !== "delivered") violations.push(`${n} rows end ${state}`)
  }

  return {
    messages: specs.length,
    live: specs.filter((s) => s.live).length,
    killsMidFlight: inFlightAtKills.filter((s) => s.size > 0).length,
    inFlightAtKills: inFlightAtKills.reduce((n, s) => n + s.size, 0),
    lost: lost.length,
    duplicates,
    duplicatedEntries: duplicated.length,
    duplicateBound,
    finalStates,
    violations
  }
}

/** A one-line summary for CI output and the soak. */
export const summary = (r: CrashReport): string =>
  `crash run: ${r.messages} messages (${r.live} live), ${r.kills} kills (${r.killsMidFlight} with rows in flight, ` +
  `${r.inFlightAtKills} rows in flight in all), lost ${r.lost}, duplicates ${r.duplicates} in ${r.duplicatedEntries} entries ` +
  `(bound ${r.duplicateBound}), live outcomes ${JSON.stringify(r.liveOutcomes)}, ` +
  `${(r.elapsedMs / 1000).toFixed(1)} s, ${Math.round((r.messages * 1000) / r.elapsedMs)} msgs/s`
