/**
 * The XMPP channel against a real chat server going away (issue 17): Prosody from Debian, started by the test, a
 * gateway process (outbox on SQLite, the XMPP channel registered as examples/xmpp.ts does) answering 10
 * conversations with 500 replies in all, and a second real XMPP client recording what arrives. Mid-run the test
 * stops Prosody (SIGTERM) for 10 s and starts it again; in the second variant it also SIGKILLs the gateway during the
 * outage and starts it again. Real time (a real server): every wait is on a condition with a deadline; the one fixed
 * wait is the outage itself.
 *
 * Expected, and asserted: every reply arrives; a reply arrives twice only if the outbox counted it as a possible
 * duplicate (the XMPP channel failed it as written-but-unacknowledged when the connection dropped, or the row was in
 * flight when the gateway was killed); each conversation's replies first arrive in order; every row ends
 * `delivered`; the outage shows as retries in the metrics and in `outbox.events`, and as lost connections.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schedule from "effect/Schedule"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { OutboxEntry } from "../../src/Delivery.js"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import * as Gateway from "./gatewayProcess.js"
import * as Prosody from "./prosody.js"
import * as Reader from "./reader.js"

const MESSAGES = 500
const CONVERSATIONS = 10
const OUTAGE = Duration.seconds(10)

const missing = Prosody.unavailable()
if (missing !== undefined) {
  if (Prosody.required()) {
    throw new Error(`the XMPP real-server test needs Prosody (${missing}); .ci/run installs it with apt-get`)
  }
  console.warn(
    `\n${
      "!".repeat(100)
    }\n!! SKIPPED: the XMPP real-server test (test/xmpp/outage.test.ts) needs Prosody: ${missing}.\n` +
      `!! Install it (Debian: apt-get install -y prosody) to run it; CI installs it and never skips.\n${
        "!".repeat(100)
      }\n`
  )
}
// the two variants run side by side: each has its own Prosody (port, data), gateway and file, and both mostly wait
// on real time (the outage)
const describeWithProsody = missing === undefined ? describe.concurrent : describe.skip

/** The rows of the gateway's file, read while no gateway runs. */
const rows = (filename: string, state?: "in_flight") =>
  Effect.gen(function*() {
    const repo = yield* OutboxRepo
    return yield* repo.list({ limit: 10_000, ...(state === undefined ? {} : { state }) })
  }).pipe(Effect.provide(Layer.orDie(SqliteOutboxRepo.layerFile({ filename, exclusive: false }))))

/** Waits until `holds()`, checking every 50 ms, failing after `within`. */
const until = (holds: () => boolean, within: Duration.DurationInput, what: string) =>
  Effect.suspend(() => (holds() ? Effect.void : Effect.fail(new Error(what)))).pipe(
    Effect.retry(Schedule.spaced(Duration.millis(50))),
    Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`timed out waiting: ${what}`) })
  )

/** What one run measured. */
interface Figures {
  readonly variant: string
  readonly outageMs: number
  readonly arrivedBeforeOutage: number
  readonly retriesScheduled: number
  readonly retryEvents: number
  readonly unacknowledged: number
  readonly inFlightAtKill: number
  readonly possibleDuplicatesCounted: number
  readonly duplicates: number
  readonly wallMs: number
}

const scenario = (variant: "outage" | "kill") =>
  Effect.gen(function*() {
    const began = yield* Clock.currentTimeMillis
    const prosody = yield* Prosody.make
    const gatewayPassword = crypto.randomUUID()
    const readerPassword = crypto.randomUUID()
    yield* prosody.register("gateway", Prosody.GATEWAY_HOST, gatewayPassword)
    yield* prosody.register("reader", Prosody.READER_HOST, readerPassword)
    yield* prosody.start
    const reader = yield* Reader.start({
      service: prosody.service,
      domain: Prosody.READER_HOST,
      username: "reader",
      password: readerPassword
    })
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "outbox-xmpp-"))),
      (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
    )
    const db = path.join(dir, "outbox.db")
    const env = {
      OUTBOX_DB: db,
      XMPP_SERVICE: prosody.service,
      XMPP_DOMAIN: Prosody.GATEWAY_HOST,
      XMPP_USERNAME: "gateway",
      XMPP_PASSWORD: gatewayPassword,
      XMPP_CONNECT_WAIT: "1 second",
      XMPP_ACK_TIMEOUT: "5 seconds",
      XMPP_RECONNECT_BASE: "200 millis",
      XMPP_RECONNECT_MAX: "1 second",
      GATEWAY_TO: reader.jid,
      GATEWAY_MESSAGES: String(MESSAGES),
      GATEWAY_CONVERSATIONS: String(CONVERSATIONS),
      GATEWAY_PACE_MS: "100"
    }
    const first = yield* Gateway.start(env)
    const boots: Array<Gateway.Gateway> = [first]

    // mid-run: a fifth of the replies arrived, the rest are still being written
    yield* reader.awaitDistinct(MESSAGES / 5, "30 seconds")
    const arrivedBeforeOutage = new Set(reader.arrivals().map((a) => a.id)).size
    yield* prosody.stop
    const outageStart = yield* Clock.currentTimeMillis

    let survivor = first
    let inFlightAtKill = new Set<string>()
    let killedBootReport: Gateway.Report | undefined
    if (variant === "kill") {
      // the outage has reached the gateway's outbox (a retry scheduled since the stop), then it dies
      const retriesAtStop = first.retries.length
      yield* until(() => first.retries.length > retriesAtStop, "15 seconds", "a retry after the server stopped")
      killedBootReport = yield* first.report
      yield* first.kill
      inFlightAtKill = new Set((yield* rows(db, "in_flight")).map((row) => row.id))
      survivor = yield* Gateway.start(env)
      boots.push(survivor)
    }
    // the outage lasts OUTAGE from the stop, whatever the kill and the restart took
    const elapsed = (yield* Clock.currentTimeMillis) - outageStart
    yield* Effect.sleep(Duration.millis(Math.max(0, Duration.toMillis(OUTAGE) - elapsed)))
    yield* prosody.start
    const outageMs = (yield* Clock.currentTimeMillis) - outageStart

    yield* reader.awaitDistinct(MESSAGES, "45 seconds")
    const final = yield* survivor.awaitReport((r) => r.byState["delivered"] === MESSAGES, "30 seconds")
    yield* survivor.stop
    const stored = yield* rows(db)
    const wallMs = (yield* Clock.currentTimeMillis) - began
    return {
      variant,
      outageMs,
      arrivedBeforeOutage,
      final,
      killedBootReport,
      inFlightAtKill,
      stored,
      boots,
      reader,
      wallMs
    }
  }).pipe(Effect.scoped)

/** Checks a run against the promises and returns its figures. */
const verify = (run: Effect.Effect.Success<ReturnType<typeof scenario>>): Figures => {
  const { boots, final, inFlightAtKill, killedBootReport, reader, stored } = run
  for (const boot of boots) expect(boot.liveErrors, "replies that could not be stored").toEqual([])

  // every row delivered, one per reply
  expect(stored.length).toBe(MESSAGES)
  expect(stored.filter((row) => row.state !== "delivered").map((row) => [row.idempotencyKey, row.state])).toEqual([])
  const byKey = new Map<string, OutboxEntry>(stored.map((row) => [row.idempotencyKey ?? "", row]))

  // every reply arrived, as the message the gateway wrote, in its conversation's thread
  const arrivals = reader.arrivals()
  const expected = Array.from({ length: MESSAGES }, (_, n) => `c${n % CONVERSATIONS}-${n}:0`)
  expect(new Set(arrivals.map((a) => a.id))).toEqual(new Set(expected))
  for (const a of arrivals) {
    const [, c, n] = /^c(\d+)-(\d+):0$/.exec(a.id)!
    expect([a.thread, a.body]).toEqual([`conv-${c}`, `reply ${n} in conversation ${c}`])
  }

  // each conversation in order: the first arrivals of its replies follow their order
  const firsts = new Map<string, Array<number>>()
  const seen = new Set<string>()
  for (const a of arrivals) {
    if (seen.has(a.id)) continue
    seen.add(a.id)
    const [, c, n] = /^c(\d+)-(\d+):0$/.exec(a.id)!
    firsts.set(c!, [...(firsts.get(c!) ?? []), Number(n)])
  }
  for (const [c, ns] of firsts) expect(ns, `conversation ${c}`).toEqual([...ns].sort((a, b) => a - b))

  // none twice, except the ones the outbox counted as possible duplicates
  const retries = boots.flatMap((boot) => boot.retries)
  const unacknowledged = retries.filter((r) => r.error.includes("did not acknowledge"))
  const copies = new Map<string, number>()
  for (const a of arrivals) copies.set(a.id, (copies.get(a.id) ?? 0) + 1)
  const duplicated = [...copies].filter(([, count]) => count > 1)
  for (const [id, count] of duplicated) {
    const entryId = byKey.get(id.replace(/:0$/, ""))!.id
    const counted = unacknowledged.filter((r) => r.entryId === entryId).length + (inFlightAtKill.has(entryId) ? 1 : 0)
    expect(count - 1, `extra copies of ${id} against the possible duplicates counted for it`).toBeLessThanOrEqual(
      counted
    )
  }

  // the outage, as the metrics and events show it
  const reports = [final, ...(killedBootReport === undefined ? [] : [killedBootReport])]
  const sum = (field: keyof Gateway.Report) => reports.reduce((n, r) => n + (r[field] as number), 0)
  const atOutage = killedBootReport ?? final
  expect(atOutage.xmppDisconnects, "the connection lost when the server stopped").toBeGreaterThanOrEqual(1)
  expect(final.xmppConnections, "reconnected after the restart").toBeGreaterThanOrEqual(1)
  expect(sum("xmppConnectFailures"), "reconnect attempts during the outage").toBeGreaterThanOrEqual(1)
  expect(sum("retryScheduled"), "retries scheduled by the outbox").toBeGreaterThanOrEqual(1)
  expect(retries.some((r) => r.error.startsWith("XMPP: ")), "retries caused by the XMPP channel").toBe(true)
  // the last boot reported after its last retry: its events and its metrics agree (a killed boot could not report last)
  const survivor = boots.at(-1)!
  expect(survivor.retries.length, "retry_scheduled events").toBe(final.retryScheduled)
  expect(survivor.retries.filter((r) => r.error.includes("did not acknowledge")).length).toBe(final.xmppUnacknowledged)
  expect(final.possibleDuplicates, "rows replayed after the kill").toBe(inFlightAtKill.size)

  return {
    variant: run.variant,
    outageMs: run.outageMs,
    arrivedBeforeOutage: run.arrivedBeforeOutage,
    retriesScheduled: sum("retryScheduled"),
    retryEvents: retries.length,
    unacknowledged: unacknowledged.length,
    inFlightAtKill: inFlightAtKill.size,
    possibleDuplicatesCounted: unacknowledged.length + inFlightAtKill.size,
    duplicates: duplicated.reduce((n, [, count]) => n + count - 1, 0),
    wallMs: run.wallMs
  }
}

describeWithProsody(
  "XMPP channel against Prosody: 500 replies in 10 conversations through a 10 s server outage",
  () => {
    it.live(
      "the server stops for 10 s and comes back: every reply arrives once (bar counted duplicates), in order",
      () =>
        Effect.map(scenario("outage"), (run) => {
          const figures = verify(run)
          console.log(`[xmpp outage] ${JSON.stringify(figures)}`)
        }),
      { timeout: 60_000 }
    )

    it.live(
      "the gateway is SIGKILLed during the outage and restarted: the same holds",
      () =>
        Effect.map(scenario("kill"), (run) => {
          const figures = verify(run)
          console.log(`[xmpp outage + SIGKILL] ${JSON.stringify(figures)}`)
        }),
      { timeout: 60_000 }
    )
  }
)
