/**
 * How the CLI opens an outbox database. Read-only commands never create a file: a missing path is
 * `DatabaseMissing`, and the file is opened `query_only` so no migration can write to it (and no -wal/-shm files
 * are left beside it). Writing commands refuse a
 * file that holds something other than an outbox before `SqliteOutboxRepo.layerFile` would migrate it.
 */
import * as FileSystem from "@effect/platform/FileSystem"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChannelRegistry from "../ChannelRegistry.js"
import { StoreError } from "../DeliveryError.js"
import * as Outbox from "../Outbox.js"
import * as OutboxConfig from "../OutboxConfig.js"
import { OutboxRepo } from "../OutboxRepo.js"
import * as SqliteOutboxRepo from "../SqliteOutboxRepo.js"

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

/** The store of an existing outbox file, opened read-only; `DatabaseMissing` if there is no file. */
export const readOnly = (
  path: string
): Layer.Layer<OutboxRepo, DatabaseMissing | NotAnOutbox | StoreError, FileSystem.FileSystem> =>
  Layer.unwrapEffect(
    Effect.gen(function*() {
      const state = yield* fileState(path)
      if (state === "missing") return yield* Effect.fail(new DatabaseMissing({ path }))
      if (state === "empty") return yield* Effect.fail(new NotAnOutbox({ path, reason: "the file is empty" }))
      return readOnlyStore(path)
    })
  )

/**
 * The store of an outbox file for writing (migrated by `layerFile`). With `create`, a missing file becomes a new
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
