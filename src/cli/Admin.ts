/**
 * The admin commands over an outbox database: `stats`, `list`, `show`, `retry`, `prune`, `import-legacy`, on an SQLite
 * file or a PostgreSQL URL (`--db`, else `OUTBOX_DB`, else ./outbox.db; see `Database`).
 * Each prints an aligned table for people or, with `--json`, JSON for scripts. Reads open the database read-only and
 * never create it; writes go through the `Outbox` facade (or the importer) like the gateway's own code does.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import type * as Usage from "@effect/cli/Usage"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { notRetryable, retryAll } from "../admin/Retry.js"
import type { EntryState, OutboxEntry, OutboxStats, ReplyPayload } from "../Delivery.js"
import { EntryId, entryStates } from "../Delivery.js"
import { EntryNotFound } from "../DeliveryError.js"
import * as LegacyFileQueue from "../LegacyFileQueue.js"
import { Outbox } from "../Outbox.js"
import type { OutboxShape } from "../Outbox.js"
import * as OutboxConfig from "../OutboxConfig.js"
import * as Database from "./Database.js"
import * as Format from "./Format.js"
import * as Help from "./Help.js"
import { UsageError } from "./UsageError.js"

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

/** The stats table: one row per channel and a total, a column per state. */
export const statsTable = (stats: OutboxStats): string => {
  const channels = Object.keys(stats.byChannel).sort()
  const row = (name: string, counts: Readonly<Record<EntryState, number>>) => {
    const values = entryStates.map((s) => counts[s] ?? 0)
    return [name, ...values, values.reduce((a, b) => a + b, 0)]
  }
  return Format.table(
    ["channel", ...entryStates, "total"],
    [...channels.map((c) => row(c, stats.byChannel[c]!)), row("total", stats.byState)]
  )
}

const statsCommand = Command.make(
  "stats",
  { db, json },
  ({ db, json }) =>
    readOutbox(db, (outbox) =>
      Effect.gen(function*() {
        const stats = yield* outbox.stats
        const database = Database.display(yield* Database.location(db))
        if (json) return yield* print(Format.json({ database, ...stats }))
        const pending = stats.oldestPendingAgeMs === null
          ? "nothing pending"
          : `oldest pending ${Format.duration(stats.oldestPendingAgeMs)}`
        yield* print(`outbox ${database}: ${Format.count(stats.total, "entry", "entries")}, ${pending}`)
        if (stats.total > 0) yield* print(`\n${statsTable(stats)}`)
      }))
).pipe(Command.withDescription(Help.spec("stats").summary))

// ---------------------------------------------------------------------------------------------------------------
// list

const DEFAULT_LIMIT = Help.DEFAULT_LIMIT

/** What a listing shows about where an entry is, in one short line. */
const detail = (e: OutboxEntry, now: number): string => {
  const error = e.lastError === null ? "" : Format.clip(e.lastError, 70)
  switch (e.state) {
    case "queued":
      return e.nextAttemptAt !== null && e.nextAttemptAt > now
        ? `due in ${Format.duration(e.nextAttemptAt - now)}`
        : "due"
    case "in_flight":
      return `leased by ${e.leaseOwner ?? "?"}${
        e.leaseExpiresAt === null ? "" : ` until ${Format.time(e.leaseExpiresAt)}`
      }`
    case "failed_retryable":
      return `${
        e.nextAttemptAt !== null && e.nextAttemptAt > now
          ? `retry in ${Format.duration(e.nextAttemptAt - now)}`
          : "retry due"
      }: ${error}`
    case "failed_terminal":
      return `${e.terminalReason ?? "?"}${error === "" ? "" : `: ${error}`}`
    case "expired":
      return error === "" ? "not sent: older than maxAge" : `not sent: older than maxAge; last error: ${error}`
    case "delivered":
      return e.deliveredAt === null ? "" : `delivered ${Format.duration(now - e.deliveredAt)} ago`
  }
}

/** The listing table. */
export const listTable = (entries: ReadonlyArray<OutboxEntry>, now: number): string =>
  Format.table(
    ["id", "state", "channel", "to", "kind", "attempts", "age", "detail"],
    entries.map((e) => [
      e.id,
      e.state,
      e.channel,
      Format.clip(e.to, 24),
      e.kind,
      e.attemptCount,
      Format.duration(now - e.enqueuedAt),
      detail(e, now)
    ])
  )

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

const payloadLines = (payloads: ReadonlyArray<ReplyPayload>): Array<string> =>
  payloads.flatMap((p, i) => [
    `  [${i}]${p.text === undefined ? "" : ` text: ${JSON.stringify(p.text)}`}`,
    ...(p.mediaUrls ?? []).map((url) => `       media: ${url}`),
    ...(p.channelData === undefined ? [] : [`       channelData: ${JSON.stringify(p.channelData)}`])
  ])

/** Every field of one entry, for people. */
export const showEntry = (e: OutboxEntry, now: number): string => {
  const opt = (v: string | undefined) => v ?? "-"
  const at = (v: number | null) => (v === null ? "-" : Format.timeFrom(v, now))
  return [
    Format.fields([
      ["id", e.id],
      ["state", e.terminalReason === null ? e.state : `${e.state} (${e.terminalReason})`],
      ["channel", e.channel],
      ["to", e.to],
      ["account", opt(e.accountId)],
      ["thread", opt(e.threadId)],
      ["reply to", opt(e.replyToId)],
      ["kind", e.kind],
      ["best effort", e.bestEffort ? "yes" : "no"],
      ["silent", e.silent === undefined ? "-" : e.silent ? "yes" : "no"],
      ["idempotency key", opt(e.idempotencyKey)],
      ["attempts", String(e.attemptCount)],
      ["parts delivered", String(e.partsDelivered)],
      ["enqueued", at(e.enqueuedAt)],
      ["next attempt", at(e.nextAttemptAt)],
      ["last attempt", at(e.lastAttemptAt)],
      ["delivered", at(e.deliveredAt)],
      ["expires", at(e.expiresAt)],
      ["lease", e.leaseOwner === null ? "-" : `${e.leaseOwner} until ${at(e.leaseExpiresAt)}`],
      ["last error", e.lastError ?? "-"],
      ["metadata", e.metadata === undefined ? "-" : JSON.stringify(e.metadata)]
    ]),
    `payloads (${e.payloads.length})`,
    ...payloadLines(e.payloads)
  ].join("\n")
}

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

const SENT_BY_WORKER = "; a running gateway's recovery worker sends requeued entries at its next pass"

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
          yield* print(
            json
              ? Format.json({ requeued: [entry.id], skipped: [] })
              : `requeued ${entry.id} (was ${entry.state})${SENT_BY_WORKER}`
          )
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
        yield* print(`requeued ${Format.count(result.requeued.length, "entry", "entries")} (${scope})${SENT_BY_WORKER}`)
        if (skippedBy.decode_error > 0) {
          yield* print(
            `skipped ${
              Format.count(
                skippedBy.decode_error,
                "quarantined (decode_error) entry",
                "quarantined (decode_error) entries"
              )
            }`
          )
        }
        if (skippedBy.non_final > 0) {
          yield* print(
            `skipped ${
              Format.count(skippedBy.non_final, "tool/block progress message", "tool/block progress messages")
            } (never replayed)`
          )
        }
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
        yield* print(
          `pruned ${Format.count(pruned, "entry", "entries")} (delivered older than ${
            Duration.format(config.deliveredRetention)
          }, ` +
            `failed or expired older than ${Duration.format(config.terminalRetention)})`
        )
      }))
).pipe(Command.withDescription(Help.spec("prune").summary))

// ---------------------------------------------------------------------------------------------------------------
// import-legacy

/** The import report for people. */
export const importSummary = (
  report: LegacyFileQueue.ImportReport,
  path: string,
  maxAge: Duration.Duration
): string => {
  if (report.alreadyImported) {
    const previous = report.previous
    return `${report.dir} was imported into ${path} already` +
      (previous === null
        ? ""
        : ` at ${
          Format.time(previous.importedAt)
        } (${previous.imported} imported, ${previous.expired} expired, ${previous.failed} failed, ${previous.malformed} malformed)`) +
      "; nothing to do (--force imports again; ids already present are kept as they are)"
  }
  const lines = [
    `imported ${report.dir} into ${path}`,
    Format.table(["result", "files", "meaning"], [
      ["imported", report.imported.length, "queued or retrying: the recovery worker sends them"],
      ["expired", report.expired.length, `older than maxAge (${Duration.format(maxAge)}): kept, never sent`],
      ["failed", report.failed.length, "dead letters or out of attempts: kept as failed_terminal"],
      ["duplicates", report.duplicates.length, "already in the outbox: left as they are"],
      ["skipped", report.skipped.length, "not queue entries (.delivered markers, *.tmp, other files)"],
      ["malformed", report.malformed.length, "not imported, left in place"]
    ])
  ]
  for (const m of report.malformed) lines.push(`  ${m.file}: ${m.message}`)
  return lines.join("\n")
}

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
