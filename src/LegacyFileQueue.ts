/**
 * Import of openclaw's file-based delivery queue (`<stateDir>/delivery-queue/`) into the outbox, once per database.
 * The directory is only read: no file is deleted, moved or rewritten, so an import can be repeated and audited,
 * and a file the import refuses stays where the operator can fix it.
 */
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { Dirent } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type { OutboxEntry } from "./Delivery.js"
import type { StoreError } from "./DeliveryError.js"
import type { MappingContext } from "./internal/legacyFormat.js"
import { describeCause, readCandidate } from "./internal/legacyFormat.js"
import { OutboxConfig } from "./OutboxConfig.js"
import { OutboxRepo } from "./OutboxRepo.js"

export { LegacyDelivery, LegacyPayload } from "./internal/legacyFormat.js"

/** The legacy directory could not be listed (missing, not a directory, no permission). Nothing was imported. */
export class LegacyImportError extends Schema.TaggedError<LegacyImportError>("effect-outbox/LegacyImportError")(
  "LegacyImportError",
  {
    dir: Schema.String,
    message: Schema.String,
    /** lets a startup layer tell "no legacy queue here" from a real problem */
    reason: Schema.Literal("not_found", "not_a_directory", "unreadable")
  }
) {}

/** Options of `importDirectory`. */
export interface ImportOptions {
  /** import even if this directory's marker says it was imported already (ids keep it idempotent) */
  readonly force?: boolean | undefined
}

/** Options of `layerImportOnStart`. */
export interface StartupOptions extends ImportOptions {
  /** a directory that does not exist is logged and startup goes on (a fresh install has no legacy queue) */
  readonly ignoreMissing?: boolean | undefined
}

/** A file that was not imported because it does not decode; it is left in place. */
export interface MalformedFile {
  readonly file: string
  readonly message: string
}

/** Counts of one import, as stored in the `outbox_meta` marker. */
export const ImportSummary = Schema.Struct({
  importedAt: Schema.Number,
  imported: Schema.Number,
  expired: Schema.Number,
  failed: Schema.Number,
  duplicates: Schema.Number,
  skipped: Schema.Number,
  malformed: Schema.Number
})
export interface ImportSummary extends Schema.Schema.Type<typeof ImportSummary> {}

/**
 * What an import did, by file (paths relative to `dir`, dead letters as `failed/<name>`). The lists are disjoint:
 * `imported` rows will be sent (queued or failed_retryable), `expired` and `failed` rows are stored but never sent,
 * `duplicates` were already in the outbox (nothing written), `skipped` are not queue entries.
 */
export interface ImportReport {
  /** the absolute directory path (the marker is keyed by it) */
  readonly dir: string
  /** the marker was found and nothing was read or written */
  readonly alreadyImported: boolean
  /** this run's time (Clock) */
  readonly at: number
  /** the summary of the earlier import recorded in the marker, if any */
  readonly previous: ImportSummary | null
  readonly imported: ReadonlyArray<string>
  readonly expired: ReadonlyArray<string>
  readonly failed: ReadonlyArray<string>
  readonly duplicates: ReadonlyArray<string>
  readonly skipped: ReadonlyArray<string>
  readonly malformed: ReadonlyArray<MalformedFile>
}

/** The counts of a report (what the marker stores and the summary log line prints). */
export const summarize = (report: ImportReport): ImportSummary => ({
  importedAt: report.at,
  imported: report.imported.length,
  expired: report.expired.length,
  failed: report.failed.length,
  duplicates: report.duplicates.length,
  skipped: report.skipped.length,
  malformed: report.malformed.length
})

/** The `outbox_meta` key that records the import of `dir`. */
export const markerKey = (dir: string): string => `legacy_import:${path.resolve(dir)}`

const FAILED_DIR = "failed"
const READ_CONCURRENCY = 16

const errorCode = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : undefined

const listDir = (dir: string) =>
  Effect.tryPromise({
    try: () => fs.readdir(dir, { withFileTypes: true }),
    catch: (cause) => {
      const code = errorCode(cause)
      return new LegacyImportError({
        dir,
        message: `cannot read legacy queue directory ${dir}: ${describeCause(cause)}`,
        reason: code === "ENOENT" ? "not_found" : code === "ENOTDIR" ? "not_a_directory" : "unreadable"
      })
    }
  })

interface Candidate {
  /** relative to the imported directory, `/`-separated */
  readonly file: string
  readonly absolute: string
  /** in `failed/`: a dead letter */
  readonly deadLetter: boolean
}

const byName = (a: Dirent, b: Dirent) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)

const stripSuffix = (name: string, suffix: string) => (name.endsWith(suffix) ? name.slice(0, -suffix.length) : name)

/** Splits one directory level into queue files and leftovers. */
const classify = (
  dir: string,
  entries: ReadonlyArray<Dirent>,
  prefix: string,
  deadLetter: boolean
): { readonly candidates: Array<Candidate>; readonly skipped: Array<string> } => {
  // an ack marker beside its entry means openclaw delivered it and crashed before removing the entry
  const delivered = new Set(
    entries.filter((e) => e.name.endsWith(".delivered")).map((e) =>
      stripSuffix(stripSuffix(e.name, ".delivered"), ".json")
    )
  )
  const candidates: Array<Candidate> = []
  const skipped: Array<string> = []
  for (const entry of [...entries].sort(byName)) {
    const file = prefix + entry.name
    if (entry.isDirectory()) {
      if (!(prefix === "" && entry.name === FAILED_DIR)) skipped.push(`${file}/`)
    } else if (entry.name.endsWith(".json") && !delivered.has(stripSuffix(entry.name, ".json"))) {
      candidates.push({ file, absolute: path.join(dir, entry.name), deadLetter })
    } else {
      // `.delivered` markers, `*.tmp` half-writes and anything else that is not a queue entry
      skipped.push(file)
    }
  }
  return { candidates, skipped }
}

/** Lists the queue: dead letters first, so that if an id were in both places the never-send copy wins. */
const scan = (dir: string) =>
  Effect.gen(function*() {
    const top = yield* listDir(dir)
    const pending = classify(dir, top, "", false)
    const hasFailedDir = top.some((e) => e.isDirectory() && e.name === FAILED_DIR)
    const failedDir = path.join(dir, FAILED_DIR)
    const failed = hasFailedDir ? classify(failedDir, yield* listDir(failedDir), `${FAILED_DIR}/`, true) : undefined
    return {
      candidates: [...(failed?.candidates ?? []), ...pending.candidates],
      skipped: [...pending.skipped, ...(failed?.skipped ?? [])]
    }
  })

const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

const decodeMarker = Schema.decodeUnknownOption(Schema.parseJson(ImportSummary))
const encodeMarker = Schema.encodeSync(Schema.parseJson(ImportSummary))

const summaryLine = (report: ImportReport): string =>
  `legacy queue ${report.dir}: ${report.imported.length} imported, ${report.expired.length} expired, ` +
  `${report.failed.length} failed, ${report.duplicates.length} already present, ${report.skipped.length} skipped, ` +
  `${report.malformed.length} malformed`

/** What an import found, file by file. */
interface Tally {
  readonly imported: Array<string>
  readonly expired: Array<string>
  readonly failed: Array<string>
  readonly duplicates: Array<string>
  readonly malformed: Array<MalformedFile>
}

/** Reads one batch of queue files and inserts the ones that map to rows in one transaction, tallying each file. */
const importBatch = (
  repo: Context.Tag.Service<typeof OutboxRepo>,
  batch: ReadonlyArray<Candidate>,
  ctx: MappingContext,
  tally: Tally
): Effect.Effect<void, StoreError> =>
  Effect.gen(function*() {
    const decoded = yield* Effect.forEach(batch, (c) => Effect.either(readCandidate(c, ctx)), {
      concurrency: READ_CONCURRENCY
    })
    const rows: Array<{ readonly file: string; readonly entry: OutboxEntry }> = []
    const refused: Array<MalformedFile> = []
    decoded.forEach((result, i) => {
      const file = batch[i]!.file
      Either.match(result, {
        onLeft: (message) => refused.push({ file, message }),
        onRight: (entry) => rows.push({ file, entry })
      })
    })
    // logged before the insert, so an operator sees them even if the store then fails
    yield* Effect.forEach(
      refused,
      (m) =>
        Effect.logWarning(`legacy queue file ${m.file} is malformed and was left in place: ${m.message}`).pipe(
          Effect.annotateLogs({ file: m.file })
        ),
      { discard: true }
    )
    tally.malformed.push(...refused)
    const results = yield* repo.insert(rows.map((r) => r.entry))
    results.forEach((result, i) => {
      const file = rows[i]!.file
      if (result._tag === "Duplicate") tally.duplicates.push(file)
      else if (result.entry.state === "expired") tally.expired.push(file)
      else if (result.entry.state === "failed_terminal") tally.failed.push(file)
      else tally.imported.push(file)
    })
  })

/**
 * Imports openclaw's queue directory into the outbox: once per database (a marker in `outbox_meta`), keeping ids,
 * attempt history and dead letters, expiring rows past `maxAge`, reporting malformed files and leaving every file
 * in place. One `repo.insert` (one transaction) per `writeBatch` files.
 */
export const importDirectory = (
  dir: string,
  options: ImportOptions = {}
): Effect.Effect<ImportReport, LegacyImportError | StoreError, OutboxRepo | OutboxConfig> => {
  const absolute = path.resolve(dir)
  return Effect.gen(function*() {
    const repo = yield* OutboxRepo
    const config = yield* OutboxConfig
    const now = yield* Clock.currentTimeMillis
    const key = markerKey(absolute)
    const marker = yield* repo.getMeta(key)
    const previous = Option.getOrNull(Option.flatMap(marker, decodeMarker))
    const empty = {
      dir: absolute,
      at: now,
      previous,
      imported: [],
      expired: [],
      failed: [],
      duplicates: [],
      skipped: [],
      malformed: []
    }

    if (Option.isSome(marker) && options.force !== true) {
      const report: ImportReport = { ...empty, alreadyImported: true }
      yield* Effect.logInfo(
        `legacy queue ${absolute} was imported already${
          previous ? ` at ${new Date(previous.importedAt).toISOString()}` : ""
        }; nothing to do`
      )
      return report
    }

    const ctx: MappingContext = {
      now,
      maxAgeMs: Duration.toMillis(config.maxAge),
      maxAttempts: config.maxAttempts,
      expireAction: config.expireAction
    }
    const { candidates, skipped } = yield* scan(absolute)
    const tally: Tally = { imported: [], expired: [], failed: [], duplicates: [], malformed: [] }
    // a batch is read, then inserted in one transaction, so memory stays bounded by writeBatch files
    for (const batch of chunks(candidates, config.writeBatch)) yield* importBatch(repo, batch, ctx, tally)

    const report: ImportReport = {
      ...empty,
      alreadyImported: false,
      ...tally,
      skipped
    }
    // written last: if the process dies before this, the next start imports again and finds only duplicates
    yield* repo.setMeta(key, encodeMarker(summarize(report)))
    yield* Effect.logInfo(summaryLine(report))
    return report
  }).pipe(
    Effect.annotateLogs({ module: "LegacyFileQueue", dir: absolute }),
    Effect.withSpan("LegacyFileQueue.importDirectory", { attributes: { dir: absolute, force: options.force === true } })
  )
}

/**
 * Runs `importDirectory` while the gateway's layers are built, so legacy replies are in the outbox before it
 * serves traffic; the report is logged. Later starts find the marker and do nothing.
 */
export const layerImportOnStart = (
  dir: string,
  options: StartupOptions = {}
): Layer.Layer<never, LegacyImportError | StoreError, OutboxRepo | OutboxConfig> =>
  Layer.effectDiscard(
    importDirectory(dir, options).pipe(
      Effect.catchTag("LegacyImportError", (error) =>
        options.ignoreMissing === true && error.reason === "not_found"
          ? Effect.logInfo(`no legacy queue at ${error.dir}; nothing to import`).pipe(
            Effect.annotateLogs({ module: "LegacyFileQueue" })
          )
          : Effect.fail(error))
    )
  )
