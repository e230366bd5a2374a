/**
 * The examples are code the README shows or links, so they are checked three ways: `npm test` typechecks them
 * (tsconfig includes examples/), they run here (against a loopback chat API where they need one), and the README's
 * embedded copy must equal its file.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as path from "node:path"
import { chatApiAdapter } from "../../examples/adapter-v1.js"
import { richChatAdapter } from "../../examples/adapter-v2.js"
import { Channels } from "../../examples/channels.js"
import { ChunkingConfig } from "../../examples/chunking.js"
import { OutboxWithLegacyImport } from "../../examples/legacy-import.js"
import { deliverAnswer } from "../../examples/typed-request.js"
import { XmppChannels } from "../../examples/xmpp.js"
import type { AdapterV1, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import { inspect, node, ROOT, tempDir } from "./support.js"
// examples/testing.ts is itself a test file: importing it registers its tests here
import "../../examples/testing.js"

interface Received {
  readonly method: string
  readonly url: string
  readonly body: Record<string, unknown> | null
}

/** A loopback chat API: POST /messages and /replies answer `{ id }`, GET /replies/:key says whether it has it. */
const received: Array<Received> = []
const server = http.createServer((req, res) => {
  let data = ""
  req.setEncoding("utf8").on("data", (d: string) => (data += d)).on("end", () => {
    const body = data === "" ? null : (JSON.parse(data) as Record<string, unknown>)
    received.push({ method: req.method ?? "", url: req.url ?? "", body })
    const reply = (status: number, json: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(json))
    }
    if (body?.["chat"] === "rate-limited") return reply(429, { error: "slow down" }, { "retry-after": "2" })
    if (body?.["chat"] === "blocked") return reply(403, { error: "bot was blocked by the user" })
    if (req.method === "GET") {
      const key = decodeURIComponent((req.url ?? "").replace("/replies/", ""))
      return reply(received.some((r) => r.body?.["key"] === key) ? 200 : 404, {})
    }
    reply(200, { id: `m-${received.length}` })
  })
})
let apiUrl = ""
beforeAll(() =>
  new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve())).then(() => {
    apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
)
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))
const tmp = tempDir("outbox-examples-")
afterAll(() => tmp.cleanup())

const run = (args: ReadonlyArray<string>, env: Record<string, string>) => node(args, { env })

describe("examples", { timeout: 60_000 }, () => {
  it("gateway.ts delivers its replies through the v1 adapter and leaves them delivered in the SQLite file", async () => {
    const db = tmp.file("gateway.db")
    const result = await run(["--import", "tsx", "examples/gateway.ts"], { CHAT_API_URL: apiUrl, OUTBOX_DB: db })
    expect(result.code).toBe(0)
    const posted = received.filter((r) => r.url === "/messages" && r.body?.["chat"] === "user-42").map((r) =>
      r.body?.["text"]
    )
    expect(posted).toEqual(["Hello from the gateway!", "And a second reply, in order."])
    const { entries } = await inspect(db)
    expect(entries.map((e) => [e.idempotencyKey, e.state]).sort()).toEqual([["turn-1", "delivered"], [
      "turn-2",
      "delivered"
    ]])
  })

  const outbox = () =>
    Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
      MemoryOutboxRepo.layer,
      ChannelRegistry.layer({
        chat: chatApiAdapter({ baseUrl: apiUrl, token: "t" }),
        rich: richChatAdapter({ baseUrl: apiUrl })
      }),
      OutboxConfig.layer({ retryJitter: false })
    )))

  it("the v1 adapter's HTTP errors are classified: 429 waits its Retry-After, 403 fails for good", () =>
    Effect.gen(function*() {
      const o = yield* Outbox.Outbox
      const limited = yield* Effect.flip(o.deliver({ channel: "chat", to: "rate-limited", payloads: [{ text: "hi" }] }))
      expect(limited).toMatchObject({ _tag: "SendFailed", retryable: true, retryAfterMs: 2_000 })
      const blocked = yield* Effect.flip(o.deliver({ channel: "chat", to: "blocked", payloads: [{ text: "hi" }] }))
      expect(blocked).toMatchObject({ _tag: "SendFailed", retryable: false })
    }).pipe(Effect.provide(outbox()), Effect.runPromise))

  it("the v2 adapter sends a payload whole and reconciles by its idempotency key", async () => {
    const outcome = await Effect.gen(function*() {
      const o = yield* Outbox.Outbox
      return yield* o.deliver({
        channel: "rich",
        to: "room-1",
        threadId: "t-1",
        payloads: [{
          text: "Pick one",
          mediaUrls: ["https://example.com/a.png"],
          channelData: { buttons: ["yes", "no"] }
        }],
        idempotencyKey: "turn-7"
      })
    }).pipe(Effect.provide(outbox()), Effect.runPromise)
    expect(outcome._tag).toBe("Delivered")
    expect(received.filter((r) => r.url === "/replies").map((r) => r.body)).toEqual([{
      key: "turn-7/0",
      chat: "room-1",
      thread: "t-1",
      text: "Pick one",
      media: ["https://example.com/a.png"],
      extra: { buttons: ["yes", "no"] }
    }])
    const adapter = richChatAdapter({ baseUrl: apiUrl })
    const ctx = (key: string): SendContext => ({
      channel: "rich",
      to: "room-1",
      text: "",
      payload: { text: "x" },
      idempotencyKey: key,
      entryId: "e",
      attempt: 1,
      partIndex: 0,
      partCount: 1
    })
    const signal = new AbortController().signal
    expect(await adapter.reconcile!(ctx("turn-7"), { signal })).toBe("sent")
    expect(await adapter.reconcile!(ctx("turn-8"), { signal })).toBe("not_sent")
  })

  it("quickstart.ts stores and delivers its reply through its printing channel", async () => {
    const db = tmp.file("quickstart.db")
    const result = await run(["--import", "tsx", "examples/quickstart.ts"], { OUTBOX_DB: db })
    expect(result.code).toBe(0)
    expect(result.stdout).toContain("-> user-42: Hello!")
    const { entries } = await inspect(db)
    expect(entries.map((e) => [e.idempotencyKey, e.state])).toEqual([["turn-1", "delivered"]])
  })

  it("typed-request.ts delivers a typed answer (thread, media, key) and a refused one stores nothing", async () => {
    const [outcome, refused, duplicate, stats] = await Effect.gen(function*() {
      const o = yield* Outbox.Outbox
      const answer = {
        turnId: "typed-1",
        chatId: "typed-chat",
        threadId: "th-1",
        text: "See attached",
        attachments: ["https://example.com/r.pdf"]
      }
      const outcome = yield* deliverAnswer(answer)
      const refused = yield* Effect.flip(deliverAnswer({ ...answer, turnId: "typed-2", text: "   ", attachments: [] }))
      const duplicate = yield* deliverAnswer(answer)
      return [outcome, refused, duplicate, yield* o.stats] as const
    }).pipe(Effect.provide(outbox()), Effect.runPromise)
    expect(outcome._tag).toBe("Delivered")
    expect(refused._tag).toBe("InvalidRequest")
    expect(duplicate._tag).toBe("Duplicate")
    expect(stats.byState.delivered).toBe(1)
    expect(
      received.filter((r) => r.body?.["chat"] === "typed-chat").map((
        r
      ) => [r.body?.["thread"], r.body?.["text"], r.body?.["mediaUrl"]])
    )
      .toEqual([["th-1", "See attached", "https://example.com/r.pdf"]])
  })

  it("chunking.ts: newline mode sends one message per paragraph; the sms channel cuts at 160, its premium account at 1600", async () => {
    const sent: Array<[string, string | undefined, string]> = []
    const recording: AdapterV1 = {
      sendText: async (ctx) => {
        sent.push([ctx.channel, ctx.accountId, ctx.text])
        return { messageId: `m-${sent.length}` }
      }
    }
    const long = "x".repeat(400)
    await Effect.gen(function*() {
      const o = yield* Outbox.Outbox
      yield* o.deliver({
        channel: "chat",
        to: "u",
        payloads: [{ text: "First paragraph.\n\nSecond paragraph,\nstill the second." }]
      })
      yield* o.deliver({ channel: "sms", to: "u", payloads: [{ text: long }] })
      yield* o.deliver({ channel: "sms", accountId: "premium", to: "u", payloads: [{ text: long }] })
    }).pipe(
      Effect.provide(Outbox.layer.pipe(Layer.provide(Layer.mergeAll(
        MemoryOutboxRepo.layer,
        ChannelRegistry.layer({ chat: recording, sms: recording }),
        ChunkingConfig
      )))),
      Effect.runPromise
    )
    expect(sent.filter(([c]) => c === "chat").map(([, , t]) => t)).toEqual([
      "First paragraph.",
      "Second paragraph,\nstill the second."
    ])
    expect(sent.filter(([c, a]) => c === "sms" && a === undefined).map(([, , t]) => t.length)).toEqual([160, 160, 80])
    expect(sent.filter(([c, a]) => c === "sms" && a === "premium").map(([, , t]) => t)).toEqual([long])
  })

  it("legacy-import.ts imports the openclaw queue at start, once; a state directory without a queue starts normally", async () => {
    const stateDir = tmp.file("state")
    fs.cpSync(path.join(ROOT, "test/fixtures/legacy-delivery-queue"), path.join(stateDir, "delivery-queue"), {
      recursive: true
    })
    const files = () => fs.readdirSync(path.join(stateDir, "delivery-queue"), { recursive: true }).map(String).sort()
    const before = files()
    const db = tmp.file("legacy.db")
    const channels = { chat: chatApiAdapter({ baseUrl: apiUrl, token: "t" }) }
    const boot = (dir: string, filename: string) =>
      Effect.gen(function*() {
        const o = yield* Outbox.Outbox
        return (yield* o.list({ limit: 100 })).length
      }).pipe(Effect.provide(OutboxWithLegacyImport({ stateDir: dir, dbFile: filename, channels })), Effect.runPromise)
    // the fixture's six entries: four pending, one a month older, one dead letter (a malformed file and a marker are skipped)
    expect(await boot(stateDir, db)).toBe(6)
    expect(await boot(stateDir, db)).toBe(6) // the second start finds the marker
    expect(files()).toEqual(before) // nothing deleted, moved or rewritten
    expect(await boot(tmp.file("fresh-install"), tmp.file("fresh.db"))).toBe(0)
  })

  it("channels.ts registers the shipped channels from the environment; a reply to its webhook is signed and delivered", async () => {
    const env = new Map([
      ["ALERTS_WEBHOOK_URL", `${apiUrl}/alerts`],
      ["ALERTS_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
      ["TELEGRAM_BOT_TOKEN", "123456:ABC-DEF"],
      ["SLACK_BOT_TOKEN", "xoxb-test"]
    ])
    const [listed, outcome] = await Effect.gen(function*() {
      const registry = yield* ChannelRegistry.ChannelRegistry
      const o = yield* Outbox.Outbox
      return [
        yield* registry.list,
        yield* o.deliver({ channel: "alerts", to: "ops", payloads: [{ text: "disk full" }], idempotencyKey: "alert-1" })
      ] as const
    }).pipe(
      Effect.provide(Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
        MemoryOutboxRepo.layer,
        Channels,
        OutboxConfig.layer({ retryJitter: false })
      )))),
      Effect.withConfigProvider(ConfigProvider.fromMap(env)),
      Effect.runPromise
    )
    expect(listed).toEqual([
      { channel: "alerts", contract: "v2" },
      { channel: "telegram", contract: "v1" },
      { channel: "slack", contract: "v1" }
    ])
    expect(outcome).toMatchObject({ _tag: "Delivered", results: [{ messageId: "alert-1.0" }] })
    expect(received.filter((r) => r.url === "/alerts").map((r) => r.body?.["data"])).toEqual([
      expect.objectContaining({ channel: "alerts", to: "ops", text: "disk full", idempotencyKey: "alert-1" })
    ])
  })

  it("xmpp.ts's layer takes its account from XMPP_*: without them it fails to build, naming the variable", async () => {
    // test/xmpp/outage.test.ts runs the gateway with this layer against a real Prosody
    const exit = await Layer.build(XmppChannels).pipe(
      Effect.scoped,
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["XMPP_DOMAIN", "example.com"]]), { pathDelim: "_" })),
      Effect.runPromiseExit
    )
    expect(Exit.isFailure(exit) && Cause.pretty(exit.cause)).toMatch(/XMPP_SERVICE/)
  })

  it("README.md shows its embed example exactly as it is in examples/ (importing from the package name) and links every example", () => {
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8")
    const blocks = [...readme.matchAll(/<!-- example: (examples\/[\w.-]+\.ts) -->\n```ts\n([\s\S]*?)```/g)]
    expect(blocks.map((m) => m[1]).sort()).toEqual([
      "examples/channels.ts",
      "examples/quickstart.ts",
      "examples/xmpp.ts"
    ])
    for (const file of fs.readdirSync(path.join(ROOT, "examples")).filter((f) => f.endsWith(".ts"))) {
      expect(readme, `README links examples/${file}`).toContain(`](examples/${file})`)
    }
    for (const [, file, code] of blocks) {
      const source = fs.readFileSync(path.join(ROOT, file!), "utf8")
        .replaceAll(`"../src/index.js"`, `"effect-outbox"`)
        .replace(/"\.\.\/src\/(channels\/\w+)\.js"/g, `"effect-outbox/$1"`)
      expect(code, file).toBe(source)
    }
  })
})
