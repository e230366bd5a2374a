/**
 * What the board's handlers share, built once per mounted board: its resolved options, the outbox, the store, the
 * shared counts (`Snapshot`) and, inside the gateway, the event log.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { ChannelRegistry } from "../ChannelRegistry.js"
import { pendingStates } from "../Delivery.js"
import type { OutboxStats } from "../Delivery.js"
import type { StoreError } from "../DeliveryError.js"
import { Outbox } from "../Outbox.js"
import type { OutboxShape } from "../Outbox.js"
import { OutboxConfig } from "../OutboxConfig.js"
import type { OutboxConfigShape } from "../OutboxConfig.js"
import type { ActivityBucket, OutboxRepoShape } from "../OutboxRepo.js"
import { OutboxRepo } from "../OutboxRepo.js"
import * as EventLog from "./EventLog.js"
import * as Snapshot from "./Snapshot.js"

/** How a board is set up (see `OutboxAdmin.Options` for each field's meaning and default). */
export interface ResolvedOptions {
  readonly token: Redacted.Redacted<string> | undefined
  readonly readOnly: boolean
  readonly live: boolean
  readonly pathPrefix: string
  readonly statsMaxAgeMs: number
  readonly allowedHosts: ReadonlyArray<string>
}

/** The activity window the board draws: the last hour, by minute. */
export const ACTIVITY_WINDOW_MS = 3_600_000
export const ACTIVITY_BUCKET_MS = 60_000

/** The activity of the last hour, bucket edges aligned to the minute. */
export interface Activity {
  readonly since: number
  readonly buckets: ReadonlyArray<ActivityBucket>
}

/** The board's shared state. */
export interface AdminStateShape {
  readonly options: ResolvedOptions
  readonly outbox: OutboxShape
  readonly repo: OutboxRepoShape
  readonly config: OutboxConfigShape
  readonly registry: Option.Option<Context.Tag.Service<ChannelRegistry>>
  readonly stats: Snapshot.Snapshot<OutboxStats & { readonly pending: number }, StoreError>
  readonly activity: Snapshot.Snapshot<Activity, StoreError>
  /** present when the board runs inside the gateway (`live`) */
  readonly events: Option.Option<EventLog.EventLog>
}

/** The `AdminState` tag. */
export class AdminState extends Context.Tag("effect-outbox/admin/AdminState")<AdminState, AdminStateShape>() {}

/** How many events the live feed and the timelines keep. */
const EVENT_CAPACITY = 5_000

/** Builds the state in `scope` (the background recounts and the event log live as long as it). */
export const make = (
  options: ResolvedOptions
): Effect.Effect<AdminStateShape, never, Outbox | OutboxRepo | OutboxConfig | Scope.Scope> =>
  Effect.gen(function*() {
    const outbox = yield* Outbox
    const repo = yield* OutboxRepo
    const config = yield* OutboxConfig
    const registry = yield* Effect.serviceOption(ChannelRegistry)
    const scope = yield* Effect.scope
    const stats = yield* Snapshot.make(
      Effect.map(outbox.stats, (s) => ({ ...s, pending: pendingStates.reduce((n, state) => n + s.byState[state], 0) })),
      options.statsMaxAgeMs,
      scope
    )
    const activity = yield* Snapshot.make(
      Effect.gen(function*() {
        const now = yield* Clock.currentTimeMillis
        // whole minutes, the current one included: the last bucket fills up as the minute goes on
        const until = Math.floor(now / ACTIVITY_BUCKET_MS) * ACTIVITY_BUCKET_MS + ACTIVITY_BUCKET_MS
        const since = until - ACTIVITY_WINDOW_MS
        const buckets = yield* repo.activity({ since, until, bucketMs: ACTIVITY_BUCKET_MS })
        return { since, buckets }
      }),
      options.statsMaxAgeMs,
      scope
    )
    const events = options.live ? Option.some(yield* EventLog.make(outbox.events, EVENT_CAPACITY)) : Option.none()
    return { options, outbox, repo, config, registry, stats, activity, events }
  })

/** Options with their defaults. */
export const resolve = (options: {
  readonly token?: Redacted.Redacted<string> | undefined
  readonly readOnly?: boolean | undefined
  readonly live?: boolean | undefined
  readonly pathPrefix?: string | undefined
  readonly statsMaxAge?: Duration.DurationInput | undefined
  readonly allowedHosts?: ReadonlyArray<string> | undefined
}): ResolvedOptions => ({
  token: options.token,
  readOnly: options.readOnly ?? false,
  live: options.live ?? true,
  pathPrefix: (options.pathPrefix ?? "").replace(/\/+$/, ""),
  statsMaxAgeMs: Duration.toMillis(options.statsMaxAge ?? Duration.seconds(5)),
  allowedHosts: options.allowedHosts ?? []
})
