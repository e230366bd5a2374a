/**
 * The channel registry: channel id → normalized adapter. Adapters are normalized (and rejected
 * if they break their contract) when the layer is built, so a bad plugin fails the gateway's
 * startup rather than its first delivery.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as ChannelAdapter from "./ChannelAdapter.js"
import { UnknownChannel } from "./DeliveryError.js"

/** A registered channel and the contract its adapter was normalized to. */
export interface RegisteredChannel {
  readonly channel: string
  readonly contract: ChannelAdapter.Contract
}

/** Looks up normalized channels by id. */
export class ChannelRegistry extends Context.Tag("effect-outbox/ChannelRegistry")<ChannelRegistry, {
  /** the channel registered as `channel`, or `UnknownChannel` */
  readonly get: (channel: string) => Effect.Effect<ChannelAdapter.Channel, UnknownChannel>
  /** every registered channel with its contract, in registration order */
  readonly list: Effect.Effect<ReadonlyArray<RegisteredChannel>>
}>() {}

/** Normalizes every adapter (logging the v1 warning once each); fails with the first `InvalidAdapter`. */
export const make = (
  adapters: Readonly<Record<string, ChannelAdapter.Adapter>>
): Effect.Effect<Context.Tag.Service<ChannelRegistry>, ChannelAdapter.InvalidAdapter> =>
  Effect.gen(function*() {
    const channels = new Map<string, ChannelAdapter.Channel>()
    for (const [id, adapter] of Object.entries(adapters)) {
      if (id.trim() === "") {
        return yield* Effect.fail(new ChannelAdapter.InvalidAdapter({ channel: id, reason: "the channel id is empty" }))
      }
      channels.set(id, yield* ChannelAdapter.normalize(adapter, id))
    }
    const listing: ReadonlyArray<RegisteredChannel> = Array.from(
      channels.values(),
      ({ channel, contract }) => ({ channel, contract })
    )
    return {
      get: (channel: string) => {
        const found = channels.get(channel)
        return found === undefined ? Effect.fail(new UnknownChannel({ channel })) : Effect.succeed(found)
      },
      list: Effect.succeed(listing)
    }
  })

/** The registry as a layer: `ChannelRegistry.layer({ slack: adapter, telegram: adapter })`. */
export const layer = (
  adapters: Readonly<Record<string, ChannelAdapter.Adapter>>
): Layer.Layer<ChannelRegistry, ChannelAdapter.InvalidAdapter> => Layer.effect(ChannelRegistry, make(adapters))
