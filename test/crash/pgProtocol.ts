/** What the PostgreSQL crash gateway (pgGateway.ts, a child process) and its parent (pgHarness.ts) agree on. */
import * as Duration from "effect/Duration"
import type * as OutboxConfig from "../../src/OutboxConfig.js"

/** A request from the parent. */
export interface PgRequest {
  readonly op: "deliver" | "enqueue"
  readonly key: string
  readonly to: string
  readonly text: string
}

/** The gateway's answer to one request. */
export type PgAnswer =
  | { readonly key: string; readonly ok: true; readonly tag: string; readonly entryId: string }
  | {
    readonly key: string
    readonly ok: false
    readonly tag: string
    readonly message: string
    readonly entryId?: string
  }

/** What a send POSTs to the channel server. */
export interface ChannelPost {
  readonly entryId: string
  readonly partIndex: number
  readonly to: string
  readonly text: string
}

/** The configuration of every boot: short intervals, a retry budget no 10 % failure rate exhausts. */
export const pgGatewayConfig = {
  workerInterval: Duration.millis(200),
  claimBatch: 20,
  workerConcurrency: 20,
  retryJitter: false,
  retryDelays: [Duration.millis(20)],
  maxAttempts: 100,
  leaseDuration: Duration.seconds(10),
  shutdownGrace: Duration.seconds(2)
} satisfies Partial<OutboxConfig.OutboxConfigShape>

/** A node's boot is dead this long after its last heartbeat. */
export const HEARTBEAT_STALE_MS = 1000
