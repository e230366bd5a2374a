/**
 * The lease keeper: one fiber renews the leases of the rows being delivered, each once it has run half a lease since
 * its last renewal, so no worker takes a row however slow its channel is. It sleeps until the earliest renewal is due
 * and runs only while a delivery is registered: an idle outbox keeps no timer (a gateway's tests can move a TestClock
 * by days without waking it), and a delivery costs a map entry, not a fiber and a timer of its own.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** Registers a delivery's renewal for as long as an effect runs. */
export interface LeaseKeeper {
  /** Runs `effect` with `renew` called every half lease (from its registration) until it ends. */
  readonly hold: <A, E, R>(renew: Effect.Effect<void>, effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

interface Held {
  readonly renew: Effect.Effect<void>
  renewedAt: number
}

/** Makes a keeper whose fiber lives in `scope`; `halfLeaseMs` is the time between two renewals of one row. */
export const make = (halfLeaseMs: number, scope: Scope.Scope): LeaseKeeper => {
  const held = new Set<Held>()
  let running = false

  const loop: Effect.Effect<void> = Effect.suspend(() => {
    // checked and cleared in one step: a registration after this starts a new keeper
    if (held.size === 0) {
      running = false
      return Effect.void
    }
    let next = Number.POSITIVE_INFINITY
    for (const h of held) next = Math.min(next, h.renewedAt + halfLeaseMs)
    return Clock.currentTimeMillis.pipe(
      Effect.flatMap((now) => Effect.sleep(Math.max(0, next - now))),
      Effect.zipRight(Clock.currentTimeMillis),
      Effect.flatMap((now) => {
        const due = [...held].filter((h) => now - h.renewedAt >= halfLeaseMs)
        for (const h of due) h.renewedAt = now
        return Effect.forEach(due, (h) => h.renew, { concurrency: "unbounded", discard: true })
      }),
      Effect.zipRight(Effect.suspend(() => loop))
    )
  })

  const register = (renew: Effect.Effect<void>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      const entry: Held = { renew, renewedAt: now }
      held.add(entry)
      if (running) return Effect.succeed(entry)
      running = true
      // a keeper that dies lets the next registration start another
      const keeper = Effect.interruptible(loop).pipe(Effect.onExit(() => Effect.sync(() => void (running = false))))
      return Effect.as(Effect.forkIn(keeper, scope), entry)
    })

  return {
    hold: (renew, effect) =>
      Effect.acquireUseRelease(register(renew), () => effect, (entry) => Effect.sync(() => void held.delete(entry)))
  }
}
