import { describe, expect, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import type { Adapter } from "../../src/ChannelAdapter.js"
import { InvalidAdapter } from "../../src/ChannelAdapter.js"
import { ChannelRegistry, layer } from "../../src/ChannelRegistry.js"
import { UnknownChannel } from "../../src/DeliveryError.js"
import { captureLogs, makeRecorder, v1Adapter, v2Adapter } from "./fixtures.js"

/** A service an adapter-building Effect may need, as the shipped channels need an HttpClient. */
class Transport extends Context.Tag("test/Transport")<Transport, { readonly name: string }>() {}

describe("ChannelRegistry", () => {
  it.effect("looks channels up by id and lists them with their contract", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      yield* Effect.gen(function*() {
        const registry = yield* ChannelRegistry
        expect(yield* registry.list).toEqual([
          { channel: "telegram", contract: "v1" },
          { channel: "slack", contract: "v2" }
        ])
        const slack = yield* registry.get("slack")
        expect(slack.contract).toBe("v2")
        expect(yield* Effect.flip(registry.get("teams"))).toEqual(new UnknownChannel({ channel: "teams" }))
        expect((yield* Effect.flip(registry.get("teams"))).message).toBe(`no adapter is registered for channel "teams"`)
      }).pipe(Effect.provide(layer({ telegram: v1Adapter(rec), slack: v2Adapter(rec) })))
    }))

  it.effect("fails to build when any adapter breaks its contract, naming the channel", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const bad = { sendText: "not a function" } as unknown as Adapter
      const exit = yield* Layer.build(layer({ ok: v1Adapter(rec), broken: bad })).pipe(Effect.scoped, Effect.exit)
      expect(exit).toStrictEqual(
        Exit.fail(
          new InvalidAdapter({
            channel: "broken",
            reason: "it implements neither sendText(ctx) (v1) nor outboundContract: \"v2\" with sendFinal(ctx)"
          })
        )
      )
    }))

  it.effect("an entry may be an Effect that builds the adapter: built once with the layer, its services provided by the gateway, released with it", () =>
    Effect.gen(function*() {
      const rec = yield* makeRecorder()
      const events = yield* Ref.make<ReadonlyArray<string>>([])
      const built = Effect.gen(function*() {
        const transport = yield* Transport
        yield* Effect.acquireRelease(
          Ref.update(events, (e) => [...e, `open ${transport.name}`]),
          () => Ref.update(events, (e) => [...e, `close ${transport.name}`])
        )
        return v2Adapter(rec)
      })
      const registryLayer = layer({ plain: v1Adapter(rec), built }).pipe(
        Layer.provide(Layer.succeed(Transport, { name: "http" }))
      )
      yield* Effect.gen(function*() {
        const registry = yield* ChannelRegistry
        expect(yield* registry.list).toEqual([
          { channel: "plain", contract: "v1" },
          { channel: "built", contract: "v2" }
        ])
        expect(yield* Ref.get(events)).toEqual(["open http"])
      }).pipe(Effect.provide(registryLayer))
      expect(yield* Ref.get(events)).toEqual(["open http", "close http"])
    }))

  it.effect("an adapter Effect that refuses its options fails the layer as InvalidAdapter under its registered id; other errors pass through", () =>
    Effect.gen(function*() {
      const refusing = Effect.fail(new InvalidAdapter({ channel: "webhook", reason: "url must be an http(s) URL" }))
      const refused = yield* Layer.build(layer({ alerts: refusing })).pipe(Effect.scoped, Effect.exit)
      expect(refused).toStrictEqual(
        Exit.fail(new InvalidAdapter({ channel: "alerts", reason: "url must be an http(s) URL" }))
      )
      const broken = Effect.fail(new UnknownChannel({ channel: "x" }))
      expect(yield* Layer.build(layer({ alerts: broken })).pipe(Effect.scoped, Effect.exit)).toStrictEqual(
        Exit.fail(new UnknownChannel({ channel: "x" }))
      )
    }))

  it.effect("an adapter that declares outboundContract \"v1\" is not warned about; one that declares nothing is", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const rec = yield* makeRecorder()
      yield* Layer.build(layer({ declared: { ...v1Adapter(rec), outboundContract: "v1" }, implicit: v1Adapter(rec) }))
        .pipe(Effect.scoped, Effect.provide(logs.layer))
      expect(logs.lines.map((l) => l.message)).toEqual([
        `channel "implicit" uses the v1 outbound adapter contract (sendText/sendMedia); declare outboundContract: "v2" with sendFinal(ctx) to take whole payloads`
      ])
    }))
})
