/**
 * Admin retries, shared by the CLI's `retry` and the board: which failed rows are worth requeueing, and requeueing
 * every row of a filter page by page. A retry goes through `Outbox.retry` (attempts reset, a fresh TTL), so a running
 * gateway's worker sends the rows at its next pass.
 */
import * as Effect from "effect/Effect"
import type { EntryId, OutboxEntry } from "../Delivery.js"
import type { EntryNotFound, StoreError, TransitionRejected } from "../DeliveryError.js"
import type { OutboxShape } from "../Outbox.js"

/**
 * Why an entry is not worth retrying (a quarantined row would be quarantined again, a tool/block one failed again).
 * Its state is not checked here: `Outbox.retry` refuses any state but failed_terminal and expired.
 */
export const notRetryable = (e: OutboxEntry): string | undefined =>
  e.terminalReason === "decode_error"
    ? `entry ${e.id} was quarantined (decode_error): its stored data no longer decodes, so a retry would only quarantine it again`
    : e.kind !== "final"
    ? `entry ${e.id} is a ${e.kind} progress message (${
      e.terminalReason ?? e.state
    }): recovery never replays those, so a retry would only fail it again`
    : undefined

/** The kind of row `notRetryable` refused, for summaries. */
export const skipKind = (e: OutboxEntry): "decode_error" | "non_final" =>
  e.terminalReason === "decode_error" ? "decode_error" : "non_final"

/** Which rows a bulk retry takes. */
export interface RetryFilter {
  readonly state: "failed_terminal" | "expired"
  readonly channel?: string | undefined
  readonly to?: string | undefined
  /** only count: requeue nothing */
  readonly dryRun?: boolean | undefined
}

/** What a bulk retry did (or would do). */
export interface RetryAllResult {
  readonly requeued: ReadonlyArray<EntryId>
  readonly skipped: ReadonlyArray<EntryId>
  readonly skippedBy: { readonly decode_error: number; readonly non_final: number }
}

const PAGE = 500

/**
 * Requeues every row of the filter, newest first, page by page (a cursor past each page, so rows neither repeat nor
 * get skipped), leaving out the rows `notRetryable` refuses. Rows that enter the state meanwhile are not taken.
 */
export const retryAll = (
  outbox: Pick<OutboxShape, "list" | "retry">,
  filter: RetryFilter
): Effect.Effect<RetryAllResult, StoreError | EntryNotFound | TransitionRejected> =>
  Effect.gen(function*() {
    const requeued: Array<EntryId> = []
    const skipped: Array<EntryId> = []
    const skippedBy = { decode_error: 0, non_final: 0 }
    let cursor: { readonly before: number; readonly beforeId: EntryId } | undefined
    for (;;) {
      const page = yield* outbox.list({
        state: filter.state,
        channel: filter.channel,
        to: filter.to,
        limit: PAGE,
        ...cursor
      })
      for (const e of page) {
        if (notRetryable(e) !== undefined) {
          skipped.push(e.id)
          skippedBy[skipKind(e)]++
          continue
        }
        if (filter.dryRun !== true) yield* outbox.retry(e.id)
        requeued.push(e.id)
      }
      const last = page[page.length - 1]
      if (page.length < PAGE || last === undefined) break
      cursor = { before: last.enqueuedAt, beforeId: last.id }
    }
    return { requeued, skipped, skippedBy }
  })
