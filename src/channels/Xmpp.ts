/**
 * An XMPP channel on `@xmpp/client` (an optional peer dependency: `npm install @xmpp/client@0.14`), as an
 * Effect-native v2 adapter:
 *
 * ```ts
 * const Channels = Layer.unwrapScoped(Effect.gen(function*() {
 *   const xmpp = yield* XmppChannel.make(yield* XmppChannel.config()) // XMPP_SERVICE, _DOMAIN, _USERNAME, _PASSWORD
 *   return ChannelRegistry.layer({ xmpp })
 * }))
 * ```
 *
 * - One connection per account (`accountId` of the reply, else `defaultAccount`), opened when the channel is made
 *   and kept up for its scope's lifetime, reconnecting with exponential backoff. A gateway starts even when the
 *   server is down; its replies are stored and retried by the outbox.
 * - A reply is sent when the server acknowledges it through stream management (XEP-0198, required of the server),
 *   not when it is written to the socket. A connection lost before the ack fails the send as retryable, and the outbox
 *   retries it; one the server handled but whose ack was lost is then delivered twice (counted in
 *   `outbox_xmpp_unacknowledged_total`; the stanza id, `<idempotencyKey>:<part>`, is the same on every attempt so a
 *   receiving client can drop the copy). Session resumption is not used: see `internal/xmppSession.ts` for why.
 * - Each payload is one `<message/>` to `to` (a JID): the text and the media URLs in `<body/>`, media also as XEP-0066
 *   `<x/>`, the thread id as `<thread/>`, `replyToId` as an XEP-0461 `<reply/>`. A recipient that is not a JID, an
 *   empty payload or a stanza over `maxStanzaBytes` fails for good before anything is written. `channelData` and
 *   `silent` are ignored. Incoming stanzas are ignored too (this is the outbound path), except error replies to sent
 *   messages, which are logged and counted (`outbox_xmpp_bounced_total`): their rows are already delivered.
 * - No `reconcile`: after a crash, a reply that was in flight is replayed and counted as a possible duplicate.
 * - The password is `Redacted`, read only during SASL authentication; it is never logged, and the client object does
 *   not hold it. PLAIN authentication is used only over TLS (`xmpps://`, or STARTTLS when the server offers it).
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import type { AdapterV2, SendContext, SendResult } from "../ChannelAdapter.js"
import { SendError } from "../DeliveryError.js"
import * as XmppAccount from "./internal/xmppAccount.js"
import * as XmppStanza from "./internal/xmppStanza.js"

export * as metrics from "./internal/xmppMetrics.js"

/** A duration as any `Duration.DurationInput` ("5 seconds", a number of millis, a `Duration`). */
const DurationValue = Schema.transformOrFail(
  Schema.Union(Schema.DurationFromSelf, Schema.Number, Schema.String),
  Schema.DurationFromSelf,
  {
    strict: true,
    decode: (input, _, ast) =>
      Option.match(Option.filter(Duration.decodeUnknown(input), (d) => Duration.toMillis(d) >= 0), {
        onNone: () =>
          ParseResult.fail(
            new ParseResult.Type(ast, input, `expected a duration such as "5 seconds" or a number of millis`)
          ),
        onSome: ParseResult.succeed
      }),
    encode: ParseResult.succeed
  }
)

const withDefault = (millis: number) =>
  Schema.optionalWith(DurationValue, { default: () => Duration.millis(millis), exact: true })

/** One account the channel sends as. */
export const Account = Schema.Struct({
  /** `xmpp://host:5222` (STARTTLS when offered), `xmpps://host:5223` (direct TLS), or `ws(s)://…` */
  service: Schema.String.pipe(
    Schema.pattern(/^(xmpps?|wss?):\/\/\S+$/, {
      message: () => "service must be an xmpp://, xmpps://, ws:// or wss:// URL"
    })
  ),
  domain: Schema.NonEmptyTrimmedString,
  username: Schema.NonEmptyTrimmedString,
  // the message replaces Schema's default, which would print the value it got
  password: Schema.RedactedFromSelf(Schema.String).annotations({
    message: () => "password must be a Redacted string (Redacted.make(…) or Config.redacted(…))"
  }),
  /** the resource to bind; omitted, the server picks one */
  resource: Schema.optionalWith(Schema.NonEmptyTrimmedString, { exact: true })
})

/** The channel's options; every field but `accounts` has a default. */
export const Options = Schema.Struct({
  accounts: Schema.Record({ key: Schema.String, value: Account }).pipe(
    Schema.filter((accounts) => Object.keys(accounts).length > 0 || "accounts must name at least one account")
  ),
  /** the account of a reply without `accountId`: this one; omitted, the account "default", else the only one */
  defaultAccount: Schema.optionalWith(Schema.String, { exact: true }),
  messageType: Schema.optionalWith(Schema.Literal("chat", "normal", "headline"), {
    default: () => "chat",
    exact: true
  }),
  /** connecting until stream management is on (10 s) */
  connectTimeout: withDefault(10_000),
  /** how long a send waits for a connection that is down before failing as retryable (5 s) */
  connectWait: withDefault(5_000),
  /** server silence after an ack request that drops the connection (15 s; keep it under the outbox's sendTimeout) */
  ackTimeout: withDefault(15_000),
  /** quiet time after the last message before acks are requested, batching a burst's requests (10 ms) */
  ackRequestDelay: withDefault(10),
  /** ack requests on an idle connection, to find a dead one (30 s) */
  keepAlive: withDefault(30_000),
  /** first reconnect delay, doubling per failed attempt (1 s) */
  reconnectBase: withDefault(1_000),
  /** longest reconnect delay (30 s) */
  reconnectMax: withDefault(30_000),
  /** the largest stanza sent (60,000 bytes; servers cap stanzas at 64–256 KiB and drop the connection beyond) */
  maxStanzaBytes: Schema.optionalWith(Schema.Int.pipe(Schema.between(1_024, 10_000_000)), {
    default: () => 60_000,
    exact: true
  })
})

/** The options as `make` takes them (durations as `Duration.DurationInput`-like values). */
export type OptionsInput = Schema.Schema.Encoded<typeof Options>

/** The options decoded, defaults applied. */
export type ResolvedOptions = Schema.Schema.Type<typeof Options>

/** Options that do not decode; the message names the field (never a password's value). */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>("effect-outbox/XmppInvalidOptions")(
  "InvalidOptions",
  { message: Schema.String }
) {}

const optionalDuration = (name: string) => Config.option(Config.duration(name))

/**
 * One account from `<prefix>_SERVICE`, `_DOMAIN`, `_USERNAME`, `_PASSWORD` (read as `Redacted`) and the optional
 * `_RESOURCE`, with the optional tuning `_CONNECT_WAIT`, `_ACK_TIMEOUT`, `_ACK_REQUEST_DELAY`, `_RECONNECT_BASE`,
 * `_RECONNECT_MAX` (Effect duration strings). The account is named "default".
 */
export const config = (prefix = "XMPP"): Config.Config<OptionsInput> =>
  Config.all({
    service: Config.string("SERVICE"),
    domain: Config.string("DOMAIN"),
    username: Config.string("USERNAME"),
    password: Config.redacted("PASSWORD"),
    resource: Config.option(Config.string("RESOURCE")),
    connectWait: optionalDuration("CONNECT_WAIT"),
    ackTimeout: optionalDuration("ACK_TIMEOUT"),
    ackRequestDelay: optionalDuration("ACK_REQUEST_DELAY"),
    reconnectBase: optionalDuration("RECONNECT_BASE"),
    reconnectMax: optionalDuration("RECONNECT_MAX")
  }).pipe(
    Config.nested(prefix),
    Config.map(({ domain, password, resource, service, username, ...tuning }) => {
      const present = Object.entries(tuning).flatMap(([key, value]) => Option.isSome(value) ? [[key, value.value]] : [])
      return {
        accounts: {
          default: {
            service,
            domain,
            username,
            password,
            ...Option.match(resource, { onNone: () => ({}), onSome: (resource) => ({ resource }) })
          }
        },
        ...Object.fromEntries(present)
      } as OptionsInput
    })
  )

/** The account a send without `accountId` uses, if the options name one. */
const defaultAccountOf = (options: ResolvedOptions): string | undefined => {
  if (options.defaultAccount !== undefined) return options.defaultAccount
  const names = Object.keys(options.accounts)
  return names.includes("default") ? "default" : names.length === 1 ? names[0] : undefined
}

/** Starts one connection per account in the current scope and returns the adapter that sends through them. */
export const make = (options: OptionsInput): Effect.Effect<AdapterV2, InvalidOptions, Scope.Scope> =>
  Effect.gen(function*() {
    const resolved = yield* Schema.decodeUnknown(Options, { errors: "all" })(options).pipe(
      Effect.mapError((error) =>
        new InvalidOptions({
          message: `invalid XMPP channel options: ${ParseResult.TreeFormatter.formatErrorSync(error)}`
        })
      )
    )
    const connections = new Map<string, XmppAccount.AccountConnection>()
    for (const [name, account] of Object.entries(resolved.accounts)) {
      connections.set(
        name,
        yield* XmppAccount.make({
          account: name,
          service: account.service,
          domain: account.domain,
          username: account.username,
          password: account.password,
          resource: account.resource,
          connectTimeout: resolved.connectTimeout,
          ackTimeout: resolved.ackTimeout,
          ackRequestDelay: resolved.ackRequestDelay,
          keepAlive: resolved.keepAlive,
          reconnectBase: resolved.reconnectBase,
          reconnectMax: resolved.reconnectMax,
          connectWait: resolved.connectWait
        })
      )
    }
    const fallback = defaultAccountOf(resolved)
    const settings = { type: resolved.messageType, maxStanzaBytes: resolved.maxStanzaBytes }

    const sendFinal = (ctx: SendContext): Effect.Effect<SendResult, SendError> =>
      Effect.gen(function*() {
        const name = ctx.accountId ?? fallback
        const connection = name === undefined ? undefined : connections.get(name)
        if (connection === undefined) {
          return yield* new SendError({
            message: name === undefined
              ? `no XMPP account for a reply without accountId: set defaultAccount`
              : `no XMPP account "${name}" is configured`,
            retryable: false
          })
        }
        const stanza = XmppStanza.message(ctx, settings)
        if (Either.isLeft(stanza)) return yield* stanza.left
        yield* connection.send(stanza.right)
        return { messageId: stanza.right.attrs["id"] ?? XmppStanza.stanzaId(ctx) }
      })

    return { outboundContract: "v2", sendFinal } satisfies AdapterV2
  })
