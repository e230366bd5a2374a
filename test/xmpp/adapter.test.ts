/**
 * The XMPP channel through the outbox, against a real Prosody (see prosody.ts) and a real reading client: what a
 * reply looks like on the wire, that a reply counts as sent only once the server acknowledged it, one connection per
 * account, and the connections that must fail (a wrong password, a server without stream management, nothing
 * listening). The checks of a reply that can never be sent, and of the options, need no server.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as crypto from "node:crypto"
import * as net from "node:net"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import * as XmppChannel from "../../src/channels/Xmpp.js"
import type { EntryId } from "../../src/Delivery.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as Prosody from "./prosody.js"
import * as Reader from "./reader.js"

const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)

/** An outbox (memory store, quick retries) whose only channel, "xmpp", is the XMPP channel with these options. */
const outboxWith = (options: XmppChannel.OptionsInput) =>
  Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
    MemoryOutboxRepo.layer,
    Layer.unwrapScoped(Effect.map(XmppChannel.make(options), (xmpp) => ChannelRegistry.layer({ xmpp }))),
    OutboxConfig.layer({ retryJitter: false, retryDelays: ["100 millis"], sendTimeout: "20 seconds" })
  )))

/** Log lines, as text with their annotations, for the tests that check what is (not) logged. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ annotations, message }) => {
      lines.push(`${String(message)} ${JSON.stringify(Object.fromEntries(annotations))}`)
    })
  )
  return { lines, logger }
}

/** Options for one account, with short timeouts (a real server on loopback answers in milliseconds). */
const account = (
  service: string,
  domain: string,
  username: string,
  password: string,
  extra: Partial<XmppChannel.OptionsInput> = {},
  name = username
): XmppChannel.OptionsInput => ({
  accounts: { [name]: { service, domain, username, password: Redacted.make(password) } },
  connectTimeout: "3 seconds",
  connectWait: "5 seconds",
  reconnectBase: "100 millis",
  reconnectMax: "500 millis",
  ...extra
})

/** Waits until the account's connection attempts have failed more than `before` times (10 s deadline). */
const connectFailedSince = (name: string, before: number) =>
  counter(XmppChannel.metrics.connectFailures(name)).pipe(
    Effect.repeat({ schedule: Schedule.spaced(Duration.millis(50)), until: (n) => n > before }),
    Effect.timeoutFail({ duration: Duration.seconds(10), onTimeout: () => new Error(`no failed attempt of ${name}`) })
  )

/** A loopback port with nothing listening. */
const closedPort = Effect.async<number>((resume) => {
  const server = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

describe("the XMPP channel without a server", () => {
  it.live(
    "an unsendable reply fails for good before anything is written: not a JID, nothing to say, too large, no such account",
    () =>
      Effect.gen(function*() {
        const port = yield* closedPort
        const options = account(`xmpp://127.0.0.1:${port}`, "nowhere.test", "bot", "pw", { maxStanzaBytes: 2_000 })
        const outcomes = yield* Effect.gen(function*() {
          const outbox = yield* Outbox.Outbox
          const fail = (request: Outbox.DeliverInput) => Effect.flip(outbox.deliver(request))
          return [
            yield* fail({ channel: "xmpp", to: "not a jid", payloads: [{ text: "hi" }] }),
            yield* fail({ channel: "xmpp", to: "@example.com", accountId: "bot", payloads: [{ text: "hi" }] }),
            yield* fail({ channel: "xmpp", to: "user@example.com", payloads: [{ channelData: { card: 1 } }] }),
            yield* fail({ channel: "xmpp", to: "user@example.com", payloads: [{ text: "x".repeat(3_000) }] }),
            yield* fail({ channel: "xmpp", to: "user@example.com", accountId: "other", payloads: [{ text: "hi" }] })
          ]
        }).pipe(Effect.provide(outboxWith(options)))
        expect(outcomes.map((e) => [e._tag, "retryable" in e ? e.retryable : undefined, e.message])).toEqual([
          ["SendFailed", false, `recipient is not a valid JID: "not a jid"`],
          ["SendFailed", false, `recipient is not a valid JID: "@example.com"`],
          ["SendFailed", false, "nothing to send over XMPP: the payload has no text or media"],
          [
            "SendFailed",
            false,
            expect.stringMatching(/^the message stanza is \d+ bytes, over maxStanzaBytes \(2000\)$/)
          ],
          ["SendFailed", false, `no XMPP account "other" is configured`]
        ])
      }),
    20_000
  )

  it.live(
    "nothing listening: a send waits connectWait, then fails as retryable naming the service; attempts are counted",
    () =>
      Effect.gen(function*() {
        const port = yield* closedPort
        const service = `xmpp://127.0.0.1:${port}`
        const failures = yield* counter(XmppChannel.metrics.connectFailures("nobody"))
        const error = yield* Effect.gen(function*() {
          const outbox = yield* Outbox.Outbox
          return yield* Effect.flip(
            outbox.deliver({ channel: "xmpp", to: "u@example.com", payloads: [{ text: "hi" }] })
          )
        }).pipe(
          Effect.provide(outboxWith(account(service, "nowhere.test", "nobody", "pw", { connectWait: "300 millis" })))
        )
        expect(error).toMatchObject({ _tag: "SendFailed", retryable: true })
        expect(error.message).toContain(`XMPP: not connected to ${service} as nobody@nowhere.test (`)
        expect(error.message).toMatch(/ECONNREFUSED/)
        expect((yield* counter(XmppChannel.metrics.connectFailures("nobody"))) - failures).toBeGreaterThanOrEqual(1)
      }),
    20_000
  )

  it.effect("options are checked when the channel is made, naming the field and never printing a password", () =>
    Effect.gen(function*() {
      const bad = (options: unknown) =>
        Effect.flip(Effect.scoped(XmppChannel.make(options as XmppChannel.OptionsInput)))
      const good = { service: "xmpp://localhost", domain: "d", username: "u", password: Redacted.make("s3cret-pw") }
      const plain = yield* bad({ accounts: { a: { ...good, password: "s3cret-pw" } } })
      expect(plain._tag).toBe("InvalidOptions")
      expect(plain.message).toContain("password must be a Redacted string")
      expect(plain.message).not.toContain("s3cret-pw")
      const service = yield* bad({ accounts: { a: { ...good, service: "http://x" } }, ackTimeout: "soon" })
      expect(service.message).toContain("service must be an xmpp://, xmpps://, ws:// or wss:// URL")
      expect(service.message).toContain(`expected a duration such as "5 seconds" or a number of millis`)
      expect(service.message).not.toContain("s3cret-pw")
      expect((yield* bad({ accounts: {} })).message).toContain("accounts must name at least one account")
    }))

  it.effect("config() reads XMPP_* (the password as Redacted) into one account named default", () =>
    Effect.gen(function*() {
      const options = yield* XmppChannel.config().pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(
          new Map([
            ["XMPP_SERVICE", "xmpps://chat.example.com:5223"],
            ["XMPP_DOMAIN", "example.com"],
            ["XMPP_USERNAME", "bot"],
            ["XMPP_PASSWORD", "s3cret-pw"],
            ["XMPP_ACK_TIMEOUT", "5 seconds"]
          ]),
          { pathDelim: "_" }
        ))
      )
      const account = options.accounts["default"]!
      expect(Redacted.isRedacted(account.password)).toBe(true)
      expect(Redacted.value(account.password)).toBe("s3cret-pw")
      expect(String(account.password)).not.toContain("s3cret-pw")
      expect({ ...account, password: undefined }).toEqual({
        service: "xmpps://chat.example.com:5223",
        domain: "example.com",
        username: "bot",
        password: undefined
      })
      expect(Duration.toMillis(Duration.decode(options.ackTimeout as Duration.DurationInput))).toBe(5_000)
    }))
})

const missing = Prosody.unavailable()
if (missing !== undefined && Prosody.required()) throw new Error(`these tests need Prosody (${missing})`)

/** The server and the reader every test below shares. */
interface Server {
  readonly prosody: Prosody.Prosody
  readonly reader: Reader.Reader
  readonly passwords: Record<string, string>
}

;(missing === undefined ? describe : describe.skip)("the XMPP channel against Prosody", () => {
  const scope = Effect.runSync(Scope.make())
  let server: Server
  beforeAll(() =>
    Effect.gen(function*() {
      const prosody = yield* Prosody.make
      const passwords = Object.fromEntries(["gateway", "second", "reader"].map((u) => [u, crypto.randomUUID()]))
      for (const user of ["gateway", "second"]) yield* prosody.register(user, Prosody.GATEWAY_HOST, passwords[user]!)
      yield* prosody.register("reader", Prosody.READER_HOST, passwords["reader"]!)
      yield* prosody.start
      const reader = yield* Reader.start({
        service: prosody.service,
        domain: Prosody.READER_HOST,
        username: "reader",
        password: passwords["reader"]!
      })
      server = { prosody, reader, passwords }
    }).pipe(Scope.extend(scope), Effect.runPromise), 30_000)
  afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

  const gatewayOptions = (extra: Partial<XmppChannel.OptionsInput> = {}) =>
    account(server.prosody.service, Prosody.GATEWAY_HOST, "gateway", server.passwords["gateway"]!, extra)

  const arrivalsOf = (id: string) => server.reader.arrivals().filter((a) => a.id === id)

  it.live(
    "a reply is one <message/> per payload, with its thread, reply, media and a stable id; Delivered once acked",
    () =>
      Effect.gen(function*() {
        const acked = yield* counter(XmppChannel.metrics.acked("gateway"))
        const before = server.reader.arrivals().length
        const outcome = yield* Effect.gen(function*() {
          const outbox = yield* Outbox.Outbox
          return yield* outbox.deliver({
            channel: "xmpp",
            to: server.reader.jid,
            threadId: "thread-7",
            replyToId: "their-msg-1",
            idempotencyKey: "turn-1",
            payloads: [
              { text: "Here is the chart\u0007", mediaUrls: ["https://example.com/chart.png"] },
              { text: "Anything else? <b>&</b>" }
            ]
          })
        }).pipe(Effect.provide(outboxWith(gatewayOptions())))
        if (outcome._tag !== "Delivered") return expect.fail(`expected Delivered, got ${outcome._tag}`)
        expect(outcome.results.map((r) => r.messageId)).toEqual(["turn-1:0", "turn-1:1"])
        // the server acked both before deliver returned
        expect((yield* counter(XmppChannel.metrics.acked("gateway"))) - acked).toBe(2)
        yield* server.reader.awaitCopies("turn-1:1", 1, "10 seconds")
        const arrived = server.reader.arrivals().slice(before)
        expect(arrived.map((a) => [a.id, a.thread, a.body])).toEqual([
          ["turn-1:0", "thread-7", "Here is the chart\uFFFD\nhttps://example.com/chart.png"],
          ["turn-1:1", "thread-7", "Anything else? <b>&</b>"]
        ])
        expect(arrived[0]!.from).toMatch(new RegExp(`^gateway@${Prosody.GATEWAY_HOST.replaceAll(".", "\\.")}/`))
        const first = arrived[0]!.stanza
        expect(first.attrs["type"]).toBe("chat")
        expect(first.getChild("reply", "urn:xmpp:reply:0")?.attrs["id"]).toBe("their-msg-1")
        expect(first.getChild("x", "jabber:x:oob")?.getChildText("url")).toBe("https://example.com/chart.png")
        expect(first.getChild("origin-id", "urn:xmpp:sid:0")?.attrs["id"]).toBe("turn-1:0")
        expect(arrived[1]!.stanza.getChild("x", "jabber:x:oob")).toBeUndefined()
      }),
    30_000
  )

  it.live(
    "one connection per account: a reply goes out as the account named by its accountId",
    () =>
      Effect.gen(function*() {
        const options: XmppChannel.OptionsInput = {
          ...gatewayOptions({ defaultAccount: "gateway" }),
          accounts: {
            gateway: { ...gatewayOptions().accounts["gateway"]! },
            second: {
              service: server.prosody.service,
              domain: Prosody.GATEWAY_HOST,
              username: "second",
              password: Redacted.make(server.passwords["second"]!)
            }
          }
        }
        const connections = yield* counter(XmppChannel.metrics.connections("second"))
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox.Outbox
          const to = server.reader.jid
          yield* outbox.deliver({ channel: "xmpp", to, idempotencyKey: "acct-1", payloads: [{ text: "default" }] })
          yield* outbox.deliver({
            channel: "xmpp",
            to,
            accountId: "second",
            idempotencyKey: "acct-2",
            payloads: [{ text: "2nd" }]
          })
          yield* outbox.deliver({
            channel: "xmpp",
            to,
            accountId: "second",
            idempotencyKey: "acct-3",
            payloads: [{ text: "2nd" }]
          })
        }).pipe(Effect.provide(outboxWith(options)))
        yield* server.reader.awaitCopies("acct-3:0", 1, "10 seconds")
        const senders = ["acct-1:0", "acct-2:0", "acct-3:0"].map((id) => arrivalsOf(id)[0]?.from.split("/")[0])
        expect(senders).toEqual([
          `gateway@${Prosody.GATEWAY_HOST}`,
          `second@${Prosody.GATEWAY_HOST}`,
          `second@${Prosody.GATEWAY_HOST}`
        ])
        expect((yield* counter(XmppChannel.metrics.connections("second"))) - connections).toBe(1)
      }),
    30_000
  )

  it.live(
    "a frozen server (SIGSTOP) takes the bytes but never acks: the reply is not sent, it fails as retryable once ackTimeout passes; " +
      "the server had it, so after SIGCONT it arrives, and the outbox's retry is the duplicate it was counted as",
    () =>
      Effect.gen(function*() {
        const unacked = yield* counter(XmppChannel.metrics.unacknowledged("gateway"))
        const options = gatewayOptions({ ackTimeout: "2 seconds" })
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox.Outbox
          const to = server.reader.jid
          const warm = yield* outbox.deliver({
            channel: "xmpp",
            to,
            idempotencyKey: "warm",
            payloads: [{ text: "up" }]
          })
          expect(warm._tag).toBe("Delivered")
          yield* server.prosody.freeze
          const error = yield* Effect.flip(
            outbox.deliver({ channel: "xmpp", to, idempotencyKey: "frozen", payloads: [{ text: "while frozen" }] })
          )
          expect(error).toMatchObject({ _tag: "SendFailed", retryable: true })
          expect(error.message).toMatch(/^XMPP: the server did not acknowledge the message before the connection ended/)
          expect(error.message).toContain("it may have been delivered, and a retry may duplicate it")
          expect((yield* counter(XmppChannel.metrics.unacknowledged("gateway"))) - unacked).toBe(1)
          const entryId = ("entryId" in error ? error.entryId : "") as EntryId
          expect(Option.map(yield* outbox.get(entryId), (e) => e.state)).toEqual(Option.some("failed_retryable"))
          expect(arrivalsOf("frozen:0")).toEqual([])

          yield* server.prosody.thaw
          // the server read the message before the connection's end: it delivers it
          yield* server.reader.awaitCopies("frozen:0", 1, "10 seconds")
          // and the outbox, told it may not have been, sends it again once the channel has reconnected
          yield* outbox.runRecoveryPass.pipe(
            Effect.zipRight(outbox.get(entryId)),
            Effect.filterOrFail((row) => Option.isSome(row) && row.value.state === "delivered", () => "not yet"),
            Effect.retry(Schedule.spaced(Duration.millis(100))),
            Effect.timeout(Duration.seconds(20))
          )
          yield* server.reader.awaitCopies("frozen:0", 2, "10 seconds")
          expect(arrivalsOf("frozen:0")).toHaveLength(2)
        }).pipe(Effect.provide(outboxWith(options)), Effect.ensuring(server.prosody.thaw))
      }),
    45_000
  )

  it.live(
    "a wrong password: the connection fails with the server's reason, logged and counted; sends fail as retryable; the password is nowhere",
    () =>
      Effect.gen(function*() {
        const { lines, logger } = capture()
        const wrong = `wrong-${crypto.randomUUID()}`
        const options = account(server.prosody.service, Prosody.GATEWAY_HOST, "gateway", wrong, {
          connectWait: "200 millis"
        }, "wrong-password")
        const failures = yield* counter(XmppChannel.metrics.connectFailures("wrong-password"))
        const error = yield* Effect.gen(function*() {
          const outbox = yield* Outbox.Outbox
          yield* connectFailedSince("wrong-password", failures)
          return yield* Effect.flip(
            outbox.deliver({ channel: "xmpp", to: server.reader.jid, payloads: [{ text: "x" }] })
          )
        }).pipe(Effect.provide(outboxWith(options)), Effect.provide(logger))
        expect(error).toMatchObject({ _tag: "SendFailed", retryable: true })
        expect(error.message).toContain("not-authorized")
        expect(lines.some((l) => l.includes("XMPP connection to") && l.includes("not-authorized"))).toBe(true)
        expect(lines.filter((l) => l.includes(wrong) || l.includes(server.passwords["gateway"]!))).toEqual([])
        expect(error.message).not.toContain(wrong)
      }),
    20_000
  )

  it.live(
    "a server without stream management (the reader's host) is refused: nothing is ever sent without acks",
    () =>
      Effect.gen(function*() {
        const options = account(server.prosody.service, Prosody.READER_HOST, "reader", server.passwords["reader"]!, {
          connectWait: "200 millis"
        }, "no-sm")
        const before = server.reader.arrivals().length
        const failures = yield* counter(XmppChannel.metrics.connectFailures("no-sm"))
        const error = yield* Effect.gen(function*() {
          const outbox = yield* Outbox.Outbox
          yield* connectFailedSince("no-sm", failures)
          return yield* Effect.flip(
            outbox.deliver({ channel: "xmpp", to: server.reader.jid, payloads: [{ text: "x" }] })
          )
        }).pipe(Effect.provide(outboxWith(options)))
        expect(error).toMatchObject({ _tag: "SendFailed", retryable: true })
        expect(error.message).toContain("the server does not offer stream management (XEP-0198)")
        expect(server.reader.arrivals().length).toBe(before)
      }),
    20_000
  )
})
