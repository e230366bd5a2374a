/**
 * Who may use the board, checked on every request before any handler runs:
 * - **Token.** When the board has a token, every route but the page shell, `/api/info` and the login needs it: an
 *   `Authorization: Bearer <token>` header (scripts, Prometheus) or the session cookie the login sets (the page). Both
 *   are compared in constant time (`timingSafeEqual` on SHA-256 digests, so lengths leak nothing either). The cookie
 *   holds an HMAC of the token under a key of this process, never the token: it is `HttpOnly`, `SameSite=Strict`,
 *   and void after a restart.
 * - **Same origin for writes.** A POST or DELETE from a browser must come from the board's own page: `Sec-Fetch-Site`
 *   must say `same-origin`, or without it `Origin` must be this host. A request with neither header is not from a
 *   browser (curl, a script) and cannot be a cross-site forgery; it still needs the token.
 * - **Host names without a token.** A board without a token answers only requests addressed to a loopback name
 *   (`localhost`, `127.0.0.1`, `[::1]`) or one of `allowedHosts`: a web page cannot reach it by rebinding its own
 *   DNS name to 127.0.0.1.
 */
import * as Cookies from "@effect/platform/Cookies"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"

/** The name of the session cookie. */
export const COOKIE = "outbox_admin"

/** Tokens shorter than this are refused when the board starts: a guessable token guards nothing. */
export const MIN_TOKEN_LENGTH = 16

/** Why a request is refused: the status and a message for the caller. */
export interface Refusal {
  readonly status: 401 | 403
  readonly tag: "Unauthorized" | "Forbidden"
  readonly message: string
}

const digest = (value: string): Buffer => crypto.createHash("sha256").update(value, "utf8").digest()

/** Constant-time equality of two strings (of any lengths). */
export const sameSecret = (presented: string, expected: Buffer): boolean =>
  crypto.timingSafeEqual(digest(presented), expected)

/** Whether `host` (a Host header or a bind address, port allowed) names this machine's loopback interface. */
export const isLoopback = (host: string): boolean => {
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "")
  const lower = name.toLowerCase()
  return lower === "localhost" || lower === "::1" || lower === "0:0:0:0:0:0:0:1" || /^127(\.\d{1,3}){3}$/.test(lower)
}

/** The checks of one board. */
export interface Auth {
  readonly required: boolean
  /** Refuses a request or lets it through; `isPublic` routes skip the token (never the other checks). */
  readonly check: (request: HttpServerRequest.HttpServerRequest, isPublic: boolean) => Either.Either<void, Refusal>
  /** Whether `token` is the board's token. */
  readonly tokenMatches: (token: string) => boolean
  /** The value of the session cookie the login sets. */
  readonly sessionValue: string
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"])

/** Refuses a browser write from another origin (see the module doc). */
const crossOrigin = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  if (SAFE_METHODS.has(request.method)) return undefined
  const site = request.headers["sec-fetch-site"]
  if (site !== undefined) {
    return site === "same-origin"
      ? undefined
      : `a ${request.method} from another site (Sec-Fetch-Site: ${site}) is refused`
  }
  const origin = request.headers["origin"]
  if (origin === undefined) return undefined
  const host = request.headers["host"]
  const originHost = URL.canParse(origin) ? new URL(origin).host : null
  return originHost !== null && originHost === host
    ? undefined
    : `a ${request.method} from another origin (${origin}) is refused`
}

/** Builds the checks for `token` (none: no token needed) and the extra host names accepted without one. */
export const make = (token: Redacted.Redacted<string> | undefined, allowedHosts: ReadonlyArray<string>): Auth => {
  const expected = token === undefined ? undefined : digest(Redacted.value(token))
  const key = crypto.randomBytes(32)
  const sessionValue = token === undefined
    ? ""
    : crypto.createHmac("sha256", key).update(Redacted.value(token), "utf8").digest("base64url")
  const expectedSession = digest(sessionValue)
  const hosts = new Set(allowedHosts.map((h) => h.toLowerCase()))

  const authenticated = (request: HttpServerRequest.HttpServerRequest): boolean => {
    if (expected === undefined) return true
    const header = request.headers["authorization"]
    if (header !== undefined && /^bearer /i.test(header)) return sameSecret(header.slice(7).trim(), expected)
    const cookie = request.cookies[COOKIE]
    return cookie !== undefined && sameSecret(cookie, expectedSession)
  }

  return {
    required: expected !== undefined,
    sessionValue,
    tokenMatches: (presented) => expected !== undefined && sameSecret(presented, expected),
    check: (request, isPublic) => {
      const host = request.headers["host"] ?? ""
      if (expected === undefined && !isLoopback(host) && !hosts.has(host.toLowerCase())) {
        return Either.left({
          status: 403,
          tag: "Forbidden",
          message: `this board has no token, so it only answers requests to localhost (Host: ${host.slice(0, 100)})`
        })
      }
      const foreign = crossOrigin(request)
      if (foreign !== undefined) return Either.left({ status: 403, tag: "Forbidden", message: foreign })
      if (!isPublic && !authenticated(request)) {
        return Either.left({
          status: 401,
          tag: "Unauthorized",
          message: "this board needs its token: log in on the page, or send Authorization: Bearer <token>"
        })
      }
      return Either.right(undefined)
    }
  }
}

/** The `Set-Cookie` value of a session (`value` empty: the cookie removed). */
export const sessionCookie = (value: string, path: string, secure: boolean): Cookies.Cookie =>
  Cookies.unsafeMakeCookie(COOKIE, value, {
    httpOnly: true,
    sameSite: "strict",
    path: path === "" ? "/" : path,
    secure,
    maxAge: value === "" ? 0 : "12 hours"
  })
