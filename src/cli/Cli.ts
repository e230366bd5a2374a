/**
 * The `effect-outbox` command line: the admin commands and the demo under one root, built with `@effect/cli`.
 * `run(argv)` never fails: it prints a one-line error to stderr and returns the process exit code —
 * 0 ok, 1 a runtime error (missing database, store error, unknown entry…), 2 wrong arguments (with the usage).
 */
import * as CliConfig from "@effect/cli/CliConfig"
import * as Command from "@effect/cli/Command"
import type * as HelpDocSpan from "@effect/cli/HelpDoc/Span"
import * as Usage from "@effect/cli/Usage"
import * as ValidationError from "@effect/cli/ValidationError"
import * as FileSystem from "@effect/platform/FileSystem"
import type { Teardown } from "@effect/platform/Runtime"
import * as Cause from "effect/Cause"
import * as ConfigError from "effect/ConfigError"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Schema from "effect/Schema"
import { fileURLToPath } from "node:url"
import * as Admin from "./Admin.js"
import * as Demo from "./Demo.js"
import * as Logging from "./Logging.js"
import * as Styles from "./Styles.js"
import { UsageError } from "./UsageError.js"

/** The name the package installs the CLI under. */
export const NAME = "effect-outbox"

/** Exit codes. */
export const ExitCode = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const

const root = Command.make(NAME, {}, () => Effect.fail(new UsageError({ message: "missing command" }))).pipe(
  Command.withDescription("durable outbound delivery for chat gateways: inspect and repair an outbox, or run the demo"),
  Command.withSubcommands([...Admin.commands, Demo.command])
)

const spanText = (span: HelpDocSpan.Span): string => {
  switch (span._tag) {
    case "Text":
    case "URI":
      return span.value
    case "Highlight":
    case "Strong":
    case "Weak":
      return spanText(span.value)
    case "Sequence":
      return spanText(span.left) + spanText(span.right)
  }
}

/** The synopsis of every command, derived from the command definitions so it cannot drift from them. */
export const usage: string = [
  `usage: ${NAME} <command> [options]`,
  "",
  ...[...Admin.usages, Command.getUsage(Demo.command)].flatMap((synopsis) =>
    Usage.enumerate(synopsis, CliConfig.defaultConfig).map((span) => `  ${NAME} ${spanText(span)}`)
  ),
  "",
  `Every command takes --db <file> (default ./outbox.db). Run \`${NAME} <command> --help\` for details.`
].join("\n")

const describe = (error: unknown): string => {
  if (ConfigError.isConfigError(error)) return `invalid OUTBOX_* configuration: ${String(error)}`
  const tagged = error as { readonly _tag?: unknown; readonly message?: unknown; readonly operation?: unknown }
  if (tagged._tag === "StoreError") return `store error (${String(tagged.operation)}): ${String(tagged.message)}`
  return typeof tagged.message === "string" && tagged.message !== "" ? tagged.message : String(error)
}

const readVersion = Effect.gen(function*() {
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(fileURLToPath(new URL("../../package.json", import.meta.url)))
  return yield* Schema.decodeUnknown(Schema.parseJson(Schema.Struct({ version: Schema.String })))(text)
}).pipe(
  Effect.map((pkg) => pkg.version),
  Effect.catchAll((e) => Effect.as(Effect.logDebug(`cannot read the package version: ${e.message}`), "unknown"))
)

/**
 * Runs the command line `argv` (as `process.argv`: runtime, script, arguments) and returns the exit code; help and
 * errors are styled only on the streams `styles` allows (by default, those that are terminals).
 */
export const run = (argv: ReadonlyArray<string>, styles: Styles.Styles = Styles.fromProcess()) =>
  Effect.gen(function*() {
    const version = yield* readVersion
    yield* Command.run(root, { name: NAME, version, executable: NAME })(argv)
    return ExitCode.ok as number
  }).pipe(
    Effect.catchAll((error) => {
      if (ValidationError.isValidationError(error)) {
        // @effect/cli printed what is wrong already; add the synopsis
        return Effect.as(Console.error(`\n${usage}`), ExitCode.usage)
      }
      if (error instanceof UsageError) return Effect.as(Console.error(`${NAME}: ${error.message}\n\n${usage}`), ExitCode.usage)
      return Effect.as(Console.error(`${NAME}: ${describe(error)}`), ExitCode.failure)
    }),
    Effect.catchAllDefect((defect) => Effect.as(Console.error(`${NAME}: unexpected error: ${describe(defect)}`), ExitCode.failure)),
    Styles.within(styles),
    Effect.provide(Logging.layer())
  )

/** The process exit code of `run`'s exit (interrupted by a signal: 130). */
export const teardown: Teardown = (exit, onExit) =>
  onExit(
    Exit.isSuccess(exit) && typeof exit.value === "number"
      ? exit.value
      : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
      ? ExitCode.interrupted
      : ExitCode.failure
  )
