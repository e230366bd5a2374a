/**
 * The demo's simulated gateway: it walks each conversation's turns through `Outbox.deliver` and keeps what must
 * outlive a boot (as a chat platform's webhook retries would): the next turn of each conversation, the turns still
 * unanswered (submitted again after a crash, same idempotency key) and the outcome of each live delivery.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Outbox from "../Outbox.js"
import type { Conversation, Turn } from "./DemoScript.js"

/** What `deliver` answered for a turn, as the summary counts it. */
export type LiveOutcome =
  | "Delivered"
  | "Deferred"
  | "Duplicate"
  | "SendFailed"
  | "PartialDeliveryFailure"
  | "AckFailed"
  | "unexpected"

/** The gateway's state across both boots. */
export class Gateway {
  /** per conversation, the next turn to submit */
  readonly cursor: Array<number>
  /** turns whose `deliver` has not returned: after a crash the gateway submits them again, same idempotency key */
  readonly inProgress = new Set<number>()
  readonly everSubmitted = new Set<number>()
  resubmitted = 0
  readonly outcomes: Record<LiveOutcome, number> = {
    Delivered: 0,
    Deferred: 0,
    Duplicate: 0,
    SendFailed: 0,
    PartialDeliveryFailure: 0,
    AckFailed: 0,
    unexpected: 0
  }
  constructor(readonly conversations: ReadonlyArray<Conversation>) {
    this.cursor = conversations.map(() => 0)
  }
}

const submit = (
  gateway: Gateway,
  outbox: Outbox.OutboxShape,
  conversation: Conversation,
  turn: Turn,
  onSubmitted: (count: number) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    const again = yield* Effect.sync(() => {
      const again = gateway.inProgress.has(turn.n)
      if (again) gateway.resubmitted++
      gateway.inProgress.add(turn.n)
      gateway.everSubmitted.add(turn.n)
      return again
    })
    if (!again) yield* onSubmitted(gateway.everSubmitted.size)
    const outcome: LiveOutcome = yield* outbox.deliver(turn.request).pipe(
      Effect.map((o): LiveOutcome => o._tag),
      // the outbox recorded these already (retry scheduled or terminal); the gateway just moves on
      Effect.catchTags({
        SendFailed: () => Effect.succeed<LiveOutcome>("SendFailed"),
        PartialDeliveryFailure: () => Effect.succeed<LiveOutcome>("PartialDeliveryFailure"),
        AckFailed: () => Effect.succeed<LiveOutcome>("AckFailed")
      }),
      Effect.catchAll((error) =>
        Effect.as(
          Effect.logError(`deliver of turn ${turn.n} failed: ${error._tag}: ${error.message}`),
          "unexpected" as const
        )
      )
    )
    // one step: answered and moved past, so an interruption leaves the turn either unanswered or done
    yield* Effect.sync(() => {
      gateway.inProgress.delete(turn.n)
      gateway.outcomes[outcome]++
      gateway.cursor[conversation.index]!++
    })
  })

/** One conversation: turns in order, each after the user's "think time"; unanswered turns first after a restart. */
export const converse = (
  gateway: Gateway,
  outbox: Outbox.OutboxShape,
  conversation: Conversation,
  onSubmitted: (count: number) => Effect.Effect<void>
) =>
  Effect.gen(function*() {
    for (;;) {
      const turn = conversation.turns[gateway.cursor[conversation.index]!]
      if (turn === undefined) return
      if (!gateway.inProgress.has(turn.n)) yield* Effect.sleep(Duration.millis(turn.thinkMs))
      yield* submit(gateway, outbox, conversation, turn, onSubmitted)
    }
  })
