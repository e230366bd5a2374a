/**
 * The admin board for tests: a real HTTP server on an ephemeral port over an outbox on a temp SQLite file, seeded
 * with rows written straight to the store, and helpers to ask it things over HTTP.
 */
import * as HttpServer from "@effect/platform/HttpServer"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Schema from "effect/Schema"
import * as OutboxAdmin from "../../src/admin/OutboxAdmin.js"
import type { Adapter } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import type { EntryState, OutboxEntry } from "../../src/Delivery.js"
import type { StoreError } from "../../src/DeliveryError.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { queuedEntry } from "../support/entries.js"

/** A row stored directly in `state`, reached at `at`. */
export const rowIn = (state: EntryState, at: number, overrides: Partial<OutboxEntry> = {}): OutboxEntry =>
  queuedEntry({
    enqueuedAt: at - 1000,
    state,
    updatedAt: at,
    nextAttemptAt: state === "queued" || state === "failed_retryable" ? at + 60_000 : null,
    deliveredAt: state === "delivered" ? at : null,
    lastAttemptAt: state === "queued" ? null : at,
    terminalReason: state === "failed_terminal" ? "permanent_error" : null,
    lastError: state === "failed_terminal" || state === "failed_retryable"
      ? "HTTP 403: bot was blocked by the user"
      : null,
    attemptCount: state === "queued" || state === "delivered" ? 0 : 1,
    expiresAt: null,
    ...overrides
  })

/** A running board. */
export interface Board {
  /** the board's base URL, ending in "/" */
  readonly url: string
  readonly port: number
  /** runs an effect against the board's outbox and store */
  readonly run: <A, E>(effect: Effect.Effect<A, E, Outbox.Outbox | OutboxRepo>) => Promise<A>
  readonly close: () => Promise<void>
}

/** Starts a board on `filename` with `rows` inserted first. */
export const startBoard = async (options: {
  readonly filename: string
  readonly rows?: ReadonlyArray<OutboxEntry>
  readonly admin?: OutboxAdmin.ServerOptions
  readonly channels?: Readonly<Record<string, Adapter>>
  readonly config?: OutboxConfig.OutboxConfigInput
  /** another store than the SQLite file (`filename` is then unused) */
  readonly store?: Layer.Layer<OutboxRepo, StoreError>
}): Promise<Board> => {
  const store = options.store ?? SqliteOutboxRepo.layerFile({ filename: options.filename, exclusive: false })
  const outbox = Outbox.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(
      store,
      ChannelRegistry.layer(options.channels ?? {}),
      OutboxConfig.layer({ retryJitter: false, nodeId: "board-test", ...options.config })
    ))
  )
  const runtime = ManagedRuntime.make(
    OutboxAdmin.layerServer({ port: 0, ...options.admin }).pipe(Layer.provideMerge(outbox))
  )
  try {
    if (options.rows !== undefined && options.rows.length > 0) {
      await runtime.runPromise(Effect.flatMap(OutboxRepo, (repo) => repo.insert(options.rows!)))
    }
    const address = await runtime.runPromise(Effect.map(HttpServer.HttpServer, (server) => server.address))
    if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
    const host = options.admin?.host === undefined || options.admin.host === "0.0.0.0"
      ? "127.0.0.1"
      : options.admin.host
    return {
      url: `http://${host}:${address.port}/`,
      port: address.port,
      run: (effect) => runtime.runPromise(effect),
      close: () => runtime.dispose()
    }
  } catch (error) {
    await runtime.dispose()
    throw error
  }
}

/** A request to the board; the status, headers and body (parsed when it is JSON). */
export const call = async (
  board: { readonly url: string },
  path: string,
  init: RequestInit = {}
): Promise<{ readonly status: number; readonly headers: Headers; readonly body: unknown }> => {
  const response = await fetch(new URL(path, board.url), init)
  const text = await response.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // not JSON: the text as is
  }
  return { status: response.status, headers: response.headers, body }
}

/** A request whose JSON body must match `schema` (the API's own response schemas); the status and the decoded body. */
export const get = async <A, I>(
  schema: Schema.Schema<A, I>,
  board: { readonly url: string },
  path: string,
  init: RequestInit = {}
): Promise<{ readonly status: number; readonly body: A }> => {
  const response = await call(board, path, init)
  return { status: response.status, body: Schema.decodeUnknownSync(schema)(response.body) }
}

/** The body of a refusal or an error. */
export const ErrorBody = Schema.Struct({
  _tag: Schema.String,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(Schema.Struct({
    path: Schema.Array(Schema.Union(Schema.String, Schema.Number)),
    message: Schema.String
  })))
})
