import { defineConfig } from "vitest/config"

// The packaging test (npm pack, install into a temp app, run the CLI there), run by `npm test` after the others.
export default defineConfig({
  test: {
    include: ["test/package/**/*.test.ts"],
    testTimeout: 240_000,
    // the install hook sets its own, longer limit; this covers npm pack
    hookTimeout: 240_000
  }
})
