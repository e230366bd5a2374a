/**
 * What every statement module of the PostgreSQL store works with: the client and its two kinds of transaction, and the
 * mapping of `SqlError` to `StoreError` that each store operation goes through.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import { StoreError } from "../DeliveryError.js"

/** Runs an effect in one transaction; a lost connection fails it with `SqlError`. */
export type Transact = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>

/** The store's client and options, as its statement modules need them. */
export interface PgContext {
  readonly sql: SqlClient.SqlClient
  /**
   * a READ COMMITTED transaction (the claim protocol's statements must see what committed before each of them) whose
   * outcome is checked when its COMMIT fails (`verifiedTransaction`): the journal's batches and the claims
   */
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
 * outcome unknown to the caller (the server may have committed before the connection went): `verifiedTransaction`
 * asks the server.
 */
export const transaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  sql.withTransaction(effect).pipe(
    Effect.catchSomeDefect((defect) => isSqlError(defect) ? Option.some(Effect.fail(defect)) : Option.none())
  )

/** How often, and how far apart, the server is asked whether a transaction whose COMMIT failed was committed. */
const askAgain = Schedule.spaced("200 millis").pipe(Schedule.intersect(Schedule.recurs(10)))

/**
 * `transaction` for writes whose callers must learn whether they were stored. Its last statement reads the
 * transaction's id; when the COMMIT itself fails (the connection was lost while committing, so the server may have
 * committed), the server is asked on another connection (`txid_status`, for about 2 s): committed, the results
 * stand; aborted, the transaction fails as it did (nothing was written); no answer, it fails saying the outcome is
 * unknown.
 */
export const verifiedTransaction = <A, E, R>(
  sql: SqlClient.SqlClient,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  Effect.suspend(() => {
    let xid: string | undefined
    let done: Option.Option<A> = Option.none()
    const body = Effect.gen(function*() {
      const value = yield* effect
      // read last: a transaction's first statement may have to be its SET TRANSACTION; none when it wrote nothing
      // (no transaction id spent on an empty claim, and then a failed COMMIT lost nothing)
      const rows = yield* sql<{ readonly xid: string | null }>`SELECT txid_current_if_assigned()::text AS xid`
      xid = rows[0]?.xid ?? undefined
      done = Option.some(value) // from here on a failure is the COMMIT's
      return value
    })
    return Effect.catchIf(
      transaction(sql, body),
      (error): error is SqlError => isSqlError(error),
      (error) =>
        Option.isNone(done) || xid === undefined ? Effect.fail(error) : commitOutcome(sql, xid, error, done.value)
    )
  })

/** Whether transaction `xid`, whose COMMIT failed with `error`, was committed: `value` if it was, else a failure. */
const commitOutcome = <A>(
  sql: SqlClient.SqlClient,
  xid: string,
  error: SqlError,
  value: A
): Effect.Effect<A, SqlError> =>
  sql<{ readonly status: string | null }>`SELECT txid_status(${xid}::bigint) AS status`.pipe(
    Effect.map((rows) => rows[0]?.status ?? null),
    // the backend of a lost connection may still be finishing its commit
    Effect.filterOrFail((status) => status !== "in progress", () => new SqlError({ message: "still in progress" })),
    Effect.retry(askAgain),
    Effect.matchEffect({
      onSuccess: (status) => status === "committed" ? Effect.succeed(value) : Effect.fail(error),
      onFailure: (asked) =>
        Effect.fail(
          new SqlError({
            message:
              `${describe(error)}; the connection was lost while committing and the server could not say whether` +
              ` it committed (${
                describe(asked)
              }): the rows may be stored (a retry with the same id or idempotency key` +
              ` finds them)`,
            cause: error
          })
        )
    })
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
