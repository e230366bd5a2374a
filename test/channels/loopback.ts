/**
 * Support for the shipped channels' tests: a loopback `node:http` server that records every request and answers
 * as the API under test does, the outbox over the memory store with those channels on `NodeHttpClient`, and small
 * readers of rows and events.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as ConfigError from "effect/ConfigError"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { Adapter, InvalidAdapter } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import type { EntryId, OutboxEntry } from "../../src/Delivery.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import * as Outbox from "../../src/Outbox.js"
import type { OutboxConfigInput } from "../../src/OutboxConfig.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import { testConfig } from "../outbox/harness.js"

/** A request as the server received it. */
export interface Received {
  readonly method: string
  /** path and query */
  readonly path: string
  /** lower-case names, as Node gives them */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** An answer: a JSON value (or a string, sent as it is) with a status and headers. */
export interface Reply {
  readonly status: number
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: unknown
}

/** How the server answers the `n`th request (1-based); `"hang"` never answers (until the server closes). */
export type Respond = (request: Received, n: number) => Reply | "hang"

/** A running loopback server. */
export interface Server {
  /** `http://127.0.0.1:<port>` */
  readonly url: string
  /** every request so far, in arrival order */
  readonly received: () => ReadonlyArray<Received>
  /** requests whose connection closed before they were answered (aborted by the client) */
  readonly aborted: () => number
  /** waits until `n` requests have arrived */
  readonly arrived: (n: number) => Effect.Effect<void>
  /** waits until `n` unanswered requests have been aborted */
  readonly abortedCount: (n: number) => Effect.Effect<void>
}

/** Deferreds completed once a counter reaches their number (the server's callbacks run outside any fiber). */
const counterWaiters = () => {
  let count = 0
  let waiters: Array<{ readonly n: number; readonly done: Deferred.Deferred<void> }> = []
  return {
    get: () => count,
    increment: () => {
      count++
      for (const w of waiters.filter((w) => w.n <= count)) Deferred.unsafeDone(w.done, Exit.void)
      waiters = waiters.filter((w) => w.n > count)
    },
    reach: (n: number) =>
      Effect.suspend(() => {
        if (count >= n) return Effect.void
        const done = Deferred.unsafeMake<void>(FiberId.none)
        waiters.push({ n, done })
        return Deferred.await(done)
      })
  }
}

const headerRecord = (headers: http.IncomingHttpHeaders): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value
  }
  return out
}

/** Starts a server on 127.0.0.1 (an ephemeral port) for the current scope; closing the scope ends its connections. */
export const startServer = (respond: Respond): Effect.Effect<Server, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: http.Server; readonly state: Server }>((resume) => {
      const received: Array<Received> = []
      const arrivals = counterWaiters()
      const aborts = counterWaiters()
      const server = http.createServer((req, res) => {
        let body = ""
        req.setEncoding("utf8").on("data", (d: string) => (body += d)).on("end", () => {
          const request: Received = {
            method: req.method ?? "",
            path: req.url ?? "",
            headers: headerRecord(req.headers),
            body
          }
          received.push(request)
          const reply = respond(request, received.length)
          arrivals.increment()
          if (reply === "hang") {
            res.on("close", () => aborts.increment())
            return
          }
          const text = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body ?? {})
          const type = typeof reply.body === "string" ? "text/plain" : "application/json"
          res.writeHead(reply.status, { "content-type": type, ...reply.headers }).end(text)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({
          server,
          state: {
            url: `http://127.0.0.1:${port}`,
            received: () => [...received],
            aborted: aborts.get,
            arrived: arrivals.reach,
            abortedCount: aborts.reach
          }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ state }) => state))

/** A URL on 127.0.0.1 where nothing listens (a server started and closed at once). */
export const closedPort: Effect.Effect<string> = Effect.scoped(
  Effect.map(startServer(() => ({ status: 200 })), (server) => server.url)
)

/** An adapter built over the HTTP client, as the shipped channels' `make` returns it. */
export type HttpAdapter = Effect.Effect<Adapter, InvalidAdapter | ConfigError.ConfigError, HttpClient.HttpClient>

/**
 * The outbox over the memory store with `channels` on `NodeHttpClient` (undici); jitter off. The channels' own rate
 * limits are off unless `config.rateLimits` is given: these tests are about each API's requests and answers, and the
 * TestClock would have to move for every message to a chat (the limits are tested in test/outbox/rateLimits.test.ts
 * and, for the shipped defaults, by the channels' own tests that pass `rateLimits: {}`).
 */
export const outboxWith = (channels: Readonly<Record<string, HttpAdapter>>, config: OutboxConfigInput = {}) =>
  Outbox.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      MemoryOutboxRepo.layer,
      ChannelRegistry.layer(channels).pipe(Layer.provide(NodeHttpClient.layerUndici), Layer.orDie),
      testConfig({
        rateLimits: Object.fromEntries(Object.keys(channels).map((id) => [id, "none"] as const)),
        ...config
      })
    ))
  )

/** Starts the recovery worker in the current scope (with the same test configuration). */
export const startWorker = (config: OutboxConfigInput = {}) =>
  Effect.flatMap(
    Effect.scope,
    (scope) => Layer.buildWithScope(RecoveryWorker.layer.pipe(Layer.provide(testConfig(config))), scope)
  )

/** The stored row. */
export const row = (id: EntryId): Effect.Effect<OutboxEntry, never, OutboxRepo> =>
  Effect.flatMap(OutboxRepo, (repo) => repo.get(id)).pipe(Effect.orDie, Effect.map(Option.getOrThrow))

/**
 * Runs `trigger` (e.g. `TestClock.adjust`) and waits for the first event about `entryId` among `tags`. The
 * subscription starts before the trigger, so an event the trigger causes at once is not missed.
 */
export const awaitEvent = <A, E, R>(
  entryId: EntryId,
  tags: ReadonlyArray<Outbox.OutboxEvent["_tag"]>,
  trigger: Effect.Effect<A, E, R>
) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const events = yield* outbox.subscribe
    const waiting = yield* Effect.fork(
      events.pipe(
        Stream.filter((event) => tags.includes(event._tag) && "entryId" in event && event.entryId === entryId),
        Stream.runHead
      )
    )
    yield* trigger
    return Option.getOrThrow(yield* Fiber.join(waiting))
  })

const FIXTURES = fileURLToPath(new URL("../fixtures/channels/", import.meta.url))

/** A recorded answers file from test/fixtures/channels. */
export const fixtures = <K extends string>(file: string): Readonly<Record<K, Reply>> =>
  JSON.parse(fs.readFileSync(path.join(FIXTURES, file), "utf8")) as Readonly<Record<K, Reply>>
