/**
 * What every statement module of the PostgreSQL store works with: the client and its two kinds of transaction, and the
 * mapping of `SqlError` to `StoreError` that each store operation goes through.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { StoreError } from "../DeliveryError.js"

/** Runs an effect in one transaction; a lost connection fails it with `SqlError`. */
export type Transact = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>

/** The store's client and options, as its statement modules need them. */
export interface PgContext {
  readonly sql: SqlClient.SqlClient
  /** a READ COMMITTED transaction: the claim protocol's statements must see what committed before each of them */
  readonly tx: Transact
  /** a transaction at the connections' default isolation */
  readonly inTransaction: Transact
  /** `pg_notify` on the store's channel: a row became claimable */
  readonly notify: Effect.Effect<unknown, SqlError>
  readonly channel: string
  readonly heartbeatStaleMs: number
}

const describe = (e: SqlError): string => {
  const cause = e.cause instanceof Error ? e.cause.message : e.cause === undefined ? "" : String(e.cause)
  return cause ? `${e.message}: ${cause}` : e.message
}

/**
 * `sql.withTransaction`, with a lost connection as a failure. @effect/sql turns a failed COMMIT or ROLLBACK into a
 * defect; on a connection that dropped mid-transaction the ROLLBACK after the failed statement fails too, so without
 * this every connection loss would kill its callers instead of giving them `StoreError`. A failed COMMIT leaves the
 * outcome unknown to the caller (the server may have committed before the connection went): a retry of an insert
 * with the same id or idempotency key then finds the row (`Duplicate`).
 */
export const transaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  sql.withTransaction(effect).pipe(
    Effect.catchSomeDefect((defect) => isSqlError(defect) ? Option.some(Effect.fail(defect)) : Option.none())
  )

const isSqlError = (u: unknown): u is SqlError =>
  typeof u === "object" && u !== null && (u as { readonly _tag?: unknown })._tag === "SqlError"

/** Runs `effect` as the store operation `operation`: its `SqlError` becomes `StoreError`, in a span of that name. */
export const run = (operation: string) => <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
  effect.pipe(
    Effect.catchIf(
      (e): e is SqlError => isSqlError(e),
      (e) => Effect.fail(new StoreError({ operation, message: describe(e), cause: e }))
    ),
    Effect.withSpan(`OutboxRepo.${operation}`, { captureStackTrace: false })
  ) as Effect.Effect<A, Exclude<E, SqlError> | StoreError, R>
