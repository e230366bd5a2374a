/**
 * Spans on the delivery path are made only when the fiber's tracer is not Effect's built-in one: the built-in tracer
 * keeps spans that nothing exports or reads, and three spans per delivery cost it about a fifth of its CPU
 * (BENCHMARKS.md). With OpenTelemetry (`OutboxTelemetry`) or any other tracer installed, every span is made.
 */
import * as Effect from "effect/Effect"
import type * as Tracer from "effect/Tracer"

const builtIn: Tracer.Tracer = Effect.runSync(Effect.tracer)

/** `traced(effect)` when a tracer that exports spans is installed, else `effect` as it is. */
export const whenTraced = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  traced: (effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> => Effect.tracerWith((tracer) => tracer === builtIn ? effect : traced(effect))

/** `Effect.withSpan` for the delivery path: see the module doc. */
export const withSpan =
  (name: string, options?: Tracer.SpanOptions) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    whenTraced(effect, (e) => Effect.withSpan(e, name, options))
