/**
 * Crash test: a gateway process (test/crash/gateway.ts) is SIGKILLed at seeded random moments while the parent
 * enqueues into its SQLite file and it delivers (worker and live path), restarted each time, then drained.
 * The checks are in harness.ts (`verify`); verify.test.ts shows that each of them catches what it is for.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { runCrashScenario, summary } from "./harness.js"

const MESSAGES = 1200
const KILLS = 22

describe("crash: SIGKILL at random moments", () => {
  it.live(
    `${MESSAGES} messages, ${KILLS} kills: none lost, duplicates only for rows in flight at a kill, order kept, nothing stuck`,
    () =>
      Effect.gen(function*() {
        const report = yield* runCrashScenario({
          messages: MESSAGES,
          kills: KILLS,
          seed: 20_240_605,
          drainTimeout: "45 seconds"
        })
        console.log(summary(report))
        expect(report.violations).toEqual([])
        expect(report.lost).toBe(0)
        expect(report.kills).toBeGreaterThanOrEqual(20)
        expect(report.duplicates).toBeLessThanOrEqual(report.duplicateBound)
        expect(report.finalStates).toEqual({ delivered: MESSAGES })
        // not vacuous: kills did land while rows were in flight, and the live path delivered too
        expect(report.killsMidFlight).toBeGreaterThan(0)
        expect(report.liveOutcomes["Delivered"] ?? 0).toBeGreaterThan(0)
      }),
    120_000
  )
})
