/**
 * Two real processes on one SQLite file (test/processes/opener.ts, warm before a trial starts so that their opens
 * meet): a fresh file opened by both at once, and the gateway lock — a second gateway refused with the holder's name,
 * the lock gone with a SIGKILLed holder and with a closed scope, the admin CLI working beside a live gateway. Every
 * wait is for a process's answer or exit, never for a timer.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { MARKER } from "../../src/cli/Demo.js"
import type { OutboxStats } from "../../src/Delivery.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { cli, stdoutJson } from "../cli/support.js"
import { snapshot, tempDatabases } from "../support/files.js"
import type { Answer } from "./opener.js"
import { startOpener } from "./support.js"

const TRIALS = 20
const databases = tempDatabases("processes")

const outcome = (answer: Answer) =>
  "released" in answer ? "released" : answer.ok ? "ok" : `${answer.errorTag}: ${answer.message}`

/** What a file holds, read by this process as a non-gateway. */
const readBack = (filename: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [count] = yield* sql<{ n: number }>`SELECT count(*) AS n FROM outbox_entries`
    const migrations = yield* sql<{ name: string }>`SELECT name FROM effect_outbox_migrations ORDER BY migration_id`
    return { rows: count?.n, migrations: migrations.map((m) => m.name) }
  }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename, exclusive: false })))

const expectRefusal = (message: string, holderPid: number, file: string, between: readonly [number, number]) => {
  expect(message).toContain(
    `outbox database ${file} is in use by another gateway (pid ${holderPid} on host ${os.hostname()}, since `
  )
  const since = Date.parse(/since (\S+)\)/.exec(message)?.[1] ?? "")
  expect(since).toBeGreaterThanOrEqual(between[0])
  expect(since).toBeLessThanOrEqual(between[1])
}

describe("two processes on one SQLite file", () => {
  it.live(
    `a fresh file opened by both at the same moment: both start, write and read (${TRIALS} files)`,
    () =>
      Effect.gen(function*() {
        const [a, b] = yield* Effect.all([startOpener, startOpener], { concurrency: 2 })
        const files = Array.from({ length: TRIALS }, () => databases.fresh())
        const outcomes: Array<string> = []
        for (const [i, file] of files.entries()) {
          // one is the file's gateway, the other opens it beside the gateway, as an enqueuer or the admin CLI does
          const answers = yield* Effect.all([
            a.send({ cmd: "open", tag: `a${i}`, file, exclusive: i % 2 === 0 }),
            b.send({ cmd: "open", tag: `b${i}`, file, exclusive: i % 2 === 1 })
          ], { concurrency: 2 })
          outcomes.push(...answers.map((answer) => `${path.basename(file)} ${outcome(answer)}`))
        }
        expect(outcomes.filter((o) => !o.endsWith(" ok"))).toEqual([])
        const names = Object.keys(SqliteOutboxRepo.migrations).map((key) => key.replace(/^\d+_/, ""))
        for (const file of files) expect(yield* readBack(file)).toEqual({ rows: 2, migrations: names })
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a second gateway is refused naming the live holder; the lock goes with a SIGKILLed holder and with a closed scope",
    () =>
      Effect.gen(function*() {
        const before = yield* Clock.currentTimeMillis
        const [holder, other] = yield* Effect.all([startOpener, startOpener], { concurrency: 2 })
        const file = databases.fresh()
        expect(outcome(yield* holder.send({ cmd: "hold", tag: "held", file }))).toBe("ok")
        // one empty file beside the database, and nothing more
        const lockFile = `${fs.realpathSync(file)}-gateway.lock`
        expect(fs.readdirSync(databases.dir).filter((name) => name.startsWith(`${path.basename(file)}-gateway`)))
          .toEqual([
            path.basename(lockFile)
          ])
        expect(fs.statSync(lockFile).size).toBe(0)
        expect(fs.statSync(lockFile).mode & 0o777).toBe(0o600)

        // a gateway in another process, and one in this process: both refused, both told who holds the file
        const refused = yield* other.send({ cmd: "open", tag: "second gateway", file })
        expect(refused).toMatchObject({ ok: false, errorTag: "StoreError" })
        const error = yield* Effect.flip(
          Layer.build(SqliteOutboxRepo.layerFile({ filename: file })).pipe(Effect.scoped)
        )
        expect(error.operation).toBe("lock")
        const now = yield* Clock.currentTimeMillis
        for (const message of ["message" in refused ? refused.message : "", error.message]) {
          expectRefusal(message, holder.pid, file, [before, now])
        }
        // a process that is not a gateway opens the file beside it, and writes
        expect(yield* other.send({ cmd: "open", tag: "beside", file, exclusive: false })).toMatchObject({
          ok: true,
          rows: 2
        })

        yield* holder.kill
        yield* Effect.gen(function*() {
          // the dead holder left no lock: this process is the gateway now, and its record names it
          const sql = yield* SqlClient.SqlClient
          const [record] = yield* sql<{ value: string }>`SELECT value FROM outbox_meta WHERE key = 'gateway'`
          expect(JSON.parse(record?.value ?? "null")).toMatchObject({ pid: process.pid, host: os.hostname() })
          const refusedByUs = yield* other.send({ cmd: "open", tag: "while this process holds it", file })
          expectRefusal("message" in refusedByUs ? refusedByUs.message : "", process.pid, file, [
            now,
            yield* Clock.currentTimeMillis
          ])
        }).pipe(Effect.provide(SqliteOutboxRepo.layerFile({ filename: file })))
        // that layer's scope is closed: the lock is free again
        expect(yield* other.send({ cmd: "open", tag: "after the scope", file })).toMatchObject({ ok: true, rows: 3 })
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "the admin CLI reads (stats) and writes (prune) the file beside a live gateway",
    () =>
      Effect.gen(function*() {
        const gateway = yield* startOpener
        const file = databases.fresh()
        expect(outcome(yield* gateway.send({ cmd: "hold", tag: "gateway", file }))).toBe("ok")
        const [stats, prune] = yield* Effect.promise(() =>
          Promise.all([cli(["stats", "--json", "--db", file]), cli(["prune", "--json", "--db", file])])
        )
        expect(stats.stderr).toBe("")
        expect(stats.code).toBe(0)
        expect(stdoutJson<OutboxStats>(stats).byState.queued).toBe(1)
        expect(prune.stderr).toBe("")
        expect(prune.code).toBe(0)
        expect(stdoutJson(prune)).toEqual({ pruned: 0 })
        expect(outcome(yield* gateway.send({ cmd: "release", tag: "gateway" }))).toBe("released")
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "demo refuses a demo database that a running gateway holds, and leaves its files as they are",
    () =>
      Effect.gen(function*() {
        const gateway = yield* startOpener
        const file = databases.fresh()
        expect(outcome(yield* gateway.send({ cmd: "hold", tag: "gateway", file }))).toBe("ok")
        // marked as the demo's own, which it would otherwise remove and recreate
        yield* Effect.flatMap(OutboxRepo, (repo) => repo.setMeta(MARKER, "{}")).pipe(
          Effect.provide(SqliteOutboxRepo.layerFile({ filename: file, exclusive: false }))
        )
        // the database and its WAL (the -shm index changes with any reader's marks)
        const contents = () =>
          snapshot(databases.dir).filter((line) =>
            /^\S+\.db(-wal)? /.test(line) && line.startsWith(path.basename(file))
          )
        const before = contents()
        const run = yield* Effect.promise(() => cli(["demo", "--messages", "3", "--db", file]))
        expect(run.stderr).toBe(
          `effect-outbox: ${file} is in use by a running gateway; run the demo with --db <another file>\n`
        )
        expect(run.code).not.toBe(0)
        expect(before).toHaveLength(2)
        expect(contents()).toEqual(before)
      }).pipe(Effect.scoped),
    60_000
  )
})
