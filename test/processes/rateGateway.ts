/**
 * A gateway process for the cross-process rate limit test: an outbox on a PostgreSQL schema with its worker, one
 * channel "chat" that POSTs each reply to a loopback server (tagged with this process's pid), limited to
 * `perSecond` for the gateway as a whole.
 *   node --import tsx test/processes/rateGateway.ts <postgres url> <server url> <perSecond> <replies>
 * It prints `ready` once its outbox runs; on `go` (stdin) it enqueues its replies (to chats of its own) and prints
 * `enqueued`. It runs until it is killed.
 */
import { NodeRuntime } from "@effect/platform-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as readline from "node:readline"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import { Outbox } from "../../src/Outbox.js"
import * as Outboxes from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"

const [url, serverUrl, perSecond, replies] = process.argv.slice(2) as [string, string, string, string]

const chat = {
  outboundContract: "v2" as const,
  sendFinal: async (ctx: { readonly to: string; readonly text: string }, options: { readonly signal: AbortSignal }) => {
    const response = await fetch(serverUrl, {
      method: "POST",
      headers: { "content-type": "application/json", "x-pid": String(process.pid) },
      body: JSON.stringify({ to: ctx.to, text: ctx.text }),
      signal: options.signal
    })
    if (!response.ok) throw Object.assign(new Error(`HTTP ${response.status}`), { retryable: true })
    return { messageId: await response.text() }
  }
}

const OutboxLive = RecoveryWorker.layer.pipe(
  Layer.provideMerge(Outboxes.layer),
  Layer.provideMerge(Layer.mergeAll(
    PgOutboxRepo.layerUrl(url, { client: { maxConnections: 4 } }),
    ChannelRegistry.layer({ chat }),
    OutboxConfig.layer({
      nodeId: `rate-${process.pid}`,
      retryJitter: false,
      rateLimits: { chat: { perSecond: Number(perSecond) } }
    })
  ))
)

const program = Effect.gen(function*() {
  const outbox = yield* Outbox
  const go = yield* Effect.async<void>((resume) => {
    const lines = readline.createInterface({ input: process.stdin })
    lines.on("line", (line) => line.trim() === "go" && resume(Effect.void))
  }).pipe(Effect.fork)
  console.log("ready")
  yield* go.await
  for (let i = 0; i < Number(replies); i++) {
    yield* outbox.enqueue({
      channel: "chat",
      to: `${process.pid}-${i % 10}`,
      payloads: [{ text: `${process.pid}/${i}` }]
    })
  }
  console.log("enqueued")
  return yield* Effect.never
})

program.pipe(Effect.provide(OutboxLive), NodeRuntime.runMain)
