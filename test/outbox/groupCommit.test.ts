import { describe, expect, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Scope from "effect/Scope"
import * as GroupCommit from "../../src/internal/groupCommit.js"

describe("group commit", () => {
  it.scoped("items waiting together are written in one batch, each caller gets its own result", () =>
    Effect.gen(function*() {
      const batches: Array<ReadonlyArray<number>> = []
      const writer = yield* GroupCommit.make((items: ReadonlyArray<number>) =>
        Effect.sync(() => {
          batches.push(items)
          return items.map((i) => i * 10)
        }), 100)
      const gate = yield* Deferred.make<void>()
      // the first write is held, so the next three callers queue up behind it
      yield* writer.submitWith(0, () => Deferred.await(gate))
      yield* Effect.yieldNow()
      const results: Array<number> = []
      for (const i of [1, 2, 3]) {
        yield* writer.submitWith(i, (exit) => Effect.sync(() => Exit.isSuccess(exit) && results.push(exit.value)))
      }
      const caller = yield* Effect.fork(writer.submit(4))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(gate, undefined)
      expect(yield* Fiber.join(caller)).toBe(40)
      expect(results).toEqual([10, 20, 30])
      expect(batches).toEqual([[0], [1, 2, 3, 4]])
    }))

  it.scoped("submitWith does not wait; its onDone sees the result; flush waits for everything before it", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const written: Array<number> = []
      const writer = yield* GroupCommit.make((items: ReadonlyArray<number>) =>
        Effect.zipRight(
          Deferred.await(gate),
          Effect.sync(() => {
            written.push(...items)
            return items.map((i) => i % 2 === 0)
          })
        ), 100)
      const seen: Array<[number, boolean]> = []
      for (const i of [1, 2]) {
        yield* writer.submitWith(i, (exit) => Effect.sync(() => seen.push([i, Exit.isSuccess(exit) && exit.value])))
      }
      expect(seen).toEqual([]) // nothing waited for the write
      const flushed = yield* Effect.fork(writer.flush)
      yield* Effect.yieldNow()
      expect(flushed.unsafePoll()).toBeNull() // the write is still held
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(flushed)
      expect(written).toEqual([1, 2])
      expect(seen).toEqual([[1, false], [2, true]])
    }))

  it.scoped("a failed write reaches every item of its batch; the writer goes on with the next batch", () =>
    Effect.gen(function*() {
      let failNext = true
      const writer = yield* GroupCommit.make((items: ReadonlyArray<string>) =>
        failNext
          ? Effect.sync(() => (failNext = false)).pipe(Effect.zipRight(Effect.fail("disk I/O error" as const)))
          : Effect.succeed(items), 100)
      const exits: Array<Exit.Exit<string, string>> = []
      for (const item of ["a", "b"]) yield* writer.submitWith(item, (exit) => Effect.sync(() => exits.push(exit)))
      yield* writer.flush
      expect(exits).toEqual([Exit.fail("disk I/O error"), Exit.fail("disk I/O error")])
      expect(yield* writer.submit("c")).toBe("c")
    }))

  it.scoped("batches are at most maxBatch items", () =>
    Effect.gen(function*() {
      const sizes: Array<number> = []
      const writer = yield* GroupCommit.make((items: ReadonlyArray<number>) =>
        Effect.sync(() => {
          sizes.push(items.length)
          return items
        }), 2)
      for (let i = 0; i < 5; i++) yield* writer.submitWith(i, () => Effect.void)
      yield* writer.flush
      expect(sizes).toEqual([2, 2, 1])
    }))

  it.scoped("a completion handler that dies is logged; the writer goes on", () =>
    Effect.gen(function*() {
      const writer = yield* GroupCommit.make((items: ReadonlyArray<number>) => Effect.succeed(items), 100)
      yield* writer.submitWith(1, () => Effect.die(new Error("handler bug")))
      expect(yield* writer.submit(2)).toBe(2)
    }))

  it.effect("closing the scope during a write interrupts the callers of that batch instead of leaving them waiting", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const started = yield* Deferred.make<void>()
      const writer = yield* GroupCommit.make(
        (_: ReadonlyArray<number>) => Effect.zipRight(Deferred.succeed(started, undefined), Effect.never),
        100
      ).pipe(Scope.extend(scope))
      const caller = yield* Effect.fork(writer.submit(1))
      yield* Deferred.await(started)
      yield* Scope.close(scope, Exit.void)
      const exit = yield* Fiber.await(caller)
      expect(Exit.isInterrupted(exit)).toBe(true)
    }))
})
