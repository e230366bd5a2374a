/**
 * Rate limit benchmark: REPLIES replies (CHATS chats) stored during an outage, then drained by a gateway's worker
 * through the shipped Telegram channel against a loopback Bot API (a child process) that accepts at most LIMIT
 * messages in any second and answers the rest 429 with `retry_after`, as Telegram does.
 *
 * - MODE=limits: the channel's shipped limits (`TelegramChannel.limits`: 30/s per bot, 1/s per chat, 20/min in groups;
 *   no `rateLimits` entry), so the outbox sends within them;
 * - MODE=none: `rateLimits: { telegram: "none" }`: no limits, only the adaptive pause a 429's retry_after sets;
 * - a build without rate limits (before issue 19) runs with MODE=none and ignores the option: the old behaviour.
 *
 * Reported: drain time (worker start to every row delivered), the Bot API's 429 answers and accepted messages, the
 * most messages accepted in any second, the process's CPU per reply, and the rows' final states.
 *
 * Run: npm run bench:ratelimit. Env: MODE=limits|none, REPLIES=10000, CHATS=2000, LIMIT=30 (the API's), PER_SECOND
 * (MODE=limits: the outbox's rate per bot instead of the shipped 30, the other shipped limits kept).
 * The script is compiled with the library by tsc (tsconfig.bench.json, into bench/.build) and run by node.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import { fork } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import * as ChannelRegistry from "../src/ChannelRegistry.js"
import * as TelegramChannel from "../src/channels/Telegram.js"
import * as Metrics from "../src/Metrics.js"
import { Outbox } from "../src/Outbox.js"
import * as Outboxes from "../src/Outbox.js"
import * as OutboxConfig from "../src/OutboxConfig.js"
import * as RecoveryWorker from "../src/RecoveryWorker.js"
import * as SqliteOutboxRepo from "../src/SqliteOutboxRepo.js"
import { cpuMicros } from "./probes.js"

const env = process.env
const MODE = env.MODE === "none" ? "none" : "limits"
const REPLIES = Number(env.REPLIES ?? 10_000)
const CHATS = Number(env.CHATS ?? 2_000)
const LIMIT = Number(env.LIMIT ?? 30)
/** with MODE=limits: the outbox's rate per bot, when not the shipped limits' 30/s */
const PER_SECOND = env.PER_SECOND === undefined ? undefined : Number(env.PER_SECOND)
const TOKEN = "123456:bench"

/** The loopback Bot API: accepts at most LIMIT sendMessage calls in any 1,000 ms, answers 429 above. */
const serve = () => {
  const accepted: Array<number> = []
  let tooMany = 0
  let head = 0
  const server = http.createServer((req, res) => {
    if (req.url === "/stats") {
      return res.end(JSON.stringify({ accepted, tooMany }))
    }
    req.resume().on("end", () => {
      const now = performance.now()
      while (head < accepted.length && accepted[head]! <= now - 1000) head++
      if (accepted.length - head >= LIMIT) {
        tooMany++
        const retryAfter = Math.max(1, Math.ceil((accepted[head]! + 1000 - now) / 1000))
        res.writeHead(429, { "content-type": "application/json" }).end(JSON.stringify({
          ok: false,
          error_code: 429,
          description: `Too Many Requests: retry after ${retryAfter}`,
          parameters: { retry_after: retryAfter }
        }))
        return
      }
      accepted.push(now)
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({
        ok: true,
        result: { message_id: accepted.length, chat: { id: 1 }, date: 0, text: "" }
      }))
    })
  })
  server.listen(0, "127.0.0.1", () => process.send!({ port: (server.address() as AddressInfo).port }))
}

/** Starts the Bot API in a child process (so its work is not the gateway's); its base URL and a stats reader. */
const startApi = () =>
  new Promise<{ url: string; stop: () => void }>((resolve) => {
    const child = fork(fileURLToPath(import.meta.url), [], { env: { ...env, ROLE: "api" } })
    child.on(
      "message",
      (m: { port: number }) => resolve({ url: `http://127.0.0.1:${m.port}`, stop: () => child.kill() })
    )
  })

const stats = (url: string) =>
  fetch(`${url}/stats`).then((r) => r.json() as Promise<{ accepted: Array<number>; tooMany: number }>)

/** The most timestamps in any window of `ms` (one starting at each). */
const mostIn = (times: ReadonlyArray<number>, ms: number) => {
  let most = 0
  let end = 0
  for (let start = 0; start < times.length; start++) {
    while (end < times.length && times[end]! < times[start]! + ms) end++
    most = Math.max(most, end - start)
  }
  return most
}

const main = async () => {
  const api = await startApi()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-ratelimit-"))
  const filename = path.join(dir, "outbox.db")
  const config = OutboxConfig.layer({
    nodeId: "bench",
    // a build before issue 19 has no rateLimits option: the field is ignored there
    ...({
      rateLimits: MODE === "none"
        ? { telegram: "none" }
        : PER_SECOND === undefined
        ? {}
        : {
          telegram: { ...(TelegramChannel as unknown as { readonly limits?: object }).limits, perSecond: PER_SECOND }
        }
    } as Record<string, unknown>)
  })
  const base = Layer.mergeAll(
    SqliteOutboxRepo.layerFile({ filename }),
    ChannelRegistry.layer({ telegram: TelegramChannel.make({ token: Redacted.make(TOKEN), apiUrl: api.url }) }).pipe(
      Layer.provide(NodeHttpClient.layerUndici)
    ),
    config
  )
  const outbox = Outboxes.layer.pipe(Layer.provideMerge(base), Layer.orDie)

  const result = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const context = yield* Layer.build(outbox)
    const box = yield* Effect.provide(Outbox, context)
    // the outage: replies stored while the gateway could not send
    for (let i = 0; i < REPLIES; i++) {
      yield* box.enqueue({ channel: "telegram", to: String(100_000 + (i % CHATS)), payloads: [{ text: `reply ${i}` }] })
    }
    const started = performance.now()
    const cpu = cpuMicros()
    yield* Layer.build(RecoveryWorker.layer).pipe(Effect.provide(context))
    let delivered = 0
    while (delivered < REPLIES) {
      yield* Effect.sleep("250 millis")
      const s = yield* box.stats
      delivered = s.byState.delivered
      if (performance.now() - started > 40 * 60_000) break
    }
    const drainMs = performance.now() - started
    const cpuUs = cpuMicros() - cpu
    const final = yield* box.stats
    // the rate limiter's counters (absent from a build before issue 19)
    const counters = Metrics as unknown as Record<
      string,
      ((channel: string) => Metric.Metric.Counter<number>) | undefined
    >
    const count = (name: string) => {
      const metric = counters[name]
      return metric === undefined ? null : Effect.map(Metric.value(metric("telegram")), (s) => s.count)
    }
    const postponed = count("ratePostponed")
    const pauses = count("ratePauses")
    return {
      drainMs,
      cpuUs,
      states: final.byState,
      postponed: postponed === null ? null : yield* postponed,
      pauses: pauses === null ? null : yield* pauses
    }
  })))
  const seen = await stats(api.url)
  api.stop()
  fs.rmSync(dir, { recursive: true, force: true })
  const load = os.loadavg().map((l) => l.toFixed(2)).join(" ")
  console.log(JSON.stringify({
    mode: MODE,
    perSecond: MODE === "none" ? null : PER_SECOND ?? 30,
    replies: REPLIES,
    chats: CHATS,
    limit: LIMIT,
    drainSeconds: +(result.drainMs / 1000).toFixed(1),
    idealSeconds: +(REPLIES / LIMIT).toFixed(1),
    tooMany: seen.tooMany,
    accepted: seen.accepted.length,
    mostInAnySecond: mostIn(seen.accepted, 1000),
    pauses: result.pauses,
    postponed: result.postponed,
    cpuMsPerReply: +(result.cpuUs / 1000 / REPLIES).toFixed(3),
    states: result.states,
    loadAverage: load
  }))
}

if (env.ROLE === "api") serve()
else {main().catch((e) => {
    console.error(e)
    process.exit(1)
  })}
