/**
 * SQLite start-up steps that stay correct when several processes open one file at the same moment: the switch into
 * WAL, and a write lock held around the migrations.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import type * as Statement from "@effect/sql/Statement"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as Metrics from "../Metrics.js"

/**
 * Runs `statement` without the client's statement cache, so that a failure is not kept for the next call. The client
 * lets a failure to prepare an unprepared statement escape as a defect; it is a SqlError here like any other (a pragma
 * that must read the file fails to prepare while another connection holds it).
 */
export const unprepared = <A>(statement: Statement.Statement<A>): Effect.Effect<ReadonlyArray<A>, SqlError> =>
  statement.unprepared.pipe(
    Effect.catchAllDefect((cause) => Effect.fail(new SqlError({ cause, message: "Failed to prepare statement" })))
  )

/** Whether SQLite refused for a lock another connection holds (SQLITE_BUSY or one of its extended codes). */
export const isBusy = (e: SqlError): boolean => {
  const code = (e.cause as { readonly code?: unknown } | null | undefined)?.code
  return typeof code === "string" && code.startsWith("SQLITE_BUSY")
}

/**
 * Switches the file into WAL (a no-op once it is) and returns the journal mode now in force. SQLite takes the
 * exclusive lock this needs without calling the busy handler, so two processes opening a fresh file at once get
 * SQLITE_BUSY here whatever busy_timeout says: the switch is retried for up to `timeoutMs`. Unprepared, so a failed
 * attempt leaves nothing in the client's statement cache.
 */
export const enableWal = (timeoutMs: number): Effect.Effect<string, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      unprepared(sql<{ journal_mode: string }>`PRAGMA journal_mode = WAL`).pipe(
        Effect.retry({
          while: isBusy,
          schedule: Schedule.spaced(Duration.millis(5)).pipe(Schedule.upTo(Duration.millis(timeoutMs)))
        }),
        Effect.map((rows) => rows[0]?.journal_mode ?? "unknown")
      )
  )

/**
 * A ROLLBACK that failed, logged and counted (a failed transaction's own error is what its caller gets). After a
 * failed COMMIT SQLite may have ended the transaction already ("no transaction is active"): nothing to report then.
 */
export const rollbackFailed = (error: SqlError): Effect.Effect<void> => {
  const message = error.cause instanceof Error ? error.cause.message : error.message
  return /no transaction is active/i.test(message)
    ? Effect.logDebug(`ROLLBACK after a failed transaction: ${message}`)
    : Effect.zipRight(
      Metric.increment(Metrics.writeFailures("rollback")),
      Effect.logWarning(`ROLLBACK after a failed transaction failed too (the connection is closed with it): ${message}`)
    )
}

/**
 * Runs `effect` inside `BEGIN IMMEDIATE` on the client's one connection, committed if it succeeds and rolled back
 * otherwise. The write lock is taken by the first statement, while busy_timeout still applies (a deferred
 * transaction that reads first gets SQLITE_BUSY at once when it must upgrade), so what `effect` reads cannot change
 * under it: another process's migration has either committed or not begun. Statements in `effect` run on that
 * connection and its `withTransaction` becomes a savepoint. Already inside a transaction, `effect` runs in it.
 * `effect`'s own scoped resources stay in the caller's scope.
 */
export const withWriteLock = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> => {
  const locked: Effect.Effect<A, E | SqlError, R | SqlClient.SqlClient> = Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      Effect.acquireUseRelease(
        Scope.make(),
        (connectionScope) =>
          Effect.gen(function*() {
            const conn = yield* Scope.extend(sql.reserve, connectionScope)
            // unprepared: these are not worth a cache slot, and a failed one must not sit in the cache
            const exec = (statement: string) => conn.executeUnprepared(statement, [], undefined)
            yield* exec("BEGIN IMMEDIATE")
            return yield* effect.pipe(
              Effect.provideService(SqlClient.TransactionConnection, [conn, 0] as const),
              Effect.zipLeft(exec("COMMIT")),
              Effect.onError(() => Effect.catchAll(exec("ROLLBACK"), rollbackFailed))
            )
          }),
        (connectionScope, exit) => Scope.close(connectionScope, exit)
      )
  )
  return Effect.flatMap(
    Effect.serviceOption(SqlClient.TransactionConnection),
    (current) => Option.isSome(current) ? effect : locked
  )
}
