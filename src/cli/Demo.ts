/**
 * `effect-outbox demo`: a gateway simulation on an embedded SQLite file. Conversations on three fake channels
 * (healthy, flaky, rejecting) send replies through `Outbox.deliver`; half-way the gateway is dropped without draining
 * (its fibers interrupted, the worker given no grace), leaving rows in flight; a second boot with the same node id
 * reclaims them through its `RecoveryWorker` and finishes. A live progress line, then a summary; the database is
 * left for `stats`/`list` to inspect.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as ChannelRegistry from "../ChannelRegistry.js"
import type { DeliveryRequestInput, OutboxEntry, OutboxStats, TerminalReason } from "../Delivery.js"
import * as GatewayLock from "../internal/gatewayLock.js"
import * as Metrics from "../Metrics.js"
import * as Outbox from "../Outbox.js"
import * as OutboxConfig from "../OutboxConfig.js"
import { OutboxRepo } from "../OutboxRepo.js"
import * as RecoveryWorker from "../RecoveryWorker.js"
import * as SqliteOutboxRepo from "../SqliteOutboxRepo.js"
import * as Database from "./Database.js"
import * as DemoChannels from "./DemoChannels.js"
import * as Format from "./Format.js"
import * as Logging from "./Logging.js"
import { UsageError } from "./UsageError.js"

/** The `outbox_meta` key that marks a database as the demo's own (so a later run may replace it). */
export const MARKER = "demo"

/** The node id of both boots: the same id is what lets boot 2 reclaim boot 1's leases at once. */
export const NODE_ID = "demo-gateway"

const WORKER_INTERVAL = Duration.millis(100)
const RETRY_DELAYS = [Duration.millis(300), Duration.millis(600), Duration.millis(1_200), Duration.millis(2_000)]
const MAX_AGE = Duration.seconds(6)
const SETTLE_TIMEOUT = Duration.seconds(60)

const ms = (d: Duration.Duration) => Format.duration(Duration.toMillis(d))

/** The demo's outbox configuration: a fast worker and short retries and TTL, so it runs in seconds. */
const demoConfig = (boot: 1 | 2): Partial<OutboxConfig.OutboxConfigShape> => ({
  nodeId: NODE_ID,
  workerInterval: WORKER_INTERVAL,
  retryDelays: RETRY_DELAYS,
  maxAttempts: 5,
  maxAge: MAX_AGE,
  leaseDuration: Duration.seconds(30),
  sendTimeout: Duration.seconds(5),
  // boot 1 is dropped, not shut down: no grace for in-flight sends, whose leases stay behind as after a crash
  shutdownGrace: boot === 1 ? Duration.zero : Duration.seconds(5)
})

/** The demo could not finish (the outbox did not settle, or the file is someone else's). */
export class DemoError extends Data.TaggedError("DemoError")<{ readonly message: string }> {}

// ---------------------------------------------------------------------------------------------------------------
// the script: conversations and their turns, drawn from the seed

interface Turn {
  readonly n: number
  readonly request: DeliveryRequestInput
  readonly thinkMs: number
}

interface Conversation {
  readonly index: number
  readonly channel: "healthy" | "flaky" | "rejecting"
  readonly to: string
  readonly turns: ReadonlyArray<Turn>
}

const CHANNELS = ["healthy", "flaky", "rejecting"] as const

const FILLER = "The outbox stores every reply before the channel is called, so a crash, an outage or a busy database " +
  "never loses it; it retries on one schedule, expires what is too old to be useful, and keeps each conversation in order."

const makeScript = (messages: number, seed: number) =>
  Effect.gen(function*() {
    const count = Math.min(60, Math.max(3, Math.ceil(messages / 10)))
    const turns: Array<Array<Turn>> = Array.from({ length: count }, () => [])
    const rng = Random.make(`${seed}/gateway`)
    for (let n = 0; n < messages; n++) {
      const c = n % count
      const channel = CHANNELS[c % CHANNELS.length]!
      const k = turns[c]!.length + 1
      const tool = (yield* rng.next) < 0.08
      const long = channel === "flaky" && (yield* rng.next) < 0.2
      const media = channel !== "rejecting" && (yield* rng.next) < 0.15
      const text = tool
        ? `(tool) looking up reply ${k}…`
        : `Reply ${k} to user-${c}.${long ? ` ${FILLER} ${FILLER}` : ""}`
      turns[c]!.push({
        n,
        thinkMs: yield* rng.nextIntBetween(100, 400),
        request: {
          channel,
          to: `user-${c}`,
          ...(c % 4 === 0 ? { threadId: `thread-${c}` } : {}),
          payloads: [{ text, ...(media && !tool ? { mediaUrls: [`https://example.com/demo/chart-${n}.png`] } : {}) }],
          kind: tool ? "tool" : "final",
          bestEffort: long,
          idempotencyKey: `turn-${n}`
        }
      })
    }
    const conversations: ReadonlyArray<Conversation> = turns.map((t, index) => ({
      index,
      channel: CHANNELS[index % CHANNELS.length]!,
      to: `user-${index}`,
      turns: t
    }))
    // every fourth recipient of the rejecting channel (the first one included) has blocked the bot
    const blocked = new Set(conversations.filter((c) => c.channel === "rejecting").filter((_, i) => i % 4 === 0).map((c) => c.to))
    return { conversations, blocked }
  })

// ---------------------------------------------------------------------------------------------------------------
// the simulated gateway: state that outlives a boot (as a chat platform's webhook retries would)

type LiveOutcome = "Delivered" | "Deferred" | "Duplicate" | "SendFailed" | "PartialDeliveryFailure" | "AckFailed" | "unexpected"

class Gateway {
  /** per conversation, the next turn to submit */
  readonly cursor: Array<number>
  /** turns whose `deliver` has not returned: after a crash the gateway submits them again, same idempotency key */
  readonly inProgress = new Set<number>()
  readonly everSubmitted = new Set<number>()
  resubmitted = 0
  readonly outcomes: Record<LiveOutcome, number> = {
    Delivered: 0,
    Deferred: 0,
    Duplicate: 0,
    SendFailed: 0,
    PartialDeliveryFailure: 0,
    AckFailed: 0,
    unexpected: 0
  }
  constructor(readonly conversations: ReadonlyArray<Conversation>) {
    this.cursor = conversations.map(() => 0)
  }
}

const submit = (
  gateway: Gateway,
  outbox: Outbox.OutboxShape,
  conversation: Conversation,
  turn: Turn,
  onSubmitted: (count: number) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const again = yield* Effect.sync(() => {
      const again = gateway.inProgress.has(turn.n)
      if (again) gateway.resubmitted++
      gateway.inProgress.add(turn.n)
      gateway.everSubmitted.add(turn.n)
      return again
    })
    if (!again) yield* onSubmitted(gateway.everSubmitted.size)
    const outcome: LiveOutcome = yield* outbox.deliver(turn.request).pipe(
      Effect.map((o): LiveOutcome => o._tag),
      // the outbox recorded these already (retry scheduled or terminal); the gateway just moves on
      Effect.catchTags({
        SendFailed: () => Effect.succeed<LiveOutcome>("SendFailed"),
        PartialDeliveryFailure: () => Effect.succeed<LiveOutcome>("PartialDeliveryFailure"),
        AckFailed: () => Effect.succeed<LiveOutcome>("AckFailed")
      }),
      Effect.catchAll((error) =>
        Effect.as(Effect.logError(`deliver of turn ${turn.n} failed: ${error._tag}: ${error.message}`), "unexpected" as const)
      )
    )
    // one step: answered and moved past, so an interruption leaves the turn either unanswered or done
    yield* Effect.sync(() => {
      gateway.inProgress.delete(turn.n)
      gateway.outcomes[outcome]++
      gateway.cursor[conversation.index]!++
    })
  })

/** One conversation: turns in order, each after the user's "think time"; unanswered turns first after a restart. */
const converse = (
  gateway: Gateway,
  outbox: Outbox.OutboxShape,
  conversation: Conversation,
  onSubmitted: (count: number) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    for (;;) {
      const turn = conversation.turns[gateway.cursor[conversation.index]!]
      if (turn === undefined) return
      if (!gateway.inProgress.has(turn.n)) yield* Effect.sleep(Duration.millis(turn.thinkMs))
      yield* submit(gateway, outbox, conversation, turn, onSubmitted)
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// output

interface Output {
  readonly json: boolean
  readonly tty: boolean
  /** the progress line: redrawn in place on a terminal, else printed every 10th tick and when `last` */
  readonly progress: (line: string, tick: number, last: boolean) => Effect.Effect<void>
  /** ends a progress line drawn in place */
  readonly endProgress: Effect.Effect<void>
  /** a line of narrative (nothing in --json mode) */
  readonly say: (line: string) => Effect.Effect<void>
  readonly clearLine: () => void
}

const makeOutput = (json: boolean): Output => {
  const tty = !json && process.stdout.isTTY === true
  let drawn = false
  let printed = ""
  const clearLine = () => {
    if (drawn) {
      process.stdout.write("\r\x1b[K")
      drawn = false
    }
  }
  return {
    json,
    tty,
    progress: (line, tick, last) =>
      json
        ? Effect.void
        : tty
        ? Effect.sync(() => {
          // clipped to the terminal: a wrapped line could not be redrawn in place
          process.stdout.write(`\r${Format.clip(line, Math.max(20, (process.stdout.columns ?? 120) - 1))}\x1b[K`)
          drawn = true
        })
        // the last line may repeat the periodic one just printed (the loop and the final draw can meet)
        : (tick % 10 === 0 || last) && line !== printed
        ? Effect.zipRight(Effect.sync(() => (printed = line)), Console.log(line))
        : Effect.void,
    endProgress: Effect.sync(() => {
      if (drawn) process.stdout.write("\n")
      drawn = false
    }),
    say: (line) => (json ? Effect.void : Effect.zipRight(Effect.sync(clearLine), Console.log(line))),
    clearLine
  }
}

const progressLine = (boot: number, gateway: Gateway, total: number, stats: OutboxStats, elapsedMs: number) => {
  const s = stats.byState
  return `[boot ${boot}] ${gateway.everSubmitted.size}/${total} submitted · ${s.delivered} delivered · ` +
    `${s.in_flight} in flight · ${s.queued} queued · ${s.failed_retryable} retrying · ${s.failed_terminal} failed · ` +
    `${s.expired} expired · ${Format.duration(elapsedMs)}`
}

/** Redraws the progress line every 100 ms until interrupted; a failed read is logged and the next tick tries again. */
const showProgress = (output: Output, boot: number, gateway: Gateway, total: number, start: number) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    let tick = 0
    const draw = (last: boolean) =>
      Effect.gen(function*() {
        const stats = yield* outbox.stats
        const now = yield* Clock.currentTimeMillis
        yield* output.progress(progressLine(boot, gateway, total, stats, now - start), tick++, last)
      }).pipe(Effect.catchAll((e) => Effect.logWarning(`progress: cannot read stats: ${e.message}`)))
    return { last: draw(true), loop: draw(false).pipe(Effect.repeat(Schedule.spaced(Duration.millis(100))), Effect.asVoid) }
  })

// ---------------------------------------------------------------------------------------------------------------
// the run

interface DemoOptions {
  readonly db: string
  readonly messages: number
  readonly seed: number
  readonly json: boolean
  readonly verbose: boolean
}

/** Removes an earlier demo database at `path`; refuses a file the demo did not create. */
const resetDatabase = (path: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const marker = yield* Effect.flatMap(OutboxRepo, (repo) => repo.getMeta(MARKER)).pipe(
      Effect.provide(Database.readOnly(path)),
      Effect.map(Option.isSome),
      Effect.catchTags({
        DatabaseMissing: () => Effect.succeed(true),
        NotAnOutbox: (e) => (e.reason === "the file is empty" ? Effect.succeed(true) : Effect.fail(e))
      })
    )
    if (!marker) {
      return yield* Effect.fail(
        new DemoError({ message: `${path} holds an outbox the demo did not create; run the demo with --db <another file>` })
      )
    }
    // a running demo's files: removing them would pull its database from under it before its lock refused this one
    if (yield* GatewayLock.isHeld(path)) {
      return yield* Effect.fail(new DemoError({ message: `${path} is in use by a running gateway; run the demo with --db <another file>` }))
    }
    for (const file of [path, `${path}-wal`, `${path}-shm`]) yield* fs.remove(file, { force: true })
  })

const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (state) => state.count)

const metricSnapshot = Effect.all({
  retriesScheduled: counter(Metrics.retryScheduled),
  possibleDuplicates: counter(Metrics.possibleDuplicates),
  ackFailures: counter(Metrics.ackFailures)
})

const awaitSettled = Effect.gen(function*() {
  const outbox = yield* Outbox.Outbox
  const pending = Effect.map(outbox.stats, (s) => s.byState.queued + s.byState.in_flight + s.byState.failed_retryable)
  yield* pending.pipe(
    Effect.repeat({ schedule: Schedule.spaced(Duration.millis(100)), until: (n) => n === 0 }),
    Effect.timeoutFail({
      duration: SETTLE_TIMEOUT,
      onTimeout: () => new DemoError({ message: `the outbox did not settle within ${Duration.format(SETTLE_TIMEOUT)}` })
    })
  )
})

/** Runs the demo and prints its progress and summary; fails only if something other than the simulation went wrong. */
export const run = (options: DemoOptions) =>
  Effect.gen(function*() {
    const output = makeOutput(options.json)
    const start = yield* Clock.currentTimeMillis
    yield* resetDatabase(options.db)
    const { blocked, conversations } = yield* makeScript(options.messages, options.seed)
    const channels = DemoChannels.make(options.seed, blocked)
    const gateway = new Gateway(conversations)
    const before = yield* metricSnapshot

    yield* output.say(
      `effect-outbox demo: a gateway answers ${options.messages} messages in ${conversations.length} conversations ` +
        `on 3 fake channels (seed ${options.seed})`
    )
    for (const log of channels.logs) yield* output.say(`  ${log.name.padEnd(10)} ${log.description}`)
    yield* output.say(
      `database ${options.db} (SQLite, WAL) · worker every ${ms(WORKER_INTERVAL)} · ` +
        `retries after ${RETRY_DELAYS.map(ms).join(", ")} · TTL ${ms(MAX_AGE)}\n`
    )

    const bootLayer = (boot: 1 | 2) => {
      const deps = Layer.mergeAll(
        SqliteOutboxRepo.layerFile({ filename: options.db }),
        ChannelRegistry.layer(channels.adapters),
        OutboxConfig.layer(demoConfig(boot))
      )
      return RecoveryWorker.layer.pipe(Layer.provideMerge(Outbox.layer), Layer.provideMerge(deps))
    }

    const runConversations = (outbox: Outbox.OutboxShape, onSubmitted: (count: number) => Effect.Effect<void>) =>
      Effect.forEach(conversations, (c) => converse(gateway, outbox, c, onSubmitted), { concurrency: "unbounded", discard: true })

    // boot 1: runs until half the turns are submitted, then is dropped with whatever is in flight
    const crashAt = Math.max(1, Math.floor(options.messages / 2))
    yield* Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const repo = yield* OutboxRepo
      yield* repo.setMeta(MARKER, JSON.stringify({ seed: options.seed, messages: options.messages }))
      const halfway = yield* Deferred.make<void>()
      const progress = yield* showProgress(output, 1, gateway, options.messages, start)
      const progressFiber = yield* Effect.fork(progress.loop)
      const traffic = yield* Effect.fork(
        runConversations(outbox, (count) => (count >= crashAt ? Deferred.succeed(halfway, undefined) : Effect.void))
      )
      // a crash tells most with requests in the middle of their send: past half-way, wait (up to 1 s) for a busy moment
      const busy = Math.min(8, Math.max(1, Math.floor(conversations.length / 4)))
      const crash = Effect.zipRight(
        Deferred.await(halfway),
        Effect.sync(() => gateway.inProgress.size).pipe(
          Effect.repeat({ schedule: Schedule.spaced(Duration.millis(5)), until: (n) => n >= busy }),
          Effect.timeoutOption(Duration.seconds(1))
        )
      )
      yield* Effect.raceFirst(crash, Fiber.join(traffic))
      yield* Fiber.interrupt(traffic)
      yield* Fiber.interrupt(progressFiber)
      yield* progress.last
      yield* output.endProgress
    }).pipe(Effect.provide(bootLayer(1)))

    // between the boots: what the crash left behind
    const crashedAt = yield* Clock.currentTimeMillis
    const inFlight = yield* Effect.flatMap(OutboxRepo, (repo) => repo.list({ state: "in_flight", limit: options.messages + 1 })).pipe(
      Effect.provide(SqliteOutboxRepo.layerFile({ filename: options.db }))
    )
    const alreadySent = inFlight.filter((e) => channels.logs.some((log) => log.entries.has(e.id))).length
    yield* output.say(
      `crash at ${Format.duration(crashedAt - start)}: the gateway was dropped without draining; ` +
        `${Format.count(inFlight.length, "row")} left in_flight (${alreadySent} of them had already reached their channel), ` +
        `${Format.count(gateway.inProgress.size, "request")} unanswered`
    )
    yield* output.say(`restart: same node id "${NODE_ID}", so the recovery worker reclaims boot 1's leases at once\n`)

    // boot 2: the gateway resubmits what it never heard back about, then carries on; the worker replays the rest
    const final = yield* Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const progress = yield* showProgress(output, 2, gateway, options.messages, start)
      const progressFiber = yield* Effect.fork(progress.loop)
      yield* runConversations(outbox, () => Effect.void)
      yield* awaitSettled
      yield* Fiber.interrupt(progressFiber)
      yield* progress.last
      yield* output.endProgress
      const stats = yield* outbox.stats
      const rows = yield* outbox.list({ limit: stats.total + 1 })
      return { stats, rows }
    }).pipe(Effect.provide(bootLayer(2)))

    const after = yield* metricSnapshot
    const elapsedMs = (yield* Clock.currentTimeMillis) - start
    const summary = summarize({
      options,
      conversations: conversations.length,
      gateway,
      channels,
      crash: { atMs: crashedAt - start, inFlight: inFlight.length, alreadySent },
      metrics: {
        retriesScheduled: after.retriesScheduled - before.retriesScheduled,
        possibleDuplicates: after.possibleDuplicates - before.possibleDuplicates,
        ackFailures: after.ackFailures - before.ackFailures
      },
      stats: final.stats,
      rows: final.rows,
      elapsedMs
    })
    yield* Console.log(options.json ? Format.json(summary) : humanSummary(summary))
    if (summary.unexpectedErrors > 0) {
      return yield* Effect.fail(new DemoError({ message: `${summary.unexpectedErrors} deliveries failed unexpectedly (see above)` }))
    }
  }).pipe(
    Effect.provide(Logger.replace(Logging.cliLogger, Logging.stderrLogger(makeClear(options.json)))),
    Logger.withMinimumLogLevel(options.verbose ? LogLevel.Info : LogLevel.Error)
  )

// the logger clears the progress line of the same run: both write to the same terminal
const makeClear = (json: boolean) => (json || process.stdout.isTTY !== true ? () => {} : () => process.stdout.write("\r\x1b[K"))

// ---------------------------------------------------------------------------------------------------------------
// summary

/** What the demo reports (also its `--json` output). */
export interface Summary {
  readonly database: string
  readonly seed: number
  readonly messages: number
  readonly conversations: number
  readonly elapsedMs: number
  readonly submitted: number
  readonly resubmittedAfterCrash: number
  readonly liveOutcomes: Readonly<Record<LiveOutcome, number>>
  readonly delivered: number
  readonly deliveredFirstTry: number
  readonly deliveredAfterFailure: number
  readonly retriesScheduled: number
  readonly terminal: Readonly<Partial<Record<TerminalReason, number>>>
  readonly expired: number
  readonly pending: number
  readonly crash: { readonly atMs: number; readonly inFlight: number; readonly alreadySent: number }
  readonly reconciledSent: number
  readonly possibleDuplicates: number
  readonly duplicatePartsSeen: number
  readonly ackFailures: number
  readonly unexpectedErrors: number
  readonly channels: ReadonlyArray<{
    readonly channel: string
    readonly contract: string
    readonly delivered: number
    readonly failedTerminal: number
    readonly expired: number
    readonly total: number
    readonly partsReceived: number
    readonly partsReceivedTwice: number
  }>
}

const summarize = (input: {
  readonly options: DemoOptions
  readonly conversations: number
  readonly gateway: Gateway
  readonly channels: DemoChannels.DemoChannels
  readonly crash: Summary["crash"]
  readonly metrics: { readonly retriesScheduled: number; readonly possibleDuplicates: number; readonly ackFailures: number }
  readonly stats: OutboxStats
  readonly rows: ReadonlyArray<OutboxEntry>
  readonly elapsedMs: number
}): Summary => {
  const { rows, stats } = input
  const terminal: Partial<Record<TerminalReason, number>> = {}
  for (const r of rows) if (r.state === "failed_terminal" && r.terminalReason !== null) terminal[r.terminalReason] = (terminal[r.terminalReason] ?? 0) + 1
  const delivered = rows.filter((r) => r.state === "delivered")
  return {
    database: input.options.db,
    seed: input.options.seed,
    messages: input.options.messages,
    conversations: input.conversations,
    elapsedMs: input.elapsedMs,
    submitted: input.gateway.everSubmitted.size,
    resubmittedAfterCrash: input.gateway.resubmitted,
    liveOutcomes: { ...input.gateway.outcomes },
    delivered: stats.byState.delivered,
    // a delivered row keeps its last error: one without had no failed attempt
    deliveredFirstTry: delivered.filter((r) => r.lastError === null).length,
    deliveredAfterFailure: delivered.filter((r) => r.lastError !== null).length,
    retriesScheduled: input.metrics.retriesScheduled,
    terminal,
    expired: stats.byState.expired,
    pending: stats.byState.queued + stats.byState.in_flight + stats.byState.failed_retryable,
    crash: input.crash,
    reconciledSent: input.channels.logs.reduce((n, log) => n + log.counts.reconcileSent, 0),
    possibleDuplicates: input.metrics.possibleDuplicates,
    duplicatePartsSeen: input.channels.logs.reduce((n, log) => n + DemoChannels.duplicateParts(log), 0),
    ackFailures: input.metrics.ackFailures,
    unexpectedErrors: input.gateway.outcomes.unexpected,
    channels: input.channels.logs.map((log) => {
      const counts = stats.byChannel[log.name]
      return {
        channel: log.name,
        contract: log.contract,
        delivered: counts?.delivered ?? 0,
        failedTerminal: counts?.failed_terminal ?? 0,
        expired: counts?.expired ?? 0,
        total: counts === undefined ? 0 : Object.values(counts).reduce((a, b) => a + b, 0),
        partsReceived: [...log.received.values()].reduce((a, b) => a + b, 0),
        partsReceivedTwice: DemoChannels.duplicateParts(log)
      }
    })
  }
}

const humanSummary = (s: Summary): string => {
  const terminalTotal = Object.values(s.terminal).reduce((a, b) => a + (b ?? 0), 0)
  const reasons = Object.entries(s.terminal).sort(([, a], [, b]) => (b ?? 0) - (a ?? 0)).map(([r, n]) => `${r} ${n}`).join(" · ")
  const live = s.liveOutcomes
  const lines: Array<[string, number, string]> = [
    ["replies submitted", s.submitted, `${s.resubmittedAfterCrash} resubmitted after the crash with the same idempotency key (${live.Duplicate} found stored: nothing sent again)`],
    ["delivered live", live.Delivered, `by deliver itself; ${live.Deferred} deferred behind an older reply of the conversation, ${live.SendFailed + live.PartialDeliveryFailure} failed (recorded for retry or for good)`],
    ["delivered", s.delivered, `${s.deliveredFirstTry} on the first try, ${s.deliveredAfterFailure} after a failed attempt`],
    ["retries scheduled", s.retriesScheduled, "HTTP 500s and 429s (a 429's retry-after does not use up an attempt)"],
    ["failed for good", terminalTotal, reasons === "" ? "none" : reasons],
    ["expired", s.expired, `older than the ${Format.duration(Duration.toMillis(MAX_AGE))} TTL before they could be sent: dropped, not posted late`],
    ["in flight at crash", s.crash.inFlight, `${s.crash.alreadySent} had reached their channel; ${s.reconciledSent} confirmed by reconcile and acked without a resend`],
    ["possible duplicates", s.possibleDuplicates, "replayed after the crash without proof they had not been sent (outbox_possible_duplicates_total)"],
    ["duplicates seen", s.duplicatePartsSeen, "parts a channel actually received twice (at-least-once)"]
  ]
  if (s.ackFailures > 0) lines.push(["ack failures", s.ackFailures, "sent, ack write failed, flushed by the worker"])
  if (s.unexpectedErrors > 0) lines.push(["unexpected errors", s.unexpectedErrors, "see the errors above"])
  if (s.pending > 0) lines.push(["still pending", s.pending, "not settled"])
  return [
    "",
    `summary: ${s.messages} replies in ${Format.duration(s.elapsedMs)}`,
    Format.table(["", "", ""], lines).split("\n").slice(1).map((l) => `  ${l}`).join("\n"),
    "",
    Format.table(
      ["channel", "contract", "delivered", "failed", "expired", "total", "parts received", "received twice"],
      s.channels.map((c) => [c.channel, c.contract, c.delivered, c.failedTerminal, c.expired, c.total, c.partsReceived, c.partsReceivedTwice])
    ),
    "",
    `The database is left at ${s.database}. Look inside:`,
    `  npx effect-outbox stats --db ${s.database}`,
    `  npx effect-outbox list --state failed_terminal --db ${s.database}`
  ].join("\n")
}

// ---------------------------------------------------------------------------------------------------------------
// the command

const MAX_MESSAGES = 5_000

/** `effect-outbox demo`. */
export const command = Command.make("demo", {
  db: Options.text("db").pipe(
    Options.withPseudoName("file"),
    Options.withDefault("./outbox.db"),
    Options.withDescription("the SQLite file to run on (an earlier demo database there is replaced; any other outbox is refused)")
  ),
  messages: Options.integer("messages").pipe(
    Options.withPseudoName("n"),
    Options.withDefault(300),
    Options.withDescription("how many replies the simulated gateway sends")
  ),
  seed: Options.integer("seed").pipe(Options.withDefault(1), Options.withDescription("seed of the simulated traffic and failures")),
  json: Options.boolean("json").pipe(Options.withDescription("no progress; print the summary as JSON")),
  verbose: Options.boolean("verbose").pipe(Options.withDescription("show the outbox's own logs (info and up) on stderr"))
}, (options) =>
  Effect.gen(function*() {
    if (options.messages < 1 || options.messages > MAX_MESSAGES) {
      return yield* Effect.fail(new UsageError({ message: `--messages must be between 1 and ${MAX_MESSAGES}, got ${options.messages}` }))
    }
    yield* run(options)
  })).pipe(
    Command.withDescription("a gateway simulation with failing channels and a crash, on an embedded SQLite file")
  )
