/**
 * The retry policy is one `Schedule` value. The worker derives a row's persisted `nextAttemptAt` by
 * stepping that same schedule to the row's attempt number: there is no second delay table.
 */
import * as Chunk from "effect/Chunk"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type { OutboxConfigShape } from "./OutboxConfig.js"

/** A retry policy: a schedule whose n-th delay is the wait after the n-th failed attempt; it ends when attempts run out. */
export type RetryPolicy = Schedule.Schedule<unknown, unknown>

/**
 * The policy of a configuration: the delays in order, the last one repeating, ±20 % jitter when on,
 * and at most `maxAttempts` attempts (so `maxAttempts - 1` retries).
 */
export const fromConfig = (
  config: Pick<OutboxConfigShape, "retryDelays" | "retryJitter" | "maxAttempts">
): RetryPolicy => {
  const [first, ...rest] = config.retryDelays
  const last = config.retryDelays[config.retryDelays.length - 1]!
  const table = Schedule.fromDelays(first!, ...rest).pipe(Schedule.andThen(Schedule.spaced(last)))
  const jittered = config.retryJitter ? Schedule.jittered(table) : table
  return jittered.pipe(Schedule.intersect(Schedule.recurs(config.maxAttempts - 1)))
}

/**
 * The delay after failed attempt number `attempt` (1-based), or `None` when the policy allows no more
 * attempts. Jitter draws from Effect's `Random`, which tests can seed.
 */
export const delayAfterAttempt = (
  policy: RetryPolicy,
  attempt: number
): Effect.Effect<Option.Option<Duration.Duration>> =>
  // `run` also emits the schedule's last output when it ends, so step once more than `attempt`:
  // the policy allows another attempt only if it is still going after `attempt` steps
  Schedule.run(Schedule.delays(policy), 0, Array.from({ length: attempt + 1 }, () => undefined)).pipe(
    Effect.map((
      delays
    ) => (attempt >= 1 && Chunk.size(delays) > attempt ? Chunk.get(delays, attempt - 1) : Option.none()))
  )
