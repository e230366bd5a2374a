/**
 * A v1 channel adapter, the way most plugins are written: async functions. The outbox chunks the text (one
 * `sendText` per chunk) and fans media out (one `sendMedia` per URL, the caption on the first).
 * A thrown error is a failed send; its HTTP status and Retry-After header classify it.
 */
import type { ChannelAdapter } from "../src/index.js"

/** An adapter for a chat API that takes `POST /messages { chat, thread?, text?, mediaUrl? }` and answers `{ id }`. */
export const chatApiAdapter = (
  options: { readonly baseUrl: string; readonly token: string }
): ChannelAdapter.AdapterV1 => {
  const post = async (body: Record<string, unknown>, signal: AbortSignal) => {
    const response = await fetch(new URL("/messages", options.baseUrl), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${options.token}` },
      body: JSON.stringify(body),
      signal // aborted when the outbox's send timeout fires
    })
    if (!response.ok) {
      // 429 + Retry-After: wait that long (no attempt used up); 400/401/403/404: permanent; 5xx: retried
      throw Object.assign(new Error(`chat API ${response.status}: ${await response.text()}`), {
        status: response.status,
        headers: response.headers
      })
    }
    const { id } = (await response.json()) as { readonly id: string }
    return { messageId: id }
  }
  return {
    textChunkLimit: 2000,
    sendText: (ctx, { signal }) =>
      post(
        { chat: ctx.to, thread: ctx.threadId, text: ctx.text, dedupeKey: `${ctx.idempotencyKey}/${ctx.partIndex}` },
        signal
      ),
    sendMedia: (ctx, { signal }) =>
      post({
        chat: ctx.to,
        thread: ctx.threadId,
        text: ctx.text,
        mediaUrl: ctx.mediaUrl,
        dedupeKey: `${ctx.idempotencyKey}/${ctx.partIndex}`
      }, signal)
  }
}
