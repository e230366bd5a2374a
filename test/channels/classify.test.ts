import { describe, expect, it } from "@effect/vitest"
import { classify, permanentPatterns } from "../../src/ChannelAdapter.js"
import { SendError } from "../../src/DeliveryError.js"

interface Expected {
  readonly retryable: boolean
  readonly retryAfterMs?: number
  readonly status?: number
  readonly message?: string | RegExp
}

const circular: Record<string, unknown> = { code: "LOOP" }
circular["self"] = circular

const cases: ReadonlyArray<readonly [string, unknown, Expected]> = [
  // (a) what the adapter said wins over everything else
  ["adapter says permanent", { retryable: false, message: "quota exhausted" }, {
    retryable: false,
    message: "quota exhausted"
  }],
  ["adapter says retryable despite a 400", { retryable: true, status: 400, message: "flaky" }, {
    retryable: true,
    status: 400
  }],
  ["adapter says retryable despite a permanent pattern", { retryable: true, message: "chat not found (replica lag)" }, {
    retryable: true
  }],
  ["adapter gives retryAfterMs", { retryAfterMs: 1500, message: "slow down" }, { retryable: true, retryAfterMs: 1500 }],
  ["adapter gives retryAfterMs on a 400", { retryAfterMs: 1500, status: 400 }, {
    retryable: true,
    retryAfterMs: 1500,
    status: 400
  }],
  // (b) HTTP status
  ["429 with Retry-After header (seconds)", { status: 429, headers: { "Retry-After": "7" } }, {
    retryable: true,
    retryAfterMs: 7000,
    status: 429
  }],
  ["429 with fetch Headers", { status: 429, headers: new Headers({ "retry-after": "2" }) }, {
    retryable: true,
    retryAfterMs: 2000,
    status: 429
  }],
  [
    "Telegram 429 with parameters.retry_after",
    { ok: false, error_code: 429, description: "Too Many Requests: retry after 3", parameters: { retry_after: 3 } },
    { retryable: true, retryAfterMs: 3000, status: 429, message: "Too Many Requests: retry after 3" }
  ],
  ["429 without Retry-After", { status: 429, message: "rate limited" }, { retryable: true, status: 429 }],
  ["408", { status: 408 }, { retryable: true, status: 408 }],
  ["500", { status: 500, message: "Internal Server Error" }, { retryable: true, status: 500 }],
  ["502 as statusCode", { statusCode: 502 }, { retryable: true, status: 502 }],
  ["503 in an axios-style response", { message: "Request failed", response: { status: 503 } }, {
    retryable: true,
    status: 503
  }],
  ["400", { status: 400, message: "Bad Request" }, { retryable: false, status: 400 }],
  ["401", { status: 401 }, { retryable: false, status: 401 }],
  ["403 in an axios-style response", { message: "Request failed", response: { status: 403 } }, {
    retryable: false,
    status: 403
  }],
  ["404", { status: 404 }, { retryable: false, status: 404 }],
  ["a 409 falls through to the default", { status: 409, message: "conflict" }, { retryable: true, status: 409 }],
  ["a 409 with a permanent message", { status: 409, message: "Forbidden: bot was kicked from the group" }, {
    retryable: false,
    status: 409
  }],
  // (c) permanent message patterns
  ["Telegram blocked", new Error("Forbidden: bot was blocked by the user"), { retryable: false }],
  ["chat not found, any case", new Error("400 Bad Request: Chat Not Found"), { retryable: false }],
  ["a string with a permanent pattern", "outbound not configured for channel msteams", { retryable: false }],
  // (d) everything else is transient
  ["a network error", new Error("ECONNRESET"), { retryable: true, message: "ECONNRESET" }],
  ["a TypeError keeps its name", new TypeError("fetch failed"), {
    retryable: true,
    message: "TypeError: fetch failed"
  }],
  // non-Error values still read well
  ["undefined", undefined, { retryable: true, message: "adapter failed without an error value (undefined)" }],
  ["null", null, { retryable: true, message: "adapter failed with null" }],
  ["a number", 42, { retryable: true, message: "adapter failed with number 42" }],
  ["a plain string", "boom", { retryable: true, message: "boom" }],
  ["an empty object", {}, { retryable: true, message: "adapter failed with {}" }],
  ["a circular object", circular, { retryable: true, message: "adapter failed with [object Object]" }],
  ["an Error without a message", new RangeError(), { retryable: true, message: "RangeError" }]
]

describe("classify", () => {
  for (const [name, input, expected] of cases) {
    it(`${name} → ${expected.retryable ? "retryable" : "permanent"}`, () => {
      const error = classify(input)
      expect(error).toBeInstanceOf(SendError)
      expect(error.retryable).toBe(expected.retryable)
      expect(error.retryAfterMs).toBe(expected.retryAfterMs)
      expect(error.status).toBe(expected.status)
      if (typeof expected.message === "string") expect(error.message).toBe(expected.message)
      else if (expected.message !== undefined) expect(error.message).toMatch(expected.message)
      else expect(error.message.length).toBeGreaterThan(0)
    })
  }

  for (const pattern of permanentPatterns) {
    it(`"${pattern}" is permanent`, () => {
      expect(classify(new Error(`Something: ${pattern.toUpperCase()} (details)`)).retryable).toBe(false)
    })
  }

  it("passes a SendError through untouched", () => {
    const original = new SendError({ message: "already classified", retryable: false, retryAfterMs: 5 })
    expect(classify(original)).toBe(original)
  })

  it("truncates huge messages", () => {
    expect(classify(new Error("x".repeat(10_000))).message.length).toBeLessThanOrEqual(1001)
  })
})
