/**
 * The outbox's event stream: a sliding `PubSub` that publishes nothing while nobody listens (most gateways never
 * do: a publish per event cost a delivery ~5 %), and the announcements of the delivery program and the rate limiter.
 */
import * as Effect from "effect/Effect"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { OutboxEvent } from "../OutboxEvent.js"
import type { Events } from "./DeliverEntry.js"
import type { Events as LimiterEvents } from "./RateLimiter.js"

/** The events kept for a slow subscriber before the oldest are dropped. */
const EVENT_BUFFER = 10_000

/** One outbox's event stream. */
export interface EventHub {
  /** Publishes `event` when someone listens (checked when it runs). */
  readonly emit: (event: OutboxEvent) => Effect.Effect<void>
  /** `emit` for the delivery path, checked when called: the event is built only when someone listens. */
  readonly announce: (event: () => OutboxEvent) => Effect.Effect<void>
  /** Subscribes at once; the subscription lasts as long as the scope. */
  readonly subscribe: Effect.Effect<Stream.Stream<OutboxEvent>, never, Scope.Scope>
}

/** Makes an event hub. */
export const make: Effect.Effect<EventHub> = Effect.map(PubSub.sliding<OutboxEvent>(EVENT_BUFFER), (events) => {
  let subscribers = 0
  return {
    emit: (event) =>
      Effect.suspend(() => subscribers === 0 ? Effect.void : Effect.asVoid(PubSub.publish(events, event))),
    announce: (event) => subscribers === 0 ? Effect.void : Effect.asVoid(PubSub.publish(events, event())),
    subscribe: Effect.zipRight(
      Effect.acquireRelease(Effect.sync(() => subscribers++), () => Effect.sync(() => subscribers--)),
      Effect.map(PubSub.subscribe(events), (dequeue) => Stream.fromQueue(dequeue))
    )
  }
})

/** The delivery program's announcements, as events. */
export const deliveryEvents = ({ announce, emit }: EventHub): Events => ({
  sent: (entry, parts) => announce(() => OutboxEvent.sent({ entryId: entry.id, channel: entry.channel, parts })),
  delivered: (entry) => announce(() => OutboxEvent.delivered({ entryId: entry.id, channel: entry.channel })),
  retryScheduled: (entry, error) =>
    emit(
      OutboxEvent.retry_scheduled({
        entryId: entry.id,
        attemptCount: entry.attemptCount,
        retryAt: entry.nextAttemptAt ?? 0,
        error
      })
    ),
  terminal: (entry, reason, error) => emit(OutboxEvent.terminal({ entryId: entry.id, reason, error })),
  expired: (entry) => emit(OutboxEvent.expired({ entryId: entry.id }))
})

/** The rate limiter's announcements, as events. */
export const limiterEvents = ({ emit }: EventHub): LimiterEvents => ({
  throttled: (entry, waitMs) => emit(OutboxEvent.throttled({ entryId: entry.id, channel: entry.channel, waitMs })),
  rateLimited: (entry, retryAfterMs, until) =>
    emit(OutboxEvent.rate_limited({
      entryId: entry.id,
      channel: entry.channel,
      accountId: entry.accountId,
      retryAfterMs,
      until
    }))
})
