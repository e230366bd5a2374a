/**
 * A second process with its own connection to an outbox file, which takes SQLite's write lock on command:
 * `lock` runs `BEGIN IMMEDIATE` there and completes once it holds the lock; `release` commits and completes once
 * the lock is gone. The test decides when, so no assertion races a timer. Plain Node + better-sqlite3 (no
 * TypeScript), so it starts in ~50 ms.
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
require("readline").createInterface({ input: process.stdin }).on("line", (command) => {
  if (command === "lock") {
    db.exec("BEGIN IMMEDIATE")
    console.log("locked")
  } else if (command === "release") {
    db.exec("COMMIT")
    console.log("released")
  }
})
console.log("ready")
`

/** Starts the locker on `filename`; the scope's end stops it. */
export const startLocker = (filename: string) =>
  Effect.gen(function*() {
    const lines = yield* Queue.unbounded<string>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(process.execPath, ["-e", script, filename], { cwd: repoRoot, stdio: ["pipe", "pipe", "inherit"] })
      ),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    readline.createInterface({ input: child.stdout! }).on("line", (line) => Queue.unsafeOffer(lines, line))
    const expect = (wanted: string): Effect.Effect<void> =>
      Effect.flatMap(Queue.take(lines), (line) => (line === wanted ? Effect.void : expect(wanted)))
    yield* expect("ready")
    const command = (line: string, reply: string) =>
      Effect.zipRight(Effect.sync(() => child.stdin!.write(`${line}\n`)), expect(reply))
    return {
      /** takes the write lock and holds it until `release` */
      lock: command("lock", "locked"),
      release: command("release", "released")
    }
  })
