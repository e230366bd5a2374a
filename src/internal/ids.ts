/** Monotonic ULIDs from Effect's Clock and Random, so ids sort by creation time and tests are deterministic. */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type { EntryId } from "../Delivery.js"

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

const encodeTime = (ms: number): string => {
  let out = ""
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32] + out
    ms = Math.floor(ms / 32)
  }
  return out
}

/** An id generator: `at(now)` is the next id for a time the caller read from the Clock; `next` reads it itself. */
export interface EntryIdGenerator {
  readonly next: Effect.Effect<EntryId>
  readonly at: (now: number) => Effect.Effect<EntryId>
}

/** Makes an id generator; ids from one generator are strictly increasing, also within one millisecond. */
export const makeEntryIdGenerator: Effect.Effect<EntryIdGenerator> = Effect.sync(() => {
  let lastMs = -1
  const random: Array<number> = new Array(16).fill(0)
  const increment = () => {
    for (let i = 15; i >= 0; i--) {
      if (random[i]! < 31) {
        random[i]!++
        return
      }
      random[i] = 0
    }
  }
  const encode = () => (encodeTime(lastMs) + random.map((d) => ALPHABET[d]).join("")) as EntryId
  const fresh = (now: number) =>
    Effect.gen(function*() {
      for (let i = 0; i < 16; i++) random[i] = yield* Random.nextIntBetween(0, 32)
      // leave headroom so increments within one millisecond never overflow
      random[0] = random[0]! % 16
      lastMs = now
      return encode()
    })
  // no generator on the common path (another id in the same millisecond, or a clock behind the last id)
  const at = (now: number): Effect.Effect<EntryId> => {
    if (now > lastMs) return fresh(now)
    increment()
    return Effect.succeed(encode())
  }
  return { at, next: Effect.flatMap(Clock.currentTimeMillis, at) }
})
