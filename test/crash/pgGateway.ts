/**
 * A gateway process on a shared PostgreSQL outbox, for the multi-process crash tests (pgCrash.test.ts). Several run
 * at once, each its own node, and are SIGKILLed and restarted at random moments:
 *
 *   node pgGateway.bundle.mjs <url> <nodeId> <channelUrl> <applicationName>
 *
 * - The store is `PgOutboxRepo.layerUrl(url)` (the URL names the test's schema), with a short heartbeat staleness
 *   (1 s) so that a restarted node takes over its killed boot's rows within about a second.
 * - The only channel, "chat", POSTs each part to `<channelUrl>` (the parent's loopback server, which fails some
 *   requests with a 500 and checks that no two sends of one conversation overlap).
 * - The parent sends requests as JSON lines on stdin, `{ op: "deliver" | "enqueue", key, to, text }`; the gateway runs
 *   them concurrently through its `Outbox` (the key is the idempotency key) and answers each with one line on
 *   stdout: `{ key, ok: true, tag, entryId }` (tag: the outcome, or "Enqueued") or `{ key, ok: false, tag, message }`
 *   (a failure; `entryId` when a row exists).
 *
 * `ready <owner>` is printed once the layers are up and the worker runs. Logs (warnings up) go to stderr.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Runtime from "effect/Runtime"
import * as readline from "node:readline"
import type { AdapterV1, CallOptions, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import { Outbox } from "../../src/Outbox.js"
import * as Outboxes from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import type { ChannelPost, PgAnswer, PgRequest } from "./pgProtocol.js"
import { HEARTBEAT_STALE_MS, pgGatewayConfig } from "./pgProtocol.js"

const main = (args: { url: string; nodeId: string; channelUrl: string; applicationName: string }) => {
  const post = async (ctx: SendContext, options: CallOptions) => {
    const body: ChannelPost = { entryId: ctx.entryId, partIndex: ctx.partIndex, to: ctx.to, text: ctx.text }
    const response = await fetch(args.channelUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: options.signal
    })
    const text = await response.text()
    if (!response.ok) throw Object.assign(new Error(`HTTP ${response.status}: ${text}`), { status: response.status })
    return { messageId: text }
  }
  const adapter: AdapterV1 = { sendText: post, chunker: null }
  const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

  const handle = (request: PgRequest) =>
    Effect.gen(function*() {
      const outbox = yield* Outbox
      const input = { channel: "chat", to: request.to, idempotencyKey: request.key, payloads: [{ text: request.text }] }
      const answer: PgAnswer = request.op === "enqueue"
        ? yield* outbox.enqueue(input).pipe(
          Effect.match({
            onSuccess: (entryId): PgAnswer => ({ key: request.key, ok: true, tag: "Enqueued", entryId }),
            onFailure: (e): PgAnswer => ({ key: request.key, ok: false, tag: e._tag, message: e.message })
          })
        )
        : yield* outbox.deliver(input).pipe(
          Effect.match({
            onSuccess: (outcome): PgAnswer => ({
              key: request.key,
              ok: true,
              tag: outcome._tag,
              entryId: outcome.entryId
            }),
            onFailure: (e): PgAnswer => ({
              key: request.key,
              ok: false,
              tag: e._tag,
              message: e.message,
              ...("entryId" in e ? { entryId: e.entryId } : {})
            })
          })
        )
      yield* say(JSON.stringify(answer))
    })

  const serve = Effect.gen(function*() {
    const outbox = yield* Outbox
    const runtime = yield* Effect.runtime<Outbox>()
    // each request runs in a fiber of its own, so requests of many conversations are in flight at once
    const run = (line: string) => Runtime.runFork(runtime)(handle(JSON.parse(line) as PgRequest))
    readline.createInterface({ input: process.stdin }).on("line", run)
    yield* say(`ready ${outbox.owner}`)
    return yield* Effect.never
  })

  const outbox = Outboxes.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      PgOutboxRepo.layerUrl(args.url, {
        heartbeatStaleMs: HEARTBEAT_STALE_MS,
        client: { maxConnections: 4, applicationName: args.applicationName }
      }),
      ChannelRegistry.layer({ chat: adapter }),
      OutboxConfig.layer({ ...pgGatewayConfig, nodeId: args.nodeId })
    ))
  )
  return serve.pipe(
    Effect.provide(RecoveryWorker.layer.pipe(Layer.provideMerge(outbox))),
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withLeveledConsole(Logger.logfmtLogger))),
    Logger.withMinimumLogLevel(LogLevel.Warning)
  )
}

const [url, nodeId, channelUrl, applicationName] = process.argv.slice(2)
if (url === undefined || nodeId === undefined || channelUrl === undefined || applicationName === undefined) {
  process.stderr.write("usage: pgGateway <url> <nodeId> <channelUrl> <applicationName>\n")
  process.exit(2)
} else {
  // logs go to stderr only (the logger above): stdout carries the answers
  NodeRuntime.runMain(main({ url, nodeId, channelUrl, applicationName }), { disablePrettyLogger: true })
}
