/**
 * The demo's summary: what the run did, counted from the gateway, the fake channels' logs, the metrics and the rows
 * left in the file; printed as a table, or as JSON with --json.
 */
import * as Duration from "effect/Duration"
import type { OutboxEntry, OutboxStats, TerminalReason } from "../Delivery.js"
import * as DemoChannels from "./DemoChannels.js"
import type { Gateway, LiveOutcome } from "./DemoGateway.js"
import * as Format from "./Format.js"

/** What the demo reports (also its `--json` output). */
export interface Summary {
  readonly database: string
  readonly seed: number
  readonly messages: number
  readonly conversations: number
  readonly elapsedMs: number
  readonly submitted: number
  readonly resubmittedAfterCrash: number
  readonly liveOutcomes: Readonly<Record<LiveOutcome, number>>
  readonly delivered: number
  readonly deliveredFirstTry: number
  readonly deliveredAfterFailure: number
  readonly retriesScheduled: number
  readonly terminal: Readonly<Partial<Record<TerminalReason, number>>>
  readonly expired: number
  readonly pending: number
  readonly crash: { readonly atMs: number; readonly inFlight: number; readonly alreadySent: number }
  readonly reconciledSent: number
  readonly possibleDuplicates: number
  readonly duplicatePartsSeen: number
  readonly ackFailures: number
  readonly unexpectedErrors: number
  readonly channels: ReadonlyArray<{
    readonly channel: string
    readonly contract: string
    readonly delivered: number
    readonly failedTerminal: number
    readonly expired: number
    readonly total: number
    readonly partsReceived: number
    readonly partsReceivedTwice: number
  }>
}

/** The summary of a finished run. */
export const summarize = (input: {
  readonly options: { readonly db: string; readonly seed: number; readonly messages: number }
  readonly conversations: number
  readonly gateway: Gateway
  readonly channels: DemoChannels.DemoChannels
  readonly crash: Summary["crash"]
  readonly metrics: {
    readonly retriesScheduled: number
    readonly possibleDuplicates: number
    readonly ackFailures: number
  }
  readonly stats: OutboxStats
  readonly rows: ReadonlyArray<OutboxEntry>
  readonly elapsedMs: number
}): Summary => {
  const { rows, stats } = input
  const terminal: Partial<Record<TerminalReason, number>> = {}
  for (const r of rows) {
    if (r.state === "failed_terminal" && r.terminalReason !== null) {
      terminal[r.terminalReason] = (terminal[r.terminalReason] ?? 0) + 1
    }
  }
  const delivered = rows.filter((r) => r.state === "delivered")
  return {
    database: input.options.db,
    seed: input.options.seed,
    messages: input.options.messages,
    conversations: input.conversations,
    elapsedMs: input.elapsedMs,
    submitted: input.gateway.everSubmitted.size,
    resubmittedAfterCrash: input.gateway.resubmitted,
    liveOutcomes: { ...input.gateway.outcomes },
    delivered: stats.byState.delivered,
    // a delivered row keeps its last error: one without had no failed attempt
    deliveredFirstTry: delivered.filter((r) => r.lastError === null).length,
    deliveredAfterFailure: delivered.filter((r) => r.lastError !== null).length,
    retriesScheduled: input.metrics.retriesScheduled,
    terminal,
    expired: stats.byState.expired,
    pending: stats.byState.queued + stats.byState.in_flight + stats.byState.failed_retryable,
    crash: input.crash,
    reconciledSent: input.channels.logs.reduce((n, log) => n + log.counts.reconcileSent, 0),
    possibleDuplicates: input.metrics.possibleDuplicates,
    duplicatePartsSeen: input.channels.logs.reduce((n, log) => n + DemoChannels.duplicateParts(log), 0),
    ackFailures: input.metrics.ackFailures,
    unexpectedErrors: input.gateway.outcomes.unexpected,
    channels: input.channels.logs.map((log) => {
      const counts = stats.byChannel[log.name]
      return {
        channel: log.name,
        contract: log.contract,
        delivered: counts?.delivered ?? 0,
        failedTerminal: counts?.failed_terminal ?? 0,
        expired: counts?.expired ?? 0,
        total: counts === undefined ? 0 : Object.values(counts).reduce((a, b) => a + b, 0),
        partsReceived: [...log.received.values()].reduce((a, b) => a + b, 0),
        partsReceivedTwice: DemoChannels.duplicateParts(log)
      }
    })
  }
}

/** The summary as the table a person reads; `maxAge` is the TTL the run used. */
export const humanSummary = (s: Summary, maxAge: Duration.Duration): string => {
  const terminalTotal = Object.values(s.terminal).reduce((a, b) => a + (b ?? 0), 0)
  const reasons = Object.entries(s.terminal).sort(([, a], [, b]) => (b ?? 0) - (a ?? 0)).map(([r, n]) => `${r} ${n}`)
    .join(" · ")
  const live = s.liveOutcomes
  const lines: Array<[string, number, string]> = [
    [
      "replies submitted",
      s.submitted,
      `${s.resubmittedAfterCrash} resubmitted after the crash with the same idempotency key (${live.Duplicate} found stored: nothing sent again)`
    ],
    [
      "delivered live",
      live.Delivered,
      `by deliver itself; ${live.Deferred} deferred behind an older reply of the conversation, ${
        live.SendFailed + live.PartialDeliveryFailure
      } failed (recorded for retry or for good)`
    ],
    [
      "delivered",
      s.delivered,
      `${s.deliveredFirstTry} on the first try, ${s.deliveredAfterFailure} after a failed attempt`
    ],
    ["retries scheduled", s.retriesScheduled, "HTTP 500s and 429s (a 429's retry-after does not use up an attempt)"],
    ["failed for good", terminalTotal, reasons === "" ? "none" : reasons],
    [
      "expired",
      s.expired,
      `older than the ${
        Format.duration(Duration.toMillis(maxAge))
      } TTL before they could be sent: dropped, not posted late`
    ],
    [
      "in flight at crash",
      s.crash.inFlight,
      `${s.crash.alreadySent} had reached their channel; ${s.reconciledSent} confirmed by reconcile and acked without a resend`
    ],
    [
      "possible duplicates",
      s.possibleDuplicates,
      "replayed after the crash without proof they had not been sent (outbox_possible_duplicates_total)"
    ],
    ["duplicates seen", s.duplicatePartsSeen, "parts a channel actually received twice (at-least-once)"]
  ]
  if (s.ackFailures > 0) lines.push(["ack failures", s.ackFailures, "sent, ack write failed, flushed by the worker"])
  if (s.unexpectedErrors > 0) lines.push(["unexpected errors", s.unexpectedErrors, "see the errors above"])
  if (s.pending > 0) lines.push(["still pending", s.pending, "not settled"])
  return [
    "",
    `summary: ${s.messages} replies in ${Format.duration(s.elapsedMs)}`,
    Format.table(["", "", ""], lines).split("\n").slice(1).map((l) => `  ${l}`).join("\n"),
    "",
    Format.table(
      ["channel", "contract", "delivered", "failed", "expired", "total", "parts received", "received twice"],
      s.channels.map((
        c
      ) => [
        c.channel,
        c.contract,
        c.delivered,
        c.failedTerminal,
        c.expired,
        c.total,
        c.partsReceived,
        c.partsReceivedTwice
      ])
    ),
    "",
    `The database is left at ${s.database}. Look inside:`,
    `  npx effect-outbox stats --db ${s.database}`,
    `  npx effect-outbox list --state failed_terminal --db ${s.database}`
  ].join("\n")
}
