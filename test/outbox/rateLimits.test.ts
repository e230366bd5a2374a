/**
 * Channel rate limits under TestClock: sends wait for their tokens (not an attempt, not a failure), a 429's retry-after
 * pauses the whole channel, conversations keep their order, and no lease runs out while a row waits.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Stream from "effect/Stream"
import type { AdapterV1, SendContext, SendResult } from "../../src/ChannelAdapter.js"
import * as TelegramChannel from "../../src/channels/Telegram.js"
import type { EntryId } from "../../src/Delivery.js"
import { SendError, StoreError } from "../../src/DeliveryError.js"
import * as Metrics from "../../src/Metrics.js"
import type { OutboxEvent } from "../../src/Outbox.js"
import { Outbox } from "../../src/Outbox.js"
import type * as OutboxConfig from "../../src/OutboxConfig.js"
import type { OutboxRepo } from "../../src/OutboxRepo.js"
import type { BucketStore, Reservation } from "../../src/RateLimits.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import { advance, settle } from "../support/clock.js"
import { memoryStoreWith } from "../support/stores.js"
import { outboxLayer, reply, testConfig } from "./harness.js"

const SEC = 1000
const MIN = 60 * SEC

interface Sent {
  readonly channel: string
  readonly to: string
  readonly text: string
  readonly at: number
  readonly attempt: number
}

/** A v1 adapter that records each call with the clock's time; `answer` may fail a call. */
const recorder = (
  answer: (ctx: SendContext, n: number) => Effect.Effect<SendResult, SendError> | undefined = () => undefined,
  extra: Partial<AdapterV1> = {}
) => {
  const sent: Array<Sent> = []
  const adapter: AdapterV1 = {
    outboundContract: "v1",
    ...extra,
    sendText: (ctx) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        sent.push({ channel: ctx.channel, to: ctx.to, text: ctx.text, at, attempt: ctx.attempt })
        return answer(ctx, sent.length) ?? Effect.succeed({ messageId: `m-${sent.length}` })
      })
  }
  return { adapter, sent }
}

/** An outbox with its worker over the memory store. */
const withWorker = (
  adapters: Parameters<typeof outboxLayer>[0],
  config: OutboxConfig.OutboxConfigInput
) => RecoveryWorker.layer.pipe(Layer.provideMerge(outboxLayer(adapters, { config })))

/** An outbox with its worker over `store`. */
const withWorkerOn = (
  store: Layer.Layer<OutboxRepo>,
  adapters: Parameters<typeof outboxLayer>[0],
  config: OutboxConfig.OutboxConfigInput
) => RecoveryWorker.layer.pipe(Layer.provideMerge(outboxLayer(adapters, { config, store })))

const range = (n: number) => Array.from({ length: n }, (_, i) => i)

/** The outbox's events from now on, collected in the background. */
const collectEvents = Effect.gen(function*() {
  const outbox = yield* Outbox
  const events: Array<OutboxEvent> = []
  yield* Effect.forkScoped(Stream.runForEach(outbox.events, (event) => Effect.sync(() => void events.push(event))))
  yield* settle // the subscriber is in before anything happens
  return events
})

const rows = Effect.flatMap(Outbox, (outbox) => outbox.list({ limit: 1000 }))

describe("channel rate limits", () => {
  it.scoped("100 replies to one chat at 1 per second are sent one per second exactly: no attempt counted, none failed", () =>
    Effect.gen(function*() {
      const chat = recorder()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const events = yield* collectEvents
        for (const i of range(100)) yield* outbox.enqueue(reply(`reply ${i}`))
        yield* advance(100 * SEC)
        yield* outbox.awaitIdle
        expect(chat.sent.map((s) => s.at)).toEqual(range(100).map((i) => i * SEC))
        expect(chat.sent.map((s) => s.text)).toEqual(range(100).map((i) => `reply ${i}`))
        expect(chat.sent.every((s) => s.attempt === 1)).toBe(true)
        const stored = yield* rows
        expect(stored.filter((r) => r.state === "delivered")).toHaveLength(100)
        expect(stored.every((r) => r.attemptCount === 0 && r.lastError === null)).toBe(true)
        expect(events.filter((e) => e._tag === "retry_scheduled" || e._tag === "terminal")).toEqual([])
        // every reply but the first waited for its token
        expect(events.filter((e) => e._tag === "throttled").length).toBeGreaterThanOrEqual(99)
      }).pipe(Effect.provide(withWorker({ chat: chat.adapter }, {
        rateLimits: { chat: { perConversation: { count: 1, per: "1 second" } } }
      })))
    }))

  it.scoped("100 replies to 100 chats at 30 per second take 100/30 s, one token every 33.3 ms", () =>
    Effect.gen(function*() {
      const chat = recorder()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        for (const i of range(100)) yield* outbox.enqueue(reply(`reply ${i}`, { to: `chat-${i}` }))
        yield* advance(5 * SEC)
        yield* outbox.awaitIdle
        const times = chat.sent.map((s) => s.at).sort((a, b) => a - b)
        expect(times).toEqual(range(100).map((k) => Math.ceil((k * SEC) / 30)))
        expect(times[99]).toBeLessThanOrEqual((100 * SEC) / 30)
        const stored = yield* rows
        expect(stored.every((r) => r.state === "delivered" && r.attemptCount === 0)).toBe(true)
        // the ones beyond the worker's horizon went back to the store meanwhile, without an attempt
        const postponed = yield* Metric.value(Metrics.ratePostponed("chat"))
        expect(postponed.count).toBeGreaterThan(0)
        const waits = yield* Metric.value(Metrics.rateWait("chat"))
        expect(waits.count).toBeGreaterThanOrEqual(100)
      }).pipe(Effect.provide(withWorker({ chat: chat.adapter }, { rateLimits: { chat: { perSecond: 30 } } })))
    }))

  it.scoped("a 429 with retry-after 5 s pauses the whole channel 5 s while other channels keep sending", () =>
    Effect.gen(function*() {
      const tg = recorder((_, n) =>
        n === 1
          ? Effect.fail(
            new SendError({ message: "Too Many Requests", retryable: true, status: 429, retryAfterMs: 5000 })
          )
          : undefined
      )
      const other = recorder()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const events = yield* collectEvents
        yield* outbox.enqueue(reply("to A", { channel: "tg", to: "A" }))
        yield* outbox.enqueue(reply("to B", { channel: "tg", to: "B" }))
        for (const i of range(3)) yield* outbox.enqueue(reply(`other ${i}`, { channel: "other", to: `o${i}` }))
        yield* settle
        yield* outbox.awaitIdle
        // A got the 429 at 0; B, waiting for its token at 1 s, was put back to wait for the pause's end
        expect(tg.sent.map((s) => [s.to, s.at])).toEqual([["A", 0]])
        expect(other.sent.map((s) => s.at)).toEqual([0, 0, 0])
        expect(events.filter((e) => e._tag === "rate_limited")).toEqual([
          expect.objectContaining({ channel: "tg", retryAfterMs: 5000, until: 5000 })
        ])

        yield* advance(2 * SEC)
        expect((yield* Metric.value(Metrics.ratePause("tg"))).value).toBe(5000)
        // the other channel is not held: a reply enqueued now goes out now
        yield* outbox.enqueue(reply("other later", { channel: "other", to: "o9" }))
        // a live reply to the paused channel would wait 3 s, more than maxRateWait: stored, sent later
        const live = yield* outbox.deliver(reply("to C", { channel: "tg", to: "C" }))
        expect(live).toMatchObject({ _tag: "Deferred", reason: "rate_limited" })
        yield* settle
        yield* outbox.awaitIdle
        expect(other.sent.map((s) => s.at)).toEqual([0, 0, 0, 2 * SEC])
        expect(tg.sent).toHaveLength(1)

        yield* advance(8 * SEC)
        yield* outbox.awaitIdle
        const after = tg.sent.slice(1)
        expect(after.map((s) => s.to).sort()).toEqual(["A", "B", "C"])
        // nothing of the channel went out during the pause; then it resumed at its rate, 1 per second
        expect(after[0]!.at).toBe(5 * SEC)
        after.slice(1).forEach((s, i) => expect(s.at - after[i]!.at).toBeGreaterThanOrEqual(SEC))
        expect((yield* Metric.value(Metrics.ratePause("tg"))).value).toBe(0)
        const stored = yield* rows
        expect(stored.every((r) => r.state === "delivered" && r.attemptCount === 0)).toBe(true)
      }).pipe(Effect.provide(withWorker({ tg: tg.adapter, other: other.adapter }, {
        rateLimits: { tg: { perSecond: 1 } },
        maxRateWait: "2 seconds"
      })))
    }))

  it.scoped("order per conversation holds throughout: windows, the account's rate and a 429 pause", () =>
    Effect.gen(function*() {
      const chat = recorder((_, n) =>
        n === 7
          ? Effect.fail(new SendError({ message: "429", retryable: true, status: 429, retryAfterMs: 3000 }))
          : undefined
      )
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const chats = ["a", "b", "c", "d"]
        for (const i of range(8)) {
          for (const to of chats) yield* outbox.enqueue(reply(`${to}${i}`, { to }))
        }
        yield* advance(2 * MIN)
        yield* outbox.awaitIdle
        const accepted = chat.sent.filter((_, i) => i !== 6)
        expect(accepted).toHaveLength(32)
        for (const to of chats) {
          const mine = accepted.filter((s) => s.to === to)
          expect(mine.map((s) => s.text)).toEqual(range(8).map((i) => `${to}${i}`))
          mine.slice(1).forEach((s, i) => expect(s.at - mine[i]!.at).toBeGreaterThanOrEqual(SEC))
        }
        // the account's 3 per second: evenly spaced, whoever the recipient
        const times = chat.sent.map((s) => s.at)
        times.slice(1).forEach((t, i) => expect(t - times[i]!).toBeGreaterThanOrEqual(Math.floor(SEC / 3)))
        // nothing during the pause
        const pausedAt = chat.sent[6]!.at
        expect(times.filter((t) => t > pausedAt && t < pausedAt + 3000)).toEqual([])
        expect((yield* rows).every((r) => r.state === "delivered" && r.attemptCount === 0)).toBe(true)
      }).pipe(Effect.provide(withWorker({ chat: chat.adapter }, {
        rateLimits: { chat: { perSecond: 3, perConversation: { count: 1, per: "1 second" } } }
      })))
    }))

  it.scoped("a slow limiter never lets a lease expire: rows wait in the store, a send under way renews its lease", () =>
    Effect.gen(function*() {
      // under a 10 s lease: 6 chats at 1 per 20 s for the account, and three messages to one chat at 1 per 20 s
      const chat = recorder()
      const multi = recorder(undefined, { textChunkLimit: 5 })
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        // stored together, so the worker's first pass finds all seven (one at a time, a pass could start between two
        // and hold the rest until its budget ends, waiting on the multi-part send)
        yield* Effect.forEach(
          [
            reply("aaaa bbbb cccc", { channel: "multi", to: "slow-chat" }),
            ...range(6).map((i) => reply(`r${i}`, { to: `chat-${i}` }))
          ],
          (request) => outbox.enqueue(request),
          { concurrency: "unbounded", discard: true }
        )
        let expiredSeen = 0
        for (const _ of range(60)) {
          yield* advance(2 * SEC)
          const now = yield* Clock.currentTimeMillis
          const inFlight = yield* outbox.list({ state: "in_flight", limit: 100 })
          expiredSeen += inFlight.filter((r) => (r.leaseExpiresAt ?? 0) <= now).length
          // the account's rows wait for far tokens in the store, holding no lease
          expect(inFlight.filter((r) => r.channel === "chat").length).toBeLessThanOrEqual(1)
        }
        yield* outbox.awaitIdle
        expect(expiredSeen).toBe(0)
        // the message under way waited in place for its parts' tokens, its lease renewed: one attempt, no replay
        expect(multi.sent.map((s) => [s.text, s.at, s.attempt])).toEqual([
          ["aaaa ", 0, 1],
          ["bbbb ", 20 * SEC, 1],
          ["cccc", 40 * SEC, 1]
        ])
        expect(chat.sent.map((s) => [s.to, s.at])).toEqual(range(6).map((i) => [`chat-${i}`, i * 20 * SEC]))
        const stored = yield* rows
        expect(stored.every((r) => r.state === "delivered" && r.attemptCount === 0)).toBe(true)
      }).pipe(Effect.provide(withWorker({ chat: chat.adapter, multi: multi.adapter }, {
        leaseDuration: "10 seconds",
        maxRateWait: "2 seconds",
        rateLimits: {
          chat: { perSecond: 1 / 20 },
          multi: { perConversation: { count: 1, per: "20 seconds" } }
        }
      })))
    }))

  it.scoped("a live deliver waits for a near token; one further than maxRateWait is stored and Deferred, sent at its token", () =>
    Effect.gen(function*() {
      const chat = recorder()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        expect((yield* outbox.deliver(reply("first")))._tag).toBe("Delivered")
        // the chat's next token is 1 s away, within maxRateWait: the caller waits for it
        const second = yield* Effect.fork(outbox.deliver(reply("second")))
        yield* advance(SEC)
        expect((yield* Fiber.join(second))._tag).toBe("Delivered")
        // three more to other chats of the account (1 per second): the third's token is 3 s away
        const outcomes = yield* Effect.forEach(
          ["x", "y", "z"],
          (text) => Effect.fork(outbox.deliver(reply(text, { to: `other-${text}` })))
        )
        yield* settle
        const z = yield* Fiber.join(outcomes[2]!)
        expect(z).toMatchObject({ _tag: "Deferred", reason: "rate_limited" })
        const row = yield* outbox.get(z.entryId)
        expect(row).toMatchObject({ _tag: "Some", value: { state: "queued", attemptCount: 0, leaseOwner: null } })
        yield* advance(10 * SEC)
        yield* outbox.awaitIdle
        expect(chat.sent.map((s) => [s.text, s.at])).toEqual([
          ["first", 0],
          ["second", SEC],
          ["x", 2 * SEC],
          ["y", 3 * SEC],
          ["z", 4 * SEC]
        ])
        expect((yield* rows).every((r) => r.state === "delivered" && r.attemptCount === 0)).toBe(true)
      }).pipe(Effect.provide(withWorker({ chat: chat.adapter }, {
        maxRateWait: "2 seconds",
        rateLimits: { chat: { perSecond: 1, perConversation: { count: 1, per: "1 second" } } }
      })))
    }))

  it.scoped("a live progress (tool) message whose token is further than maxRateWait is not kept for later: failed for good", () =>
    Effect.gen(function*() {
      const chat = recorder()
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        expect((yield* outbox.deliver(reply("answer")))._tag).toBe("Delivered")
        const failed = yield* Effect.flip(outbox.deliver(reply("thinking…", { kind: "tool" })))
        expect(failed).toMatchObject({ _tag: "SendFailed", retryable: false })
        const row = yield* outbox.get((failed as { readonly entryId: EntryId }).entryId)
        expect(row).toMatchObject({
          _tag: "Some",
          value: { state: "failed_terminal", terminalReason: "non_final_recovery_skip", attemptCount: 0 }
        })
        yield* advance(10 * SEC)
        expect(chat.sent.map((s) => s.text)).toEqual(["answer"])
      }).pipe(Effect.provide(withWorker({ chat: chat.adapter }, {
        maxRateWait: "2 seconds",
        rateLimits: { chat: { perConversation: { count: 1, per: "5 seconds" } } }
      })))
    }))

  describe("where the limits come from", () => {
    /** `texts` sent to `to`; the times of each recipient's calls. */
    const timesOf = (sent: ReadonlyArray<Sent>, to: string) => sent.filter((s) => s.to === to).map((s) => s.at)

    it.scoped("an adapter's suggested limits apply without a config entry; an entry replaces them, \"none\" removes them", () =>
      Effect.gen(function*() {
        const run = (config: OutboxConfig.OutboxConfigInput) =>
          Effect.gen(function*() {
            const start = yield* Clock.currentTimeMillis
            const chat = recorder(undefined, { rateLimit: { perConversation: { count: 1, per: "1 second" } } })
            yield* Effect.gen(function*() {
              const outbox = yield* Outbox
              for (const i of range(3)) yield* outbox.enqueue(reply(`r${i}`))
              yield* advance(5 * SEC)
              yield* outbox.awaitIdle
            }).pipe(Effect.provide(withWorker({ chat: chat.adapter }, config)))
            return timesOf(chat.sent, "user-1").map((t) => t - start)
          }).pipe(Effect.scoped)
        expect(yield* run({})).toEqual([0, SEC, 2 * SEC])
        expect(yield* run({ rateLimits: { chat: { perSecond: 2 } } })).toEqual([0, 500, 1000])
        expect(yield* run({ rateLimits: { chat: "none" } })).toEqual([0, 0, 0])
      }))

    it.scoped("an account has its own budget: accounts[id] overrides the channel's rate for that account", () =>
      Effect.gen(function*() {
        const chat = recorder()
        const config: OutboxConfig.OutboxConfigInput = {
          rateLimits: { chat: { perSecond: 1, accounts: { big: { perSecond: 10 } } } }
        }
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          for (const i of range(5)) {
            yield* outbox.enqueue(reply(`big ${i}`, { to: `b${i}`, accountId: "big" }))
            yield* outbox.enqueue(reply(`small ${i}`, { to: `s${i}` }))
          }
          // the worker starts on the backlog: its first pass claims all ten
          yield* Layer.build(RecoveryWorker.layer.pipe(Layer.provide(testConfig(config))))
          yield* advance(10 * SEC)
          yield* outbox.awaitIdle
          const at = (prefix: string) => chat.sent.filter((s) => s.text.startsWith(prefix)).map((s) => s.at)
          expect(at("big")).toEqual([0, 100, 200, 300, 400])
          expect(at("small")).toEqual([0, SEC, 2 * SEC, 3 * SEC, 4 * SEC])
        }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter }, { config })))
      }))

    it.scoped("a burst: after a quiet time `burst` sends go at once, then the rate holds", () =>
      Effect.gen(function*() {
        const chat = recorder()
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          for (const i of range(6)) yield* outbox.enqueue(reply(`r${i}`, { to: `c${i}` }))
          yield* advance(10 * SEC)
          yield* outbox.awaitIdle
          expect(chat.sent.map((s) => s.at)).toEqual([0, 0, 0, SEC, 2 * SEC, 3 * SEC])
        }).pipe(
          Effect.provide(withWorker({ chat: chat.adapter }, { rateLimits: { chat: { perSecond: 1, burst: 3 } } }))
        )
      }))

    it.scoped("Telegram's shipped limits: a group (negative chat id) gets 20 a minute, a private chat 1 a second", () =>
      Effect.gen(function*() {
        const tg = recorder()
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          for (const i of range(25)) {
            yield* outbox.enqueue(reply(`g${i}`, { channel: "tg", to: "-1001234567890" }))
            yield* outbox.enqueue(reply(`p${i}`, { channel: "tg", to: "42" }))
          }
          yield* advance(2 * MIN)
          yield* outbox.awaitIdle
          const group = timesOf(tg.sent, "-1001234567890")
          const direct = timesOf(tg.sent, "42")
          expect(group).toHaveLength(25)
          expect(direct).toHaveLength(25)
          for (const times of [group, direct]) {
            times.slice(1).forEach((t, i) => expect(t - times[i]!).toBeGreaterThanOrEqual(SEC))
          }
          // in the group, never more than 20 in a minute: the 21st waits for the first to leave the window
          group.slice(20).forEach((t, i) => expect(t - group[i]!).toBeGreaterThanOrEqual(MIN))
          expect(group[20]! - group[0]!).toBeLessThan(MIN + SEC)
          // the private chat is not held to 20 a minute
          expect(direct[24]! - direct[0]!).toBeLessThan(30 * SEC)
          // and the bot as a whole to 30 a second: no two sends closer than 1/30 s
          const all = tg.sent.map((s) => s.at)
          all.slice(1).forEach((t, i) => expect(t - all[i]!).toBeGreaterThanOrEqual(33))
        }).pipe(Effect.provide(withWorker({ tg: tg.adapter }, { rateLimits: { tg: TelegramChannel.limits } })))
      }))
  })

  describe("buckets in a store shared by processes", () => {
    /** A shared store double: slots from `reserve`, pauses recorded. */
    const sharedStore = (reserve: BucketStore["reserve"]) => {
      const pauses: Array<{ readonly key: string; readonly until: number }> = []
      const store: BucketStore = {
        kind: "test",
        reserve,
        pause: (key, until) => Effect.sync(() => (pauses.push({ key, until }), true)),
        cancel: () => Effect.void
      }
      return { store, pauses }
    }

    it.scoped("a send whose slot came late is still spaced an interval after this process's previous send", () =>
      Effect.gen(function*() {
        // a store that hands every send its own time as its slot, as if other processes' sends had made them late
        const { pauses, store } = sharedStore((_, __, at) =>
          Effect.succeed<Reservation>({ _tag: "Reserved", slot: at, before: 0, after: 0 })
        )
        const chat = recorder((_, n) =>
          n === 5
            ? Effect.fail(new SendError({ message: "429", retryable: true, status: 429, retryAfterMs: 2000 }))
            : undefined
        )
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          for (const i of range(5)) yield* outbox.enqueue(reply(`r${i}`, { to: `c${i}` }))
          yield* advance(10 * SEC)
          yield* outbox.awaitIdle
          expect(chat.sent.slice(0, 5).map((s) => s.at)).toEqual([0, 100, 200, 300, 400])
          // the 429 went to the shared store, keyed by channel and account
          expect(pauses).toEqual([{ key: JSON.stringify(["chat", null]), until: 2400 }])
        }).pipe(Effect.provide(withWorkerOn(
          memoryStoreWith(() => ({ rateBuckets: store })),
          { chat: chat.adapter },
          { rateLimits: { chat: { perSecond: 10 } } }
        )))
      }))

    it.scoped("a shared store that fails: the process limits alone meanwhile, and says so (log, metric)", () =>
      Effect.gen(function*() {
        const { store } = sharedStore(() => Effect.fail(new StoreError({ operation: "reserve", message: "gone" })))
        const chat = recorder()
        yield* Effect.gen(function*() {
          const outbox = yield* Outbox
          const failures = (yield* Metric.value(Metrics.writeFailures("rate_reserve"))).count
          for (const i of range(3)) yield* outbox.enqueue(reply(`r${i}`, { to: `c${i}` }))
          yield* advance(5 * SEC)
          yield* outbox.awaitIdle
          expect(chat.sent.map((s) => s.at)).toEqual([0, 500, 1000])
          expect((yield* Metric.value(Metrics.writeFailures("rate_reserve"))).count - failures).toBe(3)
        }).pipe(Effect.provide(withWorkerOn(
          memoryStoreWith(() => ({ rateBuckets: store })),
          { chat: chat.adapter },
          { rateLimits: { chat: { perSecond: 2 } } }
        )))
      }))
  })
})
