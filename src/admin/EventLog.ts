/**
 * The board's memory of this process's outbox events (`Outbox.events`), when it runs inside the gateway: the last
 * `capacity` events (up to half as many more between trims), numbered and dated, for the live feed (Server-Sent Events, resumed from `Last-Event-ID`) and for
 * an entry's timeline. Nothing is stored: a restart starts an empty log, and a board beside the gateway has none.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import type { OutboxEvent } from "../Outbox.js"

/** One recorded event. */
export interface LoggedEvent {
  readonly seq: number
  readonly at: number
  readonly type: OutboxEvent["_tag"]
  readonly entryId: string
  readonly channel: string | null
  readonly detail: string | null
}

/** The log. */
export interface EventLog {
  /** events of one entry, oldest first */
  readonly ofEntry: (entryId: string) => ReadonlyArray<LoggedEvent>
  /** the number of the last event recorded (0: none yet) */
  readonly latest: () => number
  /** events after `seq` still held, then every new one as it comes */
  readonly follow: (afterSeq: number) => Stream.Stream<LoggedEvent>
}

/** What an event says beyond its type and entry, in one line. */
const describe = (event: OutboxEvent): { readonly channel: string | null; readonly detail: string | null } => {
  switch (event._tag) {
    case "enqueued":
    case "delivered":
      return { channel: event.channel, detail: null }
    case "sent":
      return { channel: event.channel, detail: `${event.parts} part${event.parts === 1 ? "" : "s"} accepted` }
    case "retry_scheduled":
      return {
        channel: null,
        detail: `attempt ${event.attemptCount} failed, retry at ${
          new Date(event.retryAt).toISOString()
        }: ${event.error}`
      }
    case "terminal":
      return { channel: null, detail: `${event.reason}: ${event.error}` }
    case "expired":
      return { channel: null, detail: null }
    case "throttled":
      return { channel: event.channel, detail: `waiting ${event.waitMs} ms for a rate-limit token` }
    case "rate_limited":
      return {
        channel: event.channel,
        detail: `the channel asked to wait ${event.retryAfterMs} ms (429): paused until ${
          new Date(event.until).toISOString()
        }`
      }
  }
}

/** Records `events` from now on, in `scope`, keeping the last `capacity`. */
export const make = (
  events: Stream.Stream<OutboxEvent>,
  capacity: number
): Effect.Effect<EventLog, never, Scope.Scope> =>
  Effect.gen(function*() {
    const ring: Array<LoggedEvent> = []
    let seq = 0
    const live = yield* PubSub.sliding<LoggedEvent>(capacity)
    yield* Effect.addFinalizer(() => PubSub.shutdown(live))

    const record = (event: OutboxEvent) =>
      Effect.flatMap(Clock.currentTimeMillis, (at) => {
        const logged: LoggedEvent = { seq: ++seq, at, type: event._tag, entryId: event.entryId, ...describe(event) }
        ring.push(logged)
        // trimmed in steps of half the capacity: a busy gateway's events cost O(1) each, not a shift of the whole log
        if (ring.length >= capacity * 1.5) ring.splice(0, ring.length - capacity)
        return PubSub.publish(live, logged)
      })
    yield* Effect.forkScoped(Stream.runForEach(events, record))

    return {
      ofEntry: (entryId) => ring.filter((e) => e.entryId === entryId),
      latest: () => seq,
      follow: (afterSeq) =>
        Stream.unwrapScoped(Effect.gen(function*() {
          // subscribed before the backlog is read, so nothing falls between the two
          const subscription = yield* PubSub.subscribe(live)
          const backlog = ring.filter((e) => e.seq > afterSeq)
          const last = backlog.length > 0 ? backlog[backlog.length - 1]!.seq : afterSeq
          return Stream.concat(
            Stream.fromIterable(backlog),
            Stream.fromQueue(subscription).pipe(Stream.filter((e) => e.seq > last))
          )
        }))
    }
  })
