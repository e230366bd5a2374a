/**
 * The PostgreSQL `OutboxRepoShape` (see `PgOutboxRepo` for what holds across processes and why), put together from
 * its statement modules: `pgWrites` (inserts and the journal), `pgClaims` (leases), `pgReads`, `pgMaintenance`.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import * as Effect from "effect/Effect"
import type { OutboxRepoShape } from "../OutboxRepo.js"
import * as Claims from "./pgClaims.js"
import type { PgContext } from "./pgContext.js"
import { transaction, verifiedTransaction } from "./pgContext.js"
import * as Maintenance from "./pgMaintenance.js"
import * as Reads from "./pgReads.js"
import * as Writes from "./pgWrites.js"

/** The store's operations over `sql`. */
export const makeShape = (
  sql: SqlClient.SqlClient,
  options: {
    readonly heartbeatStaleMs: number
    readonly channel: string
    /** false when the connections already default to READ COMMITTED: one statement less per transaction */
    readonly setIsolation: boolean
  }
): OutboxRepoShape => {
  const inTransaction = <A, E, R>(effect: Effect.Effect<A, E, R>) => transaction(sql, effect)
  const ctx: PgContext = {
    sql,
    // every statement of these transactions must see what committed before it (the claim protocol relies on it),
    // whatever default_transaction_isolation the gateway's database has
    tx: (effect) =>
      verifiedTransaction(
        sql,
        options.setIsolation ? Effect.zipRight(sql`SET TRANSACTION ISOLATION LEVEL READ COMMITTED`, effect) : effect
      ),
    inTransaction,
    notify: sql`SELECT pg_notify(${options.channel}, 'w')`,
    channel: options.channel,
    heartbeatStaleMs: options.heartbeatStaleMs
  }
  return {
    insert: Writes.insert(ctx),
    write: Writes.write(ctx),
    claim: Claims.claim(ctx),
    reclaimPreviousBoots: Claims.reclaimPreviousBoots(ctx),
    heartbeatEveryMs: Claims.heartbeatEveryMs(options.heartbeatStaleMs),
    heartbeat: Claims.heartbeat(ctx),
    expire: Maintenance.expire(ctx),
    prune: Maintenance.prune(ctx),
    get: Reads.get(ctx),
    list: Reads.list(ctx),
    stats: Reads.stats(ctx),
    activity: Reads.activity(ctx),
    requeue: Maintenance.requeue(ctx),
    pendingCount: Reads.pendingCount(ctx),
    getMeta: Reads.getMeta(ctx),
    setMeta: Maintenance.setMeta(ctx),
    quarantine: Maintenance.quarantine(ctx)
  }
}
