/**
 * The board's routes beside its JSON API: the page and its two assets, the login, the live feed (Server-Sent Events)
 * and `/metrics`; and the guard every board route runs behind (`AdminAuth`'s checks, the security headers).
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import * as AdminAuth from "./AdminAuth.js"
import * as AdminPage from "./AdminPage.js"
import type { AdminStateShape, ResolvedOptions } from "./AdminState.js"
import * as Prometheus from "./Prometheus.js"

/** Headers of every board response: no inline script or foreign resource, no framing, no sniffing, no caching. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
    "img-src 'self' data:; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store"
}

/** Routes that need no token (the other checks still apply): the page shell, its assets, the login, the API's shape. */
const PUBLIC = new Set([
  "GET /",
  "GET /board.js",
  "GET /board.css",
  "GET /api/info",
  "GET /api/openapi.json",
  "POST /api/session",
  "DELETE /api/session"
])

const pathOf = (url: string): string => {
  const at = url.search(/[?#]/)
  const path = at === -1 ? url : url.slice(0, at)
  return path === "" ? "/" : path
}

const refuse = (refusal: AdminAuth.Refusal) =>
  HttpServerResponse.unsafeJson({ _tag: refusal.tag, message: refusal.message }, { status: refusal.status })

/** The guard of every board route (a middleware of the board's routes only, not of the gateway's others). */
export const guard = (options: ResolvedOptions, auth: AdminAuth.Auth) =>
  HttpLayerRouter.middleware((app) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const method = request.method === "HEAD" ? "GET" : request.method
      const verdict = auth.check(request, PUBLIC.has(`${method} ${pathOf(request.url)}`))
      const response = Either.isLeft(verdict) ? refuse(verdict.left) : yield* app
      return HttpServerResponse.setHeaders(response, SECURITY_HEADERS)
    }).pipe(Effect.annotateLogs({ module: "OutboxAdmin", prefix: options.pathPrefix }))
  ).layer

const Login = Schema.Struct({ token: Schema.String })

/** The live feed (server-sent events) of the outbox this board runs in; 404 beside a gateway. */
const liveFeed = (state: AdminStateShape) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (Option.isNone(state.events)) {
      return HttpServerResponse.unsafeJson({
        _tag: "NotFound",
        message: "no live feed: this board runs beside the gateway, not inside it"
      }, { status: 404 })
    }
    const log = state.events.value
    const resumeFrom = Number(request.headers["last-event-id"])
    // a fresh page gets the last 50 events; a reconnecting one what it missed, as far as the log still holds it
    const after = Number.isSafeInteger(resumeFrom) && resumeFrom >= 0 ? resumeFrom : Math.max(0, log.latest() - 50)
    const encoder = new TextEncoder()
    const feed = log.follow(after).pipe(
      Stream.map((e) => `id: ${e.seq}\nevent: outbox\ndata: ${JSON.stringify(e)}\n\n`),
      // a comment now and then keeps proxies from closing an idle stream
      Stream.merge(Stream.tick("15 seconds").pipe(Stream.as(": keep-alive\n\n")), { haltStrategy: "left" }),
      (lines) => Stream.concat(Stream.make("retry: 3000\n\n"), lines),
      Stream.map((text) => encoder.encode(text))
    )
    return HttpServerResponse.stream(feed, {
      contentType: "text/event-stream",
      headers: { "x-accel-buffering": "no" }
    })
  })

/** The page, its assets, the login, the live feed and the metrics. */
export const layer = (state: AdminStateShape, auth: AdminAuth.Auth) => {
  const base = `${state.options.pathPrefix}/`
  const html = AdminPage.html(base)
  const asset = (body: string, contentType: string) => Effect.succeed(HttpServerResponse.text(body, { contentType }))

  const login = Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const body = yield* Effect.either(HttpServerRequest.schemaBodyJson(Login))
    if (Either.isLeft(body)) {
      return HttpServerResponse.unsafeJson({ _tag: "BadRequest", message: "expected {\"token\": \"…\"}" }, {
        status: 400
      })
    }
    if (!auth.required) return HttpServerResponse.empty({ status: 204 })
    if (!auth.tokenMatches(body.right.token)) {
      yield* Effect.logWarning(`admin board: a login with a wrong token from ${
        request.remoteAddress.pipe(
          Option.getOrElse(() => "an unknown address")
        )
      }`)
      return HttpServerResponse.unsafeJson({ _tag: "Unauthorized", message: "wrong token" }, { status: 401 })
    }
    const secure = request.headers["x-forwarded-proto"] === "https"
    return yield* HttpServerResponse.empty({ status: 204 }).pipe(
      HttpServerResponse.setCookie(AdminAuth.COOKIE, auth.sessionValue, {
        httpOnly: true,
        sameSite: "strict",
        secure,
        path: base,
        maxAge: "12 hours"
      }),
      Effect.orDie
    )
  })

  const logout = HttpServerResponse.empty({ status: 204 }).pipe(
    HttpServerResponse.setCookie(AdminAuth.COOKIE, "", { httpOnly: true, sameSite: "strict", path: base, maxAge: 0 }),
    Effect.orDie
  )

  const events = liveFeed(state)

  const metrics = Effect.gen(function*() {
    const counted = yield* state.stats.get
    const text = yield* Prometheus.exposition(
      { stats: counted.value, asOf: counted.asOf },
      yield* Clock.currentTimeMillis
    )
    return HttpServerResponse.text(text, { contentType: Prometheus.CONTENT_TYPE })
  }).pipe(
    Effect.catchAll((error) =>
      Effect.as(
        Effect.logWarning(`admin board: /metrics could not count the database: ${error.message}`),
        HttpServerResponse.text(`# the outbox database could not be counted: ${error.message}\n`, { status: 503 })
      )
    )
  )

  return HttpLayerRouter.addAll([
    HttpLayerRouter.route("GET", "/", asset(html, "text/html; charset=utf-8")),
    HttpLayerRouter.route("GET", "/board.js", asset(AdminPage.script, "text/javascript; charset=utf-8")),
    HttpLayerRouter.route("GET", "/board.css", asset(AdminPage.css, "text/css; charset=utf-8")),
    HttpLayerRouter.route("POST", "/api/session", login),
    HttpLayerRouter.route("DELETE", "/api/session", logout),
    HttpLayerRouter.route("GET", "/api/events", events),
    HttpLayerRouter.route("GET", "/metrics", metrics)
  ])
}
