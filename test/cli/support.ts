/**
 * Runs the CLI the way a user does: `node bin/effect-outbox.js …` (the file package.json's `bin` points at, which runs
 * the build in `dist/`) in a child process, and seeds outbox databases through the library for it to read.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { AdapterV2 } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import type { EntryId } from "../../src/Delivery.js"
import { SendError } from "../../src/DeliveryError.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url))

/** The launcher the package's `bin` runs: it runs the compiled `dist/`, which `npm test` builds first. */
export const BIN = path.join(ROOT, "bin", "effect-outbox.js")

/** The newest modification time of the .ts files under `dir`. */
const newestSource = (dir: string): number =>
  fs.readdirSync(dir, { withFileTypes: true }).reduce((newest, entry) => {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) return Math.max(newest, newestSource(full))
    return entry.name.endsWith(".ts") ? Math.max(newest, fs.statSync(full).mtimeMs) : newest
  }, 0)

// the bin never falls back to the source, so a test run on an old build would test old code: refuse it instead
const builtAt = fs.statSync(path.join(ROOT, "dist", "cli", "main.js"), { throwIfNoEntry: false })?.mtimeMs
if (builtAt === undefined || builtAt < newestSource(path.join(ROOT, "src"))) {
  throw new Error("dist/ is missing or older than src/: run `npm run build` (npm test does) before the CLI tests")
}

/** What a CLI run printed and how it exited. */
export interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `node …args` in `cwd` (default: the repository); `env` is added to this process's environment. */
export const node = (
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly env?: Record<string, string> } = {}
) =>
  new Promise<Run>((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code) => resolve({ code, stdout, stderr }))
  })

/** Runs `effect-outbox …args` in `cwd`; `env` is added to this process's environment. */
export const cli = (
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly env?: Record<string, string> } = {}
) => node([BIN, ...args], options)

/** A fresh temporary directory, removed by `cleanup`. */
export const tempDir = (prefix: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  return {
    dir,
    file: (name: string) => path.join(dir, name),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true })
  }
}

const v2 = (sendFinal: AdapterV2["sendFinal"]): AdapterV2 => ({ outboundContract: "v2", sendFinal })

/** The channels seeded rows go through: one that works, one that rejects for good, one that is down. */
const adapters: Record<string, AdapterV2> = {
  healthy: v2((ctx) => Effect.succeed({ messageId: `ok-${ctx.entryId}` })),
  broken: v2(() =>
    Effect.fail(new SendError({ message: "400 Bad Request: chat not found", retryable: false, status: 400 }))
  ),
  down: v2(() => Effect.fail(new SendError({ message: "HTTP 503 Service Unavailable", retryable: true, status: 503 })))
}

/** The ids of a seeded database, by what happened to them. */
export interface Seeded {
  readonly delivered: ReadonlyArray<EntryId>
  readonly failedTerminal: ReadonlyArray<EntryId>
  readonly failedRetryable: ReadonlyArray<EntryId>
  readonly queued: ReadonlyArray<EntryId>
  readonly expired: ReadonlyArray<EntryId>
}

/**
 * Creates an outbox file through the library (real clock): 3 delivered and 1 queued on `healthy`, 2 failed_terminal
 * on `broken`, 1 failed_retryable on `down`, 1 expired on `healthy`. No worker runs, so nothing moves afterwards.
 */
export const seed = (filename: string): Promise<Seeded> => seedStore(SqliteOutboxRepo.layerFile({ filename }))

/** `seed` into any store (a PostgreSQL schema, say). */
export const seedStore = <E>(store: Layer.Layer<OutboxRepo, E>): Promise<Seeded> =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const repo = yield* OutboxRepo
    const deliver = (channel: string, to: string, text: string) =>
      outbox.deliver({ channel, to, payloads: [{ text }] }).pipe(
        Effect.map((o) => o.entryId),
        Effect.catchTags({ SendFailed: (e) => Effect.succeed(e.entryId as EntryId) })
      )
    // stored first, so it is the only row a worker would find past its TTL 31 minutes from now (as a worker does
    // once the row is past its TTL of 30 min by default)
    const stale = yield* outbox.enqueue({ channel: "healthy", to: "heidi", payloads: [{ text: "too old" }] })
    const expired = yield* repo.expire((yield* Clock.currentTimeMillis) + 31 * 60_000, { limit: 1 })
    if (expired.length !== 1 || expired[0] !== stale) {
      throw new Error(`seed: expected ${stale} to expire, got ${expired.join(", ")}`)
    }
    const delivered = [
      yield* deliver("healthy", "alice", "hello alice"),
      yield* deliver("healthy", "bob", "hello bob"),
      yield* deliver("healthy", "carol", "hello carol")
    ]
    const failedTerminal = [
      yield* deliver("broken", "dave", "never arrives"),
      yield* deliver("broken", "erin", "nor this")
    ]
    const failedRetryable = [yield* deliver("down", "frank", "later")]
    const queued = [yield* outbox.enqueue({ channel: "healthy", to: "grace", payloads: [{ text: "for the worker" }] })]
    return { delivered, failedTerminal, failedRetryable, queued, expired }
  }).pipe(
    Effect.provide(
      Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
        store,
        ChannelRegistry.layer(adapters),
        OutboxConfig.layer({ retryJitter: false, nodeId: "seeder" })
      )))
    ),
    // the failures are the point of the seed; the library's warnings about them would only clutter the test output
    Logger.withMinimumLogLevel(LogLevel.Error),
    Effect.runPromise
  )

/** Creates an outbox file holding `count` queued replies (on `healthy`, 100 chats), enqueued through the library. */
export const seedQueued = (filename: string, count: number): Promise<void> =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => outbox.enqueue({ channel: "healthy", to: `chat-${i % 100}`, payloads: [{ text: `reply ${i}` }] }),
      { concurrency: 64, discard: true }
    )
  }).pipe(
    Effect.provide(
      Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
        SqliteOutboxRepo.layerFile({ filename }),
        ChannelRegistry.layer(adapters),
        OutboxConfig.layer({ nodeId: "seeder" })
      )))
    ),
    Effect.runPromise
  )

/** Parses a run's stdout as JSON (the run must have succeeded). */
export const stdoutJson = <A = unknown>(run: Run): A => JSON.parse(run.stdout) as A

/** Reads a database through the library (in process: cheaper than another CLI run). */
export const inspect = (filename: string) => inspectStore(SqliteOutboxRepo.layerFile({ filename }))

/** `inspect` of any store. */
export const inspectStore = <E>(store: Layer.Layer<OutboxRepo, E>) =>
  Effect.gen(function*() {
    const repo = yield* OutboxRepo
    const now = yield* Clock.currentTimeMillis
    return { stats: yield* repo.stats(now), entries: yield* repo.list({ limit: 10_000 }) }
  }).pipe(Effect.provide(store), Effect.runPromise)
