/**
 * Misbehaving adapters: plugins that throw strings, reject with null, throw objects without a message, hang
 * forever, return malformed results — and nastier ones (a thenable whose `then` throws, a result or an error whose
 * getters throw, an Effect-native send that interrupts itself). Through the Outbox, live and by the worker, each
 * must become a typed SendFailed and a recorded row, never a defect, an unhandled rejection or a dead worker pass;
 * a good message in the same worker batch, and one enqueued later, are still delivered.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import type { AdapterV1, CallOptions, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import type { EntryId, EntryState } from "../../src/Delivery.js"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import * as Metrics from "../../src/Metrics.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as RecoveryWorker from "../../src/RecoveryWorker.js"
import { advanceTo } from "../support/clock.js"

const SEND_TIMEOUT = Duration.seconds(5)

/** Closes the worker's scope; a send still hanging is waited for (within the shutdown grace) until it times out. */
const closeWorker = (scope: Scope.CloseableScope) =>
  Effect.gen(function*() {
    const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
    yield* TestClock.adjust(SEND_TIMEOUT)
    yield* Fiber.join(closing)
  })
const INTERVAL = Duration.seconds(1)

/** What the "bad" part of an adapter does instead of sending. */
interface Misbehaviour {
  readonly name: string
  readonly act: (ctx: SendContext, options: CallOptions) => unknown
  /** the row after the failed attempt */
  readonly state: EntryState
  readonly message: RegExp
  /** the send only fails at the send timeout */
  readonly hangs?: boolean
}

const unreadable = {
  get message(): string {
    throw new Error("the message getter throws")
  }
}

const misbehaviours: ReadonlyArray<Misbehaviour> = [
  {
    name: "throws a string",
    act: () => {
      throw "boom"
    },
    state: "failed_retryable",
    message: /^boom$/
  },
  {
    name: "rejects with null",
    act: () => Promise.reject(null),
    state: "failed_retryable",
    message: /adapter failed with null/
  },
  {
    name: "throws undefined",
    act: () => {
      throw undefined
    },
    state: "failed_retryable",
    message: /without an error value/
  },
  {
    name: "throws an object without a message",
    act: () => {
      throw { code: 42 }
    },
    state: "failed_retryable",
    message: /adapter failed with \{"code":42\}/
  },
  {
    name: "rejects with a circular object",
    act: () => {
      const o: Record<string, unknown> = { code: "E" }
      o["self"] = o
      return Promise.reject(o)
    },
    state: "failed_retryable",
    message: /adapter failed with/
  },
  {
    name: "hangs forever",
    act: () => new Promise(() => {}),
    state: "failed_retryable",
    message: /timed out after 5s/,
    hangs: true
  },
  {
    name: "hangs, then rejects when aborted (like fetch)",
    act: (_, { signal }) =>
      new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(new Error("AbortError")))),
    state: "failed_retryable",
    message: /timed out after 5s/,
    hangs: true
  },
  {
    name: "resolves to undefined",
    act: () => Promise.resolve(undefined),
    state: "failed_terminal",
    message: /returned a malformed result \(expected \{ messageId: string \}, got undefined\)/
  },
  {
    name: "resolves to a string",
    act: () => Promise.resolve("ok"),
    state: "failed_terminal",
    message: /malformed result .*got "ok"/
  },
  {
    name: "resolves without messageId",
    act: () => Promise.resolve({ id: 7 }),
    state: "failed_terminal",
    message: /malformed result .*\{"id":7\}/
  },
  {
    name: "returns a number, not a Promise",
    act: () => 42,
    state: "failed_terminal",
    message: /malformed result .*got 42/
  },
  {
    name: "returns a thenable whose then throws",
    act: () => ({
      then() {
        throw new Error("then throws")
      }
    }),
    state: "failed_retryable",
    message: /then throws/
  },
  {
    name: "resolves to an object whose messageId getter throws",
    act: () =>
      Promise.resolve({
        get messageId(): string {
          throw new Error("getter throws")
        }
      }),
    state: "failed_terminal",
    message: /malformed result/
  },
  {
    name: "throws an error whose message getter throws",
    act: () => {
      throw unreadable
    },
    state: "failed_retryable",
    message: /could not be read/
  },
  {
    name: "rejects with an error whose message getter throws",
    act: () => Promise.reject(unreadable),
    state: "failed_retryable",
    message: /could not be read/
  },
  {
    name: "is an Effect that dies",
    act: () => Effect.die("effect defect"),
    state: "failed_retryable",
    message: /effect defect/
  },
  {
    name: "is an Effect that interrupts itself",
    act: () => Effect.interrupt,
    state: "failed_retryable",
    message: /interrupted/
  }
]

// unhandled rejections anywhere in this file's process are collected and must stay empty
const unhandled: Array<unknown> = []
const onUnhandled = (reason: unknown) => {
  unhandled.push(reason)
}
beforeAll(() => {
  process.on("unhandledRejection", onUnhandled)
})
afterAll(() => {
  process.off("unhandledRejection", onUnhandled)
})
/** lets pending promise callbacks run (a macrotask, not a sleep) so an unhandled rejection would be seen */
const settle = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** A v1 Promise-style adapter: texts starting with "bad" misbehave, the rest are sent and recorded. */
const adapterFor = (misbehaviour: Misbehaviour) => {
  const sent: Array<string> = []
  const aborted: Array<boolean> = []
  const adapter: AdapterV1 = {
    sendText: ((ctx: SendContext, options: CallOptions) => {
      if (ctx.text.startsWith("bad")) {
        options.signal.addEventListener("abort", () => aborted.push(true))
        return misbehaviour.act(ctx, options)
      }
      sent.push(ctx.text)
      return Promise.resolve({ messageId: `m-${sent.length}` })
    }) as AdapterV1["sendText"]
  }
  return { adapter, sent, aborted }
}

const outboxFor = (adapter: AdapterV1) =>
  Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
    MemoryOutboxRepo.layer,
    ChannelRegistry.layer({ chat: adapter }).pipe(Layer.orDie),
    OutboxConfig.layer({ nodeId: "adapters", retryJitter: false, sendTimeout: SEND_TIMEOUT, workerInterval: INTERVAL })
      .pipe(
        Layer.orDie
      )
  )))

const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
const request = (to: string, text: string) => ({ channel: "chat", to, payloads: [{ text }] })
const rowOf = (id: string) =>
  Effect.flatMap(Outbox.Outbox, (o) => o.get(id as EntryId)).pipe(Effect.map(Option.getOrThrow))

describe("misbehaving adapters", () => {
  for (const misbehaviour of misbehaviours) {
    it.effect(`${misbehaviour.name}: a typed SendFailed and a recorded row, live and in the worker, which goes on`, () => {
      const { aborted, adapter, sent } = adapterFor(misbehaviour)
      return Effect.gen(function*() {
        const outbox = yield* Outbox.Outbox
        const unhandledBefore = unhandled.length

        // live
        const live = yield* Effect.fork(outbox.deliver(request("u1", "bad live")))
        if (misbehaviour.hangs) yield* TestClock.adjust(SEND_TIMEOUT)
        const exit = yield* Fiber.await(live)
        if (!Exit.isFailure(exit) || exit.cause._tag !== "Fail") {
          return expect.fail(`expected a typed failure, got ${String(exit)}`)
        }
        const error = exit.cause.error
        if (error._tag !== "SendFailed") return expect.fail(`expected SendFailed, got ${error._tag}`)
        expect(error.message).toMatch(misbehaviour.message)
        expect(error.retryable).toBe(misbehaviour.state === "failed_retryable")
        expect(yield* rowOf(error.entryId)).toMatchObject({
          state: misbehaviour.state,
          attemptCount: 1,
          lastError: error.message
        })
        if (misbehaviour.hangs) expect(aborted).toEqual([true]) // the plugin was told to give up

        // worker: the bad row and a good one in the same batch, then one enqueued later
        const passFailures = yield* counter(Metrics.workerPassFailures)
        const bad = yield* outbox.enqueue(request("u2", "bad queued"))
        const good = yield* outbox.enqueue(request("u3", "good queued"))
        const scope = yield* Scope.make()
        yield* Layer.buildWithScope(RecoveryWorker.layer, scope)
        // each sleep woken at its own instant, the outbox's fibers settled in between (a bare adjust can check the rows
        // while a busy machine's worker is still between two time slices of its pass)
        const started = yield* Clock.currentTimeMillis
        yield* advanceTo(started + Duration.toMillis(INTERVAL))
        if (misbehaviour.hangs) yield* advanceTo(started + Duration.toMillis(Duration.sum(INTERVAL, SEND_TIMEOUT)))
        expect(yield* rowOf(bad)).toMatchObject({ state: misbehaviour.state, attemptCount: 1 })
        expect((yield* rowOf(bad)).lastError).toMatch(misbehaviour.message)
        expect((yield* rowOf(good)).state).toBe("delivered")
        const later = yield* outbox.enqueue(request("u4", "good later"))
        // with a hanging adapter, the passes around `later` also retry the hanging rows (each holding a slot)
        const waitMs = Duration.toMillis(
          misbehaviour.hangs ? Duration.times(Duration.sum(SEND_TIMEOUT, INTERVAL), 3) : INTERVAL
        )
        for (
          let waited = 0;
          waited < waitMs && (yield* rowOf(later)).state !== "delivered";
          waited += Duration.toMillis(INTERVAL)
        ) {
          yield* TestClock.adjust(INTERVAL)
        }
        expect((yield* rowOf(later)).state).toBe("delivered")
        expect(sent).toEqual(["good queued", "good later"])
        expect((yield* counter(Metrics.workerPassFailures)) - passFailures).toBe(0)
        yield* closeWorker(scope)

        yield* settle
        expect(unhandled.slice(unhandledBefore)).toEqual([])
      }).pipe(Effect.provide(outboxFor(adapter)), Logger.withMinimumLogLevel(LogLevel.None))
    })
  }

  // Worker sends run in their own fibers and ack themselves: one hanging send (up to sendTimeout) holds its slot,
  // not the acks of rows already sent in the same claim, nor the next pass.
  it.effect("a hanging send does not hold up the rest of its batch: the rows already sent are acked within the pass", () => {
    const hang = misbehaviours.find((m) => m.name === "hangs forever")!
    const { adapter, sent } = adapterFor(hang)
    return Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const bad = yield* outbox.enqueue(request("u1", "bad queued"))
      const good = yield* outbox.enqueue(request("u2", "good queued"))
      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(RecoveryWorker.layer, scope)
      yield* TestClock.adjust(INTERVAL)
      expect(sent).toEqual(["good queued"])
      expect((yield* rowOf(bad)).state).toBe("in_flight")
      expect((yield* rowOf(good)).state).toBe("delivered")
      yield* TestClock.adjust(SEND_TIMEOUT)
      yield* closeWorker(scope)
    }).pipe(Effect.provide(outboxFor(adapter)), Logger.withMinimumLogLevel(LogLevel.None))
  })
})
