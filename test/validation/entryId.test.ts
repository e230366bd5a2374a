/** #8: the errors that name a row carry the branded `EntryId` that `Outbox.get` takes, so no cast is needed. */
import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { EntryId } from "../../src/Delivery.js"
import {
  AckFailed,
  LeaseLost,
  PartialDeliveryFailure,
  SendFailed,
  TransitionRejected
} from "../../src/DeliveryError.js"
import { Outbox } from "../../src/Outbox.js"
import { outboxLayer, scriptedAdapter } from "../outbox/harness.js"

const valid = { channel: "chat", to: "u", payloads: [{ text: "hi" }] }

describe("#8 errors that name a row carry the branded EntryId", () => {
  it("SendFailed, PartialDeliveryFailure, AckFailed, LeaseLost and TransitionRejected declare EntryId", () => {
    expectTypeOf<SendFailed["entryId"]>().toEqualTypeOf<EntryId>()
    expectTypeOf<PartialDeliveryFailure["entryId"]>().toEqualTypeOf<EntryId>()
    expectTypeOf<AckFailed["entryId"]>().toEqualTypeOf<EntryId>()
    expectTypeOf<LeaseLost["id"]>().toEqualTypeOf<EntryId>()
    expectTypeOf<TransitionRejected["id"]>().toEqualTypeOf<EntryId>()
    for (
      const schema of [
        SendFailed.fields.entryId,
        PartialDeliveryFailure.fields.entryId,
        AckFailed.fields.entryId,
        LeaseLost.fields.id,
        TransitionRejected.fields.id
      ]
    ) {
      expect(schema).toBe(EntryId)
    }
  })

  it.effect("a SendFailed's entryId goes straight to Outbox.get", () =>
    Effect.gen(function*() {
      const chat = yield* scriptedAdapter([{ permanent: "blocked by the user" }])
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const error = yield* Effect.flip(outbox.deliver(valid))
        if (error._tag !== "SendFailed") return expect.fail(`expected SendFailed, got ${error._tag}`)
        const row = yield* outbox.get(error.entryId)
        expect(Option.map(row, (r) => r.state)).toEqual(Option.some("failed_terminal"))
      }).pipe(Effect.provide(outboxLayer({ chat: chat.adapter })))
    }))
})
