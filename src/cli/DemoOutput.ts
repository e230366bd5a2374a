/**
 * The demo's terminal output: the narrative lines, and a progress line redrawn in place on a terminal (printed every
 * tenth tick otherwise, nothing in --json mode) that the logger clears before it writes.
 */
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type { OutboxStats } from "../Delivery.js"
import * as Outbox from "../Outbox.js"
import type { Gateway } from "./DemoGateway.js"
import * as Format from "./Format.js"

/** Where the run writes: narrative and progress, each silent where it does not belong. */
export interface Output {
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

/** The output for a run: drawn in place on a terminal, plain lines otherwise, nothing but the summary with --json. */
export const makeOutput = (json: boolean): Output => {
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
export const showProgress = (output: Output, boot: number, gateway: Gateway, total: number, start: number) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    let tick = 0
    const draw = (last: boolean) =>
      Effect.gen(function*() {
        const stats = yield* outbox.stats
        const now = yield* Clock.currentTimeMillis
        yield* output.progress(progressLine(boot, gateway, total, stats, now - start), tick++, last)
      }).pipe(Effect.catchAll((e) => Effect.logWarning(`progress: cannot read stats: ${e.message}`)))
    return {
      last: draw(true),
      loop: draw(false).pipe(Effect.repeat(Schedule.spaced(Duration.millis(100))), Effect.asVoid)
    }
  })

// the logger clears the progress line of the same run: both write to the same terminal
export const makeClear = (
  json: boolean
) => (json || process.stdout.isTTY !== true ? () => {} : () => process.stdout.write("\r\x1b[K"))
