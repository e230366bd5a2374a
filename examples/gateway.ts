/**
 * Embedding the outbox in a gateway: live layers over a SQLite file, the recovery worker, and a reply delivered
 * through `Outbox.deliver`. Run it with `npx tsx examples/gateway.ts` (CHAT_API_URL points it at your chat API).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { ChannelRegistry, Outbox, OutboxConfig, RecoveryWorker, SqliteOutboxRepo } from "../src/index.js"
import { chatApiAdapter } from "./adapter-v1.js"
import { richChatAdapter } from "./adapter-v2.js"

const apiUrl = process.env["CHAT_API_URL"] ?? "http://127.0.0.1:8080"

/** What the outbox needs: a store (a SQLite file here), the channels, and its configuration (OUTBOX_* variables). */
const OutboxDeps = Layer.mergeAll(
  SqliteOutboxRepo.layerFile({ filename: process.env["OUTBOX_DB"] ?? "./outbox.db" }),
  ChannelRegistry.layer({
    chat: chatApiAdapter({ baseUrl: apiUrl, token: process.env["CHAT_API_TOKEN"] ?? "dev-token" }),
    rich: richChatAdapter({ baseUrl: apiUrl })
  }),
  OutboxConfig.layerFromEnv
)

/** The outbox and its recovery worker; closing the layer's scope stops the worker (started sends may finish within the grace). */
export const OutboxLive = RecoveryWorker.layer.pipe(Layer.provideMerge(Outbox.layer), Layer.provide(OutboxDeps))

/** What the gateway does with an agent's answer: store it, send it, and carry on whatever the channel says. */
export const sendReply = (to: string, text: string, turnId: string) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    const outcome = yield* outbox.deliver({ channel: "chat", to, payloads: [{ text }], idempotencyKey: turnId })
    yield* Effect.logInfo(`reply ${outcome.entryId}: ${outcome._tag}`) // Delivered | Deferred | Duplicate
  }).pipe(
    // the reply is stored in each of these cases: the worker retries it, or it is recorded as failed for good
    Effect.catchTags({
      SendFailed: (e) => Effect.logWarning(`reply ${e.entryId} not sent yet: ${e.message}`),
      PartialDeliveryFailure: (e) => Effect.logWarning(`reply ${e.entryId}: ${e.message}`),
      AckFailed: (e) => Effect.logWarning(`reply ${e.entryId} was sent; the worker records it`)
    })
    // InvalidRequest, UnknownChannel and StoreError stay in the error channel: nothing was stored
  )

const main = Effect.gen(function*() {
  yield* sendReply("user-42", "Hello from the gateway!", "turn-1")
  yield* sendReply("user-42", "And a second reply, in order.", "turn-2")
  // a real gateway keeps running (e.g. `Layer.launch`), so the worker can retry what failed
})

main.pipe(Effect.provide(OutboxLive), NodeRuntime.runMain)
