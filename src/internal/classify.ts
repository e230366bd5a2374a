/**
 * Turns whatever an adapter threw, rejected or failed with into a classified `SendError`.
 * Order of evidence: what the adapter said, then the HTTP status, then known permanent
 * messages, else retryable (an unknown failure is assumed transient; `maxAttempts` bounds it).
 */
import { SendError } from "../DeliveryError.js"

/** Messages that never succeed on retry (the seed's list); matched case-insensitively. */
export const permanentPatterns: ReadonlyArray<string> = [
  "chat not found",
  "user not found",
  "bot was blocked by the user",
  "forbidden: bot was kicked",
  "chat_id is empty",
  "recipient is not a valid",
  "no conversation reference found",
  "outbound not configured for channel"
]

const MAX_MESSAGE_LENGTH = 1000

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

const finiteNonNegative = (u: unknown): number | undefined =>
  typeof u === "number" && Number.isFinite(u) && u >= 0 ? u : undefined

/** Parses a number or a numeric string (header values arrive as strings). */
const numeric = (u: unknown): number | undefined =>
  typeof u === "string" && u.trim() !== "" ? finiteNonNegative(Number(u)) : finiteNonNegative(u)

const safeJson = (u: unknown): string | undefined => {
  try {
    return JSON.stringify(u)
  } catch {
    return undefined
  }
}

const truncate = (s: string): string => (s.length > MAX_MESSAGE_LENGTH ? `${s.slice(0, MAX_MESSAGE_LENGTH)}…` : s)

/** A readable message for any thrown value, including `undefined` and non-Error objects. */
export const describeFailure = (u: unknown): string => {
  if (u instanceof Error) {
    const text = u.message !== "" ? u.message : u.name
    return truncate(u.name !== "Error" && !text.startsWith(u.name) ? `${u.name}: ${text}` : text)
  }
  if (typeof u === "string") return truncate(u === "" ? "adapter failed with an empty message" : u)
  if (u === undefined) return "adapter failed without an error value (undefined)"
  if (u === null) return "adapter failed with null"
  if (isRecord(u)) {
    for (const key of ["message", "description", "error"] as const) {
      const v = u[key]
      if (typeof v === "string" && v !== "") return truncate(v)
    }
    return truncate(`adapter failed with ${safeJson(u) ?? Object.prototype.toString.call(u)}`)
  }
  return truncate(`adapter failed with ${typeof u} ${String(u)}`)
}

const headerValue = (headers: unknown, name: string): unknown => {
  if (!isRecord(headers)) return undefined
  if (typeof headers["get"] === "function") {
    try {
      return (headers["get"] as (n: string) => unknown).call(headers, name)
    } catch {
      return undefined
    }
  }
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name)
  return key === undefined ? undefined : headers[key]
}

/** The HTTP status, wherever common clients put it (fetch Response, axios, Telegram `error_code`). */
const statusOf = (u: Record<string, unknown>): number | undefined => {
  const response = isRecord(u["response"]) ? u["response"] : undefined
  const candidates = [u["status"], u["statusCode"], response?.["status"], response?.["statusCode"], u["error_code"]]
  for (const c of candidates) {
    const n = numeric(c)
    if (n !== undefined && Number.isInteger(n) && n >= 100 && n <= 599) return n
  }
  return undefined
}

/** `retryAfterMs` as the adapter said it, or derived from `Retry-After` / Telegram's `retry_after` (seconds). */
const retryAfterOf = (u: Record<string, unknown>): number | undefined => {
  const ms = numeric(u["retryAfterMs"])
  if (ms !== undefined) return ms
  const response = isRecord(u["response"]) ? u["response"] : undefined
  const parameters = isRecord(u["parameters"]) ? u["parameters"] : undefined
  const seconds = [
    u["retryAfter"],
    parameters?.["retry_after"],
    headerValue(u["headers"], "retry-after"),
    headerValue(response?.["headers"], "retry-after")
  ]
  for (const s of seconds) {
    const n = numeric(s)
    if (n !== undefined) return n * 1000
  }
  return undefined
}

const isPermanentMessage = (message: string): boolean => {
  const lower = message.toLowerCase()
  return permanentPatterns.some((p) => lower.includes(p))
}

const make = (fields: {
  message: string
  retryable: boolean
  retryAfterMs: number | undefined
  status: number | undefined
}): SendError =>
  new SendError({
    message: fields.message,
    retryable: fields.retryable,
    ...(fields.retryAfterMs !== undefined ? { retryAfterMs: fields.retryAfterMs } : {}),
    ...(fields.status !== undefined ? { status: fields.status } : {})
  })

/** Classifies any adapter failure as a `SendError` (retryable or permanent, with `retryAfterMs` where known). */
export const classify = (error: unknown): SendError => {
  if (error instanceof SendError) return error
  const message = describeFailure(error)
  if (!isRecord(error)) {
    return make({ message, retryable: !isPermanentMessage(message), retryAfterMs: undefined, status: undefined })
  }
  const status = statusOf(error)
  const retryAfterMs = retryAfterOf(error)
  // (a) the adapter classified it itself
  if (typeof error["retryable"] === "boolean") {
    return make({
      message,
      retryable: error["retryable"],
      retryAfterMs: error["retryable"] ? retryAfterMs : undefined,
      status
    })
  }
  if (retryAfterMs !== undefined && numeric(error["retryAfterMs"]) !== undefined) {
    return make({ message, retryable: true, retryAfterMs, status })
  }
  // (b) the HTTP status
  if (status !== undefined) {
    if (status === 429) return make({ message, retryable: true, retryAfterMs, status })
    if (status === 408 || status >= 500) return make({ message, retryable: true, retryAfterMs, status })
    if (status === 400 || status === 401 || status === 403 || status === 404) {
      return make({ message, retryable: false, retryAfterMs: undefined, status })
    }
  }
  // (c) known permanent messages, (d) otherwise transient
  const permanent = isPermanentMessage(message)
  return make({ message, retryable: !permanent, retryAfterMs: permanent ? undefined : retryAfterMs, status })
}
