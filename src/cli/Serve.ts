/**
 * `effect-outbox serve`: the admin board (`OutboxAdmin`) on its own HTTP server, beside the gateway, over the
 * database `--db` names (opened as every admin command opens it, `Admin.openOutbox`). It runs until interrupted.
 * Without `--read-only` its retry and prune buttons write through the `Outbox` facade, as `retry` and `prune` do;
 * with it the database is opened read-only and the board refuses writes. It has no live feed: this process sends
 * nothing, so it has no events to show.
 */
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import * as Console from "effect/Console"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as OutboxAdmin from "../admin/OutboxAdmin.js"
import { db, openOutbox } from "./Admin.js"
import * as Database from "./Database.js"
import * as Help from "./Help.js"
import { UsageError } from "./UsageError.js"

/** The port cannot be opened (in use, not allowed, no such address). */
export class CannotListen extends Data.TaggedError("CannotListen")<{ readonly message: string }> {}

/** The board's address for people: where to point a browser. */
const where = (address: HttpServer.Address): string => {
  if (address._tag === "UnixAddress") return address.path
  const host = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
  return `http://${host}:${address.port}/`
}

const describeServeError = (host: string, port: number, cause: unknown): string => {
  const code = (cause as { readonly code?: unknown } | null)?.code
  const reason = code === "EADDRINUSE"
    ? "the port is in use"
    : code === "EACCES"
    ? "permission denied"
    : code === "EADDRNOTAVAIL"
    ? "no such address on this machine"
    : cause instanceof Error
    ? cause.message
    : String(cause)
  return `cannot listen on ${host}:${port}: ${reason}`
}

/** The token: `--token`, else `OUTBOX_ADMIN_TOKEN` (better: it does not show in the process list). */
const tokenFrom = (flag: Option.Option<Redacted.Redacted<string>>) =>
  Option.isSome(flag)
    ? Effect.succeed(flag)
    : Effect.mapError(
      Config.option(Config.redacted("OUTBOX_ADMIN_TOKEN")),
      (error) => new UsageError({ message: `OUTBOX_ADMIN_TOKEN: ${error.message}` })
    )

/** The `serve` command. */
export const command = Command.make("serve", {
  db,
  port: Options.integer("port").pipe(
    Options.withDefault(8484),
    Options.withDescription("the port to listen on (default 8484)")
  ),
  host: Options.text("host").pipe(
    Options.withPseudoName("ip"),
    Options.withDefault("127.0.0.1"),
    Options.withDescription("the address to listen on (default 127.0.0.1; any other needs a token)")
  ),
  readOnly: Options.boolean("read-only").pipe(
    Options.withDescription("open the database read-only; the board refuses retries and pruning")
  ),
  token: Options.redacted("token").pipe(
    Options.withDescription("the token the board asks for (else OUTBOX_ADMIN_TOKEN)"),
    Options.optional
  )
}, ({ db, host, port, readOnly, token }) =>
  Effect.gen(function*() {
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      return yield* Effect.fail(new UsageError({ message: `--port: expected 0 to 65535, got ${port}` }))
    }
    const secret = yield* tokenFrom(token)
    const path = yield* Database.location(db)
    const server = OutboxAdmin.layerServer({
      port,
      host,
      readOnly,
      live: false,
      token: Option.getOrUndefined(secret)
    }).pipe(Layer.provide(openOutbox(path, readOnly ? "read" : "write")))
    yield* Effect.scoped(Effect.gen(function*() {
      const listening = yield* Effect.map(Layer.build(server), (ctx) => Context.get(ctx, HttpServer.HttpServer).address)
      yield* Console.log(
        `${Help.NAME} serve: the board of ${Database.display(path)} is on ${where(listening)}` +
          `${readOnly ? " (read-only)" : ""}${Option.isSome(secret) ? " (token required)" : ""}; Ctrl-C stops it`
      )
      return yield* Effect.never
    })).pipe(
      Effect.catchTags({
        AdminConfigError: (error) => Effect.fail(new UsageError({ message: error.message })),
        ServeError: (error) => Effect.fail(new CannotListen({ message: describeServeError(host, port, error.cause) }))
      })
    )
  })).pipe(Command.withDescription(Help.spec("serve").summary))
