/**
 * Descriptions of a caller's values for error messages. A request is untrusted input: its getters, Proxy traps and
 * `toString` may throw or lie, so these read data properties only and never throw, whatever they are given.
 */

/** `s` cut to `max` characters, with an ellipsis when something was cut. */
export const clip = (s: string, max: number): string => (s.length > max ? `${s.slice(0, max)}…` : s)

/** A plain object's prototype: none, or `Object.prototype` of this realm or another (whose own prototype is null). */
export const isPlainPrototype = (proto: object | null): boolean =>
  proto === null || proto === Object.prototype || Object.getPrototypeOf(proto) === null

/** The name of the class an object belongs to, read from data properties only (a getter could throw or lie). */
export const className = (proto: object | null): string => {
  const ctor: unknown = proto === null ? undefined : Object.getOwnPropertyDescriptor(proto, "constructor")?.value
  const name: unknown = typeof ctor === "function" ? Object.getOwnPropertyDescriptor(ctor, "name")?.value : undefined
  return typeof name === "string" && name !== "" ? name : "an unnamed class"
}

/** A short description of any value for an error message. Never throws, whatever getters, Proxy traps or toString do. */
export const formatValue = (u: unknown): string => {
  try {
    return clip(describe(u, 2), 120)
  } catch {
    return "a value that could not be read"
  }
}

const describe = (u: unknown, depth: number): string => {
  switch (typeof u) {
    case "string":
      return JSON.stringify(clip(u, 80))
    case "bigint":
      return `${clip(String(u), 40)}n`
    case "function":
      return "a function"
    case "object":
      return u === null ? "null" : describeObject(u, depth)
    default:
      // number, boolean, undefined, symbol: String() runs no user code on these
      return String(u)
  }
}

const describeObject = (u: object, depth: number): string => {
  const items = (keys: ReadonlyArray<string | number>, show: (key: string | number) => string) =>
    depth === 0 ? "…" : keys.slice(0, 3).map(show).join(",") + (keys.length > 3 ? ",…" : "")
  if (Array.isArray(u)) {
    const indices = Array.from({ length: Math.min(u.length, 4) }, (_, i) => i)
    return `[${items(indices, (i) => describe(u[i as number], depth - 1))}]`
  }
  const proto: object | null = Object.getPrototypeOf(u)
  if (!isPlainPrototype(proto)) return `an instance of ${className(proto)}`
  const record = u as { readonly [x: string]: unknown }
  return `{${
    items(Object.keys(record), (k) => `${JSON.stringify(clip(String(k), 40))}:${describe(record[k], depth - 1)}`)
  }}`
}

/** A thrown value's message for an error message. Never throws, as `formatValue`. */
export const formatError = (error: unknown): string => {
  try {
    return error instanceof Error ? clip(String(error.message), 120) : formatValue(error)
  } catch {
    return "an error that could not be read"
  }
}
