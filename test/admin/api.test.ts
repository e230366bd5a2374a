/**
 * The admin board's JSON API over real HTTP (an ephemeral port, a SQLite file): paging, filters, validation errors
 * naming the field, the entry view, retries and pruning checked in the database, read-only, tokens, same-origin and
 * host checks, and the OpenAPI document.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as http from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as Api from "../../src/admin/AdminApi.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import { entryId } from "../support/entries.js"
import { tempDatabases } from "../support/files.js"
import { freshStore } from "../support/pg.js"
import type { Board } from "./support.js"
import { call, ErrorBody, get, rowIn, startBoard } from "./support.js"

/** The part of the OpenAPI document the test reads. */
const OpenApiDoc = Schema.Struct({
  paths: Schema.Record({
    key: Schema.String,
    value: Schema.Struct({
      get: Schema.optional(Schema.Struct({
        parameters: Schema.optional(Schema.Array(Schema.Struct({ name: Schema.String })))
      }))
    })
  })
})

const databases = tempDatabases("admin-api")
const NOW = Date.now()
const MIN = 60_000
const TOKEN = "a-long-enough-test-token-0123456789"

const stateOf = (board: Board, id: string) =>
  board.run(Effect.map(Effect.flatMap(OutboxRepo, (repo) => repo.get(entryId(id))), Option.map((e) => e.state)))

/** The status of a GET sent with this Host header (fetch does not let a caller set it). */
const statusWithHost = (board: Board, path: string, host: string) =>
  new Promise<number>((resolve, reject) => {
    http.get({ host: "127.0.0.1", port: board.port, path, headers: { host } }, (response) => {
      response.resume()
      resolve(response.statusCode ?? 0)
    }).on("error", reject)
  })

const post = (body?: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json", ...headers },
  ...(body === undefined ? {} : { body: JSON.stringify(body) })
})

describe("the board's API", () => {
  let board: Board
  beforeAll(async () => {
    board = await startBoard({
      filename: databases.fresh(),
      rows: [
        // three rows in one millisecond: paging must neither skip nor repeat them
        rowIn("delivered", NOW - 30 * MIN, { id: entryId("A1"), enqueuedAt: NOW - 40 * MIN, to: "chat-1" }),
        rowIn("delivered", NOW - 30 * MIN, { id: entryId("A2"), enqueuedAt: NOW - 40 * MIN, to: "chat-2" }),
        rowIn("delivered", NOW - 30 * MIN, { id: entryId("A3"), enqueuedAt: NOW - 40 * MIN, to: "chat-3" }),
        rowIn("failed_terminal", NOW - 20 * MIN, { id: entryId("F1"), channel: "telegram", to: "chat-1" }),
        rowIn("failed_terminal", NOW - 19 * MIN, { id: entryId("F2"), channel: "slack", to: "chat-2" }),
        rowIn("failed_terminal", NOW - 18 * MIN, { id: entryId("T1"), kind: "tool", to: "chat-3" }),
        rowIn("expired", NOW - 17 * MIN, { id: entryId("X1"), channel: "telegram", to: "chat-4" }),
        rowIn("queued", NOW - 5 * MIN, { id: entryId("Q1"), to: "chat-5" }),
        rowIn("failed_retryable", NOW - 2 * MIN, {
          id: entryId("R1"),
          to: "chat-6",
          bestEffort: true,
          payloads: [{ text: "first" }, { text: "second" }, { text: "third" }],
          partsDelivered: 1,
          deliveredParts: [2],
          lastError: "part 1 (text): HTTP 502"
        })
      ]
    })
  })
  afterAll(() => board.close())

  it("pages newest first with nextCursor, every row exactly once, rows of one millisecond included", async () => {
    const seen: Array<string> = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? "" : `&before=${encodeURIComponent(cursor)}`
      const page: { readonly body: typeof Api.EntryPage.Type } = await get(
        Api.EntryPage,
        board,
        `api/entries?limit=2${query}`
      )
      seen.push(...page.body.entries.map((e) => e.id))
      cursor = page.body.nextCursor
      pages++
    } while (cursor !== null && pages < 20)
    expect(seen).toEqual(["R1", "Q1", "X1", "T1", "F2", "F1", "A3", "A2", "A1"])
    expect(pages).toBe(5)
  })

  it("filters by state, channel and conversation (recipient), and counts by state and channel", async () => {
    const ids = async (query: string) =>
      (await get(Api.EntryPage, board, `api/entries?${query}`)).body.entries.map((e) => e.id)
    expect(await ids("state=failed_terminal")).toEqual(["T1", "F2", "F1"])
    expect(await ids("state=failed_terminal&channel=telegram")).toEqual(["F1"])
    expect(await ids("conversation=chat-1")).toEqual(["F1", "A1"])
    const stats = await get(Api.StatsResponse, board, "api/stats")
    expect(stats.status).toBe(200)
    expect(stats.body.total).toBe(9)
    expect(stats.body.pending).toBe(2)
    expect(stats.body.byState).toMatchObject({ delivered: 3, failed_terminal: 3, expired: 1, queued: 1 })
    expect(stats.body.byChannel["telegram"]).toMatchObject({ failed_terminal: 1, expired: 1 })
    expect(stats.body.oldestPendingAgeMs).toBeGreaterThanOrEqual(5 * MIN)
    const activity = await get(Api.ActivityResponse, board, "api/activity")
    const sum = (field: "delivered" | "failed" | "expired" | "retrying") =>
      activity.body.buckets.reduce((n, b) => n + b[field], 0)
    expect(activity.body.buckets).toHaveLength(60)
    expect([sum("delivered"), sum("failed"), sum("expired"), sum("retrying")]).toEqual([3, 3, 1, 1])
  })

  it("answers a bad parameter with 400 naming the field", async () => {
    const issue = async (path: string, init?: RequestInit) => {
      const response = await get(ErrorBody, board, path, init)
      expect(response.status).toBe(400)
      expect(response.body._tag).toBe("HttpApiDecodeError")
      return (response.body.issues ?? []).map((i) => `${i.path.join(".")}: ${i.message}`)
    }
    expect(await issue("api/entries?state=stuck")).toEqual([
      "state: must be one of queued, in_flight, delivered, failed_retryable, failed_terminal, expired"
    ])
    expect(await issue("api/entries?limit=0")).toEqual(["limit: must be a whole number from 1 to 500"])
    expect(await issue("api/entries?limit=ten")).toEqual(["limit: must be a whole number from 1 to 500"])
    expect(await issue("api/entries?before=yesterday")).toEqual([
      "before: must be a cursor from nextCursor (<enqueuedAt>_<id>) or epoch millis"
    ])
    expect(await issue("api/retry", post({ state: "delivered" }))).toEqual([
      "state: must be failed_terminal or expired"
    ])
  })

  it("shows an entry: its parts with the delivered ones marked, its last error, its timeline", async () => {
    const detail = await get(Api.EntryDetail, board, "api/entries/R1")
    expect(detail.status).toBe(200)
    expect(detail.body.entry).toMatchObject({
      id: "R1",
      state: "failed_retryable",
      lastError: "part 1 (text): HTTP 502"
    })
    expect(detail.body.parts.map((p) => [p.text, p.delivered])).toEqual([
      ["first", true],
      ["second", false],
      ["third", true]
    ])
    expect(detail.body.planExact).toBe(false) // no adapter for "slack" in this process: the plan is an estimate
    expect(detail.body.timeline.map((t) => t.event)).toEqual(
      expect.arrayContaining(["enqueued", "failed, will retry", "due since"])
    )
    expect(detail.body.retry).toEqual({
      allowed: false,
      reason: "only failed_terminal and expired entries can be retried (this one is failed_retryable)"
    })
    const missing = await call(board, "api/entries/NOPE")
    expect(missing.status).toBe(404)
    expect(missing.body).toMatchObject({ _tag: "NotFound", id: "NOPE" })
  })

  it("retries one failed_terminal entry: queued in the database, counted at once; refuses the others with 409", async () => {
    const before = (await get(Api.StatsResponse, board, "api/stats")).body.byState.queued
    const retried = await call(board, "api/entries/F1/retry", post())
    expect(retried).toMatchObject({ status: 200, body: { requeued: "F1", was: "failed_terminal" } })
    expect(await stateOf(board, "F1")).toEqual(Option.some("queued"))
    expect((await get(Api.StatsResponse, board, "api/stats")).body.byState.queued).toBe(before + 1)
    const again = await call(board, "api/entries/F1/retry", post())
    expect(again.status).toBe(409)
    const tool = await get(ErrorBody, board, "api/entries/T1/retry", post())
    expect(tool.status).toBe(409)
    expect(tool.body.message).toMatch(/tool progress message/)
    expect(await stateOf(board, "T1")).toEqual(Option.some("failed_terminal"))
    expect((await call(board, "api/entries/NOPE/retry", post())).status).toBe(404)
  })

  it("retries by filter: a dry run counts, the run requeues and skips progress messages", async () => {
    const dry = await call(board, "api/retry", post({ state: "failed_terminal", dryRun: true }))
    expect(dry.body).toEqual({ dryRun: true, requeued: ["F2"], skipped: ["T1"] })
    expect(await stateOf(board, "F2")).toEqual(Option.some("failed_terminal"))
    const byChannel = await call(board, "api/retry", post({ state: "expired", channel: "slack" }))
    expect(byChannel.body).toEqual({ dryRun: false, requeued: [], skipped: [] })
    const run = await call(board, "api/retry", post({ state: "failed_terminal" }))
    expect(run.body).toEqual({ dryRun: false, requeued: ["F2"], skipped: ["T1"] })
    expect(await stateOf(board, "F2")).toEqual(Option.some("queued"))
  })

  it("serves an OpenAPI document of every endpoint", async () => {
    const doc = await get(OpenApiDoc, board, "api/openapi.json")
    expect(doc.status).toBe(200)
    expect(Object.keys(doc.body.paths).sort()).toEqual([
      "/api/activity",
      "/api/entries",
      "/api/entries/{id}",
      "/api/entries/{id}/retry",
      "/api/info",
      "/api/prune",
      "/api/retry",
      "/api/stats"
    ])
    expect(doc.body.paths["/api/entries"]?.get?.parameters?.map((p) => p.name)).toEqual([
      "state",
      "channel",
      "conversation",
      "before",
      "limit"
    ])
  })

  it("refuses a write from another origin or site, and a request to a host name other than localhost", async () => {
    const fromEvil = await call(board, "api/entries/X1/retry", post(undefined, { origin: "http://evil.example" }))
    expect(fromEvil).toMatchObject({ status: 403, body: { _tag: "Forbidden" } })
    const crossSite = await call(board, "api/prune", post(undefined, { "sec-fetch-site": "cross-site" }))
    expect(crossSite.status).toBe(403)
    expect(await stateOf(board, "X1")).toEqual(Option.some("expired"))
    // the board's own page: same origin
    const own = await call(board, "api/entries/X1/retry", post(undefined, { origin: board.url.replace(/\/$/, "") }))
    expect(own.status).toBe(200)
    // a page whose DNS name was rebound to 127.0.0.1 reaches the port with its own Host
    expect(await statusWithHost(board, "/api/stats", "evil.example:80")).toBe(403)
    expect(await statusWithHost(board, "/api/stats", `localhost:${board.port}`)).toBe(200)
  })

  it("prunes finished rows past retention (a week for failed ones) and says how many", async () => {
    const old = Date.now() - 8 * 24 * 60 * MIN
    await board.run(Effect.flatMap(OutboxRepo, (repo) =>
      repo.insert([
        rowIn("failed_terminal", old, { id: entryId("OLD1"), to: "old-1" }),
        rowIn("delivered", old, { id: entryId("OLD2"), to: "old-2" })
      ])))
    const pruned = await call(board, "api/prune", post())
    expect(pruned).toMatchObject({ status: 200, body: { pruned: 2 } })
    expect(await stateOf(board, "OLD1")).toEqual(Option.none())
    expect((await call(board, "api/entries/OLD2")).status).toBe(404)
  })
})

describe("a read-only board", () => {
  it("says so and refuses every write with 403, changing nothing", async () => {
    const board = await startBoard({
      filename: databases.fresh(),
      rows: [rowIn("failed_terminal", NOW, { id: entryId("F1") })],
      admin: { readOnly: true }
    })
    try {
      expect((await get(Api.InfoResponse, board, "api/info")).body.readOnly).toBe(true)
      for (const path of ["api/entries/F1/retry", "api/prune"]) {
        const refused = await call(board, path, post())
        expect(refused).toMatchObject({ status: 403, body: { _tag: "Forbidden" } })
      }
      expect((await call(board, "api/retry", post({ state: "failed_terminal" }))).status).toBe(403)
      expect(await stateOf(board, "F1")).toEqual(Option.some("failed_terminal"))
    } finally {
      await board.close()
    }
  })
})

describe("a board with a token", () => {
  let board: Board
  beforeAll(async () => {
    board = await startBoard({
      filename: databases.fresh(),
      rows: [rowIn("failed_terminal", NOW, { id: entryId("F1") })],
      // every interface: a token is required there, and this one has it
      admin: { host: "0.0.0.0", token: Redacted.make(TOKEN) }
    })
  })
  afterAll(() => board.close())

  it("refuses requests without the token or with a wrong one; the page shell and info stay public", async () => {
    for (const path of ["api/stats", "api/entries", "api/entries/F1", "metrics"]) {
      const refused = await call(board, path)
      expect(refused.status).toBe(401)
    }
    expect((await call(board, "api/entries/F1/retry", post())).status).toBe(401)
    expect(await stateOf(board, "F1")).toEqual(Option.some("failed_terminal"))
    const wrong = await call(board, "api/stats", { headers: { authorization: "Bearer not-the-token-at-all-no" } })
    expect(wrong.status).toBe(401)
    expect((await call(board, "api/info")).body).toMatchObject({ authRequired: true })
    expect((await call(board, "")).status).toBe(200)
    // no response carries the token
    const bodies = await Promise.all(["", "api/info", "board.js", "api/openapi.json"].map((p) => call(board, p)))
    for (const b of bodies) expect(JSON.stringify(b.body)).not.toContain(TOKEN)
  })

  it("accepts the bearer token, and a login's cookie (HttpOnly, SameSite=Strict, not the token)", async () => {
    const bearer = await call(board, "api/stats", { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(bearer.status).toBe(200)
    expect((await call(board, "api/session", post({ token: "wrong-wrong-wrong-wrong" }))).status).toBe(401)
    const login = await call(board, "api/session", post({ token: TOKEN }))
    expect(login.status).toBe(204)
    const cookie = login.headers.get("set-cookie")!
    expect(cookie).toMatch(/^outbox_admin=[^;]+; Max-Age=43200; Path=\/; HttpOnly; SameSite=Strict/)
    expect(cookie).not.toContain(TOKEN)
    const session = cookie.split(";")[0]!
    expect((await call(board, "api/stats", { headers: { cookie: session } })).status).toBe(200)
    expect((await call(board, "api/stats", { headers: { cookie: "outbox_admin=forged" } })).status).toBe(401)
    const retried = await call(board, "api/entries/F1/retry", post(undefined, { cookie: session }))
    expect(retried.status).toBe(200)
    expect(await stateOf(board, "F1")).toEqual(Option.some("queued" as const))
  })
})

describe("starting a board", () => {
  it("refuses to listen beyond loopback without a token, or with a short one", async () => {
    await expect(startBoard({ filename: databases.fresh(), admin: { host: "0.0.0.0" } })).rejects.toThrow(
      /listens on 0\.0\.0\.0, beyond this machine: give it a token/
    )
    await expect(
      startBoard({ filename: databases.fresh(), admin: { token: Redacted.make("short") } })
    ).rejects.toThrow(/at least 16 characters/)
  })
})

describe("the board over PostgreSQL", () => {
  it("pages, filters, counts and retries through the PostgreSQL store", async () => {
    const board = await startBoard({
      filename: "",
      store: freshStore().layer,
      rows: [
        rowIn("delivered", NOW - 30 * MIN, { id: entryId("P1"), enqueuedAt: NOW - 40 * MIN, to: "chat-1" }),
        rowIn("delivered", NOW - 30 * MIN, { id: entryId("P2"), enqueuedAt: NOW - 40 * MIN, to: "chat-2" }),
        rowIn("failed_terminal", NOW - 20 * MIN, { id: entryId("P3"), channel: "telegram", to: "chat-1" }),
        rowIn("queued", NOW - 5 * MIN, { id: entryId("P4"), to: "chat-3" })
      ]
    })
    try {
      const first = await get(Api.EntryPage, board, "api/entries?limit=2")
      expect(first.body.entries.map((e) => e.id)).toEqual(["P4", "P3"])
      const second = await get(Api.EntryPage, board, `api/entries?limit=2&before=${first.body.nextCursor}`)
      expect(second.body.entries.map((e) => e.id)).toEqual(["P2", "P1"])
      expect(second.body.nextCursor).toBeNull()
      const byConversation = await get(Api.EntryPage, board, "api/entries?conversation=chat-1")
      expect(byConversation.body.entries.map((e) => e.id)).toEqual(["P3", "P1"])
      const stats = await get(Api.StatsResponse, board, "api/stats")
      expect(stats.body).toMatchObject({ total: 4, pending: 1 })
      const activity = await get(Api.ActivityResponse, board, "api/activity")
      expect(activity.body.buckets.reduce((n, b) => n + b.delivered + b.failed, 0)).toBe(3)
      expect((await call(board, "api/entries/P3/retry", post())).status).toBe(200)
      expect(await stateOf(board, "P3")).toEqual(Option.some("queued"))
    } finally {
      await board.close()
    }
  })
})
