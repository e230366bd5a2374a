/** A command line the CLI refuses (a combination `@effect/cli` cannot express): printed with the usage, exit code 2. */
import * as Data from "effect/Data"

/** Wrong arguments; `message` says which. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}
