import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import type { Adapter } from "../../src/ChannelAdapter.js"
import { InvalidAdapter } from "../../src/ChannelAdapter.js"
import { ChannelRegistry, layer } from "../../src/ChannelRegistry.js"
import { UnknownChannel } from "../../src/DeliveryError.js"
import { makeRecorder, v1Adapter, v2Adapter } from "./fixtures.js"

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
})
