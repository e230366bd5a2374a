/**
 * effect-outbox: durable outbound delivery for chat gateways, on Effect.
 * Each name is a namespace module, Effect style: `import { OutboxRepo } from "effect-outbox"`.
 * The shipped channels are imported by path, so a gateway loads only the ones it uses:
 * `import * as WebhookChannel from "effect-outbox/channels/Webhook"` (also `…/Telegram`, `…/Slack`).
 */
export * as ChannelAdapter from "./ChannelAdapter.js"
export * as ChannelRegistry from "./ChannelRegistry.js"
export * as Chunking from "./Chunking.js"
export * as Delivery from "./Delivery.js"
export * as DeliveryError from "./DeliveryError.js"
export * as EntryStateMachine from "./EntryStateMachine.js"
export * as LegacyFileQueue from "./LegacyFileQueue.js"
export * as MemoryOutboxRepo from "./MemoryOutboxRepo.js"
export * as Metrics from "./Metrics.js"
export * as Outbox from "./Outbox.js"
export * as OutboxConfig from "./OutboxConfig.js"
export * as OutboxRepo from "./OutboxRepo.js"
export * as PgOutboxRepo from "./PgOutboxRepo.js"
export * as RateLimits from "./RateLimits.js"
export * as RecoveryWorker from "./RecoveryWorker.js"
export * as RetryPolicy from "./RetryPolicy.js"
export * as Sender from "./Sender.js"
export * as SendPlan from "./SendPlan.js"
export * as SqliteOutboxRepo from "./SqliteOutboxRepo.js"
