/**
 * Test doubles at the adapter boundary: recording adapters (a `Ref` of calls) whose replies
 * follow a script ("fail once with 500, then ok"), plus entry and log helpers.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Ref from "effect/Ref"
import type { AdapterV1, AdapterV2, SendContext, SendResult } from "../../src/ChannelAdapter.js"
import { EntryId, type OutboxEntry, type ReplyPayload } from "../../src/Delivery.js"

export type Method = "sendText" | "sendMedia" | "sendPayload" | "sendFinal" | "reconcile"

/** One adapter call as the adapter saw it. */
export interface Call {
  readonly method: Method
  readonly ctx: SendContext
}

/** What the next call does; calls past the end of the script succeed. */
export type Step =
  | { readonly ok: true }
  | { readonly fail: unknown } // rejects the Promise with this value
  | { readonly throw: unknown } // throws synchronously
  | { readonly resolve: unknown } // resolves with this (possibly malformed) value
  | { readonly hang: true } // never settles

/** A recorder: every adapter method built from it appends to `calls` and follows `script`. */
export interface Recorder {
  readonly calls: Effect.Effect<ReadonlyArray<Call>>
  readonly methods: Effect.Effect<ReadonlyArray<Method>>
  /** the signals the adapter received, to check that timeouts abort them */
  readonly signals: ReadonlyArray<AbortSignal>
  readonly respond: (method: Method, ctx: SendContext, signal: AbortSignal) => Promise<SendResult>
}

/** Makes a recorder following `script` (one step per call, in call order). */
export const makeRecorder = (script: ReadonlyArray<Step> = []): Effect.Effect<Recorder> =>
  Effect.gen(function*() {
    const calls = yield* Ref.make<ReadonlyArray<Call>>([])
    const remaining = [...script]
    const signals: Array<AbortSignal> = []
    let n = 0
    const respond = (method: Method, ctx: SendContext, signal: AbortSignal): Promise<SendResult> => {
      // Ref updates are synchronous, so a plugin-style async function can record into one
      Effect.runSync(Ref.update(calls, (cs) => [...cs, { method, ctx }]))
      signals.push(signal)
      n += 1
      const step = remaining.shift() ?? { ok: true }
      if ("throw" in step) throw step.throw
      if ("fail" in step) return Promise.reject(step.fail)
      if ("hang" in step) return new Promise<SendResult>(() => {})
      if ("resolve" in step) return Promise.resolve(step.resolve as SendResult)
      return Promise.resolve({ messageId: `${method}-${n}` })
    }
    return {
      calls: Ref.get(calls),
      methods: Effect.map(Ref.get(calls), (cs) => cs.map((c) => c.method)),
      signals,
      respond
    }
  })

/** A plain v1 adapter: `sendText`, plus `sendMedia`/`sendPayload` when asked for. */
export const v1Adapter = (
  rec: Recorder,
  options: {
    readonly media?: boolean
    readonly payload?: boolean
    readonly textChunkLimit?: number
    readonly chunker?: AdapterV1["chunker"]
  } = {}
): AdapterV1 => ({
  sendText: (ctx, { signal }) => rec.respond("sendText", ctx, signal),
  ...(options.media !== false ? { sendMedia: (ctx, { signal }) => rec.respond("sendMedia", ctx, signal) } : {}),
  ...(options.payload === true ? { sendPayload: (ctx, { signal }) => rec.respond("sendPayload", ctx, signal) } : {}),
  ...(options.textChunkLimit !== undefined ? { textChunkLimit: options.textChunkLimit } : {}),
  ...(options.chunker !== undefined ? { chunker: options.chunker } : {})
})

/** A v2 adapter that also carries v1 methods (which must never be called). */
export const v2Adapter = (rec: Recorder): AdapterV2 => ({
  outboundContract: "v2",
  sendFinal: (ctx, { signal }) => rec.respond("sendFinal", ctx, signal),
  sendText: (ctx, { signal }) => rec.respond("sendText", ctx, signal),
  sendMedia: (ctx, { signal }) => rec.respond("sendMedia", ctx, signal)
})

/** A stored entry as the repo would return it. */
export const entry = (
  payloads: ReadonlyArray<ReplyPayload>,
  overrides: Partial<Omit<OutboxEntry, "payloads">> = {}
): OutboxEntry => ({
  id: EntryId.make("01JTESTENTRY0000000000000A"),
  channel: "chat",
  to: "user-1",
  payloads,
  kind: "final",
  bestEffort: false,
  state: "in_flight",
  attemptCount: 0,
  partsDelivered: 0,
  enqueuedAt: 0,
  nextAttemptAt: null,
  lastAttemptAt: null,
  deliveredAt: null,
  expiresAt: null,
  lastError: null,
  terminalReason: null,
  leaseOwner: null,
  leaseExpiresAt: null,
  updatedAt: 0,
  ...overrides
})

/** A log line as a user would read it. */
export interface LogLine {
  readonly level: string
  readonly message: string
}

/** Captures log lines into `lines` while `layer` is provided. */
export const captureLogs = (): { readonly lines: Array<LogLine>; readonly layer: Layer.Layer<never> } => {
  const lines: Array<LogLine> = []
  const logger = Logger.make(({ logLevel, message }) => {
    const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
    lines.push({ level: logLevel.label, message: text })
  })
  return { lines, layer: Logger.add(logger) }
}
