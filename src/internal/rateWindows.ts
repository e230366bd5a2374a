/**
 * The per-recipient windows of the rate limiter ("at most `count` sends to one recipient in any `per`"): each
 * recipient's recent send times, kept in this process, and a lock so that two threads of one chat (two lanes) take
 * the recipient's windows one after the other. Recipients nobody sends to and whose windows have all passed are
 * forgotten when the map has doubled since the last sweep, so memory follows the recipients active in the longest
 * window, not every recipient ever seen.
 */
import * as Effect from "effect/Effect"
import type { Window } from "../RateLimits.js"

/** A recipient's recent sends, taken under its lock. */
export interface Recipient {
  readonly times: Array<number>
  readonly lock: Effect.Semaphore
  users: number
  keepUntil: number
}

/** The windows of every recipient this process sends to. */
export interface Recipients {
  /** Runs `use` with the recipient `key` held (its lock taken), the recipient counted as in use meanwhile. */
  readonly with: <A, E, R>(key: string, use: (recipient: Recipient) => Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

/** The earliest time at or after `now` the recipient's `windows` allow its next send. */
export const earliest = (recipient: Recipient, windows: ReadonlyArray<Window>, now: number): number => {
  let at = now
  const { times } = recipient
  for (const w of windows) if (times.length >= w.count) at = Math.max(at, times[times.length - w.count]! + w.perMs)
  return at
}

/** Records a send at `at` (keeping only as many times as the largest window counts). */
export const recordSend = (recipient: Recipient, windows: ReadonlyArray<Window>, at: number): void => {
  let keep = 0
  let longest = 0
  for (const w of windows) {
    keep = Math.max(keep, w.count)
    longest = Math.max(longest, w.perMs)
  }
  recipient.times.push(at)
  if (recipient.times.length > keep) recipient.times.splice(0, recipient.times.length - keep)
  recipient.keepUntil = at + longest
}

/** Makes the recipients' windows; `now` is the clock's time (for the sweep). */
export const make = (now: () => number): Recipients => {
  const recipients = new Map<string, Recipient>()
  let sweepAt = 1024

  const sweep = () => {
    const at = now()
    for (const [key, r] of recipients) if (r.users === 0 && r.keepUntil <= at) recipients.delete(key)
    sweepAt = Math.max(1024, recipients.size * 2)
  }

  const acquire = (key: string): Recipient => {
    let recipient = recipients.get(key)
    if (recipient === undefined) {
      if (recipients.size >= sweepAt) sweep()
      recipient = { times: [], lock: Effect.unsafeMakeSemaphore(1), users: 0, keepUntil: 0 }
      recipients.set(key, recipient)
    }
    recipient.users++
    return recipient
  }

  return {
    with: (key, use) =>
      Effect.suspend(() => {
        const recipient = acquire(key)
        return recipient.lock.withPermits(1)(use(recipient)).pipe(
          Effect.ensuring(Effect.sync(() => void recipient.users--))
        )
      })
  }
}
