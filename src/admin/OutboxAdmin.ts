/**
 * The admin board: a JSON API (`AdminApi`, OpenAPI at `/api/openapi.json`), one self-contained page at `/`, a live
 * feed of this process's outbox events (`/api/events`, Server-Sent Events) and Prometheus `/metrics`.
 *
 * Two ways to run it:
 * - **Inside the gateway** — `OutboxAdmin.layer(options)` adds its routes to the gateway's own
 *   `HttpLayerRouter` (optionally under `pathPrefix`), next to its `Outbox`: the board then shows live events.
 * - **Beside it, on the database** — `effect-outbox serve --db …`, or `OutboxAdmin.layerServer(options)` with an
 *   outbox over the same store (no live feed: that process sends nothing).
 *
 * Security (see `AdminAuth`): without a token the board answers requests to localhost only; a board on any other
 * interface must have a token (`token`, or the CLI's `--token` / `OUTBOX_ADMIN_TOKEN`), and the layer refuses to
 * start without one when the gateway's `HttpServer` listens beyond loopback. Writes need the token and a same-origin
 * request; `readOnly` refuses them (403) and the page hides their buttons. Payload text is data everywhere: the page
 * builds its DOM with `textContent` and its Content-Security-Policy allows no inline script. No adapter or token is
 * ever part of a response.
 *
 * Counts and the activity sparkline come from database queries shared by every request for `statsMaxAge` (5 s by
 * default), so the sparkline is the same inside and beside the gateway; the feed and an entry's event timeline come
 * from `Outbox.events` and exist only inside the gateway.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as Etag from "@effect/platform/Etag"
import type * as FileSystem from "@effect/platform/FileSystem"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import type * as HttpPlatform from "@effect/platform/HttpPlatform"
import * as HttpServer from "@effect/platform/HttpServer"
import type { ServeError } from "@effect/platform/HttpServerError"
import type * as Path from "@effect/platform/Path"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import { createServer } from "node:http"
import type { Outbox } from "../Outbox.js"
import type { OutboxConfig } from "../OutboxConfig.js"
import type { OutboxRepo } from "../OutboxRepo.js"
import { AdminApi } from "./AdminApi.js"
import * as AdminAuth from "./AdminAuth.js"
import * as AdminHandlers from "./AdminHandlers.js"
import * as AdminRoutes from "./AdminRoutes.js"
import * as AdminState from "./AdminState.js"

/** How a board is set up. */
export interface Options {
  /** required on any interface but loopback; at least 16 characters. Prefer a random one (`openssl rand -hex 24`) */
  readonly token?: Redacted.Redacted<string> | undefined
  /** refuse every write (retry, prune) with 403 and hide the page's buttons (default false) */
  readonly readOnly?: boolean | undefined
  /** follow `Outbox.events` for the live feed and timelines (default true: the board runs inside the gateway) */
  readonly live?: boolean | undefined
  /** where the board's routes live in the gateway's router, e.g. `/outbox` (default: the root) */
  readonly pathPrefix?: string | undefined
  /** how long counts and activity are shared between requests before a recount (default 5 seconds) */
  readonly statsMaxAge?: Duration.DurationInput | undefined
  /** host names, besides localhost, that a board without a token answers (e.g. behind a local proxy) */
  readonly allowedHosts?: ReadonlyArray<string> | undefined
}

/** The board cannot start as configured (a non-loopback bind without a token, a token too short). */
export class AdminConfigError extends Data.TaggedError("AdminConfigError")<{ readonly message: string }> {}

/** What the board's routes need besides the outbox: what `NodeHttpServer.layer` provides. */
export type ServerContext = Etag.Generator | FileSystem.FileSystem | HttpPlatform.HttpPlatform | Path.Path

/** Fails unless the token is long enough and a bind beyond loopback has one. */
const checkConfig = (options: AdminState.ResolvedOptions, host: string | undefined) => {
  if (options.token !== undefined && Redacted.value(options.token).length < AdminAuth.MIN_TOKEN_LENGTH) {
    return Effect.fail(
      new AdminConfigError({ message: `the admin token must be at least ${AdminAuth.MIN_TOKEN_LENGTH} characters` })
    )
  }
  if (host !== undefined && options.token === undefined && !AdminAuth.isLoopback(host)) {
    return Effect.fail(
      new AdminConfigError({
        message: `the board listens on ${host}, beyond this machine: give it a token (--token or OUTBOX_ADMIN_TOKEN)`
      })
    )
  }
  return Effect.void
}

/**
 * The board's routes, added to the `HttpLayerRouter` in context (under `pathPrefix`), over the `Outbox`, its store
 * and configuration (and the `ChannelRegistry`, when present, for exact send plans).
 */
export const layer = (
  options: Options = {}
): Layer.Layer<
  never,
  AdminConfigError,
  HttpLayerRouter.HttpRouter | Outbox | OutboxRepo | OutboxConfig | ServerContext
> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const resolved = AdminState.resolve(options)
    const server = yield* Effect.serviceOption(HttpServer.HttpServer)
    const address = Option.getOrUndefined(server)?.address
    yield* checkConfig(resolved, address?._tag === "TcpAddress" ? address.hostname : undefined)
    const state = yield* AdminState.make(resolved)
    const auth = AdminAuth.make(resolved.token, resolved.allowedHosts)
    const api = HttpLayerRouter.addHttpApi(AdminApi, { openapiPath: "/api/openapi.json" }).pipe(
      Layer.provide(AdminHandlers.layer)
    )
    const routes = Layer.mergeAll(api, AdminRoutes.layer(state, auth)).pipe(
      Layer.provide(AdminRoutes.guard(state.options, auth)),
      Layer.provide(Layer.succeed(AdminState.AdminState, state))
    )
    if (resolved.pathPrefix === "") return routes
    const prefixed = Layer.effect(
      HttpLayerRouter.HttpRouter,
      Effect.map(HttpLayerRouter.HttpRouter, (router) => router.prefixed(resolved.pathPrefix))
    )
    return Layer.provide(routes, prefixed)
  }))

/** Where `layerServer` listens. */
export interface ServerOptions extends Options {
  /** default 8484 (0: any free port) */
  readonly port?: number | undefined
  /** default 127.0.0.1; anything else needs a token */
  readonly host?: string | undefined
}

/** The board on an HTTP server of its own (Node), over the `Outbox`, its store and configuration in context. */
export const layerServer = (
  options: ServerOptions = {}
): Layer.Layer<HttpServer.HttpServer, AdminConfigError | ServeError, Outbox | OutboxRepo | OutboxConfig> => {
  const host = options.host ?? "127.0.0.1"
  return Layer.unwrapEffect(Effect.as(
    // refused before the port is opened
    checkConfig(AdminState.resolve(options), host),
    HttpLayerRouter.serve(layer(options), { disableLogger: true, disableListenLog: true }).pipe(
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port: options.port ?? 8484, host }))
    )
  ))
}
