/** The smallest gateway: a SQLite outbox, one channel (it prints), and one reply. `npx tsx quickstart.ts` runs it. */
import { NodeRuntime } from "@effect/platform-node"
import { Config, Effect, Layer } from "effect"
import type { ChannelAdapter } from "../src/index.js"
import { ChannelRegistry, Outbox, OutboxConfig, RecoveryWorker, SqliteOutboxRepo } from "../src/index.js"

/** A channel: called after the reply is stored; a throw or rejection is a failed send (retried by the worker). */
const consoleChannel: ChannelAdapter.AdapterV1 = {
  sendText: async (ctx) => {
    console.log(`-> ${ctx.to}: ${ctx.text}`)
    return { messageId: `${ctx.entryId}/${ctx.partIndex}` }
  }
}

/** The database file: OUTBOX_DB, else ./outbox.db. */
const filename = Config.string("OUTBOX_DB").pipe(Config.withDefault("./outbox.db"))

/** A store, the channels and a configuration in; the `Outbox` service and its recovery worker out. */
const OutboxLive = Layer.unwrapEffect(Effect.map(filename, (filename) =>
  RecoveryWorker.layer.pipe(
    Layer.provideMerge(Outbox.layer),
    Layer.provide(Layer.mergeAll(
      SqliteOutboxRepo.layerFile({ filename }),
      ChannelRegistry.layer({ console: consoleChannel }),
      OutboxConfig.layer({ maxAge: "30 minutes", retryDelays: ["5 seconds", "1 minute"] })
    ))
  )))

const program = Effect.gen(function*() {
  const outbox = yield* Outbox.Outbox
  const outcome = yield* outbox.deliver({
    channel: "console",
    to: "user-42",
    payloads: [{ text: "Hello!" }],
    idempotencyKey: "turn-1"
  })
  yield* Effect.logInfo(`reply ${outcome.entryId}: ${outcome._tag}`) // Delivered, Deferred or Duplicate
})

program.pipe(Effect.provide(OutboxLive), NodeRuntime.runMain)
