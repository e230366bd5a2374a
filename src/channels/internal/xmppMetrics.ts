/** The XMPP channel's metrics, tagged by account. Names are prefixed `outbox_xmpp_`. */
import * as Metric from "effect/Metric"

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

const connectionsCounter = counter("outbox_xmpp_connections_total", "connections that came up (stream management on)")
const connectFailuresCounter = counter("outbox_xmpp_connect_failures_total", "connection attempts that failed")
const disconnectsCounter = counter("outbox_xmpp_disconnects_total", "connections lost after they came up")
const ackedCounter = counter("outbox_xmpp_acked_total", "messages the server acknowledged (XEP-0198)")
const unacknowledgedCounter = counter(
  "outbox_xmpp_unacknowledged_total",
  "messages written but not acknowledged when their connection was lost: the outbox's retry may duplicate them"
)
const bouncedCounter = counter(
  "outbox_xmpp_bounced_total",
  "error replies to sent messages (the server acknowledged them, then could not deliver them)"
)

/** Connections that came up, per account. */
export const connections = (account: string) => Metric.tagged(connectionsCounter, "account", account)
/** Connection attempts that failed, per account. */
export const connectFailures = (account: string) => Metric.tagged(connectFailuresCounter, "account", account)
/** Connections lost after they came up, per account. */
export const disconnects = (account: string) => Metric.tagged(disconnectsCounter, "account", account)
/** Messages acknowledged by the server, per account. */
export const acked = (account: string) => Metric.tagged(ackedCounter, "account", account)
/** Messages whose connection was lost between the write and the server's ack (possible duplicates), per account. */
export const unacknowledged = (account: string) => Metric.tagged(unacknowledgedCounter, "account", account)
/** Error replies to messages already acknowledged (and so recorded as delivered), per account. */
export const bounced = (account: string) => Metric.tagged(bouncedCounter, "account", account)
