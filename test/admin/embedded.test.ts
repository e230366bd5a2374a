/**
 * The board inside a gateway: `OutboxAdmin.layer` mounted under a prefix in the gateway's own `HttpLayerRouter`,
 * beside the gateway's routes (which its guard leaves alone), with the live feed (Server-Sent Events) of the outbox's
 * events and an entry timeline from them; and its refusal to start on a non-loopback server without a token.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import { createServer } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EntryDetail } from "../../src/admin/AdminApi.js"
import type { LoggedEvent } from "../../src/admin/EventLog.js"
import * as OutboxAdmin from "../../src/admin/OutboxAdmin.js"
import { Outbox } from "../../src/Outbox.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { outboxLayer, reply, scriptedAdapter } from "../outbox/harness.js"
import { tempDatabases } from "../support/files.js"
import { call, get } from "./support.js"

const databases = tempDatabases("admin-embedded")

/** A gateway: its own /health route and the board under /outbox, on one server. */
const gateway = (host: string, admin: OutboxAdmin.Options = {}) =>
  Layer.unwrapEffect(Effect.map(scriptedAdapter([{ status: 502 }]), ({ adapter }) => {
    const app = Layer.mergeAll(
      HttpLayerRouter.add("GET", "/health", HttpServerResponse.text("ok")),
      OutboxAdmin.layer({ pathPrefix: "/outbox", ...admin })
    )
    return HttpLayerRouter.serve(app, { disableLogger: true, disableListenLog: true }).pipe(
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port: 0, host })),
      Layer.provideMerge(
        outboxLayer({ chat: adapter }, { store: SqliteOutboxRepo.layerFile({ filename: databases.fresh() }) })
      )
    )
  }))

/** Reads Server-Sent Events from `url` until `until` holds for the parsed events, or 10 s pass. */
const readEvents = async (url: string, until: (events: ReadonlyArray<LoggedEvent>) => boolean) => {
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 10_000)
  const response = await fetch(url, { signal: controller.signal })
  expect(response.headers.get("content-type")).toBe("text/event-stream")
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  const events: Array<LoggedEvent> = []
  let buffer = ""
  try {
    while (!until(events)) {
      const { done, value } = await reader.read()
      if (done) break
      buffer += decoder.decode(value, { stream: true })
      let end: number
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        const data = block.split("\n").find((line) => line.startsWith("data: "))
        if (data !== undefined) events.push(JSON.parse(data.slice(6)) as LoggedEvent)
      }
    }
  } finally {
    clearTimeout(timer)
    controller.abort()
  }
  return events
}

describe("the board inside a gateway", () => {
  const runtime = ManagedRuntime.make(gateway("127.0.0.1"))
  let base: string
  beforeAll(async () => {
    const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (s) => s.address))
    if (address._tag !== "TcpAddress") throw new Error("expected TCP")
    base = `http://127.0.0.1:${address.port}`
  })
  afterAll(() => runtime.dispose())

  it("lives under its prefix; the gateway's own routes keep their headers and need nothing", async () => {
    const health = await fetch(`${base}/health`)
    expect(await health.text()).toBe("ok")
    expect(health.headers.get("content-security-policy")).toBeNull()
    const page = await fetch(`${base}/outbox`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain(`<base href="/outbox/">`)
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'")
    expect((await call({ url: `${base}/outbox/` }, "api/info")).body).toMatchObject({ live: true, readOnly: false })
    expect((await fetch(`${base}/api/stats`)).status).toBe(404)
  })

  it("streams the outbox's events live, and shows them in the entry's timeline", async () => {
    const feed = readEvents(`${base}/outbox/api/events`, (events) => events.some((e) => e.type === "retry_scheduled"))
    // the feed is connected before the reply is sent: wait for its first bytes
    await new Promise((resolve) => setTimeout(resolve, 200))
    const failure = await runtime.runPromise(Effect.flip(Effect.flatMap(Outbox, (o) => o.deliver(reply("hi")))))
    expect(failure._tag).toBe("SendFailed")
    const events = await feed
    const mine = events.filter((e) => e.entryId === (failure as { entryId: string }).entryId)
    expect(mine.map((e) => e.type)).toEqual(["enqueued", "retry_scheduled"])
    expect(mine[1]!.detail).toMatch(/^attempt 1 failed, retry at .*: HTTP 502$/)
    const detail = await get(EntryDetail, { url: `${base}/outbox/` }, `api/entries/${mine[0]!.entryId}`)
    expect(detail.body.planExact).toBe(true)
    expect(detail.body.timeline.filter((t) => t.source === "events").map((t) => t.event)).toEqual([
      "enqueued",
      "retry scheduled"
    ])
  })
})

describe("a board in a gateway listening beyond loopback", () => {
  it("refuses to start without a token", async () => {
    const runtime = ManagedRuntime.make(gateway("0.0.0.0"))
    await expect(runtime.runPromise(Effect.void)).rejects.toThrow(/listens on 0\.0\.0\.0, beyond this machine/)
    await runtime.dispose()
  })
})
