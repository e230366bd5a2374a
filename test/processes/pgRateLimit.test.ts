/**
 * Two real gateway processes on one PostgreSQL outbox (test/processes/rateGateway.ts), each with its worker and a
 * backlog of its own, one channel limited to 20 messages per second for the gateway as a whole: the loopback
 * channel, in this process, sees both processes send, at the limit + 5 % at most over the run and over any 5 s.
 * Over a single second the count also carries the HTTP calls' jitter (a send that left 60 ms late lands next to the
 * one after it): it is printed, and held to the limit + 2.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { spawn } from "node:child_process"
import * as path from "node:path"
import { performance } from "node:perf_hooks"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"
import { startServer } from "../channels/loopback.js"
import { freshSchema, urlFor } from "../support/pg.js"

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const PER_SECOND = 20
const PER_PROCESS = 100

/** Starts a gateway process and waits until it prints `ready`; `go` makes it enqueue; the scope's end kills it. */
const gateway = (url: string, serverUrl: string) =>
  Effect.gen(function*() {
    const ready = yield* Deferred.make<void, Error>()
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawn(
          process.execPath,
          [
            "--import",
            "tsx",
            path.join(repoRoot, "test/processes/rateGateway.ts"),
            url,
            serverUrl,
            String(PER_SECOND),
            String(PER_PROCESS)
          ],
          { cwd: repoRoot, stdio: ["pipe", "pipe", "inherit"] }
        )
      ),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    child.on("exit", () => Deferred.unsafeDone(ready, Effect.fail(new Error("the gateway exited"))))
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      if (line.trim() === "ready") Deferred.unsafeDone(ready, Effect.void)
    })
    yield* Deferred.await(ready)
    return { pid: child.pid!, go: Effect.sync(() => child.stdin!.write("go\n")) }
  })

describe("rate limits across processes on PostgreSQL", () => {
  it.live(`two gateway processes share one limit: ${PER_SECOND}/s + 5 % at most, together`, () => {
    const schema = freshSchema()
    return Effect.gen(function*() {
      const url = urlFor(schema.name)
      // migrated once here, so the gateways start on a ready schema
      yield* Layer.build(PgOutboxRepo.layerUrl(url, { client: { maxConnections: 1 } }))
      const arrivals: Array<{ readonly at: number; readonly pid: string; readonly text: string }> = []
      const server = yield* startServer((request) => {
        arrivals.push({
          at: performance.now(),
          pid: request.headers["x-pid"] ?? "",
          text: (JSON.parse(request.body) as { text: string }).text
        })
        return { status: 200, body: `m-${arrivals.length}` }
      })
      const gateways = yield* Effect.all([gateway(url, server.url), gateway(url, server.url)], { concurrency: 2 })
      yield* Effect.forEach(gateways, (g) => g.go, { discard: true })
      const total = 2 * PER_PROCESS
      yield* server.arrived(total).pipe(Effect.timeoutFail({
        duration: "60 seconds",
        onTimeout: () => new Error(`${arrivals.length}/${total} arrived`)
      }))

      // every reply once; both processes sent
      expect(new Set(arrivals.map((a) => a.text)).size).toBe(total)
      for (const g of gateways) expect(arrivals.filter((a) => a.pid === String(g.pid)).length).toBeGreaterThan(0)
      // the most in any window (one starting at each arrival), and the rate over the whole run
      const times = arrivals.map((a) => a.at).sort((x, y) => x - y)
      const most = (ms: number) => Math.max(...times.map((t) => times.filter((u) => u >= t && u < t + ms).length))
      const rate = ((total - 1) * 1000) / (times[total - 1]! - times[0]!)
      const shares = gateways.map((g) => arrivals.filter((a) => a.pid === String(g.pid)).length)
      console.log(
        `two processes, ${total} replies: ${rate.toFixed(2)}/s overall (limit ${PER_SECOND}/s), at most ${
          most(5000)
        } in any 5 s and ${most(1000)} in any second; per process: ${shares.join(" + ")}`
      )
      expect(rate).toBeLessThanOrEqual(PER_SECOND * 1.05)
      expect(most(5000)).toBeLessThanOrEqual(5 * PER_SECOND * 1.05)
      expect(most(1000)).toBeLessThanOrEqual(PER_SECOND + 3)
      // and the limit is used, not undershot: the drain took about total / PER_SECOND seconds
      expect(rate).toBeGreaterThan(PER_SECOND * 0.8)
    }).pipe(Effect.scoped, Effect.provide(schema.layer))
  }, 90_000)
})
