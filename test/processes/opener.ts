/**
 * A process that opens outbox files on command, for the tests that need two real processes on one SQLite file.
 *   node --import tsx test/processes/opener.ts
 * Commands arrive on stdin as JSON lines; each answer is one JSON line on stdout carrying the command's `tag`:
 * - `{ cmd: "open", tag, file, exclusive? }`: `SqliteOutboxRepo.layerFile`, one row inserted and read back, closed;
 *   answers `{ tag, ok: true, rows }` (rows: how many the file holds) or `{ tag, ok: false, errorTag, message }`.
 * - `{ cmd: "hold", tag, file, exclusive? }`: the same, but the file stays open (a live gateway) until
 *   `{ cmd: "release", tag }`, which answers `{ tag, released: true }` once the layer's scope is closed.
 * `{ ready: true }` is printed once the modules are loaded, so a test can start a trial without a cold start in it.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as readline from "node:readline"
import type { EntryId } from "../../src/Delivery.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { queuedEntry } from "../support/entries.js"

/** A command the test sends. */
export type Command =
  | { readonly cmd: "open" | "hold"; readonly tag: string; readonly file: string; readonly exclusive?: boolean }
  | { readonly cmd: "release"; readonly tag: string }

/** What the process answers. */
export type Answer =
  | { readonly tag: string; readonly ok: true; readonly rows: number }
  | { readonly tag: string; readonly ok: false; readonly errorTag: string; readonly message: string }
  | { readonly tag: string; readonly released: true }

let written = 0

/** Inserts one row and reads it and the whole table back: the writes and reads a gateway makes at start. */
const writeAndRead = Effect.gen(function*() {
  const repo = yield* OutboxRepo
  const entry = queuedEntry({ id: `P${process.pid}-${++written}` as EntryId })
  yield* repo.insert([entry])
  const back = yield* repo.get(entry.id)
  if (Option.isNone(back)) return yield* Effect.dieMessage(`row ${entry.id} was inserted but is not there`)
  return (yield* repo.list({ limit: 10_000 })).length
})

const say = (answer: Answer) => Effect.sync(() => process.stdout.write(`${JSON.stringify(answer)}\n`))

const failure = (tag: string, cause: Cause.Cause<{ readonly _tag: string; readonly message: string }>): Answer =>
  Option.match(Cause.failureOption(cause), {
    onNone: () => ({ tag, ok: false, errorTag: "Defect", message: Cause.pretty(cause) }),
    onSome: (e) => ({ tag, ok: false, errorTag: e._tag, message: e.message })
  })

const releases = new Map<string, Deferred.Deferred<void>>()

const run = (command: Command): Effect.Effect<void> => {
  if (command.cmd === "release") {
    const release = releases.get(command.tag)
    return release === undefined ? Effect.void : Deferred.succeed(release, undefined)
  }
  const { file, tag } = command
  const layer = SqliteOutboxRepo.layerFile({
    filename: file,
    ...(command.exclusive === undefined ? {} : { exclusive: command.exclusive })
  })
  return Effect.gen(function*() {
    const release = yield* Deferred.make<void>()
    const exit = yield* Effect.exit(
      Effect.gen(function*() {
        const rows = yield* writeAndRead
        if (command.cmd === "hold") {
          releases.set(tag, release)
          yield* say({ tag, ok: true, rows })
          yield* Deferred.await(release)
        }
        return rows
      }).pipe(Effect.provide(layer))
    )
    if (Exit.isFailure(exit)) return yield* say(failure(tag, exit.cause))
    yield* say(command.cmd === "hold" ? { tag, released: true } : { tag, ok: true, rows: exit.value })
  })
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  Effect.runFork(run(JSON.parse(line) as Command))
})
process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
