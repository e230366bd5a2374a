/**
 * Long replies: the outbox splits a v1 adapter's text into messages the channel accepts. `chunkMode: "newline"`
 * sends each paragraph block (text between blank lines, code fences kept whole) as its own message and cuts only
 * a block longer than the limit. The limit and mode can be set for all channels, per channel, and per account.
 * Durations are `Duration.DurationInput`s: "30 minutes", "5 seconds", or a number of milliseconds.
 */
import { OutboxConfig } from "../src/index.js"

export const ChunkingConfig = OutboxConfig.layer({
  maxAge: "30 minutes",
  retryDelays: ["5 seconds", "30 seconds", "2 minutes"],
  chunking: {
    chunkMode: "newline", // default for every channel: one message per paragraph
    textChunkLimit: 4000, // default limit; an adapter's own `textChunkLimit` ranks above it
    channels: {
      sms: {
        chunkMode: "length", // cut at the limit, at a newline or space where possible
        textChunkLimit: 160,
        accounts: { premium: { textChunkLimit: 1600 } } // per account, above the channel's settings
      }
    }
  }
})
