/**
 * The channel registry: channel id → normalized adapter. Adapters are normalized (and rejected
 * if they break their contract) when the layer is built, so a bad plugin fails the gateway's
 * startup rather than its first delivery.
 *
 * An entry is an adapter object, or an Effect that builds one (the shipped channels:
 * `WebhookChannel.make({ url, secret })` needs an `HttpClient`). Such an Effect runs once, when the layer is
 * built, in the layer's scope: its requirements become the layer's (minus `Scope`), its errors the layer's, and an
 * adapter that refuses its options (`InvalidAdapter`) is reported under the id it was registered as.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
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

/** What a channel id may be registered with: an adapter, or an Effect that builds one when the registry is built. */
export type AdapterSource = ChannelAdapter.Adapter | Effect.Effect<ChannelAdapter.Adapter, unknown, unknown>

/** The sources of a registration record. */
export type AdapterSources = Readonly<Record<string, AdapterSource>>

/** The errors the building Effects of `S` can fail with (`never` for a record of plain adapters). */
export type SourceError<S extends AdapterSources> = S[keyof S] extends infer X
  ? X extends Effect.Effect<infer _A, infer E, infer _R> ? E : never
  : never

/** The services the building Effects of `S` need (`never` for a record of plain adapters). */
export type SourceContext<S extends AdapterSources> = S[keyof S] extends infer X
  ? X extends Effect.Effect<infer _A, infer _E, infer R> ? R : never
  : never

/** Runs a building Effect; an `InvalidAdapter` it fails with is re-labelled with the id it is registered under. */
const build = (id: string, source: AdapterSource): Effect.Effect<ChannelAdapter.Adapter, unknown, unknown> =>
  Effect.isEffect(source)
    ? Effect.mapError(source, (error) =>
      error instanceof ChannelAdapter.InvalidAdapter
        ? new ChannelAdapter.InvalidAdapter({ channel: id, reason: error.reason })
        : error)
    : Effect.succeed(source)

/** Builds and normalizes every adapter (logging the v1 warning once each); fails with the first error. */
export const make = <const S extends AdapterSources>(
  adapters: S
): Effect.Effect<
  Context.Tag.Service<ChannelRegistry>,
  ChannelAdapter.InvalidAdapter | SourceError<S>,
  SourceContext<S>
> =>
  Effect.gen(function*() {
    const channels = new Map<string, ChannelAdapter.Channel>()
    for (const [id, source] of Object.entries(adapters)) {
      if (id.trim() === "") {
        return yield* Effect.fail(new ChannelAdapter.InvalidAdapter({ channel: id, reason: "the channel id is empty" }))
      }
      channels.set(id, yield* ChannelAdapter.normalize(yield* build(id, source), id))
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
  }) as Effect.Effect<
    Context.Tag.Service<ChannelRegistry>,
    ChannelAdapter.InvalidAdapter | SourceError<S>,
    SourceContext<S>
  >

/**
 * The registry as a layer: `ChannelRegistry.layer({ slack: adapter, alerts: WebhookChannel.make({ url, secret }) })`.
 * Built in a scope, so an adapter Effect may hold a resource (a connection) for the layer's lifetime.
 */
export function layer<const S extends AdapterSources>(
  adapters: S
): Layer.Layer<ChannelRegistry, ChannelAdapter.InvalidAdapter | SourceError<S>, Exclude<SourceContext<S>, Scope.Scope>>
/** Plain adapters only (listed last so `Parameters<typeof layer>` names this simple form). */
export function layer(
  adapters: Readonly<Record<string, ChannelAdapter.Adapter>>
): Layer.Layer<ChannelRegistry, ChannelAdapter.InvalidAdapter>
export function layer(
  adapters: AdapterSources
): Layer.Layer<ChannelRegistry, unknown, unknown> {
  return Layer.scoped(ChannelRegistry, make(adapters))
}
