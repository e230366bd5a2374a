/**
 * The embedded default store: `outbox_entries` in a SQLite file (WAL). `layer` needs a `SqlClient` from the
 * gateway; `layerFile` builds one with the pragmas this store relies on. The statements are in internal/sqliteWrites,
 * sqliteClaims, sqliteReads and sqliteMaintenance; this module puts them together and opens the file.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { StoreError } from "./DeliveryError.js"
import * as GatewayLock from "./internal/gatewayLock.js"
import * as Claims from "./internal/sqliteClaims.js"
import { makeContext } from "./internal/sqliteContext.js"
import type { FileOptions } from "./internal/sqliteFile.js"
import { checkpointPages, configureConnection, createPrivateFile } from "./internal/sqliteFile.js"
import { withWriteLock } from "./internal/sqliteLocks.js"
import * as Maintenance from "./internal/sqliteMaintenance.js"
import * as Reads from "./internal/sqliteReads.js"
import { migrate, storeError } from "./internal/sqliteSchema.js"
import * as Writes from "./internal/sqliteWrites.js"
import type { OutboxRepoShape } from "./OutboxRepo.js"
import { OutboxRepo } from "./OutboxRepo.js"

export { configureConnection, DEFAULT_WAL_AUTOCHECKPOINT_PAGES } from "./internal/sqliteFile.js"
export type { FileOptions } from "./internal/sqliteFile.js"
export { migrate, migrations } from "./internal/sqliteSchema.js"

/** Builds the store over the `SqlClient` in context (the schema must be migrated). */
export const make: Effect.Effect<OutboxRepoShape, never, SqlClient.SqlClient> = Effect.gen(function*() {
  const ctx = makeContext(yield* SqlClient.SqlClient)
  const repo: OutboxRepoShape = {
    insert: Writes.insert(ctx),
    write: Writes.write(ctx),
    claim: Claims.claim(ctx),
    reclaimPreviousBoots: Claims.reclaimPreviousBoots(ctx),
    heartbeat: Claims.heartbeat,
    expire: Maintenance.expire(ctx),
    prune: Maintenance.prune(ctx),
    get: Reads.get(ctx),
    list: Reads.list(ctx),
    stats: Reads.stats(ctx),
    activity: Reads.activity(ctx),
    requeue: Maintenance.requeue(ctx),
    pendingCount: Reads.pendingCount(ctx),
    getMeta: Reads.getMeta(ctx),
    setMeta: Maintenance.setMeta(ctx),
    quarantine: Maintenance.quarantine(ctx)
  }
  return repo
})

/**
 * The store over a gateway-provided `SqlClient`; migrates on construction. It takes no gateway lock (`layerFile`'s
 * `exclusive`): keeping to one gateway per file is then up to the gateway.
 */
export const layer: Layer.Layer<OutboxRepo, StoreError, SqlClient.SqlClient> = Layer.effect(
  OutboxRepo,
  Effect.zipRight(migrate, make)
)

/**
 * A SQLite file with WAL, explicit `synchronous` (NORMAL default), busy_timeout 5 s, a checkpoint every 10,000 WAL pages
 * and mode 0600; migrated, and held as this process's gateway unless `exclusive: false`.
 */
export const layerFile = (options: FileOptions): Layer.Layer<OutboxRepo | SqlClient.SqlClient, StoreError> => {
  // WAL is switched on by configureConnection, once busy_timeout is set
  const client = SqliteClient.layer({ filename: options.filename, disableWAL: true }).pipe(
    Layer.catchAllCause((cause) => {
      const reason = Cause.squash(cause)
      // the driver's reason ("file is not a database", SQLITE_CANTOPEN…) belongs in the message a log line shows
      const why = reason instanceof Error ? reason.message : String(reason)
      return Layer.fail(
        new StoreError({ operation: "open", message: `cannot open outbox database ${options.filename}: ${why}`, cause })
      )
    })
  )
  const cannotOpen = (e: StoreError) =>
    new StoreError({
      operation: "open",
      message: `cannot open outbox database ${options.filename}: ${e.message}`,
      cause: e
    })
  // the file is first read here (a file that is not a database fails here)
  const configured = Effect.mapError(configureConnection(options), cannotOpen)
  const ready = Layer.effectDiscard(configured).pipe(Layer.provideMerge(client))
  const opened = Effect.zipRight(checkpointPages(options), createPrivateFile(options.filename))
  const exclusive = options.exclusive !== false && options.filename !== ":memory:"
  // the lock is taken, the schema migrated and the holder recorded in one write transaction (see GatewayLock.take)
  const started = withWriteLock(Effect.gen(function*() {
    const holder = exclusive ? yield* GatewayLock.take(options.filename) : undefined
    yield* migrate
    if (holder !== undefined) yield* GatewayLock.record(holder)
  })).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(cannotOpen(storeError("open")(e)))))
  const store = Layer.scoped(OutboxRepo, Effect.zipRight(started, make))
  return Layer.unwrapEffect(Effect.as(opened, store.pipe(Layer.provideMerge(ready))))
}
