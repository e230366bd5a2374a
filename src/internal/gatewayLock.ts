/**
 * One gateway per SQLite file. A gateway holds an exclusive SQLite lock on `<file>-gateway.lock`, an empty file
 * beside the outbox, for as long as its layer is open. SQLite's locks are the operating system's (fcntl on Unix,
 * LockFileEx on Windows): they go with the process however it ends, SIGKILL included, so there is never a stale lock
 * to clean up and no timeout that could call a slow holder dead (a heartbeat row would need one). The holder's pid,
 * host and start are written to `outbox_meta` in the same write transaction that took the lock, so a refused process
 * reads the live holder's record, not a previous one's.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as fs from "node:fs"
import * as os from "node:os"
import { StoreError } from "../DeliveryError.js"
import { isBusy, rollbackFailed, unprepared } from "./sqliteLocks.js"

/** The process that holds a file's gateway lock. */
export interface Holder {
  readonly pid: number
  readonly host: string
  /** when it took the lock, epoch millis */
  readonly since: number
}

const HolderJson = Schema.parseJson(Schema.Struct({ pid: Schema.Number, host: Schema.String, since: Schema.Number }))

/** The `outbox_meta` key of the holder's record. */
export const META_KEY = "gateway"

const lockError = (message: string, cause?: unknown) =>
  new StoreError({ operation: "lock", message, ...(cause === undefined ? {} : { cause }) })

const why = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

/** The lock file of an existing outbox file, named after its real path so that every name of the file finds one lock. */
export const lockPath = (filename: string): Effect.Effect<string, StoreError> =>
  Effect.try({
    try: () => `${fs.realpathSync(filename)}-gateway.lock`,
    catch: (cause) => lockError(`cannot find the gateway lock of ${filename}: ${why(cause)}`, cause)
  })

// Created here rather than by SQLite so that it gets 0600 like the outbox. Only when missing: closing a descriptor
// of a file drops every fcntl lock this process holds on it, including SQLite's.
const createLockFile = (path: string) =>
  Effect.try({
    try: () => {
      if (!fs.existsSync(path)) fs.closeSync(fs.openSync(path, fs.constants.O_CREAT | fs.constants.O_RDWR, 0o600))
    },
    catch: (cause) => lockError(`cannot create the gateway lock ${path}: ${why(cause)}`, cause)
  })

/** Takes `path`'s lock for the current scope; `false`, without waiting, if another connection holds it. */
const tryLock = (path: string): Effect.Effect<boolean, StoreError, Scope.Scope> =>
  Effect.gen(function*() {
    yield* createLockFile(path)
    const context = yield* Layer.build(SqliteClient.layer({ filename: path, disableWAL: true })).pipe(
      Effect.catchAllCause((cause) =>
        Effect.fail(lockError(`cannot open the gateway lock ${path}: ${why(Cause.squash(cause))}`, cause))
      )
    )
    const lock = Context.get(context, SqlClient.SqlClient)
    return yield* Effect.all([
      unprepared(lock`PRAGMA busy_timeout = 0`),
      // nothing is ever written, and a rollback journal would put a -journal file beside the lock while it is held
      unprepared(lock`PRAGMA journal_mode = MEMORY`),
      // EXCLUSIVE on a file nobody writes: the lock is the whole point, the file stays empty
      Effect.acquireRelease(
        unprepared(lock`BEGIN EXCLUSIVE`),
        // closing the lock's connection right after releases the lock whatever this answers
        () => Effect.catchAll(unprepared(lock`ROLLBACK`), rollbackFailed)
      )
    ]).pipe(
      // the caller runs inside the outbox's transaction, whose connection every SqlClient would otherwise use
      Effect.mapInputContext((context: Context.Context<Scope.Scope>) =>
        Context.omit(SqlClient.TransactionConnection)(context)
      ),
      Effect.as(true),
      Effect.catchIf(isBusy, () => Effect.succeed(false)),
      Effect.catchTag("SqlError", (e) =>
        Effect.fail(lockError(`cannot lock the gateway lock ${path}: ${why(e.cause)}`, e)))
    )
  })

const readHolder: Effect.Effect<Option.Option<Holder>, never, SqlClient.SqlClient> = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql<{ value: string }>`SELECT value FROM outbox_meta WHERE key = ${META_KEY}`.pipe(
      Effect.map((rows) => Option.flatMap(Option.fromNullable(rows[0]?.value), Schema.decodeUnknownOption(HolderJson))),
      Effect.orElseSucceed(() => Option.none<Holder>())
    )
)

/** What a refused process is told. */
const refusal = (filename: string, path: string, holder: Option.Option<Holder>) => {
  const who = Option.match(holder, {
    onNone: () => `a process that has not recorded itself holds ${path}`,
    onSome: (h) => `pid ${h.pid} on host ${h.host}, since ${new Date(h.since).toISOString()}`
  })
  return `outbox database ${filename} is in use by another gateway (${who}); one gateway may use a SQLite file: ` +
    `stop that one first, or open this file with exclusive: false in a process that only enqueues or administers it`
}

/**
 * Takes `filename`'s gateway lock until the current scope closes, or fails with a StoreError naming the live holder.
 * Run it under the outbox's write lock (`withWriteLock`) and `record` the holder in the same transaction, so a process
 * refused here reads a record its holder committed.
 */
export const take = (filename: string): Effect.Effect<Holder, StoreError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const path = yield* lockPath(filename)
    if (yield* tryLock(path)) return { pid: process.pid, host: os.hostname(), since: yield* Clock.currentTimeMillis }
    return yield* Effect.fail(lockError(refusal(filename, path, yield* readHolder)))
  })

/** Writes `holder` to `outbox_meta` (which the migrations create, so after them). */
export const record = (holder: Holder): Effect.Effect<void, StoreError, SqlClient.SqlClient> =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql`INSERT INTO outbox_meta (key, value) VALUES (${META_KEY}, ${Schema.encodeSync(HolderJson)(holder)})
        ON CONFLICT (key) DO UPDATE SET value = excluded.value`.pipe(
        Effect.asVoid,
        Effect.catchTag(
          "SqlError",
          (e) => Effect.fail(lockError(`cannot record the gateway holder: ${why(e.cause)}`, e))
        )
      )
  )

/** Whether a live process holds `filename`'s gateway lock; never waits, and leaves no lock or lock file behind. */
export const isHeld = (filename: string): Effect.Effect<boolean, StoreError> =>
  Effect.gen(function*() {
    if (!fs.existsSync(filename)) return false
    const path = yield* lockPath(filename)
    if (!fs.existsSync(path)) return false
    return !(yield* Effect.scoped(tryLock(path)))
  })
