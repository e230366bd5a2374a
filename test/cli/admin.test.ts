/**
 * The admin commands, run as a child process against temp databases seeded through the library: output (table and
 * JSON), exit codes (0 ok, 1 runtime error, 2 usage), and that read-only commands never create a database.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import type { OutboxEntry, OutboxStats } from "../../src/Delivery.js"
import { snapshot } from "../support/files.js"
import type { Seeded } from "./support.js"
import { cli, inspect, seed, stdoutJson, tempDir } from "./support.js"

// the repository's copy; resolved from this file so the working directory does not matter
const FIXTURE = fileURLToPath(new URL("../fixtures/legacy-delivery-queue/", import.meta.url))

const tmp = tempDir("outbox-cli-")
let db: string
let ids: Seeded

beforeAll(async () => {
  db = tmp.file("seeded.db")
  ids = await seed(db)
})
afterAll(() => tmp.cleanup())

/** A private copy of the seeded database for a test that writes. */
const copyOfSeeded = async (name: string) => {
  const file = tmp.file(name)
  return { file, ids: await seed(file) }
}

// each CLI run is a Node process (about a second of CPU); runs overlap, so a test may wait on others
const OPTIONS = { timeout: 60_000 }

const USAGE = /usage: effect-outbox <command> \[options\]\n\n {2}stats +counts by state/

describe.concurrent("usage errors exit 2 with the usage on stderr", OPTIONS, () => {
  it("no command", async () => {
    const run = await cli([])
    expect(run.code).toBe(2)
    expect(run.stdout).toBe("")
    expect(run.stderr).toContain("effect-outbox: missing command")
    expect(run.stderr).toMatch(USAGE)
  })

  it("a value outside a choice", async () => {
    const run = await cli(["list", "--state", "sent", "--db", db])
    expect(run.code).toBe(2)
    expect(run.stderr).toContain(
      "effect-outbox: --state: expected one of queued, in_flight, delivered, failed_retryable, failed_terminal, expired, got \"sent\""
    )
    expect(run.stderr).toContain("usage: effect-outbox list [--db <db>]")
    // piped, not a terminal: no colour codes
    expect(run.stderr).not.toContain("\x1b[")
  })

  it("--help piped into another program has no colour codes", async () => {
    const run = await cli(["--help"])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^effect-outbox \d+\.\d+\.\d+\ndurable outbound delivery/)
    expect(run.stdout).not.toContain("\x1b[")
  })

  it("retry with neither an id nor --state", async () => {
    const run = await cli(["retry", "--db", db])
    expect(run.code).toBe(2)
    expect(run.stderr).toContain("effect-outbox: retry needs an entry id or --state failed_terminal|expired")
    expect(run.stderr).toContain("usage: effect-outbox retry [--db <db>]")
  })
})

describe.concurrent(
  "a missing or foreign database is an error (exit 1), and read-only commands create nothing",
  OPTIONS,
  () => {
    for (const args of [["stats"], ["list"], ["show", "01ANY"]]) {
      it(args[0]!, async () => {
        const dir = tempDir("outbox-missing-")
        try {
          const file = dir.file("none.db")
          const run = await cli([...args, "--db", file], { cwd: dir.dir })
          expect(run.code).toBe(1)
          expect(run.stderr.trim()).toBe(`effect-outbox: no outbox database at ${file}`)
          expect(fs.readdirSync(dir.dir)).toEqual([])
        } finally {
          dir.cleanup()
        }
      })
    }

    it("a file that is not an outbox is refused and left as it was", async () => {
      const file = tmp.file("notes.txt")
      fs.writeFileSync(file, "not a database\n".repeat(100))
      const run = await cli(["stats", "--db", file])
      expect(run.code).toBe(1)
      expect(run.stderr).toMatch(new RegExp(`^effect-outbox: ${file} is not an effect-outbox database \\(.+\\)\\n$`))
      expect(fs.readFileSync(file, "utf8")).toBe("not a database\n".repeat(100))
    })
  }
)

describe.concurrent("reading", OPTIONS, () => {
  it("stats: an aligned table by channel and state, and the oldest pending age", async () => {
    const run = await cli(["stats", "--db", db])
    expect(run.code).toBe(0)
    expect(run.stderr).toBe("")
    const lines = run.stdout.trimEnd().split("\n")
    expect(lines[0]).toMatch(new RegExp(`^outbox ${db}: 8 entries, oldest pending \\d`))
    expect(lines.slice(2).map((l) => l.split(/\s+/))).toEqual([
      ["channel", "queued", "in_flight", "delivered", "failed_retryable", "failed_terminal", "expired", "total"],
      ["broken", "0", "0", "0", "0", "2", "0", "2"],
      ["down", "0", "0", "0", "1", "0", "0", "1"],
      ["healthy", "1", "0", "3", "0", "0", "1", "5"],
      ["total", "1", "0", "3", "1", "2", "1", "8"]
    ])
    // aligned: every row of the table is as wide as the header up to its last column
    const widths = new Set(lines.slice(2).map((l) => l.length))
    expect(widths.size).toBe(1)
  })

  it("stats --json", async () => {
    const stats = stdoutJson<OutboxStats & { database: string }>(await cli(["stats", "--json", "--db", db]))
    expect(stats).toMatchObject({
      database: db,
      total: 8,
      byState: { queued: 1, in_flight: 0, delivered: 3, failed_retryable: 1, failed_terminal: 2, expired: 1 },
      byChannel: {
        broken: { failed_terminal: 2 },
        down: { failed_retryable: 1 },
        healthy: { delivered: 3, queued: 1, expired: 1 }
      }
    })
    expect(stats.oldestPendingAgeMs).toBeGreaterThanOrEqual(0)
  })

  it("list: newest first, one line per entry", async () => {
    const run = await cli(["list", "--db", db])
    expect(run.code).toBe(0)
    const [header, ...rows] = run.stdout.trimEnd().split("\n")
    expect(header!.split(/\s+/)).toEqual(["id", "state", "channel", "to", "kind", "attempts", "age", "detail"])
    const all = [...ids.expired, ...ids.delivered, ...ids.failedTerminal, ...ids.failedRetryable, ...ids.queued]
    expect(rows.map((r) => r.split(/\s+/)[0])).toEqual([...all].reverse())
    expect(rows.find((r) => r.startsWith(ids.failedTerminal[0]!))).toMatch(
      /failed_terminal\s+broken\s+dave\s+final\s+1\s+.+permanent_error: 400 Bad Request: chat not found$/
    )
  })

  it("list --state --channel --limit --json", async () => {
    const newest = stdoutJson<Array<OutboxEntry>>(
      await cli(["list", "--state", "failed_terminal", "--channel", "broken", "--limit", "1", "--json", "--db", db])
    )
    expect(newest).toHaveLength(1)
    expect(newest[0]).toMatchObject({
      id: ids.failedTerminal[1],
      state: "failed_terminal",
      terminalReason: "permanent_error"
    })
  })

  it("show: every field of one entry", async () => {
    const id = ids.failedTerminal[0]!
    const run = await cli(["show", id, "--db", db])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(new RegExp(`^id +${id}\\n`))
    expect(run.stdout).toMatch(/\nstate +failed_terminal \(permanent_error\)\n/)
    expect(run.stdout).toMatch(/\nto +dave\n/)
    expect(run.stdout).toMatch(/\nattempts +1\n/)
    expect(run.stdout).toMatch(/\nlast error +400 Bad Request: chat not found\n/)
    expect(run.stdout).toMatch(/\npayloads \(1\)\n {2}\[0\] text: "never arrives"\n$/)
  })

  it("show of an unknown id exits 1", async () => {
    const run = await cli(["show", "01NOSUCHENTRY", "--db", db])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe("effect-outbox: no outbox entry with id 01NOSUCHENTRY\n")
  })
})

describe.concurrent("writing", OPTIONS, () => {
  it("retry <id> requeues a failed entry (--json); a delivered one is refused", async () => {
    const { file, ids } = await copyOfSeeded("retry-one.db")
    const id = ids.failedTerminal[0]!
    const run = await cli(["retry", id, "--json", "--db", file])
    expect(run.code).toBe(0)
    expect(stdoutJson(run)).toEqual({ requeued: [id], skipped: [] })
    expect((await inspect(file)).entries.find((e) => e.id === id)).toMatchObject({ state: "queued", attemptCount: 0 })

    const refused = await cli(["retry", ids.delivered[0]!, "--db", file])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toMatch(/^effect-outbox: entry \S+: Requeue is not allowed from delivered/)
  })

  it("retry --state failed_terminal --channel requeues every match and says how many", async () => {
    const { file, ids } = await copyOfSeeded("retry-all.db")
    const run = await cli(["retry", "--state", "failed_terminal", "--channel", "broken", "--db", file])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^requeued 2 entries \(failed_terminal, channel broken\)/)
    const { entries } = await inspect(file)
    expect(entries.filter((e) => ids.failedTerminal.includes(e.id)).map((e) => e.state)).toEqual(["queued", "queued"])
  })

  it("retry --state skips tool/block progress messages (never replayed) and says so", async () => {
    const { file, ids } = await copyOfSeeded("retry-progress.db")
    const [progress, final] = ids.failedTerminal
    // one of the two failed replies was a tool progress message that recovery skipped
    const db = new Database(file)
    db.prepare(
      `UPDATE outbox_entries SET dispatch_kind = 'tool', terminal_reason = 'non_final_recovery_skip' WHERE id = ?`
    ).run(progress)
    db.close()
    const run = await cli(["retry", "--state", "failed_terminal", "--db", file])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^requeued 1 entry \(failed_terminal\)/)
    expect(run.stdout).toMatch(/\nskipped 1 tool\/block progress message \(never replayed\)\n/)
    const { entries } = await inspect(file)
    expect(entries.find((e) => e.id === progress)).toMatchObject({
      state: "failed_terminal",
      terminalReason: "non_final_recovery_skip"
    })
    expect(entries.find((e) => e.id === final)).toMatchObject({ state: "queued" })
    const one = await cli(["retry", progress!, "--db", file])
    expect(one.code).toBe(2) // refused as a usage error, like a quarantined row
    expect(one.stderr).toMatch(/is a tool progress message .*recovery never replays those/)
  })

  it("prune deletes finished entries past the configured retention", async () => {
    const { file } = await copyOfSeeded("prune.db")
    const kept = await cli(["prune", "--db", file])
    expect(kept.stdout).toBe("pruned 0 entries (delivered older than 1d, failed or expired older than 7d)\n")
    const run = await cli(["prune", "--json", "--db", file], { env: { OUTBOX_DELIVERED_RETENTION: "0 millis" } })
    expect(run.code).toBe(0)
    expect(stdoutJson(run)).toEqual({ pruned: 3 })
    expect((await inspect(file)).stats.byState).toMatchObject({ delivered: 0, failed_terminal: 2, queued: 1 })
  })
})

describe.concurrent("import-legacy", OPTIONS, () => {
  const copyFixture = (name: string) => {
    const dir = tmp.file(name)
    fs.cpSync(FIXTURE, dir, { recursive: true })
    return dir
  }

  it("imports the openclaw fixture once into a new database, reports every file and leaves them in place", async () => {
    const queue = copyFixture("queue-a")
    const before = snapshot(queue)
    const file = tmp.file("legacy-a.db")
    // the fixture is dated 2026-03-01: a long maxAge keeps its pending entries sendable
    const env = { OUTBOX_MAX_AGE: "3650 days" }
    const run = await cli(["import-legacy", queue, "--db", file], { env })
    expect(run.code).toBe(0)
    expect(run.stdout.split("\n")[0]).toBe(`imported ${queue} into ${file}`)
    expect(run.stdout).toMatch(/\nimported +5 +queued or retrying/)
    expect(run.stdout).toMatch(/\nfailed +1 +dead letters/)
    expect(run.stdout).toMatch(/\nskipped +3 /)
    expect(run.stdout).toMatch(
      /\nmalformed +1 +not imported, left in place\n {2}e0e0e0e0-0000-4000-8000-000000000000\.json: invalid JSON/
    )
    expect(snapshot(queue)).toEqual(before)

    const again = stdoutJson<{ alreadyImported: boolean; previous: { imported: number } }>(
      await cli(["import-legacy", queue, "--json", "--db", file], { env })
    )
    expect(again).toMatchObject({ alreadyImported: true, previous: { imported: 5, failed: 1, malformed: 1 } })

    const rows = (await inspect(file)).entries
    expect(rows.map((r) => [r.id, r.state]).sort()).toEqual([
      ["3f1c2a9e-6b7d-4c1e-9a51-0d2f8e4b7c10", "queued"],
      ["7a2b9d41-0c3e-4f5a-8b6c-1e2d3f4a5b6c", "failed_retryable"],
      ["9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a", "failed_terminal"],
      ["b5e6f7a8-9b0c-4d1e-8f2a-3b4c5d6e7f80", "failed_retryable"],
      ["c0ffee00-1111-4222-8333-444455556666", "queued"],
      ["d1d2d3d4-aaaa-4bbb-8ccc-ddddeeeeffff", "queued"]
    ])
  })

  it("entries past maxAge are imported as expired (--json report)", async () => {
    const queue = copyFixture("queue-b")
    const report = stdoutJson<{ imported: Array<string>; expired: Array<string>; failed: Array<string> }>(
      await cli(["import-legacy", queue, "--json", "--db", tmp.file("legacy-b.db")], {
        env: { OUTBOX_MAX_AGE: "1 millis" }
      })
    )
    expect(report.imported).toEqual([])
    expect(report.expired).toHaveLength(5)
    expect(report.failed).toEqual(["failed/9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a.json"])
  })

  it("a missing directory exits 1 and creates no database", async () => {
    const file = tmp.file("legacy-c.db")
    const run = await cli(["import-legacy", tmp.file("no-queue-here"), "--db", file])
    expect(run.code).toBe(1)
    expect(run.stderr).toBe(`effect-outbox: no legacy queue directory at ${tmp.file("no-queue-here")}\n`)
    expect(fs.existsSync(file)).toBe(false)
  })
})
