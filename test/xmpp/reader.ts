/**
 * The second, real XMPP client of the tests: it logs in on the reader's host (no stream management, see prosody.ts),
 * announces itself available (so messages to its bare JID reach it, and offline ones are flushed to it), reconnects
 * by itself after a server restart (the library's reconnect, 1 s), and records every `<message/>` that arrives, in
 * arrival order.
 */
import { client, type Element, xml } from "@xmpp/client"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"

/** One message as it arrived. */
export interface Arrival {
  readonly id: string
  readonly thread: string | null
  readonly body: string | null
  readonly from: string
  /** the stanza, for the tests that check its shape */
  readonly stanza: Element
}

/** A connected reader. */
export interface Reader {
  readonly jid: string
  readonly arrivals: () => ReadonlyArray<Arrival>
  /** waits until `holds(arrivals)`, failing with `what` after `within` */
  readonly until: (
    holds: (arrivals: ReadonlyArray<Arrival>) => boolean,
    within: Duration.DurationInput,
    what: string
  ) => Effect.Effect<void, Error>
  /** waits until `n` distinct message ids arrived */
  readonly awaitDistinct: (n: number, within: Duration.DurationInput) => Effect.Effect<void, Error>
  /** waits until the message `id` arrived `copies` times (default 1) */
  readonly awaitCopies: (id: string, copies: number, within: Duration.DurationInput) => Effect.Effect<void, Error>
}

/** Connects the reader; closing the scope disconnects it. */
export const start = (options: {
  readonly service: string
  readonly domain: string
  readonly username: string
  readonly password: string
}): Effect.Effect<Reader, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const arrivals: Array<Arrival> = []
    const arrived = yield* SubscriptionRef.make(0)
    const seen = new Set<string>()
    const xmpp = client({
      service: options.service,
      domain: options.domain,
      resource: "reader",
      credentials: async (authenticate, mechanisms) => {
        await authenticate(
          { username: options.username, password: options.password },
          mechanisms.find((m) => m !== "PLAIN")
        )
      }
    })
    xmpp.on("error", () => {}) // connection errors during an outage; the library reconnects
    xmpp.on("online", () => void xmpp.send(xml("presence")).catch(() => {}))
    xmpp.on("stanza", (stanza: Element) => {
      if (!stanza.is("message") || stanza.attrs["type"] === "error") return
      const id = stanza.attrs["id"] ?? ""
      arrivals.push({
        id,
        thread: stanza.getChildText("thread"),
        body: stanza.getChildText("body"),
        from: stanza.attrs["from"] ?? "",
        stanza
      })
      seen.add(id)
      Effect.runFork(SubscriptionRef.set(arrived, arrivals.length))
    })
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => xmpp.start(),
        catch: (error) => new Error(`the reader could not connect: ${String(error)}`)
      }),
      () => Effect.promise(() => xmpp.stop().catch(() => undefined))
    )
    const until = (
      holds: (arrivals: ReadonlyArray<Arrival>) => boolean,
      within: Duration.DurationInput,
      what: string
    ) =>
      arrived.changes.pipe(
        Stream.filter(() => holds(arrivals)),
        Stream.runHead,
        Effect.timeoutOption(within),
        Effect.flatMap((found) =>
          Option.isSome(found) ? Effect.void : Effect.fail(
            new Error(
              `the reader did not get ${what} within ${Duration.format(Duration.decode(within))} ` +
                `(${arrivals.length} messages, ${seen.size} distinct)`
            )
          )
        )
      )
    return {
      jid: `${options.username}@${options.domain}`,
      arrivals: () => arrivals,
      until,
      awaitDistinct: (n, within) => until(() => seen.size >= n, within, `${n} distinct messages`),
      awaitCopies: (id, copies, within) =>
        until((all) => all.filter((a) => a.id === id).length >= copies, within, `${copies} copies of ${id}`)
    }
  })
