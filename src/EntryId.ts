/**
 * The id of an outbox entry. A module of its own so that `DeliveryError` can carry it without importing `Delivery`,
 * which imports `DeliveryError` (an import cycle would leave the schema undefined while the errors are defined).
 */
import * as Schema from "effect/Schema"

/** A time-sortable entry id (ULID). */
export const EntryId = Schema.String.pipe(Schema.brand("effect-outbox/EntryId"))
export type EntryId = typeof EntryId.Type
