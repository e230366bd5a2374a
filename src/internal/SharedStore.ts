/**
 * What an outbox does for a store that several processes share (PostgreSQL): it heartbeats, so that another process's
 * start takes over only dead boots' leases, and it listens to the store's wake-ups (LISTEN/NOTIFY), so that another
 * process's enqueue or finished row wakes this worker at once. A store of one process (memory, SQLite) asks for neither.
 *
 * Each beat also takes over the leases of this node's earlier boots whose heartbeat has gone stale since (the worker's
 * start only takes those already stale then): a process killed and restarted at once left a fresh heartbeat behind,
 * and its rows come back within the staleness threshold and one beat, not at their lease's expiry (5 min by default).
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { StoreError } from "../DeliveryError.js"
import * as Metrics from "../Metrics.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"

/** Heartbeats `owner` now and every `heartbeatEveryMs`, and runs `signalWork` on each wake-up, in the current scope. */
export const keepAliveAndListen = (
  repo: OutboxRepoShape,
  owner: string,
  signalWork: Effect.Effect<void>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    if (repo.heartbeatEveryMs !== undefined) {
      // an owner is `${nodeId}/${bootId}`, and a nodeId holds no "/" (OutboxConfig refuses one)
      const nodeId = owner.slice(0, owner.indexOf("/"))
      const failed = (operation: string) => (error: StoreError) =>
        Effect.zipRight(
          Metric.increment(Metrics.writeFailures(operation)),
          Effect.logWarning(`${operation} failed: ${error.message}`)
        )
      // a failed heartbeat is logged and counted, and tried again at the next beat
      const beat = Effect.flatMap(Clock.currentTimeMillis, (now) => repo.heartbeat(owner, now)).pipe(
        Effect.catchAll(failed("heartbeat"))
      )
      const reclaim = Effect.flatMap(
        Clock.currentTimeMillis,
        (now) => repo.reclaimPreviousBoots({ nodeId, owner, now })
      )
        .pipe(
          Effect.flatMap((ids) =>
            ids.length === 0 ? Effect.void : Effect.zipRight(
              Effect.logWarning(`reclaimed ${ids.length} rows left in flight by a dead boot of ${nodeId}`),
              signalWork
            )
          ),
          Effect.catchAll(failed("reclaim"))
        )
      yield* beat
      yield* Effect.forkScoped(
        Effect.repeat(Effect.zipRight(beat, reclaim), Schedule.spaced(Duration.millis(repo.heartbeatEveryMs))).pipe(
          Effect.annotateLogs({ module: "Outbox" })
        )
      )
    }
    if (repo.wakeups !== undefined) {
      // a dropped or ended notification stream is listened to again; the worker's interval covers what was missed
      yield* Stream.runForEach(repo.wakeups, () => signalWork).pipe(
        Effect.zipRight(Effect.fail(new StoreError({ operation: "listen", message: "the notification stream ended" }))),
        Effect.tapError((error) =>
          Effect.logWarning(`wake-up notifications dropped; listening again: ${error.message}`)
        ),
        Effect.retry(Schedule.exponential("500 millis").pipe(Schedule.union(Schedule.spaced("30 seconds")))),
        Effect.annotateLogs({ module: "Outbox" }),
        Effect.forkScoped
      )
    }
  })
