/**
 * The demo's three fake channels. They are real adapters of the `ChannelAdapter` contracts (Effect-native methods),
 * with latency from `Effect.sleep` and failures drawn from a seeded `Random`, and each keeps a log of what reached it,
 * so the demo can tell a replay that the user saw twice from one that only might have been.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type { AdapterV1, AdapterV2, ReconcileResult, SendContext, SendResult } from "../ChannelAdapter.js"
import { SendError } from "../DeliveryError.js"

/** What reached one fake channel. */
export interface ChannelLog {
  readonly name: string
  readonly contract: "v1" | "v2"
  readonly description: string
  /** parts accepted by the channel (seen by the user), by `entryId#partIndex`, with how often each arrived */
  readonly received: Map<string, number>
  /** entries with at least one accepted part */
  readonly entries: Set<string>
  readonly counts: {
    sends: number
    failures: number
    reconcileSent: number
    reconcileNotSent: number
    reconcileUnknown: number
  }
}

/** The three channels, their adapters and their logs. */
export interface DemoChannels {
  readonly adapters: { readonly healthy: AdapterV2; readonly flaky: AdapterV1; readonly rejecting: AdapterV2 }
  readonly logs: ReadonlyArray<ChannelLog>
}

const newLog = (name: string, contract: "v1" | "v2", description: string): ChannelLog => ({
  name,
  contract,
  description,
  received: new Map(),
  entries: new Set(),
  counts: { sends: 0, failures: 0, reconcileSent: 0, reconcileNotSent: 0, reconcileUnknown: 0 }
})

const partKey = (ctx: SendContext, partIndex: number = ctx.partIndex) => `${ctx.entryId}#${partIndex}`

type Fault = (ctx: SendContext) => Effect.Effect<SendError | undefined>

/**
 * One send over a simulated network: the request travels, the channel may refuse it, else it accepts the part (the
 * user sees it) and the response travels back. A crash during the way back leaves a row in flight that was sent.
 */
const transmit =
  (log: ChannelLog, rng: Random.Random, latencyMs: readonly [number, number], fault: Fault) =>
  (ctx: SendContext): Effect.Effect<SendResult, SendError> =>
    Effect.gen(function*() {
      yield* Effect.sleep(Duration.millis(yield* rng.nextIntBetween(latencyMs[0], latencyMs[1])))
      const error = yield* fault(ctx)
      const messageId = yield* Effect.sync(() => {
        log.counts.sends++
        if (error !== undefined) {
          log.counts.failures++
          return undefined
        }
        const key = partKey(ctx)
        log.received.set(key, (log.received.get(key) ?? 0) + 1)
        log.entries.add(ctx.entryId)
        return `${log.name}-${log.counts.sends}`
      })
      if (messageId === undefined) return yield* Effect.fail(error!)
      yield* Effect.sleep(Duration.millis(yield* rng.nextIntBetween(20, 80)))
      return { messageId }
    })

/** Answers from the channel's own log: every remaining part arrived, none did, or some did (unknown). */
const reconcileFrom = (log: ChannelLog) => (ctx: SendContext): Effect.Effect<ReconcileResult> =>
  Effect.sync(() => {
    let arrived = 0
    for (let i = ctx.partIndex; i < ctx.partCount; i++) if (log.received.has(partKey(ctx, i))) arrived++
    const remaining = ctx.partCount - ctx.partIndex
    const result: ReconcileResult = arrived === 0 ? "not_sent" : arrived === remaining ? "sent" : "unknown"
    if (result === "sent") log.counts.reconcileSent++
    else if (result === "not_sent") log.counts.reconcileNotSent++
    else log.counts.reconcileUnknown++
    return result
  })

/** Rates of the flaky channel. */
export const FLAKY = { serverError: 0.25, rateLimited: 0.05, longRetryAfter: 0.3, longRetryAfterMs: 8_000 } as const

/**
 * Builds the channels. `healthy` (v2, can reconcile after a crash), `flaky` (v1 with core chunking: HTTP 500s and
 * 429s with retry-after, some longer than the TTL), `rejecting` (v2: recipients in `blocked` have blocked the bot).
 */
export const make = (seed: number, blocked: ReadonlySet<string>): DemoChannels => {
  const healthy = newLog("healthy", "v2", "v2 adapter, 20-120 ms, answers reconcile after a crash")
  const flaky = newLog(
    "flaky",
    "v1",
    `v1 adapter (core chunking at 160 chars), 40-200 ms, ${FLAKY.serverError * 100}% HTTP 500, ${
      FLAKY.rateLimited * 100
    }% HTTP 429 with retry-after`
  )
  const rejecting = newLog(
    "rejecting",
    "v2",
    `v2 adapter, 10-50 ms, ${blocked.size} ${
      blocked.size === 1 ? "recipient has" : "recipients have"
    } blocked the bot (HTTP 403)`
  )

  const none: Fault = () => Effect.succeed(undefined)
  const flakyRng = Random.make(`${seed}/flaky`)
  const flakyFault: Fault = () =>
    Effect.gen(function*() {
      const roll = yield* flakyRng.next
      if (roll < FLAKY.serverError) {
        return new SendError({ message: "HTTP 500 Internal Server Error", retryable: true, status: 500 })
      }
      if (roll < FLAKY.serverError + FLAKY.rateLimited) {
        const retryAfterMs = (yield* flakyRng.next) < FLAKY.longRetryAfter
          ? FLAKY.longRetryAfterMs
          : yield* flakyRng.nextIntBetween(300, 1_000)
        return new SendError({
          message: `HTTP 429 Too Many Requests (retry after ${retryAfterMs} ms)`,
          retryable: true,
          status: 429,
          retryAfterMs
        })
      }
      return undefined
    })
  const blockedFault: Fault = (ctx) =>
    Effect.succeed(
      blocked.has(ctx.to)
        ? new SendError({ message: "HTTP 403 Forbidden: bot was blocked by the user", retryable: false, status: 403 })
        : undefined
    )

  const flakySend = transmit(flaky, flakyRng, [40, 200], flakyFault)
  return {
    adapters: {
      healthy: {
        outboundContract: "v2",
        sendFinal: transmit(healthy, Random.make(`${seed}/healthy`), [20, 120], none),
        reconcile: reconcileFrom(healthy)
      },
      flaky: { sendText: flakySend, sendMedia: flakySend, textChunkLimit: 160 },
      rejecting: {
        outboundContract: "v2",
        sendFinal: transmit(rejecting, Random.make(`${seed}/rejecting`), [10, 50], blockedFault)
      }
    },
    logs: [healthy, flaky, rejecting]
  }
}

/** Parts a channel accepted more than once: duplicates a user actually saw. */
export const duplicateParts = (log: ChannelLog): number => {
  let n = 0
  for (const count of log.received.values()) if (count > 1) n += count - 1
  return n
}
