/**
 * The OutboxRepo contract: one suite, written against the port, run against every backend
 * (memory, SQLite on a temp file, PostgreSQL).
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { orderingKey } from "../../src/Delivery.js"
import type { StoreError } from "../../src/DeliveryError.js"
import * as Machine from "../../src/EntryStateMachine.js"
import { OutboxRepo, WriteOp } from "../../src/OutboxRepo.js"
import { entryId, queuedEntry } from "../support/entries.js"
import * as Ops from "../support/repoOps.js"
import { adminContract } from "./adminContract.js"

const MIN = 60_000
const lease = 5 * MIN
const owner = "node-a/boot-1"
const other = "node-b/boot-1"

const now = Effect.clockWith((c) => c.currentTimeMillis)

const claim = (limit = 100, who = owner) =>
  Effect.flatMap(now, (t) => Effect.flatMap(OutboxRepo, (r) => r.claim({ owner: who, now: t, leaseMs: lease, limit })))

const claimedIds = (limit = 100, who = owner) =>
  Effect.map(claim(limit, who), (b) => b.claimed.map((c) => c.entry.id as string))

const getEntry = (id: string) =>
  Effect.flatMap(OutboxRepo, (r) => r.get(entryId(id))).pipe(Effect.map(Option.getOrThrow))

/** Registers the contract suite for one backend; `makeLayer` must give a fresh, empty store per call. */
export const outboxRepoContract = (name: string, makeLayer: () => Layer.Layer<OutboxRepo, StoreError>) => {
  const test = (title: string, body: Effect.Effect<void, unknown, OutboxRepo>) =>
    it.effect(title, () => Effect.provide(body, makeLayer()))

  describe(`OutboxRepo contract: ${name}`, () => {
    adminContract(test)

    test(
      "inserts and reads back every field",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry({
          accountId: "acct",
          threadId: "T9",
          replyToId: "M1",
          idempotencyKey: "k-roundtrip",
          silent: true,
          metadata: { trace: "abc", n: 1 },
          kind: "block",
          bestEffort: true,
          payloads: [{ text: "a" }, { mediaUrls: ["https://x.test/a.png"], channelData: { line: { quick: [1, 2] } } }]
        })
        const [result] = yield* repo.insert([entry])
        expect(result?._tag).toBe("Inserted")
        expect(yield* getEntry(entry.id)).toEqual(entry)
        expect(yield* repo.get(entryId("missing"))).toEqual(Option.none())
      })
    )

    test(
      "insert is idempotent on id and on idempotency key, reporting the duplicate as data",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const first = queuedEntry({ idempotencyKey: "k1" })
        yield* repo.insert([first])
        const sameId = { ...first, payloads: [{ text: "changed" }], idempotencyKey: "k-other" }
        const sameKey = queuedEntry({ idempotencyKey: "k1" })
        const fresh = queuedEntry({ idempotencyKey: "k2" })
        const sameKeyInBatch = queuedEntry({ idempotencyKey: "k2" })
        const results = yield* repo.insert([sameId, sameKey, fresh, sameKeyInBatch])
        expect(results.map((r) => r._tag)).toEqual(["Duplicate", "Duplicate", "Inserted", "Duplicate"])
        expect(results[0]!.entry).toEqual(first)
        expect(results[1]!.entry).toEqual(first)
        expect(results[3]!.entry.id).toBe(fresh.id)
        expect((yield* repo.stats(0)).total).toBe(2)
      })
    )

    test(
      "insert refuses a row that breaks the state invariants and writes nothing",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const ok = queuedEntry()
        const bad = queuedEntry({ state: "failed_terminal", nextAttemptAt: null, terminalReason: null })
        const error = yield* Effect.flip(repo.insert([ok, bad]))
        expect(error._tag).toBe("StoreError")
        expect(error.message).toMatch(/terminalReason/)
        expect((yield* repo.stats(0)).total).toBe(0)
      })
    )

    test(
      "claims oldest due first, then by id, up to the limit",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        yield* TestClock.setTime(10_000)
        yield* repo.insert([
          queuedEntry({ id: entryId("E3"), enqueuedAt: 3000, to: "a" }),
          queuedEntry({ id: entryId("E2b"), enqueuedAt: 2000, to: "b" }),
          queuedEntry({ id: entryId("E2a"), enqueuedAt: 2000, to: "c" }),
          queuedEntry({ id: entryId("E1"), enqueuedAt: 1000, to: "d" }),
          queuedEntry({ id: entryId("Efuture"), enqueuedAt: 20_000, to: "e" })
        ])
        expect(yield* claimedIds(3)).toEqual(["E1", "E2a", "E2b"])
        expect(yield* claimedIds(3)).toEqual(["E3"])
        yield* TestClock.setTime(20_000)
        expect(yield* claimedIds()).toEqual(["Efuture"])
      })
    )

    test(
      "a claimed row is leased: not claimable again until the lease expires, then reclaimed",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        const first = yield* claim()
        expect(first.claimed).toHaveLength(1)
        const leased = first.claimed[0]!
        expect(leased.reclaimed).toBe(false)
        expect(leased.entry).toMatchObject({
          state: "in_flight",
          leaseOwner: owner,
          leaseExpiresAt: lease,
          lastAttemptAt: 0
        })
        expect(yield* claimedIds(100, other)).toEqual([])
        yield* TestClock.adjust(lease - 1)
        expect(yield* claimedIds(100, other)).toEqual([])
        yield* TestClock.adjust(1)
        const again = yield* claim(100, other)
        expect(again.claimed.map((c) => [c.entry.id, c.entry.leaseOwner, c.reclaimed])).toEqual([[
          entry.id,
          other,
          true
        ]])
      })
    )

    test(
      "writes are fenced by the lease owner",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        yield* claim()
        const ack = yield* Ops.ack(repo, other, [{ id: entry.id, partsDelivered: 1 }], 1)
        expect(ack).toEqual({ written: [], rejected: [entry.id] })
        const failure = yield* Effect.flip(
          Ops.recordFailure(repo, entry.id, other, {
            _tag: "Terminal",
            error: "x",
            reason: "permanent_error",
            partsDelivered: 0
          }, 1)
        )
        expect(failure._tag).toBe("LeaseLost")
        const progress = yield* Effect.flip(Ops.recordProgress(repo, entry.id, other, { partsDelivered: 1 }, 1))
        expect(progress._tag).toBe("LeaseLost")
        expect((yield* Ops.release(repo, other, [entry.id], 1)).rejected).toEqual([entry.id])
        expect(yield* getEntry(entry.id)).toMatchObject({ state: "in_flight", leaseOwner: owner, partsDelivered: 0 })
      })
    )

    test(
      "ack marks rows delivered once; a second ack is rejected",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const a = queuedEntry({ to: "a" })
        const b = queuedEntry({ to: "b" })
        yield* repo.insert([a, b])
        yield* claim()
        const result = yield* Ops.ack(
          repo,
          owner,
          [{ id: a.id, partsDelivered: 2 }, { id: b.id, partsDelivered: 1 }],
          50
        )
        expect([...result.written].sort()).toEqual([a.id, b.id].sort())
        expect(yield* getEntry(a.id)).toMatchObject({
          state: "delivered",
          deliveredAt: 50,
          partsDelivered: 2,
          nextAttemptAt: null,
          leaseOwner: null,
          leaseExpiresAt: null
        })
        expect((yield* Ops.ack(repo, owner, [{ id: a.id, partsDelivered: 2 }], 60)).rejected).toEqual([a.id])
        expect(yield* claimedIds()).toEqual([])
      })
    )

    test(
      "a retryable failure waits until its retry time, counting the attempt",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        yield* claim()
        const failed = yield* Ops.recordFailure(repo, entry.id, owner, {
          _tag: "Retryable",
          error: "HTTP 500",
          retryAt: 5000,
          countsAttempt: true,
          partsDelivered: 0,
          maxAttempts: 5
        }, 0)
        expect(failed).toMatchObject({
          state: "failed_retryable",
          attemptCount: 1,
          nextAttemptAt: 5000,
          lastError: "HTTP 500",
          leaseOwner: null
        })
        expect(yield* getEntry(entry.id)).toEqual(failed)
        yield* TestClock.setTime(4999)
        expect(yield* claimedIds()).toEqual([])
        yield* TestClock.setTime(5000)
        const [again] = (yield* claim()).claimed
        expect(again).toMatchObject({ reclaimed: false, entry: { id: entry.id, attemptCount: 1 } })
      })
    )

    test(
      "rate limiting does not use an attempt; the last allowed attempt goes terminal max_attempts",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry({ attemptCount: 0 })
        yield* repo.insert([entry])
        yield* claim()
        const limited = yield* Ops.recordFailure(repo, entry.id, owner, {
          _tag: "Retryable",
          error: "429",
          retryAt: 10,
          countsAttempt: false,
          partsDelivered: 0,
          maxAttempts: 2
        }, 0)
        expect(limited.attemptCount).toBe(0)
        yield* TestClock.setTime(10)
        yield* claim()
        const once = yield* Ops.recordFailure(repo, entry.id, owner, {
          _tag: "Retryable",
          error: "500",
          retryAt: 20,
          countsAttempt: true,
          partsDelivered: 0,
          maxAttempts: 2
        }, 10)
        expect(once).toMatchObject({ state: "failed_retryable", attemptCount: 1 })
        yield* TestClock.setTime(20)
        yield* claim()
        const last = yield* Ops.recordFailure(repo, entry.id, owner, {
          _tag: "Retryable",
          error: "500 again",
          retryAt: 30,
          countsAttempt: true,
          partsDelivered: 0,
          maxAttempts: 2
        }, 20)
        expect(last).toMatchObject({
          state: "failed_terminal",
          terminalReason: "max_attempts",
          attemptCount: 2,
          nextAttemptAt: null
        })
      })
    )

    test(
      "best-effort islands (parts delivered past a failed one) are stored, kept, and cleared by the ack",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry({ bestEffort: true })
        yield* repo.insert([entry])
        yield* claim()
        const failed = yield* Ops.recordFailure(repo, entry.id, owner, {
          _tag: "Retryable",
          error: "503",
          retryAt: 10,
          countsAttempt: true,
          partsDelivered: 1,
          deliveredParts: [3, 2],
          maxAttempts: 5
        }, 0)
        expect(failed).toMatchObject({ partsDelivered: 1, deliveredParts: [2, 3] })
        expect(yield* getEntry(entry.id)).toEqual(failed)
        yield* TestClock.setTime(10)
        yield* claim()
        const again = yield* Ops.recordFailure(repo, entry.id, owner, {
          _tag: "Retryable",
          error: "503",
          retryAt: 20,
          countsAttempt: true,
          partsDelivered: 2,
          deliveredParts: [4],
          maxAttempts: 5
        }, 10)
        expect(again).toMatchObject({ partsDelivered: 2, deliveredParts: [2, 3, 4] })
        yield* TestClock.setTime(20)
        yield* claim()
        yield* Ops.ack(repo, owner, [{ id: entry.id, partsDelivered: 5 }], 20)
        const done = yield* getEntry(entry.id)
        expect(done).toMatchObject({ state: "delivered", partsDelivered: 5 })
        expect(done.deliveredParts).toBeUndefined()
      })
    )

    test(
      "a terminal failure records its reason and is never claimed",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        yield* claim()
        yield* Ops.recordFailure(repo, entry.id, owner, {
          _tag: "Terminal",
          error: "chat not found",
          reason: "permanent_error",
          partsDelivered: 0
        }, 5)
        expect(yield* getEntry(entry.id)).toMatchObject({
          state: "failed_terminal",
          terminalReason: "permanent_error",
          lastError: "chat not found",
          attemptCount: 1
        })
        yield* TestClock.setTime(10 * lease)
        expect(yield* claimedIds()).toEqual([])
      })
    )

    test(
      "progress is recorded and can renew the lease",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        yield* claim()
        const renewed = yield* Ops.recordProgress(
          repo,
          entry.id,
          owner,
          { partsDelivered: 2, leaseUntil: 2 * lease },
          100
        )
        expect(renewed).toMatchObject({ partsDelivered: 2, leaseExpiresAt: 2 * lease, state: "in_flight" })
        yield* TestClock.setTime(lease)
        expect(yield* claimedIds(100, other)).toEqual([])
        const back = yield* Effect.flip(Ops.recordProgress(repo, entry.id, owner, { partsDelivered: 1 }, 100))
        expect(back._tag).toBe("LeaseLost")
      })
    )

    test(
      "release gives a row back, claimable at once, without using an attempt",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        yield* claim()
        expect((yield* Ops.release(repo, owner, [entry.id], 0)).written).toEqual([entry.id])
        expect(yield* getEntry(entry.id)).toMatchObject({ state: "queued", attemptCount: 0, leaseOwner: null })
        expect(yield* claimedIds(100, other)).toEqual([entry.id])
      })
    )

    test(
      "leases of this node's previous boots are reclaimed at once; other nodes' are not",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const mine = queuedEntry({ to: "a" })
        const theirs = queuedEntry({ to: "b" })
        yield* repo.insert([mine, theirs])
        yield* claim(1, "node-a/boot-0")
        yield* claim(1, "node-b/boot-0")
        const reclaimed = yield* repo.reclaimPreviousBoots({ nodeId: "node-a", owner: "node-a/boot-1", now: 10 })
        expect(reclaimed).toEqual([mine.id])
        yield* TestClock.setTime(10)
        const batch = yield* claim(100, "node-a/boot-1")
        expect(batch.claimed.map((c) => [c.entry.id, c.reclaimed])).toEqual([[mine.id, true]])
        expect(yield* repo.reclaimPreviousBoots({ nodeId: "node", owner: "node/x", now: 10 })).toEqual([])
      })
    )

    test(
      "a dead boot's reclaimed row is claimed before a backlog that fell due after it was enqueued",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const crashed = queuedEntry({ id: entryId("Z-crashed"), to: "a", enqueuedAt: 100 })
        yield* repo.insert([crashed])
        yield* TestClock.setTime(100)
        yield* claim(1, "node-a/boot-0")
        const backlog = Array.from(
          { length: 3 },
          (_, i) => queuedEntry({ id: entryId(`B${i}`), to: `b${i}`, enqueuedAt: 200 + i })
        )
        yield* repo.insert(backlog)
        yield* TestClock.setTime(1000)
        yield* repo.reclaimPreviousBoots({ nodeId: "node-a", owner: "node-a/boot-1", now: 1000 })
        expect((yield* getEntry(crashed.id)).nextAttemptAt).toBe(100)
        const batch = yield* claim(2, "node-a/boot-1")
        expect(batch.claimed.map((c) => [c.entry.id, c.reclaimed])).toEqual([["Z-crashed", true], ["B0", false]])
      })
    )

    test(
      "only the oldest pending row of a conversation is claimable",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const first = queuedEntry({ id: entryId("C1"), enqueuedAt: 0, to: "same" })
        const second = queuedEntry({ id: entryId("C2"), enqueuedAt: 1, to: "same" })
        const elsewhere = queuedEntry({ id: entryId("C3"), enqueuedAt: 2, to: "other" })
        yield* repo.insert([second, first, elsewhere])
        yield* TestClock.setTime(10)
        expect(yield* claimedIds()).toEqual(["C1", "C3"])
        // the head fails and waits; its younger sibling must still wait behind it
        yield* Ops.recordFailure(repo, first.id, owner, {
          _tag: "Retryable",
          error: "500",
          retryAt: 1000,
          countsAttempt: true,
          partsDelivered: 0,
          maxAttempts: 5
        }, 10)
        expect(yield* claimedIds()).toEqual([])
        yield* TestClock.setTime(1000)
        expect(yield* claimedIds()).toEqual(["C1"])
        yield* Ops.ack(repo, owner, [{ id: first.id, partsDelivered: 1 }], 1000)
        expect(yield* claimedIds()).toEqual(["C2"])
      })
    )

    test(
      "a write batch applies inserts and guarded updates in order; a refused guard or a bad row fails alone",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const head = queuedEntry({ id: entryId("K1"), enqueuedAt: 1, to: "same" })
        const foreign = queuedEntry({ id: entryId("K3"), enqueuedAt: 3, to: "other" })
        yield* TestClock.setTime(5)
        yield* repo.insert([foreign])
        expect(yield* claimedIds(100, other)).toEqual(["K3"]) // leased to another process: our spec's guard fails
        yield* repo.insert([head])
        expect(yield* claimedIds()).toEqual(["K1"])
        const ackOf = (id: string) =>
          Effect.map(getEntry(id), (row) =>
            Either.getOrThrow(
              Machine.writeSpec({ ...row, leaseOwner: owner }, Machine.EntryEvent.Ack({ owner, partsDelivered: 1 }), 10)
            ))
        const circular: Record<string, unknown> = {}
        circular.self = circular
        const bad = queuedEntry({ id: entryId("K4"), to: "x", metadata: circular })
        const fresh = queuedEntry({ id: entryId("K5"), to: "y" })
        const results = yield* repo.write([
          WriteOp.Update({ spec: yield* ackOf(head.id) }),
          WriteOp.Update({ spec: yield* ackOf(foreign.id) }),
          WriteOp.Insert({ entry: bad, deferIfBusy: false }),
          WriteOp.Insert({ entry: fresh, deferIfBusy: false })
        ])
        expect(results.map((r) => r._tag)).toEqual(["Updated", "Rejected", "Invalid", "Inserted"])
        expect(yield* getEntry(head.id)).toMatchObject({
          state: "delivered",
          deliveredAt: 10,
          partsDelivered: 1,
          leaseOwner: null
        })
        expect(yield* getEntry(foreign.id)).toMatchObject({ state: "in_flight", leaseOwner: other })
        expect(yield* repo.get(bad.id)).toEqual(Option.none())
        expect((yield* getEntry(fresh.id)).state).toBe("queued")
      })
    )

    test(
      "a live insert with deferIfBusy is stored queued behind its conversation's pending row",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        yield* TestClock.setTime(5)
        const older = queuedEntry({ id: entryId("L1"), enqueuedAt: 1, to: "same" })
        yield* repo.insert([older])
        const live = (id: string, to: string) =>
          queuedEntry({
            id: entryId(id),
            enqueuedAt: 5,
            to,
            state: "in_flight",
            leaseOwner: owner,
            leaseExpiresAt: 5 + lease,
            nextAttemptAt: 5 + lease
          })
        const results = yield* repo.write([
          WriteOp.Insert({ entry: live("L2", "same"), deferIfBusy: true }),
          WriteOp.Insert({ entry: live("L3", "free"), deferIfBusy: true }),
          WriteOp.Insert({ entry: live("L4", "free"), deferIfBusy: true })
        ])
        expect(results.map((r) => r._tag === "Inserted" || r._tag === "Duplicate" ? r.entry.state : r._tag)).toEqual([
          "queued",
          "in_flight",
          "queued"
        ])
        expect((yield* getEntry("L2")).state).toBe("queued")
        expect((yield* getEntry("L4")).leaseOwner).toBeNull()
      })
    )

    test(
      "a claim for one conversation takes only its head",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        yield* TestClock.setTime(5)
        yield* repo.insert([
          queuedEntry({ id: entryId("H1"), enqueuedAt: 1, to: "a" }),
          queuedEntry({ id: entryId("H2"), enqueuedAt: 2, to: "a" }),
          queuedEntry({ id: entryId("H3"), enqueuedAt: 0, to: "b" })
        ])
        const key = orderingKey({ channel: "slack", to: "a" })
        const first = yield* repo.claim({ owner, now: 5, leaseMs: lease, limit: 10, orderingKeys: [key] })
        expect(first.claimed.map((c) => c.entry.id)).toEqual(["H1"])
        // the head is in flight: nothing more of that conversation is claimable
        expect((yield* repo.claim({ owner, now: 5, leaseMs: lease, limit: 10, orderingKeys: [key] })).claimed).toEqual(
          []
        )
        yield* Ops.ack(repo, owner, [{ id: entryId("H1"), partsDelivered: 1 }], 5)
        const next = yield* repo.claim({ owner, now: 5, leaseMs: lease, limit: 10, orderingKeys: [key] })
        expect(next.claimed.map((c) => c.entry.id)).toEqual(["H2"])
      })
    )

    test(
      "rows of one conversation enqueued in the same millisecond go by id",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        yield* repo.insert([
          queuedEntry({ id: entryId("M2"), enqueuedAt: 5, to: "same" }),
          queuedEntry({ id: entryId("M1"), enqueuedAt: 5, to: "same" }),
          queuedEntry({ id: entryId("M3"), enqueuedAt: 5, to: "same" })
        ])
        yield* TestClock.setTime(5)
        const order: Array<string> = []
        for (let i = 0; i < 3; i++) {
          const ids = yield* claimedIds()
          expect(ids).toHaveLength(1)
          order.push(ids[0]!)
          yield* Ops.ack(repo, owner, [{ id: entryId(ids[0]!), partsDelivered: 1 }], 5)
        }
        expect(order).toEqual(["M1", "M2", "M3"])
      })
    )

    test(
      "expire moves waiting rows past their TTL, never another owner's in-flight row",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const old = queuedEntry({ to: "a", expiresAt: 100 })
        const young = queuedEntry({ to: "b", expiresAt: 10_000 })
        const leasedByOther = queuedEntry({ to: "c", expiresAt: 100 })
        const noTtl = queuedEntry({ to: "d", expiresAt: null })
        yield* repo.insert([old, young, leasedByOther, noTtl])
        // lease all four to `other`, then give back all but one
        expect(yield* claimedIds(100, other)).toHaveLength(4)
        yield* Ops.release(repo, other, [old.id, young.id, noTtl.id], 0)
        expect((yield* getEntry(leasedByOther.id)).state).toBe("in_flight")
        const expired = yield* repo.expire(100)
        expect(expired).toEqual([old.id])
        expect(yield* getEntry(old.id)).toMatchObject({ state: "expired", nextAttemptAt: null })
        expect((yield* getEntry(young.id)).state).toBe("queued")
        expect((yield* getEntry(noTtl.id)).state).toBe("queued")
        expect((yield* getEntry(leasedByOther.id)).state).toBe("in_flight")
        // an in-flight row is expired by its lease owner, through a guarded write
        yield* Ops.expireHeld(repo, leasedByOther.id, other, 100)
        expect((yield* getEntry(leasedByOther.id)).state).toBe("expired")
      })
    )

    test(
      "prune deletes finished rows by two retentions and keeps waiting rows whatever their age",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const day = 24 * 60 * MIN
        const rows = {
          deliveredOld: queuedEntry({ to: "1" }),
          deliveredNew: queuedEntry({ to: "2" }),
          terminalOld: queuedEntry({ to: "3" }),
          terminalMid: queuedEntry({ to: "4" }),
          expiredOld: queuedEntry({ to: "5", expiresAt: 1 }),
          queuedAncient: queuedEntry({ to: "6", expiresAt: null }),
          retryingAncient: queuedEntry({ to: "7", expiresAt: null })
        }
        yield* repo.insert(Object.values(rows))
        yield* claim()
        yield* Ops.ack(repo, owner, [{ id: rows.deliveredOld.id, partsDelivered: 1 }], 0)
        yield* Ops.ack(repo, owner, [{ id: rows.deliveredNew.id, partsDelivered: 1 }], 9.5 * day)
        yield* Ops.recordFailure(repo, rows.terminalOld.id, owner, {
          _tag: "Terminal",
          error: "x",
          reason: "permanent_error",
          partsDelivered: 0
        }, 0)
        yield* Ops.recordFailure(repo, rows.terminalMid.id, owner, {
          _tag: "Terminal",
          error: "x",
          reason: "manual",
          partsDelivered: 0
        }, 3.5 * day)
        yield* Ops.recordFailure(repo, rows.retryingAncient.id, owner, {
          _tag: "Retryable",
          error: "x",
          retryAt: 100 * day,
          countsAttempt: true,
          partsDelivered: 0,
          maxAttempts: 5
        }, 0)
        yield* Ops.release(repo, owner, [rows.expiredOld.id, rows.queuedAncient.id], 0)
        yield* repo.expire(2)
        const result = yield* repo.prune(10 * day, { deliveredMs: day, terminalMs: 7 * day })
        expect(result).toEqual({ delivered: 1, terminal: 2 })
        const left = (yield* repo.list({ limit: 100 })).map((e) => e.to).sort()
        expect(left).toEqual(["2", "4", "6", "7"])
      })
    )

    test(
      "list filters by state and channel, newest first, with limit and before",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        yield* repo.insert([
          queuedEntry({ id: entryId("L1"), enqueuedAt: 1, channel: "slack", to: "a" }),
          queuedEntry({ id: entryId("L2"), enqueuedAt: 2, channel: "telegram", to: "b" }),
          queuedEntry({ id: entryId("L3"), enqueuedAt: 3, channel: "slack", to: "c" }),
          queuedEntry({ id: entryId("L4"), enqueuedAt: 4, channel: "slack", to: "d" })
        ])
        yield* TestClock.setTime(10)
        yield* repo.claim({ owner, now: 10, leaseMs: lease, limit: 1 })
        const ids = (f: Parameters<typeof repo.list>[0]) =>
          Effect.map(repo.list(f), (es) => es.map((e) => e.id as string))
        expect(yield* ids({})).toEqual(["L4", "L3", "L2", "L1"])
        expect(yield* ids({ channel: "slack" })).toEqual(["L4", "L3", "L1"])
        expect(yield* ids({ state: "queued", channel: "slack" })).toEqual(["L4", "L3"])
        expect(yield* ids({ state: "in_flight" })).toEqual(["L1"])
        expect(yield* ids({ limit: 2 })).toEqual(["L4", "L3"])
        expect(yield* ids({ before: 3 })).toEqual(["L2", "L1"])
      })
    )

    test(
      "stats count by state and channel and give the oldest pending age",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const empty = yield* repo.stats(0)
        expect(empty).toMatchObject({ total: 0, oldestPendingAgeMs: null, byChannel: {} })
        expect(empty.byState.queued).toBe(0)
        yield* repo.insert([
          queuedEntry({ enqueuedAt: 100, channel: "slack", to: "a" }),
          queuedEntry({ enqueuedAt: 200, channel: "slack", to: "b" }),
          queuedEntry({ enqueuedAt: 300, channel: "telegram", to: "c" })
        ])
        yield* TestClock.setTime(1000)
        const [first] = (yield* claim(1)).claimed
        yield* Ops.ack(repo, owner, [{ id: first!.entry.id, partsDelivered: 1 }], 1000)
        const stats = yield* repo.stats(5000)
        expect(stats.total).toBe(3)
        expect(stats.byState).toEqual({
          queued: 2,
          in_flight: 0,
          delivered: 1,
          failed_retryable: 0,
          failed_terminal: 0,
          expired: 0
        })
        expect(stats.byChannel.slack).toMatchObject({ queued: 1, delivered: 1 })
        expect(stats.byChannel.telegram).toMatchObject({ queued: 1, delivered: 0 })
        expect(stats.oldestPendingAgeMs).toBe(4800)
      })
    )

    test(
      "admin requeue resets attempts of a terminal row; delivered and missing rows are refused",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const dead = queuedEntry({ to: "a" })
        const done = queuedEntry({ to: "b" })
        yield* repo.insert([dead, done])
        yield* claim()
        yield* Ops.recordFailure(repo, dead.id, owner, {
          _tag: "Terminal",
          error: "x",
          reason: "permanent_error",
          partsDelivered: 0
        }, 1)
        yield* Ops.ack(repo, owner, [{ id: done.id, partsDelivered: 1 }], 1)
        const requeued = yield* repo.requeue(dead.id, 50, 50 + 30 * MIN)
        expect(requeued).toMatchObject({
          state: "queued",
          attemptCount: 0,
          terminalReason: null,
          nextAttemptAt: 50,
          expiresAt: 50 + 30 * MIN
        })
        expect(yield* getEntry(dead.id)).toEqual(requeued)
        expect((yield* Effect.flip(repo.requeue(done.id, 50, null)))._tag).toBe("TransitionRejected")
        expect((yield* getEntry(done.id)).state).toBe("delivered")
        expect((yield* Effect.flip(repo.requeue(entryId("nope"), 50, null)))._tag).toBe("EntryNotFound")
      })
    )

    test(
      "a quarantined row cannot be requeued: its data would only be quarantined again",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        yield* repo.quarantine(entry.id, "payloads_json is not valid JSON", 1)
        const error = yield* Effect.flip(repo.requeue(entry.id, 2, null))
        expect(error._tag).toBe("TransitionRejected")
        expect(error.message).toMatch(/does not decode/)
        expect((yield* getEntry(entry.id)).state).toBe("failed_terminal")
      })
    )

    test(
      "a live (in-flight) insert behind a pending row of its conversation is stored queued instead",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const leased = {
          state: "in_flight" as const,
          leaseOwner: owner,
          leaseExpiresAt: lease,
          nextAttemptAt: lease,
          lastAttemptAt: 0
        }
        const older = queuedEntry({ to: "busy" })
        yield* repo.insert([older])
        const behind = queuedEntry({ to: "busy", ...leased })
        const free = queuedEntry({ to: "free", ...leased })
        const freeTwice = queuedEntry({ to: "free", ...leased })
        const results = yield* repo.insert([behind, free, freeTwice], { deferBusyConversations: true })
        expect(results.map((r) => [r._tag, r.entry.state])).toEqual([
          ["Inserted", "queued"],
          ["Inserted", "in_flight"],
          ["Inserted", "queued"]
        ])
        expect(yield* getEntry(behind.id)).toMatchObject({ state: "queued", leaseOwner: null, nextAttemptAt: 0 })
        expect(yield* getEntry(free.id)).toMatchObject({ state: "in_flight", leaseOwner: owner })
        // without the option the row is stored as given
        const forced = queuedEntry({ to: "busy", ...leased })
        const [plain] = yield* repo.insert([forced])
        expect(plain!.entry.state).toBe("in_flight")
        expect(yield* repo.pendingCount).toBe(5)
      })
    )

    test(
      "meta values are read back and replaced",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        expect(yield* repo.getMeta("legacy_import")).toEqual(Option.none())
        yield* repo.setMeta("legacy_import", "1")
        yield* repo.setMeta("legacy_import", "2")
        expect(yield* repo.getMeta("legacy_import")).toEqual(Option.some("2"))
      })
    )

    test(
      "quarantine moves a row to failed_terminal(decode_error)",
      Effect.gen(function*() {
        const repo = yield* OutboxRepo
        const entry = queuedEntry()
        yield* repo.insert([entry])
        yield* repo.quarantine(entry.id, "payloads_json is not valid JSON", 7)
        expect(yield* getEntry(entry.id)).toMatchObject({
          state: "failed_terminal",
          terminalReason: "decode_error",
          lastError: "payloads_json is not valid JSON",
          nextAttemptAt: null
        })
      })
    )
  })
}
