/**
 * The lease keeper: one fiber renews the leases of the rows being delivered, each once it has run half a lease since
 * its last renewal, so no worker takes a row however slow its channel is. It sleeps until the earliest renewal is due
 * and runs only while a delivery is registered: an idle outbox keeps no timer (a gateway's tests can move a TestClock
 * by days without waking it), and a delivery costs a map entry, not a fiber and a timer of its own.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

/** Registers a delivery's renewal for as long as it runs. */
export interface LeaseKeeper {
  /**
   * Registers `renew`, to be called every half lease from `now` until `release` (call both from one uninterruptible
   * region, so a registration is never left behind); the effect starts the keeper's fiber when it is not running.
   */
  readonly register: (
    renew: Effect.Effect<void>,
    now: number
  ) => { readonly start: Effect.Effect<void>; readonly release: () => void }
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

  // a keeper that dies lets the next registration start another
  const keeper = Effect.interruptible(loop).pipe(Effect.onExit(() => Effect.sync(() => void (running = false))))
  const startKeeper = Effect.asVoid(Effect.forkIn(keeper, scope))

  return {
    register: (renew, now) => {
      const entry: Held = { renew, renewedAt: now }
      held.add(entry)
      const release = () => void held.delete(entry)
      if (running) return { start: Effect.void, release }
      running = true
      return { start: startKeeper, release }
    }
  }
}
