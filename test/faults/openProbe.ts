/**
 * Opens outbox database files with `SqliteOutboxRepo.layerFile` and prints, per file, one JSON line:
 * `{"ok":true}` or `{"ok":false,"tag":…,"message":…}` (a defect is reported as tag "Defect", never thrown).
 * The disk tests run it as an unprivileged user when they run as root, whom directory permissions do not stop:
 *   node --import tsx test/faults/openProbe.ts <filename>…
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"

/** What opening `filename` did. */
export type ProbeResult = { readonly ok: true } | { readonly ok: false; readonly tag: string; readonly message: string }

/** Builds the file store and reports the outcome. */
export const probe = (filename: string): Effect.Effect<ProbeResult> =>
  Layer.build(SqliteOutboxRepo.layerFile({ filename })).pipe(
    Effect.scoped,
    Effect.exit,
    Effect.map((exit): ProbeResult =>
      Exit.match(exit, {
        onSuccess: () => ({ ok: true }),
        onFailure: (cause) =>
          Option.match(Cause.failureOption(cause), {
            onNone: () => ({ ok: false, tag: "Defect", message: Cause.pretty(cause) }),
            onSome: (error) => ({ ok: false, tag: error._tag, message: error.message })
          })
      })
    )
  )

const files = process.argv.slice(2)
if (files.length > 0 && /openProbe\.[tj]s$/.test(process.argv[1] ?? "")) {
  Effect.runPromise(Effect.forEach(files, probe)).then((results) => {
    for (const r of results) process.stdout.write(`${JSON.stringify(r)}\n`)
  })
}
