/**
 * The Telegram channel, driven through the outbox against a loopback Bot API that answers with the documented
 * shapes (test/fixtures/channels/telegram-bot-api.json): the exact requests, chunking at 4096, media, the rows'
 * states, 429 retry_after through the RecoveryWorker, permanent failures, and the token kept out of everything.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Queue from "effect/Queue"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as TestClock from "effect/TestClock"
import * as Tracer from "effect/Tracer"
import { InvalidAdapter } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import * as TelegramChannel from "../../src/channels/Telegram.js"
import type { EntryId } from "../../src/Delivery.js"
import * as Outbox from "../../src/Outbox.js"
import { captureLogs } from "./fixtures.js"
import type { Received, Reply, Respond } from "./loopback.js"
import { awaitEvent, closedPort, fixtures, outboxWith, row, startServer, startWorker } from "./loopback.js"

const TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
const T0 = Date.UTC(2025, 0, 15, 9, 30)
const SEC = 1000
const api = fixtures<
  | "sendMessage"
  | "sendPhoto"
  | "sendDocument"
  | "tooManyRequests"
  | "botBlocked"
  | "chatNotFound"
  | "migrated"
  | "unauthorized"
  | "internalError"
>("telegram-bot-api.json")

/** The recorded success answer of `method`, with the `n`th message id, so each message has its own. */
const sent = (method: "sendMessage" | "sendPhoto" | "sendDocument", n: number): Reply => {
  const body = structuredClone(api[method].body) as { result: { message_id: number } }
  body.result.message_id = 100 + n
  return { status: 200, body }
}

/**
 * A Bot API double: `/bot<token>/<method>` with a JSON body; a wrong token is 401, an unknown method 404; chats
 * `blocked-user`, `no-such-chat` and `-4001` (a group now a supergroup) answer as Telegram does for them.
 * `override` answers first where it returns a reply.
 */
const botApi =
  (override: (request: Received, n: number) => Reply | undefined = () => undefined): Respond => (request, n) => {
    const custom = override(request, n)
    if (custom !== undefined) return custom
    const match = /^\/bot([^/]+)\/(\w+)$/.exec(request.path)
    if (match === null || match[1] !== TOKEN) return api.unauthorized
    const chat = (JSON.parse(request.body) as { chat_id: string }).chat_id
    if (chat === "blocked-user") return api.botBlocked
    if (chat === "no-such-chat") return api.chatNotFound
    if (chat === "-4001") return api.migrated
    const method = match[2]!
    return method === "sendMessage" || method === "sendPhoto" || method === "sendDocument"
      ? sent(method, n)
      : { status: 404, body: { ok: false, error_code: 404, description: "Not Found" } }
  }

const telegram = (apiUrl: string, extra: Partial<TelegramChannel.Options> = {}) =>
  TelegramChannel.make({ token: Redacted.make(TOKEN), apiUrl, ...extra })

const reply = (extra: Partial<Outbox.DeliverInput> = {}): Outbox.DeliverInput => ({
  channel: "telegram",
  to: "123456789",
  payloads: [{ text: "Hello from the outbox" }],
  ...extra
})

const calls = (requests: ReadonlyArray<Received>) =>
  requests.map((r) => [r.path.replace(`/bot${TOKEN}/`, ""), JSON.parse(r.body) as Record<string, unknown>] as const)

const entryOf = (error: unknown) => (error as { readonly entryId: EntryId }).entryId

/** A text of `n` characters in lines of words, so the chunker cuts at line ends. */
const longText = (n: number) => {
  const line = "The quick brown fox jumps over the lazy dog. ".repeat(2).trim()
  return Array.from({ length: Math.ceil(n / (line.length + 1)) }, () => line).join("\n").slice(0, n)
}

describe("TelegramChannel", () => {
  it.scoped("sendMessage with a topic, a reply and no sound: the exact request; the row is delivered", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const server = yield* startServer(botApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = yield* outbox.deliver(reply({ threadId: "42", replyToId: "7", silent: true }))
        expect(outcome).toMatchObject({
          _tag: "Delivered",
          results: [{ index: 0, kind: "text", messageId: "101", result: { messageId: "101", chatId: "123456789" } }]
        })
        const [request] = server.received()
        expect(request!.method).toBe("POST")
        expect(request!.path).toBe(`/bot${TOKEN}/sendMessage`)
        expect(request!.headers["content-type"]).toBe("application/json")
        expect(JSON.parse(request!.body)).toEqual({
          chat_id: "123456789",
          message_thread_id: 42,
          reply_parameters: { message_id: 7, allow_sending_without_reply: true },
          disable_notification: true,
          text: "Hello from the outbox"
        })
        expect(yield* row(outcome.entryId)).toMatchObject({ state: "delivered", lastError: null })
        // a shipped channel declares its contract: no "v1 adapter" warning at registration
        expect(logs.lines.filter((l) => l.message.includes("v1 outbound adapter contract"))).toEqual([])
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })), Effect.provide(logs.layer))
    }))

  it.scoped("a text over 4096 characters goes out as several messages of at most 4096, in order", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      const text = longText(9000)
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = yield* outbox.deliver(reply({ payloads: [{ text }] }))
        expect(outcome).toMatchObject({ results: [{ messageId: "101" }, { messageId: "102" }, { messageId: "103" }] })
        const texts = calls(server.received()).map(([method, body]) => [method, body["text"] as string] as const)
        expect(texts.map(([method]) => method)).toEqual(["sendMessage", "sendMessage", "sendMessage"])
        expect(texts.every(([, t]) => t.length <= TelegramChannel.TEXT_LIMIT)).toBe(true)
        expect(texts.map(([, t]) => t).join("")).toBe(text)
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })))
    }))

  it.scoped("429 retry_after: the messages already sent stay sent; the worker sends the rest retry_after later", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const server = yield* startServer(botApi((_, n) => (n === 2 ? api.tooManyRequests : undefined)))
      const text = longText(9000)
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply({ payloads: [{ text }] })))
        expect(failed).toMatchObject({
          _tag: "SendFailed",
          retryable: true,
          retryAfterMs: 7 * SEC,
          willRetryAt: T0 + 7 * SEC,
          message: "Telegram sendMessage failed (429): Too Many Requests: retry after 7"
        })
        const id = entryOf(failed)
        expect(yield* row(id)).toMatchObject({ state: "failed_retryable", partsDelivered: 1 })

        yield* startWorker()
        yield* TestClock.adjust(7 * SEC - 1)
        expect((yield* outbox.runRecoveryPass).claimed).toBe(0)
        // a pass at the retry time (the worker's own interval pass may run first under load; either sends it once)
        yield* awaitEvent(id, ["delivered"], Effect.zipRight(TestClock.adjust(1), outbox.runRecoveryPass))
        const texts = calls(server.received()).map(([, body]) => body["text"] as string)
        // chunk 1, chunk 2 (429), then chunk 2 again and chunk 3: the first is not repeated
        expect(texts).toHaveLength(4)
        expect(texts[2]).toBe(texts[1])
        expect([texts[0], texts[2], texts[3]].join("")).toBe(text)
        expect(yield* row(id)).toMatchObject({ state: "delivered", partsDelivered: 3 })
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })))
    }))

  it.scoped("media: sendPhoto for an image with the text as its caption, sendDocument for anything else", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        yield* outbox.deliver(reply({
          threadId: "5",
          payloads: [{
            text: "Q3 numbers",
            mediaUrls: ["https://example.com/chart.PNG", "https://example.com/report.pdf?download=1"]
          }]
        }))
        expect(calls(server.received())).toEqual([
          ["sendPhoto", {
            chat_id: "123456789",
            message_thread_id: 5,
            photo: "https://example.com/chart.PNG",
            caption: "Q3 numbers"
          }],
          ["sendDocument", {
            chat_id: "123456789",
            message_thread_id: 5,
            document: "https://example.com/report.pdf?download=1"
          }]
        ])
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })))
    }))

  it.scoped("a caption over 1024 characters: the photo, then the text as a message in the same place", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      const text = longText(1500)
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = yield* outbox.deliver(reply({
          replyToId: "9",
          payloads: [{ text, mediaUrls: ["https://example.com/a.jpg"] }]
        }))
        expect(outcome).toMatchObject({ results: [{ messageId: "101", result: { captionMessageIds: ["102"] } }] })
        const common = { chat_id: "123456789", reply_parameters: { message_id: 9, allow_sending_without_reply: true } }
        expect(calls(server.received())).toEqual([
          ["sendPhoto", { ...common, photo: "https://example.com/a.jpg" }],
          ["sendMessage", { ...common, text }]
        ])
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })))
    }))

  it.scoped("bot blocked (403), chat not found (400), a wrong token (401): failed for good at once, in Telegram's words", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const fail = (input: Outbox.DeliverInput) =>
          Effect.gen(function*() {
            const failed = yield* Effect.flip(outbox.deliver(input))
            expect(failed).toMatchObject({ _tag: "SendFailed", retryable: false })
            const entry = yield* row(entryOf(failed))
            return [entry.state, entry.terminalReason, entry.lastError] as const
          })
        expect(yield* fail(reply({ to: "blocked-user" }))).toEqual([
          "failed_terminal",
          "permanent_error",
          "Telegram sendMessage failed (403): Forbidden: bot was blocked by the user"
        ])
        expect(yield* fail(reply({ to: "no-such-chat" }))).toEqual([
          "failed_terminal",
          "permanent_error",
          "Telegram sendMessage failed (400): Bad Request: chat not found"
        ])
        expect(yield* fail(reply({ channel: "wrongToken" }))).toEqual([
          "failed_terminal",
          "permanent_error",
          "Telegram sendMessage failed (401): Unauthorized"
        ])
        expect(server.received()).toHaveLength(3)
      }).pipe(Effect.provide(outboxWith({
        telegram: telegram(server.url),
        wrongToken: TelegramChannel.make({ token: Redacted.make("654321:wrong"), apiUrl: server.url })
      })))
    }))

  it.scoped("a group that became a supergroup: failed for good, the error names migrate_to_chat_id", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply({ to: "-4001" })))
        expect(failed).toMatchObject({ _tag: "SendFailed", retryable: false })
        expect((yield* row(entryOf(failed))).lastError).toBe(
          "Telegram sendMessage failed (400): Bad Request: group chat was upgraded to a supergroup chat " +
            "(migrate_to_chat_id -1001234567890: the group is now a supergroup; send to that chat id)"
        )
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })))
    }))

  it.scoped("a 500 from the Bot API, a proxy's 502 page, a 200 that is not the Bot API's: all retried, pages quoted on one line", () =>
    Effect.gen(function*() {
      const page = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>"
      const server = yield* startServer(
        botApi((request) =>
          request.body.includes("proxy")
            ? { status: 502, body: page }
            : request.body.includes("captive")
            ? { status: 200, body: "<html>Sign in to the hotel wifi</html>" }
            : api.internalError
        )
      )
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const internal = yield* Effect.flip(outbox.deliver(reply({ to: "a" })))
        expect(internal).toMatchObject({
          retryable: true,
          message: "Telegram sendMessage failed (500): Internal Server Error"
        })
        const proxy = yield* Effect.flip(outbox.deliver(reply({ to: "b", payloads: [{ text: "via proxy" }] })))
        expect(proxy).toMatchObject({
          retryable: true,
          message:
            "Telegram sendMessage failed: HTTP 502: <html> <head><title>502 Bad Gateway</title></head> <body>nginx</body> </html>"
        })
        expect((yield* row(entryOf(proxy))).state).toBe("failed_retryable")
        // a 200 that is not the Bot API's answer may hide a sent message: at-least-once retries it
        const captive = yield* Effect.flip(outbox.deliver(reply({ to: "c", payloads: [{ text: "captive" }] })))
        expect(captive).toMatchObject({
          retryable: true,
          message: "Telegram sendMessage: HTTP 200 without a Bot API answer: <html>Sign in to the hotel wifi</html>"
        })
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })))
    }))

  it.scoped("a thread or reply id that is not an integer fails for good, before any request", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply({ threadId: "general" })))
        expect(failed).toMatchObject({
          retryable: false,
          message: `Telegram: threadId "general" is not a Telegram message id (an integer)`
        })
        expect(server.received()).toEqual([])
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })))
    }))

  it.scoped("the token, which travels in the URL path, is in no error, row or log line", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      // a proxy's 404 page that repeats the path it was asked for
      const server = yield* startServer((request) => ({
        status: 404,
        body: `<h1>Not Found</h1><p>No route for ${request.path} (${encodeURIComponent(request.path)})</p>`
      }))
      const unreachable = yield* closedPort
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const notFound = yield* Effect.flip(outbox.deliver(reply()))
        const down = yield* Effect.flip(outbox.deliver(reply({ channel: "down" })))
        expect(notFound.message).toBe(
          "Telegram sendMessage failed: HTTP 404: <h1>Not Found</h1><p>No route for /bot<redacted>/sendMessage " +
            "(%2Fbot<redacted>%2FsendMessage)</p>"
        )
        expect(down).toMatchObject({ retryable: true })
        expect(down.message).toMatch(new RegExp(`^Telegram sendMessage: could not reach ${unreachable} \\(`))
        const rows = yield* Effect.forEach([notFound, down], (e) => row(entryOf(e)))
        const everything = [
          notFound.message,
          down.message,
          ...rows.map((r) => r.lastError),
          ...logs.lines.map((l) => l.message)
        ].join("\n")
        expect(logs.lines.length).toBeGreaterThan(0)
        for (const secret of [TOKEN, encodeURIComponent(TOKEN), TOKEN.split(":")[1]!]) {
          expect(everything).not.toContain(secret)
        }
      }).pipe(
        Effect.provide(outboxWith({ telegram: telegram(server.url), down: telegram(unreachable) })),
        Effect.provide(logs.layer)
      )
    }))

  it.scoped("spans name the API call and the origin; no span (the platform's own client span is off) carries the token", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      const native = yield* Effect.tracer
      const spans: Array<Tracer.Span> = []
      const recording = Tracer.make({
        span: (...args) => {
          const span = native.span(...args)
          spans.push(span)
          return span
        },
        context: (f, fiber) => native.context(f, fiber)
      })
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        yield* outbox.deliver(reply())
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) })), Effect.withTracer(recording))
      const call = spans.find((s) => s.name === "Telegram sendMessage")
      expect(call?.kind).toBe("client")
      expect(Object.fromEntries(call!.attributes)).toMatchObject({
        "http.request.method": "POST",
        "server.address": server.url
      })
      expect(spans.filter((s) => s.name.startsWith("http.client"))).toEqual([])
      const recorded = spans.flatMap((s) => [s.name, ...[...s.attributes.values()].map(String)]).join("\n")
      expect(recorded).not.toContain(TOKEN)
    }))

  it.scoped("the adapter's own rate limits (no entry in rateLimits): a reply of three messages to a chat goes out one per second", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const arrived = yield* Queue.unbounded<number>()
      const server = yield* startServer(botApi((_, n) => {
        Queue.unsafeOffer(arrived, n)
        return undefined
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const throttled = yield* Queue.unbounded<Outbox.OutboxEvent>()
        yield* Effect.forkScoped(Stream.runForEach(
          outbox.events,
          (event) => event._tag === "throttled" ? Queue.offer(throttled, event) : Effect.void
        ))
        yield* Effect.yieldNow()
        const delivering = yield* Effect.fork(outbox.deliver(reply({ payloads: [{ text: longText(9000) }] })))
        const times: Array<number> = []
        for (const n of [1, 2, 3]) {
          yield* Queue.take(arrived)
          times.push(yield* Clock.currentTimeMillis)
          if (n === 3) break
          // the next message waits for the chat's token, a second after this one
          expect(yield* Queue.take(throttled)).toMatchObject({ channel: "telegram", waitMs: SEC })
          yield* TestClock.adjust(SEC)
        }
        expect(times).toEqual([T0, T0 + SEC, T0 + 2 * SEC])
        expect(yield* Fiber.join(delivering)).toMatchObject({ _tag: "Delivered" })
        expect(calls(server.received()).map(([method]) => method)).toEqual([
          "sendMessage",
          "sendMessage",
          "sendMessage"
        ])
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url) }, { rateLimits: {} })))
    }))

  it.scoped("parseMode sets parse_mode on texts and captions", () =>
    Effect.gen(function*() {
      const server = yield* startServer(botApi())
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        yield* outbox.deliver(reply({ payloads: [{ text: "*bold*", mediaUrls: ["https://example.com/a.webp"] }] }))
        yield* outbox.deliver(reply({ payloads: [{ text: "_italic_" }] }))
        expect(calls(server.received()).map(([method, body]) => [method, body["parse_mode"]])).toEqual([
          ["sendPhoto", "MarkdownV2"],
          ["sendMessage", "MarkdownV2"]
        ])
      }).pipe(Effect.provide(outboxWith({ telegram: telegram(server.url, { parseMode: "MarkdownV2" }) })))
    }))

  it.effect("bad options fail the registry's layer under the channel's id; makeConfig reads the token as Redacted", () =>
    Effect.gen(function*() {
      const build = (channel: TelegramChannel.Options | ReturnType<typeof TelegramChannel.makeConfig>) =>
        Layer.build(ChannelRegistry.layer({
          tg: "token" in channel ? TelegramChannel.make(channel as TelegramChannel.Options) : channel
        })).pipe(Effect.provide(NodeHttpClient.layerUndici), Effect.scoped, Effect.exit)
      expect(yield* build({ token: Redacted.make(" ") })).toStrictEqual(
        Exit.fail(new InvalidAdapter({ channel: "tg", reason: "the bot token is empty" }))
      )
      expect(yield* build({ token: Redacted.make(TOKEN), apiUrl: "api.telegram.org" })).toStrictEqual(
        Exit.fail(new InvalidAdapter({ channel: "tg", reason: "apiUrl must be an http(s) URL" }))
      )
      const fromConfig = TelegramChannel.makeConfig({ token: Config.redacted("TELEGRAM_BOT_TOKEN") })
      const withToken = ConfigProvider.fromMap(new Map([["TELEGRAM_BOT_TOKEN", TOKEN]]))
      expect(Exit.isSuccess(yield* build(fromConfig).pipe(Effect.withConfigProvider(withToken)))).toBe(true)
      const missing = yield* build(fromConfig).pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map())))
      expect(String(missing)).toContain("TELEGRAM_BOT_TOKEN")
    }))
})
