/**
 * What the PostgreSQL store's statements share about rows: the select list that reads a row as the row codec wants
 * it, decoding, batching of long id lists, and the advisory lock namespace of conversations.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { StoreError } from "../DeliveryError.js"
import { fromRow, ROW_COLUMNS, rowFromValues } from "./rowCodec.js"

/** Advisory lock namespace of conversation keys (two-key form: apart from the gateway's own one-key locks). */
export const CONVERSATION_LOCK = 0x6f627831 // "obx1"

const BIGINT_COLUMNS = new Set<string>([
  "enqueued_at",
  "next_attempt_at",
  "last_attempt_at",
  "delivered_at",
  "expires_at",
  "lease_expires_at",
  "updated_at"
])

/**
 * The columns of a row over `outbox_entries e`, in `ROW_COLUMNS` order. bigint comes back from pg as a string and
 * jsonb as a parsed object; the row codec wants numbers and JSON text.
 */
export const SELECT = ROW_COLUMNS.map((c) =>
  BIGINT_COLUMNS.has(c) ? `e.${c}::float8 AS ${c}` : c.endsWith("_json") ? `e.${c}::text AS ${c}` : `e.${c}`
).join(", ")

/** How many rows or ids one statement takes. */
export const CHUNK = 1000

/** `items` in consecutive slices of at most `size`. */
export const chunks = <A>(items: ReadonlyArray<A>, size: number): Array<ReadonlyArray<A>> => {
  const out: Array<ReadonlyArray<A>> = []
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size))
  return out
}

/** Decodes a row read with `SELECT` as values; one that does not decode fails `operation`. */
export const decodeOrFail = (operation: string) => (values: ReadonlyArray<unknown>) =>
  Either.match(fromRow(rowFromValues(values)), {
    onLeft: (message) => Effect.fail(new StoreError({ operation, message })),
    onRight: Effect.succeed
  })
