/**
 * The SQLite store's leases: the claim of conversation heads in one write transaction, and the reclaim of this node's
 * earlier boots' rows. One gateway holds a file, so there are no other live boots to tell apart.
 */
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { EntryId, OutboxEntry } from "../Delivery.js"
import type { EntryEvent } from "../EntryStateMachine.js"
import * as Machine from "../EntryStateMachine.js"
import type { ClaimedEntry, MalformedRow, OutboxRepoShape } from "../OutboxRepo.js"
import type { Row } from "./rowCodec.js"
import { fromRow, ROW_COLUMNS, ROW_SELECT, rowFromValues } from "./rowCodec.js"
import type { SqliteContext } from "./sqliteContext.js"
import { run } from "./sqliteContext.js"
import { chunks, IN_CHUNK } from "./sqliteRows.js"

/** Decodes claimed rows and runs the Claim transition on each; a row that does not decode is reported, not leased. */
const claimRows = (rows: ReadonlyArray<Row>, event: EntryEvent, now: number) => {
  const pairs: Array<readonly [OutboxEntry, OutboxEntry]> = []
  const malformed: Array<MalformedRow> = []
  for (const row of rows) {
    const decoded = fromRow(row)
    if (Either.isLeft(decoded)) {
      malformed.push({ id: String(row.id) as EntryId, message: decoded.left })
      continue
    }
    const next = Machine.transition(decoded.right, event, now)
    if (Either.isRight(next)) pairs.push([decoded.right, next.right])
  }
  return { pairs, malformed }
}

/** `OutboxRepoShape.claim`: the due conversation heads, leased in one write transaction. */
export const claim =
  ({ sql, writeTx }: SqliteContext): OutboxRepoShape["claim"] => ({ leaseMs, limit, now, orderingKeys, owner }) =>
    writeTx(Effect.gen(function*() {
      // the oldest pending row of each conversation is its head; only heads are claimable
      // read as arrays: better-sqlite3 builds a row object at about 4 µs, half the cost of the whole query per row
      const values = yield* sql`SELECT ${sql.literal(ROW_SELECT)},
            EXISTS (SELECT 1 FROM outbox_entries n WHERE n.ordering_key = e.ordering_key AND n.pending = 1
              AND (n.enqueued_at, n.id) > (e.enqueued_at, e.id)) AS followed
          FROM outbox_entries e
          WHERE e.next_attempt_at IS NOT NULL AND e.next_attempt_at <= ${now}
            ${orderingKeys === undefined ? sql`` : sql`AND e.ordering_key IN ${sql.in(orderingKeys)} AND e.pending = 1`}
            AND NOT EXISTS (
              SELECT 1 FROM outbox_entries p
              WHERE p.ordering_key = e.ordering_key AND p.pending = 1
                AND (p.enqueued_at, p.id) < (e.enqueued_at, e.id))
          ORDER BY e.next_attempt_at, e.id
          LIMIT ${limit}`.values
      const claim = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
      const { malformed, pairs } = claimRows(values.map(rowFromValues), claim, now)
      const followed = new Set(values.filter((v) => v[ROW_COLUMNS.length] === 1).map((v) => String(v[0])))
      // every accepted row gets the same columns: one UPDATE, without diffing each row's before and after
      const set = Machine.claimWrite(claim, now)
      for (const ids of chunks(pairs.map(([, after]) => after.id), IN_CHUNK)) {
        yield* sql`UPDATE outbox_entries SET state = ${set.state}, lease_owner = ${set.leaseOwner},
            lease_expires_at = ${set.leaseExpiresAt}, next_attempt_at = ${set.nextAttemptAt},
            last_attempt_at = ${set.lastAttemptAt}, updated_at = ${set.updatedAt}
            WHERE id IN ${sql.in(ids)}`
      }
      const claimed: Array<ClaimedEntry> = pairs.map(([before, after]) => ({
        entry: after,
        reclaimed: before.state === "in_flight",
        followed: followed.has(after.id)
      }))
      return { claimed, malformed }
    })).pipe(run("claim"))

/** `OutboxRepoShape.reclaimPreviousBoots`: this node's rows leased by its earlier boots, due at once. */
export const reclaimPreviousBoots =
  ({ sql }: SqliteContext): OutboxRepoShape["reclaimPreviousBoots"] => ({ nodeId, now, owner }) =>
    // the Reclaim transition as one statement: due at once, and before the backlog (since it was enqueued)
    sql<{ id: EntryId }>`UPDATE outbox_entries
        SET lease_expires_at = ${now}, next_attempt_at = min(${now}, enqueued_at), updated_at = ${now}
        WHERE state = 'in_flight' AND substr(lease_owner, 1, ${nodeId.length + 1}) = ${nodeId + "/"}
          AND lease_owner != ${owner}
        RETURNING id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("reclaimPreviousBoots"))

/** `OutboxRepoShape.heartbeat`: nothing, as one gateway holds the file (layerFile's lock): no live replica to tell apart. */
export const heartbeat: OutboxRepoShape["heartbeat"] = () => Effect.void
