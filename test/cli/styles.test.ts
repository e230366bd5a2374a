import { describe, expect, it } from "@effect/vitest"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Styles from "../../src/cli/Styles.js"

/** A console that records what each method was given. */
const recording = () => {
  const written: Array<[string, ReadonlyArray<unknown>]> = []
  const record = (method: string) => (...args: ReadonlyArray<unknown>) =>
    Effect.sync(() => void written.push([method, args]))
  return Effect.map(Console.consoleWith(Effect.succeed), (base): [Console.Console, typeof written] => [
    {
      ...base,
      log: record("log"),
      info: record("info"),
      debug: record("debug"),
      warn: record("warn"),
      error: record("error")
    },
    written
  ])
}

const styled = "\x1b[0;1mUSAGE\x1b[0m and \x1b[0;37;1mbold\x1b[0;1m\x1b[0m"

const writeAll = Effect.all([
  Console.log(styled, 42),
  Console.info(styled),
  Console.debug(styled),
  Console.warn(styled),
  Console.error(styled)
])

describe("cli Styles", () => {
  it("stripStyles removes colour and weight codes and nothing else", () => {
    expect(Styles.stripStyles(styled)).toBe("USAGE and bold")
    expect(Styles.stripStyles("plain [0;1m text")).toBe("plain [0;1m text")
  })

  it.effect("a stream that may not show styles gets plain text; the other keeps them; non-strings are untouched", () =>
    Effect.gen(function*() {
      const [console, written] = yield* recording()
      yield* writeAll.pipe(Styles.within({ stdout: false, stderr: true }), Console.withConsole(console))
      expect(written).toEqual([
        ["log", ["USAGE and bold", 42]],
        ["info", ["USAGE and bold"]],
        ["debug", ["USAGE and bold"]],
        ["warn", [styled]],
        ["error", [styled]]
      ])
      written.length = 0
      yield* writeAll.pipe(Styles.within({ stdout: true, stderr: false }), Console.withConsole(console))
      expect(written.map(([method, args]) => [method, args[0]])).toEqual([
        ["log", styled],
        ["info", styled],
        ["debug", styled],
        ["warn", "USAGE and bold"],
        ["error", "USAGE and bold"]
      ])
    }))

  it.effect("with both streams on terminals the console is left as it is", () =>
    Effect.gen(function*() {
      const [console, written] = yield* recording()
      yield* writeAll.pipe(Styles.within({ stdout: true, stderr: true }), Console.withConsole(console))
      expect(written.every(([, args]) => args[0] === styled)).toBe(true)
    }))
})
