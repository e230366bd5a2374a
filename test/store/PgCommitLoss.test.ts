/**
 * A connection lost while its COMMIT is under way leaves the outcome unknown to the client: the server may have
 * committed. The store asks the server (`txid_status`) and answers what happened: a batch the server committed is
 * stored (its callers get their results, not `StoreError`), one it did not is `StoreError` with nothing written.
 * The connection is cut by a TCP proxy between the store and the server, right after the COMMIT reached the server
 * (it commits) or right before (it never sees it).
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as net from "node:net"
import { StoreError } from "../../src/DeliveryError.js"
import { OutboxRepo, WriteOp } from "../../src/OutboxRepo.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import { queuedEntry } from "../support/entries.js"
import { freshSchema, PG_URL, urlFor } from "../support/pg.js"

type Cut = "after-commit" | "before-commit"

/** A proxy to the test server that, once armed, cuts the connection that sends the next COMMIT. */
const proxy = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly arm: (cut: Cut) => void; readonly server: net.Server }>((resume) => {
    const target = new URL(PG_URL)
    let armed: Cut | undefined
    const server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname)
      let cutAfterReply = false
      const cut = () => {
        client.destroy()
        upstream.destroy()
      }
      client.on("data", (chunk) => {
        if (armed !== undefined && chunk.includes("COMMIT")) {
          const how = armed
          armed = undefined
          if (how === "before-commit") return cut()
          cutAfterReply = true
        }
        upstream.write(chunk)
      })
      upstream.on("data", (chunk) => {
        // the server answered the COMMIT: it has committed; the client never hears it
        if (cutAfterReply) return cut()
        client.write(chunk)
      })
      client.on("error", cut)
      upstream.on("error", cut)
      client.on("close", cut)
      upstream.on("close", cut)
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({
        port: (server.address() as net.AddressInfo).port,
        arm: (cut: Cut) => void (armed = cut),
        server
      })))
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

/** A store on a fresh schema reached through the proxy, and a client that reaches the server directly. */
const setup = Effect.gen(function*() {
  const schema = freshSchema()
  yield* Layer.build(schema.layer)
  const { arm, port } = yield* proxy
  const viaProxy = urlFor(schema.name).replace(/@[^/]+\//, `@127.0.0.1:${port}/`)
  const store = yield* Layer.build(PgOutboxRepo.layerUrl(viaProxy, { client: { maxConnections: 2 } }))
  const direct = yield* Layer.build(PgOutboxRepo.layerUrl(urlFor(schema.name), { client: { maxConnections: 1 } }))
  return { arm, repo: Context.get(store, OutboxRepo), sql: Context.get(direct, PgClient.PgClient) }
})

describe("PgOutboxRepo when the connection is lost during COMMIT", () => {
  it.live(
    "the server committed: the batch's inserts are stored and their callers get Inserted",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { arm, repo, sql } = yield* setup
        const a = queuedEntry({ to: "a" })
        const b = queuedEntry({ to: "b" })
        arm("after-commit")
        const results = yield* repo.write([
          WriteOp.Insert({ entry: a, deferIfBusy: false }),
          WriteOp.Insert({ entry: b, deferIfBusy: false })
        ])
        expect(results.map((r) => r._tag)).toEqual(["Inserted", "Inserted"])
        const rows = yield* sql<{ id: string }>`SELECT id FROM outbox_entries ORDER BY id`
        expect(rows.map((r) => r.id).sort()).toEqual([a.id, b.id].sort())
        // the store goes on: the next batch uses a new connection
        const c = queuedEntry({ to: "c" })
        expect((yield* repo.write([WriteOp.Insert({ entry: c, deferIfBusy: false })]))[0]?._tag).toBe("Inserted")
      })),
    30_000
  )

  it.live(
    "the server never saw the COMMIT: StoreError, and nothing of the batch is written",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { arm, repo, sql } = yield* setup
        const a = queuedEntry({ to: "a" })
        arm("before-commit")
        const exit = yield* Effect.exit(repo.write([WriteOp.Insert({ entry: a, deferIfBusy: false })]))
        expect(Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error instanceof StoreError).toBe(true)
        const rows = yield* sql<{ id: string }>`SELECT id FROM outbox_entries`
        expect(rows).toEqual([])
      })),
    30_000
  )
})
