/**
 * The SQLite store's writes outside the journal: expiry and pruning (the recovery worker's), the admin requeue,
 * quarantine of a row that does not decode, and `outbox_meta` values.
 */
import * as Effect from "effect/Effect"
import type { EntryId } from "../Delivery.js"
import { EntryNotFound } from "../DeliveryError.js"
import * as Machine from "../EntryStateMachine.js"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import type { Row } from "./rowCodec.js"
import type { SqliteContext } from "./sqliteContext.js"
import { run } from "./sqliteContext.js"
import { decodeOrFail } from "./sqliteRows.js"
import { updateRows } from "./sqliteWrites.js"

/** `OutboxRepoShape.expire`: the waiting rows past their `expiresAt`. */
export const expire = ({ sql }: SqliteContext): OutboxRepoShape["expire"] => (now, options = {}) => {
  // the Expire transition as one statement, never reading a row's data: a row that no longer decodes expires too
  const set = Machine.expireWrite(now)
  return sql<{ id: EntryId }>`UPDATE outbox_entries
        SET state = ${set.state}, next_attempt_at = ${set.nextAttemptAt}, pending = NULL, lease_owner = ${set.leaseOwner},
          lease_expires_at = ${set.leaseExpiresAt}, updated_at = ${set.updatedAt}
        WHERE id IN (
          SELECT id FROM outbox_entries
          WHERE pending = 1 AND expires_at IS NOT NULL AND expires_at <= ${now} AND state IN ('queued', 'failed_retryable')
          ORDER BY expires_at
          ${options.limit === undefined ? sql`` : sql`LIMIT ${options.limit}`})
        RETURNING id`.pipe(Effect.map((rows) => rows.map((r) => r.id)), run("expire"))
}

const changes = (result: unknown): number =>
  typeof result === "object" && result !== null && "changes" in result ? Number(result.changes) : 0

/** `OutboxRepoShape.prune`: finished rows past retention. */
export const prune = ({ sql, writeTx }: SqliteContext): OutboxRepoShape["prune"] => (now, retention) =>
  writeTx(Effect.gen(function*() {
    const prunable = (["delivered", "failed_terminal", "expired"] as const).filter(Machine.isPrunable)
    const terminalStates = prunable.filter((s) => s !== "delivered")
    // "pending IS NULL" lets SQLite use the retention index, which holds finished rows only
    const delivered = yield* sql`DELETE FROM outbox_entries
          WHERE pending IS NULL AND state = 'delivered' AND updated_at <= ${now - retention.deliveredMs}`.raw
    const terminal = yield* sql`DELETE FROM outbox_entries
          WHERE pending IS NULL AND state IN ${sql.in(terminalStates)} AND updated_at <= ${now - retention.terminalMs}`
      .raw
    return { delivered: changes(delivered), terminal: changes(terminal) }
  })).pipe(run("prune"))

/** `OutboxRepoShape.requeue`: the admin retry, through the state machine. */
export const requeue = ({ sql, writeTx }: SqliteContext): OutboxRepoShape["requeue"] => (id, now, expiresAt) =>
  writeTx(Effect.gen(function*() {
    const [row] = yield* sql<Row>`SELECT * FROM outbox_entries WHERE id = ${id}`
    if (row === undefined) return yield* Effect.fail(new EntryNotFound({ id }))
    const before = yield* decodeOrFail("requeue")(row)
    const spec = yield* Machine.writeSpec(before, Machine.EntryEvent.Requeue({ expiresAt }), now)
    yield* updateRows(sql, [spec])
    return spec.next
  })).pipe(run("requeue"))

/** `OutboxRepoShape.setMeta`: writes a value of `outbox_meta`. */
export const setMeta = ({ sql }: SqliteContext): OutboxRepoShape["setMeta"] => (key, value) =>
  sql`INSERT INTO outbox_meta (key, value) VALUES (${key}, ${value})
          ON CONFLICT (key) DO UPDATE SET value = excluded.value`.pipe(Effect.asVoid, run("setMeta"))

/** `OutboxRepoShape.quarantine`: a row that does not decode to `failed_terminal(decode_error)`. */
export const quarantine = ({ sql }: SqliteContext): OutboxRepoShape["quarantine"] => (id, message, now) =>
  // the row does not decode, so the Quarantine transition is applied to its columns directly
  sql`UPDATE outbox_entries SET state = 'failed_terminal', terminal_reason = 'decode_error',
            last_error = ${message}, next_attempt_at = NULL, pending = NULL, lease_owner = NULL, lease_expires_at = NULL,
            updated_at = ${now}
          WHERE id = ${id} AND state IN ${sql.in(Machine.sourceStates.Quarantine)}`.pipe(
    Effect.asVoid,
    run("quarantine")
  )
