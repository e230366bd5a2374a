/**
 * The Slack channel, driven through the outbox against a loopback Web API that answers with the documented shapes
 * (test/fixtures/channels/slack-web-api.json): the exact requests, threads, media links, the rows' states, HTTP 429
 * with Retry-After through the RecoveryWorker, `ok: false` codes classified, and the token kept out of everything.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { InvalidAdapter } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import * as SlackChannel from "../../src/channels/Slack.js"
import type { EntryId } from "../../src/Delivery.js"
import * as Outbox from "../../src/Outbox.js"
import { captureLogs } from "./fixtures.js"
import type { Received, Reply, Respond } from "./loopback.js"
import { awaitEvent, fixtures, outboxWith, row, startServer, startWorker } from "./loopback.js"

const TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
const T0 = Date.UTC(2025, 0, 15, 9, 30)
const SEC = 1000
const api = fixtures<string>("slack-web-api.json")

/**
 * A Web API double: `POST /chat.postMessage` with `Authorization: Bearer <token>` and a JSON body; a wrong token is
 * `invalid_auth`. A channel named after a recorded error code (`channel_not_found`, `ratelimited`, …) answers with
 * that recorded answer; any other channel gets the recorded success with the `n`th ts. `override` answers first.
 */
const webApi =
  (override: (request: Received, n: number) => Reply | undefined = () => undefined): Respond => (request, n) => {
    const custom = override(request, n)
    if (custom !== undefined) return custom
    if (request.path !== "/chat.postMessage") return { status: 404, body: "Not Found" }
    if (request.headers["authorization"] !== `Bearer ${TOKEN}`) return api["invalid_auth"]!
    const channel = (JSON.parse(request.body) as { channel: string }).channel
    const recorded = api[channel]
    if (recorded !== undefined) return recorded
    const body = structuredClone(api["postMessage"]!.body) as { channel: string; ts: string }
    body.channel = channel
    body.ts = `1503435956.00024${n}`
    return { status: 200, body }
  }

const slack = (apiUrl: string, token = TOKEN) => SlackChannel.make({ token: Redacted.make(token), apiUrl })

const reply = (extra: Partial<Outbox.DeliverInput> = {}): Outbox.DeliverInput => ({
  channel: "slack",
  to: "C123ABC456",
  payloads: [{ text: "Deploy finished" }],
  ...extra
})

const bodies = (requests: ReadonlyArray<Received>) => requests.map((r) => JSON.parse(r.body) as Record<string, unknown>)
const entryOf = (error: unknown) => (error as { readonly entryId: EntryId }).entryId

describe("SlackChannel", () => {
  it.scoped("chat.postMessage in a thread: the exact request; the row is delivered with the message's ts", () =>
    Effect.gen(function*() {
      const server = yield* startServer(webApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = yield* outbox.deliver(reply({ threadId: "1503435900.000100", silent: true }))
        expect(outcome).toMatchObject({
          _tag: "Delivered",
          results: [{ messageId: "1503435956.000241", result: { channel: "C123ABC456" } }]
        })
        const [request] = server.received()
        expect(request!.method).toBe("POST")
        expect(request!.path).toBe("/chat.postMessage")
        expect(request!.headers).toMatchObject({
          authorization: `Bearer ${TOKEN}`,
          "content-type": "application/json; charset=utf-8"
        })
        // Slack has no silent messages: nothing is sent for it
        expect(JSON.parse(request!.body)).toEqual({
          channel: "C123ABC456",
          text: "Deploy finished",
          thread_ts: "1503435900.000100"
        })
        expect(yield* row(outcome.entryId)).toMatchObject({ state: "delivered", lastError: null })
      }).pipe(Effect.provide(outboxWith({ slack: slack(server.url) })))
    }))

  it.scoped("without a thread, replyToId starts that message's thread; with neither, the message is top-level", () =>
    Effect.gen(function*() {
      const server = yield* startServer(webApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        yield* outbox.deliver(reply({ to: "C1", replyToId: "1503435900.000200" }))
        yield* outbox.deliver(reply({ to: "C2" }))
        expect(bodies(server.received())).toEqual([
          { channel: "C1", text: "Deploy finished", thread_ts: "1503435900.000200" },
          { channel: "C2", text: "Deploy finished" }
        ])
      }).pipe(Effect.provide(outboxWith({ slack: slack(server.url) })))
    }))

  it.scoped("long text is split at 4000 characters outside code fences; media URLs go out as links under the text", () =>
    Effect.gen(function*() {
      const server = yield* startServer(webApi())
      const fence = "```\n" + "console.log(1)\n".repeat(100) + "```"
      const prose = "A line of the release notes.\n".repeat(120)
      const text = `${prose}${fence}`
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        yield* outbox.deliver(reply({ payloads: [{ text }] }))
        yield* outbox.deliver(reply({
          to: "C2",
          payloads: [{ text: "Build log", mediaUrls: ["https://example.com/log.txt", "https://example.com/b.png"] }]
        }))
        const texts = bodies(server.received()).map((b) => b["text"] as string)
        expect(texts.slice(0, 2).join("")).toBe(text)
        expect(texts[0]!.length).toBeLessThanOrEqual(SlackChannel.TEXT_LIMIT)
        expect(texts[1]!.startsWith("```")).toBe(true) // the fence was not cut
        expect(texts.slice(2)).toEqual(["Build log\nhttps://example.com/log.txt", "https://example.com/b.png"])
      }).pipe(Effect.provide(outboxWith({ slack: slack(server.url) })))
    }))

  it.scoped("HTTP 429 with Retry-After: the worker posts again Retry-After seconds later", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const server = yield* startServer(webApi((_, n) => (n === 1 ? api["rateLimited"] : undefined)))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply()))
        expect(failed).toMatchObject({
          _tag: "SendFailed",
          retryable: true,
          retryAfterMs: 30 * SEC,
          willRetryAt: T0 + 30 * SEC,
          message: `Slack chat.postMessage failed: HTTP 429: {"ok":false,"error":"ratelimited"}`
        })
        const id = entryOf(failed)
        yield* startWorker()
        yield* TestClock.adjust(30 * SEC - 1)
        expect((yield* outbox.runRecoveryPass).claimed).toBe(0)
        expect(server.received()).toHaveLength(1)
        // a pass at the retry time (the worker's own interval pass may run first under load; either sends it once)
        yield* awaitEvent(id, ["delivered"], Effect.zipRight(TestClock.adjust(1), outbox.runRecoveryPass))
        expect(bodies(server.received())).toEqual([
          { channel: "C123ABC456", text: "Deploy finished" },
          { channel: "C123ABC456", text: "Deploy finished" }
        ])
        expect(yield* row(id)).toMatchObject({ state: "delivered" })
      }).pipe(Effect.provide(outboxWith({ slack: slack(server.url) })))
    }))

  it.scoped("ok:false codes: channel_not_found, not_in_channel, is_archived, invalid_auth fail for good; ratelimited, internal_error, service_unavailable and unknown codes are retried", () =>
    Effect.gen(function*() {
      const server = yield* startServer(webApi((request) =>
        request.body.includes("brand_new_error")
          ? { status: 200, body: { ok: false, error: "brand_new_error" } }
          : undefined
      ))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = (to: string, channel = "slack") =>
          Effect.gen(function*() {
            const failed = yield* Effect.flip(outbox.deliver(reply({ channel, to })))
            const entry = yield* row(entryOf(failed))
            return [to, entry.state, entry.lastError] as const
          })
        const permanent = yield* Effect.forEach(
          ["channel_not_found", "not_in_channel", "is_archived"],
          (to) => outcome(to)
        )
        expect(permanent).toEqual(
          ["channel_not_found", "not_in_channel", "is_archived"].map((
            code
          ) => [code, "failed_terminal", `Slack chat.postMessage failed: ${code}`])
        )
        expect(yield* outcome("C9", "wrongToken")).toEqual([
          "C9",
          "failed_terminal",
          "Slack chat.postMessage failed: invalid_auth"
        ])
        const retried = yield* Effect.forEach(
          ["ratelimited", "internal_error", "service_unavailable", "brand_new_error"],
          (to) => outcome(to)
        )
        expect(retried).toEqual(
          ["ratelimited", "internal_error", "service_unavailable", "brand_new_error"].map((
            code
          ) => [code, "failed_retryable", `Slack chat.postMessage failed: ${code}`])
        )
      }).pipe(Effect.provide(outboxWith({ slack: slack(server.url), wrongToken: slack(server.url, "xoxb-wrong") })))
    }))

  it.scoped("missing_scope says which scope is needed; HTTP 5xx is retried, another status fails for good", () =>
    Effect.gen(function*() {
      const server = yield* startServer(webApi((request) =>
        request.body.includes("\"down\"")
          ? { status: 503, body: "Service Unavailable" }
          : request.body.includes("\"gone\"")
          ? { status: 410, body: "Gone" }
          : undefined
      ))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const scope = yield* Effect.flip(outbox.deliver(reply({ to: "missing_scope" })))
        expect(scope).toMatchObject({
          retryable: false,
          message: "Slack chat.postMessage failed: missing_scope (needed: chat:write; provided: channels:read)"
        })
        const down = yield* Effect.flip(outbox.deliver(reply({ to: "down" })))
        expect(down).toMatchObject({
          retryable: true,
          message: "Slack chat.postMessage failed: HTTP 503: Service Unavailable"
        })
        const gone = yield* Effect.flip(outbox.deliver(reply({ to: "gone" })))
        expect(gone).toMatchObject({ retryable: false, message: "Slack chat.postMessage failed: HTTP 410: Gone" })
        expect((yield* row(entryOf(gone))).state).toBe("failed_terminal")
      }).pipe(Effect.provide(outboxWith({ slack: slack(server.url) })))
    }))

  it.scoped("the token is in no error, row or log line, even when a response repeats the request", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* startServer((request) => ({ status: 400, body: { echo: request.headers } }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply()))
        expect(failed.message).toContain(`"authorization":"Bearer <redacted>"`)
        const stored = (yield* row(entryOf(failed))).lastError
        const everything = [failed.message, stored, ...logs.lines.map((l) => l.message)].join("\n")
        expect(logs.lines.length).toBeGreaterThan(0)
        expect(everything).not.toContain(TOKEN)
      }).pipe(Effect.provide(outboxWith({ slack: slack(server.url) })), Effect.provide(logs.layer))
    }))

  it.effect("bad options fail the registry's layer under the channel's id; makeConfig reads the token as Redacted", () =>
    Effect.gen(function*() {
      const build = (channel: ReturnType<typeof SlackChannel.make>) =>
        Layer.build(ChannelRegistry.layer({ team: channel })).pipe(
          Effect.provide(NodeHttpClient.layerUndici),
          Effect.scoped,
          Effect.exit
        )
      expect(yield* build(SlackChannel.make({ token: Redacted.make("") }))).toStrictEqual(
        Exit.fail(new InvalidAdapter({ channel: "team", reason: "the token is empty" }))
      )
      const fromConfig = SlackChannel.makeConfig({ token: Config.redacted("SLACK_BOT_TOKEN") })
      const provider = ConfigProvider.fromMap(new Map([["SLACK_BOT_TOKEN", TOKEN]]))
      const registry = yield* Effect.gen(function*() {
        const registry = yield* ChannelRegistry.ChannelRegistry
        return yield* registry.list
      }).pipe(
        Effect.provide(ChannelRegistry.layer({ team: fromConfig }).pipe(Layer.provide(NodeHttpClient.layerUndici))),
        Effect.withConfigProvider(provider)
      )
      expect(registry).toEqual([{ channel: "team", contract: "v1" }])
    }))
})
