/**
 * Pipeline test harness: an Effect-native adapter that records calls and follows a script, and the layers
 * of an outbox over a memory (or given) store with jitter off, so retry times are exact under TestClock.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import type { AdapterV1, Returned, SendContext, SendResult } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import { SendError, type StoreError } from "../../src/DeliveryError.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import type { OutboxRepo } from "../../src/OutboxRepo.js"

/** What one adapter call does. */
export type Step =
  | { readonly ok: true }
  | { readonly status: number; readonly message?: string; readonly retryAfterMs?: number }
  | { readonly permanent: string }
  | { readonly sleep: number }
  /** rejects the plugin Promise with this raw value, so the core's classifier decides */
  | { readonly reject: unknown }
  | { readonly run: (ctx: SendContext) => Effect.Effect<SendResult, SendError> }

/** One recorded call. */
export interface Call {
  readonly method: "sendText" | "sendMedia"
  readonly entryId: string
  readonly to: string
  readonly text: string
  readonly mediaUrl: string | undefined
  readonly attempt: number
  readonly partIndex: number
}

/** A v1 adapter (text + media) whose calls follow `script` per call, then succeed. */
export const scriptedAdapter = (script: ReadonlyArray<Step> | ((call: Call, n: number) => Step) = []) =>
  Effect.gen(function*() {
    const calls = yield* Ref.make<ReadonlyArray<Call>>([])
    const queue = Array.isArray(script) ? [...script] : []
    const respond = (method: Call["method"]) => (ctx: SendContext): Returned<SendResult> => {
      const call: Call = {
        method,
        entryId: ctx.entryId,
        to: ctx.to,
        text: ctx.text,
        mediaUrl: ctx.mediaUrl,
        attempt: ctx.attempt,
        partIndex: ctx.partIndex
      }
      // recorded synchronously, at the moment the adapter is called
      const n = Effect.runSync(Ref.updateAndGet(calls, (cs) => [...cs, call])).length
      const step: Step = typeof script === "function" ? script(call, n) : queue.shift() ?? { ok: true }
      if ("reject" in step) return Promise.reject(step.reject)
      return Effect.gen(function*() {
        if ("status" in step) {
          return yield* Effect.fail(
            new SendError({
              message: step.message ?? `HTTP ${step.status}`,
              retryable: step.status === 429 || step.status >= 500,
              status: step.status,
              ...(step.retryAfterMs !== undefined ? { retryAfterMs: step.retryAfterMs } : {})
            })
          )
        }
        if ("permanent" in step) return yield* Effect.fail(new SendError({ message: step.permanent, retryable: false }))
        if ("sleep" in step) yield* Effect.sleep(step.sleep)
        if ("run" in step) return yield* step.run(ctx)
        return { messageId: `m-${n}` }
      })
    }
    const adapter: AdapterV1 = { sendText: respond("sendText"), sendMedia: respond("sendMedia") }
    return { adapter, calls: Ref.get(calls) }
  })

/** Test configuration: jitter off, a fixed node id. */
export const testConfig = (overrides: OutboxConfig.OutboxConfigInput = {}) =>
  OutboxConfig.layer({ retryJitter: false, nodeId: "test-node", ...overrides }).pipe(Layer.orDie)

/** An outbox over `store` with `adapters`; exposes the repo and config too. */
export const outboxLayer = (
  adapters: Parameters<typeof ChannelRegistry.layer>[0],
  options: {
    readonly config?: OutboxConfig.OutboxConfigInput
    readonly store?: Layer.Layer<OutboxRepo, StoreError>
  } = {}
) => {
  const deps = Layer.mergeAll(
    (options.store ?? MemoryOutboxRepo.layer).pipe(Layer.orDie),
    ChannelRegistry.layer(adapters).pipe(Layer.orDie),
    testConfig(options.config)
  )
  return Outbox.layer.pipe(Layer.provideMerge(deps))
}

/** A reply to `to` on channel "chat". */
export const reply = (text: string, extra: Record<string, unknown> = {}) => ({
  channel: "chat",
  to: "user-1",
  payloads: [{ text }],
  ...extra
})

/**
 * The ways an adapter can answer a send, each with message id `m-${n}`: at once (a plain value, `Effect.succeed`) or
 * not (an Effect that runs, a Promise). A JavaScript plugin may answer with a plain value, which the adapter type
 * does not admit, hence the cast.
 */
export const answerStyles: ReadonlyArray<readonly [style: string, answer: (n: number) => Returned<SendResult>]> = [
  ["a plain value", (n) => ({ messageId: `m-${n}` }) as unknown as Returned<SendResult>],
  ["Effect.succeed", (n) => Effect.succeed({ messageId: `m-${n}` })],
  ["an Effect that runs", (n) => Effect.map(Effect.yieldNow(), () => ({ messageId: `m-${n}` }))],
  ["a Promise", (n) => Promise.resolve({ messageId: `m-${n}` })]
]
