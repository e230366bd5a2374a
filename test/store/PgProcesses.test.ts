/**
 * PostgreSQL shared by several processes: each "process" is its own `PgClient` pool on one schema. Concurrent claimers
 * and live inserts over interleaved conversations never hold two leases in one conversation and keep enqueue order;
 * the two races the conversation lock closes (a row committed late with a lower sequence, a live insert not yet
 * committed), replayed deterministically, give no second lease; migrations run safely when processes start together; a live replica's leases survive another boot's reclaim;
 * a write on one process wakes a listener on another.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as crypto from "node:crypto"
import { performance } from "node:perf_hooks"
import type { EntryId, OutboxEntry } from "../../src/Delivery.js"
import * as Machine from "../../src/EntryStateMachine.js"
import type { OutboxRepoShape } from "../../src/OutboxRepo.js"
import { OutboxRepo, WriteOp } from "../../src/OutboxRepo.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import { queuedEntry } from "../support/entries.js"
import { freshSchema, urlFor } from "../support/pg.js"

const LEASE = 60_000

interface Process {
  readonly repo: OutboxRepoShape
  readonly client: PgClient.PgClient
}

/** `count` processes on one fresh schema, started (and so migrated) at the same time. */
const processes = (count: number) =>
  Effect.gen(function*() {
    const schema = freshSchema()
    yield* Layer.build(schema.layer)
    return yield* Effect.all(
      Array.from({ length: count }, () =>
        Effect.map(
          Layer.build(PgOutboxRepo.layerUrl(urlFor(schema.name), { client: { maxConnections: 4 } })),
          (ctx): Process => ({ repo: Context.get(ctx, OutboxRepo), client: Context.get(ctx, PgClient.PgClient) })
        )),
      { concurrency: "unbounded" }
    )
  })

const ack = (repo: OutboxRepoShape, entry: OutboxEntry, owner: string, now: number) =>
  Effect.flatMap(
    Effect.orDie(Machine.writeSpec(entry, Machine.EntryEvent.Ack({ owner, partsDelivered: 1 }), now)),
    (spec) => repo.write([WriteOp.Update({ spec })])
  )

const randomId = () => crypto.randomBytes(8).toString("hex") as EntryId
const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(Math.random() * items.length)]!
const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

/** Claimers and senders over `procs`, recording every lease's hold per conversation. */
const harness = (procs: ReadonlyArray<Process>, total: number) => {
  const leased = new Map<string, Array<string>>()
  const held = new Map<string, string>()
  const violations: Array<string> = []
  const claimMs: Array<number> = []
  const state = { delivered: 0 }

  // the recorded hold lies inside the real lease (from after the lease commits to before the ack does), so
  // two recorded holds of one conversation that overlap prove two real leases at once
  const hold = (conversation: string, id: string) => {
    const other = held.get(conversation)
    if (other !== undefined) violations.push(`${conversation}: ${id} leased while ${other} was`)
    held.set(conversation, id)
    const order = leased.get(conversation) ?? []
    if (!order.includes(id)) order.push(id)
    leased.set(conversation, order)
  }
  const send = (proc: Process, entry: OutboxEntry, owner: string) =>
    Effect.gen(function*() {
      const conversation = `${entry.channel}\u0000${entry.to}`
      hold(conversation, entry.id)
      yield* Effect.sleep(Duration.millis(Math.random() * 3))
      held.delete(conversation)
      const [result] = yield* ack(proc.repo, entry, owner, Date.now())
      expect(result?._tag).toBe("Updated")
      state.delivered++
    })
  const claimer = (proc: Process, name: string) =>
    Effect.gen(function*() {
      while (state.delivered < total) {
        const started = performance.now()
        const batch = yield* proc.repo.claim({ owner: name, now: Date.now(), leaseMs: LEASE, limit: 4 })
        claimMs.push(performance.now() - started)
        expect(batch.malformed).toEqual([])
        if (batch.claimed.length === 0) yield* Effect.sleep(Duration.millis(2))
        yield* Effect.forEach(batch.claimed, ({ entry }) => send(proc, entry, name), {
          concurrency: "unbounded",
          discard: true
        })
      }
    })
  /** Runs three claimers per process until every row is delivered. */
  const drain = Effect.forkAll(procs.flatMap((proc, p) => [0, 1, 2].map((f) => claimer(proc, `p${p}/f${f}`))))
  const done = (fiber: Fiber.Fiber<unknown, unknown>) =>
    Fiber.join(fiber).pipe(
      Effect.timeoutFail({
        duration: "20 seconds",
        onTimeout: () => new Error(`${state.delivered}/${total} delivered`)
      })
    )
  return { leased, violations, claimMs, send, drain, done }
}

describe("PgOutboxRepo across processes", () => {
  it.live(
    "concurrent claimers and live inserts: one lease per conversation at a time, in enqueue order",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const procs = yield* processes(4)
        const conversations = 16
        const perConversation = 12
        const total = conversations * perConversation
        const produced = new Map<string, Array<string>>()
        const run = harness(procs, total)

        // one producer per conversation, each row through a random process, half of them live (in flight at once when
        // nothing of the conversation is pending); ids are random and every row has the same enqueue time, so only
        // the database's sequence can give the order
        const producer = (c: number) =>
          Effect.gen(function*() {
            const conversation = `slack\u0000to-${c}`
            for (let i = 0; i < perConversation; i++) {
              const proc = pick(procs)
              const owner = `producer-${c}/${i}`
              const now = Date.now()
              const live = Math.random() < 0.5
              const entry = queuedEntry({
                id: randomId(),
                to: `to-${c}`,
                enqueuedAt: 0,
                nextAttemptAt: 0,
                expiresAt: null,
                ...(live
                  ? {
                    state: "in_flight",
                    leaseOwner: owner,
                    leaseExpiresAt: now + LEASE,
                    nextAttemptAt: now + LEASE,
                    lastAttemptAt: now
                  }
                  : {})
              })
              produced.set(conversation, [...(produced.get(conversation) ?? []), entry.id])
              const [result] = yield* proc.repo.write([WriteOp.Insert({ entry, deferIfBusy: true })])
              if (result?._tag === "Inserted" && result.entry.state === "in_flight") {
                yield* Effect.fork(run.send(proc, result.entry, owner))
              }
              yield* Effect.sleep(Duration.millis(Math.random() * 4))
            }
          })

        const claimers = yield* run.drain
        yield* Effect.all(Array.from({ length: conversations }, (_, c) => producer(c)), { concurrency: "unbounded" })
        yield* run.done(claimers)

        expect(run.violations).toEqual([])
        for (const [conversation, ids] of produced) expect(run.leased.get(conversation)).toEqual(ids)
        expect(yield* procs[0]!.repo.pendingCount).toBe(0)
        const sorted = [...run.claimMs].sort((a, b) => a - b)
        console.log(
          `claims: ${sorted.length}, median ${percentile(sorted, 0.5).toFixed(2)} ms, p99 ${
            percentile(sorted, 0.99).toFixed(2)
          } ms`
        )
      })),
    30_000
  )

  // The races the conversation lock closes, replayed step by step: each transaction is held open at a chosen point
  // with Deferreds, so the interleaving is the same on every run. With the lock removed (claims not trying it, live
  // inserts not taking it) both tests fail: the second claimer leases another row of the conversation.

  /** Runs `effect` in a transaction of `proc` that stays open, after `effect`, until `release` completes. */
  const held = <A, E>(proc: Process, effect: Effect.Effect<A, E>): Effect.Effect<
    { readonly result: Effect.Effect<A, E>; readonly commit: Effect.Effect<void, unknown> },
    never,
    Scope.Scope
  > =>
    Effect.gen(function*() {
      const done = yield* Deferred.make<A, E>()
      const release = yield* Deferred.make<void>()
      // in the test's scope: a failing test ends the transaction before the pools are closed
      const fiber = yield* Effect.forkScoped(
        proc.client.withTransaction(
          Effect.zipRight(
            Effect.exit(effect).pipe(Effect.flatMap((exit) => Deferred.done(done, exit))),
            Deferred.await(release)
          )
        )
      )
      return {
        result: Deferred.await(done),
        commit: Effect.zipRight(Deferred.succeed(release, undefined), Fiber.join(fiber))
      }
    })

  /** The rows of `to` holding a lease. */
  const leased = (proc: Process, to: string) =>
    Effect.map(
      proc.client<{ id: string; owner: string }>`SELECT id, lease_owner AS owner FROM outbox_entries
        WHERE recipient = ${to} AND state = 'in_flight' ORDER BY seq`,
      (rows) => rows.map((r) => `${r.id}:${r.owner}`)
    )

  it.live("a row committed late with a lower sequence is not leased while its conversation's head is", () =>
    Effect.scoped(Effect.gen(function*() {
      const [p1, p2, p3] = yield* processes(3)
      const late = queuedEntry({ id: randomId(), to: "late", enqueuedAt: 0, nextAttemptAt: 0, expiresAt: null })
      const head = queuedEntry({ id: randomId(), to: "late", enqueuedAt: 0, nextAttemptAt: 0, expiresAt: null })
      const claim = (proc: Process, owner: string) => proc.repo.claim({ owner, now: 1, leaseMs: LEASE, limit: 10 })
      // 1. `late` takes the lower sequence number, uncommitted; `head` is committed after it
      const lateInsert = yield* held(p1!, p1!.repo.insert([late]))
      yield* lateInsert.result
      yield* p2!.repo.insert([head])
      // 2. claimer A sees only `head`, the conversation's oldest visible row, and leases it; its transaction stays open
      const a = yield* held(p2!, claim(p2!, "A"))
      expect((yield* a.result).claimed.map((c) => c.entry.id)).toEqual([head.id])
      // 3. `late` commits: now the oldest pending row of the conversation, and not leased
      yield* lateInsert.commit
      // 4. claimer B: A still holds the conversation (its lease is not committed yet), so B takes nothing of it
      expect((yield* claim(p3!, "B")).claimed).toEqual([])
      yield* a.commit
      // 5. A's lease committed: B still takes nothing, the conversation has a live lease
      expect((yield* claim(p3!, "B")).claimed).toEqual([])
      expect(yield* leased(p3!, "late")).toEqual([`${head.id}:A`])
      // 6. once A's row is finished, `late` is the head and is leased
      yield* ack(p2!.repo, Option.getOrThrow(yield* p2!.repo.get(head.id)), "A", 2)
      expect((yield* claim(p3!, "B")).claimed.map((c) => c.entry.id)).toEqual([late.id])
    })))

  it.live("a claim does not lease a conversation's row while a live insert of that conversation is uncommitted", () =>
    Effect.scoped(Effect.gen(function*() {
      const [p1, p2, p3] = yield* processes(3)
      const queued = queuedEntry({ id: randomId(), to: "busy", enqueuedAt: 0, nextAttemptAt: 0, expiresAt: null })
      const live = queuedEntry({
        id: randomId(),
        to: "busy",
        enqueuedAt: 0,
        expiresAt: null,
        state: "in_flight",
        leaseOwner: "L",
        leaseExpiresAt: LEASE,
        nextAttemptAt: LEASE,
        lastAttemptAt: 0
      })
      // 1. a queued row takes the lower sequence number, uncommitted
      const enqueue = yield* held(p1!, p1!.repo.insert([queued]))
      yield* enqueue.result
      // 2. a live reply of the same conversation finds nothing pending (the queued row is not visible) and is stored in
      //    flight, leased to its caller; its transaction stays open
      const insert = yield* held(p2!, p2!.repo.write([WriteOp.Insert({ entry: live, deferIfBusy: true })]))
      expect((yield* insert.result).map((r) => r._tag === "Inserted" ? r.entry.state : r._tag)).toEqual(["in_flight"])
      // 3. the queued row commits: the oldest pending row of the conversation
      yield* enqueue.commit
      // 4. a claim while the live row is uncommitted takes nothing of the conversation
      expect((yield* p3!.repo.claim({ owner: "B", now: 1, leaseMs: LEASE, limit: 10 })).claimed).toEqual([])
      yield* insert.commit
      expect((yield* p3!.repo.claim({ owner: "B", now: 1, leaseMs: LEASE, limit: 10 })).claimed).toEqual([])
      expect(yield* leased(p3!, "busy")).toEqual([`${live.id}:L`])
    })))

  it.live("a restart reclaims only its node's boots with a stale heartbeat, never a live replica's leases", () =>
    Effect.scoped(Effect.gen(function*() {
      const [proc] = yield* processes(1)
      const repo = proc!.repo
      const now = 1_000_000
      yield* repo.insert([queuedEntry({ to: "a" }), queuedEntry({ to: "b" }), queuedEntry({ to: "c" })])
      // three owners with one nodeId (a misconfiguration): a live replica, a dead boot, a boot that never heartbeat
      yield* repo.heartbeat("gw/live", now - 1000)
      yield* repo.heartbeat("gw/dead", now - PgOutboxRepo.DEFAULT_HEARTBEAT_STALE_MS - 1)
      const [live] = (yield* repo.claim({ owner: "gw/live", now, leaseMs: LEASE, limit: 1 })).claimed
      const [dead] = (yield* repo.claim({ owner: "gw/dead", now, leaseMs: LEASE, limit: 1 })).claimed
      const [silent] = (yield* repo.claim({ owner: "gw/silent", now, leaseMs: LEASE, limit: 1 })).claimed
      const reclaimed = yield* repo.reclaimPreviousBoots({ nodeId: "gw", owner: "gw/new", now })
      expect([...reclaimed].sort()).toEqual([dead!.entry.id, silent!.entry.id].sort())
      expect(Option.getOrThrow(yield* repo.get(live!.entry.id))).toMatchObject({
        state: "in_flight",
        leaseOwner: "gw/live"
      })
      // a heartbeat never goes back in time; once the replica stops, its leases are taken too
      yield* repo.heartbeat("gw/live", now - 5000)
      // stale once `heartbeatStaleMs` has passed since the last heartbeat
      const stale = now - 1000 + PgOutboxRepo.DEFAULT_HEARTBEAT_STALE_MS
      expect(yield* repo.reclaimPreviousBoots({ nodeId: "gw", owner: "gw/new", now: stale - 1 })).not.toContain(
        live!.entry.id
      )
      expect(yield* repo.reclaimPreviousBoots({ nodeId: "gw", owner: "gw/new", now: stale })).toContain(live!.entry.id)
    })))

  it.live("an enqueue, or a finished row with a successor, on one process wakes a listener on another", () =>
    Effect.scoped(Effect.gen(function*() {
      const [a, b] = yield* processes(2)
      const wakes = Stream.runCollect(
        Stream.take(PgOutboxRepo.notifications().pipe(Stream.provideService(PgClient.PgClient, a!.client)), 2)
      )
      const listening = yield* Effect.fork(wakes)
      yield* Effect.sleep("200 millis") // LISTEN is issued when the stream starts
      const first = queuedEntry({ to: "wake" })
      const second = queuedEntry({ to: "wake" })
      yield* b!.repo.insert([first, second])
      const [claimed] = (yield* b!.repo.claim({ owner: "b/1", now: 0, leaseMs: LEASE, limit: 1 })).claimed
      expect(claimed?.entry.id).toBe(first.id)
      // the conversation's next row is pending: its workers are woken to claim it
      yield* ack(b!.repo, claimed!.entry, "b/1", 1)
      const got = yield* Fiber.join(listening).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("no wake-up") })
      )
      expect(got.length).toBe(2)
    })))
})
