/** Store doubles for tests. */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import type { OutboxRepoShape, WriteOp } from "../../src/OutboxRepo.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"

/** The memory store with some operations replaced; `overrides` gets the real store, to delegate to it. */
export const memoryStoreWith = (
  overrides: (repo: OutboxRepoShape) => Partial<OutboxRepoShape>
): Layer.Layer<OutboxRepo> =>
  Layer.effect(OutboxRepo, Effect.map(MemoryOutboxRepo.make, (repo) => ({ ...repo, ...overrides(repo) })))

/** Whether a journal op is an ack (the write that marks a row delivered). */
export const isAck = (op: WriteOp): boolean => op._tag === "Update" && op.spec.next.state === "delivered"
