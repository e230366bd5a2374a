/**
 * One plugin call, whatever the method returns (a Promise or thenable, an Effect, a plain value, or a throw): the
 * abort signal it is given, its deadline, and every failure classified as a `SendError`.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import type { CallDeadline, CallOptions, SendContext } from "../ChannelAdapter.js"
import { SendError } from "../DeliveryError.js"
import { classify } from "./classify.js"
import * as Deadlines from "./Deadlines.js"

/** The `then` of a thenable, read once; reading it may throw (a getter, a Proxy). */
const thenOf = (u: unknown): unknown =>
  (typeof u === "object" || typeof u === "function") && u !== null ? (u as { then?: unknown }).then : undefined

/**
 * `classify`, also for a failure that throws when it is read (a `message` getter that throws, a hostile Proxy):
 * that is still the plugin's send failing, never a defect or, inside a Promise callback, an unhandled rejection.
 */
const classifySafely = (error: unknown): SendError => {
  try {
    return classify(error)
  } catch (inner) {
    return new SendError({
      message: `adapter failed with an error that could not be read (${unreadable(inner)})`,
      retryable: true
    })
  }
}

const unreadable = (u: unknown): string => {
  try {
    return u instanceof Error ? u.message : String(u)
  } catch {
    return "reading it threw too"
  }
}

/**
 * An adapter's own Effect classified: its failure (the first, as `mapError` takes it) or else its defect becomes a
 * `SendError`, and so does an Effect that interrupted itself. An interruption from outside (the send timeout) is not
 * caught: no handler runs for it.
 */
const classified = (cause: Cause.Cause<unknown>): Effect.Effect<never, SendError> => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return Effect.fail(classifySafely(failure.value))
  const defect = Cause.dieOption(cause)
  if (Option.isSome(defect)) return Effect.fail(classifySafely(defect.value))
  return Cause.isInterruptedOnly(cause)
    ? Effect.fail(new SendError({ message: "the adapter's Effect interrupted itself", retryable: true }))
    : Effect.failCause(cause as Cause.Cause<never>)
}

/**
 * Calls a plugin method, whatever it returns (a Promise or thenable, an Effect, or a plain value), with an abort
 * signal that fires when the call is interrupted or passes its deadline, and classifies every failure. A Promise's
 * deadline is armed here, with no fiber of its own; an Effect's runs under `Deadlines.within`.
 */
export const call = (
  method: (ctx: SendContext, options: CallOptions) => unknown,
  ctx: SendContext,
  deadline: CallDeadline | undefined
): Effect.Effect<unknown, SendError> =>
  Effect.suspend(() => {
    // the signal is made when the plugin reads it (most never do): an AbortController is an EventTarget, the
    // costliest object of a call; one read after the abort gets an aborted signal
    let controller: AbortController | undefined
    let aborted = false
    const abort = () => {
      aborted = true
      controller?.abort()
    }
    const options: CallOptions = {
      get signal() {
        if (controller === undefined) {
          controller = new AbortController()
          if (aborted) controller.abort()
        }
        return controller.signal
      }
    }
    let out: unknown
    let then: unknown
    try {
      out = method(ctx, options)
      then = Effect.isEffect(out) ? undefined : thenOf(out)
    } catch (error) {
      return Effect.fail(classifySafely(error))
    }
    if (Effect.isEffect(out)) {
      // an Effect that is already its result (`Effect.succeed`, `Effect.fail`) cannot hang: no deadline, no fiber
      if (Exit.isExit(out)) return Exit.isSuccess(out) ? out as Exit.Exit<unknown> : classified(out.cause)
      // Effect-native adapters are typed to need no services; a defect inside one is still a send failure
      const effect = Effect.catchAllCause(out as Effect.Effect<unknown, unknown>, classified)
      return deadline === undefined ? effect : Deadlines.within(effect, deadline)
    }
    if (typeof then !== "function") return Effect.succeed(out)
    return Effect.async<unknown, SendError>((resume) => {
      let done = false
      const settle = (result: Effect.Effect<unknown, SendError>) => {
        if (done) return
        done = true
        disarm()
        resume(result)
      }
      const disarm = deadline === undefined ? () => {} : deadline.arm(() => {
        if (done) return
        done = true
        abort()
        resume(Effect.fail(deadline.error()))
      })
      try {
        then.call(
          out,
          (value: unknown) => settle(Effect.succeed(value)),
          (error: unknown) => settle(Effect.fail(classifySafely(error)))
        )
      } catch (error) {
        // a thenable whose `then` throws
        settle(Effect.fail(classifySafely(error)))
      }
      return Effect.sync(() => {
        // interrupted (a shutdown, the caller): the plugin's call is aborted
        done = true
        disarm()
        abort()
      })
    })
  })
