/**
 * The outbox's spans as an OpenTelemetry SDK receives them (an in-memory exporter behind
 * `OutboxTelemetry.layerTracerProvider`): one `deliver` whose first attempt fails and whose retry, made by a recovery
 * pass, succeeds. Checked: the span names, their parent links, and the channel, entry id, attempt and outcome
 * attributes; the failed adapter call's span is an error.
 */
import { describe, expect, it } from "@effect/vitest"
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import type { ReadableSpan } from "@opentelemetry/sdk-trace-base"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as TestClock from "effect/TestClock"
import { Outbox } from "../../src/Outbox.js"
import * as OutboxTelemetry from "../../src/OutboxTelemetry.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { outboxLayer, reply, scriptedAdapter } from "../outbox/harness.js"
import { tempDatabases } from "../support/files.js"

const databases = tempDatabases("telemetry")

/** A span tree as text: `name {attributes}` lines, children indented under their parent, in start order. */
const tree = (spans: ReadonlyArray<ReadableSpan>, keep: (span: ReadableSpan) => boolean): Array<string> => {
  const byParent = new Map<string | undefined, Array<ReadableSpan>>()
  const ids = new Set(spans.filter(keep).map((s) => s.spanContext().spanId))
  for (const span of spans.filter(keep)) {
    const parent = span.parentSpanContext?.spanId
    const key = parent !== undefined && ids.has(parent) ? parent : undefined
    byParent.set(key, [...(byParent.get(key) ?? []), span])
  }
  const lines: Array<string> = []
  const walk = (parent: string | undefined, depth: number) => {
    const children = (byParent.get(parent) ?? []).sort((a, b) =>
      a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]
    )
    for (const span of children) {
      const attributes = Object.entries(span.attributes)
        .filter(([k]) => k.startsWith("outbox."))
        .map(([k, v]) => `${k.slice(7)}=${String(v)}`)
      const status = span.status.code === 2 ? " ERROR" : ""
      lines.push(
        `${"  ".repeat(depth)}${span.name}${status}${attributes.length > 0 ? ` {${attributes.join(" ")}}` : ""}`
      )
      walk(span.spanContext().spanId, depth + 1)
    }
  }
  walk(undefined, 0)
  return lines
}

describe("OutboxTelemetry with an OpenTelemetry SDK", () => {
  it.effect("one deliver with a retry: a live attempt that fails, then a pass that claims and delivers", () =>
    Effect.gen(function*() {
      const exporter = new InMemorySpanExporter()
      const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] })
      const { adapter, calls } = yield* scriptedAdapter([{ status: 502 }])
      const entryId = yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const failure = yield* Effect.flip(outbox.deliver(reply("hello")))
        expect(failure._tag).toBe("SendFailed")
        yield* TestClock.adjust("5 seconds") // the first retry delay (jitter off)
        const report = yield* outbox.runRecoveryPass
        expect(report.delivered).toBe(1)
        return (failure as { readonly entryId: string }).entryId
      }).pipe(
        Effect.provide(
          outboxLayer({ chat: adapter }, { store: SqliteOutboxRepo.layerFile({ filename: databases.fresh() }) }).pipe(
            Layer.provide(OutboxTelemetry.layerTracerProvider(provider))
          )
        ),
        Effect.scoped
      )
      expect((yield* calls).map((c) => c.attempt)).toEqual([1, 2])
      yield* Effect.promise(() => provider.forceFlush())
      const spans = exporter.getFinishedSpans()
      const names = new Set(Object.values(OutboxTelemetry.spans) as ReadonlyArray<string>)
      // the store's own spans (OutboxRepo.*) are left out of the picture but for the claim's
      const shown = tree(spans, (s) => names.has(s.name) || s.name === "OutboxRepo.claim")
      const id = `entry_id=${entryId}`
      expect(shown).toEqual([
        // the caller's deliver failed: its span is an error too
        "Outbox.deliver ERROR",
        `  Outbox.deliverEntry {${id} channel=chat attempt=1 live=true reclaimed=false outcome=retry_scheduled}`,
        `    Sender.sendPart ERROR {${id} channel=chat attempt=1 part_index=0 part_kind=text}`,
        "Outbox.runRecoveryPass",
        "  Outbox.claim {limit=32 claimed=1}",
        "    OutboxRepo.claim",
        `  Outbox.deliverEntry {${id} channel=chat attempt=2 live=false reclaimed=false outcome=delivered}`,
        `    Sender.sendPart {${id} channel=chat attempt=2 part_index=0 part_kind=text}`,
        "    Outbox.ack"
      ])
    }))
})
