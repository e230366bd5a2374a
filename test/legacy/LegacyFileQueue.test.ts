/**
 * The legacy file queue import, on the shared openclaw fixture (copied to a temp dir per test so the fixture is
 * never at risk), run against every store backend.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { OutboxEntry } from "../../src/Delivery.js"
import { StoreError } from "../../src/DeliveryError.js"
import * as LegacyFileQueue from "../../src/LegacyFileQueue.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import type { OutboxConfigShape } from "../../src/OutboxConfig.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { entryId } from "../support/entries.js"
import { snapshot } from "../support/files.js"
import { freshStore } from "../support/pg.js"
import { memoryStoreWith } from "../support/stores.js"

const FIXTURE = fileURLToPath(new URL("../fixtures/legacy-delivery-queue/", import.meta.url))

/** 2026-03-01T11:00:05Z: the fixture README's "now" plus a few seconds. */
const NOW = 1772362800000 + 5_000
const MIN = 60_000
const MAX_AGE = 30 * MIN

const ids = {
  fresh: "3f1c2a9e-6b7d-4c1e-9a51-0d2f8e4b7c10",
  slackThread: "7a2b9d41-0c3e-4f5a-8b6c-1e2d3f4a5b6c",
  line: "b5e6f7a8-9b0c-4d1e-8f2a-3b4c5d6e7f80",
  old: "c0ffee00-1111-4222-8333-444455556666",
  telegramTopic: "d1d2d3d4-aaaa-4bbb-8ccc-ddddeeeeffff",
  truncated: "e0e0e0e0-0000-4000-8000-000000000000",
  deadLetter: "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"
} as const

const root = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-legacy-"))
afterAll(() => fs.rmSync(root, { recursive: true, force: true }))
let n = 0

const copyFixture = (): string => {
  const dir = path.join(root, `queue-${++n}`)
  fs.cpSync(FIXTURE, dir, { recursive: true })
  return dir
}

const emptyQueue = (): string => {
  const dir = path.join(root, `queue-${++n}`)
  fs.mkdirSync(path.join(dir, "failed"), { recursive: true })
  return dir
}

const writeJson = (dir: string, file: string, value: unknown) =>
  fs.writeFileSync(path.join(dir, file), JSON.stringify(value, null, 2))

const getEntry = (id: string) =>
  Effect.flatMap(OutboxRepo, (r) => r.get(entryId(id))).pipe(Effect.map(Option.getOrThrow))

const total = Effect.flatMap(OutboxRepo, (r) => r.stats(NOW)).pipe(Effect.map((s) => s.total))

const fixtureSkipped = [
  "README.md",
  "a1a1a1a1-0000-4000-8000-00000000tmp0.json.4242.tmp",
  "f9f9f9f9-1234-4567-89ab-cdefcdefcdef.delivered"
]

/** A legacy entry in openclaw's shape, with overrides. */
const legacy = (id: string, overrides: Record<string, unknown> = {}) => ({
  id,
  enqueuedAt: NOW - 60_000,
  channel: "telegram",
  to: "123",
  payloads: [{ text: "hi" }],
  retryCount: 0,
  ...overrides
})

const captureLogs = () => {
  const lines: Array<{ level: string; message: string }> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push({ level: logLevel.label, message: Array.isArray(message) ? message.join(" ") : String(message) })
  })
  return { lines, layer: Logger.add(logger) }
}

/** Registers the import suite for one backend; `makeStore` must give a fresh, empty store per call. */
const legacyImportSuite = (name: string, makeStore: () => Layer.Layer<OutboxRepo, StoreError>) => {
  const env = (config: Partial<OutboxConfigShape> = {}) => Layer.merge(makeStore(), OutboxConfig.layer(config))

  const test = (
    title: string,
    body: () => Effect.Effect<void, unknown, OutboxRepo | OutboxConfig.OutboxConfig>,
    config: Partial<OutboxConfigShape> = {}
  ) =>
    it.effect(title, () =>
      Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        yield* body()
      }).pipe(Effect.provide(env(config))))

  const expectFixtureImported = (dir: string, report: LegacyFileQueue.ImportReport) =>
    Effect.gen(function*() {
      expect(report).toMatchObject({ dir, alreadyImported: false, at: NOW, previous: null })
      expect(report.imported).toEqual([
        `${ids.fresh}.json`,
        `${ids.slackThread}.json`,
        `${ids.line}.json`,
        `${ids.telegramTopic}.json`
      ])
      expect(report.expired).toEqual([`${ids.old}.json`])
      expect(report.failed).toEqual([`failed/${ids.deadLetter}.json`])
      expect(report.duplicates).toEqual([])
      expect(report.skipped).toEqual(fixtureSkipped)
      expect(report.malformed).toHaveLength(1)
      expect(report.malformed[0]!.file).toBe(`${ids.truncated}.json`)
      expect(report.malformed[0]!.message).toMatch(/^invalid JSON \(.+\)$/)

      expect(yield* getEntry(ids.fresh)).toMatchObject({
        state: "queued",
        channel: "telegram",
        to: "123456789",
        accountId: "default",
        payloads: [{ text: "Here is the summary you asked for." }],
        attemptCount: 0,
        lastAttemptAt: null,
        nextAttemptAt: 1772362800000,
        expiresAt: 1772362800000 + MAX_AGE
      })
      const slack: OutboxEntry = {
        id: entryId(ids.slackThread),
        channel: "slack",
        to: "channel:C024BE91L",
        accountId: "workspace-a",
        threadId: "1772362490.000200",
        replyToId: "1772362490.000200",
        payloads: [{
          text: "Two charts attached.",
          mediaUrls: ["https://files.example.com/a.png", "https://files.example.com/b.png"]
        }],
        kind: "final",
        bestEffort: true,
        state: "failed_retryable",
        attemptCount: 2,
        partsDelivered: 0,
        enqueuedAt: 1772362500000,
        nextAttemptAt: NOW,
        lastAttemptAt: 1772362500000,
        deliveredAt: null,
        expiresAt: 1772362500000 + MAX_AGE,
        lastError: "socket hang up",
        terminalReason: null,
        leaseOwner: null,
        leaseExpiresAt: null,
        updatedAt: NOW
      }
      expect(yield* getEntry(ids.slackThread)).toEqual(slack)
      expect(yield* getEntry(ids.line)).toMatchObject({
        state: "failed_retryable",
        attemptCount: 1,
        lastAttemptAt: 1772362760000,
        lastError: "LINE API 500",
        nextAttemptAt: NOW,
        payloads: [{
          text: "Pick one:",
          channelData: {
            line: {
              quickReply: { items: [{ type: "action", action: { type: "message", label: "Yes", text: "yes" } }] }
            }
          }
        }]
      })
      expect(yield* getEntry(ids.old)).toMatchObject({
        state: "expired",
        attemptCount: 0,
        nextAttemptAt: null,
        terminalReason: null,
        enqueuedAt: 1769900400000,
        expiresAt: 1769900400000 + MAX_AGE
      })
      const topic = yield* getEntry(ids.telegramTopic)
      expect(topic).toMatchObject({
        state: "queued",
        threadId: "42",
        silent: true,
        payloads: [{ text: "Report", mediaUrls: ["https://files.example.com/report.pdf"] }]
      })
      expect(topic.metadata).toBeUndefined()
      expect(yield* getEntry(ids.deadLetter)).toMatchObject({
        state: "failed_terminal",
        terminalReason: "max_attempts",
        attemptCount: 5,
        lastAttemptAt: 1772280000000,
        lastError: "No conversation reference found for conversation:19:abc@thread.v2",
        nextAttemptAt: null
      })
      const repo = yield* OutboxRepo
      expect(yield* repo.get(entryId(ids.truncated))).toEqual(Option.none())
      expect(yield* repo.get(entryId("f9f9f9f9-1234-4567-89ab-cdefcdefcdef"))).toEqual(Option.none())
      expect(yield* repo.get(entryId("a1a1a1a1-0000-4000-8000-00000000tmp0"))).toEqual(Option.none())
      expect(yield* total).toBe(6)
    })

  describe(`LegacyFileQueue.importDirectory: ${name}`, () => {
    test("imports every fixture file as its README says", () =>
      Effect.gen(function*() {
        const dir = copyFixture()
        const report = yield* LegacyFileQueue.importDirectory(dir)
        yield* expectFixtureImported(dir, report)
      }))

    test("imported pending rows are due at once; the expired row and the dead letter are never claimed", () =>
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        yield* LegacyFileQueue.importDirectory(copyFixture())
        expect(yield* repo.expire(NOW)).toEqual([])
        const batch = yield* repo.claim({ owner: "node/boot", now: NOW, leaseMs: 5 * MIN, limit: 100 })
        expect(batch.claimed.map((c) => c.entry.id as string).sort()).toEqual(
          [ids.fresh, ids.slackThread, ids.line, ids.telegramTopic].sort()
        )
        expect(batch.malformed).toEqual([])
        const later = yield* repo.claim({ owner: "node/boot", now: NOW + 60 * MIN, leaseMs: 5 * MIN, limit: 100 })
        expect(later.claimed.map((c) => c.entry.id)).not.toContain(ids.old)
        expect(later.claimed.map((c) => c.entry.id)).not.toContain(ids.deadLetter)
        expect(yield* getEntry(ids.old)).toMatchObject({ state: "expired" })
        expect(yield* getEntry(ids.deadLetter)).toMatchObject({ state: "failed_terminal" })
      }))

    test("runs once per database; force imports again but finds every row present", () =>
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const dir = copyFixture()
        yield* LegacyFileQueue.importDirectory(dir)
        const summary = { importedAt: NOW, imported: 4, expired: 1, failed: 1, duplicates: 0, skipped: 3, malformed: 1 }
        const marker = yield* repo.getMeta(`legacy_import:${dir}`)
        expect(Option.map(marker, (v) => JSON.parse(v) as unknown)).toEqual(Option.some(summary))

        yield* TestClock.adjust(MIN)
        const second = yield* LegacyFileQueue.importDirectory(`${dir}/`)
        expect(second).toEqual({
          dir,
          alreadyImported: true,
          at: NOW + MIN,
          previous: summary,
          imported: [],
          expired: [],
          failed: [],
          duplicates: [],
          skipped: [],
          malformed: []
        })
        expect(yield* total).toBe(6)

        const forced = yield* LegacyFileQueue.importDirectory(dir, { force: true })
        expect(forced).toMatchObject({
          alreadyImported: false,
          previous: summary,
          imported: [],
          expired: [],
          failed: []
        })
        expect([...forced.duplicates].sort()).toEqual(
          [ids.fresh, ids.slackThread, ids.line, ids.old, ids.telegramTopic].map((id) => `${id}.json`)
            .concat(`failed/${ids.deadLetter}.json`).sort()
        )
        expect(forced.malformed.map((m) => m.file)).toEqual([`${ids.truncated}.json`])
        expect(forced.skipped).toEqual(fixtureSkipped)
        expect(yield* total).toBe(6)
        // the duplicates kept their first import: the re-read did not reset the retry schedule
        expect(yield* getEntry(ids.slackThread)).toMatchObject({ nextAttemptAt: NOW, updatedAt: NOW })
      }))

    test("never deletes, moves or rewrites a file, malformed ones included", () =>
      Effect.gen(function*() {
        const dir = copyFixture()
        const before = snapshot(dir)
        expect(before).toEqual(snapshot(FIXTURE))
        expect(before).toHaveLength(10)
        yield* LegacyFileQueue.importDirectory(dir)
        yield* LegacyFileQueue.importDirectory(dir)
        yield* LegacyFileQueue.importDirectory(dir, { force: true })
        expect(snapshot(dir)).toEqual(before)
      }))

    test("a missing directory or a plain file fails with LegacyImportError and records nothing", () =>
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const missing = path.join(root, "no-such-queue")
        const error = yield* Effect.flip(LegacyFileQueue.importDirectory(missing))
        expect(error).toBeInstanceOf(LegacyFileQueue.LegacyImportError)
        expect(error).toMatchObject({ _tag: "LegacyImportError", dir: missing, reason: "not_found" })
        expect(error.message).toMatch(/cannot read legacy queue directory .*no-such-queue: .*ENOENT/)
        expect(yield* repo.getMeta(LegacyFileQueue.markerKey(missing))).toEqual(Option.none())

        const file = path.join(copyFixture(), `${ids.fresh}.json`)
        const notDir = yield* Effect.flip(LegacyFileQueue.importDirectory(file))
        expect(notDir).toMatchObject({ _tag: "LegacyImportError", dir: file, reason: "not_a_directory" })
        expect(yield* total).toBe(0)
      }))

    test("maps openclaw's variants and refuses payloads today's rules reject, naming the field", () =>
      Effect.gen(function*() {
        const dir = emptyQueue()
        writeJson(
          dir,
          "nulls.json",
          legacy("nulls", { threadId: null, replyToId: null, accountId: null, sessionKey: null })
        )
        writeJson(
          dir,
          "extras.json",
          legacy("extras", {
            gifPlayback: true,
            mirror: { sessionKey: "agent:main", text: "hi" },
            agentId: "main",
            payloads: [{
              mediaUrl: "https://x.test/a.gif",
              mediaUrls: ["https://x.test/a.gif", "https://x.test/b.gif"]
            }]
          })
        )
        writeJson(dir, "exhausted.json", legacy("exhausted", { retryCount: 5, lastError: "HTTP 500" }))
        writeJson(dir, "gave-up-early.json", legacy("gave-up-early", { retryCount: 1 }))
        fs.renameSync(path.join(dir, "gave-up-early.json"), path.join(dir, "failed", "gave-up-early.json"))
        writeJson(dir, "acked.json", legacy("acked"))
        writeJson(dir, "acked.delivered", legacy("acked"))
        writeJson(dir, "bad-url.json", legacy("bad-url", { payloads: [{ text: "x" }, { mediaUrl: "not a url" }] }))
        writeJson(dir, "no-to.json", { ...legacy("no-to"), to: undefined })
        writeJson(dir, "empty.json", legacy("empty", { payloads: [] }))
        writeJson(dir, "float-time.json", legacy("float-time", { enqueuedAt: 1.5 }))
        fs.mkdirSync(path.join(dir, "archive"))

        const report = yield* LegacyFileQueue.importDirectory(dir)
        expect(report.imported).toEqual(["extras.json", "nulls.json"])
        expect(report.failed).toEqual(["failed/gave-up-early.json", "exhausted.json"])
        expect(report.skipped).toEqual(["acked.delivered", "acked.json", "archive/"])
        expect(Object.fromEntries(report.malformed.map((m) => [m.file, m.message]))).toEqual({
          "bad-url.json": expect.stringMatching(
            /^rejected by the current delivery rules: payloads\[1\]\.mediaUrls\[0\]: must be an http\(s\) or file URL/
          ),
          "empty.json": expect.stringMatching(
            /^rejected by the current delivery rules: payloads: must contain at least one payload/
          ),
          "float-time.json": expect.stringMatching(/^not a legacy queue entry: enqueuedAt: /),
          "no-to.json": expect.stringMatching(/^not a legacy queue entry: to: is missing/)
        })

        const nulls = yield* getEntry("nulls")
        expect(nulls).toMatchObject({ state: "queued", attemptCount: 0 })
        for (const field of ["threadId", "replyToId", "accountId", "metadata"]) expect(nulls).not.toHaveProperty(field)
        expect(yield* getEntry("extras")).toMatchObject({
          payloads: [{ mediaUrls: ["https://x.test/a.gif", "https://x.test/b.gif"] }],
          metadata: { legacy: { gifPlayback: true, mirror: { sessionKey: "agent:main", text: "hi" }, agentId: "main" } }
        })
        expect(yield* getEntry("exhausted")).toMatchObject({
          state: "failed_terminal",
          terminalReason: "max_attempts",
          attemptCount: 5,
          lastAttemptAt: NOW - 60_000,
          lastError: "HTTP 500"
        })
        expect(yield* getEntry("gave-up-early")).toMatchObject({
          state: "failed_terminal",
          terminalReason: "permanent_error",
          attemptCount: 1
        })
        expect(yield* total).toBe(4)
      }))

    test("the TTL boundary: a row exactly maxAge old is expired, one a millisecond younger is queued", () =>
      Effect.gen(function*() {
        const dir = emptyQueue()
        writeJson(dir, "at-limit.json", legacy("at-limit", { enqueuedAt: NOW - MAX_AGE }))
        writeJson(dir, "just-under.json", legacy("just-under", { enqueuedAt: NOW - MAX_AGE + 1, retryCount: 1 }))
        const report = yield* LegacyFileQueue.importDirectory(dir)
        expect(report.expired).toEqual(["at-limit.json"])
        expect(report.imported).toEqual(["just-under.json"])
        expect(yield* getEntry("just-under")).toMatchObject({ state: "failed_retryable", nextAttemptAt: NOW })
      }))

    test("with expireAction \"deliver\" old rows are imported to be sent anyway", () =>
      Effect.gen(function*() {
        const report = yield* LegacyFileQueue.importDirectory(copyFixture())
        expect(report.expired).toEqual([])
        expect(report.imported).toContain(`${ids.old}.json`)
        expect(yield* getEntry(ids.old)).toMatchObject({ state: "queued", nextAttemptAt: 1769900400000 })
      }), { expireAction: "deliver" })

    test(
      "a large queue is inserted in writeBatch-sized transactions with the same result",
      () =>
        Effect.gen(function*() {
          const dir = copyFixture()
          yield* expectFixtureImported(dir, yield* LegacyFileQueue.importDirectory(dir))
        }),
      { writeBatch: 2 }
    )

    it.effect("layerImportOnStart imports while the gateway starts, logging each malformed file and a summary", () => {
      const dir = copyFixture()
      const logs = captureLogs()
      const startup = LegacyFileQueue.layerImportOnStart(dir).pipe(Layer.provideMerge(env()))
      return Effect.gen(function*() {
        yield* TestClock.setTime(NOW)
        yield* Effect.gen(function*() {
          expect(yield* total).toBe(6)
          expect(yield* getEntry(ids.telegramTopic)).toMatchObject({ state: "queued", threadId: "42" })
        }).pipe(Effect.provide(startup))
        const warnings = logs.lines.filter((l) => l.level === "WARN")
        expect(warnings).toHaveLength(1)
        expect(warnings[0]!.message).toMatch(
          new RegExp(`${ids.truncated}\\.json is malformed and was left in place: invalid JSON`)
        )
        expect(logs.lines.filter((l) => l.level === "INFO").map((l) => l.message)).toEqual([
          `legacy queue ${dir}: 4 imported, 1 expired, 1 failed, 0 already present, 3 skipped, 1 malformed`
        ])
      }).pipe(Effect.provide(logs.layer))
    })

    it.effect("layerImportOnStart fails startup on a missing directory unless told to ignore it", () => {
      const missing = path.join(root, "never-had-a-queue")
      const withStore = (options: LegacyFileQueue.StartupOptions) =>
        Layer.build(LegacyFileQueue.layerImportOnStart(missing, options).pipe(Layer.provide(env()))).pipe(Effect.scoped)
      return Effect.gen(function*() {
        const error = yield* Effect.flip(withStore({}))
        expect(error).toMatchObject({ _tag: "LegacyImportError", reason: "not_found" })
        yield* withStore({ ignoreMissing: true })
      })
    })
  })
}

legacyImportSuite("memory", () => MemoryOutboxRepo.layer)
legacyImportSuite("sqlite file", () => SqliteOutboxRepo.layerFile({ filename: path.join(root, `legacy-${++n}.db`) }))
legacyImportSuite("postgresql", () => freshStore().layer)

describe("LegacyFileQueue.importDirectory: store failures", () => {
  it.effect("a StoreError from the insert passes through and no marker is written, so the next start retries", () => {
    const failingInsert = memoryStoreWith(() => ({
      insert: () => Effect.fail(new StoreError({ operation: "insert", message: "database is locked" }))
    }))
    const dir = copyFixture()
    return Effect.gen(function*() {
      yield* TestClock.setTime(NOW)
      const error = yield* Effect.flip(LegacyFileQueue.importDirectory(dir))
      expect(error).toMatchObject({ _tag: "StoreError", operation: "insert", message: "database is locked" })
      const repo = yield* OutboxRepo
      expect(yield* repo.getMeta(LegacyFileQueue.markerKey(dir))).toEqual(Option.none())
    }).pipe(Effect.provide(Layer.merge(failingInsert, OutboxConfig.layer())))
  })
})
