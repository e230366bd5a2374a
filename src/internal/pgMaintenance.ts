/**
 * The PostgreSQL store's writes outside the journal: expiry and pruning (the recovery worker's), the admin requeue,
 * quarantine of a row that does not decode, and `outbox_meta` values.
 */
import * as Effect from "effect/Effect"
import type { EntryId } from "../Delivery.js"
import { EntryNotFound } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import type { PgContext } from "./pgContext.js"
import { run } from "./pgContext.js"
import { decodeOrFail, SELECT } from "./pgRows.js"
import { updateRows } from "./pgWrites.js"

/** `OutboxRepoShape.expire`: the Expire transition as one statement over the waiting rows past their `expiresAt`. */
export const expire = ({ sql }: PgContext): OutboxRepoShape["expire"] => (now, opts = {}) => {
  const set = Machine.expireWrite(now)
  // SKIP LOCKED: a row another transaction is claiming right now is left for the next pass
  return sql<{ id: EntryId }>`UPDATE outbox_entries
        SET state = ${set.state}, next_attempt_at = ${set.nextAttemptAt}, pending = NULL, lease_owner = ${set.leaseOwner},
          lease_expires_at = ${set.leaseExpiresAt}, updated_at = ${set.updatedAt}
        WHERE id IN (
          SELECT id FROM outbox_entries
          WHERE pending = 1 AND expires_at IS NOT NULL AND expires_at <= ${now} AND state IN ('queued', 'failed_retryable')
          ORDER BY expires_at
          ${opts.limit === undefined ? sql`` : sql`LIMIT ${opts.limit}`}
          FOR UPDATE SKIP LOCKED)
        RETURNING id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("expire"))
}

/** `OutboxRepoShape.prune`: finished rows past retention, and boots silent for as long. */
export const prune = ({ inTransaction, sql }: PgContext): OutboxRepoShape["prune"] => (now, retention) =>
  inTransaction(Effect.gen(function*() {
    const terminalStates = (["failed_terminal", "expired"] as const).filter(Machine.isPrunable)
    const [delivered] = yield* sql<{ n: number }>`WITH d AS (DELETE FROM outbox_entries
          WHERE pending IS NULL AND state = 'delivered' AND updated_at <= ${now - retention.deliveredMs} RETURNING 1)
          SELECT count(*)::int AS n FROM d`
    const [terminal] = yield* sql<{ n: number }>`WITH d AS (DELETE FROM outbox_entries
          WHERE pending IS NULL AND state IN ${sql.in(terminalStates)} AND updated_at <= ${now - retention.terminalMs}
          RETURNING 1) SELECT count(*)::int AS n FROM d`
    // boots silent for as long as a failed row is kept hold no lease anyone waits for
    yield* sql`DELETE FROM outbox_nodes WHERE heartbeat_at <= ${now - retention.terminalMs}`
    return { delivered: delivered?.n ?? 0, terminal: terminal?.n ?? 0 }
  })).pipe(run("prune"))

/** `OutboxRepoShape.requeue`: the admin retry, through the state machine, with a NOTIFY. */
export const requeue =
  ({ inTransaction, notify, sql }: PgContext): OutboxRepoShape["requeue"] => (id, now, expiresAt) =>
    inTransaction(Effect.gen(function*() {
      const [row] = yield* sql`SELECT ${sql.literal(SELECT)} FROM outbox_entries e WHERE e.id = ${id} FOR UPDATE`
        .values
      if (row === undefined) return yield* Effect.fail(new EntryNotFound({ id }))
      const before = yield* decodeOrFail("requeue")(row)
      const spec = yield* Machine.writeSpec(before, Machine.EntryEvent.Requeue({ expiresAt }), now)
      yield* updateRows(sql, [spec])
      yield* notify
      return spec.next
    })).pipe(run("requeue"))

/** `OutboxRepoShape.setMeta`: writes a value of `outbox_meta`. */
export const setMeta = ({ sql }: PgContext): OutboxRepoShape["setMeta"] => (key, value) =>
  sql`INSERT INTO outbox_meta (key, value) VALUES (${key}, ${value})
          ON CONFLICT (key) DO UPDATE SET value = excluded.value`.pipe(Effect.asVoid, run("setMeta"))

/** `OutboxRepoShape.quarantine`: a row that does not decode to `failed_terminal(decode_error)`. */
export const quarantine = ({ sql }: PgContext): OutboxRepoShape["quarantine"] => (id, message, now) =>
  sql`UPDATE outbox_entries SET state = 'failed_terminal', terminal_reason = 'decode_error',
            last_error = ${message}, next_attempt_at = NULL, pending = NULL, lease_owner = NULL, lease_expires_at = NULL,
            updated_at = ${now}
          WHERE id = ${id} AND state IN ${sql.in(Machine.sourceStates.Quarantine)}`.pipe(
    Effect.asVoid,
    run("quarantine")
  )
