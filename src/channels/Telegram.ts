/**
 * A Telegram channel on the Bot API (https://core.telegram.org/bots/api), over the gateway's `@effect/platform`
 * `HttpClient`. `to` is the `chat_id` (a number or `@channelusername`).
 *
 * ```ts
 * ChannelRegistry.layer({ telegram: TelegramChannel.make({ token: Redacted.make("123456:ABC…") }) })
 *   .pipe(Layer.provide(NodeHttpClient.layerUndici))
 * ```
 *
 * - The adapter declares the v1 contract, so the outbox splits text at Telegram's 4096-character limit
 *   (`textChunkLimit`, lengths in UTF-16 units as Telegram counts them) and records progress per message: a retry
 *   resends only the messages that did not go out. Text → `sendMessage`; each media URL → `sendPhoto` (`.jpg`,
 *   `.jpeg`, `.png`, `.webp`) or `sendDocument` (anything else; Telegram fetches documents by URL only for GIF, PDF
 *   and ZIP), the reply's text as the caption of the first. A caption over Telegram's 1024 characters is sent as
 *   messages right after the media instead (then a retry of that part may repeat the media).
 * - `threadId` → `message_thread_id` (a forum topic), `replyToId` → `reply_parameters` (with
 *   `allow_sending_without_reply`, so a reply whose original was deleted still goes out), `silent` →
 *   `disable_notification`; both ids must be integers, else the send fails for good.
 * - Outcomes: `{ ok: true }` delivers (the message id is `result.message_id`, and `chatId` is kept). 429 waits
 *   `parameters.retry_after` seconds (or `Retry-After`); 5xx and network failures are retried; 400 (`chat not
 *   found`, …), 401, 403 (`bot was blocked by the user`, …), 404 and other 4xx fail for good, and a group that became
 *   a supergroup says so with `migrate_to_chat_id` in the error: the gateway must send to that id from now on.
 * - The token travels in the URL path: no error message, log line or span carries the URL; every text quoted from a
 *   response is scrubbed of the token.
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
import { chunkByLength } from "../Chunking.js"
import type { SendError } from "../DeliveryError.js"
import type { ChannelLimit } from "../RateLimits.js"
import * as Http from "./internal/http.js"

/** The channel's options; `token` is the bot token from @BotFather. */
export const Options = Schema.Struct({
  token: Schema.Redacted(Schema.String),
  /** the Bot API server; default `https://api.telegram.org` (a local Bot API server, a test double) */
  apiUrl: Schema.optionalWith(Schema.String, { exact: true }),
  /** `parse_mode` of texts and captions; default none (plain text) */
  parseMode: Schema.optionalWith(Schema.Literal("HTML", "MarkdownV2", "Markdown"), { exact: true })
})

/** The channel's options, as `make` takes them. */
export interface Options extends Schema.Schema.Type<typeof Options> {}

/** The Bot API's limit on a message's text. */
export const TEXT_LIMIT = 4096

/** The Bot API's limit on a media caption. */
export const CAPTION_LIMIT = 1024

/**
 * Telegram's published limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this),
 * the adapter's suggested `rateLimit`: 30 messages per second per bot, evenly spaced; 1 per second per chat; and
 * 20 per minute in a group. A group cannot be told from a private chat by anything but its id: a group's, a
 * supergroup's and a channel's `chat_id` is negative or a `@username`, a user's is positive, so the 20-per-minute
 * window applies to those (`match`). A reply split into several messages goes out one per second. Override it in
 * `OutboxConfig.rateLimits` under the channel's id (a bot with paid broadcasts allows more, for instance).
 */
export const limits: ChannelLimit = {
  perSecond: 30,
  perConversation: [
    { count: 1, per: "1 second" },
    { count: 20, per: "1 minute", match: "^[-@]" }
  ]
}

/** The default Bot API server. */
export const DEFAULT_API_URL = "https://api.telegram.org"

/** The Bot API's answer (https://core.telegram.org/bots/api#making-requests). */
const ApiResponse = Schema.Union(
  Schema.Struct({
    ok: Schema.Literal(true),
    result: Schema.Struct({
      message_id: Schema.Number,
      chat: Schema.optional(Schema.Struct({ id: Schema.Union(Schema.Number, Schema.String) }))
    })
  }),
  Schema.Struct({
    ok: Schema.Literal(false),
    error_code: Schema.optional(Schema.Number),
    description: Schema.optional(Schema.String),
    parameters: Schema.optional(Schema.Struct({
      retry_after: Schema.optional(Schema.Number),
      migrate_to_chat_id: Schema.optional(Schema.Number)
    }))
  })
)
const decodeResponse = Schema.decodeUnknownEither(ApiResponse)

const PHOTO = /\.(jpe?g|png|webp)$/i

/** `sendPhoto` for a URL that names an image Telegram shows as a photo, else `sendDocument`. */
export const mediaMethod = (url: string): "sendPhoto" | "sendDocument" =>
  PHOTO.test(URL.canParse(url) ? new URL(url).pathname : url) ? "sendPhoto" : "sendDocument"

/** The Telegram request body fields every send shares (chat, topic, reply, silence, parse mode), or why not. */
const commonFields = (
  ctx: SendContext,
  parseMode: string | undefined
): Either.Either<Record<string, unknown>, string> => {
  const integer = (name: string, value: string | undefined) =>
    value === undefined || /^-?\d+$/.test(value.trim())
      ? Either.right(value === undefined ? undefined : Number(value))
      : Either.left(`${name} ${JSON.stringify(value)} is not a Telegram message id (an integer)`)
  return Either.gen(function*() {
    const thread = yield* integer("threadId", ctx.threadId)
    const reply = yield* integer("replyToId", ctx.replyToId)
    return {
      chat_id: ctx.to,
      ...(thread !== undefined ? { message_thread_id: thread } : {}),
      ...(reply !== undefined ? { reply_parameters: { message_id: reply, allow_sending_without_reply: true } } : {}),
      ...(ctx.silent === true ? { disable_notification: true } : {}),
      ...(parseMode !== undefined ? { parse_mode: parseMode } : {})
    }
  })
}

/** A failing Bot API answer (or a non-API one, e.g. a proxy's page) as a classified `SendError`. */
const failure = (
  method: string,
  status: number,
  body: string,
  headerRetryAfterMs: number | undefined,
  target: Http.Target
): SendError => {
  const decoded = decodeResponse(Http.parseJson(body))
  if (Either.isLeft(decoded) || decoded.right.ok) {
    return Http.sendError({
      message: `Telegram ${method} failed: HTTP ${status}: ${Http.bodyDetail(body, target)}`,
      retryable: Http.isRetryableStatus(status),
      retryAfterMs: headerRetryAfterMs,
      status
    })
  }
  const answer = decoded.right
  const code = answer.error_code ?? status
  const description = target.scrub(answer.description ?? "no description")
  const migrateTo = answer.parameters?.migrate_to_chat_id
  const retryAfter = answer.parameters?.retry_after
  const moved = migrateTo === undefined
    ? ""
    : ` (migrate_to_chat_id ${migrateTo}: the group is now a supergroup; send to that chat id)`
  return Http.sendError({
    message: Http.truncate(`Telegram ${method} failed (${code}): ${description}${moved}`, 1000),
    // a migrated group takes no message at its old id, however often it is retried
    retryable: migrateTo === undefined && Http.isRetryableStatus(code),
    retryAfterMs: retryAfter !== undefined ? retryAfter * 1000 : headerRetryAfterMs,
    status: code
  })
}

/** Builds the Telegram adapter over the gateway's `HttpClient`; bad options fail with `InvalidAdapter`. */
export const make = (options: Options): Effect.Effect<AdapterV1, InvalidAdapter, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const apiUrl = (options.apiUrl ?? DEFAULT_API_URL).replace(/\/+$/, "")
    const invalid = (reason: string) => new InvalidAdapter({ channel: "telegram", reason })
    if (!Http.isHttpUrl(apiUrl)) return yield* Effect.fail(invalid("apiUrl must be an http(s) URL"))
    if (Redacted.value(options.token).trim() === "") return yield* Effect.fail(invalid("the bot token is empty"))
    const client = yield* HttpClient.HttpClient
    const scrub = Http.scrubber([options.token])
    const origin = Http.originOf(apiUrl)

    /** One Bot API call; the URL (with the token in it) never leaves this function. */
    const call = (method: string, fields: Record<string, unknown>): Effect.Effect<SendResult, SendError> =>
      Effect.gen(function*() {
        const target: Http.Target = { label: `Telegram ${method}`, origin, scrub }
        const request = HttpClientRequest.post(`${apiUrl}/bot${Redacted.value(options.token)}/${method}`).pipe(
          HttpClientRequest.bodyText(JSON.stringify(fields), "application/json")
        )
        const response = yield* Http.execute(client, request, target)
        const body = yield* Http.readBody(response, target)
        const decoded = decodeResponse(Http.parseJson(body))
        if (Either.isRight(decoded) && decoded.right.ok) {
          const { chat, message_id } = decoded.right.result
          return { messageId: String(message_id), ...(chat !== undefined ? { chatId: String(chat.id) } : {}) }
        }
        if (Either.isLeft(decoded) && response.status >= 200 && response.status < 300) {
          // a success status without the Bot API's answer: the message may be out, but nothing says so;
          // at-least-once retries it
          return yield* Effect.fail(Http.sendError({
            message: `Telegram ${method}: HTTP ${response.status} without a Bot API answer: ${
              Http.bodyDetail(body, target)
            }`,
            retryable: true,
            status: response.status
          }))
        }
        return yield* Effect.fail(failure(method, response.status, body, yield* Http.retryAfterOf(response), target))
      })

    const withCommon = (
      ctx: SendContext,
      send: (common: Record<string, unknown>) => Effect.Effect<SendResult, SendError>
    ): Effect.Effect<SendResult, SendError> =>
      Either.match(commonFields(ctx, options.parseMode), {
        onLeft: (reason) => Effect.fail(Http.sendError({ message: `Telegram: ${reason}`, retryable: false })),
        onRight: send
      })

    const sendText = (ctx: SendContext) =>
      withCommon(ctx, (common) => call("sendMessage", { ...common, text: ctx.text }))

    const sendMedia = (ctx: SendContext) =>
      withCommon(ctx, (common) => {
        const url = ctx.mediaUrl ?? ""
        const method = mediaMethod(url)
        const field = method === "sendPhoto" ? "photo" : "document"
        const caption = ctx.text
        if (caption.length <= CAPTION_LIMIT) {
          return call(method, { ...common, [field]: url, ...(caption.trim() !== "" ? { caption } : {}) })
        }
        // too long for a caption: the media, then the text as messages in the same place
        return Effect.gen(function*() {
          const media = yield* call(method, { ...common, [field]: url })
          const chunks = chunkByLength(caption, TEXT_LIMIT, { markdown: options.parseMode === "MarkdownV2" })
          const texts = yield* Effect.forEach(chunks, (text) => call("sendMessage", { ...common, text }))
          return { ...media, captionMessageIds: texts.map((t) => t.messageId) }
        })
      })

    return {
      outboundContract: "v1",
      rateLimit: limits,
      textChunkLimit: TEXT_LIMIT,
      chunkerMode: options.parseMode === "MarkdownV2" ? "markdown" : "text",
      sendText: (ctx) => Effect.annotateLogs(sendText(ctx), { channel: ctx.channel, entryId: ctx.entryId }),
      sendMedia: (ctx) => Effect.annotateLogs(sendMedia(ctx), { channel: ctx.channel, entryId: ctx.entryId })
    } satisfies AdapterV1
  })

/** `make` with options read from `Config`: `makeConfig({ token: Config.redacted("TELEGRAM_BOT_TOKEN") })`. */
export const makeConfig = (
  config: Config.Config.Wrap<Options>
): Effect.Effect<AdapterV1, InvalidAdapter | ConfigError.ConfigError, HttpClient.HttpClient> =>
  Effect.flatMap(Config.unwrap(config), make)
