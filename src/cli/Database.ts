/**
 * How the CLI opens an outbox database: an SQLite file, or PostgreSQL when `--db` (or `OUTBOX_DB`) is a
 * `postgres://` URL (its tables in the connection's `search_path`, e.g. `?options=-c%20search_path%3Doutbox`).
 *
 * SQLite: read-only commands never create a file: a missing path is `DatabaseMissing`, and the file is opened
 * `query_only` so no migration can write to it (and no -wal/-shm files are left beside it). Writing commands refuse a
 * file that holds something other than an outbox before `SqliteOutboxRepo.layerFile` would migrate it.
 *
 * PostgreSQL: every command but `import-legacy` refuses a schema without the outbox's tables (`NotAnOutbox`) and so
 * creates nothing; read-only commands run no migration and make no write. An admin command is not a gateway: it
 * neither heartbeats nor listens for wake-ups, and holds no lease. A URL is only ever printed with its password
 * masked (`display`).
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as PgClient from "@effect/sql-pg/PgClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as ChannelRegistry from "../ChannelRegistry.js"
import { StoreError } from "../DeliveryError.js"
import * as Outbox from "../Outbox.js"
import * as OutboxConfig from "../OutboxConfig.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import { OutboxRepo } from "../OutboxRepo.js"
import * as PgOutboxRepo from "../PgOutboxRepo.js"
import * as SqliteOutboxRepo from "../SqliteOutboxRepo.js"
import { DEFAULT_DB } from "./Help.js"

/** Whether `db` names a PostgreSQL database (a `postgres://` or `postgresql://` URL) rather than an SQLite file. */
export const isPostgresUrl = (db: string): boolean => /^postgres(ql)?:\/\//i.test(db)

/** `db` as it may be printed: a URL with its password replaced by `***` (a path as it is). */
export const display = (db: string): string => {
  if (!isPostgresUrl(db)) return db
  try {
    const url = new URL(db)
    if (url.password !== "") url.password = "***"
    return url.toString()
  } catch {
    return db.replace(/\/\/([^:/@]*):[^@/]*@/, "//$1:***@")
  }
}

/** The database a command works on: `--db`, else `OUTBOX_DB`, else `./outbox.db`. */
export const location = (db: Option.Option<string>) =>
  Option.match(db, {
    onSome: Effect.succeed,
    onNone: () =>
      Config.string("OUTBOX_DB").pipe(
        Config.withDefault(""),
        Effect.map((fromEnv) => (fromEnv.trim() === "" ? DEFAULT_DB : fromEnv))
      )
  })

/** No file at the path; nothing was created. */
export class DatabaseMissing extends Data.TaggedError("DatabaseMissing")<{ readonly path: string }> {
  override get message() {
    return `no outbox database at ${this.path}`
  }
}

/** The file exists but is not an effect-outbox database (another SQLite file, or not SQLite at all). */
export class NotAnOutbox extends Data.TaggedError("NotAnOutbox")<{ readonly path: string; readonly reason: string }> {
  override get message() {
    return `${this.path} is not an effect-outbox database (${this.reason})`
  }
}

const describe = (cause: unknown): string => {
  const inner = (cause as { cause?: unknown } | null)?.cause
  if (inner instanceof Error) return inner.message
  return cause instanceof Error ? cause.message : String(cause)
}

const fileState = (path: string) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    if (!(yield* fs.exists(path))) return "missing" as const
    const info = yield* fs.stat(path)
    if (info.type !== "File") {
      return yield* Effect.fail(new NotAnOutbox({ path, reason: `it is a ${info.type.toLowerCase()}` }))
    }
    return info.size === BigInt(0) ? ("empty" as const) : ("present" as const)
  }).pipe(
    Effect.catchTag("SystemError", "BadArgument", (e) =>
      Effect.fail(new StoreError({ operation: "open", message: `cannot read ${path}: ${e.message}`, cause: e })))
  )

/** The marker the store's first migration writes; a file without it was not created by effect-outbox. */
const checkSchema = (path: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ value: string }>`SELECT value FROM outbox_meta WHERE key = 'schema'`.pipe(
      Effect.mapError((e) => new NotAnOutbox({ path, reason: describe(e) }))
    )
    if (rows[0]?.value !== "effect-outbox") {
      return yield* Effect.fail(new NotAnOutbox({ path, reason: "outbox_meta has no effect-outbox schema marker" }))
    }
  })

/**
 * A connection to an existing outbox file that cannot write: nothing is migrated or created. It is opened for
 * writing but set `query_only`, so SQLite refuses any write on it, while closing it as the file's last connection
 * still checkpoints and removes the -wal/-shm files its reads created (a read-only connection leaves them behind).
 */
const readOnlyStore = (path: string): Layer.Layer<OutboxRepo, NotAnOutbox | StoreError> => {
  // disableWAL: the file is already in WAL mode (it is persistent); setting it would be a write
  const client = SqliteClient.layer({ filename: path, disableWAL: true }).pipe(
    Layer.tap((context) => Effect.asVoid(Context.get(context, SqlClient.SqlClient)`PRAGMA query_only = ON`)),
    Layer.catchAllCause((cause) =>
      Layer.fail(new StoreError({ operation: "open", message: `cannot open outbox database ${path}`, cause }))
    )
  )
  const checked = Layer.effectDiscard(checkSchema(path)).pipe(Layer.provideMerge(client))
  return Layer.effect(OutboxRepo, SqliteOutboxRepo.make).pipe(Layer.provide(checked))
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL

/** The CLI's pool: small, and a connection attempt that gives up after 10 s rather than hanging a terminal. */
const pgClient = (url: string) =>
  PgClient.layer({
    url: Redacted.make(url),
    applicationName: "effect-outbox-cli",
    maxConnections: 2,
    connectTimeout: "10 seconds"
  }).pipe(
    Layer.catchAllCause((cause) =>
      Layer.fail(
        new StoreError({
          operation: "open",
          message: `cannot connect to ${display(url)}: ${describe(Cause.squash(cause))}`,
          cause
        })
      )
    )
  )

/** Whether the connection's schema holds an outbox (its marker row), checked before anything else touches it. */
const checkPgSchema = (url: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [where] = yield* sql<{ schema: string | null; present: boolean }>`
      SELECT current_schema() AS schema, to_regclass('outbox_meta') IS NOT NULL AS present`.pipe(
      Effect.mapError((e) =>
        new StoreError({ operation: "open", message: `cannot read ${display(url)}: ${describe(e)}`, cause: e })
      )
    )
    if (where?.schema === null || where?.schema === undefined) {
      return yield* Effect.fail(
        new NotAnOutbox({ path: display(url), reason: "no schema of the connection's search_path exists" })
      )
    }
    if (!where.present) {
      return yield* Effect.fail(
        new NotAnOutbox({ path: display(url), reason: `schema ${where.schema} has no outbox tables` })
      )
    }
    yield* checkSchema(display(url))
  })

/**
 * An admin process is no gateway: it holds no lease and sends nothing, so it neither heartbeats, listens for wake-ups
 * nor takes part in the shared rate limits (whose pause notifications it would listen for).
 */
const adminStore = (repo: OutboxRepoShape): OutboxRepoShape => ({
  ...repo,
  heartbeatEveryMs: undefined,
  wakeups: undefined,
  rateBuckets: undefined
})

/**
 * The outbox in PostgreSQL at `url`. Read-only: checked, never migrated. For writing: checked, then migrated to
 * this version (a no-op on a current schema); with `create`, a schema without the outbox's tables gets them.
 */
const pgStore = (
  url: string,
  options: { readonly write: boolean; readonly create: boolean }
): Layer.Layer<OutboxRepo, NotAnOutbox | StoreError> => {
  const client = pgClient(url)
  const ready = options.create
    ? PgOutboxRepo.migrate
    : Effect.zipRight(checkPgSchema(url), options.write ? PgOutboxRepo.migrate : Effect.void)
  return Layer.effect(OutboxRepo, Effect.zipRight(ready, Effect.map(PgOutboxRepo.make(), adminStore))).pipe(
    Layer.provide(client)
  )
}

// ---------------------------------------------------------------------------------------------------------------
// SQLite (or PostgreSQL for a URL)

/** The store of an existing outbox, opened read-only; `DatabaseMissing` if there is no file. */
export const readOnly = (
  path: string
): Layer.Layer<OutboxRepo, DatabaseMissing | NotAnOutbox | StoreError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      if (isPostgresUrl(path)) return pgStore(path, { write: false, create: false })
      const state = yield* fileState(path)
      if (state === "missing") return yield* Effect.fail(new DatabaseMissing({ path }))
      if (state === "empty") return yield* Effect.fail(new NotAnOutbox({ path, reason: "the file is empty" }))
      return readOnlyStore(path)
    })
  )

/**
 * The store of an outbox for writing (a file migrated by `layerFile`; PostgreSQL: see the module doc). With `create`, a missing file becomes a new
 * outbox; without it a missing file is `DatabaseMissing`. An existing empty file becomes one with `empty` (by
 * default, `create`), else it is `NotAnOutbox`. A file holding anything else is never touched.
 * Admin commands run beside a live gateway, so this takes no gateway lock.
 */
export const readWrite = (
  path: string,
  options: { readonly create: boolean; readonly empty?: boolean }
): Layer.Layer<OutboxRepo, DatabaseMissing | NotAnOutbox | StoreError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      if (isPostgresUrl(path)) return pgStore(path, { write: true, create: options.create })
      const state = yield* fileState(path)
      if (state === "missing" && !options.create) return yield* Effect.fail(new DatabaseMissing({ path }))
      if (state === "empty" && !(options.empty ?? options.create)) {
        return yield* Effect.fail(new NotAnOutbox({ path, reason: "the file is empty" }))
      }
      // checked through a read-only connection first, so a foreign database is refused before any migration runs
      if (state === "present") yield* Effect.scoped(Layer.build(readOnlyStore(path)))
      return SqliteOutboxRepo.layerFile({ filename: path, exclusive: false })
    })
  )

/**
 * The outbox facade over a store, for admin commands: no channels are registered (admin commands send nothing) and
 * the configuration comes from `OUTBOX_*` variables, so retention and TTL match the gateway's.
 */
export const admin = <E, R>(
  store: Layer.Layer<OutboxRepo, E, R>
): Layer.Layer<Outbox.Outbox | OutboxRepo | OutboxConfig.OutboxConfig, E | OutboxConfigError, R> =>
  Outbox.layer.pipe(
    Layer.provideMerge(Layer.mergeAll(store, ChannelRegistry.layer({}).pipe(Layer.orDie), OutboxConfig.layerFromEnv))
  )

/** A configuration error from `OUTBOX_*` variables. */
export type OutboxConfigError = Layer.Layer.Error<typeof OutboxConfig.layerFromEnv>
