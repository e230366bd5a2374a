/**
 * `deliverEntry`: the one delivery program. Live `deliver` runs it on the row it just wrote (leased to this process),
 * the worker on each row it claims; it runs in the fiber that delivers the row, and its only writes go through the
 * journal as guarded specs of the row it holds:
 *
 *   pending ack? → tool/block on recovery? → channel? → TTL → reconcile (a row reclaimed from a crash)
 *   → send part by part, a `Progress` write after each accepted part → `Ack`, or `Retry`/`Fail` by the policy.
 *
 * While it runs, the lease is renewed every half lease. Interrupted before its first adapter call, the row is released
 * (claimable at once); interrupted during a call, it stays in flight under this lease (the call may have reached the
 * channel): this node's next start, or the lease's expiry, hands it to a worker that reconciles or replays it.
 * Writing the attempt's result (ack, retry, failure, expiry) is `RecordAttempt`'s.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import type * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import type { Channel } from "../ChannelAdapter.js"
import type { ChannelRegistry } from "../ChannelRegistry.js"
import type { EntryId, OutboxEntry, TerminalReason } from "../Delivery.js"
import * as Machine from "../EntryStateMachine.js"
import * as Metrics from "../Metrics.js"
import type { OutboxConfigShape } from "../OutboxConfig.js"
import type * as Sender from "../Sender.js"
import { traced } from "./deliverySpan.js"
import type { Held } from "./HeldRow.js"
import * as HeldRow from "./HeldRow.js"
import type { Journal } from "./Journal.js"
import * as LeaseKeeper from "./LeaseKeeper.js"
import type { RateLimiter } from "./RateLimiter.js"
import { Postponed } from "./RateLimiter.js"
import type { Recordable, Result } from "./RecordAttempt.js"
import * as RecordAttempt from "./RecordAttempt.js"
import { annotated } from "./RecordAttempt.js"

/**
 * What delivering a row came to. `finished`: the row left the pending states (its conversation may go on);
 * `possibleDuplicate`: it was replayed after a crash with no proof its earlier attempt did not reach the channel.
 */
export type Outcome = Result & { readonly possibleDuplicate: boolean }

/** A row to deliver: written by live `deliver` just now, or claimed (`reclaimed` from an expired lease: a possible duplicate). */
export interface Claimed {
  readonly entry: OutboxEntry
  readonly live: boolean
  readonly reclaimed: boolean
  /** a claimed row with another row of its conversation waiting behind it */
  readonly followed?: boolean
}

/** What the delivery program needs from the outbox. */
export interface Deps {
  readonly journal: Journal
  readonly sender: Context.Tag.Service<typeof Sender.Sender>
  readonly registry: Context.Tag.Service<typeof ChannelRegistry>
  readonly config: OutboxConfigShape
  readonly owner: string
  readonly events: Events
  /** sent rows whose ack is not written yet: never sent again by this process; the next pass writes them */
  readonly pendingAcks: Map<EntryId, { readonly entry: OutboxEntry; readonly partsDelivered: number }>
  /** each part waits for its rate-limit token (see `RateLimiter`) */
  readonly limiter: RateLimiter
}

/** The announcements the program makes (the outbox's event stream). */
export interface Events {
  /** `sent` and `delivered` are called as the program yields them (so they may look at who listens then) */
  readonly sent: (entry: OutboxEntry, parts: number) => Effect.Effect<void>
  readonly delivered: (entry: OutboxEntry) => Effect.Effect<void>
  readonly retryScheduled: (entry: OutboxEntry, error: string) => Effect.Effect<void>
  readonly terminal: (entry: OutboxEntry, reason: TerminalReason, error: string) => Effect.Effect<void>
  readonly expired: (entry: OutboxEntry) => Effect.Effect<void>
}

/** The row was taken over by another owner while this process delivered it. */
class LeaseLost {
  readonly _tag = "LeaseLost"
}

/** An attempt's result before it is recorded (`LeaseLost`: another owner took the row on the way). */
type Attempt = Recordable | LeaseLost

/** What the attempt learnt on the way: whether an adapter call may have started, whether it replays a possible duplicate. */
interface AttemptFlags {
  calling: boolean
  possibleDuplicate: boolean
}

const skip = (reason: TerminalReason, message: string): Effect.Effect<Attempt> =>
  Effect.succeed({ _tag: "Skip", reason, message })

/** What the delivery program's steps share: the outbox's parts, the lease keeper, the recorder, the row writer. */
interface Program {
  readonly deps: Deps
  readonly owner: string
  readonly leaseMs: number
  readonly keeper: LeaseKeeper.LeaseKeeper
  readonly record: ReturnType<typeof RecordAttempt.make>
  readonly writeHeld: ReturnType<typeof HeldRow.writer>
}

/** Builds the delivery program over the outbox's journal, sender and configuration; its lease keeper lives in `scope`. */
export const make = (deps: Deps, scope: Scope.Scope): (claimed: Claimed) => Effect.Effect<Outcome> => {
  const leaseMs = Duration.toMillis(deps.config.leaseDuration)
  const program: Program = {
    deps,
    owner: deps.owner,
    leaseMs,
    keeper: LeaseKeeper.make(leaseMs / 2, scope),
    record: RecordAttempt.make(deps),
    writeHeld: HeldRow.writer(deps.journal)
  }
  return (claimed) => deliverEntry(program, claimed)
}

/**
 * One delivery of `claimed`; never fails: every failure is recorded and returned as an outcome. The lease keeper's
 * registration and the release of an interrupted row are one uninterruptible region around the attempt (the hot
 * path of every delivery: one region rather than an `acquireUseRelease` and an `onInterrupt` layered).
 */
const deliverEntry = (p: Program, claimed: Claimed): Effect.Effect<Outcome> =>
  traced(claimed)(Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.uninterruptibleMask((restore) => {
      const held: Held = { entry: claimed.entry }
      const flags: AttemptFlags = { calling: false, possibleDuplicate: false }
      const lease = p.keeper.register(renewLease(p, held), now)
      return Effect.zipRight(
        lease.start,
        Effect.matchCauseEffect(restore(attemptSend(p, held, claimed, flags, now)), {
          onFailure: (cause) => {
            lease.release()
            // before any adapter call nothing can have reached the channel: the row goes back, claimable at once
            return flags.calling || !Cause.isInterruptedOnly(cause)
              ? Effect.failCause(cause)
              : Effect.zipRight(releaseInterrupted(p, held), Effect.failCause(cause))
          },
          onSuccess: (attempt): Effect.Effect<Outcome> => {
            lease.release()
            if (attempt._tag === "LeaseLost") {
              return Effect.as(
                annotated(claimed.entry)(Effect.logWarning(
                  `entry ${claimed.entry.id}: its lease was taken over while it was delivered; stopped`
                )),
                { _tag: "LeaseLost", finished: false, possibleDuplicate: flags.possibleDuplicate } as const
              )
            }
            return Effect.map(
              restore(p.record(held, attempt)),
              (result) => ({ ...result, possibleDuplicate: flags.possibleDuplicate })
            )
          }
        })
      )
    })))

/** Puts back a row whose delivery was interrupted before any adapter call (a failure is logged and counted). */
const releaseInterrupted = (p: Program, held: Held) =>
  Effect.catchAll(p.writeHeld(held, Machine.EntryEvent.Release({ owner: p.owner })), (error) =>
    Effect.zipRight(
      Metric.increment(Metrics.writeFailures("release")),
      annotated(held.entry)(
        Effect.logWarning(`could not release the row (it is retried after its lease): ${error.message}`)
      )
    ))

/** Extends the held row's lease by a full lease from now (the keeper calls it every half lease). */
const renewLease = (p: Program, held: Held) =>
  Effect.flatMap(
    Clock.currentTimeMillis,
    (now) => p.writeHeld(held, Machine.EntryEvent.Renew({ owner: p.owner, leaseUntil: now + p.leaseMs }))
  ).pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(
        Metric.increment(Metrics.writeFailures("renew")),
        annotated(held.entry)(Effect.logWarning(`could not renew the lease: ${error.message}`))
      )
    ),
    Effect.asVoid
  )

/** Everything up to the adapter's last answer (`LeaseLost` when the lease was lost on the way). */
const attemptSend = (
  p: Program,
  held: Held,
  claimed: Claimed,
  flags: AttemptFlags,
  now: number
): Effect.Effect<Attempt> =>
  Effect.gen(function*() {
    const entry = claimed.entry
    const pendingAck = p.deps.pendingAcks.get(entry.id)
    if (pendingAck !== undefined) {
      // it went out already: only its ack is missing
      const parts = pendingAck.partsDelivered
      return { _tag: "Sent", report: { entryId: entry.id, partsTotal: parts, partsDelivered: parts, outcomes: [] } }
    }
    if (entry.kind !== "final" && !claimed.live) {
      // progress messages are only meaningful live; replaying them after the fact confuses the chat
      return yield* skip("non_final_recovery_skip", `a ${entry.kind} message is not replayed by recovery`)
    }
    const channel = yield* Effect.either(p.deps.registry.get(entry.channel))
    if (Either.isLeft(channel)) return yield* skip("unknown_channel", channel.left.message)
    if (entry.expiresAt !== null && entry.expiresAt <= now && p.deps.config.expireAction === "fail") {
      return { _tag: "Expired" }
    }
    if (claimed.reclaimed) {
      const settled = yield* reconcile(p, held, channel.right, flags)
      if (settled !== undefined) return settled
    }
    const current = held.entry
    const gate = p.deps.limiter.gate(current, channel.right, claimed.live)
    const onCall = Effect.sync(() => void (flags.calling = true))
    return yield* p.deps.sender.send<LeaseLost | Postponed>(current, channel.right, {
      attempt: current.attemptCount + 1,
      // a crash after this write replays only the parts not yet accepted
      onProgress: (partsDelivered) => progress(p, held, partsDelivered),
      // a call may reach the channel once the part has its token (before, an interruption releases the row)
      parts: { before: (i) => Effect.zipRight(gate.before(i), onCall), failed: gate.failed }
    }).pipe(
      Effect.matchEffect({
        onSuccess: (report): Effect.Effect<Attempt> => Effect.succeed({ _tag: "Sent", report }),
        onFailure: (error): Effect.Effect<Attempt> =>
          Effect.succeed(
            error instanceof LeaseLost
              ? error
              : error instanceof Postponed
              ? { _tag: "Postponed", until: error.until, claimAt: error.claimAt }
              : { _tag: "SendFailed", error }
          )
      })
    )
  })

/** A `Progress` write; a store failure is logged and counted (the send goes on), a lost lease stops the send. */
const progress = (p: Program, held: Held, partsDelivered: number): Effect.Effect<void, LeaseLost> =>
  p.writeHeld(held, Machine.EntryEvent.Progress({ owner: p.owner, partsDelivered })).pipe(
    Effect.catchAll((error) =>
      Effect.as(
        Effect.zipRight(
          Metric.increment(Metrics.writeFailures("progress")),
          annotated(held.entry)(Effect.logWarning(
            `could not record ${partsDelivered} parts delivered (a crash now would resend them): ${error.message}`
          ))
        ),
        true
      )
    ),
    Effect.flatMap((written) => (written ? Effect.void : Effect.fail(new LeaseLost())))
  )

/**
 * Asks the adapter whether the part in flight at the crash went out. "sent" settles that part alone and the rest are
 * sent; "unknown" (or no reconcile) replays it and counts a possible duplicate. `undefined`: go on sending.
 */
const reconcile = (
  p: Program,
  held: Held,
  channel: Channel,
  flags: AttemptFlags
): Effect.Effect<Attempt | undefined> =>
  Effect.gen(function*() {
    const entry = held.entry
    const verdict = yield* p.deps.sender.reconcile(entry, channel, { attempt: entry.attemptCount + 1 })
    if (verdict === "unknown") {
      flags.possibleDuplicate = true
      yield* Metric.increment(Metrics.possibleDuplicates)
      yield* annotated(entry)(
        Effect.logWarning(`entry ${entry.id} was in flight when its owner stopped; replayed (possible duplicate)`)
      )
      return undefined
    }
    if (verdict === "not_sent") return undefined
    const total = p.deps.sender.plan(entry, channel).parts.length
    const settled = Math.min(total, entry.partsDelivered + 1)
    if (settled >= total) {
      return {
        _tag: "Sent",
        report: { entryId: entry.id, partsTotal: total, partsDelivered: total, outcomes: [] }
      } satisfies Attempt
    }
    const moved = yield* Effect.either(progress(p, held, settled))
    return Either.isLeft(moved) ? moved.left : undefined
  })
