/**
 * Every number the outbox uses, with the defaults of DESIGN.md. `layer(partial)` for code,
 * `layerFromEnv` for `OUTBOX_*` environment variables (or any ConfigProvider).
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as os from "node:os"
import type { ChunkConfig } from "./Chunking.js"
import * as RateLimits from "./RateLimits.js"

/** The resolved configuration. */
export interface OutboxConfigShape {
  /** attempts before a retryable failure goes terminal (`max_attempts`) */
  readonly maxAttempts: number
  /** the retry delays in order; the last one repeats */
  readonly retryDelays: ReadonlyArray<Duration.Duration>
  /** ±20 % jitter on retry delays; tests switch it off */
  readonly retryJitter: boolean
  /** a row older than this is not sent */
  readonly maxAge: Duration.Duration
  /** what happens to a row past maxAge: "fail" expires it, "deliver" sends it anyway */
  readonly expireAction: "fail" | "deliver"
  readonly workerInterval: Duration.Duration
  /** share of the interval a worker pass may use before it stops claiming */
  readonly workerBudget: number
  /** rows claimed per query; a claim takes at most as many rows as there are free send slots */
  readonly claimBatch: number
  /** worker sends at once (send slots); each to its own conversation */
  readonly workerConcurrency: number
  readonly leaseDuration: Duration.Duration
  readonly sendTimeout: Duration.Duration
  /** retries of a failed live ack write, exponential from `ackRetryBase` (a worker's failed ack waits for its next pass) */
  readonly ackRetries: number
  readonly ackRetryBase: Duration.Duration
  readonly deliveredRetention: Duration.Duration
  readonly terminalRetention: Duration.Duration
  readonly pruneInterval: Duration.Duration
  /** how long closing the worker waits for in-flight sends */
  readonly shutdownGrace: Duration.Duration
  /** stable across restarts: leases of this node's previous boots are reclaimed at start */
  readonly nodeId: string
  /** the most writes the group-commit writer puts in one transaction */
  readonly writeBatch: number
  readonly chunking: ChunkConfig
  /** channel id → its rate limits (see `RateLimits`); a channel without an entry uses its adapter's suggestion */
  readonly rateLimits: RateLimits.RateLimitsInput
  /**
   * the longest a live `deliver` waits for a rate-limit token; a reply whose token is further away is stored and
   * `Deferred` (the worker sends it when its token comes). A worker row waits at most a worker interval.
   */
  readonly maxRateWait: Duration.Duration
}

/** The defaults (DESIGN.md "Defaults"). */
export const defaults: OutboxConfigShape = {
  maxAttempts: 5,
  retryDelays: [Duration.seconds(5), Duration.seconds(25), Duration.minutes(2), Duration.minutes(10)],
  retryJitter: true,
  maxAge: Duration.minutes(30),
  expireAction: "fail",
  workerInterval: Duration.seconds(1),
  workerBudget: 0.75,
  claimBatch: 100,
  workerConcurrency: 32,
  leaseDuration: Duration.minutes(5),
  sendTimeout: Duration.seconds(30),
  ackRetries: 3,
  ackRetryBase: Duration.millis(50),
  deliveredRetention: Duration.hours(24),
  terminalRetention: Duration.days(7),
  pruneInterval: Duration.hours(1),
  shutdownGrace: Duration.seconds(10),
  nodeId: os.hostname(),
  writeBatch: 500,
  chunking: {},
  rateLimits: {},
  maxRateWait: Duration.seconds(5)
}

/** What `layer` takes: any field of the configuration, durations as any `Duration.DurationInput` ("5 seconds", millis…). */
export type OutboxConfigInput = {
  readonly [K in keyof OutboxConfigShape]?: OutboxConfigShape[K] extends Duration.Duration ? Duration.DurationInput
    : OutboxConfigShape[K] extends ReadonlyArray<Duration.Duration> ? ReadonlyArray<Duration.DurationInput>
    : OutboxConfigShape[K]
}

const durationFields = [
  "maxAge",
  "workerInterval",
  "leaseDuration",
  "sendTimeout",
  "ackRetryBase",
  "deliveredRetention",
  "terminalRetention",
  "pruneInterval",
  "shutdownGrace",
  "maxRateWait"
] as const satisfies ReadonlyArray<keyof OutboxConfigShape>

/** Decodes a duration input, or throws a message naming the field (`Duration.decode` throws on a bad string). */
const durationOf = (name: string, input: Duration.DurationInput): Duration.Duration => {
  try {
    return Duration.decode(input)
  } catch {
    throw new Error(
      `${name} must be a duration such as "5 seconds" or a number of millis, got ${JSON.stringify(input)}`
    )
  }
}

/** The input with every duration decoded, over the defaults. */
const resolve = (options: OutboxConfigInput): OutboxConfigShape => {
  const out: Record<string, unknown> = { ...defaults }
  for (const [key, value] of Object.entries(options)) if (value !== undefined) out[key] = value
  for (const key of durationFields) out[key] = durationOf(key, out[key] as Duration.DurationInput)
  out.retryDelays = (out.retryDelays as ReadonlyArray<Duration.DurationInput>).map((d, i) =>
    durationOf(`retryDelays[${i}]`, d)
  )
  return out as unknown as OutboxConfigShape
}

/** The `OutboxConfig` service tag. */
export class OutboxConfig extends Context.Tag("effect-outbox/OutboxConfig")<OutboxConfig, OutboxConfigShape>() {}

/** Checks the values that would make the outbox misbehave rather than fail. */
const validate = (config: OutboxConfigShape): OutboxConfigShape => {
  const problems: Array<string> = []
  if (!Number.isInteger(config.maxAttempts) || config.maxAttempts < 1) {
    problems.push("maxAttempts must be an integer ≥ 1")
  }
  if (config.retryDelays.length === 0) problems.push("retryDelays must not be empty")
  if (!(config.workerBudget > 0 && config.workerBudget <= 1)) problems.push("workerBudget must be in (0, 1]")
  if (config.claimBatch < 1 || config.workerConcurrency < 1 || config.writeBatch < 1) {
    problems.push("claimBatch, workerConcurrency and writeBatch must be ≥ 1")
  }
  if (config.nodeId.length === 0 || config.nodeId.includes("/")) {
    problems.push("nodeId must be non-empty and contain no '/'")
  }
  problems.push(...RateLimits.problems(config.rateLimits))
  if (Duration.greaterThan(Duration.times(config.maxRateWait, 2), config.leaseDuration)) {
    problems.push("maxRateWait must be at most half the leaseDuration (a row waits for its token under its lease)")
  }
  if (problems.length > 0) throw new Error(`invalid OutboxConfig: ${problems.join("; ")}`)
  return config
}

/** Defaults overridden by `options` (durations as `Duration.DurationInput`). Invalid values fail the layer with a message naming them. */
export const layer = (options: OutboxConfigInput = {}): Layer.Layer<OutboxConfig, ConfigError.ConfigError> =>
  Layer.effect(
    OutboxConfig,
    Effect.try({
      try: () => validate(resolve(options)),
      catch: (e) => ConfigError.InvalidData([], e instanceof Error ? e.message : String(e))
    })
  )

const duration = (name: string, fallback: Duration.Duration, description: string) =>
  Config.duration(name).pipe(Config.withDefault(fallback), Config.withDescription(description))

/** Reads `OUTBOX_*` variables (e.g. OUTBOX_MAX_AGE="15 minutes", OUTBOX_NODE_ID), defaults for the rest. */
export const config: Config.Config<OutboxConfigShape> = Config.nested("OUTBOX")(Config.all({
  maxAttempts: Config.integer("MAX_ATTEMPTS").pipe(
    Config.withDefault(defaults.maxAttempts),
    Config.withDescription("attempts before max_attempts")
  ),
  retryDelays: Config.array(Config.duration("DELAY"), "RETRY_DELAYS").pipe(
    Config.withDefault(defaults.retryDelays as Array<Duration.Duration>),
    Config.withDescription("comma-separated retry delays; the last repeats")
  ),
  retryJitter: Config.boolean("RETRY_JITTER").pipe(Config.withDefault(defaults.retryJitter)),
  maxAge: duration("MAX_AGE", defaults.maxAge, "rows older than this are not sent"),
  expireAction: Config.literal("fail", "deliver")("EXPIRE_ACTION").pipe(Config.withDefault(defaults.expireAction)),
  workerInterval: duration("WORKER_INTERVAL", defaults.workerInterval, "recovery worker period"),
  workerBudget: Config.number("WORKER_BUDGET").pipe(Config.withDefault(defaults.workerBudget)),
  claimBatch: Config.integer("CLAIM_BATCH").pipe(Config.withDefault(defaults.claimBatch)),
  workerConcurrency: Config.integer("WORKER_CONCURRENCY").pipe(Config.withDefault(defaults.workerConcurrency)),
  leaseDuration: duration("LEASE", defaults.leaseDuration, "lease on a row being sent"),
  sendTimeout: duration("SEND_TIMEOUT", defaults.sendTimeout, "timeout of one adapter call"),
  ackRetries: Config.integer("ACK_RETRIES").pipe(Config.withDefault(defaults.ackRetries)),
  ackRetryBase: duration("ACK_RETRY_BASE", defaults.ackRetryBase, "first ack retry delay"),
  deliveredRetention: duration(
    "DELIVERED_RETENTION",
    defaults.deliveredRetention,
    "age at which delivered rows are pruned"
  ),
  terminalRetention: duration(
    "TERMINAL_RETENTION",
    defaults.terminalRetention,
    "age at which failed/expired rows are pruned"
  ),
  pruneInterval: duration("PRUNE_INTERVAL", defaults.pruneInterval, "how often the worker prunes"),
  shutdownGrace: duration("SHUTDOWN_GRACE", defaults.shutdownGrace, "wait for in-flight sends on shutdown"),
  nodeId: Config.string("NODE_ID").pipe(Config.withDefault(defaults.nodeId), Config.withDescription("stable node id")),
  writeBatch: Config.integer("WRITE_BATCH").pipe(Config.withDefault(defaults.writeBatch)),
  chunking: Config.succeed(defaults.chunking),
  rateLimits: RateLimits.config("RATE_LIMITS"),
  maxRateWait: duration("MAX_RATE_WAIT", defaults.maxRateWait, "longest a live deliver waits for a rate-limit token")
}))

/** The configuration from the environment (`OUTBOX_*`), defaults for what is not set. */
export const layerFromEnv: Layer.Layer<OutboxConfig, ConfigError.ConfigError> = Layer.effect(
  OutboxConfig,
  Effect.flatMap(config, (c) =>
    Effect.try({
      try: () => validate(c),
      catch: (e) => ConfigError.InvalidData([], e instanceof Error ? e.message : String(e))
    }))
)
