/**
 * Two real processes on one SQLite file (test/processes/opener.ts, warm before a trial starts so that their opens
 * meet): a fresh file opened by both at once. Every wait is for a process's answer, never for a timer.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as path from "node:path"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { tempDatabases } from "../support/files.js"
import type { Answer } from "./opener.js"
import { startOpener } from "./support.js"

const TRIALS = 20
const databases = tempDatabases("processes")

const outcome = (answer: Answer) =>
  "released" in answer ? "released" : answer.ok ? "ok" : `${answer.errorTag}: ${answer.message}`

/** What a file holds. */
const readBack = (filename: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [count] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM outbox_entries`
    const migrations = yield* sql<{ name: string }>`SELECT name FROM effect_outbox_migrations ORDER BY migration_id`
    return { rows: count?.n, migrations: migrations.map((m) => m.name) }
  }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename })))

describe("two processes on one SQLite file", () => {
  it.live(`a fresh file opened by both at the same moment: both start, write and read (${TRIALS} files)`, () =>
    Effect.gen(function*() {
      const [a, b] = yield* Effect.all([startOpener, startOpener], { concurrency: 2 })
      const files = Array.from({ length: TRIALS }, () => databases.fresh())
      const outcomes: Array<string> = []
      for (const [i, file] of files.entries()) {
        const answers = yield* Effect.all([
          a.send({ cmd: "open", tag: `a${i}`, file }),
          b.send({ cmd: "open", tag: `b${i}`, file })
        ], { concurrency: 2 })
        outcomes.push(...answers.map((answer) => `${path.basename(file)} ${outcome(answer)}`))
      }
      expect(outcomes.filter((o) => !o.endsWith(" ok"))).toEqual([])
      const names = Object.keys(SqliteOutboxRepo.migrations).map((key) => key.replace(/^\d+_/, ""))
      for (const file of files) expect(yield* readBack(file)).toEqual({ rows: 2, migrations: names })
    }).pipe(Effect.scoped), 60_000)
})
