/**
 * Disk trouble at start-up: a database the process cannot write must fail `SqliteOutboxRepo.layerFile` with a
 * StoreError naming the file and the reason, when the layer is built — not open read-only and fail on the first
 * delivery. (A path that is a directory: test/store/SqliteFile.test.ts.)
 *
 * Permission cases need a user whom permissions stop. Tests often run as root in CI, and root writes into a
 * 0555 directory regardless; so as root those cases run in a child process as `nobody` (uid 65534), which sees the
 * same files as any unprivileged gateway would. If no such child can run here (no setuid, or a checkout nobody may
 * read), the test says so on stderr and checks the case every user hits instead: a parent that is a regular file.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { probe, type ProbeResult } from "./openProbe.js"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const NOBODY = 65534
const isRoot = process.getuid?.() === 0

/** Runs openProbe.ts as `nobody` on `files`; a string says why it could not run. */
const probeAsNobody = (files: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<ProbeResult> | string> =>
  Effect.async((resume) => {
    let out = ""
    let err = ""
    const child = spawn(process.execPath, [
      "--import",
      "tsx",
      path.join(repoRoot, "test/faults/openProbe.ts"),
      ...files
    ], {
      cwd: repoRoot,
      uid: NOBODY,
      gid: NOBODY,
      env: { ...process.env, HOME: os.tmpdir() },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.on("data", (d) => (out += String(d)))
    child.stderr.on("data", (d) => (err += String(d)))
    child.on("error", (e) => resume(Effect.succeed(`cannot start a process as uid ${NOBODY}: ${e.message}`)))
    child.on("close", (code) => {
      const lines = out.trim().split("\n").filter((l) => l !== "")
      resume(Effect.succeed(
        code === 0 && lines.length === files.length
          ? lines.map((l) => JSON.parse(l) as ProbeResult)
          : `the probe as uid ${NOBODY} exited ${code}: ${err.slice(-500)}`
      ))
    })
  })

/** A fresh directory that `nobody` can enter (mkdtemp makes it 0700). */
const freshDir = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-disk-"))
  fs.chmodSync(dir, 0o755)
  return dir
}

const expectStoreError = (result: ProbeResult | undefined, file: string, reason: RegExp) => {
  expect(result).toMatchObject({ ok: false, tag: "StoreError" })
  const message = result !== undefined && !result.ok ? result.message : ""
  expect(message).toContain(`cannot open outbox database ${file}`)
  expect(message).toMatch(reason)
}

describe("disk trouble at start-up", () => {
  it.live(
    "a database in a read-only directory, or a read-only database file, fails the layer with a StoreError",
    () =>
      Effect.gen(function*() {
        const dir = freshDir()
        // a new database in a read-only directory
        const readOnlyDir = path.join(dir, "read-only")
        fs.mkdirSync(readOnlyDir, { mode: 0o555 })
        const inReadOnlyDir = path.join(readOnlyDir, "outbox.db")
        // an existing database whose directory became read-only: WAL needs to create -wal and -shm beside it
        const lockedDir = path.join(dir, "locked")
        fs.mkdirSync(lockedDir, { mode: 0o755 })
        const existing = path.join(lockedDir, "outbox.db")
        expect(yield* probe(existing)).toEqual({ ok: true })
        // a read-only database file in a writable directory
        const openDir = path.join(dir, "open")
        fs.mkdirSync(openDir, { mode: 0o777 })
        fs.chmodSync(openDir, 0o777)
        const readOnlyFile = path.join(openDir, "outbox.db")
        expect(yield* probe(readOnlyFile)).toEqual({ ok: true })
        if (isRoot) { for (const f of [lockedDir, existing, openDir, readOnlyFile]) fs.chownSync(f, NOBODY, NOBODY) }
        fs.chmodSync(lockedDir, 0o555)
        fs.chmodSync(readOnlyFile, 0o444)
        const files = [inReadOnlyDir, existing, readOnlyFile]

        const results = isRoot ? yield* probeAsNobody(files) : yield* Effect.forEach(files, probe)
        if (typeof results === "string") {
          process.stderr.write(
            `disk test: running as root and ${results}; checking a parent that is a regular file instead\n`
          )
          const notADir = path.join(dir, "plain-file")
          fs.writeFileSync(notADir, "")
          const under = path.join(notADir, "outbox.db")
          expectStoreError(yield* probe(under), under, /ENOTDIR|not a directory/)
        } else {
          expectStoreError(results[0], inReadOnlyDir, /EACCES|permission denied/)
          expectStoreError(results[1], existing, /EACCES|permission denied/)
          expectStoreError(results[2], readOnlyFile, /EACCES|permission denied/)
        }
        fs.chmodSync(lockedDir, 0o755)
        fs.rmSync(dir, { recursive: true, force: true })
      }),
    30_000
  )

  it.effect("a path under a regular file (ENOTDIR) fails the layer with a StoreError", () =>
    Effect.gen(function*() {
      const dir = freshDir()
      const file = path.join(dir, "plain-file")
      fs.writeFileSync(file, "not a directory")
      const under = path.join(file, "outbox.db")
      expectStoreError(yield* probe(under), under, /ENOTDIR|not a directory/)
      fs.rmSync(dir, { recursive: true, force: true })
    }))

  const notADatabase = () => {
    const dir = freshDir()
    const file = path.join(dir, "outbox.db")
    const garbage = Buffer.from("this is not a database\n".repeat(400))
    fs.writeFileSync(file, garbage, { mode: 0o600 })
    return { dir, file, garbage }
  }

  it.effect("a file that is not a SQLite database fails the layer with a StoreError naming it, and is left as it was", () =>
    Effect.gen(function*() {
      const { dir, file, garbage } = notADatabase()
      const result = yield* probe(file)
      expect(result).toMatchObject({ ok: false, tag: "StoreError" })
      expect(result.ok ? "" : result.message).toContain(`cannot open outbox database ${file}`)
      expect(fs.readFileSync(file).equals(garbage)).toBe(true)
      fs.rmSync(dir, { recursive: true, force: true })
    }))

  // when the SQLite client itself cannot be built, the reason is in the message, not only in `cause`
  it.effect("… and its message says why: the file is not a database", () =>
    Effect.gen(function*() {
      const { dir, file } = notADatabase()
      const result = yield* probe(file)
      fs.rmSync(dir, { recursive: true, force: true })
      expect(result.ok ? "" : result.message).toMatch(/file is not a database/)
    }))
})
