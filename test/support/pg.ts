/** PostgreSQL for tests: the local server (CI starts it), one throwaway schema per store. */
import * as PgClient from "@effect/sql-pg/PgClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as crypto from "node:crypto"
import * as PgOutboxRepo from "../../src/PgOutboxRepo.js"

/** The test server; `OUTBOX_TEST_PG_URL` overrides it. */
export const PG_URL = process.env.OUTBOX_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

/** Schemas of this run share a random prefix, so parallel runs never meet. */
const RUN = `outbox_test_${crypto.randomBytes(4).toString("hex")}`
let counter = 0

/** A URL whose connections use `schema` (the pool's `search_path`). */
export const urlFor = (schema: string): string =>
  `${PG_URL}${PG_URL.includes("?") ? "&" : "?"}options=${encodeURIComponent(`-c search_path=${schema}`)}`

/** A new schema, created when the layer is built and dropped (with everything in it) when it is released. */
export const freshSchema = (): { readonly name: string; readonly layer: Layer.Layer<never> } => {
  const name = `${RUN}_${++counter}`
  const layer = Layer.scopedDiscard(Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    yield* Effect.acquireRelease(
      sql`CREATE SCHEMA ${sql(name)}`,
      () => Effect.orDie(sql`DROP SCHEMA ${sql(name)} CASCADE`)
    )
  })).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(PG_URL), maxConnections: 1 })), Layer.orDie)
  return { name, layer }
}

/** A migrated, empty store in a fresh schema (with its `PgClient`), the schema dropped on release. */
export const freshStore = (options: PgOutboxRepo.Options & { readonly maxConnections?: number } = {}) => {
  const schema = freshSchema()
  return {
    schema: schema.name,
    layer: PgOutboxRepo.layerUrl(urlFor(schema.name), {
      ...options,
      client: { maxConnections: options.maxConnections ?? 4 }
    })
      .pipe(Layer.provide(schema.layer))
  }
}

/** Runs `f` with a one-connection client on the test server (for tests written with Promises). */
export const withServer = <A>(f: (sql: PgClient.PgClient) => Effect.Effect<A, unknown>): Promise<A> =>
  Effect.flatMap(PgClient.PgClient, f).pipe(
    Effect.provide(PgClient.layer({ url: Redacted.make(PG_URL), maxConnections: 1 })),
    Effect.scoped,
    Effect.runPromise
  )

/** A new, empty schema for tests written with Promises: its name, a URL whose connections use it, and `drop`. */
export const createSchema = async () => {
  const name = `${RUN}_${++counter}`
  await withServer((sql) => sql`CREATE SCHEMA ${sql(name)}`)
  return {
    name,
    url: urlFor(name),
    /** the names of the schema's tables */
    tables: () =>
      withServer((sql) =>
        Effect.map(
          sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables
            WHERE table_schema = ${name} ORDER BY table_name`,
          (rows) => rows.map((r) => r.table_name)
        )
      ),
    drop: () => withServer((sql) => sql`DROP SCHEMA ${sql(name)} CASCADE`)
  }
}
