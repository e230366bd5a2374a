import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as TestClock from "effect/TestClock"
import type { Adapter, Channel, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelAdapter from "../../src/ChannelAdapter.js"
import type { ReplyPayload } from "../../src/Delivery.js"
import { PartialDeliveryFailure, SendError } from "../../src/DeliveryError.js"
import * as Sender from "../../src/Sender.js"
import { entry, makeRecorder, type Step, v1Adapter, v2Adapter } from "./fixtures.js"

const normalize = (adapter: Adapter): Effect.Effect<Channel> =>
  ChannelAdapter.normalize(adapter, "chat").pipe(Effect.orDie)

const fourTexts: ReadonlyArray<ReplyPayload> = [{ text: "one" }, { text: "two" }, { text: "three" }, { text: "four" }]

/** A v1 channel over a recorder following `script`. */
const scripted = (script: ReadonlyArray<Step>) =>
  Effect.gen(function*() {
    const rec = yield* makeRecorder(script)
    return { rec, channel: yield* normalize(v1Adapter(rec)) }
  })

describe("Sender.send", () => {
  it.scoped("sends every part in order and reports each message id", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([])
      const report = yield* (yield* Sender.make()).send(entry(fourTexts), channel, { attempt: 1 })
      expect((yield* rec.calls).map((c) => c.ctx.text)).toEqual(["one", "two", "three", "four"])
      expect(report).toMatchObject({ partsTotal: 4, partsDelivered: 4 })
      expect(report.outcomes.map(({ index, kind, messageId }) => ({ index, kind, messageId }))).toEqual([
        { index: 0, kind: "text", messageId: "sendText-1" },
        { index: 1, kind: "text", messageId: "sendText-2" },
        { index: 2, kind: "text", messageId: "sendText-3" },
        { index: 3, kind: "text", messageId: "sendText-4" }
      ])
    }))

  it.scoped("passes the stored context to the adapter: thread, reply, idempotency key, attempt, part position", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([])
      const e = entry([{ text: "hi" }], {
        threadId: "T1",
        replyToId: "R1",
        accountId: "A1",
        silent: true,
        idempotencyKey: "k-1"
      })
      yield* (yield* Sender.make()).send(e, channel, { attempt: 3 })
      yield* (yield* Sender.make()).send(entry([{ text: "hi" }]), channel, { attempt: 1 })
      const [first, second] = yield* rec.calls
      expect(first!.ctx).toEqual(
        {
          channel: "chat",
          to: "user-1",
          accountId: "A1",
          threadId: "T1",
          replyToId: "R1",
          silent: true,
          text: "hi",
          payload: { text: "hi" },
          idempotencyKey: "k-1",
          entryId: e.id,
          attempt: 3,
          partIndex: 0,
          partCount: 1
        } satisfies SendContext
      )
      // without an idempotency key the entry id is the key
      expect(second!.ctx.idempotencyKey).toBe(e.id)
    }))

  it.scoped("resumes at partsDelivered: parts already delivered are not sent again", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([])
      const report = yield* (yield* Sender.make()).send(entry(fourTexts, { partsDelivered: 2 }), channel, {
        attempt: 2
      })
      expect((yield* rec.calls).map((c) => [c.ctx.text, c.ctx.partIndex])).toEqual([["three", 2], ["four", 3]])
      expect(report.outcomes.map((o) => o.index)).toEqual([2, 3])
      expect(report.partsDelivered).toBe(4)
    }))

  it.scoped("an entry whose parts were all delivered sends nothing and succeeds", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([])
      const report = yield* (yield* Sender.make()).send(entry(fourTexts, { partsDelivered: 4 }), channel, {
        attempt: 2
      })
      expect(yield* rec.calls).toEqual([])
      expect(report).toMatchObject({ partsTotal: 4, partsDelivered: 4, outcomes: [] })
    }))

  it.scoped("without bestEffort the first failing part stops the entry and says how far it got", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([{ ok: true }, {
        fail: { status: 503, message: "Service Unavailable" }
      }])
      const error = yield* (yield* Sender.make()).send(entry(fourTexts), channel, { attempt: 1 }).pipe(Effect.flip)
      expect((yield* rec.calls).map((c) => c.ctx.text)).toEqual(["one", "two"])
      expect(error).toEqual(
        new SendError({ message: "Service Unavailable", retryable: true, status: 503, partIndex: 1, partsDelivered: 1 })
      )
    }))

  it.scoped("with bestEffort every part is tried and a failure is never success", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([{ ok: true }, { fail: new Error("ETIMEDOUT") }, { ok: true }, {
        ok: true
      }])
      const error = yield* (yield* Sender.make()).send(entry(fourTexts, { bestEffort: true }), channel, { attempt: 1 })
        .pipe(
          Effect.flip
        )
      expect((yield* rec.calls).map((c) => c.ctx.text)).toEqual(["one", "two", "three", "four"])
      expect(error).toEqual(
        new PartialDeliveryFailure({
          entryId: entry([]).id,
          partsDelivered: 1,
          deliveredParts: [2, 3],
          partsFailed: 1,
          errors: ["part 1 (text): ETIMEDOUT"],
          retryable: true
        })
      )
    }))

  it.scoped("bestEffort retry: parts delivered past a failed one are not sent again", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([])
      const report = yield* (yield* Sender.make()).send(
        entry(fourTexts, { bestEffort: true, partsDelivered: 1, deliveredParts: [2, 3] }),
        channel,
        { attempt: 2 }
      )
      expect((yield* rec.calls).map((c) => c.ctx.text)).toEqual(["two"])
      expect(report.partsDelivered).toBe(4)
    }))

  it.scoped("bestEffort: a permanent part makes the whole failure permanent; the longest retry-after wins", () =>
    Effect.gen(function*() {
      const { channel } = yield* scripted([{ fail: { retryAfterMs: 2000 } }, {
        fail: { status: 429, retryAfterMs: 9000 }
      }])
      const retryable = yield* (yield* Sender.make()).send(entry(fourTexts, { bestEffort: true }), channel, {
        attempt: 1
      }).pipe(
        Effect.flip
      )
      expect(retryable).toMatchObject({
        _tag: "PartialDeliveryFailure",
        partsDelivered: 0,
        partsFailed: 2,
        retryable: true,
        retryAfterMs: 9000
      })

      const second = yield* scripted([{ ok: true }, { fail: { status: 500 } }, {
        fail: new Error("Forbidden: bot was blocked by the user")
      }])
      const permanent = yield* (yield* Sender.make()).send(entry(fourTexts, { bestEffort: true }), second.channel, {
        attempt: 1
      })
        .pipe(Effect.flip)
      expect(permanent).toMatchObject({ partsDelivered: 1, partsFailed: 2, retryable: false })
      expect((permanent as PartialDeliveryFailure).retryAfterMs).toBeUndefined()
    }))

  it.scoped("bestEffort with every part succeeding is a plain success", () =>
    Effect.gen(function*() {
      const { channel } = yield* scripted([])
      const report = yield* (yield* Sender.make()).send(entry(fourTexts, { bestEffort: true }), channel, { attempt: 1 })
      expect(report.partsDelivered).toBe(4)
    }))

  it.scoped("a rejected Promise with undefined or a thrown non-Error still becomes a readable SendError", () =>
    Effect.gen(function*() {
      const results: Array<unknown> = []
      for (
        const step of [{ fail: undefined }, { throw: "plain string" }, { throw: 42 }, { fail: null }] satisfies Array<
          Step
        >
      ) {
        const { channel } = yield* scripted([step])
        const error = yield* (yield* Sender.make()).send(entry([{ text: "x" }]), channel, { attempt: 1 }).pipe(
          Effect.flip
        )
        expect(error).toBeInstanceOf(SendError)
        results.push(error.message)
      }
      expect(results).toEqual([
        "adapter failed without an error value (undefined)",
        "plain string",
        "adapter failed with number 42",
        "adapter failed with null"
      ])
    }))

  it.scoped("a malformed adapter result is a permanent SendError, not a crash", () =>
    Effect.gen(function*() {
      for (const bad of [undefined, "ok", { id: "123" }, { messageId: 123 }]) {
        const { channel } = yield* scripted([{ resolve: bad }])
        const error = yield* (yield* Sender.make()).send(entry([{ text: "x" }]), channel, { attempt: 1 }).pipe(
          Effect.flip
        )
        expect(error).toMatchObject({ _tag: "SendError", retryable: false })
        expect(error.message).toMatch(/^chat\.sendText returned a malformed result \(expected \{ messageId: string \}/)
      }
    }))

  it.scoped("a 429 from the adapter keeps its retry-after", () =>
    Effect.gen(function*() {
      const { channel } = yield* scripted([{ fail: { status: 429, headers: { "retry-after": "12" } } }])
      const error = yield* (yield* Sender.make()).send(entry([{ text: "x" }]), channel, { attempt: 1 }).pipe(
        Effect.flip
      )
      expect(error).toMatchObject({ retryable: true, retryAfterMs: 12_000, status: 429, partsDelivered: 0 })
    }))
})

describe("Sender send timeout", () => {
  it.scoped("a part that hangs past the 30 s default fails retryable and its call is aborted", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([{ ok: true }, { hang: true }])
      const fiber = yield* Effect.fork((yield* Sender.make()).send(entry(fourTexts), channel, { attempt: 1 }))
      yield* TestClock.adjust("29 seconds")
      expect(yield* Fiber.poll(fiber)).toEqual(Option.none())
      yield* TestClock.adjust("2 seconds")
      const error = yield* Fiber.join(fiber).pipe(Effect.flip)
      expect(error).toMatchObject({ _tag: "SendError", retryable: true, partIndex: 1, partsDelivered: 1 })
      expect(error.message).toBe("chat: text part 1 timed out after 30s")
      expect(rec.signals.map((s) => s.aborted)).toEqual([false, true])
      expect((yield* rec.calls).length).toBe(2)
    }))

  it.scoped("a plugin that reads its abort signal only after the timeout finds it aborted", () =>
    Effect.gen(function*() {
      let options: ChannelAdapter.CallOptions | undefined
      const channel = yield* normalize({
        outboundContract: "v2",
        sendFinal: (_ctx, o) => {
          options = o // the signal is not read during the call
          return new Promise<never>(() => {})
        }
      })
      const fiber = yield* Effect.fork(
        (yield* Sender.make({ sendTimeout: "5 seconds" })).send(entry([{ text: "x" }]), channel, { attempt: 1 })
      )
      yield* TestClock.adjust("6 seconds")
      expect(yield* Fiber.join(fiber).pipe(Effect.flip)).toMatchObject({ _tag: "SendError", retryable: true })
      expect(options?.signal.aborted).toBe(true)
    }))

  it.scoped("the timeout comes from the options", () =>
    Effect.gen(function*() {
      const { channel } = yield* scripted([{ hang: true }])
      const fiber = yield* Effect.fork(
        (yield* Sender.make({ sendTimeout: "5 seconds" })).send(entry([{ text: "x" }]), channel, { attempt: 1 })
      )
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(fiber).pipe(Effect.flip)).toMatchObject({
        retryable: true,
        message: "chat: text part 0 timed out after 5s"
      })
    }))

  it.scoped("an Effect-native adapter that never completes is interrupted at the timeout", () =>
    Effect.gen(function*() {
      const interrupted = yield* Ref.make(false)
      const channel = yield* normalize({
        outboundContract: "v2",
        sendFinal: () => Effect.never.pipe(Effect.onInterrupt(() => Ref.set(interrupted, true)))
      })
      const fiber = yield* Effect.fork((yield* Sender.make()).send(entry([{ text: "x" }]), channel, { attempt: 1 }))
      yield* TestClock.adjust("30 seconds")
      expect(yield* Fiber.join(fiber).pipe(Effect.flip)).toMatchObject({
        retryable: true,
        message: "chat: payload part 0 timed out after 30s"
      })
      expect(yield* Ref.get(interrupted)).toBe(true)
    }))
})

describe("Sender send timeout: one watchdog for all suspended parts", () => {
  it.scoped("parts started at different times each time out at their own deadline", () =>
    Effect.gen(function*() {
      const channel = yield* normalize({ outboundContract: "v2", sendFinal: () => Effect.never })
      const sender = yield* Sender.make({ sendTimeout: "30 seconds" })
      const first = yield* Effect.fork(sender.send(entry([{ text: "a" }]), channel, { attempt: 1 }))
      yield* TestClock.adjust("10 seconds")
      const second = yield* Effect.fork(sender.send(entry([{ text: "b" }]), channel, { attempt: 1 }))
      yield* TestClock.adjust("20 seconds")
      expect(yield* Fiber.join(first).pipe(Effect.flip)).toMatchObject({
        retryable: true,
        message: "chat: payload part 0 timed out after 30s"
      })
      expect(yield* Fiber.poll(second)).toEqual(Option.none())
      yield* TestClock.adjust("10 seconds")
      expect(yield* Fiber.join(second).pipe(Effect.flip)).toMatchObject({ retryable: true })
    }))
})

describe("Sender.reconcile", () => {
  it.scoped("is unknown when the adapter cannot tell", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const channel = yield* normalize(v2Adapter(rec))
      expect(yield* (yield* Sender.make()).reconcile(entry(fourTexts), channel, { attempt: 2 })).toBe("unknown")
      expect(yield* rec.calls).toEqual([])
    }))

  it.scoped("asks the adapter about the first undelivered part", () =>
    Effect.gen(function*() {
      const asked: Array<SendContext> = []
      const rec = yield* makeRecorder()
      const channel = yield* normalize({
        ...v1Adapter(rec),
        reconcile: (ctx) => {
          asked.push(ctx)
          return Promise.resolve("sent" as const)
        }
      })
      expect(yield* (yield* Sender.make()).reconcile(entry(fourTexts, { partsDelivered: 2 }), channel, { attempt: 2 }))
        .toBe(
          "sent"
        )
      expect(asked.map((c) => [c.partIndex, c.text])).toEqual([[2, "three"]])
      expect(yield* rec.calls).toEqual([])
    }))

  it.scoped("a failing or nonsensical reconcile counts as unknown", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      for (const answer of [Promise.reject(new Error("down")), Promise.resolve("maybe")]) {
        answer.catch(() => {})
        const channel = yield* normalize({ ...v1Adapter(rec), reconcile: () => answer as Promise<"sent"> })
        expect(yield* (yield* Sender.make()).reconcile(entry(fourTexts), channel, { attempt: 2 })).toBe("unknown")
      }
    }))
})

describe("Sender.layer", () => {
  it.scoped("provides the same sender as make", () =>
    Effect.gen(function*() {
      const { channel, rec } = yield* scripted([])
      const sender = yield* Sender.Sender
      expect(sender.plan(entry(fourTexts), channel).parts).toHaveLength(4)
      yield* sender.send(entry([{ text: "via layer" }]), channel, { attempt: 1 })
      expect((yield* rec.calls).map((c) => c.ctx.text)).toEqual(["via layer"])
    }).pipe(Effect.provide(Sender.layer({ sendTimeout: "1 second" }))))
})
