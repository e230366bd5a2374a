/**
 * Reading an effect that is already done. `Effect.succeed` and `Effect.fail` values are `Exit`s, so a step that
 * completed at once (an adapter that answered synchronously) can be read here without running a fiber for it.
 */
import type * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"

/** Whether `effect` is already an `Exit`, typed with its own success and error. */
export const isCompleted = <A, E, R>(effect: Effect.Effect<A, E, R>): effect is Effect.Effect<A, E, R> & Exit.Exit<A, E> =>
  Exit.isExit(effect)

/** Whether `effect` already succeeded. */
export const isDone = <A, E, R>(effect: Effect.Effect<A, E, R>): effect is Effect.Effect<A, E, R> & Exit.Success<A, E> =>
  Exit.isExit(effect) && Exit.isSuccess(effect)
