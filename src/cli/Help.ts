/**
 * The CLI's own help and argument checks. @effect/cli's generated help lists its built-in options (`--wizard`,
 * `--completions`) and describes values generically ("A user-defined piece of text."), and its argument errors name
 * neither the flag nor the command; so the help text and the checks of flags and values are written here, from one
 * description of each command (`specs`). A test checks that these descriptions name exactly the options and
 * arguments the `@effect/cli` commands define, so the two cannot drift apart.
 */
import { entryStates } from "../Delivery.js"

/** The name the package installs the CLI under. */
export const NAME = "effect-outbox"

/** The kind of value an option takes: its placeholder, what a missing value is reported as needing, its check. */
export interface Value {
  readonly placeholder: string
  readonly needs: string
  readonly valid?: (raw: string) => boolean
}

export interface OptionSpec {
  readonly flag: string
  readonly value?: Value
  readonly text: string
}

export interface ArgSpec {
  readonly name: string
  readonly required: boolean
  readonly needs: string
  readonly text: string
}

export interface CommandSpec {
  readonly name: string
  readonly summary: string
  readonly options: ReadonlyArray<OptionSpec>
  readonly args: ReadonlyArray<ArgSpec>
  readonly notes?: ReadonlyArray<string>
}

const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER) => (raw: string) =>
  /^-?\d+$/.test(raw) && Number(raw) >= min && Number(raw) <= max

const file: Value = { placeholder: "file", needs: "a file path" }
const count: Value = { placeholder: "n", needs: "a whole number ≥ 1", valid: wholeNumber(1) }
const choice = (values: ReadonlyArray<string>, placeholder: string): Value => ({
  placeholder,
  needs: `one of ${values.join(", ")}`,
  valid: (raw) => values.includes(raw)
})

/** The largest `demo --messages`. */
export const MAX_MESSAGES = 5_000

/** The default `--db`. */
export const DEFAULT_DB = "./outbox.db"

/** The default `list --limit`. */
export const DEFAULT_LIMIT = 50

/** Where an admin command finds the outbox: `--db`, else `OUTBOX_DB`, else the default file. */
const DB_DEFAULT = `$OUTBOX_DB, else ${DEFAULT_DB}`
const database: Value = { placeholder: "db", needs: "a file path or a postgres:// URL" }
const db: OptionSpec = {
  flag: "db",
  value: database,
  text: `SQLite file or postgres:// URL (default ${DB_DEFAULT})`
}
const json: OptionSpec = { flag: "json", text: "print JSON instead of a table" }

export const specs: ReadonlyArray<CommandSpec> = [
  {
    name: "stats",
    summary: "counts by state and channel, and the age of the oldest pending entry",
    options: [db, json],
    args: []
  },
  {
    name: "list",
    summary: "entries, newest first, optionally of one state and channel",
    options: [
      db,
      json,
      { flag: "state", value: choice(entryStates, "state"), text: "only entries in this state (states below)" },
      {
        flag: "channel",
        value: { placeholder: "name", needs: "a channel name" },
        text: "only entries of this channel"
      },
      { flag: "limit", value: count, text: `how many entries, newest first (default ${DEFAULT_LIMIT})` }
    ],
    args: [],
    notes: [`states: ${entryStates.join(", ")}`]
  },
  {
    name: "show",
    summary: "every field of one entry",
    options: [db, json],
    args: [{ name: "id", required: true, needs: "an entry id", text: "the entry id (as `list` prints it)" }]
  },
  {
    name: "retry",
    summary: "requeue a failed_terminal or expired entry, or every entry of one state",
    options: [
      db,
      json,
      {
        flag: "state",
        value: choice(["failed_terminal", "expired"], "state"),
        text: "retry every entry in this state (failed_terminal or expired), not one id"
      },
      {
        flag: "channel",
        value: { placeholder: "name", needs: "a channel name" },
        text: "with --state: only this channel"
      }
    ],
    args: [{ name: "id", required: false, needs: "an entry id", text: "the entry to retry" }],
    notes: ["A retried entry gets its attempts reset and a fresh TTL; a running gateway sends it next pass."]
  },
  {
    name: "prune",
    summary: "delete finished entries past their retention",
    options: [db, json],
    args: [],
    notes: ["Retention comes from OUTBOX_DELIVERED_RETENTION and OUTBOX_TERMINAL_RETENTION, as in the gateway."]
  },
  {
    name: "import-legacy",
    summary: "import openclaw's file delivery queue once (ids kept, files left in place)",
    options: [
      db,
      json,
      { flag: "force", text: "import again although imported before, or into an empty file" }
    ],
    args: [{
      name: "dir",
      required: true,
      needs: "a directory",
      text: "openclaw's delivery-queue directory (with failed/)"
    }],
    notes: ["Creates the database if there is none."]
  },
  {
    name: "serve",
    summary: "the admin board (web page, JSON API, /metrics) over the database",
    options: [
      db,
      {
        flag: "port",
        value: { placeholder: "n", needs: "a port number", valid: wholeNumber(0, 65_535) },
        text: "the port (default 8484)"
      },
      {
        flag: "host",
        value: { placeholder: "ip", needs: "an address to listen on" },
        text: "the address to listen on (default 127.0.0.1; any other needs a token)"
      },
      { flag: "read-only", text: "open the database read-only; the board refuses retries and pruning" },
      {
        flag: "token",
        value: { placeholder: "token", needs: "a token of at least 16 characters" },
        text: "the token the board asks for (default: OUTBOX_ADMIN_TOKEN)"
      }
    ],
    args: [],
    notes: [
      "Open the printed address in a browser.",
      "Prefer OUTBOX_ADMIN_TOKEN to --token: it stays out of the process list.",
      "Beside a gateway the board has no live feed; OutboxAdmin.layer inside the gateway has."
    ]
  },
  {
    name: "demo",
    summary: "a gateway simulation with failing channels and a crash, on an SQLite file",
    options: [
      { flag: "db", value: file, text: `the file to run on (default ${DEFAULT_DB}; an earlier demo's is replaced)` },
      {
        flag: "messages",
        value: {
          placeholder: "n",
          needs: `a whole number from 1 to ${MAX_MESSAGES}`,
          valid: wholeNumber(1, MAX_MESSAGES)
        },
        text: "how many replies the simulated gateway sends (default 300)"
      },
      {
        flag: "seed",
        value: { placeholder: "n", needs: "a whole number", valid: wholeNumber(Number.MIN_SAFE_INTEGER) },
        text: "seed of the simulated traffic and failures (default 1)"
      },
      { flag: "json", text: "no progress line; print the summary as JSON" },
      { flag: "verbose", text: "show the outbox's own logs (info and up) on stderr" }
    ],
    args: [],
    notes: ["Any outbox the demo did not create is refused, never replaced."]
  }
]

/** The description of one command. */
export const spec = (name: string): CommandSpec => {
  const found = specs.find((s) => s.name === name)
  if (found === undefined) throw new Error(`no help for command ${name}`)
  return found
}

// ---------------------------------------------------------------------------------------------------------------
// rendering

const optionSynopsis = (
  o: OptionSpec
) => (o.value === undefined ? `--${o.flag}` : `--${o.flag} <${o.value.placeholder}>`)

/** `effect-outbox list [--db <file>] …`: one command's synopsis. */
export const synopsis = (s: CommandSpec): string =>
  [
    `${NAME} ${s.name}`,
    ...s.options.map((o) => `[${optionSynopsis(o)}]`),
    ...s.args.map((a) => (a.required ? `<${a.name}>` : `[<${a.name}>]`))
  ].join(" ")

const rows = (pairs: ReadonlyArray<readonly [string, string]>): Array<string> => {
  const width = Math.max(...pairs.map(([left]) => left.length))
  return pairs.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`)
}

/** What an argument error is followed by: the command's usage, or the list of commands. */
export const usageOf = (command: string | undefined): string =>
  command === undefined
    ? [
      `usage: ${NAME} <command> [options]`,
      "",
      ...rows(specs.map((s) => [s.name, s.summary])),
      "",
      `Run \`${NAME} <command> --help\` for details.`
    ]
      .join("\n")
    : `usage: ${synopsis(spec(command))}\n\nRun \`${NAME} ${command} --help\` for details.`

const GLOBAL: ReadonlyArray<readonly [string, string]> = [
  ["-h, --help", "show this help (after a command: that command's)"],
  ["--version", "print the version"],
  ["--log-level <level>", "show logs from this level up: debug, info, warning (default), error, none"]
]

/** `effect-outbox --help`. */
export const topHelp = (version: string, description: string): string =>
  [
    `${NAME} ${version}`,
    description,
    "",
    `usage: ${NAME} <command> [options]`,
    "",
    "commands:",
    ...rows(specs.map((s) => [s.name, s.summary])),
    "",
    "options:",
    ...rows(GLOBAL),
    "",
    "Every command takes --db, and all but serve take --json. For demo --db is an SQLite file; for the",
    "others an SQLite file or a postgres:// URL (the outbox in its search_path:",
    `?options=-c%20search_path%3Dname), default ${DB_DEFAULT}.`,
    `Run \`${NAME} <command> --help\` for its options.`
  ].join("\n")

/** `effect-outbox <command> --help`. */
export const commandHelp = (name: string): string => {
  const s = spec(name)
  return [
    `${NAME} ${s.name}`,
    s.summary,
    "",
    `usage: ${synopsis(s)}`,
    ...(s.args.length === 0 ? [] : ["", "arguments:", ...rows(s.args.map((a) => [`<${a.name}>`, a.text]))]),
    "",
    "options:",
    ...rows([...s.options.map((o) => [optionSynopsis(o), o.text] as const), ["-h, --help", "show this help"]]),
    ...(s.notes === undefined ? [] : ["", ...s.notes])
  ].join("\n")
}

// ---------------------------------------------------------------------------------------------------------------
// checking the command line

/** What the command line asks for before @effect/cli parses it. */
export type Request =
  | { readonly _tag: "Help"; readonly command: string | undefined }
  | { readonly _tag: "Run"; readonly command: string | undefined; readonly args: ReadonlyArray<string> }
  | { readonly _tag: "Invalid"; readonly command: string | undefined; readonly message: string }

// @effect/cli's own options, accepted anywhere but not listed (completions and the wizard are not advertised)
const BUILT_IN_FLAGS = new Set(["--version", "--wizard"])
const BUILT_IN_VALUED = new Set(["--log-level", "--completions"])

/**
 * Reads `args` (the arguments after the script) far enough to answer help itself and to report a wrong flag,
 * a missing or bad value, or a missing or extra argument with the flag and the value it got. What passes is
 * parsed by @effect/cli as before.
 */
export const check = (args: ReadonlyArray<string>): Request => {
  const commandIndex = args.findIndex((a, i) => !a.startsWith("-") && !BUILT_IN_VALUED.has(args[i - 1] ?? ""))
  const name = commandIndex === -1 ? undefined : args[commandIndex]!
  const s = name === undefined ? undefined : specs.find((c) => c.name === name)
  const help = args.some((a) => a === "--help" || a === "-h")
  if (name !== undefined && s === undefined) {
    return {
      _tag: "Invalid",
      command: undefined,
      message: `unknown command "${name}" (commands: ${specs.map((c) => c.name).join(", ")})`
    }
  }
  if (help) return { _tag: "Help", command: s?.name }
  const invalid = (message: string): Request => ({ _tag: "Invalid", command: s?.name, message })
  const positionals: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    if (i === commandIndex) continue
    const arg = args[i]!
    if (arg === "--") {
      positionals.push(...args.slice(i + 1))
      break
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg)
      continue
    }
    const eq = arg.indexOf("=")
    const flag = eq === -1 ? arg : arg.slice(0, eq)
    const inline = eq === -1 ? undefined : arg.slice(eq + 1)
    if (BUILT_IN_FLAGS.has(flag)) continue
    if (BUILT_IN_VALUED.has(flag)) {
      if (inline === undefined) i++
      continue
    }
    const option = s?.options.find((o) => `--${o.flag}` === flag)
    if (option === undefined) {
      return invalid(s === undefined ? `unknown option ${flag}` : `unknown option ${flag} for ${s.name}`)
    }
    if (option.value === undefined) {
      if (inline !== undefined) return invalid(`${flag} takes no value, got "${inline}"`)
      continue
    }
    const next = args[i + 1]
    const value = inline ?? (next === undefined || (next.startsWith("--") && next.length > 2) ? undefined : next)
    if (value === undefined || value === "") return invalid(`${flag} needs ${option.value.needs}`)
    if (inline === undefined) i++
    if (option.value.valid !== undefined && !option.value.valid(value)) {
      return invalid(`${flag}: expected ${option.value.needs}, got ${JSON.stringify(value)}`)
    }
  }
  if (s === undefined) {
    return positionals.length === 0
      ? { _tag: "Run", command: undefined, args: builtInsFirst(args) }
      : invalid(`unexpected argument ${JSON.stringify(positionals[0])}`)
  }
  const missing = s.args.slice(positionals.length).find((a) => a.required)
  if (missing !== undefined) return invalid(`${s.name} needs ${missing.needs} (<${missing.name}>)`)
  if (positionals.length > s.args.length) {
    return invalid(`unexpected argument ${JSON.stringify(positionals[s.args.length])}`)
  }
  return { _tag: "Run", command: s.name, args: builtInsFirst(args) }
}

/** `args` with @effect/cli's own options moved before the command, the only place it reads them. */
const builtInsFirst = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const first: Array<string> = []
  const rest: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      rest.push(...args.slice(i))
      break
    }
    const flag = arg.split("=")[0]!
    if (BUILT_IN_FLAGS.has(flag)) first.push(arg)
    else if (BUILT_IN_VALUED.has(flag)) {
      first.push(arg)
      if (!arg.includes("=") && i + 1 < args.length) first.push(args[++i]!)
    } else rest.push(arg)
  }
  return [...first, ...rest]
}
