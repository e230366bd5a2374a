/**
 * What the admin commands print for people (their `--json` output is the data itself): the stats, listing and entry
 * tables, and the summaries of a retry, a prune and a legacy import. Pure functions of their inputs.
 */
import * as Duration from "effect/Duration"
import type { RetryAllResult } from "../admin/Retry.js"
import type { EntryState, OutboxEntry, OutboxStats, ReplyPayload } from "../Delivery.js"
import { entryStates } from "../Delivery.js"
import type * as LegacyFileQueue from "../LegacyFileQueue.js"
import * as Format from "./Format.js"

/** The stats headline: the database, its entry count, and the age of its oldest pending entry. */
export const statsHeadline = (database: string, stats: OutboxStats): string => {
  const pending = stats.oldestPendingAgeMs === null
    ? "nothing pending"
    : `oldest pending ${Format.duration(stats.oldestPendingAgeMs)}`
  return `outbox ${database}: ${Format.count(stats.total, "entry", "entries")}, ${pending}`
}

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

const SENT_BY_WORKER = "; a running gateway's recovery worker sends requeued entries at its next pass"

/** The line for one requeued entry (`state` is the one it was in). */
export const requeuedOne = (entry: OutboxEntry): string => `requeued ${entry.id} (was ${entry.state})${SENT_BY_WORKER}`

/** The lines for a retry of every entry of `scope` (a state, and maybe a channel): how many, and what was left. */
export const requeuedAll = (
  requeued: number,
  skippedBy: RetryAllResult["skippedBy"],
  scope: string
): Array<string> => {
  const lines = [`requeued ${Format.count(requeued, "entry", "entries")} (${scope})${SENT_BY_WORKER}`]
  if (skippedBy.decode_error > 0) {
    lines.push(
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
    lines.push(
      `skipped ${
        Format.count(skippedBy.non_final, "tool/block progress message", "tool/block progress messages")
      } (never replayed)`
    )
  }
  return lines
}

/** What a prune removed, and the retention periods it went by. */
export const pruneSummary = (
  pruned: number,
  retention: { readonly deliveredRetention: Duration.Duration; readonly terminalRetention: Duration.Duration }
): string =>
  `pruned ${Format.count(pruned, "entry", "entries")} (delivered older than ${
    Duration.format(retention.deliveredRetention)
  }, ` +
  `failed or expired older than ${Duration.format(retention.terminalRetention)})`

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
