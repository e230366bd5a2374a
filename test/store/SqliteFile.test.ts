import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Statement from "@effect/sql/Statement"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as fs from "node:fs"
import * as path from "node:path"
import { ROW_COLUMNS, toRow } from "../../src/internal/rowCodec.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { entryId, queuedEntry } from "../support/entries.js"
import { tempDatabases } from "../support/files.js"
import * as Ops from "../support/repoOps.js"

const { dir, fresh: freshFile } = tempDatabases("sqlite")

const pragma = (name: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<Record<string, unknown>>(`PRAGMA ${name}`)).pipe(
    Effect.map((rows) => Object.values(rows[0] ?? {})[0])
  )

describe("SqliteOutboxRepo.layerFile", () => {
  it.effect("opens with WAL, explicit synchronous, busy_timeout 5000, a checkpoint every 10,000 WAL pages and a 0600 file", () => {
    const filename = freshFile()
    return Effect.gen(function*() {
      expect(yield* pragma("journal_mode")).toBe("wal")
      expect(yield* pragma("synchronous")).toBe(1) // NORMAL
      expect(yield* pragma("busy_timeout")).toBe(5000)
      expect(yield* pragma("wal_autocheckpoint")).toBe(10_000)
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

  it.effect("checkpoints at the WAL size asked for, and refuses a size that is not a whole number ≥ 1 before making the file", () => {
    const filename = freshFile()
    return Effect.gen(function*() {
      const pages = yield* pragma("wal_autocheckpoint").pipe(
        Effect.provide(SqliteOutboxRepo.layerFile({ filename, walAutocheckpointPages: 500 }))
      )
      expect(pages).toBe(500)
      for (const bad of [0, -1, 1.5, Number.NaN]) {
        const missing = freshFile()
        const error = yield* Effect.flip(
          Effect.provide(Effect.void, SqliteOutboxRepo.layerFile({ filename: missing, walAutocheckpointPages: bad }))
        )
        expect(error._tag).toBe("StoreError")
        expect(error.message).toBe(`walAutocheckpointPages must be a whole number of pages ≥ 1, got ${bad}`)
        expect(fs.existsSync(missing)).toBe(false)
      }
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
      const migrations = yield* Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => sql`SELECT * FROM effect_outbox_migrations`
      ).pipe(
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
        const flags = yield* sql<
          { id: string; pending: number | null }
        >`SELECT id, pending FROM outbox_entries ORDER BY id`
        expect(flags).toEqual([{ id: "P1", pending: 1 }, { id: "P2", pending: null }])
        const batch = yield* Effect.flatMap(
          OutboxRepo,
          (r) => r.claim({ owner: "n/1", now: 1_000_000, leaseMs: 60_000, limit: 10 })
        )
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
      const rows = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7"].map((id, i) =>
        queuedEntry({ id: entryId(id), to: `u${i}`, expiresAt: 500_000 })
      )
      yield* write(repo.insert(rows))
      yield* write(repo.claim({ owner, now: 1_000, leaseMs: 60_000, limit: 10 }))
      yield* write(Ops.ack(repo, owner, [{ id: entryId("Q1"), partsDelivered: 1 }], 2_000))
      yield* write(Ops.recordFailure(repo, entryId("Q2"), owner, {
        _tag: "Retryable",
        error: "500",
        retryAt: 9_000,
        countsAttempt: true,
        partsDelivered: 0,
        maxAttempts: 5
      }, 2_000))
      yield* write(
        Ops.recordFailure(repo, entryId("Q3"), owner, {
          _tag: "Terminal",
          error: "403",
          reason: "permanent_error",
          partsDelivered: 0
        }, 2_000)
      )
      yield* write(Ops.release(repo, owner, [entryId("Q4")], 2_000))
      yield* write(repo.quarantine(entryId("Q5"), "bad json", 2_000))
      yield* write(repo.requeue(entryId("Q3"), 3_000, 900_000))
      yield* write(Ops.ack(repo, owner, [{ id: entryId("Q6"), partsDelivered: 1 }], 600_000))
      yield* write(repo.claim({ owner, now: 600_000, leaseMs: 60_000, limit: 10 }))
      yield* write(Ops.expireHeld(repo, entryId("Q7"), owner, 800_000))
      yield* write(Ops.release(repo, owner, [entryId("Q3")], 800_000))
      yield* write(repo.expire(900_001))
      // every state was reached along the way, so each kind of write was checked
      expect(seen).toEqual(
        new Set(["queued", "in_flight", "delivered", "failed_retryable", "failed_terminal", "expired"])
      )
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))

  it.effect("fails with a clear StoreError when the path is a directory or not writable", () =>
    Effect.gen(function*() {
      const isDir = yield* Effect.flip(Layer.build(SqliteOutboxRepo.layerFile({ filename: dir })).pipe(Effect.scoped))
      expect(isDir._tag).toBe("StoreError")
      expect(isDir.message).toMatch(/is a directory/)
      const missing = yield* Effect.flip(
        Layer.build(SqliteOutboxRepo.layerFile({ filename: path.join(dir, "no", "such", "dir.db") })).pipe(
          Effect.scoped
        )
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
        payloads: [{ text: "a", mediaUrls: ["https://example.com/a.png"], channelData: { blocks: [1] } }, {
          text: "b"
        }],
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
      const repo = yield* OutboxRepo
      const plans = yield* plansOf(repo.claim({ owner: "n/1", now: 1, leaseMs: 1000, limit: 100 }))
      const claim = plans.find((p) => p.text.includes("NOT EXISTS"))!
      expect(claim.plan).toMatch(
        /SEARCH e USING INDEX outbox_entries_due \(next_attempt_at>\? AND next_attempt_at<\?\)/
      )
      expect(claim.plan).toMatch(/SEARCH p USING (COVERING )?INDEX outbox_entries_conversation/)
      expect(claim.plan).not.toMatch(/TEMP B-TREE|SCAN e\b/)
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))

  it.effect("lists, counts and prunes finished rows through their own indexes, and the backlog through the pending ones", () =>
    Effect.gen(function*() {
      const repo = yield* OutboxRepo
      const planOf = (effect: Effect.Effect<unknown, unknown>) =>
        Effect.map(plansOf(effect), (plans) => plans.map((p) => p.plan).join(" | "))
      // a table scan would read every delivered row the retention period keeps
      const noTableScan = /SCAN outbox_entries(?! USING)/
      const finished = yield* planOf(repo.list({ state: "delivered", channel: "chat", limit: 10 }))
      expect(finished).toMatch(/SEARCH outbox_entries USING INDEX outbox_entries_finished(_order)? \(state=\?/)
      // a page of one finished state, and an unfiltered page, in index order: no sort of every row
      const byState = yield* planOf(repo.list({ state: "failed_terminal", limit: 10 }))
      expect(byState).toMatch(/SEARCH outbox_entries USING INDEX outbox_entries_finished_order \(state=\?\)/)
      expect(byState).not.toMatch(/TEMP B-TREE/)
      const page = yield* planOf(repo.list({ limit: 10, before: 5, beforeId: entryId("X") }))
      expect(page).toMatch(/SEARCH outbox_entries USING INDEX outbox_entries_enqueued \(\(enqueued_at,id\)<\(\?,\?\)\)/)
      expect(page).not.toMatch(/TEMP B-TREE/)
      const backlog = yield* planOf(repo.list({ state: "queued", limit: 10 }))
      expect(backlog).toMatch(/USING INDEX outbox_entries_(expiry|conversation|due)/)
      expect(backlog).not.toMatch(noTableScan)
      const stats = yield* planOf(repo.stats(0))
      expect(stats).toMatch(/SCAN outbox_entries USING (COVERING )?INDEX outbox_entries_finished/)
      expect(stats).toMatch(/SCAN outbox_entries USING INDEX outbox_entries_(expiry|conversation|due)/)
      expect(stats).not.toMatch(noTableScan)
      const prune = yield* planOf(repo.prune(1_000_000, { deliveredMs: 1000, terminalMs: 1000 }))
      expect(prune.match(/SEARCH outbox_entries USING INDEX outbox_entries_retention \(state=\? AND updated_at<\?\)/g))
        .toHaveLength(2)
      expect(prune).not.toMatch(noTableScan)
    }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: freshFile() }))))

  it.effect("a file made before the finished rows' indexes is migrated: its rows are listed, counted and pruned as before", () => {
    const filename = freshFile()
    const earlier = Object.fromEntries(Object.entries(SqliteOutboxRepo.migrations).filter(([name]) => name < "0004"))
    const entries = [
      queuedEntry({ id: entryId("M1"), to: "a", enqueuedAt: 1 }),
      queuedEntry({ id: entryId("M2"), to: "b", enqueuedAt: 2 }),
      queuedEntry({ id: entryId("M3"), to: "c", enqueuedAt: 3 })
    ]
    return Effect.gen(function*() {
      // the schema as the previous release left it: M1 delivered, M2 in flight, M3 queued
      yield* Effect.gen(function*() {
        yield* Migrator.make({})({ loader: Migrator.fromRecord(earlier), table: "effect_outbox_migrations" })
        const repo = yield* SqliteOutboxRepo.make
        yield* repo.insert(entries)
        yield* repo.claim({ owner: "old/1", now: 10, leaseMs: 1000, limit: 2 })
        yield* Ops.ack(repo, "old/1", [{ id: entryId("M1"), partsDelivered: 1 }], 20)
      }).pipe(Effect.provide(SqliteClient.layer({ filename })))
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const repo = yield* OutboxRepo
        const indexes = yield* sql<
          { name: string; partial: number }
        >`SELECT name, partial FROM pragma_index_list('outbox_entries')
          WHERE name IN ('outbox_entries_finished', 'outbox_entries_retention', 'outbox_entries_admin') ORDER BY name`
        expect(indexes).toEqual([{ name: "outbox_entries_finished", partial: 1 }, {
          name: "outbox_entries_retention",
          partial: 1
        }])
        const ids = (rows: ReadonlyArray<{ readonly id: string }>) => rows.map((r) => r.id)
        expect(ids(yield* repo.list({ state: "delivered" }))).toEqual(["M1"])
        expect(ids(yield* repo.list({ state: "in_flight", channel: "slack" }))).toEqual(["M2"])
        expect(ids(yield* repo.list({ state: "queued" }))).toEqual(["M3"])
        const stats = yield* repo.stats(100)
        expect(stats.byState).toMatchObject({ delivered: 1, in_flight: 1, queued: 1 })
        expect(stats.total).toBe(3)
        expect(yield* repo.prune(10_000, { deliveredMs: 1000, terminalMs: 1000 })).toEqual({
          delivered: 1,
          terminal: 0
        })
        expect(ids(yield* repo.list({}))).toEqual(["M3", "M2"])
      }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename })))
    })
  })
})

/** Runs `effect`, then asks SQLite for the plan of each SELECT or DELETE statement it ran, with its parameters. */
const plansOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const ran: Array<readonly [string, ReadonlyArray<unknown>]> = []
    yield* effect.pipe(Statement.withTransformer((statement) => {
      ran.push(statement.compile())
      return Effect.succeed(statement)
    }))
    return yield* Effect.forEach(
      ran.filter(([text]) => /^\s*(SELECT|DELETE)/i.test(text)),
      ([text, params]) =>
        Effect.map(
          sql.unsafe<{ detail: string }>(`EXPLAIN QUERY PLAN ${text}`, params as Array<unknown>),
          (rows) => ({ text, plan: rows.map((r) => r.detail).join("\n") })
        )
    )
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
      expect(raw!.payloads_json).toBe("[{\"text\": \"trunc") // kept for forensics
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
