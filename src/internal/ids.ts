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

/** Makes an id generator; ids from one generator are strictly increasing, also within one millisecond. */
export const makeEntryIdGenerator: Effect.Effect<Effect.Effect<EntryId>> = Effect.sync(() => {
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
  return Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    if (now > lastMs) {
      lastMs = now
      for (let i = 0; i < 16; i++) random[i] = yield* Random.nextIntBetween(0, 32)
      // leave headroom so increments within one millisecond never overflow
      random[0] = random[0]! % 16
    } else {
      increment()
    }
    return (encodeTime(lastMs) + random.map((d) => ALPHABET[d]).join("")) as EntryId
  })
})
