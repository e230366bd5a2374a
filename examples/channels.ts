/**
 * The shipped channels, registered under ids of your choosing: a signed webhook, a Telegram bot and a Slack app. Their
 * secrets are read from the environment as `Redacted`; the gateway provides the HTTP client they send with.
 */
import { NodeHttpClient } from "@effect/platform-node"
import { Config, Layer } from "effect"
import * as SlackChannel from "../src/channels/Slack.js"
import * as TelegramChannel from "../src/channels/Telegram.js"
import * as WebhookChannel from "../src/channels/Webhook.js"
import { ChannelRegistry } from "../src/index.js"

/** The registry: provide it to `Outbox.layer` in place of your own adapters (or beside them, in the same record). */
export const Channels = ChannelRegistry.layer({
  alerts: WebhookChannel.makeConfig({
    url: Config.string("ALERTS_WEBHOOK_URL"),
    secret: Config.redacted("ALERTS_WEBHOOK_SECRET") // "whsec_…", the receiver verifies with the same secret
  }),
  telegram: TelegramChannel.makeConfig({ token: Config.redacted("TELEGRAM_BOT_TOKEN") }),
  slack: SlackChannel.makeConfig({ token: Config.redacted("SLACK_BOT_TOKEN") })
}).pipe(Layer.provide(NodeHttpClient.layerUndici))
