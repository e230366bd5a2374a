/**
 * The walk that turns a caller's `channelData` or `metadata` into a record of JSON values only: a deep copy, so the
 * live send and a replay from the store see the same data, or the path to the first value JSON cannot hold and why.
 * The limits are public through `Delivery`.
 */
import * as Either from "effect/Either"
import { className, formatError, formatValue, isPlainPrototype } from "./safeFormat.js"

/** Whether `u` is a non-null object other than an array (a record to walk or copy). */
export const isRecordObject = (u: unknown): u is { readonly [x: string]: unknown } =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** A JSON object as the walk builds it. */
export type JsonObject = { [x: string]: unknown }

/**
 * The deepest nesting of objects and arrays in `channelData` or `metadata`, the record itself being level 1. Chat
 * data nests a few levels; the bound keeps validation, storage and every later JSON.stringify off the stack's edge.
 */
export const MAX_JSON_DEPTH = 64

/**
 * The most values one `channelData` or `metadata` record may hold, a shared object counted at each place it appears
 * (as JSON writes it out): shared references would otherwise make a small object expand without bound.
 */
export const MAX_JSON_VALUES = 100_000

/** Where a record stops being JSON, and why. */
export interface JsonProblem {
  readonly path: ReadonlyArray<string | number>
  readonly message: string
}

/** The walk over one record: the path to the current value, the objects enclosing it, the values counted so far. */
interface JsonWalk {
  readonly path: Array<string | number>
  readonly ancestors: Array<object>
  values: number
  problem: JsonProblem | undefined
}

const INVALID: unique symbol = Symbol("effect-outbox/InvalidJson")

const fail = (
  walk: JsonWalk,
  message: string,
  path: ReadonlyArray<string | number> = walk.path.slice()
): typeof INVALID => {
  walk.problem = { path, message }
  return INVALID
}

/** A copy of `u` made of JSON values only, or INVALID with `walk.problem` set. Recursion stops at MAX_JSON_DEPTH. */
const copyJson = (walk: JsonWalk, u: unknown, depth: number): unknown => {
  if (++walk.values > MAX_JSON_VALUES) return fail(walk, `holds more than ${MAX_JSON_VALUES} values`, [])
  switch (typeof u) {
    case "string":
    case "boolean":
      return u
    case "number":
      // JSON has no -0: the stored row would give 0 back, so the live send gets 0 too
      return Number.isFinite(u) ? (u === 0 ? 0 : u) : fail(walk, `must be a finite number, got ${u}`)
    case "bigint":
      return fail(walk, "must be a finite number, got a BigInt")
    case "object":
      return u === null ? null : copyContainer(walk, u, depth + 1)
    default:
      return fail(walk, `must be JSON data, got ${u === undefined ? "undefined" : `a ${typeof u}`}`)
  }
}

const copyContainer = (walk: JsonWalk, u: object, depth: number): unknown => {
  if (walk.ancestors.includes(u)) return fail(walk, "contains itself (a cycle), which JSON cannot hold")
  if (depth > MAX_JSON_DEPTH) return fail(walk, `nests deeper than ${MAX_JSON_DEPTH} levels`)
  const proto: object | null = Object.getPrototypeOf(u)
  const isArray = Array.isArray(u)
  // an array's prototype is an array itself (any realm's Array.prototype); a subclass's prototype is not
  if (isArray ? !Array.isArray(proto) : !isPlainPrototype(proto)) {
    return fail(walk, `must be a plain object or array, got an instance of ${className(proto)}`)
  }
  walk.ancestors.push(u)
  const out = isArray ? copyArray(walk, u, depth) : copyObject(walk, u as JsonObject, depth)
  walk.ancestors.pop()
  return out
}

const copyArray = (walk: JsonWalk, u: ReadonlyArray<unknown>, depth: number): unknown => {
  const out: Array<unknown> = []
  // read once: a Proxy could answer differently each time
  const length = u.length
  for (let i = 0; i < length; i++) {
    walk.path.push(i)
    const value = copyJson(walk, u[i], depth)
    if (value === INVALID) return INVALID
    walk.path.pop()
    out.push(value)
  }
  return out
}

const copyObject = (walk: JsonWalk, u: JsonObject, depth: number): unknown => {
  const out: JsonObject = {}
  for (const key of Object.keys(u)) {
    walk.path.push(key)
    const value = copyJson(walk, u[key], depth)
    if (value === INVALID) return INVALID
    walk.path.pop()
    // `__proto__` stays a key, as JSON.parse made it: an assignment would make its value the copy's prototype instead
    if (key === "__proto__") {
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
    } else out[key] = value
  }
  return out
}

/**
 * A deep copy of a record made of JSON values only, so the live send and a replay from the store see the same data
 * (and later changes by the caller reach neither), or where and why it is not JSON. Never throws.
 */
export const toJsonRecord = (u: unknown): Either.Either<JsonObject, JsonProblem> => {
  const walk: JsonWalk = { path: [], ancestors: [], values: 0, problem: undefined }
  try {
    if (!isRecordObject(u)) return Either.left({ path: [], message: `must be an object, got ${formatValue(u)}` })
    const copy = copyJson(walk, u, 0)
    return copy === INVALID ? Either.left(walk.problem!) : Either.right(copy as JsonObject)
  } catch (error) {
    // a getter or Proxy trap threw: the path still points at the value being read
    return Either.left({ path: walk.path.slice(), message: `could not be read: ${formatError(error)}` })
  }
}

/**
 * Copies the own enumerable keys as data properties. `__proto__` stays a key, as `JSON.parse` made it: an
 * assignment (what `Schema.Record` does) would drop it and make its value the copy's prototype instead.
 */
export const copyRecord = (u: { readonly [x: string]: unknown }): { readonly [x: string]: unknown } => {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(u)) {
    Object.defineProperty(out, key, { value: u[key], enumerable: true, writable: true, configurable: true })
  }
  return out
}
