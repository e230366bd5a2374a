/**
 * The demo's script: conversations on the three fake channels and their turns (the replies the simulated gateway
 * sends, with the user's think time before each), all drawn from the seed so a run can be repeated.
 */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"
import type { DeliveryRequestInput } from "../Delivery.js"

export interface Turn {
  readonly n: number
  readonly request: DeliveryRequestInput
  readonly thinkMs: number
}

export interface Conversation {
  readonly index: number
  readonly channel: "healthy" | "flaky" | "rejecting"
  readonly to: string
  readonly turns: ReadonlyArray<Turn>
}

const CHANNELS = ["healthy", "flaky", "rejecting"] as const

const FILLER = "The outbox stores every reply before the channel is called, so a crash, an outage or a busy database " +
  "never loses it; it retries on one schedule, expires what is too old to be useful, and keeps each conversation in order."

/** The turns of `messages` replies spread over up to 60 conversations, and the recipients who blocked the bot. */
export const makeScript = (messages: number, seed: number) =>
  Effect.gen(function*() {
    const count = Math.min(60, Math.max(3, Math.ceil(messages / 10)))
    const turns: Array<Array<Turn>> = Array.from({ length: count }, () => [])
    const rng = Random.make(`${seed}/gateway`)
    for (let n = 0; n < messages; n++) {
      const c = n % count
      const channel = CHANNELS[c % CHANNELS.length]!
      const k = turns[c]!.length + 1
      const tool = (yield* rng.next) < 0.08
      const long = channel === "flaky" && (yield* rng.next) < 0.2
      const media = channel !== "rejecting" && (yield* rng.next) < 0.15
      const text = tool
        ? `(tool) looking up reply ${k}…`
        : `Reply ${k} to user-${c}.${long ? ` ${FILLER} ${FILLER}` : ""}`
      turns[c]!.push({
        n,
        thinkMs: yield* rng.nextIntBetween(100, 400),
        request: {
          channel,
          to: `user-${c}`,
          ...(c % 4 === 0 ? { threadId: `thread-${c}` } : {}),
          payloads: [{ text, ...(media && !tool ? { mediaUrls: [`https://example.com/demo/chart-${n}.png`] } : {}) }],
          kind: tool ? "tool" : "final",
          bestEffort: long,
          idempotencyKey: `turn-${n}`
        }
      })
    }
    const conversations: ReadonlyArray<Conversation> = turns.map((t, index) => ({
      index,
      channel: CHANNELS[index % CHANNELS.length]!,
      to: `user-${index}`,
      turns: t
    }))
    // every fourth recipient of the rejecting channel (the first one included) has blocked the bot
    const blocked = new Set(
      conversations.filter((c) => c.channel === "rejecting").filter((_, i) => i % 4 === 0).map((c) => c.to)
    )
    return { conversations, blocked }
  })
