import { describe, expect, it } from "@effect/vitest"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { ROW_COLUMNS, toRow } from "../../src/internal/rowCodec.js"
import { entryId, queuedEntry } from "../support/entries.js"
import { tempDatabases } from "../support/files.js"

const { dir, fresh: freshFile } = tempDatabases("sqlite")

const pragma = (name: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<Record<string, unknown>>(`PRAGMA ${name}`)).pipe(
    Effect.map((rows) => Object.values(rows[0] ?? {})[0])
  )

describe("SqliteOutboxRepo.layerFile", () => {
  it.effect("opens with WAL, explicit synchronous, busy_timeout 5000 and a 0600 file", () => {
    const filename = freshFile()
    return Effect.gen(function*() {
      expect(yield* pragma("journal_mode")).toBe("wal")
      expect(yield* pragma("synchronous")).toBe(1) // NORMAL
      expect(yield* pragma("busy_timeout")).toBe(5000)
      expect(fs.statSync(filename).mode & 0o777).toBe(0o600)
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename })))
  })

  it.effect("sets synchronous on every open, FULL when asked, also on a reopened file", () => {
    const filename = freshFile()
    const open = (synchronous: "NORMAL" | "FULL") =>
      pragma("synchronous").pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename, synchronous })))
    return Effect.gen(function*() {
      expect(yield* open("FULL")).toBe(2)
      expect(yield* open("NORMAL")).toBe(1)
      expect(yield* open("FULL")).toBe(2)
    })
  })

  it.effect("keeps rows across reopening and migrates only once", () => {
    const filename = freshFile()
    const layer = () => SqliteOutboxRepo.layerFile({ filename })
    const entry = queuedEntry()
    return Effect.gen(function*() {
      yield* Effect.flatMap(OutboxRepo, (r) => r.insert([entry])).pipe(Effect.provide(layer()))
      const back = yield* Effect.flatMap(OutboxRepo, (r) => r.get(entry.id)).pipe(Effect.provide(layer()))
      expect(back).toEqual(Option.some(entry))
      const migrations = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT * FROM effect_outbox_migrations`).pipe(
        Effect.provide(layer())
      )
      expect(migrations).toHaveLength(Object.keys(SqliteOutboxRepo.migrations).length)
    })
  })

  it.effect("a file made before the pending flag is migrated: pending rows flagged, finished ones not, and claims go on", () => {
    const filename = freshFile()
    const earlier = Object.fromEntries(Object.entries(SqliteOutboxRepo.migrations).filter(([name]) => name < "0003"))
    const queued = queuedEntry({ id: entryId("P1"), to: "a" })
    const done = queuedEntry({ id: entryId("P2"), to: "b" })
    return Effect.gen(function*() {
      // the schema as the previous release left it, with one queued and one delivered row
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* Migrator.make({})({ loader: Migrator.fromRecord(earlier), table: "effect_outbox_migrations" })
        for (const entry of [queued, done]) {
          const { pending: _, ...row } = toRow(entry)
          yield* sql`INSERT INTO outbox_entries ${sql.insert(row)}`
        }
        yield* sql`UPDATE outbox_entries SET state = 'delivered', next_attempt_at = NULL, delivered_at = 1 WHERE id = 'P2'`
      }).pipe(Effect.provide(SqliteClient.layer({ filename })))
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const flags = yield* sql<{ id: string; pending: number | null }>`SELECT id, pending FROM outbox_entries ORDER BY id`
        expect(flags).toEqual([{ id: "P1", pending: 1 }, { id: "P2", pending: null }])
        const batch = yield* Effect.flatMap(OutboxRepo, (r) => r.claim({ owner: "n/1", now: 1_000_000, leaseMs: 60_000, limit: 10 }))
        expect(batch.claimed.map((c) => c.entry.id)).toEqual(["P1"])
      }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename })))
    })
  })

  it.effect("the pending flag follows every kind of write: set exactly while next_attempt_at is", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const repo = yield* OutboxRepo
      const owner = "n/1"
      const seen = new Set<string>()
      const write = <A, E>(op: Effect.Effect<A, E>) =>
        Effect.gen(function*() {
          yield* op
          const [mismatch] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM outbox_entries
            WHERE (pending IS NOT NULL) != (next_attempt_at IS NOT NULL)`
          expect(mismatch?.n).toBe(0)
          for (const row of yield* sql<{ state: string }>`SELECT state FROM outbox_entries`) seen.add(row.state)
        })
      const rows = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7"].map((id, i) => queuedEntry({ id: entryId(id), to: `u${i}`, expiresAt: 500_000 }))
      yield* write(repo.insert(rows))
      yield* write(repo.claim({ owner, now: 1_000, leaseMs: 60_000, limit: 10 }))
      yield* write(repo.ack(owner, [{ id: entryId("Q1"), partsDelivered: 1 }], 2_000))
      yield* write(repo.recordFailure(entryId("Q2"), owner, {
        _tag: "Retryable", error: "500", retryAt: 9_000, countsAttempt: true, partsDelivered: 0, maxAttempts: 5
      }, 2_000))
      yield* write(repo.recordFailure(entryId("Q3"), owner, { _tag: "Terminal", error: "403", reason: "permanent_error", partsDelivered: 0 }, 2_000))
      yield* write(repo.release(owner, [entryId("Q4")], 2_000))
      yield* write(repo.quarantine(entryId("Q5"), "bad json", 2_000))
      yield* write(repo.requeue(entryId("Q3"), 3_000, 900_000))
      yield* write(repo.claim({ owner, now: 600_000, leaseMs: 60_000, limit: 10, ack: [{ id: entryId("Q6"), partsDelivered: 1 }] }))
      yield* write(repo.expire(800_000, { owner }))
      // every state was reached along the way, so each kind of write was checked
      expect(seen).toEqual(new Set(["queued", "in_flight", "delivered", "failed_retryable", "failed_terminal", "expired"]))
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))

  it.effect("fails with a clear StoreError when the path is a directory or not writable", () =>
    Effect.gen(function*() {
      const isDir = yield* Effect.flip(Layer.build(SqliteOutboxRepo.layerFile({ filename: dir })).pipe(Effect.scoped))
      expect(isDir._tag).toBe("StoreError")
      expect(isDir.message).toMatch(/is a directory/)
      const missing = yield* Effect.flip(
        Layer.build(SqliteOutboxRepo.layerFile({ filename: path.join(dir, "no", "such", "dir.db") })).pipe(Effect.scoped)
      )
      expect(missing._tag).toBe("StoreError")
      expect(missing.message).toMatch(/cannot open outbox database .*no\/such\/dir\.db/)
    }))

  it.effect("a claim, which reads rows as arrays, reads every column of the table and decodes them as a get does", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const repo = yield* OutboxRepo
      const columns = yield* sql<{ name: string }>`SELECT name FROM pragma_table_info('outbox_entries')`
      expect(new Set(columns.map((c) => c.name))).toEqual(new Set(ROW_COLUMNS))
      const full = queuedEntry({
        id: entryId("FULL"),
        accountId: "acct",
        threadId: "t-1",
        replyToId: "r-1",
        idempotencyKey: "key-1",
        silent: true,
        metadata: { trace: "x" },
        payloads: [{ text: "a", mediaUrls: ["https://example.com/a.png"], channelData: { blocks: [1] } }, { text: "b" }],
        kind: "final",
        bestEffort: true,
        attemptCount: 2,
        partsDelivered: 1,
        deliveredParts: [1],
        lastError: "HTTP 500",
        lastAttemptAt: 50
      })
      yield* repo.insert([full])
      const { claimed } = yield* repo.claim({ owner: "n/1", now: 1_000, leaseMs: 60_000, limit: 10 })
      const read = yield* repo.get(entryId("FULL"))
      expect(claimed.map((c) => c.entry)).toEqual([Option.getOrThrow(read)])
      expect(claimed[0]!.entry).toEqual({
        ...full,
        state: "in_flight",
        leaseOwner: "n/1",
        leaseExpiresAt: 61_000,
        nextAttemptAt: 61_000,
        lastAttemptAt: 1_000,
        updatedAt: 1_000
      })
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))

  it.effect("claims with an index range scan, not a table scan or a sort", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const plan = yield* sql<{ detail: string }>`EXPLAIN QUERY PLAN SELECT * FROM outbox_entries e
          WHERE e.next_attempt_at IS NOT NULL AND e.next_attempt_at <= ${1}
            AND NOT EXISTS (
              SELECT 1 FROM outbox_entries p
              WHERE p.ordering_key = e.ordering_key AND p.pending = 1
                AND (p.enqueued_at, p.id) < (e.enqueued_at, e.id))
          ORDER BY e.next_attempt_at, e.id
          LIMIT ${100}`
      const details = plan.map((p) => p.detail).join("\n")
      expect(details).toMatch(/SEARCH e USING INDEX outbox_entries_due \(next_attempt_at>\? AND next_attempt_at<\?\)/)
      expect(details).toMatch(/SEARCH p USING (COVERING )?INDEX outbox_entries_conversation/)
      expect(details).not.toMatch(/TEMP B-TREE|SCAN e\b/)
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))
})

describe("SqliteOutboxRepo with rows corrupted at rest", () => {
  it.effect("reports a row whose JSON no longer decodes, claims the rest, and quarantines it", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const repo = yield* OutboxRepo
      const good1 = queuedEntry({ id: entryId("A1"), to: "a" })
      const broken = queuedEntry({ id: entryId("A2"), to: "b" })
      const good2 = queuedEntry({ id: entryId("A3"), to: "c" })
      const badKind = queuedEntry({ id: entryId("A4"), to: "d", payloads: [{ text: "x" }] })
      yield* repo.insert([good1, broken, good2, badKind])
      yield* sql`UPDATE outbox_entries SET payloads_json = '[{"text": "trunc' WHERE id = 'A2'`
      yield* sql`UPDATE outbox_entries SET payloads_json = '[{"mediaUrls": ["not a url"]}]' WHERE id = 'A4'`
      const batch = yield* repo.claim({ owner: "n/b", now: 10, leaseMs: 1000, limit: 10 })
      expect(batch.claimed.map((c) => c.entry.id)).toEqual(["A1", "A3"])
      expect(batch.malformed.map((m) => m.id)).toEqual(["A2", "A4"])
      expect(batch.malformed[0]!.message).toMatch(/row A2 does not decode: payloads_json is not valid JSON/)
      expect(batch.malformed[1]!.message).toMatch(/payloads\[0\]\.mediaUrls\[0\]: must be an http\(s\) or file URL/)
      // a direct read of the broken row is a typed error, not a crash
      const readError = yield* Effect.flip(repo.get(entryId("A2")))
      expect(readError._tag).toBe("StoreError")
      for (const m of batch.malformed) yield* repo.quarantine(m.id, m.message, 11)
      const quarantined = yield* repo.get(entryId("A2")).pipe(Effect.map(Option.getOrThrow))
      expect(quarantined).toMatchObject({ state: "failed_terminal", terminalReason: "decode_error", payloads: [] })
      expect(quarantined.lastError).toMatch(/payloads_json is not valid JSON/)
      const [raw] = yield* sql<{ payloads_json: string }>`SELECT payloads_json FROM outbox_entries WHERE id = 'A2'`
      expect(raw!.payloads_json).toBe('[{"text": "trunc') // kept for forensics
      expect((yield* repo.list({ state: "failed_terminal" })).map((e) => e.id)).toEqual(["A4", "A2"])
      expect(yield* repo.claim({ owner: "n/b", now: 2000, leaseMs: 1000, limit: 10 })).toMatchObject({ malformed: [] })
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))

  it.effect("refuses an unknown state written with raw SQL (the schema checks states)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const repo = yield* OutboxRepo
      yield* repo.insert([queuedEntry({ id: entryId("S1") })])
      const error = yield* Effect.flip(sql`UPDATE outbox_entries SET state = 'sent' WHERE id = 'S1'`)
      expect(String(error.cause)).toMatch(/CHECK constraint failed/)
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))
})
