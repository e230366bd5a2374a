/**
 * The one connection of one XMPP account, kept up for the channel's lifetime by a scoped fiber: it opens a session,
 * waits until it is lost, and opens the next. Failed attempts back off exponentially (one `Schedule`, capped and
 * jittered); a connection that was up and got lost starts the backoff over. Sends made while no session is up wait
 * for one (`connectWait`), then fail as retryable, leaving the retry to the outbox.
 */
import type { Element } from "@xmpp/client"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { identity } from "effect/Function"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import { SendError } from "../../DeliveryError.js"
import * as XmppMetrics from "./xmppMetrics.js"
import * as XmppSession from "./xmppSession.js"

/** What an account's connection needs. */
export interface AccountSettings extends XmppSession.SessionSettings {
  /** the first delay after a failed attempt; it doubles per failure */
  readonly reconnectBase: Duration.Duration
  /** the longest delay between attempts */
  readonly reconnectMax: Duration.Duration
  /** how long a send waits for a session before failing as retryable */
  readonly connectWait: Duration.Duration
}

/** An account's connection, as the channel uses it. */
export interface AccountConnection {
  /** sends on the current session (waiting up to `connectWait` for one) and waits for the server's ack */
  readonly send: (stanza: Element) => Effect.Effect<void, SendError>
}

/** A session that was up and is gone. */
class ConnectionLost extends Data.TaggedError("ConnectionLost")<{ readonly message: string }> {}

/**
 * The reconnect policy: exponential from `base`, at most `max` apart, ±20 % jitter, reset after a lost connection
 * (which had been up: the next attempt comes after `base` again, not after the last failure's long delay).
 */
export const reconnectSchedule = (
  base: Duration.Duration,
  max: Duration.Duration
): Schedule.Schedule<unknown, XmppSession.ConnectFailed | ConnectionLost> =>
  Schedule.exponential(base).pipe(
    Schedule.union(Schedule.spaced(max)),
    Schedule.jittered,
    Schedule.intersect(Schedule.identity<XmppSession.ConnectFailed | ConnectionLost>()),
    Schedule.resetWhen(([, error]) => error._tag === "ConnectionLost")
  )

/** Starts the account's connection fiber in the current scope. */
export const make = (settings: AccountSettings): Effect.Effect<AccountConnection, never, Scope.Scope> =>
  Effect.gen(function*() {
    const current = yield* SubscriptionRef.make(Option.none<XmppSession.Session>())
    const problem = yield* Ref.make("not connected yet")
    const connection = Effect.scoped(Effect.gen(function*() {
      const session = yield* XmppSession.open(settings)
      yield* SubscriptionRef.set(current, Option.some(session))
      yield* Metric.increment(XmppMetrics.connections(settings.account))
      yield* Effect.logInfo(`XMPP connected as ${session.jid}, stream management on`)
      const reason = yield* session.lost
      yield* SubscriptionRef.set(current, Option.none())
      yield* Metric.increment(XmppMetrics.disconnects(settings.account))
      return yield* new ConnectionLost({ message: reason })
    }))
    const supervised = connection.pipe(
      Effect.ensuring(SubscriptionRef.set(current, Option.none())),
      Effect.tapError((error) =>
        Effect.zipRight(
          Ref.set(problem, error.message),
          error._tag === "ConnectionLost"
            ? Effect.logWarning(`XMPP ${error.message}; reconnecting`)
            : Effect.zipRight(
              Metric.increment(XmppMetrics.connectFailures(settings.account)),
              Effect.logWarning(`XMPP connection to ${settings.service} failed: ${error.message}; retrying`)
            )
        )
      ),
      Effect.retry(reconnectSchedule(settings.reconnectBase, settings.reconnectMax)),
      Effect.annotateLogs({ xmpp_account: settings.account, xmpp_user: `${settings.username}@${settings.domain}` })
    )
    yield* Effect.forkScoped(supervised)

    const notConnected = Effect.flatMap(Ref.get(problem), (reason) =>
      Effect.fail(
        new SendError({
          message: `XMPP: not connected to ${settings.service} as ${settings.username}@${settings.domain} (${reason})`,
          retryable: true
        })
      ))
    // `changes` starts with the current value, so a send with a session up does not wait
    const session = current.changes.pipe(
      Stream.filterMap(identity),
      Stream.runHead,
      Effect.timeoutOption(settings.connectWait),
      Effect.flatMap((found) =>
        Option.isSome(found) && Option.isSome(found.value) ? Effect.succeed(found.value.value) : notConnected
      )
    )
    return { send: (stanza) => Effect.flatMap(session, (s) => s.send(stanza)) }
  })
