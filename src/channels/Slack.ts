/**
 * A Slack channel on the Web API's `chat.postMessage` (https://api.slack.com/methods/chat.postMessage), over the
 * gateway's `@effect/platform` `HttpClient`. `to` is a channel id (`C…`), a DM id (`D…`) or a user id.
 *
 * ```ts
 * ChannelRegistry.layer({ slack: SlackChannel.make({ token: Redacted.make("xoxb-…") }) })
 *   .pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * - The adapter declares the v1 contract: the outbox splits text at 4000 characters (Slack's advice for `text`;
 *   markdown mode, so code fences are kept whole where they fit) and records progress per message. Each media URL
 *   is posted as a message with the URL (Slack unfurls it), the reply's text above it when it fits in one message;
 *   a longer text follows the URL as its own messages (then a retry of that part may repeat the URL).
 * - `threadId` → `thread_ts`; without one, `replyToId` (a message `ts`) starts or joins that message's thread.
 *   Slack has no silent messages: `silent` is ignored.
 * - The token goes in `Authorization: Bearer`, which the platform redacts from spans; it is scrubbed from every
 *   quoted response too.
 * - Outcomes: `{ ok: true }` delivers (the message id is `ts`; `channel` is kept). HTTP 429 waits `Retry-After`;
 *   HTTP 5xx and network failures are retried; another non-200 status fails for good. `ok: false` codes:
 *   {@link permanentErrors} fail for good, {@link retryableErrors} are retried, and a code in neither list is retried
 *   too (an unknown failure is assumed transient, as everywhere in the outbox; `maxAttempts` bounds it).
 */
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { AdapterV1, SendContext, SendResult } from "../ChannelAdapter.js"
import { InvalidAdapter } from "../ChannelAdapter.js"
import { chunkByLength, DEFAULT_TEXT_CHUNK_LIMIT } from "../Chunking.js"
import type { SendError } from "../DeliveryError.js"
import type { ChannelLimit } from "../RateLimits.js"
import * as Http from "./internal/http.js"

/** The channel's options; `token` is a bot token (`xoxb-…`) with the `chat:write` scope. */
export const Options = Schema.Struct({
  token: Schema.Redacted(Schema.String),
  /** the Web API's base URL; default `https://slack.com/api` (a test double, a proxy) */
  apiUrl: Schema.optionalWith(Schema.String, { exact: true })
})

/** The channel's options, as `make` takes them. */
export interface Options extends Schema.Schema.Type<typeof Options> {}

/**
 * Slack's published limit for `chat.postMessage` (https://api.slack.com/methods/chat.postMessage#rate_limiting), the
 * adapter's suggested `rateLimit`: about 1 message per second per channel (a thread is in its channel), with no
 * published limit across channels. Override it in `OutboxConfig.rateLimits` under the channel's id.
 */
export const limits: ChannelLimit = { perConversation: { count: 1, per: "1 second" } }

/** The default Web API base URL. */
export const DEFAULT_API_URL = "https://slack.com/api"

/** The text limit the outbox chunks at: Slack's advice for `text` (it truncates past 40,000). */
export const TEXT_LIMIT = DEFAULT_TEXT_CHUNK_LIMIT

/** `ok: false` codes that no retry fixes: the channel, the token or the message is wrong. */
export const permanentErrors: ReadonlySet<string> = new Set([
  "channel_not_found",
  "not_in_channel",
  "is_archived",
  "invalid_auth",
  "not_authed",
  "account_inactive",
  "token_revoked",
  "token_expired",
  "no_permission",
  "missing_scope",
  "access_denied",
  "ekm_access_denied",
  "msg_too_long",
  "no_text",
  "too_many_attachments",
  "invalid_blocks",
  "invalid_attachments",
  "restricted_action",
  "restricted_action_read_only_channel",
  "restricted_action_thread_only_channel",
  "restricted_action_non_threadable_channel",
  "as_user_not_supported",
  "invalid_arguments",
  "invalid_arg_name",
  "invalid_charset",
  "invalid_form_data",
  "invalid_post_type",
  "missing_post_type"
])

/** `ok: false` codes Slack documents as passing: rate limits, its own failures, migrations in progress. */
export const retryableErrors: ReadonlySet<string> = new Set([
  "ratelimited",
  "rate_limited",
  "internal_error",
  "service_unavailable",
  "fatal_error",
  "request_timeout",
  "team_added_to_org",
  "org_login_required"
])

/** The Web API's answer. */
const ApiResponse = Schema.Union(
  Schema.Struct({ ok: Schema.Literal(true), ts: Schema.String, channel: Schema.optional(Schema.String) }),
  Schema.Struct({
    ok: Schema.Literal(false),
    error: Schema.String,
    needed: Schema.optional(Schema.String),
    provided: Schema.optional(Schema.String),
    response_metadata: Schema.optional(Schema.Struct({ messages: Schema.optional(Schema.Array(Schema.String)) }))
  })
)
const decodeResponse = Schema.decodeUnknownEither(ApiResponse)

/** An `ok: false` answer as a readable detail: the code, and the scopes or messages Slack added. */
const errorDetail = (answer: {
  readonly error: string
  readonly needed?: string | undefined
  readonly provided?: string | undefined
  readonly response_metadata?: { readonly messages?: ReadonlyArray<string> | undefined } | undefined
}): string => {
  const extra = [
    ...(answer.needed !== undefined ? [`needed: ${answer.needed}`] : []),
    ...(answer.provided !== undefined ? [`provided: ${answer.provided}`] : []),
    ...(answer.response_metadata?.messages ?? [])
  ]
  return extra.length === 0 ? answer.error : `${answer.error} (${extra.join("; ")})`
}

/** Builds the Slack adapter over the gateway's `HttpClient`; bad options fail with `InvalidAdapter`. */
export const make = (options: Options): Effect.Effect<AdapterV1, InvalidAdapter, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const apiUrl = (options.apiUrl ?? DEFAULT_API_URL).replace(/\/+$/, "")
    const invalid = (reason: string) => new InvalidAdapter({ channel: "slack", reason })
    if (!Http.isHttpUrl(apiUrl)) return yield* Effect.fail(invalid("apiUrl must be an http(s) URL"))
    if (Redacted.value(options.token).trim() === "") return yield* Effect.fail(invalid("the token is empty"))
    const client = yield* HttpClient.HttpClient
    const target: Http.Target = {
      label: "Slack chat.postMessage",
      origin: Http.originOf(apiUrl),
      scrub: Http.scrubber([options.token])
    }

    const post = (ctx: SendContext, text: string): Effect.Effect<SendResult, SendError> =>
      Effect.gen(function*() {
        const thread = ctx.threadId ?? ctx.replyToId
        const request = HttpClientRequest.post(`${apiUrl}/chat.postMessage`).pipe(
          HttpClientRequest.bearerToken(Redacted.value(options.token)),
          HttpClientRequest.bodyText(
            JSON.stringify({ channel: ctx.to, text, ...(thread !== undefined ? { thread_ts: thread } : {}) }),
            "application/json; charset=utf-8"
          )
        )
        const response = yield* Http.execute(client, request, target)
        const body = yield* Http.readBody(response, target)
        const retryAfterMs = yield* Http.retryAfterOf(response)
        const decoded = decodeResponse(Http.parseJson(body))
        if (response.status !== 200 || Either.isLeft(decoded)) {
          return yield* Effect.fail(Http.sendError({
            message: `Slack chat.postMessage failed: HTTP ${response.status}: ${Http.bodyDetail(body, target)}`,
            // a 200 that is not the Web API's answer may hide a sent message: at-least-once retries it
            retryable: response.status === 200 || Http.isRetryableStatus(response.status),
            retryAfterMs,
            status: response.status
          }))
        }
        const answer = decoded.right
        if (answer.ok) {
          return { messageId: answer.ts, ...(answer.channel !== undefined ? { channel: answer.channel } : {}) }
        }
        return yield* Effect.fail(Http.sendError({
          message: `Slack chat.postMessage failed: ${target.scrub(errorDetail(answer))}`,
          retryable: !permanentErrors.has(answer.error),
          retryAfterMs
        }))
      })

    const sendMedia = (ctx: SendContext): Effect.Effect<SendResult, SendError> => {
      const url = ctx.mediaUrl ?? ""
      const caption = ctx.text.trim() === "" ? "" : ctx.text
      if (caption === "" || caption.length + 1 + url.length <= TEXT_LIMIT) {
        return post(ctx, caption === "" ? url : `${caption}\n${url}`)
      }
      return Effect.gen(function*() {
        const media = yield* post(ctx, url)
        const texts = yield* Effect.forEach(
          chunkByLength(caption, TEXT_LIMIT, { markdown: true }),
          (text) => post(ctx, text)
        )
        return { ...media, captionMessageIds: texts.map((t) => t.messageId) }
      })
    }

    return {
      outboundContract: "v1",
      rateLimit: limits,
      textChunkLimit: TEXT_LIMIT,
      chunkerMode: "markdown",
      sendText: (ctx) => Effect.annotateLogs(post(ctx, ctx.text), { channel: ctx.channel, entryId: ctx.entryId }),
      sendMedia: (ctx) => Effect.annotateLogs(sendMedia(ctx), { channel: ctx.channel, entryId: ctx.entryId })
    } satisfies AdapterV1
  })

/** `make` with options read from `Config`: `makeConfig({ token: Config.redacted("SLACK_BOT_TOKEN") })`. */
export const makeConfig = (
  config: Config.Config.Wrap<Options>
): Effect.Effect<AdapterV1, InvalidAdapter | ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(Config.unwrap(config), make)
