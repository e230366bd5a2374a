/**
 * `/metrics` after a small gateway run: it parses as Prometheus text (every sample under a TYPE, histogram buckets
 * cumulative up to +Inf = _count), its database gauges equal the database's counts, and this process's counters moved
 * by exactly what the run put in the database (delivered, failed for good by reason, retried, written).
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { AdapterV1 } from "../../src/ChannelAdapter.js"
import * as Metrics from "../../src/Metrics.js"
import { Outbox } from "../../src/Outbox.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import { tempDatabases } from "../support/files.js"
import type { Board } from "./support.js"
import { call, startBoard } from "./support.js"

const databases = tempDatabases("admin-metrics")

/** One parsed sample. */
interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** Parses the text exposition format strictly: any line it does not understand fails the test. */
const parse = (text: string): { readonly types: Map<string, string>; readonly samples: Array<Sample> } => {
  const types = new Map<string, string>()
  const samples: Array<Sample> = []
  expect(text.endsWith("\n")).toBe(true)
  for (const line of text.slice(0, -1).split("\n")) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line)
    if (type !== null) {
      expect(types.has(type[1]!)).toBe(false)
      types.set(type[1]!, type[2]!)
      continue
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (sample === null) throw new Error(`not a Prometheus line: ${JSON.stringify(line)}`)
    const labels: Record<string, string> = {}
    for (const [, k, v] of (sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) {
      labels[k!] = v!.replace(/\\n/g, "\n").replace(/\\"/g, "\"").replace(/\\\\/g, "\\")
    }
    const value = sample[3] === "+Inf" ? Infinity : Number(sample[3])
    expect(Number.isNaN(value)).toBe(false)
    const family = sample[1]!.replace(/_(bucket|sum|count)$/, "")
    expect(types.has(sample[1]!) || types.get(family) === "histogram").toBe(true)
    samples.push({ name: sample[1]!, labels, value })
  }
  return { types, samples }
}

const value = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0)

const counters = {
  delivered: Metrics.delivered,
  enqueued: Metrics.enqueued,
  retried: Metrics.retryScheduled,
  permanent: Metrics.terminal("permanent_error")
}
const readCounters = Effect.all(
  Object.fromEntries(Object.entries(counters).map(([k, c]) => [k, Effect.map(Metric.value(c), (s) => s.count)]))
) as Effect.Effect<Record<keyof typeof counters, number>>

describe("/metrics after a small run", () => {
  let board: Board
  let before: Record<keyof typeof counters, number>
  beforeAll(async () => {
    const failedOnce = new Set<string>()
    const slack: AdapterV1 = {
      // every reply's first call fails with a 502, the retry goes through
      sendText: (ctx) => {
        if (failedOnce.has(ctx.entryId)) return Promise.resolve({ messageId: `s-${ctx.entryId}` })
        failedOnce.add(ctx.entryId)
        return Promise.reject(Object.assign(new Error("HTTP 502 Bad Gateway"), { status: 502 }))
      }
    }
    const webhook: AdapterV1 = {
      sendText: (ctx) =>
        ctx.to.startsWith("gone-")
          ? Promise.reject(Object.assign(new Error("chat not found"), { retryable: false }))
          : Promise.resolve({ messageId: `w-${ctx.entryId}` })
    }
    board = await startBoard({
      filename: databases.fresh(),
      channels: { telegram: { sendText: (ctx) => Promise.resolve({ messageId: `t-${ctx.entryId}` }) }, slack, webhook },
      config: { retryDelays: ["20 millis"] }
    })
    before = await board.run(readCounters)
    await board.run(Effect.gen(function*() {
      const outbox = yield* Outbox
      const sends = [
        ...Array.from({ length: 8 }, (_, i) => ({ channel: "telegram", to: `t-${i}` })),
        ...Array.from({ length: 5 }, (_, i) => ({ channel: "slack", to: `s-${i}` })),
        ...Array.from({ length: 4 }, (_, i) => ({ channel: "webhook", to: i < 3 ? `gone-${i}` : "ok-1" }))
      ]
      yield* Effect.forEach(sends, (s) => Effect.either(outbox.deliver({ ...s, payloads: [{ text: "hello" }] })), {
        concurrency: 4
      })
      yield* Effect.sleep("50 millis")
      yield* outbox.runRecoveryPass
    }))
  })
  afterAll(() => board.close())

  it("parses, and its gauges and counters agree with the database", async () => {
    const scraped = await call(board, "metrics")
    expect(scraped.status).toBe(200)
    expect(scraped.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
    const { samples, types } = parse(scraped.body as string)
    const stats = await board.run(Effect.flatMap(OutboxRepo, (repo) => repo.stats(Date.now())))
    expect(stats.byState).toMatchObject({ delivered: 14, failed_terminal: 3, queued: 0, failed_retryable: 0 })
    // the database gauges, per channel and state, are the database's counts
    for (const [channel, counts] of Object.entries(stats.byChannel)) {
      for (const [state, n] of Object.entries(counts)) {
        expect(value(samples, "outbox_db_entries", { channel, state })).toBe(n)
      }
    }
    expect(value(samples, "outbox_db_pending")).toBe(0)
    expect(value(samples, "outbox_db_oldest_pending_age_seconds")).toBe(0)
    // this process's counters moved by what the run wrote
    const after = await board.run(readCounters)
    expect(after.delivered - before.delivered).toBe(stats.byState.delivered)
    expect(after.enqueued - before.enqueued).toBe(stats.total)
    expect(after.permanent - before.permanent).toBe(stats.byState.failed_terminal)
    expect(after.retried - before.retried).toBe(5)
    expect(value(samples, "outbox_delivered_total")).toBe(after.delivered)
    expect(value(samples, "outbox_terminal_total", { reason: "permanent_error" })).toBe(after.permanent)
    expect(value(samples, "outbox_retry_scheduled_total")).toBe(after.retried)
    expect(types.get("outbox_delivered_total")).toBe("counter")
    // the latency histogram: cumulative buckets, +Inf equal to _count, one observation per delivery
    expect(types.get("outbox_delivery_latency_ms")).toBe("histogram")
    const buckets = samples.filter((s) => s.name === "outbox_delivery_latency_ms_bucket")
    const counts = buckets.map((b) => b.value)
    expect(counts).toEqual([...counts].sort((a, b) => a - b))
    expect(buckets[buckets.length - 1]!.labels["le"]).toBe("+Inf")
    expect(counts[counts.length - 1]).toBe(value(samples, "outbox_delivery_latency_ms_count"))
    expect(value(samples, "outbox_delivery_latency_ms_count")).toBe(after.delivered)
  })
})
