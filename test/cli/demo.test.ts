/**
 * `effect-outbox demo`, run as a child process on a temp database: it crashes half-way, restarts, settles (every row
 * delivered, failed for good or expired, none in flight), prints its summary, and leaves the database behind.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import { cli, inspect, seed, stdoutJson, tempDir } from "./support.js"

const tmp = tempDir("outbox-demo-")
afterAll(() => tmp.cleanup())

describe("demo", { timeout: 90_000 }, () => {
  it("crashes with rows in flight, recovers them on restart, and settles every row", async () => {
    const db = tmp.file("demo.db")
    const run = await cli(["demo", "--messages", "60", "--db", db])
    expect(run.stderr).toBe("")
    expect(run.code).toBe(0)
    const out = run.stdout
    expect(out).toContain(
      "effect-outbox demo: a gateway answers 60 messages in 6 conversations on 3 fake channels (seed 1)"
    )
    expect(out).toMatch(/\[boot 1\] \d+\/60 submitted/)
    expect(out).toMatch(
      /\ncrash at \d[\d.]* (ms|s): the gateway was dropped without draining; \d+ rows? left in_flight/
    )
    expect(out).toContain(
      `restart: same node id "demo-gateway", so the recovery worker reclaims boot 1's leases at once`
    )
    expect(out).toMatch(/\[boot 2\] 60\/60 submitted/)
    expect(out).toMatch(/\nsummary: 60 replies in \d/)
    for (
      const label of [
        "replies submitted",
        "delivered",
        "retries scheduled",
        "failed for good",
        "expired",
        "in flight at crash",
        "possible duplicates",
        "duplicates seen"
      ]
    ) {
      expect(out).toMatch(new RegExp(`\\n {2}${label} +\\d+ `))
    }
    expect(out).toMatch(/\nchannel +contract +delivered +failed +expired +total/)
    expect(out).toContain(`npx effect-outbox stats --db ${db}`)

    // the database is left behind, settled
    const { entries, stats } = await inspect(db)
    expect(stats.total).toBe(60)
    expect(stats.byState).toMatchObject({ queued: 0, in_flight: 0, failed_retryable: 0 })
    expect(stats.byState.delivered + stats.byState.failed_terminal + stats.byState.expired).toBe(60)
    // one conversation of the rejecting channel has blocked the bot: its replies fail for good, never retried
    expect(entries.filter((e) => e.channel === "rejecting" && e.terminalReason === "permanent_error").length)
      .toBeGreaterThan(0)
    const delivered = Number(/\n {2}delivered +(\d+) /.exec(out)?.[1])
    expect(delivered).toBe(stats.byState.delivered)
  })

  it("replaces its own earlier database, prints JSON with --json, and refuses any other outbox", async () => {
    const db = tmp.file("again.db")
    await cli(["demo", "--messages", "3", "--json", "--db", db])
    const run = await cli(["demo", "--messages", "3", "--json", "--db", db])
    expect(run.code).toBe(0)
    const summary = stdoutJson<
      { messages: number; submitted: number; delivered: number; pending: number; crash: { inFlight: number } }
    >(run)
    expect(summary).toMatchObject({ messages: 3, submitted: 3, pending: 0 })
    expect((await inspect(db)).stats.total).toBe(3)

    const foreign = tmp.file("gateway.db")
    await seed(foreign)
    const before = fs.readFileSync(foreign)
    const refused = await cli(["demo", "--messages", "3", "--db", foreign])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toBe(
      `effect-outbox: ${foreign} holds an outbox the demo did not create; run the demo with --db <another file>\n`
    )
    expect(fs.readFileSync(foreign).equals(before)).toBe(true)
  })
})
