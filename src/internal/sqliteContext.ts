/**
 * What every statement module of the SQLite store works with: the client, its write transaction, and the mapping of
 * `SqlError` to `StoreError` that each store operation goes through.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { StoreError } from "../DeliveryError.js"
import { storeError } from "./sqliteSchema.js"

/** The store's client, as its statement modules need it. */
export interface SqliteContext {
  readonly sql: SqlClient.SqlClient
  /** a transaction that takes SQLite's write lock with its first statement */
  readonly writeTx: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
}

/** The context over `sql`. */
export const makeContext = (sql: SqlClient.SqlClient): SqliteContext => {
  // Taking the write lock with the first statement means busy_timeout applies to it; a deferred
  // transaction that reads first could fail with SQLITE_BUSY at once when another process wrote meanwhile.
  const lockForWrite = sql`UPDATE outbox_meta SET value = value WHERE key = 'schema'`
  return {
    sql,
    writeTx: (effect) => sql.withTransaction(Effect.zipRight(lockForWrite, effect))
  }
}

/** Runs `effect` as the store operation `operation`: its `SqlError` becomes `StoreError`, in a span of that name. */
export const run = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
  effect.pipe(
    Effect.catchIf((e): e is SqlError => (e as { _tag?: string })._tag === "SqlError", (e) =>
      Effect.fail(storeError(operation)(e))),
    // no stack trace: it would point here, and it costs one per call
    Effect.withSpan(`OutboxRepo.${operation}`, { captureStackTrace: false })
  ) as Effect.Effect<A, Exclude<E, SqlError> | StoreError, R>
