/** Helpers for the request validation tests: the decode as a caller sees it, and values that are hard to read. */
import { expect } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { decodeRequest, decodeRequestWithSchema } from "../../src/Delivery.js"

/** The smallest valid request. */
export const valid = { channel: "chat", to: "u", payloads: [{ text: "hi" }] }

/** The decode as a caller sees it; both decoders must give the same answer, and neither may throw. */
export const outcome = (input: unknown): string => {
  const fast = Effect.runSync(Effect.either(decodeRequest(input)))
  const strict = decodeRequestWithSchema(input)
  expect(fast).toStrictEqual(strict)
  return Either.match(fast, { onLeft: (e) => `${e._tag}: ${e.message}`, onRight: () => "accepted" })
}

/** The decoded request (throws if it does not decode). */
export const decoded = (input: unknown) => Effect.runSync(decodeRequest(input))

/** `value` nested `levels` deep in arrays. */
export const nestedArrays = (levels: number, value: unknown = 1): unknown => {
  let out = value
  for (let i = 0; i < levels; i++) out = [out]
  return out
}

/** A Proxy whose every read throws (`has` answers, so the test runner can look at it). */
export const throwingProxy = () => {
  const boom = () => {
    throw new Error("trap")
  }
  return new Proxy({}, { get: boom, ownKeys: boom, getPrototypeOf: boom, getOwnPropertyDescriptor: boom })
}

/** A revoked Proxy: any look at it throws, even `Array.isArray`. */
export const revokedProxy = () => {
  const { proxy, revoke } = Proxy.revocable({}, {})
  revoke()
  return proxy
}
