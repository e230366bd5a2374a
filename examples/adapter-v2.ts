/**
 * A v2 channel adapter: it declares `outboundContract: "v2"` and takes each reply payload whole (text, media and
 * channel-specific `channelData` together), chunking itself. `reconcile` is optional: when the API can look a
 * message up by its idempotency key, a reply found in flight after a crash is not sent twice.
 */
import type { ChannelAdapter } from "../src/index.js"

/** An adapter for a chat API with `POST /replies` (whole payloads) and `GET /replies/:key` (lookup). */
export const richChatAdapter = (options: { readonly baseUrl: string }): ChannelAdapter.AdapterV2 => ({
  outboundContract: "v2",
  sendFinal: async (ctx, { signal }) => {
    const key = `${ctx.idempotencyKey}/${ctx.partIndex}`
    const response = await fetch(new URL("/replies", options.baseUrl), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        key,
        chat: ctx.to,
        thread: ctx.threadId,
        replyTo: ctx.replyToId,
        text: ctx.payload.text,
        media: ctx.payload.mediaUrls,
        extra: ctx.payload.channelData
      }),
      signal
    })
    if (response.status === 409) return { messageId: key } // the API had it already: delivered
    if (!response.ok) {
      throw Object.assign(new Error(`replies API ${response.status}`), {
        status: response.status,
        headers: response.headers
      })
    }
    return { messageId: ((await response.json()) as { readonly id: string }).id }
  },
  reconcile: async (ctx, { signal }) => {
    const response = await fetch(
      new URL(`/replies/${encodeURIComponent(`${ctx.idempotencyKey}/${ctx.partIndex}`)}`, options.baseUrl),
      { signal }
    )
    return response.status === 200 ? "sent" : response.status === 404 ? "not_sent" : "unknown"
  }
})
