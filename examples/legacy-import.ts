/**
 * Moving a gateway off openclaw's file queue: `LegacyFileQueue.layerImportOnStart` imports
 * `<stateDir>/delivery-queue/` (dead letters in `failed/`) while the layers are built, so the old replies are in
 * the outbox before the worker starts; the recovery worker then sends them like any other. A marker in the database
 * makes every later start a no-op, and `ignoreMissing` lets a fresh install without a queue start normally.
 * No legacy file is ever deleted, moved or rewritten.
 */
import { Layer } from "effect"
import * as path from "node:path"
import type { ChannelAdapter } from "../src/index.js"
import {
  ChannelRegistry,
  LegacyFileQueue,
  Outbox,
  OutboxConfig,
  RecoveryWorker,
  SqliteOutboxRepo
} from "../src/index.js"

export const OutboxWithLegacyImport = (options: {
  readonly stateDir: string
  readonly dbFile: string
  readonly channels: Readonly<Record<string, ChannelAdapter.Adapter>>
}) => {
  const Store = Layer.mergeAll(
    SqliteOutboxRepo.layerFile({ filename: options.dbFile }),
    ChannelRegistry.layer(options.channels),
    OutboxConfig.layerFromEnv // the import uses maxAge: older entries come in as `expired`, never sent
  )
  // runs once the store is open and before anything built on top of it (the outbox, the worker)
  const StoreWithLegacy = LegacyFileQueue.layerImportOnStart(path.join(options.stateDir, "delivery-queue"), {
    ignoreMissing: true
  }).pipe(Layer.provideMerge(Store))
  return RecoveryWorker.layer.pipe(Layer.provideMerge(Outbox.layer), Layer.provide(StoreWithLegacy))
}
