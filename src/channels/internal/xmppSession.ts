/**
 * One XMPP connection of one account, as a scoped resource: opened with stream management (XEP-0198) on, closed when
 * its scope closes. A message sent on it succeeds only when the server acknowledges it (`<a h=…/>`), not when it is
 * written to the socket; when the connection is lost, every message still waiting for its ack fails as retryable.
 *
 * Per-stanza acks come from `@xmpp/client`'s own counting (`streamManagement` emits "ack" with the stanza object
 * that was sent, in `h` order), which is exact while a stream lives. What the library does across a lost connection
 * does not fit an outbox, so it is not used: it keeps unacknowledged stanzas and resends them by itself when it
 * resumes the session, which can be after the outbox has timed the send out and scheduled its own retry (a
 * duplicate the outbox never hears of), and it fails them only once a resumption attempt fails, however long the
 * outage. So each connection is a fresh client with the library's reconnect stopped and no resumption asked for:
 * when it drops, its waiting sends fail at once and only the outbox decides what is sent again. Those written but not
 * acknowledged may have reached the server (it handled them, the ack was lost with the connection): they are counted
 * in `outbox_xmpp_unacknowledged_total`, and the stanza id (idempotency key and part) is the same on the retry.
 * Prosody, stopped gracefully, acks what it handled before it closes a session it cannot resume, so its restarts
 * lose no acks (measured: 20 of 20 stanzas acked on shutdown this way, 0 of 20 with resumption asked for).
 */
import { type Client, client as makeClient, type Element } from "@xmpp/client"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Redacted from "effect/Redacted"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import { SendError } from "../../DeliveryError.js"
import * as XmppMetrics from "./xmppMetrics.js"
import { NS_SM } from "./xmppStanza.js"

const NS_STREAMS = "http://etherx.jabber.org/streams"

/** What one connection needs. */
export interface SessionSettings {
  readonly account: string
  readonly service: string
  readonly domain: string
  readonly username: string
  readonly password: Redacted.Redacted<string>
  readonly resource: string | undefined
  /** from the first byte to stream management enabled */
  readonly connectTimeout: Duration.Duration
  /** how long the server may stay silent after an ack request before the connection counts as dead */
  readonly ackTimeout: Duration.Duration
  /** quiet time after the last message before acks are requested (batches the requests of a burst) */
  readonly ackRequestDelay: Duration.Duration
  /** ack requests on an idle connection, which find a dead one */
  readonly keepAlive: Duration.Duration
}

/** A connection attempt that did not end with a session ready to send. */
export class ConnectFailed extends Data.TaggedError("ConnectFailed")<{ readonly message: string }> {}

/** An open connection. */
export interface Session {
  /** the bound full JID */
  readonly jid: string
  /** writes the stanza and waits for the server's ack */
  readonly send: (stanza: Element) => Effect.Effect<void, SendError>
  /** completes with the reason once the connection is gone */
  readonly lost: Effect.Effect<string>
}

type Outcome = Data.TaggedEnum<{
  Acked: {}
  Unacknowledged: { readonly reason: string }
  NotSent: { readonly reason: string }
}>
const Outcome = Data.taggedEnum<Outcome>()

/** A message of an error, whatever was thrown; never the password (SASL errors carry only a condition). */
const describe = (error: unknown): string =>
  error instanceof Error ? `${error.name === "Error" ? "" : `${error.name}: `}${error.message}` : String(error)

/** Mutable state the library's callbacks update. */
interface Wires {
  ready: boolean
  closed: string | undefined
  stopping: boolean
  lastError: string | undefined
  features: Element | undefined
  readonly pending: Map<Element, (outcome: Outcome) => void>
}

/** The client for one connection, its library reconnect stopped and its stream management tuned. */
const createClient = (settings: SessionSettings): Client => {
  const { password, username } = settings
  const xmpp = makeClient({
    service: settings.service,
    domain: settings.domain,
    ...(settings.resource === undefined ? {} : { resource: settings.resource }),
    credentials: async (authenticate, mechanisms, _fast, entity) => {
      // the library's own rule: PLAIN (the password in clear) only over TLS
      const mechanism = entity.isSecure() ? mechanisms[0] : mechanisms.find((m) => m !== "PLAIN")
      // read here, at authentication: the client's options hold this function, never the password
      await authenticate({ username, password: Redacted.value(password) }, mechanism)
    }
  })
  xmpp.reconnect.stop()
  // The library asks for a resumable session (<enable resume="true"/>), which this channel never resumes. A resumable
  // session costs the server a dead session kept for minutes after each drop, and Prosody closes resumable sessions
  // on shutdown without the final <a h=…/> it sends to the others: the acks of what it handled last would be lost.
  const send = xmpp.send.bind(xmpp)
  xmpp.send = (element) => {
    if (element.is("enable", NS_SM)) element.attrs["resume"] = undefined
    return send(element)
  }
  xmpp.streamManagement.timeout = Duration.toMillis(settings.ackTimeout)
  xmpp.streamManagement.requestAckDebounce = Duration.toMillis(settings.ackRequestDelay)
  xmpp.streamManagement.requestAckInterval = Duration.toMillis(settings.keepAlive)
  return xmpp
}

/** Wires the client's events to the session's state; `ready` completes when stream management is on. */
const wire = (
  xmpp: Client,
  wires: Wires,
  ready: Deferred.Deferred<void, string>,
  lost: Deferred.Deferred<string>,
  report: (effect: Effect.Effect<void>) => void,
  account: string
) => {
  const drop = (reason: string) => {
    if (wires.closed !== undefined) return
    wires.closed = reason
    for (const settle of [...wires.pending.values()]) settle(Outcome.Unacknowledged({ reason }))
    Deferred.unsafeDone(ready, Effect.fail(reason))
    Deferred.unsafeDone(lost, Effect.succeed(reason))
  }
  // an EventEmitter without an "error" listener throws; every error is kept for the next failure's message
  xmpp.on("error", (error: unknown) => {
    wires.lastError = describe(error)
    if (wires.ready) report(Effect.logWarning(`XMPP client error: ${wires.lastError}`))
  })
  xmpp.on("status", (status: string) => {
    if (status !== "close" && status !== "disconnect" && status !== "offline") return
    drop(
      wires.stopping
        ? "the channel closed the connection"
        : `connection lost${wires.lastError === undefined ? "" : ` (${wires.lastError})`}`
    )
  })
  xmpp.on("nonza", (element: Element) => {
    if (element.is("features", NS_STREAMS)) wires.features = element
    else if (element.is("enabled", NS_SM)) Deferred.unsafeDone(ready, Effect.void)
    else if (element.is("failed", NS_SM) && !wires.ready) {
      Deferred.unsafeDone(ready, Effect.fail("the server refused to enable stream management (XEP-0198)"))
    }
  })
  xmpp.on("online", () => {
    // "online" comes with resource binding, before <enable/> is answered; bind2 (SASL2) enables it inline
    if (xmpp.streamManagement.enabled) Deferred.unsafeDone(ready, Effect.void)
    else if (wires.features !== undefined && wires.features.getChild("sm", NS_SM) === undefined) {
      Deferred.unsafeDone(ready, Effect.fail("the server does not offer stream management (XEP-0198)"))
    }
  })
  xmpp.streamManagement.on("ack", (stanza: Element) => wires.pending.get(stanza)?.(Outcome.Acked()))
  xmpp.streamManagement.on(
    "fail",
    (stanza: Element) =>
      wires.pending.get(stanza)?.(Outcome.Unacknowledged({ reason: "the server did not acknowledge it" }))
  )
  // the server acknowledged these and then could not deliver them: the row is delivered, so say so loudly
  xmpp.on("stanza", (stanza: Element) => {
    if (!stanza.is("message") || stanza.attrs["type"] !== "error") return
    const error = stanza.getChild("error")
    report(Effect.zipRight(
      Effect.logWarning(
        `XMPP message ${stanza.attrs["id"] ?? "(no id)"} to ${stanza.attrs["from"] ?? "?"} bounced after the server ` +
          `acknowledged it: ${error?.toString() ?? "no error element"}`
      ),
      Metric.increment(XmppMetrics.bounced(account))
    ))
  })
}

/** Writes `stanza` and waits for its ack; an interruption (the outbox's send timeout) stops the wait. */
const sendOn = (xmpp: Client, wires: Wires, account: string) => (stanza: Element): Effect.Effect<void, SendError> =>
  Effect.async<Outcome>((resume) => {
    if (wires.closed !== undefined) return resume(Effect.succeed(Outcome.NotSent({ reason: wires.closed })))
    const settle = (outcome: Outcome) => {
      if (wires.pending.delete(stanza)) resume(Effect.succeed(outcome))
    }
    wires.pending.set(stanza, settle)
    // a rejected write never reached the server whole: the socket was already closed or closing
    xmpp.send(stanza).catch((error: unknown) => settle(Outcome.NotSent({ reason: describe(error) })))
    return Effect.sync(() => {
      wires.pending.delete(stanza)
    })
  }).pipe(Effect.flatMap(Outcome.$match({
    Acked: () => Metric.increment(XmppMetrics.acked(account)),
    Unacknowledged: ({ reason }) =>
      Effect.zipRight(
        Metric.increment(XmppMetrics.unacknowledged(account)),
        Effect.fail(
          new SendError({
            message: `XMPP: the server did not acknowledge the message before the connection ended (${reason}); ` +
              `it may have been delivered, and a retry may duplicate it`,
            retryable: true
          })
        )
      ),
    NotSent: ({ reason }) =>
      Effect.fail(new SendError({ message: `XMPP: the message was not sent (${reason})`, retryable: true }))
  })))

/** Opens a connection and waits until stream management is on; closing the scope closes the connection. */
export const open = (settings: SessionSettings): Effect.Effect<Session, ConnectFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const report = (effect: Effect.Effect<void>) => void Runtime.runFork(runtime)(effect)
    const ready = yield* Deferred.make<void, string>()
    const lost = yield* Deferred.make<string>()
    const wires: Wires = {
      ready: false,
      closed: undefined,
      stopping: false,
      lastError: undefined,
      features: undefined,
      pending: new Map()
    }
    const xmpp = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const xmpp = createClient(settings)
        wire(xmpp, wires, ready, lost, report, settings.account)
        return xmpp
      }),
      (xmpp) =>
        Effect.sync(() => {
          wires.stopping = true
        }).pipe(
          // stop() sends the final ack and closes the stream, each step bounded by the library's 2 s timeout
          Effect.zipRight(Effect.promise(() => xmpp.stop().then(() => undefined, (error: unknown) => error))),
          Effect.timeout(Duration.seconds(10)),
          // the connection is going away either way: a stop that failed or hung is said, not raised
          Effect.flatMap((error) =>
            error === undefined
              ? Effect.void
              : Effect.logWarning(`the XMPP connection did not stop cleanly: ${String(error)}`)
          ),
          Effect.catchAll(() => Effect.logWarning("the XMPP connection did not stop within 10 s; it is dropped"))
        )
    )
    const failed = (reason: string) =>
      new ConnectFailed({
        message: wires.lastError === undefined || reason.includes(wires.lastError)
          ? reason
          : `${reason}: ${wires.lastError}`
      })
    const started = Effect.tryPromise({ try: () => xmpp.start(), catch: (error) => failed(describe(error)) })
    yield* Effect.raceFirst(
      Effect.zipRight(started, Effect.never),
      Effect.mapError(Deferred.await(ready), (reason) => failed(reason))
    ).pipe(
      Effect.timeoutFail({
        duration: settings.connectTimeout,
        onTimeout: () => failed(`no session within ${Duration.format(settings.connectTimeout)}`)
      })
    )
    wires.ready = true
    return {
      jid: xmpp.jid?.toString() ?? `${settings.username}@${settings.domain}`,
      send: sendOn(xmpp, wires, settings.account),
      lost: Deferred.await(lost)
    }
  })
