/**
 * The handlers of `AdminApi`: reads through the store (listing, one entry) and the shared counts, writes through
 * the `Outbox` facade (`retry`, `prune`), as the CLI's admin commands do. Every write is refused on a read-only board,
 * logged with what it changed, and followed by a recount so the board shows its effect at once.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import { EntryId } from "../Delivery.js"
import type { StoreError } from "../DeliveryError.js"
import type { ListParams, RetryFilter } from "./AdminApi.js"
import { AdminApi, Conflict, DEFAULT_PAGE, Forbidden, NotFound, StoreUnavailable } from "./AdminApi.js"
import { ACTIVITY_BUCKET_MS, AdminState } from "./AdminState.js"
import type { AdminStateShape } from "./AdminState.js"
import * as EntryView from "./EntryView.js"
import { retryAll } from "./Retry.js"

const unavailable = (e: StoreError) => new StoreUnavailable({ operation: e.operation, message: e.message })

const readOnlyRefusal = (state: AdminStateShape) =>
  state.options.readOnly
    ? Effect.fail(new Forbidden({ message: "this board is read-only (started with --read-only): nothing is changed" }))
    : Effect.void

/** The row or `NotFound`. */
const findEntry = (state: AdminStateShape, id: string) =>
  state.repo.get(EntryId.make(id)).pipe(
    Effect.mapError(unavailable),
    Effect.flatMap(Option.match({
      onNone: () => Effect.fail(new NotFound({ id, message: `no entry ${id}` })),
      onSome: Effect.succeed
    }))
  )

const entries = (state: AdminStateShape, params: typeof ListParams.Type) =>
  Effect.gen(function*() {
    const limit = params.limit ?? DEFAULT_PAGE
    const cursor: { readonly before?: number; readonly beforeId?: string } = params.before === undefined
      ? {}
      : EntryView.parseCursor(params.before)
    // one row more than the page: whether there is a next page without a second query
    const rows = yield* state.repo.list({
      state: params.state,
      channel: params.channel,
      to: params.conversation,
      limit: limit + 1,
      before: cursor.before,
      beforeId: cursor.beforeId === undefined ? undefined : EntryId.make(cursor.beforeId)
    }).pipe(Effect.mapError(unavailable))
    const page = rows.slice(0, limit)
    const last = page[page.length - 1]
    return {
      entries: page.map(EntryView.summary),
      nextCursor: rows.length > limit && last !== undefined ? EntryView.cursorOf(last) : null
    }
  })

const entry = (state: AdminStateShape, id: string) =>
  Effect.gen(function*() {
    const e = yield* findEntry(state, id)
    const channel = Option.isSome(state.registry)
      ? Option.getOrUndefined(yield* Effect.option(state.registry.value.get(e.channel)))
      : undefined
    const now = yield* Clock.currentTimeMillis
    const events = Option.match(state.events, { onNone: () => [], onSome: (log) => log.ofEntry(e.id) })
    return {
      entry: e,
      parts: EntryView.parts(e, channel, state.config.chunking),
      planExact: channel !== undefined,
      timeline: EntryView.timeline(e, events, now),
      retry: EntryView.retryOffer(e)
    }
  })

const retryEntry = (state: AdminStateShape, id: string) =>
  Effect.gen(function*() {
    yield* readOnlyRefusal(state)
    const e = yield* findEntry(state, id)
    const offer = EntryView.retryOffer(e)
    if (!offer.allowed) return yield* Effect.fail(new Conflict({ message: offer.reason ?? "not retryable" }))
    yield* state.outbox.retry(e.id).pipe(
      Effect.catchTags({
        StoreError: (error) => Effect.fail(unavailable(error)),
        EntryNotFound: () => Effect.fail(new NotFound({ id, message: `no entry ${id}` })),
        TransitionRejected: (error) => Effect.fail(new Conflict({ message: error.message }))
      })
    )
    yield* Effect.logInfo(`admin board: requeued entry ${e.id} (was ${e.state})`)
    yield* Effect.all([state.stats.invalidate, state.activity.invalidate])
    return { requeued: e.id as string, was: e.state }
  })

const retryFiltered = (
  state: AdminStateShape,
  filter: typeof RetryFilter.Type
) =>
  Effect.gen(function*() {
    yield* readOnlyRefusal(state)
    const result = yield* retryAll(state.outbox, {
      state: filter.state,
      channel: filter.channel,
      to: filter.conversation,
      dryRun: filter.dryRun
    }).pipe(
      Effect.catchTags({
        StoreError: (error) => Effect.fail(unavailable(error)),
        // a row that changed under the bulk retry (pruned, retried by someone else) stops it: say what happened
        EntryNotFound: (error) => Effect.fail(new StoreUnavailable({ operation: "retry", message: error.message })),
        TransitionRejected: (error) => Effect.fail(new StoreUnavailable({ operation: "retry", message: error.message }))
      })
    )
    if (!filter.dryRun) {
      yield* Effect.logInfo(
        `admin board: requeued ${result.requeued.length} ${filter.state} entries` +
          `${filter.channel === undefined ? "" : ` of ${filter.channel}`}` +
          `${filter.conversation === undefined ? "" : ` to ${filter.conversation}`}, skipped ${result.skipped.length}`
      )
      yield* Effect.all([state.stats.invalidate, state.activity.invalidate])
    }
    return { dryRun: filter.dryRun, requeued: result.requeued, skipped: result.skipped }
  })

/** The handlers, needing the board's state. */
export const layer = HttpApiBuilder.group(AdminApi, "outbox", (handlers) =>
  Effect.gen(function*() {
    const state = yield* AdminState
    return handlers
      .handle("info", () =>
        Effect.succeed({
          readOnly: state.options.readOnly,
          live: Option.isSome(state.events),
          authRequired: state.options.token !== undefined,
          statsMaxAgeMs: state.options.statsMaxAgeMs
        }))
      .handle("stats", () =>
        Effect.map(
          Effect.mapError(state.stats.get, unavailable),
          ({ asOf, value }) => ({ asOf, ...value })
        ))
      .handle("activity", () =>
        Effect.map(Effect.mapError(state.activity.get, unavailable), ({ asOf, value }) => ({
          asOf,
          since: value.since,
          bucketMs: ACTIVITY_BUCKET_MS,
          source: "database" as const,
          buckets: value.buckets
        })))
      .handle("entries", ({ urlParams }) => entries(state, urlParams))
      .handle("entry", ({ path }) => entry(state, path.id))
      .handle("retryEntry", ({ path }) => retryEntry(state, path.id))
      .handle("retry", ({ payload }) => retryFiltered(state, payload))
      .handle("prune", () =>
        Effect.gen(function*() {
          yield* readOnlyRefusal(state)
          const pruned = yield* Effect.mapError(state.outbox.prune, unavailable)
          yield* Effect.logInfo(`admin board: pruned ${pruned} entries past their retention`)
          yield* Effect.all([state.stats.invalidate, state.activity.invalidate])
          return { pruned }
        }))
  }))
