import { describe, expect, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import type { OutboxEntry, TerminalReason } from "../src/Delivery.js"
import { TerminalReason as TerminalReasons } from "../src/Delivery.js"
import type { EntryEvent } from "../src/EntryStateMachine.js"
import {
  checkInvariants,
  claimWrite,
  EntryEvent as Ev,
  expireWrite,
  guardHolds,
  transition,
  writeSpec
} from "../src/EntryStateMachine.js"
import { queuedEntry } from "./support/entries.js"

const owner = FastCheck.constantFrom("node/a", "node/b")
const time = FastCheck.integer({ min: 0, max: 5_000 })
const parts = FastCheck.integer({ min: 0, max: 4 })
const reason = FastCheck.constantFrom<TerminalReason>(...TerminalReasons.literals)

const w = <A>(weight: number, arbitrary: FastCheck.Arbitrary<A>) => ({ weight, arbitrary })

// weighted so that long sequences still visit every state rather than sinking into a terminal one
const event: FastCheck.Arbitrary<EntryEvent> = FastCheck.oneof(
  w(6, FastCheck.record({ owner, leaseUntil: time }).map(Ev.Claim)),
  w(1, FastCheck.record({ owner, leaseUntil: time }).map(Ev.Renew)),
  w(2, FastCheck.record({ owner, partsDelivered: parts }).map(Ev.Progress)),
  w(2, FastCheck.record({ owner, partsDelivered: parts }).map(Ev.Ack)),
  w(
    4,
    FastCheck.record({
      owner,
      error: FastCheck.constant("boom"),
      retryAt: time,
      countsAttempt: FastCheck.boolean(),
      partsDelivered: parts,
      maxAttempts: FastCheck.integer({ min: 1, max: 5 })
    }).map(Ev.Retry)
  ),
  w(1, FastCheck.record({ owner, error: FastCheck.constant("no"), reason, partsDelivered: parts }).map(Ev.Fail)),
  w(2, FastCheck.record({ owner }).map(Ev.Release)),
  w(1, FastCheck.record({ owner, until: time }).map(Ev.Release)),
  w(1, FastCheck.constant(Ev.Reclaim())),
  w(1, FastCheck.oneof(FastCheck.constant(Ev.Expire({})), owner.map((o) => Ev.Expire({ owner: o })))),
  w(2, FastCheck.oneof(FastCheck.constant(null), time).map((expiresAt) => Ev.Requeue({ expiresAt }))),
  w(1, FastCheck.constant(Ev.Quarantine({ error: "bad json" })))
)

const steps = FastCheck.array(FastCheck.tuple(event, FastCheck.integer({ min: 0, max: 150 })), { maxLength: 40 })

/** Runs a sequence, keeping the entry unchanged on a rejected event; returns every (before, event, after). */
const run = (start: OutboxEntry, sequence: ReadonlyArray<readonly [EntryEvent, number]>) => {
  let entry = start
  let now = 0
  const trace: Array<{ before: OutboxEntry; event: EntryEvent; after: OutboxEntry; accepted: boolean }> = []
  for (const [ev, dt] of sequence) {
    now += dt
    const result = transition(entry, ev, now)
    const after = Either.getOrElse(result, () => entry)
    trace.push({ before: entry, event: ev, after, accepted: Either.isRight(result) })
    entry = after
  }
  return trace
}

const runs = { fastCheck: { numRuns: 400 } }

const start = queuedEntry({ enqueuedAt: 0, expiresAt: 2_000 })

describe("EntryStateMachine", () => {
  it.prop("no sequence of events takes a delivered row anywhere (only pruning removes it)", [steps], ([sequence]) => {
    for (const step of run(start, sequence)) {
      if (step.before.state === "delivered") {
        expect(step.accepted).toBe(false)
        expect(step.after).toBe(step.before)
      }
    }
  }, runs)

  it.prop("attemptCount never decreases except by admin requeue", [steps], ([sequence]) => {
    for (const step of run(start, sequence)) {
      if (step.event._tag === "Requeue" && step.accepted) expect(step.after.attemptCount).toBe(0)
      else expect(step.after.attemptCount).toBeGreaterThanOrEqual(step.before.attemptCount)
    }
  }, runs)

  it.prop("every reachable row satisfies the invariants; a terminal row always has a reason", [steps], ([sequence]) => {
    for (const step of run(start, sequence)) {
      expect(checkInvariants(step.after)).toBeNull()
      if (step.after.state === "failed_terminal") expect(step.after.terminalReason).not.toBeNull()
    }
  }, runs)

  it.prop("only the lease owner can finish an in-flight row", [steps], ([sequence]) => {
    for (const step of run(start, sequence)) {
      const ev = step.event
      if (
        step.accepted && step.before.state === "in_flight" && "owner" in ev && ev.owner !== undefined &&
        ev._tag !== "Claim"
      ) {
        expect(ev.owner).toBe(step.before.leaseOwner)
      }
    }
  }, runs)

  it.prop(
    "a write spec is the transition as a guarded write: on a row in its guard's state and owner, the row after it is `next`",
    [steps, steps, time],
    ([before, sequence, now]) => {
      for (const { after: held } of run(start, before)) {
        for (const { event } of run(held, sequence)) {
          const spec = writeSpec(held, event, now)
          const result = transition(held, event, now)
          expect(Either.isRight(spec)).toBe(Either.isRight(result))
          if (Either.isRight(spec) && Either.isRight(result)) {
            expect(spec.right.next).toStrictEqual(result.right)
            expect(spec.right.guard).toStrictEqual({ id: held.id, state: held.state, leaseOwner: held.leaseOwner })
            expect(guardHolds(held, spec.right.guard)).toBe(true)
          }
        }
      }
    },
    runs
  )

  it.prop(
    "expiring a waiting row sets the same columns on every row (stores expire a batch as one UPDATE of `expireWrite`)",
    [steps, time],
    ([sequence, now]) => {
      for (const { after: row } of run(start, sequence)) {
        if (row.state !== "queued" && row.state !== "failed_retryable") continue
        const result = transition(row, Ev.Expire({}), now)
        if (Either.isRight(result)) expect(result.right).toStrictEqual({ ...row, ...expireWrite(now) })
      }
    },
    runs
  )

  it.prop(
    "a claim sets the same columns on every row it accepts (stores write a claimed batch as one UPDATE of `claimWrite`)",
    [steps, owner, time, time],
    ([sequence, claimOwner, leaseFor, now]) => {
      for (const { after: row } of run(start, sequence)) {
        const event = Ev.Claim({ owner: claimOwner, leaseUntil: now + 1 + leaseFor })
        const result = transition(row, event, now)
        if (Either.isRight(result)) expect(result.right).toStrictEqual({ ...row, ...claimWrite(event, now) })
      }
    },
    runs
  )

  it("the diagram's arrows, one by one", () => {
    const claimed = Either.getOrThrow(transition(start, Ev.Claim({ owner: "n/a", leaseUntil: 100 }), 0))
    expect(claimed).toMatchObject({ state: "in_flight", leaseOwner: "n/a", leaseExpiresAt: 100, nextAttemptAt: 100 })
    expect(Either.isLeft(transition(claimed, Ev.Claim({ owner: "n/b", leaseUntil: 200 }), 50))).toBe(true)
    expect(Either.getOrThrow(transition(claimed, Ev.Claim({ owner: "n/b", leaseUntil: 200 }), 100)).leaseOwner).toBe(
      "n/b"
    )
    const delivered = Either.getOrThrow(transition(claimed, Ev.Ack({ owner: "n/a", partsDelivered: 1 }), 10))
    expect(delivered).toMatchObject({ state: "delivered", deliveredAt: 10, nextAttemptAt: null, leaseOwner: null })
    const retry = (maxAttempts: number) =>
      transition(
        claimed,
        Ev.Retry({ owner: "n/a", error: "500", retryAt: 99, countsAttempt: true, partsDelivered: 0, maxAttempts }),
        10
      )
    expect(Either.getOrThrow(retry(5))).toMatchObject({ state: "failed_retryable", attemptCount: 1, nextAttemptAt: 99 })
    expect(Either.getOrThrow(retry(1))).toMatchObject({ state: "failed_terminal", terminalReason: "max_attempts" })
    const skipped = Either.getOrThrow(
      transition(
        claimed,
        Ev.Fail({ owner: "n/a", error: "tool", reason: "non_final_recovery_skip", partsDelivered: 0 }),
        10
      )
    )
    expect(skipped).toMatchObject({
      state: "failed_terminal",
      terminalReason: "non_final_recovery_skip",
      attemptCount: 0
    })
    const expired = Either.getOrThrow(transition(start, Ev.Expire({}), 2_000))
    expect(expired.state).toBe("expired")
    expect(Either.isLeft(transition(start, Ev.Expire({}), 1_999))).toBe(true)
    expect(Either.isLeft(transition(claimed, Ev.Expire({ owner: "n/b" }), 2_000))).toBe(true)
    expect(Either.getOrThrow(transition(claimed, Ev.Expire({ owner: "n/a" }), 2_000)).state).toBe("expired")
    const requeued = Either.getOrThrow(transition(expired, Ev.Requeue({ expiresAt: 9_000 }), 3_000))
    expect(requeued).toMatchObject({ state: "queued", nextAttemptAt: 3_000, expiresAt: 9_000 })
    const rejected = transition(delivered, Ev.Requeue({ expiresAt: null }), 10)
    expect(Either.isLeft(rejected) && rejected.left.message).toMatch(/Requeue is not allowed from delivered/)
  })
})
