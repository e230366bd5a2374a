/**
 * PostgreSQL connections that the server ends (`pg_terminate_backend`): a batch caught mid-transaction fails whole with
 * `StoreError` (not a defect: @effect/sql dies on a failed ROLLBACK or COMMIT) and writes nothing, the next batch goes
 * through on a new connection, and the wake-up stream notices its listening connection is gone.
 */
import * as PgClient from "@effect/sql-pg/PgClient"
import { describe, expect, it } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as crypto from "node:crypto"
import { StoreError } from "../../src/DeliveryError.js"
import { OutboxRepo, WriteOp } from "../../src/OutboxRepo.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import { queuedEntry } from "../support/entries.js"
import { freshSchema, urlFor } from "../support/pg.js"

/** A store on a fresh schema whose connections carry their own application name, and a second store beside it. */
const setup = Effect.gen(function*() {
  const schema = freshSchema()
  yield* Layer.build(schema.layer)
  const applicationName = `outbox-loss-${crypto.randomBytes(4).toString("hex")}`
  const ctx = yield* Layer.build(
    PgOutboxRepo.layerUrl(urlFor(schema.name), { client: { maxConnections: 2, applicationName } })
  )
  const other = yield* Layer.build(PgOutboxRepo.layerUrl(urlFor(schema.name), { client: { maxConnections: 2 } }))
  return {
    applicationName,
    repo: Context.get(ctx, OutboxRepo),
    client: Context.get(ctx, PgClient.PgClient),
    otherRepo: Context.get(other, OutboxRepo),
    other: Context.get(other, PgClient.PgClient)
  }
})

/** The failure of an exit that must be a failure, not a defect or an interruption. */
const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure, got a success")
  const failure = Cause.failureOption(exit.cause)
  if (Option.isNone(failure)) throw new Error(`expected a failure, got ${Cause.pretty(exit.cause)}`)
  return failure.value
}

/** Waits until a backend of `applicationName` matches `condition` and ends it; how many it ended. */
const terminateWhen = (sql: PgClient.PgClient, applicationName: string, condition: string) =>
  sql<{ pid: number }>`SELECT pid FROM pg_stat_activity
    WHERE application_name = ${applicationName} AND ${sql.literal(condition)}`.pipe(
    Effect.filterOrFail((rows) => rows.length > 0, () => new Error(`no backend where ${condition}`)),
    Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 1000 }),
    Effect.flatMap((rows) =>
      sql<{ ok: boolean }>`SELECT pg_terminate_backend(pid) AS ok FROM unnest(${rows.map((r) => r.pid)}::int[]) pid`
    ),
    Effect.map((rows) => rows.filter((r) => r.ok).length)
  )

describe("PgOutboxRepo when the server ends its connections", () => {
  it.live(
    "a batch caught mid-transaction fails whole with StoreError; the next one goes through",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { applicationName, client, other, otherRepo, repo } = yield* setup
        const blocked = queuedEntry({ to: "a" })
        const alone = queuedEntry({ to: "b" })
        // another process inserts the same id and holds its transaction open, so the batch's INSERT waits on that row
        const held = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(
          other.withTransaction(
            otherRepo.insert([blocked]).pipe(
              Effect.zipRight(Deferred.succeed(held, undefined)),
              Effect.zipRight(Effect.never)
            )
          )
        )
        const batch = Effect.gen(function*() {
          yield* Deferred.await(held)
          const writing = yield* Effect.fork(
            repo.write([
              WriteOp.Insert({ entry: alone, deferIfBusy: false }),
              WriteOp.Insert({ entry: blocked, deferIfBusy: false })
            ])
          )
          expect(yield* terminateWhen(other, applicationName, "wait_event_type = 'Lock'")).toBe(1)
          return yield* Fiber.await(writing).pipe(
            Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => new Error("the batch did not end") })
          )
        })
        // a failure the caller can act on, never a defect
        const error = failureOf(yield* batch.pipe(Effect.ensuring(Fiber.interrupt(holder))))
        expect(error).toBeInstanceOf(StoreError)
        expect(error.operation).toBe("write")
        // nothing of the batch was written, and the store works again on a new connection
        expect(yield* repo.get(alone.id)).toEqual(Option.none())
        const again = yield* repo.write([WriteOp.Insert({ entry: alone, deferIfBusy: false })])
        expect(again[0]?._tag).toBe("Inserted")
        expect(yield* client`SELECT 1 AS one`).toEqual([{ one: 1 }])
      })),
    30_000
  )

  it.live(
    "the wake-up stream fails once its listening connection is gone, and listens again when run again",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { applicationName, client, repo } = yield* setup
        const wakes = PgOutboxRepo.notifications(PgOutboxRepo.DEFAULT_CHANNEL, { probeEveryMs: 100 }).pipe(
          Stream.provideService(PgClient.PgClient, client)
        )
        const first = yield* Effect.fork(Stream.runCollect(wakes))
        yield* terminateWhen(client, applicationName, "query LIKE 'LISTEN%'")
        const error = failureOf(
          yield* Fiber.await(first).pipe(
            Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the stream did not fail") })
          )
        )
        expect(error).toMatchObject({ _tag: "StoreError", operation: "listen" })
        // run again: a new connection listens, and an enqueue wakes it
        const second = yield* Effect.fork(Stream.runHead(wakes))
        // the LISTEN done (idle), not only begun: a NOTIFY sent while it still runs would not reach it
        yield* client<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name = ${applicationName} AND query LIKE 'LISTEN%' AND state = 'idle'`.pipe(
          Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (rows) => (rows[0]?.n ?? 0) > 0 }),
          Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("no connection listened again") })
        )
        yield* repo.insert([queuedEntry({ to: "wake" })])
        expect(
          yield* Fiber.join(second).pipe(
            Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error("the enqueue did not wake it") })
          )
        ).toEqual(Option.some(undefined))
      })),
    30_000
  )

  it.live(
    "a statement stuck behind a lock past the statement timeout fails with StoreError",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const { other, otherRepo } = yield* setup
        const schema = yield* other<{ name: string }>`SELECT current_schema() AS name`
        const impatient = Context.get(
          yield* Layer.build(PgOutboxRepo.layerUrl(urlFor(schema[0]!.name), { statementTimeout: "300 millis" })),
          OutboxRepo
        )
        const blocked = queuedEntry({ to: "a" })
        const held = yield* Deferred.make<void>()
        const holder = yield* Effect.forkScoped(other.withTransaction(
          otherRepo.insert([blocked]).pipe(
            Effect.zipRight(Deferred.succeed(held, undefined)),
            Effect.zipRight(Effect.never)
          )
        ))
        yield* Deferred.await(held)
        const error = yield* Effect.flip(impatient.insert([blocked])).pipe(Effect.ensuring(Fiber.interrupt(holder)))
        expect(error).toBeInstanceOf(StoreError)
        expect(error.message).toMatch(/statement timeout/)
      })),
    30_000
  )
})
