/**
 * Several gateway processes on one PostgreSQL outbox (pgHarness.ts): SIGKILLs of any of them with restarts, and every
 * connection of theirs terminated by the server. Nothing is lost, duplicates come only from rows in flight at a kill,
 * a conversation never has two sends in flight at once (checked by the channel), and first sends keep enqueue order.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { pgSummary, runPgCrashScenario } from "./pgHarness.js"

const GATEWAYS = 4
const CONVERSATIONS = 40
const PER_CONVERSATION = 50
const MESSAGES = CONVERSATIONS * PER_CONVERSATION

describe("several gateway processes on one PostgreSQL outbox", () => {
  it.live(
    `${GATEWAYS} gateways, ${MESSAGES} replies in ${CONVERSATIONS} conversations, a channel failing 10 %, random SIGKILLs`,
    () =>
      Effect.gen(function*() {
        const report = yield* runPgCrashScenario({
          gateways: GATEWAYS,
          conversations: CONVERSATIONS,
          perConversation: PER_CONVERSATION,
          kills: 14,
          terminations: 0,
          failureRate: 0.1,
          seed: 20_261_205
        })
        console.log(pgSummary(report))
        expect(report.violations).toEqual([])
        expect(report.lost).toBe(0)
        expect(report.kills).toBeGreaterThanOrEqual(12)
        expect(report.finalStates).toEqual({ delivered: MESSAGES })
        expect(report.duplicates).toBeLessThanOrEqual(report.duplicateBound)
        // not vacuous: kills landed with rows in flight, requests died with their gateway, the channel failed sends
        expect(report.killsMidFlight).toBeGreaterThan(0)
        expect(report.resentAfterKill).toBeGreaterThan(0)
        expect(report.channelFailures).toBeGreaterThan(MESSAGES * 0.05)
        expect(Object.keys(report.callerErrors).filter((tag) => tag !== "StoreError")).toEqual([])
      }),
    90_000
  )

  it.live(
    "every gateway connection terminated twice mid-run: nothing lost, the gateways recover without a restart",
    () =>
      Effect.gen(function*() {
        const report = yield* runPgCrashScenario({
          gateways: GATEWAYS,
          conversations: CONVERSATIONS,
          perConversation: 20,
          kills: 0,
          terminations: 2,
          failureRate: 0.1,
          seed: 20_261_206
        })
        console.log(pgSummary(report))
        expect(report.violations).toEqual([])
        expect(report.lost).toBe(0)
        expect(report.finalStates).toEqual({ delivered: CONVERSATIONS * 20 })
        // no gateway restarted, and each stored replies after the second termination
        expect(report.bootsPerGateway).toEqual(Array(GATEWAYS).fill(1))
        for (const stored of report.storedAfterLastTermination) expect(stored).toBeGreaterThan(0)
        // every connection was ended (at least each gateway's listening one), and every gateway listens again
        for (const n of report.terminated) expect(n).toBeGreaterThanOrEqual(GATEWAYS)
        expect(report.relistened).toEqual(Array(GATEWAYS).fill(true))
        // callers whose write a termination caught got StoreError (and sent again), nothing else
        expect(report.callerErrors["StoreError"] ?? 0).toBeGreaterThan(0)
        expect(Object.keys(report.callerErrors).filter((tag) => tag !== "StoreError")).toEqual([])
        expect(report.duplicates).toBe(0)
      }),
    90_000
  )
})
