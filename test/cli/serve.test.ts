/**
 * `effect-outbox serve` as a user runs it (the built bin in a child process): it prints where the board is, answers
 * over HTTP from the seeded file, retries through it (checked in the file), refuses writes with --read-only, refuses
 * to listen beyond loopback without a token, takes the token from OUTBOX_ADMIN_TOKEN, and refuses a missing file.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import type { ChildProcessWithoutNullStreams } from "node:child_process"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { BIN, cli, inspect, ROOT, seed, tempDir } from "./support.js"
import type { Seeded } from "./support.js"

const tmp = tempDir("outbox-serve-")
let db: string
let seeded: Seeded
beforeAll(async () => {
  db = tmp.file("served.db")
  seeded = await seed(db)
})
afterAll(() => tmp.cleanup())

const running: Array<ChildProcessWithoutNullStreams> = []
afterAll(() => {
  for (const child of running) child.kill("SIGTERM")
})

/** Starts `serve` with `args` and resolves with the board's URL once it printed it. */
const serve = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<{ readonly url: string; readonly child: ChildProcessWithoutNullStreams }>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "serve", "--port", "0", ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env }
    })
    running.push(child)
    let out = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d
      const url = /is on (http:\/\/\S+\/)/.exec(out)
      if (url !== null) resolve({ url: url[1]!, child })
    })
    child.on("close", (code) => reject(new Error(`serve exited with ${code}: ${out}`)))
  })

const post = { method: "POST", headers: { "content-type": "application/json" } }

describe("effect-outbox serve", { timeout: 60_000 }, () => {
  it("serves the board of the file on a loopback port and retries through it", async () => {
    const { child, url } = await serve(["--db", db])
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
    const page = await fetch(url)
    expect(await page.text()).toContain("<title>effect-outbox board</title>")
    const stats = (await (await fetch(new URL("api/stats", url))).json()) as { total: number }
    expect(stats.total).toBe(8)
    const info = (await (await fetch(new URL("api/info", url))).json()) as { live: boolean; readOnly: boolean }
    expect(info).toEqual({ live: false, readOnly: false, authRequired: false, statsMaxAgeMs: 5000 })
    const id = seeded.failedTerminal[0]!
    expect((await fetch(new URL(`api/entries/${id}/retry`, url), post)).status).toBe(200)
    const after = await inspect(db)
    expect(after.entries.find((e) => e.id === id)?.state).toBe("queued")
    child.kill("SIGTERM")
  })

  it("with --read-only refuses every write and leaves the file unchanged", async () => {
    const { child, url } = await serve(["--db", db, "--read-only"])
    const id = seeded.failedTerminal[1]!
    const refused = await fetch(new URL(`api/entries/${id}/retry`, url), post)
    expect(refused.status).toBe(403)
    expect((await fetch(new URL("api/prune", url), post)).status).toBe(403)
    expect((await inspect(db)).entries.find((e) => e.id === id)?.state).toBe("failed_terminal")
    child.kill("SIGTERM")
  })

  it("beyond loopback needs a token (OUTBOX_ADMIN_TOKEN works) and refuses requests without it", async () => {
    const refused = await cli(["serve", "--db", db, "--host", "0.0.0.0", "--port", "0"])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain("the board listens on 0.0.0.0, beyond this machine: give it a token")
    const token = "serve-test-token-0123456789"
    const { child, url } = await serve(["--db", db, "--host", "0.0.0.0"], { OUTBOX_ADMIN_TOKEN: token })
    const local = url.replace("0.0.0.0", "127.0.0.1")
    expect((await fetch(new URL("api/stats", local))).status).toBe(401)
    const ok = await fetch(new URL("api/stats", local), { headers: { authorization: `Bearer ${token}` } })
    expect(ok.status).toBe(200)
    child.kill("SIGTERM")
  })

  it("refuses a file that is not there, creating nothing", async () => {
    const missing = tmp.file("missing.db")
    const run = await cli(["serve", "--db", missing, "--port", "0"])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain(`no outbox database at ${missing}`)
    expect(fs.existsSync(missing)).toBe(false)
  })
})
