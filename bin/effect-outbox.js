#!/usr/bin/env node
// The effect-outbox CLI as package.json's `bin` runs it: always the compiled dist/, never the TypeScript source.
// An installed package has no tsx, and npm stamps files with their unpack time, so file times cannot say which is
// newer. In this repository, `npm run cli -- …` runs the source instead, and `npm install` builds dist/ ("prepare").
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"

const compiled = new URL("../dist/cli/main.js", import.meta.url)

// only a checkout can lack the build (npm install --ignore-scripts): say how to make it rather than a module trace
if (!existsSync(compiled)) {
  process.stderr.write(
    `effect-outbox: ${fileURLToPath(compiled)} is missing; run \`npm run build\` in this package first\n`
  )
  process.exit(1)
}
await import(compiled.href)
