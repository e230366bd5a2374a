/**
 * Terminal styles only where a terminal shows them. @effect/cli writes its help and its argument errors with ANSI
 * colours and weights; piped into a file or another program, or with `NO_COLOR` set, they are escape-code noise.
 */
import * as Console from "effect/Console"
import type * as Effect from "effect/Effect"

// SGR sequences (colours, weights), the only escape sequences @effect/cli writes
// eslint-disable-next-line no-control-regex -- the escape character is what this matches
const STYLE = /\x1b\[[0-9;]*m/g

/** `text` without its colour and weight codes. */
export const stripStyles = (text: string): string => text.replace(STYLE, "")

/** Which of the two output streams may show styles. */
export interface Styles {
  readonly stdout: boolean
  readonly stderr: boolean
}

/** The styles a Node process may show: on a stream that is a terminal, unless `NO_COLOR` is set (no-color.org). */
export const fromProcess = (): Styles => {
  const off = process.env["NO_COLOR"] !== undefined && process.env["NO_COLOR"] !== ""
  return { stdout: !off && process.stdout.isTTY === true, stderr: !off && process.stderr.isTTY === true }
}

const plain = (args: ReadonlyArray<unknown>): ReadonlyArray<unknown> =>
  args.map((arg) => (typeof arg === "string" ? stripStyles(arg) : arg))

/** `effect` with the styles removed from what its console writes to a stream that may not show them. */
export const within = (styles: Styles) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  styles.stdout && styles.stderr ? effect : Console.consoleWith((base) => {
    const out = (args: ReadonlyArray<unknown>) => (styles.stdout ? args : plain(args))
    const err = (args: ReadonlyArray<unknown>) => (styles.stderr ? args : plain(args))
    // Node's console writes log, info and debug to stdout, warn and error to stderr
    return Console.withConsole(effect, {
      ...base,
      log: (...args) => base.log(...out(args)),
      info: (...args) => base.info(...out(args)),
      debug: (...args) => base.debug(...out(args)),
      warn: (...args) => base.warn(...err(args)),
      error: (...args) => base.error(...err(args))
    })
  })
