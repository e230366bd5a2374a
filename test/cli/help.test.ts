/**
 * The CLI's help and argument errors (its own text, not @effect/cli's generic one), that read-only commands leave
 * no -wal/-shm files, that import-legacy refuses an existing empty file, and that a closed output pipe is no crash.
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import * as Usage from "@effect/cli/Usage"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import * as Admin from "../../src/cli/Admin.js"
import * as Demo from "../../src/cli/Demo.js"
import * as Help from "../../src/cli/Help.js"
import * as Serve from "../../src/cli/Serve.js"
import { BIN, cli, seed, seedQueued, tempDir } from "./support.js"

const FIXTURE = fileURLToPath(new URL("../fixtures/legacy-delivery-queue/", import.meta.url))
const OPTIONS = { timeout: 60_000 }
const tmp = tempDir("outbox-help-")
let db: string
beforeAll(async () => {
  db = tmp.file("seeded.db")
  await seed(db)
})
afterAll(() => tmp.cleanup())

const GENERIC = [
  "A user-defined piece of text",
  "A true or false value",
  "An integer",
  "This setting is optional",
  "--wizard",
  "--completions"
]

describe("the commands' descriptions match their @effect/cli definitions", () => {
  for (const synopsis of [...Admin.usages, Command.getUsage(Serve.command), Command.getUsage(Demo.command)]) {
    // the synopsis as text: the values of its spans' text leaves, in order
    const defined = [
      ...JSON.stringify(Usage.enumerate(synopsis, CliConfig.defaultConfig)).matchAll(/"value":"([^"]*)"/g)
    ]
      .map((m) => m[1]).join("")
    const cmd = Help.specs.find((s) => defined.startsWith(`${s.name} `))!
    it(cmd?.name ?? defined, () => {
      const flags = new Set([...defined.matchAll(/--([a-z-]+)/g)].map((m) => m[1]!))
      expect(cmd).toBeDefined()
      expect(new Set(cmd.options.map((o) => o.flag))).toEqual(flags)
      for (const a of cmd.args) expect(defined).toContain(`<${a.name}>`)
    })
  }
})

describe.concurrent("help", OPTIONS, () => {
  it("the top-level help lists every command with a line each, within 100 columns", async () => {
    const run = await cli(["--help"])
    expect(run.code).toBe(0)
    for (const line of run.stdout.split("\n")) expect(line.length).toBeLessThanOrEqual(100)
    for (const s of Help.specs) expect(run.stdout).toContain(`  ${s.name.padEnd(13)}  ${s.summary}`)
    for (const text of GENERIC) expect(run.stdout).not.toContain(text)
  })

  for (const s of Help.specs) {
    it(`${s.name} --help names the command and describes every option`, async () => {
      const run = await cli([s.name, "--help"])
      expect(run.code).toBe(0)
      expect(run.stdout).toContain(`usage: effect-outbox ${s.name} `)
      for (const o of s.options) {
        expect(run.stdout).toMatch(
          new RegExp(`\\n  --${o.flag}[^\\n]*  ${o.text.slice(0, 20).replace(/[()]/g, "\\$&")}`)
        )
      }
      for (const line of run.stdout.split("\n")) expect(line.length).toBeLessThanOrEqual(100)
      for (const text of GENERIC) expect(run.stdout).not.toContain(text)
    })
  }
})

describe.concurrent("argument errors name the flag and the value, then the command's usage only", OPTIONS, () => {
  const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string, string]> = [
    [["list", "--limit", "abc"], "effect-outbox: --limit: expected a whole number ≥ 1, got \"abc\"", "list"],
    [["list", "--limit=0"], "effect-outbox: --limit: expected a whole number ≥ 1, got \"0\"", "list"],
    [["list", "--db"], "effect-outbox: --db needs a file path or a postgres:// URL", "list"],
    [["stats", "--db", "--json"], "effect-outbox: --db needs a file path or a postgres:// URL", "stats"],
    [["show"], "effect-outbox: show needs an entry id (<id>)", "show"],
    [["stats", "--nope"], "effect-outbox: unknown option --nope for stats", "stats"],
    [
      ["demo", "--messages", "9999"],
      "effect-outbox: --messages: expected a whole number from 1 to 5000, got \"9999\"",
      "demo"
    ]
  ]
  for (const [args, message, command] of cases) {
    it(args.join(" "), async () => {
      const run = await cli(args)
      expect(run.code).toBe(2)
      expect(run.stdout).toBe("")
      expect(run.stderr.split("\n")[0]).toBe(message)
      expect(run.stderr).toContain(`\n\nusage: effect-outbox ${command} [`)
      for (const other of Help.specs.filter((s) => s.name !== command)) {
        expect(run.stderr).not.toContain(`effect-outbox ${other.name} `)
      }
    })
  }

  it("an unknown command lists the commands", async () => {
    const run = await cli(["bogus"])
    expect(run.code).toBe(2)
    expect(run.stderr).toMatch(/^effect-outbox: unknown command "bogus" \(commands: stats, list,/)
  })

  it("--log-level is accepted after the command", async () => {
    const run = await cli(["stats", "--db", db, "--log-level", "error"])
    expect(run.code).toBe(0)
    expect(run.stdout).toContain("entries")
  })
})

describe.concurrent("files", OPTIONS, () => {
  for (const args of [["stats"], ["list"], ["show", "01ANY"]]) {
    it(`${args[0]} leaves no -wal/-shm beside the database`, async () => {
      const dir = tempDir("outbox-wal-")
      try {
        const file = dir.file("copy.db")
        fs.copyFileSync(db, file)
        const run = await cli([...args, "--db", file])
        expect(run.stderr).not.toContain("unexpected")
        expect(fs.readdirSync(dir.dir)).toEqual(["copy.db"])
      } finally {
        dir.cleanup()
      }
    })
  }

  it("import-legacy refuses an existing empty file unless --force", async () => {
    const dir = tempDir("outbox-empty-")
    try {
      const file = dir.file("empty.db")
      fs.writeFileSync(file, "")
      const refused = await cli(["import-legacy", FIXTURE, "--db", file])
      expect(refused.code).toBe(1)
      expect(refused.stderr.trim()).toBe(`effect-outbox: ${file} is not an effect-outbox database (the file is empty)`)
      expect(fs.statSync(file).size).toBe(0)
      const forced = await cli(["import-legacy", FIXTURE, "--db", file, "--force", "--json"])
      expect(forced.code).toBe(0)
      expect(fs.statSync(file).size).toBeGreaterThan(0)
    } finally {
      dir.cleanup()
    }
  })
})

it("output piped into a reader that stops early (| head) ends without an error", OPTIONS, async () => {
  const big = tmp.file("big.db")
  await seedQueued(big, 2000) // ~240 KB of listing, well past a pipe's 64 KB buffer
  // the reader closes its end at once, as `head -0` does: every write after it gets EPIPE
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "list", "--db", big, "--limit", "2000"], {
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stderr = ""
    child.stdout.destroy()
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stderr }))
  })
  expect(result.stderr).not.toContain("EPIPE")
  expect(result.stderr).toBe("")
  expect(result.code).toBe(0)
})
