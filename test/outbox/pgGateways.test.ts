/**
 * Several gateway processes, one PostgreSQL outbox: each "process" here is an outbox with its own connection pool
 * on one schema. A reply enqueued by one wakes an idle worker of another through LISTEN/NOTIFY (its interval is an
 * hour, so only the notification can wake it), and a restart never takes over a live replica's leases, even when
 * both use the same nodeId: only boots whose heartbeat is stale are taken over.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { SendContext, SendResult } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import * as Outboxes from "../../src/Outbox.js"
import { Outbox } from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import { freshSchema, urlFor } from "../support/pg.js"

/** One gateway process on the schema: its own pool, adapter and configuration. */
const gateway = (
  schema: string,
  adapter: { readonly sendText: (ctx: SendContext) => Promise<SendResult> },
  worker: boolean
) => {
  const base = Layer.mergeAll(
    PgOutboxRepo.layerUrl(urlFor(schema), { client: { maxConnections: 3 } }),
    ChannelRegistry.layer({ chat: adapter }),
    OutboxConfig.layer({ nodeId: "gw", retryJitter: false, workerInterval: "1 hour" })
  )
  const outbox = Outboxes.layer.pipe(Layer.provideMerge(base))
  return (worker ? RecoveryWorker.layer.pipe(Layer.provideMerge(outbox)) : outbox).pipe(Layer.orDie)
}

describe("several gateway processes on PostgreSQL", () => {
  it.live("an enqueue on one process wakes another process's idle worker at once, through LISTEN/NOTIFY", () => {
    const schema = freshSchema()
    return Effect.gen(function*() {
      const sent = yield* Deferred.make<string>()
      const sender = {
        sendText: (ctx: SendContext) =>
          Effect.runPromise(Deferred.succeed(sent, ctx.text)).then(() => ({ messageId: "m" }))
      }
      const idle = { sendText: () => Promise.reject(new Error("the enqueuing process has no worker")) }
      yield* Effect.gen(function*() {
        yield* Layer.build(gateway(schema.name, sender, true)) // the other process, its worker idle for an hour
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          // its LISTEN starts in the background: until it is up a notification can be missed, so each try enqueues
          // another reply and waits a second for one to be sent
          const tryOnce = Effect.zipRight(
            outbox.enqueue({ channel: "chat", to: "user-1", payloads: [{ text: "from the other process" }] }),
            Deferred.await(sent).pipe(Effect.timeoutFail({ duration: "1 second", onTimeout: () => "not yet" as const }))
          )
          expect(yield* Effect.retry(tryOnce, { times: 10 })).toBe("from the other process")
        }).pipe(Effect.provide(gateway(schema.name, idle, false)))
      }).pipe(Effect.scoped)
    }).pipe(Effect.provide(schema.layer), Effect.timeout("20 seconds"))
  })

  it.live("a restart with the same nodeId never takes over a live replica's leases", () => {
    const schema = freshSchema()
    return Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const slow = {
        sendText: () =>
          Effect.runPromise(Effect.zipRight(Deferred.succeed(started, undefined), Deferred.await(release))).then(
            () => ({ messageId: "slow" })
          )
      }
      const calls: Array<string> = []
      const other = {
        sendText: (ctx: SendContext) => Promise.resolve(void calls.push(ctx.text)).then(() => ({ messageId: "o" }))
      }
      yield* Effect.gen(function*() {
        const replica = yield* Outbox
        const live = yield* Effect.fork(
          replica.deliver({ channel: "chat", to: "user-1", payloads: [{ text: "slow reply" }] })
        )
        yield* Deferred.await(started)
        // another process of the same node starts: the replica's heartbeat is fresh, so nothing is taken over
        const reclaimed = yield* Effect.provide(
          Effect.flatMap(Outbox, (o) => o.reclaimPreviousBoots),
          gateway(schema.name, other, false)
        )
        expect(reclaimed).toBe(0)
        yield* Deferred.succeed(release, undefined)
        expect((yield* live)._tag).toBe("Delivered")
        expect(calls).toEqual([])
      }).pipe(Effect.provide(gateway(schema.name, slow, false)))
    }).pipe(Effect.provide(schema.layer), Effect.timeout("20 seconds"))
  })
})
