/**
 * The row decode (`fromRow`, through the entry Schema): stored entries of every shape read back to the entry written,
 * and a row corrupted in any column decodes or fails with a message naming the row, never throws.
 */
import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import type { EntryId, OutboxEntry } from "../../src/Delivery.js"
import { DispatchKind, EntryState, TerminalReason } from "../../src/Delivery.js"
import type { Row } from "../../src/internal/rowCodec.js"
import { fromRow, ROW_COLUMNS, rowFromValues, toRow } from "../../src/internal/rowCodec.js"

const fc = FastCheck
const ABSENT = Symbol("absent")
const opt = <A>(arb: FastCheck.Arbitrary<A>) => fc.option(arb, { nil: ABSENT, freq: 2 })
/** drops the fields `opt` left absent */
const compact = <A extends Record<string, unknown>>(fields: A): A =>
  Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== ABSENT)) as A

const text = fc.string({ unit: "binary", maxLength: 20 })
const time = fc.integer({ min: 0, max: 2 ** 42 })
const nullableTime = fc.option(time, { nil: null })
const record = fc.oneof(
  // as JSON reads it back (-0 becomes 0)
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 })).map((r): Record<string, unknown> =>
    JSON.parse(JSON.stringify(r))
  ),
  fc.constant(JSON.parse(`{"__proto__":{"polluted":true},"x":1}`) as Record<string, unknown>)
)
const payload = fc.record({
  text: opt(text.filter((t) => t.length > 0)),
  mediaUrls: opt(fc.array(fc.constantFrom("https://example.com/a.png", "file:///tmp/b.jpg"), { maxLength: 2 })),
  channelData: opt(record)
}).map((p): Record<string, unknown> => compact(p)).filter((p) =>
  typeof p.text === "string" || (Array.isArray(p.mediaUrls) && p.mediaUrls.length > 0) || p.channelData !== undefined
)

/** Entries of every shape the store holds: optional fields present or not, every state, kind and reason. */
const entry: FastCheck.Arbitrary<OutboxEntry> = fc.record({
  id: fc.stringMatching(/^[0-9A-Z]{26}$/),
  channel: text.filter((t) => t.length > 0),
  to: text.filter((t) => t.length > 0),
  accountId: opt(text),
  threadId: opt(text),
  replyToId: opt(text),
  payloads: fc.array(payload, { minLength: 1, maxLength: 3 }),
  kind: fc.constantFrom(...DispatchKind.literals),
  bestEffort: fc.boolean(),
  idempotencyKey: opt(text),
  silent: opt(fc.boolean()),
  metadata: opt(record),
  state: fc.constantFrom(...EntryState.literals),
  attemptCount: fc.integer({ min: 0, max: 5 }),
  partsDelivered: fc.integer({ min: 0, max: 5 }),
  deliveredParts: opt(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 3 })),
  enqueuedAt: time,
  nextAttemptAt: nullableTime,
  lastAttemptAt: nullableTime,
  deliveredAt: nullableTime,
  expiresAt: nullableTime,
  lastError: fc.option(text, { nil: null }),
  terminalReason: fc.option(fc.constantFrom(...TerminalReason.literals), { nil: null }),
  leaseOwner: fc.option(text, { nil: null }),
  leaseExpiresAt: nullableTime,
  updatedAt: time
}).map((fields) => ({ ...compact(fields), id: fields.id as EntryId }) as OutboxEntry)

/** A row as the driver returns it: the columns `toRow` writes, read back. */
const rowOf = (e: OutboxEntry): Row => ({ ...toRow(e) })

/** One column set to something the schema does not expect. */
const corruption = fc.tuple(
  fc.constantFrom(
    "id",
    "channel",
    "recipient",
    "account_id",
    "thread_id",
    "reply_to_id",
    "idempotency_key",
    "dispatch_kind",
    "payloads_json",
    "options_json",
    "state",
    "attempt_count",
    "parts_delivered",
    "delivered_parts",
    "enqueued_at",
    "next_attempt_at",
    "last_attempt_at",
    "delivered_at",
    "expires_at",
    "last_error",
    "terminal_reason",
    "lease_owner",
    "lease_expires_at",
    "updated_at"
  ),
  fc.constantFrom<unknown>(
    null,
    undefined,
    7,
    "7",
    "",
    "x",
    true,
    10n,
    "{",
    "[]",
    "{}",
    `[{"text":5}]`,
    `[{"mediaUrls":["nope"]}]`,
    `[]`,
    `{"bestEffort":"yes"}`,
    `{"bestEffort":true,"silent":1}`,
    `{"bestEffort":false,"metadata":[1]}`,
    "[1,\"a\"]",
    "queued",
    "cancelled",
    "final",
    "bogus"
  )
)

describe("rowCodec.fromRow", () => {
  it.prop("decodes every stored entry back to the entry written", [entry], ([e]) => {
    const row = rowOf(e)
    expect(fromRow(row)._tag).toBe("Right")
    if (fromRow(row)._tag === "Right") expect((fromRow(row) as { right: OutboxEntry }).right).toEqual(e)
  }, { fastCheck: { numRuns: 300 } })

  it.prop("a row corrupted in any column never throws: it decodes, or fails with a message naming the row", [
    entry,
    fc.array(corruption, { minLength: 1, maxLength: 3 })
  ], ([e, corruptions]) => {
    const row = rowOf(e)
    for (const [column, value] of corruptions) row[column] = value
    const decoded = fromRow(row)
    if (decoded._tag === "Left") expect(decoded.left).toMatch(/^row .* does not decode: /)
  }, { fastCheck: { numRuns: 500 } })

  it("reads a row given as values in ROW_SELECT order back to its columns", () => {
    expect(rowFromValues(ROW_COLUMNS)).toStrictEqual(Object.fromEntries(ROW_COLUMNS.map((column) => [column, column])))
  })
})
