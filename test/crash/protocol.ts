/** What the crash gateway (child) and its parent agree on: the gateway's configuration, the live file and the send log. */
import * as Duration from "effect/Duration"
import type * as OutboxConfig from "../../src/OutboxConfig.js"

/**
 * The configuration of every gateway boot. A fixed node id, so a restart reclaims the killed boot's leases at once;
 * a short worker interval; a small claim batch, which bounds what a kill can leave in flight.
 */
export const gatewayConfig = {
  nodeId: "crash-gateway",
  workerInterval: Duration.millis(50),
  claimBatch: 20,
  workerConcurrency: 20,
  retryJitter: false,
  retryDelays: [Duration.millis(20)],
  shutdownGrace: Duration.seconds(2)
} satisfies Partial<OutboxConfig.OutboxConfigShape>

/** One line of the live file: a request the gateway `deliver`s itself. */
export interface LiveRequest {
  readonly channel: "chat"
  readonly to: string
  readonly idempotencyKey: string
  readonly payloads: ReadonlyArray<{ readonly text: string }>
}

/** One line of the send log: what the adapter sent (written and fsynced before the send returns). */
export interface Send {
  readonly entryId: string
  readonly partIndex: number
}

const LINE = /^(\S+) (\d+)$/

/** Parses the send log; a torn last line (a kill in the middle of a write) is ignored. */
export const parseSendLog = (text: string): ReadonlyArray<Send> =>
  text.split("\n").flatMap((line) => {
    const m = LINE.exec(line)
    return m === null ? [] : [{ entryId: m[1]!, partIndex: Number(m[2]) }]
  })
