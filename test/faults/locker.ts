/**
 * A second process with its own connection to an outbox file, which takes SQLite's write lock on command:
 * `lock(ms)` runs `BEGIN IMMEDIATE` there, resolves once it holds the lock, and commits after `ms`.
 * Plain Node + better-sqlite3 (no TypeScript), so it starts in ~50 ms.
 */
import * as Effect from "effect/Effect"
import * as Queue from "effect/Queue"
import { spawn } from "node:child_process"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")

const script = `
const Database = require("better-sqlite3")
const db = new Database(process.argv[1])
db.pragma("busy_timeout = 10000")
require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, ms] = line.split(" ")
  if (command !== "lock") return
  db.exec("BEGIN IMMEDIATE")
  console.log("locked")
  setTimeout(() => { db.exec("COMMIT"); console.log("released") }, Number(ms))
})
console.log("ready")
`

/** Starts the locker on `filename`; the scope's end stops it. */
export const startLocker = (filename: string) =>
  Effect.gen(function*() {
    const lines = yield* Queue.unbounded<string>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() => spawn(process.execPath, ["-e", script, filename], { cwd: repoRoot, stdio: ["pipe", "pipe", "inherit"] })),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    readline.createInterface({ input: child.stdout! }).on("line", (line) => Queue.unsafeOffer(lines, line))
    const expect = (wanted: string): Effect.Effect<void> =>
      Effect.flatMap(Queue.take(lines), (line) => (line === wanted ? Effect.void : expect(wanted)))
    yield* expect("ready")
    return {
      /** holds the write lock for `ms` from when this completes */
      lock: (ms: number) => Effect.zipRight(Effect.sync(() => child.stdin!.write(`lock ${ms}\n`)), expect("locked")),
      /** completes when the lock taken last is released */
      released: expect("released")
    }
  })
