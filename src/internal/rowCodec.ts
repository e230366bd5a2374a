/** The mapping between `OutboxEntry` and the `outbox_entries` columns, shared by the SQL backends. */
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import type { EntryId, OutboxEntry } from "../Delivery.js"
import { formatParseError, orderingKey, OutboxEntry as OutboxEntrySchema } from "../Delivery.js"

/** A row as the driver returns it (numbers may come back as numbers or numeric strings on PostgreSQL). */
export type Row = Record<string, unknown>

/** The columns a transition may change (everything else is fixed at insert). */
export const mutableColumns = (e: OutboxEntry) => ({
  state: e.state,
  attempt_count: e.attemptCount,
  parts_delivered: e.partsDelivered,
  // NULL when there are none, the common case
  delivered_parts: e.deliveredParts !== undefined && e.deliveredParts.length > 0
    ? JSON.stringify(e.deliveredParts)
    : null,
  next_attempt_at: e.nextAttemptAt,
  last_attempt_at: e.lastAttemptAt,
  delivered_at: e.deliveredAt,
  expires_at: e.expiresAt,
  last_error: e.lastError,
  terminal_reason: e.terminalReason,
  lease_owner: e.leaseOwner,
  lease_expires_at: e.leaseExpiresAt,
  updated_at: e.updatedAt,
  // 1 exactly while nextAttemptAt is set (the row may still be sent); what the conversation and expiry indexes key on
  pending: e.nextAttemptAt !== null ? 1 : null
})
export type MutableColumns = ReturnType<typeof mutableColumns>

/** All columns of a new row. */
export const toRow = (e: OutboxEntry) => ({
  id: e.id as string,
  idempotency_key: e.idempotencyKey ?? null,
  channel: e.channel,
  account_id: e.accountId ?? null,
  recipient: e.to,
  thread_id: e.threadId ?? null,
  reply_to_id: e.replyToId ?? null,
  ordering_key: orderingKey(e),
  dispatch_kind: e.kind,
  payloads_json: JSON.stringify(e.payloads),
  options_json: JSON.stringify({
    bestEffort: e.bestEffort,
    ...(e.silent === undefined ? {} : { silent: e.silent }),
    ...(e.metadata === undefined ? {} : { metadata: e.metadata })
  }),
  enqueued_at: e.enqueuedAt,
  ...mutableColumns(e)
})

/**
 * Groups transitions by the set of column values they write, so a batch becomes one UPDATE per distinct change
 * (a claim or an ack of 100 rows is usually a single statement).
 */
export const groupChanges = (
  pairs: ReadonlyArray<readonly [before: OutboxEntry, after: OutboxEntry]>
): ReadonlyArray<{ readonly set: Partial<MutableColumns>; readonly ids: ReadonlyArray<EntryId> }> => {
  const groups = new Map<string, { set: Partial<MutableColumns>; ids: Array<EntryId> }>()
  // rows of a batch usually change the same way: compare with the last group before building a signature
  let last: { set: Partial<MutableColumns>; ids: Array<EntryId> } | undefined
  for (const [before, after] of pairs) {
    const b = mutableColumns(before)
    const a = mutableColumns(after)
    const set: Record<string, unknown> = {}
    let size = 0
    for (const key of Object.keys(a) as Array<keyof MutableColumns>) {
      if (a[key] !== b[key]) {
        set[key] = a[key]
        size++
      }
    }
    if (last !== undefined && sameSet(last.set, set, size)) {
      last.ids.push(after.id)
      continue
    }
    const signature = JSON.stringify(set)
    const group = groups.get(signature) ?? { set: set as Partial<MutableColumns>, ids: [] }
    group.ids.push(after.id)
    groups.set(signature, group)
    last = group
  }
  return [...groups.values()]
}

const sameSet = (x: Record<string, unknown>, y: Record<string, unknown>, ySize: number): boolean => {
  let n = 0
  for (const key in x) {
    if (!(key in y) || x[key] !== y[key]) return false
    n++
  }
  return n === ySize
}

const decodeEntry = Schema.decodeUnknownEither(OutboxEntrySchema)

const num = (
  u: unknown
): unknown => (typeof u === "string" && u !== "" && !isNaN(Number(u))
  ? Number(u)
  : typeof u === "bigint"
  ? Number(u)
  : u)
const numOrNull = (u: unknown): unknown => (u === null || u === undefined ? null : num(u))
const optional = <K extends string>(key: K, u: unknown): { [P in K]?: unknown } =>
  (u === null || u === undefined ? {} : { [key]: u }) as { [P in K]?: unknown }

const parseJson = (column: string, text: unknown): Either.Either<unknown, string> => {
  if (typeof text !== "string") return Either.left(`${column} is not text`)
  try {
    return Either.right(JSON.parse(text))
  } catch (error) {
    return Either.left(`${column} is not valid JSON (${error instanceof Error ? error.message : String(error)})`)
  }
}

const decodeWith = (row: Row, payloads: unknown, options: unknown): Either.Either<OutboxEntry, string> => {
  const opts = (typeof options === "object" && options !== null ? options : {}) as Record<string, unknown>
  return decodeEntry({
    id: row.id,
    channel: row.channel,
    to: row.recipient,
    ...optional("accountId", row.account_id),
    ...optional("threadId", row.thread_id),
    ...optional("replyToId", row.reply_to_id),
    payloads,
    kind: row.dispatch_kind,
    bestEffort: opts.bestEffort,
    ...optional("idempotencyKey", row.idempotency_key),
    ...optional("silent", opts.silent),
    ...optional("metadata", opts.metadata),
    state: row.state,
    attemptCount: num(row.attempt_count),
    partsDelivered: num(row.parts_delivered),
    ...optional("deliveredParts", typeof row.delivered_parts === "string" ? safeParse(row.delivered_parts) : undefined),
    enqueuedAt: num(row.enqueued_at),
    nextAttemptAt: numOrNull(row.next_attempt_at),
    lastAttemptAt: numOrNull(row.last_attempt_at),
    deliveredAt: numOrNull(row.delivered_at),
    expiresAt: numOrNull(row.expires_at),
    lastError: row.last_error ?? null,
    terminalReason: row.terminal_reason ?? null,
    leaseOwner: row.lease_owner ?? null,
    leaseExpiresAt: numOrNull(row.lease_expires_at),
    updatedAt: num(row.updated_at)
  }).pipe(Either.mapLeft(formatParseError))
}

const safeParse = (text: string): unknown => Either.getOrElse(parseJson("delivered_parts", text), () => text)

/** Decodes a row with the entry Schema; a row that no longer decodes yields a message naming what is wrong. */
export const fromRow = (row: Row): Either.Either<OutboxEntry, string> => decodeRow(row, decodeWith)

const decodeRow = (
  row: Row,
  decode: (row: Row, payloads: unknown, options: unknown) => Either.Either<OutboxEntry, string>
): Either.Either<OutboxEntry, string> => {
  const named = Either.mapLeft((message: string) => `row ${String(row.id)} does not decode: ${message}`)
  const decoded = named(
    Either.all([parseJson("payloads_json", row.payloads_json), parseJson("options_json", row.options_json)]).pipe(
      Either.flatMap(([payloads, options]) => decode(row, payloads, options))
    )
  )
  // a quarantined row keeps its broken data in the table for forensics, but must stay readable and listable
  const quarantined = row.state === "failed_terminal" && row.terminal_reason === "decode_error"
  return quarantined && Either.isLeft(decoded) ? named(decodeWith(row, [], { bestEffort: false })) : decoded
}

/** Every column of `outbox_entries`, in the order `rowFromValues` reads them. */
export const ROW_COLUMNS = [
  "id",
  "idempotency_key",
  "channel",
  "account_id",
  "recipient",
  "thread_id",
  "reply_to_id",
  "ordering_key",
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
  "updated_at",
  "pending"
] as const

/** The select list of a query read with `rowFromValues` (table alias `e`). */
export const ROW_SELECT = ROW_COLUMNS.map((column) => `e.${column}`).join(", ")

/** A row read as an array of values (the `ROW_SELECT` columns, in order), as the row object `fromRow` decodes. */
// a literal, not a loop over ROW_COLUMNS: V8 builds it at once instead of adding 26 keys one by one
export const rowFromValues = (values: ReadonlyArray<unknown>): Row => ({
  id: values[0],
  idempotency_key: values[1],
  channel: values[2],
  account_id: values[3],
  recipient: values[4],
  thread_id: values[5],
  reply_to_id: values[6],
  ordering_key: values[7],
  dispatch_kind: values[8],
  payloads_json: values[9],
  options_json: values[10],
  state: values[11],
  attempt_count: values[12],
  parts_delivered: values[13],
  delivered_parts: values[14],
  enqueued_at: values[15],
  next_attempt_at: values[16],
  last_attempt_at: values[17],
  delivered_at: values[18],
  expires_at: values[19],
  last_error: values[20],
  terminal_reason: values[21],
  lease_owner: values[22],
  lease_expires_at: values[23],
  updated_at: values[24],
  pending: values[25]
})
