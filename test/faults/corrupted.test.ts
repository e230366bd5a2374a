/**
 * Rows damaged at rest, written with raw SQL into the SQLite file behind the outbox's back. A row whose JSON or
 * payloads no longer decode is quarantined (`failed_terminal`, `decode_error`, kept readable) by the recovery pass,
 * and the good rows of the same batch — and the rows queued behind a damaged one in its conversation — are
 * delivered. An unknown state cannot be written at all: the table's CHECK refuses it (also tested at the store
 * level in test/store/SqliteFile.test.ts), so the row is not damaged and is delivered as usual.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import type { AdapterV1, SendContext } from "../../src/ChannelAdapter.js"
import * as ChannelRegistry from "../../src/ChannelRegistry.js"
import type { EntryId } from "../../src/Delivery.js"
import * as Metrics from "../../src/Metrics.js"
import * as Outbox from "../../src/Outbox.js"
import * as OutboxConfig from "../../src/OutboxConfig.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { tempDatabases } from "../support/files.js"

const databases = tempDatabases("corrupted")

const recordingOutbox = () => {
  const sent: Array<string> = []
  const adapter: AdapterV1 = {
    sendText: (ctx: SendContext) =>
      Effect.sync(() => {
        sent.push(ctx.text)
        return { messageId: `m-${sent.length}` }
      })
  }
  const layer = Outbox.layer.pipe(Layer.provideMerge(Layer.mergeAll(
    SqliteOutboxRepo.layerFile({ filename: databases.fresh() }),
    ChannelRegistry.layer({ chat: adapter }),
    OutboxConfig.layer({ nodeId: "corrupted", retryJitter: false })
  )))
  return { sent, layer }
}

const counter = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
const request = (to: string, text: string) => ({ channel: "chat", to, payloads: [{ text }] })

describe("rows corrupted at rest", () => {
  it.effect("rows that no longer decode are quarantined as decode_error; the rest of the batch, and the rows behind them, are delivered", () => {
    const { layer, sent } = recordingOutbox()
    return Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const sql = yield* SqlClient.SqlClient
      const ids = {
        good1: yield* outbox.enqueue(request("a", "good 1")),
        truncated: yield* outbox.enqueue(request("b", "truncated JSON")),
        behindTruncated: yield* outbox.enqueue(request("b", "queued behind the truncated one")),
        good2: yield* outbox.enqueue(request("c", "good 2")),
        badOptions: yield* outbox.enqueue(request("d", "options not JSON")),
        badMedia: yield* outbox.enqueue(request("e", "media no longer a URL")),
        notArray: yield* outbox.enqueue(request("f", "payloads not a list")),
        wrongType: yield* outbox.enqueue(request("g", "text not a string"))
      }
      yield* sql`UPDATE outbox_entries SET payloads_json = '[{"text": "trunc' WHERE id = ${ids.truncated}`
      yield* sql`UPDATE outbox_entries SET options_json = 'bestEffort=false' WHERE id = ${ids.badOptions}`
      yield* sql`UPDATE outbox_entries SET payloads_json = '[{"mediaUrls": ["not a url"]}]' WHERE id = ${ids.badMedia}`
      yield* sql`UPDATE outbox_entries SET payloads_json = '{"text": "x"}' WHERE id = ${ids.notArray}`
      yield* sql`UPDATE outbox_entries SET payloads_json = '[{"text": 5}]' WHERE id = ${ids.wrongType}`
      const broken = [ids.truncated, ids.badOptions, ids.badMedia, ids.notArray, ids.wrongType]
      const quarantinedBefore = yield* counter(Metrics.quarantined)
      const decodeErrorsBefore = yield* counter(Metrics.terminal("decode_error"))

      const first = yield* outbox.runRecoveryPass
      expect(first).toMatchObject({ quarantined: 5, delivered: 2 })
      expect(sent).toEqual(["good 1", "good 2"])
      // the row behind a damaged head waited its turn; the head is out of the way now
      const second = yield* outbox.runRecoveryPass
      expect(second).toMatchObject({ quarantined: 0, delivered: 1 })
      expect(sent).toEqual(["good 1", "good 2", "queued behind the truncated one"])
      expect(yield* outbox.runRecoveryPass).toMatchObject({ claimed: 0, quarantined: 0 })

      for (const id of broken) {
        const row = Option.getOrThrow(yield* outbox.get(id))
        expect(row).toMatchObject({ state: "failed_terminal", terminalReason: "decode_error", payloads: [] })
        expect(row.lastError).toMatch(new RegExp(`row ${id} does not decode`))
      }
      expect(Option.getOrThrow(yield* outbox.get(ids.truncated)).lastError).toMatch(/payloads_json is not valid JSON/)
      expect(Option.getOrThrow(yield* outbox.get(ids.badOptions)).lastError).toMatch(/options_json is not valid JSON/)
      expect(Option.getOrThrow(yield* outbox.get(ids.badMedia)).lastError).toMatch(/must be an http\(s\) or file URL/)
      expect((yield* counter(Metrics.quarantined)) - quarantinedBefore).toBe(5)
      expect((yield* counter(Metrics.terminal("decode_error"))) - decodeErrorsBefore).toBe(5)
      const stats = yield* outbox.stats
      expect(stats.byState).toMatchObject({ delivered: 3, failed_terminal: 5, queued: 0, in_flight: 0 })
      // listing still works with the damaged rows in the table
      expect((yield* outbox.list({ state: "failed_terminal", limit: 10 })).map((e) => e.id).sort()).toEqual(
        [...broken].sort()
      )
    }).pipe(Effect.provide(layer), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("an unknown state written with raw SQL is refused by the schema; the row is untouched and delivered", () => {
    const { layer, sent } = recordingOutbox()
    return Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const sql = yield* SqlClient.SqlClient
      const id: EntryId = yield* outbox.enqueue(request("a", "hello"))
      const refused = yield* Effect.flip(sql`UPDATE outbox_entries SET state = 'sent' WHERE id = ${id}`)
      expect(String(refused.cause)).toMatch(/CHECK constraint failed/)
      expect(Option.getOrThrow(yield* outbox.get(id)).state).toBe("queued")
      expect(yield* outbox.runRecoveryPass).toMatchObject({ delivered: 1, quarantined: 0 })
      expect(sent).toEqual(["hello"])
    }).pipe(Effect.provide(layer))
  })

  it.effect("a row whose delivered_parts no longer parses, past its TTL, expires like any other and never stops the worker for the others", () => {
    const { layer, sent } = recordingOutbox()
    return Effect.gen(function*() {
      const outbox = yield* Outbox.Outbox
      const sql = yield* SqlClient.SqlClient
      const damaged: EntryId = yield* outbox.enqueue(request("a", "damaged"))
      yield* sql`UPDATE outbox_entries SET delivered_parts = '[1,' WHERE id = ${damaged}`
      yield* TestClock.adjust("31 minutes") // past the 30 min TTL
      const healthy: EntryId = yield* outbox.enqueue(request("b", "healthy"))
      const first = yield* outbox.runRecoveryPass
      expect(first).toMatchObject({ expired: 1, delivered: 1 })
      expect(Option.getOrThrow(yield* outbox.get(healthy)).state).toBe("delivered")
      const [row] = yield* sql<{ state: string }>`SELECT state FROM outbox_entries WHERE id = ${damaged}`
      expect(row?.state).toBe("expired")
      // the next passes run as usual
      const later: EntryId = yield* outbox.enqueue(request("c", "later"))
      expect(yield* outbox.runRecoveryPass).toMatchObject({ delivered: 1 })
      expect(Option.getOrThrow(yield* outbox.get(later)).state).toBe("delivered")
      expect(sent).toEqual(["healthy", "later"])
    }).pipe(Effect.provide(layer), Logger.withMinimumLogLevel(LogLevel.None))
  })
})
