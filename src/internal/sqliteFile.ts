/**
 * Opening the SQLite file for the store: the file created private before the driver touches it, and the pragmas
 * this store relies on set on the connection (busy_timeout, synchronous, WAL and its checkpoint size).
 * `FileOptions`, its default and `configureConnection` are public through `SqliteOutboxRepo`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { StoreError } from "../DeliveryError.js"
import { enableWal } from "./sqliteLocks.js"
import { storeError } from "./sqliteSchema.js"

/** Options of `layerFile`. */
export interface FileOptions {
  readonly filename: string
  /** set on every open; NORMAL is durable across process crashes in WAL mode, FULL also across power loss */
  readonly synchronous?: "NORMAL" | "FULL" | undefined
  readonly busyTimeoutMs?: number | undefined
  /**
   * pages the WAL may hold before a commit copies it into the database (SQLite's `wal_autocheckpoint`); 10,000 by
   * default (the `-wal` file reaches about 44 MB under load), against SQLite's own 1,000
   */
  readonly walAutocheckpointPages?: number | undefined
  /**
   * Whether this process is the file's one gateway (default true): it holds an exclusive lock on
   * `<filename>-gateway.lock` while the layer is open, and a second gateway on the file fails at start with a
   * `StoreError` (operation "lock") naming the holder's pid, host and start. The operating system drops the lock when
   * the process ends, however it ends. `false` takes no lock: for a process that only enqueues or administers the file
   * beside a running gateway (it must not `deliver` or run the worker). A gateway that provides its own `SqlClient`
   * through `layer` takes no lock either.
   */
  readonly exclusive?: boolean | undefined
}

/** The WAL size that triggers a checkpoint, in pages, when `walAutocheckpointPages` is not given. */
export const DEFAULT_WAL_AUTOCHECKPOINT_PAGES = 10_000

// better-sqlite3 would create the file with the process umask; an outbox holds user messages, so 0600
export const createPrivateFile = (filename: string) =>
  Effect.try({
    try: () => {
      if (filename === ":memory:") return
      const stat = fs.statSync(filename, { throwIfNoEntry: false })
      if (stat?.isDirectory()) throw new Error(`${filename} is a directory`)
      if (stat === undefined) fs.closeSync(fs.openSync(filename, fs.constants.O_CREAT | fs.constants.O_RDWR, 0o600))
      fs.accessSync(filename, fs.constants.R_OK | fs.constants.W_OK)
      fs.accessSync(path.dirname(path.resolve(filename)), fs.constants.W_OK) // WAL needs -wal/-shm beside it
    },
    catch: (cause) =>
      new StoreError({
        operation: "open",
        message: `cannot open outbox database ${filename}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
  })

/** `walAutocheckpointPages` or its default; anything but a whole number ≥ 1 is refused before the file is touched. */
export const checkpointPages = (options: Omit<FileOptions, "filename">): Effect.Effect<number, StoreError> => {
  const pages = options.walAutocheckpointPages ?? DEFAULT_WAL_AUTOCHECKPOINT_PAGES
  // 0 would turn automatic checkpoints off and let the WAL grow without bound
  return Number.isSafeInteger(pages) && pages >= 1 ? Effect.succeed(pages) : Effect.fail(
    new StoreError({
      operation: "open",
      message: `walAutocheckpointPages must be a whole number of pages ≥ 1, got ${pages}`
    })
  )
}

/** Sets the pragmas this store relies on, on the client's connection. */
export const configureConnection = (options: Omit<FileOptions, "filename">) =>
  Effect.gen(function*() {
    const pages = yield* checkpointPages(options)
    const sql = yield* SqlClient.SqlClient
    const busyTimeoutMs = Math.trunc(options.busyTimeoutMs ?? 5000)
    yield* sql.unsafe(`PRAGMA synchronous = ${options.synchronous ?? "NORMAL"}`)
    // before anything reads the file, the WAL switch included
    yield* sql.unsafe(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
    // Fewer, larger checkpoints: an index page that many batches dirty is copied and synced once per 10,000 WAL pages
    // rather than once per 1,000. The worker drain gained about 7 % (median of 16 interleaved pairs; BENCHMARKS.md)
    yield* sql.unsafe(`PRAGMA wal_autocheckpoint = ${pages}`)
    const mode = yield* enableWal(busyTimeoutMs)
    if (mode !== "wal" && mode !== "memory") {
      return yield* Effect.fail(new StoreError({ operation: "open", message: `journal_mode is ${mode}, not wal` }))
    }
  }).pipe(Effect.catchTag("SqlError", (e) => Effect.fail(storeError("open")(e))))
