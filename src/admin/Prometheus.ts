/**
 * The board's `/metrics`, in the Prometheus text exposition format (0.0.4). Two kinds of series:
 * - this process's `outbox_*` Effect metrics (`Metrics.ts`): counters, the pending gauge, the delivery latency
 *   histogram, as counted by this process since it started (zero in a board beside the gateway, which sends nothing);
 * - `outbox_db_*` gauges read from the database at scrape time (through the board's shared counts, at most
 *   `statsMaxAge` old): rows by channel and state, the backlog by channel, the oldest pending age. They describe the
 *   whole outbox, whichever process asks: with several gateways on one PostgreSQL outbox, do not sum them.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import type * as MetricPair from "effect/MetricPair"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import type { EntryState, OutboxStats } from "../Delivery.js"
import { entryStates, pendingStates } from "../Delivery.js"

/** The content type of the format. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

type Labels = ReadonlyArray<readonly [string, string]>

const escapeLabel = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, "\\\"")
const escapeHelp = (value: string): string => value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")
const labelName = (name: string): string => name.replace(/[^a-zA-Z0-9_]/g, "_").replace(/^([0-9])/, "_$1")
const metricName = (name: string): string => name.replace(/[^a-zA-Z0-9_:]/g, "_").replace(/^([0-9])/, "_$1")

const number = (n: number): string =>
  Number.isNaN(n) ? "NaN" : n === Infinity ? "+Inf" : n === -Infinity ? "-Inf" : String(n)

const sample = (name: string, labels: Labels, value: number): string =>
  `${name}${
    labels.length === 0 ? "" : `{${labels.map(([k, v]) => `${labelName(k)}="${escapeLabel(v)}"`).join(",")}}`
  } ${number(value)}`

/** One metric family: its HELP and TYPE lines, then its samples. */
interface Family {
  readonly name: string
  readonly type: "counter" | "gauge" | "histogram" | "summary"
  readonly help: string
  readonly samples: Array<string>
}

const render = (families: ReadonlyArray<Family>): string =>
  families
    .filter((f) => f.samples.length > 0)
    .map((f) => [`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`, ...f.samples].join("\n"))
    .join("\n") + "\n"

/** The samples of one Effect metric (a histogram spreads over _bucket, _sum and _count). */
const samplesOf = (name: string, labels: Labels, state: MetricState.MetricState.Untyped): {
  readonly type: Family["type"]
  readonly samples: ReadonlyArray<string>
} => {
  if (MetricState.isCounterState(state)) {
    return { type: "counter", samples: [sample(name, labels, Number(state.count))] }
  }
  if (MetricState.isGaugeState(state)) return { type: "gauge", samples: [sample(name, labels, Number(state.value))] }
  if (MetricState.isHistogramState(state)) {
    const buckets = state.buckets.map(([le, n]) => sample(`${name}_bucket`, [...labels, ["le", number(le)]], n))
    if (!state.buckets.some(([le]) => le === Infinity)) {
      buckets.push(sample(`${name}_bucket`, [...labels, ["le", "+Inf"]], state.count))
    }
    return {
      type: "histogram",
      samples: [...buckets, sample(`${name}_sum`, labels, state.sum), sample(`${name}_count`, labels, state.count)]
    }
  }
  if (MetricState.isFrequencyState(state)) {
    return {
      type: "counter",
      samples: Array.from(state.occurrences, ([value, n]) => sample(name, [...labels, ["value", value]], n))
    }
  }
  if (MetricState.isSummaryState(state)) {
    return {
      type: "summary",
      samples: [
        ...state.quantiles.flatMap(([q, v]) =>
          Option.isSome(v) ? [sample(name, [...labels, ["quantile", String(q)]], v.value)] : []
        ),
        sample(`${name}_sum`, labels, state.sum),
        sample(`${name}_count`, labels, state.count)
      ]
    }
  }
  return { type: "gauge", samples: [] }
}

/** This process's metrics whose name starts with `prefix`, as families. */
const processFamilies = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>, prefix: string): Array<Family> => {
  const families = new Map<string, Family>()
  for (const pair of pairs) {
    if (!pair.metricKey.name.startsWith(prefix)) continue
    const name = metricName(pair.metricKey.name)
    const labels: Labels = pair.metricKey.tags.map((t) => [t.key, t.value] as const)
    const { samples, type } = samplesOf(name, labels, pair.metricState)
    const family = families.get(name) ??
      { name, type, help: Option.getOrElse(pair.metricKey.description, () => name), samples: [] }
    family.samples.push(...samples)
    families.set(name, family)
  }
  return [...families.values()].sort((a, b) => a.name.localeCompare(b.name))
}

/** The database gauges of the counts taken at `asOf`, seen at `now`. */
const databaseFamilies = (stats: OutboxStats, asOf: number, now: number): Array<Family> => {
  const channels = Object.keys(stats.byChannel).sort()
  const count = (counts: Readonly<Record<EntryState, number>>, state: EntryState) => counts[state] ?? 0
  return [
    {
      name: "outbox_db_entries",
      type: "gauge",
      help: "rows in the outbox database by channel and state",
      samples: channels.flatMap((channel) =>
        entryStates.map((state) =>
          sample("outbox_db_entries", [["channel", channel], ["state", state]], count(stats.byChannel[channel]!, state))
        )
      )
    },
    {
      name: "outbox_db_pending",
      type: "gauge",
      help: "rows that may still be sent (queued, in flight, retrying) by channel",
      samples: channels.map((channel) =>
        sample(
          "outbox_db_pending",
          [["channel", channel]],
          pendingStates.reduce((n, state) => n + count(stats.byChannel[channel]!, state), 0)
        )
      )
    },
    {
      name: "outbox_db_oldest_pending_age_seconds",
      type: "gauge",
      help: "age of the oldest row that may still be sent (0 when none)",
      samples: [sample("outbox_db_oldest_pending_age_seconds", [], (stats.oldestPendingAgeMs ?? 0) / 1000)]
    },
    {
      name: "outbox_db_counted_age_seconds",
      type: "gauge",
      help: "how old the database counts above are (they are shared and refreshed at most every statsMaxAge)",
      samples: [sample("outbox_db_counted_age_seconds", [], Math.max(0, now - asOf) / 1000)]
    }
  ]
}

/** The whole exposition: this process's `outbox_*` metrics and the database gauges. */
export const exposition = (
  database: { readonly stats: OutboxStats; readonly asOf: number },
  now: number
): Effect.Effect<string> =>
  Effect.map(
    Metric.snapshot,
    (pairs) => render([...processFamilies(pairs, "outbox_"), ...databaseFamilies(database.stats, database.asOf, now)])
  )
