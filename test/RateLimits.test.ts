/**
 * Rate limit configuration: what is accepted, what is refused (naming the field), the JSON form read from the
 * environment, an adapter's suggested limits, and how an account's rules are resolved.
 */
import { describe, expect, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ChannelRegistry from "../src/ChannelRegistry.js"
import * as SlackChannel from "../src/channels/Slack.js"
import * as TelegramChannel from "../src/channels/Telegram.js"
import * as OutboxConfig from "../src/OutboxConfig.js"
import * as RateLimits from "../src/RateLimits.js"

const configError = <A, E>(layer: Layer.Layer<A, E>) =>
  Effect.map(
    Effect.exit(Layer.build(layer).pipe(Effect.scoped)),
    (exit) => (Exit.isFailure(exit) ? String(exit.cause) : "built")
  )

describe("RateLimits", () => {
  it("resolves an account's rules: even spacing from perSecond, the burst as tolerance, windows in millis", () => {
    const limit: RateLimits.ChannelLimit = {
      perSecond: 4,
      burst: 3,
      perConversation: [{ count: 1, per: "1 second" }, { count: 20, per: "1 minute", match: "^-" }],
      accounts: { big: { perSecond: 50 }, quiet: { perConversation: { count: 1, per: 5000 } } }
    }
    const base = RateLimits.rulesOf(limit, undefined)!
    expect(base.intervalMs).toBe(250)
    expect(base.toleranceMs).toBe(500)
    expect(base.windows.map((w) => [w.count, w.perMs, w.match?.source])).toEqual([[1, 1000, undefined], [
      20,
      60000,
      "^-"
    ]])
    // an account's fields replace the channel's, the rest are kept
    expect(RateLimits.rulesOf(limit, "big")).toMatchObject({ intervalMs: 20, toleranceMs: 40 })
    expect(RateLimits.rulesOf(limit, "big")!.windows).toHaveLength(2)
    expect(RateLimits.rulesOf(limit, "quiet")!.windows.map((w) => w.perMs)).toEqual([5000])
    expect(RateLimits.rulesOf(limit, "unknown-account")).toEqual(base)
    expect(RateLimits.rulesOf({}, undefined)).toBeUndefined()
  })

  it("the shipped defaults: Telegram 30/s per bot, 1/s per chat, 20/min in groups; Slack 1/s per channel", () => {
    const telegram = RateLimits.rulesOf(TelegramChannel.limits, undefined)!
    expect(telegram.intervalMs).toBeCloseTo(1000 / 30)
    expect(telegram.toleranceMs).toBe(0)
    const group = telegram.windows.find((w) => w.count === 20)!
    expect(["-1001234567890", "-4001", "@mychannel"].every((to) => group.match!.test(to))).toBe(true)
    expect(["123456789", "42"].some((to) => group.match!.test(to))).toBe(false)
    expect(RateLimits.rulesOf(SlackChannel.limits, undefined)).toMatchObject({
      intervalMs: undefined,
      windows: [{ count: 1, perMs: 1000, match: undefined }]
    })
  })

  it.effect("OutboxConfig refuses bad limits, naming each field, and a maxRateWait over half the lease", () =>
    Effect.gen(function*() {
      const refused = yield* configError(OutboxConfig.layer({
        rateLimits: {
          telegram: {
            perSecond: 0,
            burst: 1.5,
            perConversation: { count: 0, per: "soon" as Duration.DurationInput, match: "(" }
          },
          slack: { accounts: { bot2: { perSecond: -1 } } }
        }
      }))
      expect(refused).toContain("rateLimits.telegram.perSecond must be a number > 0")
      expect(refused).toContain("rateLimits.telegram.burst must be an integer ≥ 1")
      expect(refused).toContain("rateLimits.telegram.perConversation[0].count must be an integer ≥ 1")
      expect(refused).toContain("rateLimits.telegram.perConversation[0].per must be a duration")
      expect(refused).toContain("rateLimits.telegram.perConversation[0].match must be a regular expression")
      expect(refused).toContain("rateLimits.slack.accounts.bot2.perSecond must be a number > 0")
      expect(yield* configError(OutboxConfig.layer({ leaseDuration: "10 seconds", maxRateWait: "6 seconds" })))
        .toContain("maxRateWait must be at most half the leaseDuration")
      expect(yield* configError(OutboxConfig.layer({ rateLimits: { telegram: "none", x: { perSecond: 2 } } })))
        .toBe("built")
    }))

  it.effect("OUTBOX_RATE_LIMITS is JSON (durations as text or millis) and OUTBOX_MAX_RATE_WAIT a duration", () =>
    Effect.gen(function*() {
      const read = (env: Record<string, string>) =>
        Effect.flatMap(OutboxConfig.OutboxConfig, Effect.succeed).pipe(
          Effect.provide(OutboxConfig.layerFromEnv),
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)), { pathDelim: "_" })),
          Effect.either
        )
      const ok = yield* read({
        OUTBOX_RATE_LIMITS: JSON.stringify({
          telegram: { perSecond: 30, perConversation: [{ count: 1, per: "1 second" }, { count: 20, per: 60000 }] },
          webhook: "none"
        }),
        OUTBOX_MAX_RATE_WAIT: "2 seconds"
      })
      expect(ok._tag).toBe("Right")
      if (ok._tag === "Right") {
        expect(ok.right.rateLimits).toEqual({
          telegram: { perSecond: 30, perConversation: [{ count: 1, per: "1 second" }, { count: 20, per: 60000 }] },
          webhook: "none"
        })
        expect(Duration.toMillis(ok.right.maxRateWait)).toBe(2000)
      }
      const defaults = yield* read({})
      expect(defaults._tag === "Right" && defaults.right.rateLimits).toEqual({})
      const notJson = yield* read({ OUTBOX_RATE_LIMITS: "{telegram: 30}" })
      expect(notJson._tag).toBe("Left")
      const badField = yield* read({ OUTBOX_RATE_LIMITS: JSON.stringify({ telegram: { perSecond: "fast" } }) })
      expect(badField._tag === "Left" && String(badField.left)).toContain("perSecond")
      const badValue = yield* read({ OUTBOX_RATE_LIMITS: JSON.stringify({ telegram: { burst: 0 } }) })
      expect(badValue._tag === "Left" && String(badValue.left)).toContain("rateLimits.telegram.burst")
    }))

  it.effect("an adapter's suggested limits are checked at registration: a bad one fails the registry's layer", () =>
    Effect.gen(function*() {
      const adapter = {
        outboundContract: "v1" as const,
        sendText: () => Promise.resolve({ messageId: "m" }),
        rateLimit: { perSecond: 0 }
      }
      const failed = yield* configError(ChannelRegistry.layer({ chat: adapter }))
      expect(failed).toContain("InvalidAdapter")
      expect(failed).toContain("rateLimit.perSecond must be a number > 0")
      const fine = yield* configError(ChannelRegistry.layer({ chat: { ...adapter, rateLimit: { perSecond: 5 } } }))
      expect(fine).toBe("built")
    }))
})
