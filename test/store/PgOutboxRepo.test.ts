import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import { queuedEntry } from "../support/entries.js"
import { freshStore } from "../support/pg.js"
import { outboxRepoContract } from "./contract.js"

// the local PostgreSQL (.ci/run starts it); each test gets its own schema, dropped after it
outboxRepoContract("postgresql", () => freshStore().layer)

describe("PgOutboxRepo claims", () => {
  it.effect("a due row that no longer decodes is reported, not leased, and the others of the batch are", () =>
    Effect.gen(function*() {
      const repo = yield* OutboxRepo
      const sql = yield* PgClient.PgClient
      const [before, bad, after] = [queuedEntry({ to: "a" }), queuedEntry({ to: "b" }), queuedEntry({ to: "c" })]
      yield* repo.insert([before, bad, after])
      // the claim leases and reads a batch in one statement; the row that fails to decode is put back as it was
      yield* sql`UPDATE outbox_entries SET payloads_json = '{"text": "not a list"}' WHERE id = ${bad.id}`
      const batch = yield* repo.claim({ owner: "n/1", now: 1, leaseMs: 60_000, limit: 10 })
      expect(batch.claimed.map((c) => c.entry.id)).toEqual([before.id, after.id])
      expect(batch.malformed.map((m) => m.id)).toEqual([bad.id])
      const [row] = yield* sql<{ state: string; owner: string | null; next: number; updated: number }>`
        SELECT state, lease_owner AS owner, next_attempt_at::float8 AS next, updated_at::float8 AS updated
        FROM outbox_entries WHERE id = ${bad.id}`
      expect(row).toEqual({ state: "queued", owner: null, next: bad.nextAttemptAt, updated: bad.updatedAt })
      // still claimable: the next claim reports it again (until the worker quarantines it)
      expect((yield* repo.claim({ owner: "n/1", now: 2, leaseMs: 60_000, limit: 10 })).malformed.map((m) => m.id))
        .toEqual([bad.id])
      yield* repo.quarantine(bad.id, "payloads_json is not a list", 3)
      expect(Option.getOrThrow(yield* repo.get(bad.id))).toMatchObject({
        state: "failed_terminal",
        terminalReason: "decode_error"
      })
    }).pipe(Effect.provide(freshStore().layer)))
})
