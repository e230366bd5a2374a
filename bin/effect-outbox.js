#!/usr/bin/env node
// The effect-outbox CLI launcher.
// `npm install` / `npm ci` build dist/ through the package's "prepare" script, and the compiled CLI starts in about a
// second. When there is no build, or the TypeScript source is newer than it (an edited checkout), the source runs
// through tsx instead: the CLI never runs stale code, and no one has to remember a build step.
import { readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const compiled = join(root, "dist", "cli", "main.js")

/** The newest modification time of the .ts files under `dir`. */
const newestSource = (dir) => {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full))
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(full).mtimeMs)
  }
  return newest
}

const builtAt = statSync(compiled, { throwIfNoEntry: false })?.mtimeMs
// `<=`: an npm tarball gives every file the same timestamp
if (builtAt !== undefined && newestSource(join(root, "src")) <= builtAt) {
  await import(pathToFileURL(compiled).href)
} else {
  const { tsImport } = await import("tsx/esm/api")
  await tsImport("../src/cli/main.ts", {
    parentURL: import.meta.url,
    // the package's own tsconfig, whatever directory the CLI is run from
    tsconfig: join(root, "tsconfig.json")
  })
}
