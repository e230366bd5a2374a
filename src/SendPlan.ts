/**
 * The send plan: for a stored entry, the ordered adapter calls ("parts") that deliver it.
 * A pure function of the entry and the channel, so the live path and recovery make identical
 * calls, and a part's index is stable across retries (`partsDelivered` counts plan parts).
 */
import * as Option from "effect/Option"
import type { Channel } from "./ChannelAdapter.js"
import * as Chunking from "./Chunking.js"
import type { OutboxEntry, ReplyPayload } from "./Delivery.js"
import { describeFailure } from "./internal/classify.js"

/** What kind of adapter call a part is. */
export type PartKind = "text" | "media" | "payload" | "unsupported"

/** A text chunk for `sendText`. */
export interface TextPart {
  readonly kind: "text"
  readonly index: number
  readonly payloadIndex: number
  readonly text: string
}

/** One media URL for `sendMedia`; the payload's text is the caption of its first media part, `""` after. */
export interface MediaPart {
  readonly kind: "media"
  readonly index: number
  readonly payloadIndex: number
  readonly mediaUrl: string
  readonly caption: string
}

/** A whole payload for the native fast path (v2 `sendFinal`, or a v1 adapter's own `sendPayload`). */
export interface PayloadPart {
  readonly kind: "payload"
  readonly index: number
  readonly payloadIndex: number
}

/** Content the channel cannot take (e.g. media-only to an adapter without `sendMedia`): a permanent failure, never skipped. */
export interface UnsupportedPart {
  readonly kind: "unsupported"
  readonly index: number
  readonly payloadIndex: number
  readonly reason: string
}

/** One adapter call of a plan. */
export type Part = TextPart | MediaPart | PayloadPart | UnsupportedPart

/** The ordered parts and what was dropped on the way (logged by the sender). Plain data: compare with `toEqual`. */
export interface SendPlan {
  readonly parts: ReadonlyArray<Part>
  readonly warnings: ReadonlyArray<string>
}

/** The fields of an entry a plan depends on (nothing else may influence it). */
export type PlanEntry = Pick<OutboxEntry, "channel" | "accountId" | "payloads">

/** The fields of a channel a plan depends on. */
export type PlanChannel = Pick<
  Channel,
  "contract" | "textChunkLimit" | "chunker" | "chunkerMode" | "sendMedia" | "sendPayload"
>

type Unindexed<P> = P extends Part ? Omit<P, "index"> : never

/** The parts of one payload, before numbering. */
const payloadParts = (
  payload: ReplyPayload,
  payloadIndex: number,
  channel: PlanChannel,
  chunkText: (text: string) => Array<string>,
  channelName: string,
  warn: (message: string) => void
): Array<Unindexed<Part>> => {
  const text = payload.text ?? ""
  const media = payload.mediaUrls ?? []
  const hasText = !Chunking.isBlank(text)
  const hasData = payload.channelData !== undefined

  if (channel.contract === "v2") {
    // rule 5: one sendFinal per payload; the adapter chunks and fans out itself
    return hasText || media.length > 0 || hasData ? [{ kind: "payload", payloadIndex }] : []
  }
  // rule 2: the fast path only where the v1 adapter implements sendPayload itself (LINE-style)
  if (hasData && Option.isSome(channel.sendPayload)) return [{ kind: "payload", payloadIndex }]
  const textParts = (): Array<Unindexed<Part>> =>
    chunkText(text).map((chunk) => ({ kind: "text", payloadIndex, text: chunk }))
  if (media.length > 0) {
    // rule 1: one sendMedia per URL, caption on the first only
    if (Option.isSome(channel.sendMedia)) {
      return media.map((mediaUrl, i) => ({
        kind: "media",
        payloadIndex,
        mediaUrl,
        caption: i === 0 && hasText ? text : ""
      }))
    }
    // rule 4: no sendMedia — the text still goes out, the media is reported; media alone is a failure
    if (hasText) {
      warn(
        `channel "${channelName}" has no sendMedia: payload ${payloadIndex} sent as text only, ${media.length} media URL(s) dropped`
      )
      return textParts()
    }
    return [{
      kind: "unsupported",
      payloadIndex,
      reason:
        `channel "${channelName}" cannot send media (its adapter has no sendMedia) and payload ${payloadIndex} has only media`
    }]
  }
  if (hasText) return textParts()
  if (hasData) {
    return [{
      kind: "unsupported",
      payloadIndex,
      reason:
        `channel "${channelName}" cannot send channelData (its v1 adapter has no sendPayload) and payload ${payloadIndex} has nothing else`
    }]
  }
  return [] // whitespace-only text and nothing else: nothing to send
}

/** Plans the adapter calls for an entry on a channel, with per-channel/account chunk settings from config. */
export const make = (entry: PlanEntry, channel: PlanChannel, chunking?: Chunking.ChunkConfig): SendPlan => {
  const warnings: Array<string> = []
  const warn = (message: string) => {
    warnings.push(message)
  }
  const { limit, mode } = Chunking.resolve(chunking, {
    channel: entry.channel,
    accountId: entry.accountId,
    adapterLimit: channel.textChunkLimit
  })
  const own = channel.chunker
  // a third-party chunker that throws must not take the pipeline down: fall back to the core one, and say so
  const chunker: Chunking.Chunker | null | undefined = typeof own === "function"
    ? (text, max) => {
      try {
        const out = own(text, max)
        if (Array.isArray(out)) return out
        warn(`channel "${entry.channel}" chunker returned a non-array; used the core length chunker`)
      } catch (error) {
        warn(`channel "${entry.channel}" chunker threw (${describeFailure(error)}); used the core length chunker`)
      }
      return Chunking.chunkByLength(text, max, { markdown: channel.chunkerMode === "markdown" })
    }
    : own
  const chunkText = (text: string) =>
    Chunking.chunkText(text, { limit, mode, chunker, chunkerMode: channel.chunkerMode })
  const parts = entry.payloads
    .flatMap((payload, payloadIndex) => payloadParts(payload, payloadIndex, channel, chunkText, entry.channel, warn))
    .map((part, index) => ({ ...part, index }) as Part)
  return { parts, warnings }
}
