/**
 * The parent side of the multi-process tests on PostgreSQL (pgCrash.test.ts): several gateway processes
 * (pgGateway.ts, each its own node) on one outbox schema, a loopback HTTP channel, and the parent playing the chats.
 *
 * - **Conversations** are played by the parent: each sends its replies one after another, each through a gateway
 *   picked at random (`deliver` or `enqueue`, the reply's key as idempotency key), the next only once the previous
 *   was stored. So enqueue order is well defined across processes (two replies of one conversation are stored by
 *   different processes, one after the other). A request whose gateway died, or which failed with `StoreError`, is
 *   sent again (to any gateway; the key makes that safe).
 * - **The channel** (an HTTP server here) fails a share of the sends with a 500, answers the others after 0–4 ms, and
 *   records every request in arrival order. It checks the one-lease-per-conversation promise from outside: no
 *   request of a conversation may arrive while another of that conversation is unanswered.
 * - **Faults**: `kills` SIGKILLs of random gateways at random moments, each restarted at once (same node id); after a
 *   kill the killed boot's in-flight rows are read (exact: nobody else writes them until its heartbeat is stale).
 *   Or `terminations`: every connection of the gateways ended with `pg_terminate_backend`, the gateways left to
 *   recover by themselves.
 *
 * Then the gateways drain the outbox and are stopped with SIGTERM, and the run is checked with the SQLite crash
 * test's `verify` (none lost, duplicates only for rows in flight at a kill, first sends in enqueue order, every row
 * delivered), plus: no overlapping sends of one conversation, no attempt of a reply before the previous one of its
 * conversation was accepted, and the callers' errors.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { type ChildProcess, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import { freshSchema, urlFor } from "../support/pg.js"
import { bundledArgs, type MessageSpec, verify } from "./harness.js"
import type { ChannelPost, PgAnswer, PgRequest } from "./pgProtocol.js"
import { pgGatewayConfig } from "./pgProtocol.js"
import type { Send } from "./protocol.js"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const gatewaySource = path.join(repoRoot, "test", "crash", "pgGateway.ts")

/** What a run does. */
export interface PgCrashOptions {
  readonly gateways: number
  readonly conversations: number
  readonly perConversation: number
  /** SIGKILLs of random gateways, each restarted at once */
  readonly kills: number
  /** times every gateway connection is terminated (`pg_terminate_backend`) */
  readonly terminations: number
  /** share of sends the channel answers with a 500 */
  readonly failureRate: number
  readonly seed: number
  /** pause of a conversation between two replies (default 20–100 ms) */
  readonly thinkMs?: readonly [number, number]
  /** time between two kills (default 300–700 ms) */
  readonly killEveryMs?: readonly [number, number]
  /** how long the gateways may take to drain after the last reply was stored (default 30 s) */
  readonly drainTimeout?: Duration.DurationInput
}

/** What a run found; `violations` is empty when every promise held. */
export interface PgCrashReport {
  readonly messages: number
  readonly kills: number
  readonly killsMidFlight: number
  readonly inFlightAtKills: number
  /** backends ended by each termination */
  readonly terminated: ReadonlyArray<number>
  readonly lost: number
  readonly duplicates: number
  readonly duplicateBound: number
  /** requests sent again because their gateway died before answering */
  readonly resentAfterKill: number
  /** the callers' failures, by error tag (a `StoreError` is sent again) */
  readonly callerErrors: Readonly<Record<string, number>>
  /** the callers' outcomes, by tag */
  readonly outcomes: Readonly<Record<string, number>>
  /** channel requests, and those answered with a 500 */
  readonly channelRequests: number
  readonly channelFailures: number
  /** boots started per gateway slot (1 each when no gateway restarted) */
  readonly bootsPerGateway: ReadonlyArray<number>
  /** per gateway slot: replies it stored after the last termination (0 would be a gateway that did not recover) */
  readonly storedAfterLastTermination: ReadonlyArray<number>
  /** per gateway slot: whether its stderr says it listened for wake-ups again */
  readonly relistened: ReadonlyArray<boolean>
  readonly finalStates: Readonly<Record<string, number>>
  readonly elapsedMs: number
  /** from the start to the last reply stored (the faults come meanwhile) */
  readonly producedMs: number
  /** from then until every row was delivered and the gateways stopped */
  readonly drainedMs: number
  readonly violations: ReadonlyArray<string>
}

// ---------------------------------------------------------------------------------------------------------------
// the channel

interface Arrival {
  readonly key: string
  readonly conversation: string
  readonly entryId: string
  accepted: boolean
}

/** The loopback channel: a share of requests fail with a 500, and two in-flight sends of one conversation are a violation. */
const startChannel = (rng: Random.Random, failureRate: number) =>
  Effect.gen(function*() {
    const arrivals: Array<Arrival> = []
    const sends: Array<Send> = []
    const overlaps: Array<string> = []
    const inFlight = new Map<string, string>()
    const draw = () => Effect.runSync(rng.next)
    const handle = (body: ChannelPost, res: http.ServerResponse) => {
      const other = inFlight.get(body.to)
      if (other !== undefined) overlaps.push(`${body.to}: ${body.text} arrived while ${other} was unanswered`)
      inFlight.set(body.to, body.text)
      const arrival: Arrival = { key: body.text, conversation: body.to, entryId: body.entryId, accepted: false }
      arrivals.push(arrival)
      const fail = draw() < failureRate
      const answer = Effect.sync(() => {
        if (inFlight.get(body.to) === body.text) inFlight.delete(body.to)
        if (fail) {
          res.writeHead(500).end("channel unavailable")
          return
        }
        arrival.accepted = true
        sends.push({ entryId: body.entryId, partIndex: body.partIndex })
        res.writeHead(200).end(`m-${arrivals.length}`)
      })
      Effect.runFork(Effect.zipRight(Effect.sleep(Duration.millis(Math.floor(draw() * 5))), answer))
    }
    const server = http.createServer((req, res) => {
      let raw = ""
      req.setEncoding("utf8").on("data", (d: string) => (raw += d)).on("end", () => handle(JSON.parse(raw), res))
    })
    yield* Effect.acquireRelease(
      Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
      () =>
        Effect.async<void>((resume) => {
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/send`
    return { url, arrivals, sends, overlaps }
  })

// ---------------------------------------------------------------------------------------------------------------
// the gateways

interface Boot {
  readonly process: ChildProcess
  readonly owner: Deferred.Deferred<string, Error>
  readonly exited: Deferred.Deferred<void>
  readonly answers: Map<string, Deferred.Deferred<PgAnswer, "died">>
  readonly stderr: Array<string>
}

/** Starts one boot of a gateway and waits for its `ready`; the scope's end SIGKILLs it if it still runs. */
const startBoot = (args: ReadonlyArray<string>): Effect.Effect<Boot, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const owner = yield* Deferred.make<string, Error>()
    const exited = yield* Deferred.make<void>()
    const answers = new Map<string, Deferred.Deferred<PgAnswer, "died">>()
    const stderr: Array<string> = []
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, [...args], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] })),
      (child) =>
        Effect.zipRight(
          Effect.sync(() => {
            if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
          }),
          Deferred.await(exited)
        )
    )
    child.stdin!.on("error", () => {}) // a write to a killed gateway: its requests fail as "died" on exit
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.startsWith("ready ")) return void Deferred.unsafeDone(owner, Effect.succeed(line.slice(6)))
      if (!line.startsWith("{")) return void stderr.push(line)
      const answer = JSON.parse(line) as PgAnswer
      const waiting = answers.get(answer.key)
      answers.delete(answer.key)
      if (waiting !== undefined) Deferred.unsafeDone(waiting, Effect.succeed(answer))
    })
    readline.createInterface({ input: child.stderr! }).on("line", (line) => {
      stderr.push(line)
    })
    child.on("exit", (code, signal) => {
      Deferred.unsafeDone(owner, Effect.fail(new Error(`the gateway exited before it was ready (${code ?? signal})`)))
      for (const waiting of answers.values()) Deferred.unsafeDone(waiting, Effect.fail("died"))
      answers.clear()
      Deferred.unsafeDone(exited, Effect.void)
    })
    const boot: Boot = { process: child, owner, exited, answers, stderr }
    yield* Deferred.await(owner).pipe(
      Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("the gateway was not ready in 30 s") }),
      Effect.mapError((e) => new Error(`${e.message}\n${stderr.slice(-20).join("\n")}`))
    )
    return boot
  })

/** Sends a request to a boot and waits for its answer; `Left` when the boot died first. */
const ask = (boot: Boot, request: PgRequest) =>
  Effect.gen(function*() {
    const answer = yield* Deferred.make<PgAnswer, "died">()
    if (boot.process.exitCode !== null || boot.process.signalCode !== null) return Either.left("died" as const)
    boot.answers.set(request.key, answer)
    boot.process.stdin!.write(`${JSON.stringify(request)}\n`)
    return yield* Effect.either(Deferred.await(answer)).pipe(
      Effect.timeoutFail({
        duration: "20 seconds",
        onTimeout: () => new Error(`${request.op} ${request.key}: no answer from the gateway in 20 s`)
      })
    )
  })

const count = (tally: Record<string, number>, key: string) => void (tally[key] = (tally[key] ?? 0) + 1)

// ---------------------------------------------------------------------------------------------------------------
// the run

/** Runs the scenario on a fresh schema (dropped at the end). */
export const runPgCrashScenario = (options: PgCrashOptions): Effect.Effect<PgCrashReport, Error> => {
  const schema = freshSchema()
  return Effect.gen(function*() {
    const url = urlFor(schema.name)
    const applicationName = `outbox-crash-${crypto.randomBytes(4).toString("hex")}`
    const sql = yield* PgClient.PgClient
    yield* PgOutboxRepo.migrate
    const rng = Random.make(options.seed)
    const channel = yield* startChannel(Random.make(options.seed + 1), options.failureRate)
    const args = yield* bundledArgs(gatewaySource)
    const started = Date.now()
    const violations: Array<string> = []

    // the gateway slots, each a node whose boots follow one another
    const slots = Array.from({ length: options.gateways }, (_, i) => ({
      nodeId: `pg-gateway-${i}`,
      boots: [] as Array<Boot>,
      stored: [] as Array<number>
    }))
    const boot = (slot: (typeof slots)[number]) =>
      Effect.map(startBoot([...args, url, slot.nodeId, channel.url, applicationName]), (b) => void slot.boots.push(b))
    yield* Effect.forEach(slots, boot, { concurrency: "unbounded", discard: true })
    const live = (slot: (typeof slots)[number]) => {
      const b = slot.boots.at(-1)
      return b !== undefined && b.process.exitCode === null && b.process.signalCode === null ? b : undefined
    }

    // the conversations
    const specs: Array<MessageSpec> = []
    const callerErrors: Record<string, number> = {}
    const outcomes: Record<string, number> = {}
    let resentAfterKill = 0
    const [thinkMin, thinkMax] = options.thinkMs ?? [20, 100]
    const conversation = (c: number) =>
      Effect.gen(function*() {
        for (let k = 0; k < options.perConversation; k++) {
          const request: PgRequest = {
            op: (yield* rng.next) < 0.5 ? "deliver" : "enqueue",
            key: `c${c}:${k}`,
            to: `c${c}`,
            text: `c${c}:${k}`
          }
          specs.push({ key: request.key, conversation: request.to, seq: k, parts: 1, live: request.op === "deliver" })
          for (let attempt = 0;; attempt++) {
            if (attempt > 200) {
              violations.push(`${request.key}: not stored after 200 attempts`)
              break
            }
            const ready = slots.filter((s) => live(s) !== undefined)
            if (ready.length === 0) {
              yield* Effect.sleep(Duration.millis(20))
              continue
            }
            const slot = ready[yield* rng.nextIntBetween(0, ready.length)]!
            const answer = yield* ask(live(slot)!, request)
            if (Either.isLeft(answer)) {
              resentAfterKill++
              continue
            }
            const a = answer.right
            if (a.ok || a.entryId !== undefined) {
              // stored: delivered, deferred, a duplicate of an earlier attempt, or failed and left to the worker
              count(outcomes, a.tag)
              slot.stored.push(Date.now())
              break
            }
            count(callerErrors, a.tag)
            if (a.tag !== "StoreError") {
              violations.push(`${request.key}: the caller got ${a.tag}: ${a.message}`)
              break
            }
            yield* Effect.sleep(Duration.millis(20))
          }
          yield* Effect.sleep(Duration.millis(yield* rng.nextIntBetween(thinkMin, thinkMax + 1)))
        }
      })
    const producing = yield* Effect.fork(
      Effect.forEach(Array.from({ length: options.conversations }, (_, c) => c), conversation, {
        concurrency: "unbounded",
        discard: true
      })
    )

    // the faults: kills every few hundred ms; terminations spread over the expected production time
    const expectedMs = options.perConversation * (thinkMin + thinkMax) / 2
    const inFlightAtKills: Array<ReadonlySet<string>> = []
    const restarts: Array<Fiber.Fiber<void, Error>> = []
    const terminated: Array<number> = []
    const terminatedAt: Array<number> = []
    const [killMin, killMax] = options.killEveryMs ?? [300, 700]
    for (let i = 0; i < options.kills; i++) {
      yield* Effect.sleep(Duration.millis(yield* rng.nextIntBetween(killMin, killMax + 1)))
      const running = slots.filter((s) => live(s) !== undefined)
      if (running.length === 0) {
        i--
        continue
      }
      const victim = live(running[yield* rng.nextIntBetween(0, running.length)]!)!
      const slot = slots.find((s) => live(s) === victim)!
      const owner = yield* Deferred.await(victim.owner)
      victim.process.kill("SIGKILL")
      yield* Deferred.await(victim.exited)
      const rows = yield* sql<{ id: string }>`SELECT id FROM outbox_entries
        WHERE state = 'in_flight' AND lease_owner = ${owner}`
      inFlightAtKills.push(new Set(rows.map((r) => r.id)))
      // restarted in the background, as a supervisor would: the next kill may come while it starts
      restarts.push(yield* Effect.fork(boot(slot)))
    }
    yield* Fiber.joinAll(restarts)
    for (let i = 0; i < options.terminations; i++) {
      yield* Effect.sleep(Duration.millis(Math.floor(expectedMs / (options.terminations + 1))))
      const [ended] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM (
          SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ${applicationName}) t`
      terminated.push(ended?.n ?? 0)
      terminatedAt.push(Date.now())
    }
    yield* Fiber.join(producing)
    const producedMs = Date.now() - started

    // the drain, then a graceful stop
    const expected = options.conversations * options.perConversation
    const progress = sql<{ total: number; pending: number }>`SELECT count(*)::int AS total,
        count(*) FILTER (WHERE pending = 1)::int AS pending FROM outbox_entries`.pipe(Effect.map((rows) => rows[0]!))
    const drained = yield* progress.pipe(
      Effect.repeat(
        Schedule.spaced(Duration.millis(100)).pipe(
          Schedule.whileInput((p: { total: number; pending: number }) => p.total < expected || p.pending > 0)
        )
      ),
      Effect.timeout(options.drainTimeout ?? Duration.seconds(30)),
      Effect.option
    )
    if (drained._tag === "None") {
      const left = yield* progress
      violations.push(`the gateways did not drain the outbox in time (${left.total} rows, ${left.pending} pending)`)
    }
    yield* Effect.forEach(slots, (slot) => {
      const b = live(slot)
      if (b === undefined) return Effect.void
      b.process.kill("SIGTERM")
      return Deferred.await(b.exited).pipe(
        Effect.timeout(Duration.seconds(10)),
        Effect.catchAll(() => Effect.sync(() => violations.push(`${slot.nodeId} did not stop within 10 s of SIGTERM`)))
      )
    }, { concurrency: "unbounded", discard: true })
    const elapsedMs = Date.now() - started
    const drainedMs = elapsedMs - producedMs

    // the checks
    const rows = yield* sql<{ id: string; key: string | null; state: string }>`
      SELECT id, idempotency_key AS key, state FROM outbox_entries`
    const checked = verify({
      specs,
      rows,
      sends: channel.sends,
      inFlightAtKills,
      // a kill leaves in flight at most the worker's sends and one live send per conversation
      perKillBound: pgGatewayConfig.workerConcurrency + options.conversations
    })
    violations.push(...checked.violations, ...channel.overlaps)
    violations.push(...attemptsBeforePredecessor(specs, channel.arrivals))
    const lastTermination = terminatedAt.at(-1)
    if (process.env.PG_CRASH_DEBUG) {
      const lines: Record<string, number> = {}
      for (const slot of slots) {
        for (const b of slot.boots) {
          for (const l of b.stderr) {
            count(
              lines,
              l.replace(/timestamp=\S+ /, "").replace(/fiber=\S+ /, "").replace(/[0-9A-Z]{26}/g, "<id>").slice(0, 200)
            )
          }
        }
      }
      console.log(lines)
    }
    return {
      ...checked,
      kills: inFlightAtKills.length,
      terminated,
      resentAfterKill,
      callerErrors,
      outcomes,
      channelRequests: channel.arrivals.length,
      channelFailures: channel.arrivals.filter((a) => !a.accepted).length,
      bootsPerGateway: slots.map((s) => s.boots.length),
      storedAfterLastTermination: slots.map((s) =>
        lastTermination === undefined ? s.stored.length : s.stored.filter((t) => t > lastTermination).length
      ),
      relistened: slots.map((s) =>
        s.boots.some((b) => b.stderr.some((l) => l.includes("wake-up notifications dropped; listening again")))
      ),
      elapsedMs,
      producedMs,
      drainedMs,
      violations
    }
  }).pipe(
    Effect.scoped,
    Effect.provide(
      PgClient.layer({ url: Redacted.make(urlFor(schema.name)), maxConnections: 2, applicationName: "outbox-crash" })
    ),
    Effect.provide(schema.layer),
    Logger.withMinimumLogLevel(LogLevel.Error),
    Effect.mapError((e) => (e instanceof Error ? e : new Error(String(e))))
  )
}

/**
 * Per conversation, no request of a reply (accepted or not) reached the channel before the previous reply was
 * accepted: a conversation's next reply waits for the one before it, through failures and retries.
 */
const attemptsBeforePredecessor = (
  specs: ReadonlyArray<MessageSpec>,
  arrivals: ReadonlyArray<Arrival>
): Array<string> => {
  const firstAccepted = new Map<string, number>()
  const firstArrival = new Map<string, number>()
  arrivals.forEach((a, i) => {
    if (!firstArrival.has(a.key)) firstArrival.set(a.key, i)
    if (a.accepted && !firstAccepted.has(a.key)) firstAccepted.set(a.key, i)
  })
  const out: Array<string> = []
  for (const spec of specs) {
    if (spec.seq === 0) continue
    const previous = `${spec.conversation}:${spec.seq - 1}`
    const arrived = firstArrival.get(spec.key)
    const accepted = firstAccepted.get(previous)
    if (arrived !== undefined && (accepted === undefined || arrived < accepted)) {
      out.push(`${spec.key} reached the channel before ${previous} was accepted`)
    }
  }
  return out
}

/** A one-line summary for the test output. */
export const pgSummary = (r: PgCrashReport): string =>
  `pg crash run: ${r.messages} replies, ${r.kills} kills (${r.killsMidFlight} with rows in flight, ` +
  `${r.inFlightAtKills} rows), terminations ${JSON.stringify(r.terminated)}, lost ${r.lost}, duplicates ` +
  `${r.duplicates} (bound ${r.duplicateBound}), resent after a kill ${r.resentAfterKill}, caller errors ` +
  `${JSON.stringify(r.callerErrors)}, outcomes ${JSON.stringify(r.outcomes)}, channel ${r.channelRequests} requests ` +
  `(${r.channelFailures} failed), boots ${JSON.stringify(r.bootsPerGateway)}, relistened ` +
  `${JSON.stringify(r.relistened)}, ${(r.elapsedMs / 1000).toFixed(1)} s (${
    (r.producedMs / 1000).toFixed(1)
  } s producing)`
