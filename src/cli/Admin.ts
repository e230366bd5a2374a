/**
 * The admin commands over an outbox database: `stats`, `list`, `show`, `retry`, `prune`, `import-legacy`, on an SQLite
 * file or a PostgreSQL URL (`--db`, else `OUTBOX_DB`, else ./outbox.db; see `Database`).
 * Each prints an aligned table for people (rendered by `AdminOutput`) or, with `--json`, JSON for scripts. Reads open
 * the database read-only and never create it; writes go through the `Outbox` facade (or the importer) like the
 * gateway's own code does.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as Usage from "@effect/cli/Usage"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { notRetryable, retryAll } from "../admin/Retry.js"
import { EntryId, entryStates } from "../Delivery.js"
import { EntryNotFound } from "../DeliveryError.js"
import * as LegacyFileQueue from "../LegacyFileQueue.js"
import { Outbox } from "../Outbox.js"
import type { OutboxShape } from "../Outbox.js"
import * as OutboxConfig from "../OutboxConfig.js"
import {
  importSummary,
  listTable,
  pruneSummary,
  requeuedAll,
  requeuedOne,
  showEntry,
  statsHeadline,
  statsTable
} from "./AdminOutput.js"
import * as Database from "./Database.js"
import * as Format from "./Format.js"
import * as Help from "./Help.js"
import { UsageError } from "./UsageError.js"

// public through effect-outbox/cli/Admin, where they were defined before AdminOutput existed
export { importSummary, listTable, showEntry, statsTable } from "./AdminOutput.js"

/** `--db <db>`, shared by every command; absent, `OUTBOX_DB` or ./outbox.db (`Database.location`). */
export const db = Options.text("db").pipe(
  Options.withPseudoName("db"),
  Options.withDescription("the outbox database: an SQLite file or a postgres:// URL"),
  Options.optional
)

/** `--json`: machine output. */
export const json = Options.boolean("json").pipe(Options.withDescription("print JSON instead of a table"))

const stateOption = Options.choice("state", entryStates).pipe(Options.optional)
const channelOption = Options.text("channel").pipe(Options.withPseudoName("name"), Options.optional)

const print = (text: string) => Console.log(text)

/**
 * The outbox an admin command works on, over the database `--db` names: opened read-only for `read`, for writing
 * (never created) for `write`. Every admin command and `serve` open their database here.
 */
export const openOutbox = (path: string, mode: "read" | "write") =>
  Database.admin(mode === "read" ? Database.readOnly(path) : Database.readWrite(path, { create: false }))

const readOutbox = <A, E, R>(db: Option.Option<string>, f: (outbox: OutboxShape) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    Database.location(db),
    (path) => Effect.flatMap(Outbox, f).pipe(Effect.provide(openOutbox(path, "read")))
  )

const writeOutbox = <A, E, R>(db: Option.Option<string>, f: (outbox: OutboxShape) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    Database.location(db),
    (path) => Effect.flatMap(Outbox, f).pipe(Effect.provide(openOutbox(path, "write")))
  )

// ---------------------------------------------------------------------------------------------------------------
// stats

const statsCommand = Command.make(
  "stats",
  { db, json },
  ({ db, json }) =>
    readOutbox(db, (outbox) =>
      Effect.gen(function*() {
        const stats = yield* outbox.stats
        const database = Database.display(yield* Database.location(db))
        if (json) return yield* print(Format.json({ database, ...stats }))
        yield* print(statsHeadline(database, stats))
        if (stats.total > 0) yield* print(`\n${statsTable(stats)}`)
      }))
).pipe(Command.withDescription(Help.spec("stats").summary))

// ---------------------------------------------------------------------------------------------------------------
// list

const DEFAULT_LIMIT = Help.DEFAULT_LIMIT

const positive = (name: string, n: number) =>
  Number.isInteger(n) && n > 0
    ? Effect.succeed(n)
    : Effect.fail(new UsageError({ message: `--${name}: expected a whole number ≥ 1, got "${n}"` }))

const listCommand = Command.make("list", {
  db,
  json,
  state: stateOption,
  channel: channelOption,
  limit: Options.integer("limit").pipe(
    Options.withPseudoName("n"),
    Options.withDefault(DEFAULT_LIMIT),
    Options.withDescription(`how many entries, newest first (default ${DEFAULT_LIMIT})`)
  )
}, ({ channel, db, json, limit, state }) =>
  Effect.gen(function*() {
    const n = yield* positive("limit", limit)
    yield* readOutbox(db, (outbox) =>
      Effect.gen(function*() {
        const entries = yield* outbox.list({
          limit: n,
          ...Option.match(state, { onNone: () => ({}), onSome: (s) => ({ state: s }) }),
          ...Option.match(channel, { onNone: () => ({}), onSome: (c) => ({ channel: c }) })
        })
        if (json) return yield* print(Format.json(entries))
        if (entries.length === 0) return yield* print("no entries")
        yield* print(listTable(entries, yield* Clock.currentTimeMillis))
        if (entries.length === n) yield* print(`\n(the ${n} newest; --limit for more)`)
      }))
  })).pipe(Command.withDescription(Help.spec("list").summary))

// ---------------------------------------------------------------------------------------------------------------
// show

const idArg = Args.text({ name: "id" }).pipe(Args.withDescription("the entry id"))

const getOrFail = (outbox: OutboxShape, id: string) =>
  Effect.flatMap(
    outbox.get(EntryId.make(id)),
    Option.match({ onNone: () => Effect.fail(new EntryNotFound({ id })), onSome: Effect.succeed })
  )

const showCommand = Command.make(
  "show",
  { db, json, id: idArg },
  ({ db, id, json }) =>
    readOutbox(db, (outbox) =>
      Effect.gen(function*() {
        const entry = yield* getOrFail(outbox, id)
        yield* print(json ? Format.json(entry) : showEntry(entry, yield* Clock.currentTimeMillis))
      }))
).pipe(Command.withDescription(Help.spec("show").summary))

// ---------------------------------------------------------------------------------------------------------------
// retry

const retryCommand = Command.make("retry", {
  db,
  json,
  id: Args.text({ name: "id" }).pipe(Args.withDescription("the entry to retry"), Args.optional),
  state: Options.choice("state", ["failed_terminal", "expired"]).pipe(
    Options.withDescription("retry every entry in this state instead of one id"),
    Options.optional
  ),
  channel: channelOption.pipe(Options.withDescription("with --state: only this channel"))
}, ({ channel, db, id, json, state }) =>
  Effect.gen(function*() {
    if (Option.isSome(id) && Option.isSome(state)) {
      return yield* Effect.fail(new UsageError({ message: "retry takes an id or --state, not both" }))
    }
    if (Option.isSome(channel) && Option.isNone(state)) {
      return yield* Effect.fail(new UsageError({ message: "--channel only applies with --state" }))
    }
    if (Option.isSome(id)) {
      return yield* writeOutbox(db, (outbox) =>
        Effect.gen(function*() {
          const entry = yield* getOrFail(outbox, id.value)
          const refusal = notRetryable(entry)
          if (refusal !== undefined) return yield* Effect.fail(new UsageError({ message: refusal }))
          yield* outbox.retry(entry.id)
          yield* print(json ? Format.json({ requeued: [entry.id], skipped: [] }) : requeuedOne(entry))
        }))
    }
    if (Option.isNone(state)) {
      return yield* Effect.fail(
        new UsageError({ message: "retry needs an entry id or --state failed_terminal|expired" })
      )
    }
    yield* writeOutbox(db, (outbox) =>
      Effect.gen(function*() {
        const { skippedBy, ...result } = yield* retryAll(outbox, {
          state: state.value,
          channel: Option.getOrUndefined(channel)
        })
        if (json) return yield* print(Format.json(result))
        const scope = `${state.value}${Option.match(channel, { onNone: () => "", onSome: (c) => `, channel ${c}` })}`
        for (const line of requeuedAll(result.requeued.length, skippedBy, scope)) yield* print(line)
      }))
  })).pipe(Command.withDescription(Help.spec("retry").summary))

// ---------------------------------------------------------------------------------------------------------------
// prune

const pruneCommand = Command.make(
  "prune",
  { db, json },
  ({ db, json }) =>
    writeOutbox(db, (outbox) =>
      Effect.gen(function*() {
        const config = yield* OutboxConfig.OutboxConfig
        const pruned = yield* outbox.prune
        if (json) return yield* print(Format.json({ pruned }))
        yield* print(pruneSummary(pruned, config))
      }))
).pipe(Command.withDescription(Help.spec("prune").summary))

// ---------------------------------------------------------------------------------------------------------------
// import-legacy

const checkDirectory = (dir: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(dir).pipe(
      Effect.map(Option.some),
      Effect.catchAll((e) =>
        e._tag === "SystemError" && e.reason === "NotFound"
          ? Effect.succeedNone
          : Effect.fail(
            new LegacyFileQueue.LegacyImportError({
              dir,
              message: `cannot read ${dir}: ${e.message}`,
              reason: "unreadable"
            })
          )
      )
    )
    if (Option.isNone(info)) {
      return yield* Effect.fail(
        new LegacyFileQueue.LegacyImportError({
          dir,
          message: `no legacy queue directory at ${dir}`,
          reason: "not_found"
        })
      )
    }
    if (info.value.type !== "Directory") {
      return yield* Effect.fail(
        new LegacyFileQueue.LegacyImportError({ dir, message: `${dir} is not a directory`, reason: "not_a_directory" })
      )
    }
  })

const importCommand = Command.make("import-legacy", {
  db,
  json,
  dir: Args.text({ name: "dir" }).pipe(
    Args.withDescription("openclaw's delivery-queue directory (with its failed/ folder)")
  ),
  force: Options.boolean("force").pipe(
    Options.withDescription("import again although imported before, or into an existing empty file")
  )
}, (options) =>
  Effect.gen(function*() {
    const { dir, force, json } = options
    const db = yield* Database.location(options.db)
    // checked before the database is opened, so a mistyped directory does not leave a new empty outbox behind
    yield* checkDirectory(dir)
    yield* Effect.gen(function*() {
      const config = yield* OutboxConfig.OutboxConfig
      const report = yield* LegacyFileQueue.importDirectory(dir, { force })
      const database = Database.display(db)
      yield* print(json ? Format.json({ database, ...report }) : importSummary(report, database, config.maxAge))
    }).pipe(
      // the one admin command that may create the database: importing is how a migrated gateway starts its outbox
      // an existing empty file is refused as the other commands refuse it (a path mistaken for another), unless --force
      Effect.provide(Layer.merge(Database.readWrite(db, { create: true, empty: force }), OutboxConfig.layerFromEnv))
    )
  })).pipe(Command.withDescription(Help.spec("import-legacy").summary))

/** The admin subcommands, in the order the usage lists them. */
export const commands = [statsCommand, listCommand, showCommand, retryCommand, pruneCommand, importCommand] as const

/** The synopsis of each admin subcommand, in the same order. */
export const usages: ReadonlyArray<Usage.Usage> = [
  Command.getUsage(statsCommand),
  Command.getUsage(listCommand),
  Command.getUsage(showCommand),
  Command.getUsage(retryCommand),
  Command.getUsage(pruneCommand),
  Command.getUsage(importCommand)
]
