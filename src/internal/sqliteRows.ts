/** What the SQLite store's statements share about rows: decoding, and batching of long id lists. */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { StoreError } from "../DeliveryError.js"
import type { Row } from "./rowCodec.js"
import { fromRow } from "./rowCodec.js"

/** How many ids one statement takes in its `IN (…)` list. */
export const IN_CHUNK = 500

/** `items` in consecutive slices of at most `size`. */
export const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** Decodes a row; one that does not decode fails `operation`. */
export const decodeOrFail = (operation: string) => (row: Row) =>
  Either.match(fromRow(row), {
    onLeft: (message) => Effect.fail(new StoreError({ operation, message })),
    onRight: Effect.succeed
  })
