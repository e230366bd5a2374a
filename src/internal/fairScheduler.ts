/**
 * The scheduler of the outbox's own fibers (deliveries, the journal, lanes, the worker) and of callers while they are
 * inside `deliver`, `enqueue` or a pass: it runs their steps as microtasks, like Effect's default scheduler, until
 * they have held the loop for a few milliseconds, then lets Node's event loop turn (`setImmediate`) before going on.
 * Effect's default scheduler chains up to 2,048 microtask rounds before a macrotask, so under load the gateway's
 * timers and sockets waited 0.5–4 s; sliced, the longest gap is a slice plus the longest single step (a batch's
 * synchronous SQL).
 */
import * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type * as Scheduler from "effect/Scheduler"

/** How long one slice may run before the event loop gets a turn. */
const SLICE_MS = 4

const make = (): Scheduler.Scheduler => {
  let queue: Array<Scheduler.Task> = []
  let head = 0
  let scheduled = false
  // when the event loop last had a turn (as far as this scheduler knows): until a slice's budget is spent, tasks run
  // as microtasks, as on Effect's default scheduler, so a light load (and a TestClock's idle check) sees no extra hop
  let sliceStart = performance.now()
  // when the queue last ran dry: a task arriving after a pause starts a fresh slice (the outbox was not holding the loop)
  let idleSince = sliceStart
  const slice = () => {
    const until = sliceStart + SLICE_MS
    while (head < queue.length) {
      queue[head++]!()
      if (performance.now() >= until) break
    }
    if (head < queue.length) {
      // drop what ran, so the array does not grow without bound under a steady load
      if (head > 1024) {
        queue = queue.slice(head)
        head = 0
      }
      setImmediate(afterTurn)
      return
    }
    queue = []
    head = 0
    scheduled = false
    idleSince = performance.now()
  }
  const afterTurn = () => {
    sliceStart = performance.now()
    slice()
  }
  return {
    shouldYield: (fiber) =>
      fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
        ? fiber.getFiberRef(FiberRef.currentSchedulingPriority)
        : false,
    scheduleTask: (task) => {
      queue.push(task)
      if (scheduled) return
      scheduled = true
      const now = performance.now()
      if (now - idleSince > 1) sliceStart = now
      if (now - sliceStart < SLICE_MS) queueMicrotask(slice)
      else setImmediate(afterTurn)
    }
  }
}

/** One scheduler for every outbox in the process: slices are fair across them. */
const fair = make()

/**
 * Runs `effect`, and the fibers it forks, on the time-sliced scheduler. What `Effect.withScheduler` does, in fewer
 * steps (it wraps every `deliver` and `enqueue`): nothing when the fiber is on it already, else set, yield (so the
 * caller's first steps are a task of this scheduler), and put back when `effect` ends.
 */
export const onFairScheduler = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withFiberRuntime((fiber) => {
    const previous = fiber.getFiberRef(FiberRef.currentScheduler)
    if (previous === fair) return effect
    // (an interruption between the two steps leaves the fiber on this scheduler: a scheduler like Effect's, only fairer)
    return Effect.zipRight(
      FiberRef.set(FiberRef.currentScheduler, fair),
      // the caller's fiber runs on in the task that called it until it suspends (512 callers forked at once ran their
      // validation and intake in one 27 ms microtask chain): a yield makes its first steps a task of this scheduler
      Effect.onExit(Effect.zipRight(Effect.yieldNow(), effect), () => FiberRef.set(FiberRef.currentScheduler, previous))
    )
  })
