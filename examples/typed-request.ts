/**
 * A typed request: `Outbox.DeliverInput` is the plain object `deliver` and `enqueue` take, so the gateway's own
 * code that turns an agent's answer into a reply is checked by the compiler (a misspelt field, a wrong `kind`).
 * The outbox still validates it at run time: a bad request fails with `InvalidRequest` naming the field, and
 * nothing is stored.
 */
import { Effect } from "effect"
import { Outbox } from "../src/index.js"

/** The gateway's own view of an agent's answer. */
export interface AgentAnswer {
  readonly turnId: string
  readonly chatId: string
  readonly threadId?: string
  readonly inReplyTo?: string
  readonly text: string
  readonly attachments: ReadonlyArray<string>
}

/** One reply, typed: optional fields are left out rather than set to `undefined`. */
export const toRequest = (answer: AgentAnswer): Outbox.DeliverInput => ({
  channel: "chat",
  to: answer.chatId,
  ...(answer.threadId !== undefined ? { threadId: answer.threadId } : {}),
  ...(answer.inReplyTo !== undefined ? { replyToId: answer.inReplyTo } : {}),
  payloads: [{ text: answer.text, ...(answer.attachments.length > 0 ? { mediaUrls: answer.attachments } : {}) }],
  kind: "final", // "tool" and "block" (progress) replies are sent live only, never replayed after a crash
  bestEffort: false, // the default: the first failing part stops the reply, and the retry resumes there
  idempotencyKey: answer.turnId, // a second deliver of the same turn sends nothing (`Duplicate`)
  metadata: { source: "agent", turn: answer.turnId } // stored with the row; JSON values only
})

/** Delivers an answer; a request the outbox refuses is logged and dropped (nothing was stored). */
export const deliverAnswer = (answer: AgentAnswer) =>
  Effect.gen(function*() {
    const outbox = yield* Outbox.Outbox
    return yield* outbox.deliver(toRequest(answer))
  }).pipe(
    Effect.tapErrorTag("InvalidRequest", (e) => Effect.logError(`answer ${answer.turnId} refused: ${e.message}`))
  )
