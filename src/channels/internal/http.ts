/**
 * What the shipped HTTP channels share: one request through the gateway's `HttpClient` under a span of our own,
 * bounded reads of response bodies, `Retry-After`, status classes, and the scrubbing that keeps secrets (a bot
 * token in the URL path, a webhook URL's path) out of every error message the outbox stores and logs.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import { SendError } from "../../DeliveryError.js"

/** How much of a response body an error message quotes. */
export const ERROR_BODY_CHARS = 500

/** The most of a response body that is read (an API answer is far smaller; a broken proxy's page may not be). */
export const MAX_BODY_BYTES = 1024 * 1024

/** `text` cut to `max` characters, with an ellipsis when it was longer. */
export const truncate = (text: string, max: number = ERROR_BODY_CHARS): string =>
  text.length > max ? `${text.slice(0, max)}…` : text

/** Replaces every occurrence of each secret (as written, and URL-encoded) with `<redacted>`. */
export const scrubber = (secrets: ReadonlyArray<Redacted.Redacted<string>>) => {
  const needles = secrets.flatMap((secret) => {
    const raw = Redacted.value(secret)
    return raw === "" ? [] : [raw, encodeURIComponent(raw)]
  }).sort((a, b) => b.length - a.length) // the longer form first, so no part of it is left behind
  return (text: string): string => needles.reduce((out, needle) => out.split(needle).join("<redacted>"), text)
}

/** The scheme, host and port of a URL: what an error may say about where a request went (never its path or query). */
export const originOf = (url: string): string => new URL(url).origin

/** A URL's path and query, as a secret to scrub, unless it is just `/`. */
export const pathSecret = (url: string): ReadonlyArray<Redacted.Redacted<string>> => {
  const { pathname, search } = new URL(url)
  const rest = `${pathname}${search}`
  return rest.length > 1 ? [Redacted.make(rest)] : []
}

/** Whether a URL is an absolute http(s) URL. */
export const isHttpUrl = (url: string): boolean => {
  if (!URL.canParse(url)) return false
  const protocol = new URL(url).protocol
  return protocol === "http:" || protocol === "https:"
}

/** 408, 429 and 5xx are worth another try; every other failing status is not. */
export const isRetryableStatus = (status: number): boolean => status === 408 || status === 429 || status >= 500

/**
 * A `Retry-After` value (delta-seconds or an HTTP-date, RFC 9110 §10.2.3) as milliseconds from `now`; a date in the
 * past is 0, anything unreadable `undefined`.
 */
export const parseRetryAfter = (value: string | undefined, now: number): number | undefined => {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  // an HTTP-date names its day and month; `Date.parse` alone would take "-5" for a year
  if (!/[A-Za-z]{3}/.test(trimmed)) return undefined
  const date = Date.parse(trimmed)
  return Number.isNaN(date) ? undefined : Math.max(0, date - now)
}

/** `retryAfterMs` from a response's `Retry-After` header, measured from the Clock's now. */
export const retryAfterOf = (response: HttpClientResponse.HttpClientResponse): Effect.Effect<number | undefined> =>
  Effect.map(Clock.currentTimeMillis, (now) => parseRetryAfter(response.headers["retry-after"], now))

/** A `SendError` with only the fields that are set. */
export const sendError = (fields: {
  readonly message: string
  readonly retryable: boolean
  readonly retryAfterMs?: number | undefined
  readonly status?: number | undefined
}): SendError =>
  new SendError({
    message: fields.message,
    retryable: fields.retryable,
    ...(fields.retryable && fields.retryAfterMs !== undefined ? { retryAfterMs: fields.retryAfterMs } : {}),
    ...(fields.status !== undefined ? { status: fields.status } : {})
  })

const causeText = (cause: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = cause
  // an undici failure says "fetch failed" and keeps the reason (ECONNREFUSED …) in its own cause
  for (let depth = 0; depth < 3 && current instanceof Error; depth++) {
    if (current.message !== "" && !parts.includes(current.message)) parts.push(current.message)
    current = current.cause
  }
  return parts.join(": ")
}

/** What the caller knows about a request, for its span and its error messages. */
export interface Target {
  /** names the API call in messages and the span: `"webhook"`, `"Telegram sendMessage"` */
  readonly label: string
  /** where the request goes, without path or query */
  readonly origin: string
  readonly scrub: (text: string) => string
}

const requestFailure = (target: Target, error: HttpClientError.HttpClientError): SendError => {
  const detail = target.scrub(causeText(error.cause) || error.description || error.reason)
  if (error._tag === "RequestError" && error.reason === "Transport") {
    return sendError({ message: `${target.label}: could not reach ${target.origin} (${detail})`, retryable: true })
  }
  // an unusable URL or body will not become usable by retrying
  return sendError({
    message: `${target.label}: the request to ${target.origin} could not be made (${error.reason}: ${detail})`,
    retryable: false
  })
}

/**
 * Executes `request` and gives its response, whatever the status. The platform's own client span is turned off (its
 * `url.full` attribute would carry a token in the path) for one of ours that names only the origin. A request that
 * cannot be sent fails with a retryable `SendError` (a transport failure) or a permanent one (a bad URL).
 */
export const execute = (
  client: HttpClient.HttpClient,
  request: HttpClientRequest.HttpClientRequest,
  target: Target
): Effect.Effect<HttpClientResponse.HttpClientResponse, SendError> =>
  HttpClient.withTracerDisabledWhen(client, () => true).execute(request).pipe(
    Effect.mapError((error) => requestFailure(target, error)),
    Effect.withSpan(target.label, {
      kind: "client",
      attributes: { "http.request.method": request.method, "server.address": target.origin }
    })
  )

/** The response body as text, read up to `MAX_BODY_BYTES` (the rest is not read); a read that fails is retryable. */
export const readBody = (
  response: HttpClientResponse.HttpClientResponse,
  target: Target
): Effect.Effect<string, SendError> =>
  Stream.runFoldWhile(
    response.stream,
    { chunks: [] as Array<Uint8Array>, size: 0 },
    (acc) => acc.size < MAX_BODY_BYTES,
    (acc, chunk) => {
      acc.chunks.push(chunk)
      return { chunks: acc.chunks, size: acc.size + chunk.length }
    }
  ).pipe(
    Effect.map(({ chunks, size }) => {
      const bytes = new Uint8Array(size)
      let offset = 0
      for (const chunk of chunks) {
        bytes.set(chunk, offset)
        offset += chunk.length
      }
      return new TextDecoder().decode(bytes.subarray(0, MAX_BODY_BYTES))
    }),
    Effect.mapError((error) =>
      sendError({
        message: `${target.label}: the response from ${target.origin} (HTTP ${response.status}) could not be read (${
          target.scrub(causeText(error.cause) || error.reason)
        })`,
        retryable: true,
        status: response.status
      })
    )
  )

/** JSON text parsed, or `undefined` when it is not JSON. */
export const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** ` 503 Service Unavailable: <body>` style detail for a failing response: the body scrubbed, truncated, on one line. */
export const bodyDetail = (body: string, target: Target): string => {
  const flat = body.replace(/\s+/g, " ").trim()
  return flat === "" ? "(empty body)" : truncate(target.scrub(flat))
}
