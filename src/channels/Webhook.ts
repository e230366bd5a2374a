/**
 * A webhook channel: each reply payload is POSTed as JSON to one URL, signed per the Standard Webhooks spec
 * (https://www.standardwebhooks.com), over the gateway's `@effect/platform` `HttpClient`.
 *
 * ```ts
 * ChannelRegistry.layer({ alerts: WebhookChannel.make({ url, secret: Redacted.make("whsec_…") }) })
 *   .pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * - The adapter is v2 (`sendFinal`): one request per payload, with its text, media URLs and `channelData` whole;
 *   the receiver does its own splitting.
 * - Headers: `webhook-id` is `encodeURIComponent(idempotencyKey) + "." + partIndex` — the same on every retry, so a
 *   receiver dedupes by it; `webhook-timestamp` is the attempt's time (Effect `Clock`, seconds);
 *   `webhook-signature` is `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the base64 key of the
 *   `whsec_…` secret.
 * - Body: `{ type, timestamp, data: { channel, to, accountId?, threadId?, replyToId?, silent?, text?, mediaUrls?,
 *   channelData?, entryId, idempotencyKey, partIndex, partCount, attempt } }` (`type` defaults to `"message.reply"`).
 * - Outcomes: any 2xx delivers (the message id is the `webhook-id`); 408, 429, 5xx and network failures are retried,
 *   `Retry-After` (seconds or an HTTP-date) setting the wait; 410 Gone, any other 4xx, 1xx and 3xx (redirects are
 *   not followed) fail for good. Error messages quote the first 500 characters of the response body and name only
 *   the URL's origin, never its path, query or the secret. The outbox's `sendTimeout` bounds each request.
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { createHmac } from "node:crypto"
import type { AdapterV2, SendContext, SendResult } from "../ChannelAdapter.js"
import { InvalidAdapter } from "../ChannelAdapter.js"
import type { SendError } from "../DeliveryError.js"
import * as Http from "./internal/http.js"

/** The webhook's options; `secret` is a Standard Webhooks secret, `whsec_` + base64 (the prefix may be omitted). */
export const Options = Schema.Struct({
  url: Schema.String,
  secret: Schema.Redacted(Schema.String),
  /** the body's `type`; default `"message.reply"` */
  eventType: Schema.optionalWith(Schema.String, { exact: true })
})

/** The webhook's options, as `make` takes them. */
export interface Options extends Schema.Schema.Type<typeof Options> {}

/** The default `type` of the body. */
export const DEFAULT_EVENT_TYPE = "message.reply"

const SECRET_PREFIX = "whsec_"

/** The signing key of a `whsec_…` secret, or why it is not one; the message never quotes the secret. */
const signingKey = (secret: Redacted.Redacted<string>): Buffer | string => {
  const raw = Redacted.value(secret).trim()
  const base64 = raw.startsWith(SECRET_PREFIX) ? raw.slice(SECRET_PREFIX.length) : raw
  if (base64 === "" || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64) || base64.length % 4 === 1) {
    return `the secret must be a Standard Webhooks secret ("whsec_" followed by base64)`
  }
  return Buffer.from(base64, "base64")
}

/** The Standard Webhooks signature header value for one message. */
export const sign = (key: Uint8Array, id: string, timestamp: number, body: string): string =>
  `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`

/** The `webhook-id` of a part: stable across retries, unique per entry and part, safe in a header. */
export const webhookId = (ctx: Pick<SendContext, "idempotencyKey" | "partIndex">): string =>
  `${encodeURIComponent(ctx.idempotencyKey)}.${ctx.partIndex}`

const optional = <K extends string, V>(key: K, value: V | undefined) =>
  (value === undefined ? {} : { [key]: value }) as { [P in K]?: V }

/** The JSON body for one payload. */
const bodyOf = (ctx: SendContext, eventType: string, now: number): string =>
  JSON.stringify({
    type: eventType,
    timestamp: new Date(now).toISOString(),
    data: {
      channel: ctx.channel,
      to: ctx.to,
      ...optional("accountId", ctx.accountId),
      ...optional("threadId", ctx.threadId),
      ...optional("replyToId", ctx.replyToId),
      ...optional("silent", ctx.silent),
      ...optional("text", ctx.payload.text),
      ...optional("mediaUrls", ctx.payload.mediaUrls),
      ...optional("channelData", ctx.payload.channelData),
      entryId: ctx.entryId,
      idempotencyKey: ctx.idempotencyKey,
      partIndex: ctx.partIndex,
      partCount: ctx.partCount,
      attempt: ctx.attempt
    }
  })

/** A failing response as a classified `SendError`. */
const failure = (
  response: { readonly status: number },
  body: string,
  retryAfterMs: number | undefined,
  target: Http.Target
): SendError => {
  const status = response.status
  const what = status === 410
    ? "HTTP 410 Gone (the endpoint is gone)"
    : status >= 300 && status < 400
    ? `HTTP ${status} (a redirect; webhooks do not follow them)`
    : `HTTP ${status}`
  return Http.sendError({
    message: `webhook ${target.origin} answered ${what}: ${Http.bodyDetail(body, target)}`,
    retryable: Http.isRetryableStatus(status),
    retryAfterMs,
    status
  })
}

/** Builds the webhook adapter over the gateway's `HttpClient`; bad options fail with `InvalidAdapter`. */
export const make = (options: Options): Effect.Effect<AdapterV2, InvalidAdapter, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const invalid = (reason: string) => new InvalidAdapter({ channel: "webhook", reason })
    if (!Http.isHttpUrl(options.url)) return yield* Effect.fail(invalid(`url must be an http(s) URL`))
    const key = signingKey(options.secret)
    if (typeof key === "string") return yield* Effect.fail(invalid(key))
    const client = yield* HttpClient.HttpClient
    const eventType = options.eventType ?? DEFAULT_EVENT_TYPE
    const target: Http.Target = {
      label: "webhook",
      origin: Http.originOf(options.url),
      // the URL's path and query may hold a token of their own (many webhook URLs do)
      scrub: Http.scrubber([options.secret, Redacted.make(key.toString("base64")), ...Http.pathSecret(options.url)])
    }

    const sendFinal = (ctx: SendContext): Effect.Effect<SendResult, SendError> =>
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        const id = webhookId(ctx)
        const timestamp = Math.floor(now / 1000)
        const body = bodyOf(ctx, eventType, now)
        const request = HttpClientRequest.post(options.url).pipe(
          HttpClientRequest.setHeaders({
            "webhook-id": id,
            "webhook-timestamp": String(timestamp),
            "webhook-signature": sign(key, id, timestamp, body)
          }),
          HttpClientRequest.bodyText(body, "application/json")
        )
        const response = yield* Http.execute(client, request, target)
        if (response.status >= 200 && response.status < 300) {
          // accepted: what the receiver answered does not change that, so a body that cannot be read is only noted
          yield* Http.readBody(response, target).pipe(
            Effect.catchAll((error) => Effect.logDebug(error.message))
          )
          return { messageId: id, status: response.status }
        }
        const text = yield* Http.readBody(response, target).pipe(
          Effect.catchAll((error) => Effect.succeed(error.message))
        )
        return yield* Effect.fail(failure(response, text, yield* Http.retryAfterOf(response), target))
      }).pipe(Effect.annotateLogs({ channel: ctx.channel, entryId: ctx.entryId }))

    return { outboundContract: "v2", sendFinal } satisfies AdapterV2
  })

/** `make` with options read from `Config`: `makeConfig({ url: Config.string("URL"), secret: Config.redacted("SECRET") })`. */
export const makeConfig = (
  config: Config.Config.Wrap<Options>
): Effect.Effect<AdapterV2, InvalidAdapter | ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(Config.unwrap(config), make)
