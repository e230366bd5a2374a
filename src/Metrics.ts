/** Every metric effect-outbox records, declared once. Names are prefixed `outbox_`. */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type { TerminalReason } from "./Delivery.js"

/** Rows written (live deliver and enqueue). */
export const enqueued = Metric.counter("outbox_enqueued_total", {
  description: "rows written to the outbox",
  incremental: true
})

/** Rows acked as delivered. */
export const delivered = Metric.counter("outbox_delivered_total", {
  description: "rows delivered and acked",
  incremental: true
})

/** Failures that scheduled a retry. */
export const retryScheduled = Metric.counter("outbox_retry_scheduled_total", {
  description: "failed attempts that scheduled a retry",
  incremental: true
})

const terminalCounter = Metric.counter("outbox_terminal_total", {
  description: "rows that failed for good",
  incremental: true
})

/** Rows that went `failed_terminal`, tagged by reason. */
export const terminal = (reason: TerminalReason) => Metric.tagged(terminalCounter, "reason", reason)

/** Rows expired by TTL. */
export const expired = Metric.counter("outbox_expired_total", {
  description: "rows expired past maxAge",
  incremental: true
})

/** Ack writes that failed after their retries (the ack is kept and retried by the worker). */
export const ackFailures = Metric.counter("outbox_ack_failures_total", {
  description: "ack writes that failed",
  incremental: true
})

/** Rows replayed after a crash without proof they were not sent. */
export const possibleDuplicates = Metric.counter("outbox_possible_duplicates_total", {
  description: "rows replayed whose earlier attempt may have reached the channel",
  incremental: true
})

const writeFailureCounter = Metric.counter("outbox_write_failures_total", {
  description: "writes of a delivery's progress, outcome or lease that failed (the row is retried after its lease)",
  incremental: true
})

/** Writes of a row being delivered that failed, tagged by operation (progress, renew, failure, expire, fail, release). */
export const writeFailures = (operation: string) => Metric.tagged(writeFailureCounter, "operation", operation)

/** Worker passes that failed (the worker goes on). */
export const workerPassFailures = Metric.counter("outbox_worker_pass_failures_total", {
  description: "recovery passes that failed",
  incremental: true
})

/** Rows quarantined because their data no longer decodes. */
export const quarantined = Metric.counter("outbox_quarantined_total", {
  description: "rows moved to decode_error",
  incremental: true
})

/** Rows that may still be sent, as of the last worker pass. */
export const pending = Metric.gauge("outbox_pending", { description: "queued, in-flight and retrying rows" })

/** Milliseconds from enqueue to ack. */
export const deliveryLatency = Metric.histogram(
  "outbox_delivery_latency_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 24 }),
  "enqueue to delivered, milliseconds"
)

const rateWaitHistogram = Metric.histogram(
  "outbox_rate_wait_ms",
  MetricBoundaries.exponential({ start: 1, factor: 2, count: 20 }),
  "time a send of a rate-limited channel waited for its token, milliseconds"
)

/** Milliseconds a send of a rate-limited channel waited for its token (0 when it had one at once), by channel. */
export const rateWait = (channel: string) => Metric.tagged(rateWaitHistogram, "channel", channel)

const ratePauseGauge = Metric.gauge("outbox_rate_pause_ms", {
  description: "the pause a 429 put on the channel, in milliseconds, as it started (0 once it ended)"
})

/** The pause of a channel's limiter (from a 429's retry-after) when it started; 0 once it ended. */
export const ratePause = (channel: string) => Metric.tagged(ratePauseGauge, "channel", channel)

const ratePausesCounter = Metric.counter("outbox_rate_limited_total", {
  description: "429s with a retry-after that paused a channel's limiter",
  incremental: true
})

/** 429s that paused a channel's (account's) limiter, by channel. */
export const ratePauses = (channel: string) => Metric.tagged(ratePausesCounter, "channel", channel)

const ratePostponedCounter = Metric.counter("outbox_rate_postponed_total", {
  description: "sends put back because their token was further away than their horizon (no attempt counted)",
  incremental: true
})

/** Sends put back to wait in the store for their token (a live `deliver` answered `Deferred`), by channel. */
export const ratePostponed = (channel: string) => Metric.tagged(ratePostponedCounter, "channel", channel)
