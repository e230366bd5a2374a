/**
 * Crash soak: the crash test's scenario at scale (default 100,000 messages and 200 SIGKILLs), printing
 * lost / duplicates / kills / msgs/s. Run: `npx tsx bench/crash-soak.ts [messages] [kills] [seed]`.
 * The gateway child and every check are the crash test's own (test/crash/harness.ts, test/crash/gateway.ts).
 */
import * as Effect from "effect/Effect"
import { runCrashScenario, summary } from "../test/crash/harness.js"

const [messages = 100_000, kills = 200, seed = 42] = process.argv.slice(2).map(Number)

const program = Effect.gen(function*() {
  const report = yield* runCrashScenario({
    messages,
    kills,
    seed,
    // longer lives than in CI (50–400 ms), so that the gateway drains about what is fed to it between kills and
    // each kill lands in the middle of real work rather than of start-up
    killAfterMs: [200, 2500],
    liveWaitMs: 250,
    drainTimeout: "20 minutes",
    progress: (line) => {
      if (/^kill \d*0\//.test(line) || line.startsWith("drained")) console.error(line)
    }
  })
  console.log(summary(report))
  console.log(JSON.stringify({
    messages: report.messages,
    kills: report.kills,
    lost: report.lost,
    duplicates: report.duplicates,
    duplicateBound: report.duplicateBound,
    killsMidFlight: report.killsMidFlight,
    inFlightAtKills: report.inFlightAtKills,
    elapsedSeconds: Math.round(report.elapsedMs / 100) / 10,
    msgsPerSecond: Math.round((report.messages * 1000) / report.elapsedMs),
    finalStates: report.finalStates
  }))
  for (const v of report.violations) console.log(`VIOLATION: ${v}`)
  if (report.violations.length > 0) process.exitCode = 1
})

Effect.runPromise(program).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
