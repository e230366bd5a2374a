/**
 * OpenTelemetry for the outbox, with `@effect/opentelemetry` (an optional peer dependency: install it to use this
 * module). The outbox always makes its spans and metrics through Effect's tracer and `Metric`s; these layers send them
 * somewhere:
 * - `layer(options)` exports traces, metrics (every Effect metric, the `outbox_*` ones of `Metrics` included) and logs
 *   over OTLP/HTTP to a collector, with Effect's own exporter: no OpenTelemetry SDK needed.
 * - `layerGlobal` / `layerTracerProvider(provider)` hand the spans to an OpenTelemetry SDK the gateway already runs
 *   (needs `@opentelemetry/api`, `@opentelemetry/resources` and `@opentelemetry/semantic-conventions`).
 *
 * The spans (`spans` lists them): `Outbox.deliver` (a caller's live delivery) and `Outbox.runRecoveryPass` (a worker
 * pass) are roots; `Outbox.claim` is a child of the pass; `Outbox.deliverEntry` (one attempt at one row, attributes
 * `outbox.entry_id`, `outbox.channel`, `outbox.attempt`, `outbox.live`, `outbox.reclaimed`, and
 * `outbox.outcome` at its end) is a child of the one that started it; `Sender.sendPart` (one adapter call, with
 * `outbox.part_index` and `outbox.part_kind`, failed when the call failed) and `Outbox.ack` are its children. Store
 * operations are `OutboxRepo.<operation>`.
 */
import * as OtlpLogger from "@effect/opentelemetry/OtlpLogger"
import * as OtlpMetrics from "@effect/opentelemetry/OtlpMetrics"
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type * as OtelApi from "@opentelemetry/api"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"

/** The spans the outbox makes, by name, with their attributes. */
export const spans = {
  deliver: "Outbox.deliver",
  pass: "Outbox.runRecoveryPass",
  claim: "Outbox.claim",
  deliverEntry: "Outbox.deliverEntry",
  sendPart: "Sender.sendPart",
  ack: "Outbox.ack"
} as const

/** Where and how `layer` exports. */
export interface Options {
  /** the collector's OTLP/HTTP base URL, e.g. `http://localhost:4318` (`/v1/traces`, `/v1/metrics`, `/v1/logs` under it) */
  readonly url: string
  /** `service.name` of the resource (default "effect-outbox"; a gateway gives its own) */
  readonly serviceName?: string | undefined
  readonly serviceVersion?: string | undefined
  /** more resource attributes (`deployment.environment`, …) */
  readonly attributes?: Readonly<Record<string, unknown>> | undefined
  /** request headers, e.g. a vendor's API key (kept `Redacted`, unwrapped only into the request) */
  readonly headers?: Readonly<Record<string, string | Redacted.Redacted<string>>> | undefined
  /** "protobuf" (OTLP/HTTP's default) or "json" */
  readonly encoding?: "protobuf" | "json" | undefined
  /** how often traces, metrics and logs are sent (default 10 seconds) */
  readonly exportInterval?: Duration.DurationInput | undefined
  /** send the logs too (default true) */
  readonly logs?: boolean | undefined
  /** how long a shutdown waits for the last export (default 3 seconds) */
  readonly shutdownTimeout?: Duration.DurationInput | undefined
}

/** Traces, metrics and logs exported over OTLP/HTTP (Effect's exporter, `fetch` as the HTTP client). */
export const layer = (options: Options): Layer.Layer<never> => {
  const resource = {
    serviceName: options.serviceName ?? "effect-outbox",
    ...(options.serviceVersion === undefined ? {} : { serviceVersion: options.serviceVersion }),
    ...(options.attributes === undefined ? {} : { attributes: { ...options.attributes } })
  }
  const headers = Object.fromEntries(
    Object.entries(options.headers ?? {}).map(([k, v]) => [k, Redacted.isRedacted(v) ? Redacted.value(v) : v])
  )
  const base = options.url.replace(/\/+$/, "")
  const interval = options.exportInterval ?? Duration.seconds(10)
  const common = { resource, headers, exportInterval: interval, shutdownTimeout: options.shutdownTimeout }
  const exporters = Layer.mergeAll(
    OtlpTracer.layer({ url: `${base}/v1/traces`, ...common }),
    OtlpMetrics.layer({ url: `${base}/v1/metrics`, ...common }),
    options.logs === false ? Layer.empty : OtlpLogger.layer({ url: `${base}/v1/logs`, ...common })
  )
  return exporters.pipe(
    Layer.provide(options.encoding === "json" ? OtlpSerialization.layerJson : OtlpSerialization.layerProtobuf),
    Layer.provide(FetchHttpClient.layer)
  )
}

/** `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key2=value2`, values URL-encoded (the OpenTelemetry convention). */
const parseHeaders = (raw: string): Record<string, Redacted.Redacted<string>> =>
  Object.fromEntries(
    raw.split(",").map((pair) => pair.trim()).filter((pair) => pair.includes("=")).map((pair) => {
      const at = pair.indexOf("=")
      return [pair.slice(0, at).trim(), Redacted.make(decodeURIComponent(pair.slice(at + 1).trim()))] as const
    })
  )

/**
 * The standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (required), `OTEL_SERVICE_NAME` (default "effect-outbox"),
 * `OTEL_EXPORTER_OTLP_HEADERS` (secret) and `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` or `http/json`).
 */
export const config: Config.Config<Options> = Config.all({
  url: Config.string("OTEL_EXPORTER_OTLP_ENDPOINT").pipe(
    Config.withDescription("the collector's OTLP/HTTP base URL, e.g. http://localhost:4318")
  ),
  serviceName: Config.string("OTEL_SERVICE_NAME").pipe(Config.withDefault("effect-outbox")),
  headers: Config.option(Config.redacted("OTEL_EXPORTER_OTLP_HEADERS")),
  protocol: Config.literal("http/protobuf", "http/json")("OTEL_EXPORTER_OTLP_PROTOCOL").pipe(
    Config.withDefault("http/protobuf" as const)
  )
}).pipe(Config.map(({ headers, protocol, serviceName, url }) => ({
  url,
  serviceName,
  encoding: protocol === "http/json" ? "json" as const : "protobuf" as const,
  headers: Option.match(headers, { onNone: () => ({}), onSome: (h) => parseHeaders(Redacted.value(h)) })
})))

/** `layer` configured from the `OTEL_*` variables (see `config`). */
export const layerFromEnv: Layer.Layer<never, ConfigError.ConfigError> = Layer.unwrapEffect(Effect.map(config, layer))

/** The OpenTelemetry SDK packages the SDK bridges import are missing. */
export class TelemetryUnavailable extends Data.TaggedError("TelemetryUnavailable")<{ readonly message: string }> {}

const importSdkBridge = Effect.tryPromise({
  try: () => Promise.all([import("@effect/opentelemetry/Tracer"), import("@effect/opentelemetry/Resource")]),
  catch: (cause) =>
    new TelemetryUnavailable({
      message: "OutboxTelemetry's SDK bridge needs @effect/opentelemetry, @opentelemetry/api, " +
        `@opentelemetry/resources and @opentelemetry/semantic-conventions: ${
          cause instanceof Error ? cause.message : String(cause)
        }`
    })
})

/** Effect's spans (the outbox's included) go to `provider`, an OpenTelemetry SDK `TracerProvider` of the gateway's. */
export const layerTracerProvider = (
  provider: OtelApi.TracerProvider,
  options: { readonly serviceName?: string | undefined } = {}
): Layer.Layer<never, TelemetryUnavailable> =>
  Layer.unwrapEffect(Effect.map(importSdkBridge, ([Tracer, Resource]) =>
    Layer.discard(Tracer.layer).pipe(
      Layer.provide(Layer.succeed(Tracer.OtelTracerProvider, provider)),
      Layer.provide(Resource.layer({ serviceName: options.serviceName ?? "effect-outbox" }))
    )))

/** Effect's spans go to the `TracerProvider` registered globally (what `@opentelemetry/sdk-node`'s `NodeSDK` does). */
export const layerGlobal = (
  options: { readonly serviceName?: string | undefined } = {}
): Layer.Layer<never, TelemetryUnavailable> =>
  Layer.unwrapEffect(Effect.map(importSdkBridge, ([Tracer, Resource]) =>
    Layer.discard(Tracer.layerGlobal).pipe(
      Layer.provide(Resource.layer({ serviceName: options.serviceName ?? "effect-outbox" }))
    )))
