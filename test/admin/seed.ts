/**
 * A board's worth of rows relative to `now`: an hour of deliveries on three channels, some retrying, some failed for
 * good with their errors, an expired one, a backlog, a multi-part best-effort reply half delivered, and a reply whose
 * text is markup (a `<script>` and an `onerror` image) that must show as text.
 */
import type { OutboxEntry } from "../../src/Delivery.js"
import { entryId } from "../support/entries.js"
import { rowIn } from "./support.js"

/** The text of the hostile reply: if the page ever parsed it as markup, `window.__pwned` would be set. */
export const HOSTILE = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">Hi <b>there</b>"

const CHANNELS = ["telegram", "slack", "webhook"] as const
const ERRORS = [
  "HTTP 403: Forbidden: bot was blocked by the user",
  "chat not found",
  "HTTP 400: Bad Request: message text is empty"
]

/** The rows; ids say what each is for (`FAILED-1`, `HOSTILE`, `PARTS`…). */
export const seedRows = (now: number): ReadonlyArray<OutboxEntry> => {
  const rows: Array<OutboxEntry> = []
  // an hour of traffic: a few deliveries a minute, a failure now and then
  for (let i = 0; i < 150; i++) {
    const at = now - 59 * 60_000 + Math.floor((i * 59 * 60_000) / 150) + (i % 7) * 1_000
    const channel = CHANNELS[i % 3]!
    const state = i % 23 === 5 ? "failed_retryable" : "delivered"
    rows.push(rowIn(state, at, {
      id: entryId(`D${String(i).padStart(4, "0")}`),
      channel,
      to: `chat-${100 + (i % 17)}`,
      enqueuedAt: at - 400 - (i % 5) * 150,
      payloads: [{
        text: `Here is the answer to question ${i}: the train leaves at ${8 + (i % 10)}:15 from platform 2.`
      }],
      lastError: state === "failed_retryable" ? "HTTP 502 Bad Gateway (telegram api)" : null
    }))
  }
  ERRORS.forEach((error, i) => {
    rows.push(rowIn("failed_terminal", now - (40 - i * 9) * 60_000, {
      id: entryId(`FAILED-${i + 1}`),
      channel: CHANNELS[i]!,
      to: `chat-${200 + i}`,
      payloads: [{ text: `Your booking ${4711 + i} is confirmed. See you on Friday!` }],
      lastError: error,
      attemptCount: i === 0 ? 1 : 5,
      terminalReason: i === 0 ? "permanent_error" : "max_attempts"
    }))
  })
  rows.push(rowIn("expired", now - 33 * 60_000, {
    id: entryId("EXPIRED-1"),
    channel: "slack",
    to: "C0123",
    threadId: "1711.22",
    payloads: [{ text: "Build 1432 passed." }]
  }))
  rows.push(rowIn("failed_terminal", now - 12 * 60_000, {
    id: entryId("HOSTILE"),
    channel: "webhook",
    to: "chat-666",
    payloads: [{ text: HOSTILE }],
    lastError: "<img src=x onerror=\"window.__pwned = 3\"> rejected by the endpoint",
    terminalReason: "permanent_error"
  }))
  rows.push(rowIn("failed_retryable", now - 3 * 60_000, {
    id: entryId("PARTS"),
    channel: "telegram",
    to: "chat-42",
    bestEffort: true,
    payloads: [
      { text: "Step 1: open the app." },
      { text: "Step 2: tap Settings.", mediaUrls: ["https://example.test/settings.png"] },
      { text: "Step 3: choose Notifications." }
    ],
    partsDelivered: 1,
    attemptCount: 2,
    lastError: "part 1 (media): HTTP 429 Too Many Requests, retry after 30 s"
  }))
  for (let i = 0; i < 6; i++) {
    rows.push(rowIn("queued", now - (5 - i) * 20_000, {
      id: entryId(`QUEUED-${i + 1}`),
      channel: "telegram",
      to: `chat-${300 + i}`,
      enqueuedAt: now - (5 - i) * 20_000,
      payloads: [{ text: `Reminder ${i + 1}: your appointment is tomorrow at 10:00.` }]
    }))
  }
  return rows
}
