import { configDefaults, defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // the packaging test installs from the registry and builds a native module: it runs alone, after these
    // (vitest.package.config.ts), so it cannot slow the timing-sensitive tests here
    exclude: [...configDefaults.exclude, "test/package/**"],
    testTimeout: 30_000,
    // two files at a time on the project's two cores (vitest's default there is one): 174 s instead of ~260 s, green
    // in 4 of 4 full runs; an earlier try failed once in five on a test that checked rows between time slices, since
    // fixed (test/faults/adapters.test.ts advances with advanceTo)
    maxWorkers: 2,
    minWorkers: 1,
    // the library's own log lines (Effect's logfmt logger) are what its failure paths are expected to print; a test
    // that checks a log captures it with its own Logger, so the run's output stays readable
    onConsoleLog: (log) => !/^timestamp=\S+ level=(WARN|ERROR|INFO|DEBUG)/.test(log.trimStart())
  }
})
