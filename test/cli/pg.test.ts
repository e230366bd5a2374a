/**
 * The admin commands on PostgreSQL: `--db postgres://…` or `OUTBOX_DB`, run as a child process against schemas of the
 * local server seeded through the library. The same output as on SQLite, the password never printed, and a schema
 * without an outbox refused and left without tables.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import type { OutboxEntry, OutboxStats } from "../../src/Delivery.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import { createSchema } from "../support/pg.js"
import type { Seeded } from "./support.js"
import { cli, inspectStore, seedStore, stdoutJson, tempDir } from "./support.js"

const FIXTURE = fileURLToPath(new URL("../fixtures/legacy-delivery-queue/", import.meta.url))
const OPTIONS = { timeout: 60_000 }

type Schema = Awaited<ReturnType<typeof createSchema>>
const schemas: Array<Schema> = []
const tmp = tempDir("outbox-cli-pg-")

/** A fresh schema, dropped after the file's tests. */
const schema = async () => {
  const s = await createSchema()
  schemas.push(s)
  return s
}

/** A seeded schema (see `seed` in support.ts). */
const seeded = async () => {
  const s = await schema()
  return { ...s, ids: await seedStore(PgOutboxRepo.layerUrl(s.url)) }
}

const inspect = (url: string) => inspectStore(PgOutboxRepo.layerUrl(url))

/** `url` with a password: the server trusts local connections, so it is accepted and ignored. */
const withPassword = (url: string) => url.replace("postgres://postgres@", "postgres://postgres:s3cret-pw@")

let shared: Schema & { readonly ids: Seeded }
beforeAll(async () => {
  shared = await seeded()
}, 60_000)
afterAll(async () => {
  tmp.cleanup()
  await Promise.all(schemas.map((s) => s.drop()))
})

describe.concurrent("admin commands on PostgreSQL", OPTIONS, () => {
  it("stats --db postgres://…: the table and the URL with its password masked", async () => {
    const url = withPassword(shared.url)
    const run = await cli(["stats", "--db", url])
    expect(run.code).toBe(0)
    expect(run.stderr).toBe("")
    const lines = run.stdout.trimEnd().split("\n")
    expect(lines[0]).toBe(`outbox ${url.replace("s3cret-pw", "***")}: 8 entries, ${lines[0]!.split(", ")[1]}`)
    expect(lines[0]).toMatch(/, oldest pending \d/)
    expect(lines.slice(2).map((l) => l.split(/\s+/))).toEqual([
      ["channel", "queued", "in_flight", "delivered", "failed_retryable", "failed_terminal", "expired", "total"],
      ["broken", "0", "0", "0", "0", "2", "0", "2"],
      ["down", "0", "0", "0", "1", "0", "0", "1"],
      ["healthy", "1", "0", "3", "0", "0", "1", "5"],
      ["total", "1", "0", "3", "1", "2", "1", "8"]
    ])
    const json = await cli(["stats", "--json", "--db", url])
    expect(json.stdout).not.toContain("s3cret-pw")
    expect(stdoutJson<OutboxStats & { database: string }>(json)).toMatchObject({
      database: url.replace("s3cret-pw", "***"),
      total: 8,
      byState: { queued: 1, in_flight: 0, delivered: 3, failed_retryable: 1, failed_terminal: 2, expired: 1 }
    })
  })

  it("OUTBOX_DB names the database when --db is absent; --db wins over it", async () => {
    const env = { OUTBOX_DB: shared.url }
    const cwd = tempDir("outbox-cli-pg-cwd-")
    const listed = stdoutJson<Array<OutboxEntry>>(
      await cli(["list", "--state", "failed_terminal", "--json"], { env, cwd: cwd.dir })
    )
    expect(listed.map((e) => e.id)).toEqual([...shared.ids.failedTerminal].reverse())

    const id = shared.ids.failedTerminal[0]!
    const shown = await cli(["show", id], { env, cwd: cwd.dir })
    expect(shown.code).toBe(0)
    expect(shown.stdout).toMatch(new RegExp(`^id +${id}\\n`))
    expect(shown.stdout).toMatch(/\nstate +failed_terminal \(permanent_error\)\n/)
    expect(shown.stdout).toMatch(/\nlast error +400 Bad Request: chat not found\n/)

    const other = await schema()
    const overridden = await cli(["stats", "--db", other.url], { env, cwd: cwd.dir })
    expect(overridden.code).toBe(1)
    expect(overridden.stderr).toContain(`schema ${other.name} has no outbox tables`)
    // nothing of the default file was made in the working directory
    expect(fs.readdirSync(cwd.dir)).toEqual([])
    cwd.cleanup()
  })

  it("retry <id>, retry --state and prune write through the library", async () => {
    const s = await seeded()
    const [one, two] = s.ids.failedTerminal
    const single = await cli(["retry", one!, "--json", "--db", s.url])
    expect(single.code).toBe(0)
    expect(stdoutJson(single)).toEqual({ requeued: [one], skipped: [] })
    expect((await inspect(s.url)).entries.find((e) => e.id === one)).toMatchObject({
      state: "queued",
      attemptCount: 0
    })

    const all = await cli(["retry", "--state", "failed_terminal", "--db", s.url])
    expect(all.stdout).toMatch(/^requeued 1 entry \(failed_terminal\)/)
    expect((await inspect(s.url)).entries.find((e) => e.id === two)).toMatchObject({ state: "queued" })

    const refused = await cli(["retry", s.ids.delivered[0]!, "--db", s.url])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^effect-outbox: entry \S+: Requeue is not allowed from delivered/)

    const pruned = await cli(["prune", "--json", "--db", s.url], { env: { OUTBOX_DELIVERED_RETENTION: "0 millis" } })
    expect(stdoutJson(pruned)).toEqual({ pruned: 3 })
    expect((await inspect(s.url)).stats.byState).toMatchObject({ delivered: 0, queued: 3, failed_terminal: 0 })
  })

  it("import-legacy creates the outbox's tables in an empty schema, imports once, and says so the second time", async () => {
    const s = await schema()
    const queue = tmp.file("queue")
    fs.cpSync(FIXTURE, queue, { recursive: true })
    const env = { OUTBOX_MAX_AGE: "3650 days" }
    const run = await cli(["import-legacy", queue, "--db", s.url], { env })
    expect(run.code).toBe(0)
    expect(run.stdout.split("\n")[0]).toBe(`imported ${queue} into ${s.url}`)
    expect(run.stdout).toMatch(/\nimported +5 +queued or retrying/)
    expect(run.stdout).toMatch(/\nfailed +1 +dead letters/)
    const again = stdoutJson<{ alreadyImported: boolean }>(
      await cli(["import-legacy", queue, "--json", "--db", s.url], { env })
    )
    expect(again).toMatchObject({ alreadyImported: true, previous: { imported: 5, failed: 1, malformed: 1 } })
    const { stats } = await inspect(s.url)
    expect(stats.byState).toMatchObject({ queued: 3, failed_retryable: 2, failed_terminal: 1 })
  })

  it("every other command refuses a schema without an outbox and creates no table in it", async () => {
    const s = await schema()
    for (const args of [["stats"], ["list"], ["show", "01ANY"], ["retry", "01ANY"], ["prune"]]) {
      const run = await cli([...args, "--db", s.url])
      expect(run.code, args[0]).toBe(1)
      expect(run.stderr).toBe(
        `effect-outbox: ${s.url} is not an effect-outbox database (schema ${s.name} has no outbox tables)\n`
      )
    }
    expect(await s.tables()).toEqual([])
  })

  it("a server that does not answer is a store error naming the URL, password masked", async () => {
    const run = await cli(["stats", "--db", "postgres://someone:s3cret-pw@127.0.0.1:1/nowhere"])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe(
      "effect-outbox: store error (open): cannot connect to postgres://someone:***@127.0.0.1:1/nowhere: " +
        "connect ECONNREFUSED 127.0.0.1:1\n"
    )
  })
})
