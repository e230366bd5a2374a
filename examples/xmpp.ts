/**
 * Registering the XMPP channel (`npm install @xmpp/client@0.14`): one connection per account, opened with the layer
 * and reconnected with backoff; a reply counts as sent when the server acknowledges it (XEP-0198).
 */
import { Effect, Layer } from "effect"
import * as XmppChannel from "../src/channels/Xmpp.js"
import { ChannelRegistry } from "../src/index.js"

/** The "xmpp" channel, its account from XMPP_SERVICE, XMPP_DOMAIN, XMPP_USERNAME and XMPP_PASSWORD. */
export const XmppChannels = Layer.unwrapScoped(Effect.gen(function*() {
  const xmpp = yield* XmppChannel.make(yield* XmppChannel.config())
  return ChannelRegistry.layer({ xmpp })
}))
