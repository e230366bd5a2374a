/**
 * The recovery worker: a scoped fiber that reclaims the leases of this node's previous boot at start, then runs a
 * pass every interval (expiring, pruning, claiming) and whenever this process enqueues or finishes a row (claiming).
 * A pass returns once it has started the rows it claimed, without waiting for their sends, so the next wake-up is
 * taken at once. A failing pass is logged and counted; the loop never dies. Closing the scope stops claiming and lets
 * every delivery in progress (the worker's and live ones) finish within `shutdownGrace`; sends still running then are
 * interrupted and their rows, still in flight under this process's lease, are reclaimed at this node's next start.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import { onFairScheduler } from "./internal/fairScheduler.js"
import * as Metrics from "./Metrics.js"
import { Outbox } from "./Outbox.js"
import { OutboxConfig } from "./OutboxConfig.js"

/** Runs the worker for as long as the layer's scope is open. */
export const layer: Layer.Layer<never, never, Outbox | OutboxConfig> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const outbox = yield* Outbox
    const config = yield* OutboxConfig

    const pass = (run: typeof outbox.runRecoveryPass) =>
      run.pipe(
        Effect.tap((report) =>
          report.claimed + report.expired + report.acksFlushed > 0
            ? Effect.logDebug("recovery pass", report)
            : Effect.void
        ),
        Effect.catchAllCause((cause) =>
          Effect.zipRight(
            Metric.increment(Metrics.workerPassFailures),
            Effect.logWarning("recovery pass failed; the worker goes on", Cause.pretty(cause))
          )
        )
      )
    const start = outbox.reclaimPreviousBoots.pipe(
      Effect.catchAllCause((cause) =>
        Effect.logWarning("could not reclaim the previous boot's leases", Cause.pretty(cause))
      )
    )
    // a pass every interval (it expires and prunes then); in between, one as soon as there is work (an enqueued row,
    // a finished one)
    const untilInterval = Effect.raceFirst(
      Effect.forever(Effect.zipRight(outbox.awaitWork, pass(outbox.runClaimPass))),
      Effect.sleep(config.workerInterval)
    )
    const loop = Effect.zipRight(start, Effect.forever(Effect.zipRight(pass(outbox.runClaimPass), untilInterval)))
      .pipe(
        Effect.annotateLogs({ module: "RecoveryWorker", owner: outbox.owner })
      )
    const fiber = yield* Effect.forkScoped(onFairScheduler(loop))

    yield* Effect.addFinalizer(() =>
      // a pass claims and starts its rows in one uninterruptible step, so stopping it strands no claimed row
      Effect.zipRight(Fiber.interrupt(fiber), outbox.drain(config.shutdownGrace)).pipe(
        Effect.annotateLogs({ module: "RecoveryWorker" })
      )
    )
  })
)
