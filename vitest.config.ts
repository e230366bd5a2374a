import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // the packaging test installs from the registry and builds a native module: it runs alone, after these
    // (vitest.package.config.ts), so it cannot slow the timing-sensitive tests here
    exclude: [...configDefaults.exclude, "test/package/**"],
    testTimeout: 30_000
  }
})
