/**
 * Where the CLI's logs go: stderr, one line each, so stdout carries only the command's output (tables or JSON).
 * The library logs through Effect's logger; the CLI shows warnings and errors unless `--log-level` says otherwise.
 */
import * as Cause from "effect/Cause"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { inspect } from "node:util"

const text = (part: unknown): string =>
  typeof part === "string"
    ? part
    : Cause.isCause(part)
    ? Cause.pretty(part)
    : inspect(part, { depth: 4, breakLength: Infinity })

/** A log line as the CLI prints it: `effect-outbox: warning: message`. */
export const formatLine = (level: LogLevel.LogLevel, message: unknown): string =>
  `effect-outbox: ${level.label.toLowerCase()}: ${(Array.isArray(message) ? message : [message]).map(text).join(" ")}`

/** Writes each log line to stderr; `before` runs first (the demo uses it to clear its progress line). */
export const stderrLogger = (before: () => void = () => {}): Logger.Logger<unknown, void> =>
  Logger.make(({ logLevel, message }) => {
    before()
    process.stderr.write(`${formatLine(logLevel, message)}\n`)
  })

/** The logger the CLI installs in place of Effect's default (a command may replace it in turn). */
export const cliLogger: Logger.Logger<unknown, void> = stderrLogger()

/** The CLI's logging: stderr, warnings and errors. */
export const layer = (minimum: LogLevel.LogLevel = LogLevel.Warning): Layer.Layer<never> =>
  Layer.merge(Logger.replace(Logger.defaultLogger, cliLogger), Logger.minimumLogLevel(minimum))
