/**
 * The part of `@xmpp/client` 0.14 (which ships no types) that the XMPP channel uses, typed from its source
 * (node_modules/@xmpp/client/index.js, @xmpp/connection, @xmpp/stream-management). Only the internal modules import
 * it, so nothing in the package's public types depends on it.
 */
declare module "@xmpp/client" {
  import type { EventEmitter } from "node:events"

  /** An ltx element: a stanza or a nonza. */
  export interface Element {
    readonly name: string
    readonly attrs: Record<string, string | undefined>
    is(name: string, xmlns?: string): boolean
    getChild(name: string, xmlns?: string): Element | undefined
    getChildText(name: string, xmlns?: string): string | null
    toString(): string
  }

  /** `xmpp.streamManagement` (XEP-0198): emits "ack" and "fail" with the stanza object that was sent. */
  export interface StreamManagement extends EventEmitter {
    readonly enabled: boolean
    /** ms without any incoming data after an `<r/>` before the connection is dropped */
    timeout: number
    /** ms between `<r/>` requests on an idle stream */
    requestAckInterval: number
    /** ms after the last outgoing stanza before an `<r/>` is sent */
    requestAckDebounce: number
  }

  /** The client: a `Connection` with its plugins. */
  export interface Client extends EventEmitter {
    readonly status: string
    readonly jid: { toString(): string } | null
    readonly reconnect: { stop(): void }
    readonly streamManagement: StreamManagement
    start(): Promise<unknown>
    stop(): Promise<unknown>
    /** writes the element; an own property replaces the prototype's for every caller, the plugins included */
    send(element: Element): Promise<void>
    isSecure(): boolean
  }

  /** Runs SASL with these credentials and mechanism. */
  export type Authenticate = (
    credentials: { readonly username: string; readonly password: string },
    mechanism: string | undefined
  ) => Promise<void>

  /** What `client` takes (credentials as a function, so the client object never holds the password). */
  export interface ClientOptions {
    readonly service: string
    readonly domain: string
    readonly resource?: string
    readonly credentials: (
      authenticate: Authenticate,
      mechanisms: ReadonlyArray<string>,
      fast: unknown,
      entity: Client
    ) => Promise<void>
  }

  export function client(options: ClientOptions): Client

  export function xml(
    name: string,
    attrs?: Readonly<Record<string, string | undefined>> | null,
    ...children: ReadonlyArray<Element | string>
  ): Element
}
