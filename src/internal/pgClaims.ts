/**
 * The PostgreSQL store's leases: the claim protocol (candidate heads under conversation locks, then leased in one
 * statement against a fresh snapshot), the reclaim of dead boots' rows, and the heartbeats that tell boots apart.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import type { EntryId, OutboxEntry } from "../Delivery.js"
import type { EntryEvent } from "../EntryStateMachine.js"
import * as Machine from "../EntryStateMachine.js"
import type { ClaimedEntry, MalformedRow, OutboxRepoShape } from "../OutboxRepo.js"
import type { PgContext } from "./pgContext.js"
import { run } from "./pgContext.js"
import { CONVERSATION_LOCK, SELECT } from "./pgRows.js"
import type { Row } from "./rowCodec.js"
import { fromRow, ROW_COLUMNS, rowFromValues } from "./rowCodec.js"

/**
 * Decodes leased rows (as they were before the lease) and runs the Claim transition on each: a row that does not
 * decode is reported in `malformed`; it and a row the transition refuses are in `refused`, to be put back.
 */
const claimRows = (rows: ReadonlyArray<Row>, event: EntryEvent, now: number) => {
  const pairs: Array<readonly [OutboxEntry, OutboxEntry]> = []
  const malformed: Array<MalformedRow> = []
  const refused: Array<Row> = []
  for (const row of rows) {
    const decoded = fromRow(row)
    if (Either.isLeft(decoded)) {
      malformed.push({ id: String(row.id) as EntryId, message: decoded.left })
      refused.push(row)
      continue
    }
    const next = Machine.transition(decoded.right, event, now)
    if (Either.isRight(next)) pairs.push([decoded.right, next.right])
    else refused.push(row)
  }
  return { pairs, malformed, refused }
}

/** Puts rows back as they were before a claim leased them (the columns a claim sets). */
const restore = (sql: SqlClient.SqlClient, rows: ReadonlyArray<Row>) => {
  const before = rows.map((r) => ({
    id: r.id,
    state: r.state,
    lease_owner: r.lease_owner,
    lease_expires_at: r.lease_expires_at,
    next_attempt_at: r.next_attempt_at,
    last_attempt_at: r.last_attempt_at,
    updated_at: r.updated_at
  }))
  return sql`UPDATE outbox_entries u SET state = v.state, lease_owner = v.lease_owner,
        lease_expires_at = v.lease_expires_at, next_attempt_at = v.next_attempt_at,
        last_attempt_at = v.last_attempt_at, updated_at = v.updated_at
      FROM jsonb_to_recordset(${JSON.stringify(before)}::jsonb) AS v(id text, state text, lease_owner text,
        lease_expires_at bigint, next_attempt_at bigint, last_attempt_at bigint, updated_at bigint)
      WHERE u.id = v.id`
}

// a head: due, and no pending row of its conversation before it
const isHead = (sql: SqlClient.SqlClient, now: number) =>
  sql`e.pending = 1 AND e.next_attempt_at <= ${now} AND NOT EXISTS (
      SELECT 1 FROM outbox_entries p WHERE p.ordering_key = e.ordering_key AND p.pending = 1 AND p.seq < e.seq)`

/** `OutboxRepoShape.claim`: the claim protocol, in one READ COMMITTED transaction. */
export const claim =
  ({ sql, tx }: PgContext): OutboxRepoShape["claim"] => ({ leaseMs, limit, now, orderingKeys, owner }) =>
    tx(Effect.gen(function*() {
      // 1. candidate heads, one per conversation, each conversation locked unless another claimer holds it
      const candidates = yield* sql<{ id: string }>`WITH c AS MATERIALIZED (
            SELECT e.id, e.ordering_key, e.next_attempt_at, e.seq FROM outbox_entries e
            WHERE ${isHead(sql, now)} ${
        orderingKeys === undefined ? sql`` : sql`AND e.ordering_key IN ${sql.in(orderingKeys)}`
      }
            ORDER BY e.next_attempt_at, e.seq LIMIT ${limit})
          SELECT id FROM c WHERE pg_try_advisory_xact_lock(${CONVERSATION_LOCK}, hashtext(ordering_key))
          ORDER BY next_attempt_at, seq`
      if (candidates.length === 0) return { claimed: [], malformed: [] }
      // 2. a new snapshot, taken under the locks: still the head, and no other row of it holds a live lease; leased
      //    in the same statement (every row gets the same columns), which returns the rows as they were before
      const claim = Machine.EntryEvent.Claim({ owner, leaseUntil: now + leaseMs })
      const set = Machine.claimWrite(claim, now)
      const values = yield* sql`WITH picked AS (
            SELECT ${sql.literal(SELECT)},
              EXISTS (SELECT 1 FROM outbox_entries n
                WHERE n.ordering_key = e.ordering_key AND n.pending = 1 AND n.seq > e.seq) AS followed,
              e.seq AS claim_seq
            FROM outbox_entries e
            WHERE e.id IN ${sql.in(candidates.map((c) => c.id))} AND ${isHead(sql, now)}
              AND NOT EXISTS (SELECT 1 FROM outbox_entries l WHERE l.ordering_key = e.ordering_key AND l.id <> e.id
                AND l.pending = 1 AND l.state = 'in_flight' AND l.lease_expires_at > ${now})
            FOR UPDATE OF e SKIP LOCKED),
          leased AS (UPDATE outbox_entries u SET state = ${set.state}, lease_owner = ${set.leaseOwner},
              lease_expires_at = ${set.leaseExpiresAt}, next_attempt_at = ${set.nextAttemptAt},
              last_attempt_at = ${set.lastAttemptAt}, updated_at = ${set.updatedAt}
            FROM picked WHERE u.id = picked.id)
          SELECT * FROM picked ORDER BY next_attempt_at, claim_seq`.values
      const { malformed, pairs, refused } = claimRows(
        values.map((v) => rowFromValues(v.slice(0, ROW_COLUMNS.length))),
        claim,
        now
      )
      // 3. rare: a row that does not decode (or that the state machine refuses) was leased with the others; it is
      //    put back as it was, so it stays claimable (and the claimer quarantines it)
      if (refused.length > 0) yield* restore(sql, refused)
      const followed = new Set(values.filter((v) => v[ROW_COLUMNS.length] === true).map((v) => String(v[0])))
      const claimed: Array<ClaimedEntry> = pairs.map(([before, after]) => ({
        entry: after,
        reclaimed: before.state === "in_flight",
        followed: followed.has(after.id)
      }))
      return { claimed, malformed }
    })).pipe(run("claim"))

/** `OutboxRepoShape.reclaimPreviousBoots`: this node's rows leased by boots whose heartbeat is stale. */
export const reclaimPreviousBoots =
  ({ heartbeatStaleMs, sql }: PgContext): OutboxRepoShape["reclaimPreviousBoots"] => ({ nodeId, now, owner }) =>
    // the Reclaim transition as one statement, for owners of this node with no fresh heartbeat only
    sql<{ id: EntryId }>`UPDATE outbox_entries e
        SET lease_expires_at = ${now}, next_attempt_at = LEAST(${now}::bigint, e.enqueued_at), updated_at = ${now}
        WHERE e.state = 'in_flight' AND starts_with(e.lease_owner, ${nodeId + "/"}) AND e.lease_owner <> ${owner}
          AND NOT EXISTS (SELECT 1 FROM outbox_nodes n WHERE n.owner = e.lease_owner
            AND n.heartbeat_at > ${now - heartbeatStaleMs})
        RETURNING e.id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("reclaimPreviousBoots"))

/** How often a boot beats: a third of the staleness threshold, so two beats may be lost before it counts as dead. */
export const heartbeatEveryMs = (heartbeatStaleMs: number): number => Math.max(1, Math.floor(heartbeatStaleMs / 3))

/** `OutboxRepoShape.heartbeat`: records that a boot is alive (a beat never moves its time back). */
export const heartbeat = ({ sql }: PgContext): OutboxRepoShape["heartbeat"] => (owner, now) =>
  sql`INSERT INTO outbox_nodes (owner, heartbeat_at) VALUES (${owner}, ${now})
        ON CONFLICT (owner) DO UPDATE SET heartbeat_at = GREATEST(outbox_nodes.heartbeat_at, excluded.heartbeat_at)`
    .pipe(
      Effect.asVoid,
      run("heartbeat")
    )
