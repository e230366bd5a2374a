/**
 * The `<message/>` stanza the XMPP channel sends for one reply payload, and the checks that make a reply unsendable
 * for good (a recipient that is not a JID, nothing to say, a stanza over the size limit): those fail before anything
 * is written, as permanent errors, so a bad reply never takes the connection down.
 */
import { type Element, xml } from "@xmpp/client"
import * as Either from "effect/Either"
import type { SendContext } from "../../ChannelAdapter.js"
import { SendError } from "../../DeliveryError.js"

/** XEP-0198 stream management. */
export const NS_SM = "urn:xmpp:sm:3"

/** The message types a channel may send (`groupchat` needs a joined room, which this channel does not do). */
export type MessageType = "chat" | "normal" | "headline"

/** How stanzas are built. */
export interface StanzaSettings {
  readonly type: MessageType
  readonly maxStanzaBytes: number
}

// RFC 7622 in practice: an optional local part, a domain, an optional resource; each at most 1023 bytes
const JID = /^(?:([^@/\s"&'<>:]+)@)?([^@/\s"&'<>]+)(?:\/(.+))?$/

/** True if `to` is a JID the server would route (the checks a server makes first, not full stringprep). */
export const isJid = (to: string): boolean => {
  const m = JID.exec(to)
  if (m === null || xmlSafe(to) !== to) return false
  return m.slice(1).every((part) => part === undefined || Buffer.byteLength(part) <= 1023)
}

// characters XML 1.0 forbids: a server closes the whole stream on one of them, so they are replaced, not sent
const NOT_XML =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/** `text` with the characters XML cannot carry replaced by U+FFFD. */
export const xmlSafe = (text: string): string => text.replace(NOT_XML, "\uFFFD")

const permanent = (message: string) => new SendError({ message, retryable: false })

/** The stanza id of a reply's part: the same on every attempt, so a receiver can drop a replayed copy. */
export const stanzaId = (ctx: Pick<SendContext, "idempotencyKey" | "partIndex">): string =>
  `${ctx.idempotencyKey}:${ctx.partIndex}`

/**
 * The `<message/>` for one payload: the text and then each media URL in `<body/>` (clients show a URL alone on a line
 * as a link), an XEP-0066 `<x/>` per media URL, `<thread/>` for the thread id, an XEP-0461 `<reply/>` for the
 * message replied to, and an XEP-0359 `<origin-id/>` equal to the stanza id. `channelData` and `silent` have no XMPP
 * meaning and are ignored.
 */
export const message = (ctx: SendContext, settings: StanzaSettings): Either.Either<Element, SendError> => {
  if (!isJid(ctx.to)) return Either.left(permanent(`recipient is not a valid JID: ${JSON.stringify(ctx.to)}`))
  const text = ctx.payload.text ?? ""
  const media = ctx.payload.mediaUrls ?? []
  const lines = [...(text.trim() === "" ? [] : [text]), ...media]
  if (lines.length === 0) return Either.left(permanent("nothing to send over XMPP: the payload has no text or media"))
  const id = xmlSafe(stanzaId(ctx))
  const children: Array<Element> = [xml("body", null, xmlSafe(lines.join("\n")))]
  if (ctx.threadId !== undefined) children.push(xml("thread", null, xmlSafe(ctx.threadId)))
  if (ctx.replyToId !== undefined) {
    children.push(xml("reply", { xmlns: "urn:xmpp:reply:0", id: xmlSafe(ctx.replyToId) }))
  }
  for (const url of media) children.push(xml("x", { xmlns: "jabber:x:oob" }, xml("url", null, xmlSafe(url))))
  children.push(xml("origin-id", { xmlns: "urn:xmpp:sid:0", id }))
  const stanza = xml("message", { to: ctx.to, type: settings.type, id }, ...children)
  const bytes = Buffer.byteLength(stanza.toString())
  return bytes > settings.maxStanzaBytes
    ? Either.left(permanent(`the message stanza is ${bytes} bytes, over maxStanzaBytes (${settings.maxStanzaBytes})`))
    : Either.right(stanza)
}
