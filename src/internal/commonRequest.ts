/**
 * The rules of a request's plain fields, and the common request checked by hand.
 *
 * `Delivery.decodeRequest` sends a request of the common shape (a plain object of the declared plain fields, its
 * payloads plain objects of `text` alone) through `commonRequest` and everything else through the Schema. Why: the
 * Schema decode was a fifth of what a live delivery allocated (22 of 113 KB) and about a tenth of its CPU
 * (BENCHMARKS.md); `test/validation/commonRequest.test.ts` holds both to the same answer on every input.
 */
import { isBlank } from "../Chunking.js"

/** The largest text a single payload may carry (UTF-8 bytes). */
export const MAX_TEXT_BYTES = 1024 * 1024

const utf8 = new TextEncoder()

/** No half of a surrogate pair (SQLite's TEXT would store U+FFFD in its place). */
export const isWellFormed = (s: string): boolean => !/\p{Cs}/u.test(s)

/** Something besides whitespace. */
export const isNonEmpty = (s: string): boolean => s.trim().length > 0

/** At most `MAX_TEXT_BYTES` of UTF-8; the cheap test first: n UTF-16 units are at most 3n UTF-8 bytes. */
export const textFits = (s: string): boolean =>
  s.length * 3 <= MAX_TEXT_BYTES || utf8.encode(s).byteLength <= MAX_TEXT_BYTES

/** The fields of a decoded request of the common shape, in the Schema's order, defaults applied. */
export interface CommonRequest {
  readonly channel: string
  readonly to: string
  readonly accountId?: string
  readonly threadId?: string
  readonly replyToId?: string
  readonly payloads: ReadonlyArray<{ readonly text: string }>
  readonly kind: "tool" | "block" | "final"
  readonly bestEffort: boolean
  readonly idempotencyKey?: string
  readonly silent?: boolean
}

const PLAIN_FIELDS = new Set([
  "channel",
  "to",
  "accountId",
  "threadId",
  "replyToId",
  "payloads",
  "kind",
  "bestEffort",
  "idempotencyKey",
  "silent"
])

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && Object.getPrototypeOf(u) === Object.prototype

const isName = (u: unknown): u is string => typeof u === "string" && isWellFormed(u) && isNonEmpty(u)

/**
 * The request's fields when it has the common shape and every rule holds; `undefined` for anything else (another
 * shape, a broken rule, a value that throws when read): the Schema decides those, and words the error.
 */
export const commonRequest = (input: unknown): CommonRequest | undefined => {
  try {
    if (!isPlainObject(input)) return undefined
    // own keys of every kind (symbols, non-enumerable): any but the plain fields is the Schema's to judge
    for (const key of Reflect.ownKeys(input)) if (typeof key !== "string" || !PLAIN_FIELDS.has(key)) return undefined
    const { channel, payloads, to } = input
    if (!isName(channel) || !isName(to) || !Array.isArray(payloads) || payloads.length === 0) return undefined
    if (Object.getPrototypeOf(payloads) !== Array.prototype) return undefined
    const texts: Array<{ readonly text: string }> = []
    for (let i = 0; i < payloads.length; i++) {
      const payload: unknown = payloads[i]
      if (!isPlainObject(payload)) return undefined
      const keys = Reflect.ownKeys(payload)
      if (keys.length !== 1 || keys[0] !== "text") return undefined
      const text = payload.text
      if (typeof text !== "string" || !textFits(text) || isBlank(text)) return undefined
      texts.push({ text })
    }
    const own = (key: string) => Object.prototype.hasOwnProperty.call(input, key)
    const optional: Record<string, unknown> = {}
    for (const key of ["accountId", "threadId", "replyToId"] as const) {
      if (!own(key)) continue
      const value = input[key]
      if (typeof value !== "string" || !isWellFormed(value)) return undefined
      optional[key] = value
    }
    const kind = own("kind") ? input.kind : "final"
    if (kind !== "tool" && kind !== "block" && kind !== "final") return undefined
    const bestEffort = own("bestEffort") ? input.bestEffort : false
    if (typeof bestEffort !== "boolean") return undefined
    if (own("idempotencyKey") && !isName(input.idempotencyKey)) return undefined
    if (own("silent") && typeof input.silent !== "boolean") return undefined
    return {
      channel,
      to,
      ...optional,
      payloads: texts,
      kind,
      bestEffort,
      ...(own("idempotencyKey") ? { idempotencyKey: input.idempotencyKey as string } : {}),
      ...(own("silent") ? { silent: input.silent as boolean } : {})
    }
  } catch {
    // a getter or Proxy trap threw: the Schema reads it again and reports it
    return undefined
  }
}
