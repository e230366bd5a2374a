/**
 * The webhook channel, driven through the outbox against a loopback receiver: the exact requests (headers, signed
 * body), the `standardwebhooks` reference implementation verifying them, the rows' states, retries with Retry-After
 * through the RecoveryWorker, permanent failures, timeouts, and secrets kept out of errors and logs.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { describe, expect, it, vi } from "@effect/vitest"
import * as Config from "effect/Config"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as TestClock from "effect/TestClock"
import { Webhook } from "standardwebhooks"
import { InvalidAdapter } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import { parseRetryAfter } from "../../src/channels/internal/http.js"
import * as WebhookChannel from "../../src/channels/Webhook.js"
import type { EntryId } from "../../src/Delivery.js"
import * as Outbox from "../../src/Outbox.js"
import { captureLogs } from "./fixtures.js"
import type { Received } from "./loopback.js"
import { awaitEvent, closedPort, outboxWith, row, startServer, startWorker } from "./loopback.js"

/** The example secret of the Standard Webhooks spec's reference libraries. */
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
const T0 = Date.UTC(2025, 0, 15, 9, 30)
const SEC = 1000

const webhook = (url: string) => WebhookChannel.make({ url, secret: Redacted.make(SECRET) })

/** The reference implementation's verdict on a request, with its clock at `now` (it reads `Date.now()`). */
const verify = (request: Received, now: number): unknown => {
  vi.useFakeTimers({ toFake: ["Date"], now })
  try {
    return new Webhook(SECRET).verify(request.body, request.headers)
  } finally {
    vi.useRealTimers()
  }
}

const reply = (extra: Partial<Outbox.DeliverInput> = {}): Outbox.DeliverInput => ({
  channel: "alerts",
  to: "ops",
  payloads: [{ text: "Disk full on db-1" }],
  ...extra
})

describe("WebhookChannel", () => {
  it.scoped("POSTs each payload once as signed JSON that the reference verifier accepts; the row is delivered", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const server = yield* startServer(() => ({ status: 202, body: { accepted: true } }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = yield* outbox.deliver(reply({
          threadId: "incident-7",
          replyToId: "msg-3",
          silent: true,
          payloads: [
            { text: "Disk full on db-1", mediaUrls: ["https://example.com/graph.png"], channelData: { severity: 2 } },
            { text: "Paging the on-call" }
          ],
          idempotencyKey: "turn-1"
        }))
        expect(outcome).toMatchObject({
          _tag: "Delivered",
          results: [{ index: 0, messageId: "turn-1.0" }, { index: 1, messageId: "turn-1.1" }]
        })
        const requests = server.received()
        expect(requests.map((r) => [r.method, r.path])).toEqual([
          ["POST", "/hooks/outbox?source=gateway"],
          ["POST", "/hooks/outbox?source=gateway"]
        ])
        const [first, second] = requests
        expect(first!.headers).toMatchObject({
          "content-type": "application/json",
          "webhook-id": "turn-1.0",
          "webhook-timestamp": String(T0 / SEC)
        })
        expect(JSON.parse(first!.body)).toEqual({
          type: "message.reply",
          timestamp: "2025-01-15T09:30:00.000Z",
          data: {
            channel: "alerts",
            to: "ops",
            threadId: "incident-7",
            replyToId: "msg-3",
            silent: true,
            text: "Disk full on db-1",
            mediaUrls: ["https://example.com/graph.png"],
            channelData: { severity: 2 },
            entryId: outcome.entryId,
            idempotencyKey: "turn-1",
            partIndex: 0,
            partCount: 2,
            attempt: 1
          }
        })
        expect(second!.headers["webhook-id"]).toBe("turn-1.1")
        expect(JSON.parse(second!.body)).toMatchObject({ data: { text: "Paging the on-call", partIndex: 1 } })
        // the reference implementation: the same signature, and verify() accepts both and returns the body
        for (const request of requests) {
          expect(request.headers["webhook-signature"]).toBe(
            new Webhook(SECRET).sign(request.headers["webhook-id"]!, new Date(T0), request.body)
          )
          expect(verify(request, T0)).toEqual(JSON.parse(request.body))
        }
        // and refuses a body changed on the way
        expect(() => verify({ ...first!, body: first!.body.replace("db-1", "db-2") }, T0)).toThrow(
          "No matching signature found"
        )
        expect(yield* row(outcome.entryId)).toMatchObject({ state: "delivered", attemptCount: 0, lastError: null })
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(`${server.url}/hooks/outbox?source=gateway`) })))
    }))

  it.scoped("webhook-id is the idempotency key URL-encoded (a header value), or the entry id without one", () =>
    Effect.gen(function*() {
      const server = yield* startServer(() => ({ status: 200 }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        yield* outbox.deliver(reply({ to: "a", idempotencyKey: "chat:42/turn 3 ✓" }))
        const plain = yield* outbox.deliver(reply({ to: "b" }))
        expect(server.received().map((r) => r.headers["webhook-id"])).toEqual([
          "chat%3A42%2Fturn%203%20%E2%9C%93.0",
          `${plain.entryId}.0`
        ])
        for (const request of server.received()) expect(verify(request, 0)).toBeTruthy()
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(server.url) })))
    }))

  it.scoped("503 with Retry-After: 120 waits 120 s; the worker resends with the same webhook-id, a new timestamp and signature", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const server = yield* startServer((_, n) =>
        n === 1 ? { status: 503, headers: { "retry-after": "120" }, body: "upstream busy" } : { status: 200 }
      )
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply({ idempotencyKey: "turn-9" })))
        const message = `webhook ${server.url} answered HTTP 503: upstream busy`
        expect(failed).toMatchObject({
          _tag: "SendFailed",
          retryable: true,
          retryAfterMs: 120 * SEC,
          willRetryAt: T0 + 120 * SEC,
          message
        })
        const id = (failed as { readonly entryId: EntryId }).entryId
        expect(yield* row(id)).toMatchObject({
          state: "failed_retryable",
          nextAttemptAt: T0 + 120 * SEC,
          lastError: message
        })

        yield* startWorker()
        yield* TestClock.adjust(119 * SEC)
        expect((yield* outbox.runRecoveryPass).claimed).toBe(0) // not due yet
        expect(server.received()).toHaveLength(1)
        // a pass at the retry time (the worker's own interval pass may run first under load; either sends it once)
        yield* awaitEvent(id, ["delivered"], Effect.zipRight(TestClock.adjust(SEC), outbox.runRecoveryPass))

        const [first, second] = server.received()
        expect(second!.headers["webhook-id"]).toBe("turn-9.0")
        expect(second!.headers["webhook-timestamp"]).toBe(String(T0 / SEC + 120))
        expect(second!.headers["webhook-signature"]).not.toBe(first!.headers["webhook-signature"])
        // a wait the receiver asked for is not a failed attempt: the resend is still attempt 1 of maxAttempts
        expect(verify(second!, T0 + 120 * SEC)).toMatchObject({ data: { idempotencyKey: "turn-9", attempt: 1 } })
        expect(yield* row(id)).toMatchObject({ state: "delivered", attemptCount: 0, lastError: message })
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(server.url) })))
    }))

  it.scoped("429 with Retry-After as an HTTP-date waits until that date", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(T0)
      const server = yield* startServer(() => ({
        status: 429,
        headers: { "retry-after": new Date(T0 + 90 * SEC).toUTCString() },
        body: { error: "slow down" }
      }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply()))
        expect(failed).toMatchObject({ retryable: true, retryAfterMs: 90 * SEC, willRetryAt: T0 + 90 * SEC })
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(server.url) })))
    }))

  it("Retry-After: delta-seconds, an HTTP-date (a past one is now), anything else ignored", () => {
    expect(parseRetryAfter("120", T0)).toBe(120_000)
    expect(parseRetryAfter(" 0 ", T0)).toBe(0)
    expect(parseRetryAfter(new Date(T0 + 5_000).toUTCString(), T0)).toBe(5_000)
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", T0)).toBe(0)
    expect(parseRetryAfter("soon", T0)).toBeUndefined()
    expect(parseRetryAfter("-5", T0)).toBeUndefined()
    expect(parseRetryAfter(undefined, T0)).toBeUndefined()
  })

  it.scoped("408, 429 and 5xx leave the row for a retry; 410 and every other 4xx (and a redirect) fail it for good", () =>
    Effect.gen(function*() {
      // the receiver answers with the status named by the reply's recipient
      const server = yield* startServer((request) => {
        const status = Number((JSON.parse(request.body) as { data: { to: string } }).data.to)
        return { status, headers: status === 301 ? { location: "https://elsewhere.example" } : {}, body: { status } }
      })
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = (status: number) =>
          Effect.gen(function*() {
            const failed = yield* Effect.flip(outbox.deliver(reply({ to: String(status) })))
            const entry = yield* row((failed as { readonly entryId: EntryId }).entryId)
            return [status, entry.state, entry.terminalReason] as const
          })
        const retried = yield* Effect.forEach([408, 429, 500, 502, 503, 504], outcome)
        expect(retried).toEqual([408, 429, 500, 502, 503, 504].map((s) => [s, "failed_retryable", null]))
        const permanent = yield* Effect.forEach([400, 401, 403, 404, 409, 410, 422, 301], outcome)
        expect(permanent).toEqual(
          [400, 401, 403, 404, 409, 410, 422, 301].map((s) => [s, "failed_terminal", "permanent_error"])
        )
        const gone = yield* outbox.list({ state: "failed_terminal", limit: 100 })
        expect(gone.map((e) => e.lastError)).toContain(
          `webhook ${server.url} answered HTTP 410 Gone (the endpoint is gone): {"status":410}`
        )
        expect(gone.map((e) => e.lastError)).toContain(
          `webhook ${server.url} answered HTTP 301 (a redirect; webhooks do not follow them): {"status":301}`
        )
        expect(server.received()).toHaveLength(14) // one request each, nothing retried in between
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(server.url) })))
    }))

  it.scoped("the response body is quoted in the error on one line and cut at 500 characters", () =>
    Effect.gen(function*() {
      const server = yield* startServer(() => ({ status: 422, body: `field\n  "to" is invalid: ${"x".repeat(5000)}` }))
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply()))
        const quoted = `field "to" is invalid: ${"x".repeat(500 - 23)}…`
        expect(failed.message).toBe(`webhook ${server.url} answered HTTP 422: ${quoted}`)
        expect((yield* row((failed as { readonly entryId: EntryId }).entryId)).lastError).toBe(failed.message)
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(server.url) })))
    }))

  it.scoped("a receiver that cannot be reached is a retryable failure naming only its origin", () =>
    Effect.gen(function*() {
      const url = yield* closedPort
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply()))
        expect(failed).toMatchObject({ _tag: "SendFailed", retryable: true })
        expect(failed.message).toMatch(new RegExp(`^webhook: could not reach ${url} \\(.*ECONNREFUSED`))
        expect(failed.message).not.toContain("/private/path")
        expect(yield* row((failed as { readonly entryId: EntryId }).entryId)).toMatchObject({
          state: "failed_retryable"
        })
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(`${url}/private/path`) })))
    }))

  it.scoped("a receiver that never answers: the outbox's sendTimeout aborts the request and the row waits for a retry", () =>
    Effect.gen(function*() {
      const server = yield* startServer(() => "hang")
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const live = yield* Effect.fork(Effect.flip(outbox.deliver(reply())))
        yield* server.arrived(1)
        yield* TestClock.adjust(10 * SEC)
        const failed = yield* Fiber.join(live)
        expect(failed).toMatchObject({ _tag: "SendFailed", retryable: true })
        expect(failed.message).toContain("timed out after 10s")
        yield* server.abortedCount(1) // the client closed the connection: nothing is left hanging
        expect(yield* row((failed as { readonly entryId: EntryId }).entryId)).toMatchObject({
          state: "failed_retryable"
        })
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(server.url) }, { sendTimeout: "10 seconds" })))
    }))

  it.scoped("neither the secret nor the URL's path and query appear in errors, rows or logs", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      // a receiver that echoes everything it got, as a debugging endpoint might
      const server = yield* startServer((request) => ({ status: 400, body: { echo: request } }))
      const url = `${server.url}/services/T0001/B0002/s3cr3tPathToken?key=qu3ryK3y`
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const failed = yield* Effect.flip(outbox.deliver(reply()))
        const stored = (yield* row((failed as { readonly entryId: EntryId }).entryId)).lastError ?? ""
        expect(stored).toContain("<redacted>")
        const everything = [failed.message, stored, ...logs.lines.map((l) => l.message)].join("\n")
        expect(logs.lines.some((l) => l.message.includes(server.url))).toBe(true) // the failure was logged
        for (const secret of ["s3cr3tPathToken", "qu3ryK3y", SECRET, SECRET.slice("whsec_".length)]) {
          expect(everything).not.toContain(secret)
        }
      }).pipe(Effect.provide(outboxWith({ alerts: webhook(url) })), Effect.provide(logs.layer))
    }))

  it.effect("bad options fail the registry's layer with InvalidAdapter under the channel's id, never quoting the secret", () =>
    Effect.gen(function*() {
      const build = (options: WebhookChannel.Options) =>
        Layer.build(ChannelRegistry.layer({ alerts: WebhookChannel.make(options) })).pipe(
          Effect.provide(NodeHttpClient.layerUndici),
          Effect.scoped,
          Effect.exit
        )
      expect(yield* build({ url: "ftp://example.com/hook", secret: Redacted.make(SECRET) })).toStrictEqual(
        Exit.fail(new InvalidAdapter({ channel: "alerts", reason: "url must be an http(s) URL" }))
      )
      const badSecret = "whsec_not*base64!"
      const exit = yield* build({ url: "https://example.com/hook", secret: Redacted.make(badSecret) })
      expect(exit).toStrictEqual(Exit.fail(
        new InvalidAdapter({
          channel: "alerts",
          reason: `the secret must be a Standard Webhooks secret ("whsec_" followed by base64)`
        })
      ))
      expect(String(exit)).not.toContain("not*base64")
    }))

  it.scoped("makeConfig reads the URL and the secret from Config (the secret as Redacted)", () =>
    Effect.gen(function*() {
      const server = yield* startServer(() => ({ status: 200 }))
      const provider = ConfigProvider.fromMap(new Map([["WEBHOOK_URL", server.url], ["WEBHOOK_SECRET", SECRET]]))
      const channel = WebhookChannel.makeConfig({
        url: Config.string("WEBHOOK_URL"),
        secret: Config.redacted("WEBHOOK_SECRET")
      })
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const outcome = yield* outbox.deliver(reply())
        expect(outcome._tag).toBe("Delivered")
        expect(verify(server.received()[0]!, 0)).toMatchObject({ data: { text: "Disk full on db-1" } })
      }).pipe(Effect.provide(outboxWith({ alerts: channel })), Effect.withConfigProvider(provider))
    }))
})
