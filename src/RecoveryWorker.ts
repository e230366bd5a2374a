/**
 * The recovery worker: a scoped fiber that reclaims the leases of this node's previous boot at start, then
 * repeats `Outbox.runRecoveryPass` every interval. A failing pass is logged and counted; the loop never dies.
 * Closing the scope stops claiming and lets in-flight sends finish up to the grace period; sends still running
 * then are interrupted and their rows, still leased, are reclaimed at this node's next start.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Metrics from "./Metrics.js"
import { Outbox } from "./Outbox.js"
import { OutboxConfig } from "./OutboxConfig.js"

/** Runs the worker for as long as the layer's scope is open. */
export const layer: Layer.Layer<never, never, Outbox | OutboxConfig> = Layer.scopedDiscard(
  Effect.gen(function*() {
    const outbox = yield* Outbox
    const config = yield* OutboxConfig
    const stopping = yield* Deferred.make<void>()
    const stop = Deferred.isDone(stopping)

    // held by a running pass, so shutdown can wait for it (and only for it)
    const running = yield* Effect.makeSemaphore(1)

    const pass = outbox.runRecoveryPassUntil(stop).pipe(
      Effect.tap((report) =>
        report.claimed + report.expired + report.acksFlushed > 0 ? Effect.logDebug("recovery pass", report) : Effect.void
      ),
      Effect.catchAllCause((cause) =>
        Effect.zipRight(
          Metric.increment(Metrics.workerPassFailures),
          Effect.logWarning("recovery pass failed; the worker goes on", Cause.pretty(cause))
        )
      ),
      running.withPermits(1)
    )
    const start = outbox.reclaimPreviousBoots.pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("could not reclaim the previous boot's leases", Cause.pretty(cause)))
    )
    const loop = Effect.zipRight(start, pass.pipe(Effect.repeat(Schedule.spaced(config.workerInterval)))).pipe(
      Effect.annotateLogs({ module: "RecoveryWorker", owner: outbox.owner })
    )
    const fiber = yield* Effect.forkScoped(loop)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* Deferred.succeed(stopping, undefined)
        // a running pass sees `stop` and claims nothing more; the sends it started may finish within the grace
        const finished = yield* Effect.zipRight(running.withPermits(1)(Effect.void), outbox.awaitWorkerSends).pipe(
          Effect.timeout(config.shutdownGrace),
          Effect.option
        )
        if (Option.isNone(finished)) {
          yield* Effect.logWarning("in-flight sends did not finish within the shutdown grace; their rows are reclaimed at the next start")
          yield* outbox.interruptWorkerSends
        }
        yield* Fiber.interrupt(fiber)
      }).pipe(Effect.annotateLogs({ module: "RecoveryWorker" }))
    )
  })
)
