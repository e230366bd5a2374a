/**
 * `effect-outbox demo`: a gateway simulation on an embedded SQLite file. Conversations on three fake channels
 * (healthy, flaky, rejecting) send replies through `Outbox.deliver`; half-way the gateway is dropped without draining
 * (its fibers interrupted, the worker given no grace), leaving rows in flight; a second boot with the same node id
 * reclaims them through its `RecoveryWorker` and finishes. A live progress line, then a summary; the database is
 * left for `stats`/`list` to inspect. The script, the simulated gateway, the output and the summary are in the
 * `Demo*` modules beside this one.
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
import * as Schedule from "effect/Schedule"
import * as ChannelRegistry from "../ChannelRegistry.js"
import * as GatewayLock from "../internal/gatewayLock.js"
import * as Metrics from "../Metrics.js"
import * as Outbox from "../Outbox.js"
import * as OutboxConfig from "../OutboxConfig.js"
import { OutboxRepo } from "../OutboxRepo.js"
import * as RecoveryWorker from "../RecoveryWorker.js"
import * as SqliteOutboxRepo from "../SqliteOutboxRepo.js"
import * as Database from "./Database.js"
import * as DemoChannels from "./DemoChannels.js"
import { converse, Gateway } from "./DemoGateway.js"
import type { Output } from "./DemoOutput.js"
import { makeClear, makeOutput, showProgress } from "./DemoOutput.js"
import type { Conversation } from "./DemoScript.js"
import { makeScript } from "./DemoScript.js"
import { humanSummary, summarize } from "./DemoSummary.js"
import * as Format from "./Format.js"
import * as Help from "./Help.js"
import * as Logging from "./Logging.js"
import { UsageError } from "./UsageError.js"

export type { Summary } from "./DemoSummary.js"

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
// the run

/** The `demo` command's options. */
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
        new DemoError({
          message: `${path} holds an outbox the demo did not create; run the demo with --db <another file>`
        })
      )
    }
    // a running demo's files: removing them would pull its database from under it before its lock refused this one
    if (yield* GatewayLock.isHeld(path)) {
      return yield* Effect.fail(
        new DemoError({ message: `${path} is in use by a running gateway; run the demo with --db <another file>` })
      )
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

/** What the steps of one run share. */
interface RunContext {
  readonly options: DemoOptions
  readonly output: Output
  /** when the run began (Clock millis) */
  readonly start: number
  readonly conversations: ReadonlyArray<Conversation>
  readonly channels: DemoChannels.DemoChannels
  readonly gateway: Gateway
}

/** One boot's gateway: the store on the demo file, the fake channels, the outbox and its recovery worker. */
const bootLayer = (ctx: RunContext, boot: 1 | 2) => {
  const deps = Layer.mergeAll(
    SqliteOutboxRepo.layerFile({ filename: ctx.options.db }),
    ChannelRegistry.layer(ctx.channels.adapters),
    OutboxConfig.layer(demoConfig(boot))
  )
  return RecoveryWorker.layer.pipe(Layer.provideMerge(Outbox.layer), Layer.provideMerge(deps))
}

const runConversations = (
  ctx: RunContext,
  outbox: Outbox.OutboxShape,
  onSubmitted: (count: number) => Effect.Effect<void>
) =>
  Effect.forEach(ctx.conversations, (c) => converse(ctx.gateway, outbox, c, onSubmitted), {
    concurrency: "unbounded",
    discard: true
  })

/** The opening lines: the traffic, the three channels and the outbox's settings. */
const introduce = ({ channels, conversations, options, output }: RunContext) =>
  Effect.gen(function*() {
    yield* output.say(
      `effect-outbox demo: a gateway answers ${options.messages} messages in ${conversations.length} conversations ` +
        `on 3 fake channels (seed ${options.seed})`
    )
    for (const log of channels.logs) yield* output.say(`  ${log.name.padEnd(10)} ${log.description}`)
    yield* output.say(
      `database ${options.db} (SQLite, WAL) · worker every ${ms(WORKER_INTERVAL)} · ` +
        `retries after ${RETRY_DELAYS.map(ms).join(", ")} · TTL ${ms(MAX_AGE)}\n`
    )
  })

/** Boot 1: runs until half the turns are submitted, then is dropped with whatever is in flight. */
const firstBoot = (ctx: RunContext) => {
  const { conversations, gateway, options, output, start } = ctx
  const crashAt = Math.max(1, Math.floor(options.messages / 2))
  return Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const repo = yield* OutboxRepo
    yield* repo.setMeta(MARKER, JSON.stringify({ seed: options.seed, messages: options.messages }))
    const halfway = yield* Deferred.make<void>()
    const progress = yield* showProgress(output, 1, gateway, options.messages, start)
    const progressFiber = yield* Effect.fork(progress.loop)
    const traffic = yield* Effect.fork(
      runConversations(ctx, outbox, (count) => (count >= crashAt ? Deferred.succeed(halfway, undefined) : Effect.void))
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
  }).pipe(Effect.provide(bootLayer(ctx, 1)))
}

/** Between the boots: what the crash left behind, read from the file and told. */
const inspectCrash = ({ channels, gateway, options, output, start }: RunContext) =>
  Effect.gen(function*() {
    const crashedAt = yield* Clock.currentTimeMillis
    const inFlight = yield* Effect.flatMap(OutboxRepo, (repo) =>
      repo.list({ state: "in_flight", limit: options.messages + 1 })).pipe(
        Effect.provide(SqliteOutboxRepo.layerFile({ filename: options.db }))
      )
    const alreadySent = inFlight.filter((e) =>
      channels.logs.some((log) => log.entries.has(e.id))
    ).length
    yield* output.say(
      `crash at ${Format.duration(crashedAt - start)}: the gateway was dropped without draining; ` +
        `${
          Format.count(inFlight.length, "row")
        } left in_flight (${alreadySent} of them had already reached their channel), ` +
        `${Format.count(gateway.inProgress.size, "request")} unanswered`
    )
    yield* output.say(`restart: same node id "${NODE_ID}", so the recovery worker reclaims boot 1's leases at once\n`)
    return { atMs: crashedAt - start, inFlight: inFlight.length, alreadySent }
  })

/** Boot 2: the gateway resubmits what it never heard back about, then carries on; the worker replays the rest. */
const secondBoot = (ctx: RunContext) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const progress = yield* showProgress(ctx.output, 2, ctx.gateway, ctx.options.messages, ctx.start)
    const progressFiber = yield* Effect.fork(progress.loop)
    yield* runConversations(ctx, outbox, () => Effect.void)
    yield* awaitSettled
    yield* Fiber.interrupt(progressFiber)
    yield* progress.last
    yield* ctx.output.endProgress
    const stats = yield* outbox.stats
    const rows = yield* outbox.list({ limit: stats.total + 1 })
    return { stats, rows }
  }).pipe(Effect.provide(bootLayer(ctx, 2)))

/** Runs the demo and prints its progress and summary; fails only if something other than the simulation went wrong. */
export const run = (options: DemoOptions) =>
  Effect.gen(function*() {
    const output = makeOutput(options.json)
    const start = yield* Clock.currentTimeMillis
    yield* resetDatabase(options.db)
    const { blocked, conversations } = yield* makeScript(options.messages, options.seed)
    const channels = DemoChannels.make(options.seed, blocked)
    const gateway = new Gateway(conversations)
    const ctx: RunContext = { options, output, start, conversations, channels, gateway }
    const before = yield* metricSnapshot

    yield* introduce(ctx)
    yield* firstBoot(ctx)
    const crash = yield* inspectCrash(ctx)
    const final = yield* secondBoot(ctx)

    const after = yield* metricSnapshot
    const elapsedMs = (yield* Clock.currentTimeMillis) - start
    const summary = summarize({
      options,
      conversations: conversations.length,
      gateway,
      channels,
      crash,
      metrics: {
        retriesScheduled: after.retriesScheduled - before.retriesScheduled,
        possibleDuplicates: after.possibleDuplicates - before.possibleDuplicates,
        ackFailures: after.ackFailures - before.ackFailures
      },
      stats: final.stats,
      rows: final.rows,
      elapsedMs
    })
    yield* Console.log(options.json ? Format.json(summary) : humanSummary(summary, MAX_AGE))
    if (summary.unexpectedErrors > 0) {
      return yield* Effect.fail(
        new DemoError({ message: `${summary.unexpectedErrors} deliveries failed unexpectedly (see above)` })
      )
    }
  }).pipe(
    Effect.provide(Logger.replace(Logging.cliLogger, Logging.stderrLogger(makeClear(options.json)))),
    Logger.withMinimumLogLevel(options.verbose ? LogLevel.Info : LogLevel.Error)
  )

// ---------------------------------------------------------------------------------------------------------------
// the command

const MAX_MESSAGES = Help.MAX_MESSAGES

/** `effect-outbox demo`. */
export const command = Command.make("demo", {
  db: Options.text("db").pipe(
    Options.withPseudoName("file"),
    Options.withDefault(Help.DEFAULT_DB),
    Options.withDescription(
      "the SQLite file to run on (an earlier demo database there is replaced; any other outbox is refused)"
    )
  ),
  messages: Options.integer("messages").pipe(
    Options.withPseudoName("n"),
    Options.withDefault(300),
    Options.withDescription("how many replies the simulated gateway sends")
  ),
  seed: Options.integer("seed").pipe(
    Options.withDefault(1),
    Options.withDescription("seed of the simulated traffic and failures")
  ),
  json: Options.boolean("json").pipe(Options.withDescription("no progress; print the summary as JSON")),
  verbose: Options.boolean("verbose").pipe(
    Options.withDescription("show the outbox's own logs (info and up) on stderr")
  )
}, (options) =>
  Effect.gen(function*() {
    if (options.messages < 1 || options.messages > MAX_MESSAGES) {
      return yield* Effect.fail(
        new UsageError({
          message: `--messages: expected a whole number from 1 to ${MAX_MESSAGES}, got "${options.messages}"`
        })
      )
    }
    yield* run(options)
  })).pipe(
    Command.withDescription(Help.spec("demo").summary)
  )
