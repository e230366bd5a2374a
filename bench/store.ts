/**
 * Store benchmark: the SQLite store on a file (WAL, synchronous NORMAL unless SYNC=FULL).
 * Run: npm run bench:store   (BIG=1000000 by default; BIG=200000 for a quicker run; compiled by tsc into bench/.build)
 * Prints JSON lines and a summary table; medians of repeated runs where stated.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import type { OutboxEntry } from "../src/Delivery.js"
import * as Machine from "../src/EntryStateMachine.js"
import { makeEntryIdGenerator } from "../src/internal/ids.js"
import { OutboxRepo, WriteOp } from "../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../src/SqliteOutboxRepo.js"

const SYNC = (process.env.SYNC ?? "NORMAL") as "NORMAL" | "FULL"
const BIG = Number(process.env.BIG ?? 1_000_000)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-bench-"))
let files = 0

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const withStore = <A, E>(body: Effect.Effect<A, E, OutboxRepo>) =>
  Effect.provide(
    body,
    SqliteOutboxRepo.layerFile({ filename: path.join(dir, `bench-${++files}.db`), synchronous: SYNC }).pipe(Layer.orDie)
  )

const makeEntries = (n: number, conversations: number, now: number) =>
  Effect.gen(function*() {
    const nextId = yield* makeEntryIdGenerator
    const out: Array<OutboxEntry> = []
    for (let i = 0; i < n; i++) {
      out.push({
        id: yield* nextId.next,
        channel: "slack",
        to: `C${i % conversations}`,
        payloads: [{ text: `reply number ${i}: the quick brown fox jumps over the lazy dog` }],
        kind: "final",
        bestEffort: false,
        state: "queued",
        attemptCount: 0,
        partsDelivered: 0,
        enqueuedAt: now,
        nextAttemptAt: now,
        lastAttemptAt: null,
        deliveredAt: null,
        expiresAt: now + 30 * 60_000,
        lastError: null,
        terminalReason: null,
        leaseOwner: null,
        leaseExpiresAt: null,
        updatedAt: now
      })
    }
    return out
  })

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const t0 = performance.now()
    const result = yield* effect
    return [performance.now() - t0, result] as const
  })

/** The journal's write spec of a transition on a claimed row (as the delivery program makes it). */
const specOf = (entry: OutboxEntry, event: Machine.EntryEvent, now: number) =>
  Either.getOrThrow(Machine.writeSpec(entry, event, now))

const chunk = <A>(xs: ReadonlyArray<A>, n: number) =>
  Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n))

const insertRate = (n: number, batch: number) =>
  withStore(Effect.gen(function*() {
    const repo = yield* OutboxRepo
    const entries = yield* makeEntries(n, 1000, 0)
    const [ms] = yield* timed(Effect.forEach(chunk(entries, batch), (b) => repo.insert(b), { discard: true }))
    return (n / ms) * 1000
  }))

const claimAckRate = (n: number, batch: number) =>
  withStore(Effect.gen(function*() {
    const repo = yield* OutboxRepo
    // as many conversations as rows: every row is claimable at once
    yield* Effect.forEach(chunk(yield* makeEntries(n, n, 0), 500), (b) => repo.insert(b), { discard: true })
    let done = 0
    const [ms] = yield* timed(Effect.gen(function*() {
      while (done < n) {
        const { claimed } = yield* repo.claim({ owner: "bench/1", now: 1, leaseMs: 300_000, limit: batch })
        if (claimed.length === 0) break
        yield* repo.write(claimed.map((c) =>
          WriteOp.Update({ spec: specOf(c.entry, Machine.EntryEvent.Ack({ owner: "bench/1", partsDelivered: 1 }), 2) })
        ))
        done += claimed.length
      }
    }))
    if (done !== n) {
      throw new Error(`claimed ${done} of ${n}`)
    }
    return (n / ms) * 1000
  }))

/** Median time of one claim of 100 rows (followed by a release, not timed) in a table of `total` rows, `pending` of them pending. */
const claimTime = (total: number, pending: number) =>
  withStore(Effect.gen(function*() {
    const repo = yield* OutboxRepo
    const entries = yield* makeEntries(total, 10_000, 0)
    const done = entries.slice(0, total - pending).map((e) => ({
      ...e,
      state: "delivered" as const,
      nextAttemptAt: null,
      deliveredAt: 1,
      partsDelivered: 1
    }))
    const waiting = entries.slice(total - pending)
    yield* Effect.forEach(chunk([...done, ...waiting], 1000), (b) => repo.insert(b), { discard: true })
    const samples: Array<number> = []
    for (let i = 0; i < 60; i++) {
      const [ms, batch] = yield* timed(repo.claim({ owner: "bench/1", now: 10 + i, leaseMs: 300_000, limit: 100 }))
      if (batch.claimed.length !== Math.min(100, pending)) throw new Error(`claimed ${batch.claimed.length}`)
      yield* repo.write(batch.claimed.map((c) =>
        WriteOp.Update({ spec: specOf(c.entry, Machine.EntryEvent.Release({ owner: "bench/1" }), 10 + i) })
      ))
      if (i >= 10) {
        samples.push(ms) // first rounds warm the page cache and statement cache
      }
    }
    return median(samples)
  }))

const main = Effect.gen(function*() {
  const results: Record<string, number> = {}
  const record = (name: string, value: number) => {
    results[name] = value
    console.log(JSON.stringify({ name, value: Number(value.toFixed(3)), sync: SYNC }))
  }
  record(
    "insert msgs/s, one per transaction",
    median([yield* insertRate(5_000, 1), yield* insertRate(5_000, 1), yield* insertRate(5_000, 1)])
  )
  record(
    "insert msgs/s, batches of 100",
    median([yield* insertRate(50_000, 100), yield* insertRate(50_000, 100), yield* insertRate(50_000, 100)])
  )
  record(
    "claim+ack msgs/s, one per transaction",
    median([yield* claimAckRate(5_000, 1), yield* claimAckRate(5_000, 1), yield* claimAckRate(5_000, 1)])
  )
  record(
    "claim+ack msgs/s, batches of 100",
    median([yield* claimAckRate(50_000, 100), yield* claimAckRate(50_000, 100), yield* claimAckRate(50_000, 100)])
  )
  const small = yield* claimTime(1_000, 1_000)
  record("claim ms (100 rows), table of 1,000 pending", small)
  const bigAllPending = yield* claimTime(BIG, BIG)
  record(`claim ms (100 rows), table of ${BIG} pending`, bigAllPending)
  const bigMostlyDone = yield* claimTime(BIG, 1_000)
  record(`claim ms (100 rows), table of ${BIG} rows, 1,000 pending`, bigMostlyDone)
  record(`claim ratio ${BIG} pending / 1,000`, bigAllPending / small)
  record(`claim ratio ${BIG} rows (1,000 pending) / 1,000`, bigMostlyDone / small)
  fs.rmSync(dir, { recursive: true, force: true })
})

Effect.runPromise(main).catch((e) => {
  console.error(e)
  process.exit(1)
})
