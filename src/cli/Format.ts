/**
 * Human output of the CLI: aligned tables, durations and times. Pure functions of their inputs (the caller passes
 * `now` from Effect's `Clock`), so the same row always prints the same way.
 */

/** A table cell: numbers are right-aligned, text left-aligned. */
export type Cell = string | number

/** Renders rows under a header as an aligned table, two spaces between columns, no trailing spaces. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<Cell>>): string => {
  const all: ReadonlyArray<ReadonlyArray<Cell>> = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((row) => String(row[i] ?? "").length)))
  // a column is numeric when every body cell is a number: its header is right-aligned with it
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((row) => typeof row[i] === "number"))
  return all
    .map((row) =>
      header
        .map((_, i) => {
          const text = String(row[i] ?? "")
          return numeric[i] ? text.padStart(widths[i]!) : text.padEnd(widths[i]!)
        })
        .join("  ")
        .trimEnd()
    )
    .join("\n")
}

/** Key/value lines with the keys padded to one width. */
export const fields = (pairs: ReadonlyArray<readonly [string, string]>): string => {
  const width = Math.max(0, ...pairs.map(([k]) => k.length))
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v}`.trimEnd()).join("\n")
}

/** A duration for people: `850 ms`, `4.2 s`, `3m 12s`, `2h 05m`, `3d 4h`. */
export const duration = (ms: number): string => {
  const abs = Math.abs(ms)
  const sign = ms < 0 ? "-" : ""
  if (abs < 1_000) return `${sign}${Math.round(abs)} ms`
  if (abs < 60_000) return `${sign}${(abs / 1_000).toFixed(1)} s`
  const s = Math.floor(abs / 1_000)
  if (s < 3_600) return `${sign}${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`
  if (s < 86_400) return `${sign}${Math.floor(s / 3_600)}h ${String(Math.floor((s % 3_600) / 60)).padStart(2, "0")}m`
  return `${sign}${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3_600)}h`
}

/** An epoch-millis time as UTC, `2026-03-01 11:00:05Z`. */
export const time = (ms: number): string => `${new Date(ms).toISOString().slice(0, 19).replace("T", " ")}Z`

/** A time with its distance from `now`: `2026-03-01 11:00:05Z (3m 12s ago)` or `(in 4.0 s)`. */
export const timeFrom = (ms: number, now: number): string =>
  `${time(ms)} (${ms <= now ? `${duration(now - ms)} ago` : `in ${duration(ms - now)}`})`

/** Shortens text to `max` characters on one line. */
export const clip = (text: string, max: number): string => {
  const line = text.replace(/\s+/g, " ").trim()
  return line.length > max ? `${line.slice(0, Math.max(0, max - 1))}…` : line
}

/** `1 entry`, `2 entries`: a count with its noun (`plural` defaults to noun + "s"). */
export const count = (n: number, noun: string, plural: string = `${noun}s`): string => `${n} ${n === 1 ? noun : plural}`

/** Stable machine output: two-space indented JSON. */
export const json = (value: unknown): string => JSON.stringify(value, null, 2)
