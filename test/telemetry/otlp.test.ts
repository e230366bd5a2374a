/**
 * `OutboxTelemetry.layer` against a loopback OTLP/HTTP collector (JSON encoding): a delivery's spans reach
 * `/v1/traces` and the outbox's metrics reach `/v1/metrics`, with the configured service name and headers.
 */
import { describe, expect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Outbox } from "../../src/Outbox.js"
import * as OutboxTelemetry from "../../src/OutboxTelemetry.js"
import { outboxLayer, reply, scriptedAdapter } from "../outbox/harness.js"

interface Received {
  readonly path: string
  readonly headers: http.IncomingHttpHeaders
  readonly body: string
}

/** A collector that records every POST; released with its scope. */
const collector = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly received: Array<Received>; readonly server: http.Server }>((resume) => {
    const received: Array<Received> = []
    const server = http.createServer((request, response) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        received.push({ path: request.url ?? "", headers: request.headers, body: Buffer.concat(chunks).toString() })
        response.writeHead(200, { "content-type": "application/json" }).end("{}")
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}`, received, server }))
    })
  }),
  ({ server }) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
)

describe("OutboxTelemetry.layer (OTLP/HTTP)", () => {
  it.scopedLive("exports a delivery's spans and the outbox's metrics to the collector", () =>
    Effect.gen(function*() {
      const { received, url } = yield* collector
      const { adapter } = yield* scriptedAdapter([])
      const telemetry = OutboxTelemetry.layer({
        url,
        encoding: "json",
        serviceName: "gateway-test",
        headers: { "x-api-key": Redacted.make("secret-key") },
        exportInterval: "100 millis",
        logs: false
      })
      yield* Effect.gen(function*() {
        const outbox = yield* Outbox
        const outcome = yield* outbox.deliver(reply("hello"))
        expect(outcome._tag).toBe("Delivered")
        // a few export intervals
        yield* Effect.sleep("500 millis")
      }).pipe(Effect.provide(outboxLayer({ chat: adapter }).pipe(Layer.provide(telemetry))), Effect.scoped)
      const traces = received.filter((r) => r.path === "/v1/traces").map((r) => r.body).join("\n")
      const metrics = received.filter((r) => r.path === "/v1/metrics").map((r) => r.body).join("\n")
      for (const name of ["Outbox.deliver", "Outbox.deliverEntry", "Sender.sendPart", "Outbox.ack"]) {
        expect(traces).toContain(`"name":"${name}"`)
      }
      expect(traces).toContain(`"stringValue":"gateway-test"`)
      expect(metrics).toContain(`"name":"outbox_delivered_total"`)
      expect(metrics).toContain(`"name":"outbox_delivery_latency_ms"`)
      expect(received.every((r) => r.headers["x-api-key"] === "secret-key")).toBe(true)
      expect(received.every((r) => r.headers["content-type"] === "application/json")).toBe(true)
    }))
})
