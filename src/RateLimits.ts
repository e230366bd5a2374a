/**
 * Channel rate limits: how fast the outbox may send to each channel, so a backlog goes out within the channel's
 * published limits instead of learning them from 429s.
 *
 * ```ts
 * OutboxConfig.layer({
 *   rateLimits: {
 *     telegram: TelegramChannel.limits,                        // the shipped defaults, as they are
 *     slack: { perConversation: { count: 1, per: "1 second" } },
 *     partner: { perSecond: 5, accounts: { big: { perSecond: 50 } } },
 *     alerts: "none"                                          // no limits, not even an adapter's defaults
 *   },
 *   maxRateWait: "5 seconds"
 * })
 * ```
 *
 * - **Where limits come from.** A channel id's entry in `OutboxConfig.rateLimits` wins; without one, the limits the
 *   adapter suggests (`rateLimit` on the adapter: the shipped Telegram and Slack channels set theirs); without either,
 *   the channel has no limits. An entry replaces the adapter's suggestion whole (no field-by-field merge), and
 *   `"none"` removes it.
 * - **Accounts.** `perSecond`/`burst` is the budget of one account of the channel (one bot token: the APIs count per
 *   bot), rows without an `accountId` sharing one. `accounts[id]` overrides fields for that account.
 * - **Conversations.** `perConversation` is per recipient (`to`) of an account: the threads of one chat share it, as
 *   the APIs count them. Several windows may apply at once; a window with `match` applies only to recipients whose
 *   `to` matches that regular expression (Telegram's groups: negative chat ids and `@usernames`).
 * - **429s.** Whatever the configuration, a send that fails with `retryAfterMs` pauses its account's limiter for that
 *   long: every row of that account waits, then sending resumes at the configured rate.
 *
 * Shipped defaults (the adapters' suggestions; see docs/operations.md for the sources):
 *
 * | channel | per account | per conversation |
 * | --- | --- | --- |
 * | Telegram | 30/s, no burst | 1/s; groups (`to` negative or `@…`) also 20/min |
 * | Slack | none | 1/s |
 * | Webhook, XMPP, plugins | none | none |
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { StoreError } from "./DeliveryError.js"

/** At most `count` sends to one recipient in any window of length `per`; with `match`, only where `to` matches it. */
export interface ConversationLimit {
  readonly count: number
  readonly per: Duration.DurationInput
  /** a regular expression (source text) the recipient (`to`) must match for this window to apply */
  readonly match?: string | undefined
}

/** The limits of one account of a channel. */
export interface AccountLimit {
  /** sends per second for the account, evenly spaced (fractions allowed: 0.5 is one every 2 s) */
  readonly perSecond?: number | undefined
  /** how many sends may go at once after a quiet time (default 1: evenly spaced, never above `perSecond`) */
  readonly burst?: number | undefined
  /** windows per recipient; all that apply hold */
  readonly perConversation?: ConversationLimit | ReadonlyArray<ConversationLimit> | undefined
}

/** The limits of a channel, with overrides per account id. */
export interface ChannelLimit extends AccountLimit {
  readonly accounts?: Readonly<Record<string, AccountLimit>> | undefined
}

/** `OutboxConfig.rateLimits`: channel id → its limits, or `"none"`. */
export type RateLimitsInput = Readonly<Record<string, ChannelLimit | "none">>

/** A window in millis, its pattern compiled. */
export interface Window {
  readonly count: number
  readonly perMs: number
  readonly match: RegExp | undefined
}

/** The resolved limits of one account of one channel. */
export interface Rules {
  /** millis between two sends of the account; undefined: no account limit */
  readonly intervalMs: number | undefined
  /** how far ahead of its even spacing a send may go (`(burst - 1) * intervalMs`) */
  readonly toleranceMs: number
  readonly windows: ReadonlyArray<Window>
}

/** A duration as data: millis, or text `Duration.decode` reads ("1 second", "500 millis"). */
const DurationInput = Schema.declare(
  (u: unknown): u is Duration.DurationInput =>
    typeof u === "number" || (typeof u === "string" && millisOf(u) !== undefined),
  { identifier: "DurationInput", description: "millis, or a duration such as \"1 second\"" }
)

const ConversationLimitSchema = Schema.Struct({
  count: Schema.Number,
  per: DurationInput,
  match: Schema.optional(Schema.String)
})

const accountFields = {
  perSecond: Schema.optional(Schema.Number),
  burst: Schema.optional(Schema.Number),
  perConversation: Schema.optional(Schema.Union(ConversationLimitSchema, Schema.Array(ConversationLimitSchema)))
}

/** An account's limits as data (JSON, Config). */
export const AccountLimitSchema = Schema.Struct(accountFields)

/** A channel's limits as data (JSON, Config). */
export const ChannelLimitSchema = Schema.Struct({
  ...accountFields,
  accounts: Schema.optional(Schema.Record({ key: Schema.String, value: AccountLimitSchema }))
})

/** `OutboxConfig.rateLimits` as data (JSON, Config). */
export const RateLimitsSchema = Schema.Record({
  key: Schema.String,
  value: Schema.Union(Schema.Literal("none"), ChannelLimitSchema)
})

const windowsOf = (limit: AccountLimit): ReadonlyArray<ConversationLimit> =>
  limit.perConversation === undefined
    ? []
    : Array.isArray(limit.perConversation)
    ? limit.perConversation
    : [limit.perConversation as ConversationLimit]

const millisOf = (input: unknown): number | undefined => {
  try {
    const ms = Duration.toMillis(Duration.decode(input as Duration.DurationInput))
    return Number.isFinite(ms) && ms > 0 ? ms : undefined
  } catch {
    return undefined
  }
}

const regexOf = (source: string): RegExp | undefined => {
  try {
    return new RegExp(source)
  } catch {
    return undefined
  }
}

/** What is wrong with one account's limits (empty when nothing), each problem prefixed with `at`. */
const accountProblems = (at: string, limit: AccountLimit): Array<string> => {
  const problems: Array<string> = []
  if (limit.perSecond !== undefined && !(Number.isFinite(limit.perSecond) && limit.perSecond > 0)) {
    problems.push(`${at}.perSecond must be a number > 0`)
  }
  if (limit.burst !== undefined && !(Number.isInteger(limit.burst) && limit.burst >= 1)) {
    problems.push(`${at}.burst must be an integer ≥ 1`)
  }
  windowsOf(limit).forEach((w, i) => {
    const where = `${at}.perConversation[${i}]`
    if (!(Number.isInteger(w.count) && w.count >= 1)) problems.push(`${where}.count must be an integer ≥ 1`)
    if (millisOf(w.per) === undefined) problems.push(`${where}.per must be a duration > 0 such as "1 second"`)
    if (w.match !== undefined && regexOf(w.match) === undefined) {
      problems.push(`${where}.match must be a regular expression`)
    }
  })
  return problems
}

/** What is wrong with a channel's limits, each problem naming the field (`rateLimits.telegram.perSecond …`). */
export const channelProblems = (at: string, limit: ChannelLimit): Array<string> => [
  ...accountProblems(at, limit),
  ...Object.entries(limit.accounts ?? {}).flatMap(([id, account]) => accountProblems(`${at}.accounts.${id}`, account))
]

/** What is wrong with a whole `rateLimits` record (empty when it is valid). */
export const problems = (limits: RateLimitsInput): Array<string> =>
  Object.entries(limits).flatMap(([channel, limit]) =>
    limit === "none" ? [] : channelProblems(`rateLimits.${channel}`, limit)
  )

/** The rules of `accountId` under a (valid) channel limit; undefined when nothing limits it. */
export const rulesOf = (limit: ChannelLimit, accountId: string | undefined): Rules | undefined => {
  const override = accountId === undefined ? undefined : limit.accounts?.[accountId]
  const merged: AccountLimit = override === undefined ? limit : { ...limit, ...definedFields(override) }
  const windows = windowsOf(merged).map((w): Window => ({
    count: w.count,
    perMs: millisOf(w.per) ?? 1000,
    match: w.match === undefined ? undefined : regexOf(w.match)
  }))
  const intervalMs = merged.perSecond === undefined ? undefined : 1000 / merged.perSecond
  if (intervalMs === undefined && windows.length === 0) return undefined
  return { intervalMs, toleranceMs: intervalMs === undefined ? 0 : ((merged.burst ?? 1) - 1) * intervalMs, windows }
}

const definedFields = (limit: AccountLimit): AccountLimit =>
  Object.fromEntries(Object.entries(limit).filter(([, v]) => v !== undefined)) as AccountLimit

/**
 * `rateLimits` from a JSON text, e.g. `OUTBOX_RATE_LIMITS='{"telegram":{"perSecond":30,"perConversation":
 * {"count":1,"per":"1 second"}}}'` (durations as text or millis); absent is `{}`.
 */
export const config = (name = "RATE_LIMITS"): Config.Config<RateLimitsInput> =>
  Config.string(name).pipe(
    Config.mapOrFail((text) =>
      Either.mapLeft(
        Schema.decodeUnknownEither(Schema.parseJson(RateLimitsSchema))(text),
        (error) => ParseResult.TreeFormatter.formatErrorSync(error)
      ).pipe(
        Either.flatMap((limits) => {
          const found = problems(limits)
          return found.length === 0 ? Either.right(limits) : Either.left(found.join("; "))
        }),
        Either.mapLeft((message) => ConfigError.InvalidData([name], message))
      )
    ),
    Config.withDefault<RateLimitsInput>({}),
    Config.withDescription(
      "channel rate limits as JSON: { channelId: { perSecond, burst, perConversation, accounts } }"
    )
  )

/** The spacing of one bucket (from `Rules`). */
export interface Spacing {
  /** millis between two sends; undefined: no rate, only pauses */
  readonly intervalMs: number | undefined
  readonly toleranceMs: number
}

/** A reservation: `slot` is the send's time; `before`/`after` let an unused one be given back. */
export type Reservation =
  | { readonly _tag: "Reserved"; readonly slot: number; readonly before: number; readonly after: number }
  /** no slot until after the horizon: nothing was reserved; come back at `until` */
  | { readonly _tag: "Full"; readonly until: number }

/**
 * Where the account buckets live: in the process (the default), or in a store that several processes share, so a
 * limit holds for the gateway as a whole (`PgOutboxRepo` offers one as its `rateBuckets`).
 */
export interface BucketStore {
  /** Reserves the first slot at or after `at` if it is at or before `latest` (else `Full`, nothing reserved). */
  readonly reserve: (
    key: string,
    spacing: Spacing,
    at: number,
    latest: number
  ) => Effect.Effect<Reservation, StoreError>
  /**
   * Pauses the bucket until `until` (never shortens a pause); true when the pause was extended. The queue restarts at
   * `until`, and sends already told to come back later (`Full`) keep their order: the plan moves by the extension.
   */
  readonly pause: (key: string, until: number, now: number) => Effect.Effect<boolean, StoreError>
  /** Gives back a reservation nothing was sent for, if no later one was made (best effort: else a slot is lost). */
  readonly cancel: (key: string, reservation: Reservation) => Effect.Effect<void>
  /** Pauses made by other processes (bucket key and end), for a shared store: the limiter wakes its waiters. */
  readonly pauses?: Stream.Stream<{ readonly key: string; readonly until: number }, StoreError> | undefined
  /** A name for logs: "memory", "postgresql". */
  readonly kind: string
}
