/**
 * How the board shows an entry: a table row (no payloads, clipped text) and the full view (its send plan with the
 * delivered parts marked, its timeline, whether a retry applies). Pure functions of the row, the channel (when its
 * adapter is registered in this process) and the events this process saw.
 */
import * as Option from "effect/Option"
import type { Channel } from "../ChannelAdapter.js"
import type { ChunkConfig } from "../Chunking.js"
import type { OutboxEntry } from "../Delivery.js"
import type { PlanChannel } from "../SendPlan.js"
import * as SendPlan from "../SendPlan.js"
import type { EntrySummary } from "./AdminApi.js"
import type { LoggedEvent } from "./EventLog.js"
import { notRetryable } from "./Retry.js"

const clip = (text: string, max: number): string => (text.length > max ? `${text.slice(0, max - 1)}…` : text)

/** The table's row of an entry. */
export const summary = (e: OutboxEntry): EntrySummary => {
  const first = e.payloads[0]
  const media = e.payloads.reduce((n, p) => n + (p.mediaUrls?.length ?? 0), 0)
  const text = first?.text?.replace(/\s+/g, " ").trim() ?? ""
  return {
    id: e.id,
    state: e.state,
    channel: e.channel,
    to: e.to,
    threadId: e.threadId ?? null,
    kind: e.kind,
    attemptCount: e.attemptCount,
    partsDelivered: e.partsDelivered,
    payloadCount: e.payloads.length,
    preview: clip(
      text !== "" ? text : media > 0 ? `[${media} media]` : first?.channelData ? "[channel data]" : "",
      160
    ),
    enqueuedAt: e.enqueuedAt,
    updatedAt: e.updatedAt,
    nextAttemptAt: e.nextAttemptAt,
    lastError: e.lastError === null ? null : clip(e.lastError, 300),
    terminalReason: e.terminalReason
  }
}

/** The cursor after `e` in the listing order. */
export const cursorOf = (e: OutboxEntry): string => `${e.enqueuedAt}_${e.id}`

/** A cursor as list filters: `<millis>` or `<millis>_<id>` (checked by `AdminApi.Cursor`). */
export const parseCursor = (cursor: string): { readonly before: number; readonly beforeId?: string } => {
  const at = cursor.indexOf("_")
  return at === -1
    ? { before: Number(cursor) }
    : { before: Number(cursor.slice(0, at)), beforeId: cursor.slice(at + 1) }
}

// what a v1 adapter with sendText and sendMedia and the configured chunking plans: the estimate a board beside the
// gateway shows (it has no adapters); a v2 adapter would make one call per payload
const GENERIC: PlanChannel = {
  contract: "v1",
  textChunkLimit: undefined,
  chunker: undefined,
  chunkerMode: "text",
  sendMedia: Option.some(() => {
    throw new Error("never called: used for planning only")
  }),
  sendPayload: Option.none()
}

/** The entry's plan parts with `delivered` marked; exact when its channel's adapter is given. */
export const parts = (e: OutboxEntry, channel: Channel | undefined, chunking: ChunkConfig) => {
  const plan = SendPlan.make(e, channel ?? GENERIC, chunking)
  const islands = new Set(e.deliveredParts ?? [])
  return plan.parts.map((part) => ({
    index: part.index,
    payloadIndex: part.payloadIndex,
    kind: part.kind,
    text: part.kind === "text" ? part.text : part.kind === "media" ? (part.caption || null) : part.kind === "payload"
      ? e.payloads[part.payloadIndex]?.text ?? null
      : part.reason,
    mediaUrl: part.kind === "media" ? part.mediaUrl : null,
    delivered: e.state === "delivered" || part.index < e.partsDelivered || islands.has(part.index)
  }))
}

/** What happened to the entry, oldest first: dated columns of the row, and the events this process recorded. */
export const timeline = (e: OutboxEntry, events: ReadonlyArray<LoggedEvent>, now: number) => {
  const items: Array<{ at: number; event: string; detail: string | null; source: "row" | "events" }> = [
    { at: e.enqueuedAt, event: "enqueued", detail: `${e.kind} reply to ${e.to}`, source: "row" }
  ]
  const row = (at: number | null, event: string, detail: string | null = null) => {
    if (at !== null) items.push({ at, event, detail, source: "row" })
  }
  row(e.lastAttemptAt, "last attempt", `attempt ${e.attemptCount}`)
  row(e.deliveredAt, "delivered")
  if (e.state === "failed_terminal") {
    row(e.updatedAt, "failed for good", `${e.terminalReason ?? ""}: ${e.lastError ?? ""}`)
  }
  if (e.state === "failed_retryable") row(e.updatedAt, "failed, will retry", e.lastError)
  if (e.state === "expired") row(e.updatedAt, "expired", "not sent: older than maxAge")
  if (e.state === "in_flight") row(e.leaseExpiresAt, "lease expires", `held by ${e.leaseOwner ?? "?"}`)
  if (e.nextAttemptAt !== null && e.state !== "in_flight") {
    row(e.nextAttemptAt, e.nextAttemptAt > now ? "next attempt due" : "due since")
  }
  if (e.expiresAt !== null && (e.state === "queued" || e.state === "failed_retryable")) row(e.expiresAt, "expires")
  for (const ev of events) {
    items.push({ at: ev.at, event: ev.type.replace("_", " "), detail: ev.detail, source: "events" })
  }
  return items.sort((a, b) => a.at - b.at)
}

/** Whether the board offers a retry of the entry, and why not. */
export const retryOffer = (e: OutboxEntry): { readonly allowed: boolean; readonly reason: string | null } => {
  if (e.state !== "failed_terminal" && e.state !== "expired") {
    return {
      allowed: false,
      reason: `only failed_terminal and expired entries can be retried (this one is ${e.state})`
    }
  }
  const refusal = notRetryable(e)
  return refusal === undefined ? { allowed: true, reason: null } : { allowed: false, reason: refusal }
}
