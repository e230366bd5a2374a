/**
 * The package as a user gets it: `npm pack`, then a new app (its own package.json, ESM) that runs the README's Install
 * command with the tarball in place of `effect-outbox`, typechecks an import of the library under `nodenext`, and runs
 * the installed CLI. Everything lives in one temporary directory, npm's cache included, removed at the end.
 * Needs the npm registry (the peers come from it); run by `npm test` after the other tests (vitest.package.config.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import type { ChildProcess } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = fileURLToPath(new URL("../../", import.meta.url))
const TSC = path.join(ROOT, "node_modules", "typescript", "bin", "tsc")
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-package-"))
const APP = path.join(tmp, "app")
const UNPACKED = path.join(tmp, "unpacked")

interface Run {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  readonly timedOut: boolean
}

/**
 * The environment the npm and node children get: this one without the `npm_*` variables `npm test` sets (they would
 * make a child npm act on this repository), with npm's cache and logs and node-gyp's headers inside the temp directory,
 * and short network timeouts so an unreachable registry fails the test instead of stalling it.
 */
const childEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(key) && key !== "INIT_CWD") env[key] = value
  }
  return {
    ...env,
    npm_config_cache: path.join(tmp, "npm-cache"),
    // node-gyp keeps the Node headers it downloads (where no nodedir is configured) under XDG_CACHE_HOME
    XDG_CACHE_HOME: path.join(tmp, "xdg-cache"),
    npm_config_fetch_timeout: "60000",
    npm_config_fetch_retries: "1",
    npm_config_audit: "false",
    npm_config_fund: "false",
    npm_config_update_notifier: "false",
    // npx runs the app's installed bin; never one fetched from the registry under the same name
    npm_config_yes: "false",
    NO_COLOR: "1"
  }
}

const running = new Set<ChildProcess>()

/** Runs `command …args` in `cwd`, killing its whole process group (npm's children too) after `timeoutMs`. */
const run = (
  command: string,
  args: ReadonlyArray<string>,
  cwd: string,
  timeoutMs: number,
  extraEnv: Record<string, string> = {}
) =>
  new Promise<Run>((resolve, reject) => {
    // its own process group, so a timeout also ends the compilers and scripts npm started
    const child = spawn(command, args, {
      cwd,
      env: { ...childEnv(), ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true
    })
    running.add(child)
    let stdout = ""
    let stderr = ""
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      kill(child)
    }, timeoutMs)
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("error", (error) => {
      clearTimeout(timer)
      running.delete(child)
      reject(error)
    })
    child.on("close", (code) => {
      clearTimeout(timer)
      running.delete(child)
      resolve({ code, stdout, stderr, timedOut })
    })
  })

const kill = (child: ChildProcess) => {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL")
  } catch {
    // already gone
  }
}

/** Fails with the command, how it ended and the end of its output, unless it exited 0. */
const ok = (label: string, result: Run): Run => {
  if (result.code === 0) return result
  const ending = result.timedOut ? "did not finish in time (killed)" : `exited with ${result.code}`
  throw new Error(
    `${label} ${ending}\n--- stdout\n${result.stdout.slice(-4000)}\n--- stderr\n${result.stderr.slice(-4000)}`
  )
}

const readJson = <A>(file: string): A => JSON.parse(fs.readFileSync(file, "utf8")) as A

interface PackResult {
  readonly filename: string
  readonly files: ReadonlyArray<{ readonly path: string }>
}

const repoPackage = readJson<{
  readonly license: string
  readonly dependencies?: Record<string, string>
  readonly peerDependencies: Record<string, string>
  readonly peerDependenciesMeta?: Record<string, { readonly optional?: boolean }>
}>(path.join(ROOT, "package.json"))

let tarball: string
let packedFiles: ReadonlyArray<string>

beforeAll(async () => {
  // a real pack: npm runs "prepare", so the tarball holds a fresh dist/
  const packed = ok("npm pack", await run("npm", ["pack", "--json", "--pack-destination", tmp], ROOT, 120_000))
  const [result] = JSON.parse(packed.stdout) as ReadonlyArray<PackResult>
  tarball = path.join(tmp, result!.filename)
  packedFiles = result!.files.map((f) => f.path).sort()
  fs.mkdirSync(UNPACKED)
  ok("tar", await run("tar", ["-xzf", tarball, "-C", UNPACKED], tmp, 30_000))
}, 150_000)

afterAll(() => {
  for (const child of running) kill(child)
  fs.rmSync(tmp, { recursive: true, force: true })
})

describe("the packed package", () => {
  const packageDir = () => path.join(UNPACKED, "package")

  it("npm pack --dry-run lists the bin, the build, LICENSE and README, and no tests or benchmarks", async () => {
    // the same listing without building again (the pack above just built dist/)
    const dry = ok(
      "npm pack --dry-run",
      await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], ROOT, 60_000)
    )
    const files = (JSON.parse(dry.stdout) as ReadonlyArray<PackResult>)[0]!.files.map((f) => f.path).sort()
    expect(files).toEqual(packedFiles)
    expect(files).toEqual(expect.arrayContaining([
      "LICENSE",
      "README.md",
      "package.json",
      "bin/effect-outbox.js",
      "dist/index.js",
      "dist/index.d.ts",
      "dist/cli/main.js"
    ]))
    expect(files.filter((f) => /^(test|bench)\//.test(f) || /\.test\.[cm]?[jt]s$/.test(f))).toEqual([])
  })

  it("every relative link in the packed README resolves to a file or folder in the package", () => {
    const readme = fs.readFileSync(path.join(packageDir(), "README.md"), "utf8")
    // inline links [text](target "title") and reference definitions [label]: target
    const targets = [
      ...[...readme.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!),
      ...[...readme.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/gm)].map((m) => m[1]!)
    ]
    const relative = targets.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith("#"))
    expect(relative.length).toBeGreaterThan(0)
    const unresolved = relative.filter((target) => {
      const resolved = path.resolve(packageDir(), decodeURIComponent(target.split("#")[0]!))
      return !resolved.startsWith(packageDir() + path.sep) || !fs.existsSync(resolved)
    })
    expect(unresolved, "README links that point outside the package or at nothing").toEqual([])
  })

  it("has a LICENSE with the license package.json names (MIT)", () => {
    const packedPackage = readJson<{ license: string }>(path.join(packageDir(), "package.json"))
    expect(packedPackage.license).toBe("MIT")
    const license = fs.readFileSync(path.join(packageDir(), "LICENSE"), "utf8")
    expect(license.split("\n")[0]).toBe("MIT License")
    expect(license).toContain("Permission is hereby granted, free of charge, to any person obtaining a copy")
  })

  it("needs neither tsx nor esbuild to run", () => {
    const dependencies = Object.keys(repoPackage.dependencies ?? {})
    expect(dependencies.filter((d) => d === "tsx" || d === "esbuild")).toEqual([])
    // no import of "tsx" or "tsx/…" in the launcher (its comment may name it)
    expect(fs.readFileSync(path.join(packageDir(), "bin", "effect-outbox.js"), "utf8")).not.toMatch(/["']tsx["'/]/)
  })
})

describe("installed into a new app with its peers, by the README's Install command", () => {
  let install: Run

  beforeAll(async () => {
    // fail fast and say why when the registry cannot be reached, rather than wait out npm's retries
    const registry = (await run("npm", ["config", "get", "registry"], tmp, 30_000)).stdout.trim()
    const ping = await run("npm", ["ping"], tmp, 30_000)
    if (ping.code !== 0) {
      throw new Error(
        `the npm registry (${registry}) is unreachable (npm ping ${
          ping.timedOut ? "timed out" : `exited with ${ping.code}`
        }): ` +
          `this test installs the packed package's peers from it\n${ping.stderr.slice(-2000)}`
      )
    }

    fs.mkdirSync(APP)
    // what a gateway's project has: ESM, and the native SQLite driver's install script allowed
    fs.writeFileSync(
      path.join(APP, "package.json"),
      JSON.stringify(
        { name: "gateway-app", private: true, type: "module", allowScripts: { "better-sqlite3": true } },
        null,
        2
      )
    )
    fs.writeFileSync(
      path.join(APP, "tsconfig.json"),
      JSON.stringify(
        {
          compilerOptions: {
            target: "ES2022",
            module: "nodenext",
            moduleResolution: "nodenext",
            strict: true,
            skipLibCheck: true,
            noEmit: true
          },
          files: ["gateway.ts"]
        },
        null,
        2
      )
    )
    fs.writeFileSync(
      path.join(APP, "gateway.ts"),
      [
        `import { Effect } from "effect"`,
        `import { Outbox } from "effect-outbox"`,
        ``,
        `// the library's service, asked for through the app's own effect, as a gateway asks for it`,
        `export const program: Effect.Effect<void, never, Outbox.Outbox> = Effect.gen(function*() {`,
        `  yield* Outbox.Outbox`,
        `})`,
        ``,
        `// the import has real types, not any`,
        `// @ts-expect-error the Outbox tag is not a number`,
        `export const wrong: number = Outbox.Outbox`,
        ``
      ].join("\n")
    )

    const command = installCommand()
    // about 70 s on a quiet 2-core machine, mostly compiling better-sqlite3; near 200 s with other test suites running
    install = ok(`npm ${command.join(" ")}`, await run("npm", [...command, "--no-audit", "--no-fund"], APP, 330_000))
  }, 360_000)

  /** The README's Install command, as npm arguments, with the tarball in place of the registry's effect-outbox. */
  const installCommand = (): ReadonlyArray<string> => {
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8")
    const section = /\n## Install\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? ""
    const line = /^npm install effect-outbox .*$/m.exec(section)?.[0]
    if (line === undefined) {
      throw new Error("README.md has no `npm install effect-outbox …` line in its Install section")
    }
    const [, , ...packages] = line.trim().split(/\s+/)
    // every required peer is in the command, so it installs exactly what the package asks for; an optional one
    // (a ready channel's client library) is installed only by the gateways that use that channel
    const named = packages.map((p) => p.replace(/(.)@[^@]*$/, "$1"))
    const missing = Object.keys(repoPackage.peerDependencies).filter((peer) =>
      !named.includes(peer) && repoPackage.peerDependenciesMeta?.[peer]?.optional !== true
    )
    if (missing.length > 0) throw new Error(`README's Install command lacks the peers ${missing.join(", ")}`)
    return ["install", ...packages.map((p) => (p === "effect-outbox" ? tarball : p))]
  }

  it("installs with no ERESOLVE, one copy of effect, every peer satisfied, and no tsx or esbuild", async () => {
    expect(install.stdout + install.stderr).not.toContain("ERESOLVE")
    ok("npm ls --all", await run("npm", ["ls", "--all"], APP, 60_000))
    const copies = (await run("npm", ["ls", "effect", "--all", "--parseable"], APP, 60_000)).stdout.trim().split("\n")
    expect(copies).toEqual([path.join(APP, "node_modules", "effect")])
    for (const name of ["tsx", "esbuild"]) expect(fs.existsSync(path.join(APP, "node_modules", name)), name).toBe(false)
  })

  it("typechecks `import { Outbox } from \"effect-outbox\"` under module/moduleResolution nodenext with skipLibCheck", async () => {
    ok("tsc", await run(process.execPath, [TSC, "-p", "tsconfig.json"], APP, 120_000))
  })

  it("imports at run time from the app", async () => {
    const script =
      `import { Outbox, SqliteOutboxRepo } from "effect-outbox"; console.log(typeof Outbox.Outbox, typeof SqliteOutboxRepo.layerFile)`
    const result = ok("node", await run(process.execPath, ["--input-type=module", "-e", script], APP, 30_000))
    expect(result.stdout.trim()).toBe("function function")
  })

  it("the README's quick start (examples/quickstart.ts, importing effect-outbox) compiles and delivers its reply in the app", async () => {
    const source = fs.readFileSync(path.join(ROOT, "examples", "quickstart.ts"), "utf8").replaceAll(
      "../src/index.js",
      "effect-outbox"
    )
    fs.writeFileSync(path.join(APP, "quickstart.ts"), source)
    fs.writeFileSync(
      path.join(APP, "tsconfig.quickstart.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          skipLibCheck: true,
          outDir: "out"
        },
        files: ["quickstart.ts"]
      })
    )
    ok("tsc quickstart", await run(process.execPath, [TSC, "-p", "tsconfig.quickstart.json"], APP, 120_000))
    const started = await run(process.execPath, [path.join(APP, "out", "quickstart.js")], APP, 60_000, {
      OUTBOX_DB: path.join(APP, "quickstart.db")
    })
    const result = ok("node quickstart", started)
    expect(result.stdout).toContain("-> user-42: Hello!")
  })

  it("the shipped channels import by path (effect-outbox/channels/…), examples/channels.ts compiles in the app, their internals stay hidden", async () => {
    const source = fs.readFileSync(path.join(ROOT, "examples", "channels.ts"), "utf8")
      .replaceAll("../src/index.js", "effect-outbox")
      .replace(/"\.\.\/src\/channels\/(\w+)\.js"/g, `"effect-outbox/channels/$1"`)
    fs.writeFileSync(path.join(APP, "channels.ts"), source)
    fs.writeFileSync(
      path.join(APP, "tsconfig.channels.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          skipLibCheck: true,
          noEmit: true
        },
        files: ["channels.ts"]
      })
    )
    ok("tsc channels", await run(process.execPath, [TSC, "-p", "tsconfig.channels.json"], APP, 120_000))
    const script = [
      `const names = ["Webhook", "Telegram", "Slack"]`,
      `const modules = await Promise.all(names.map((n) => import("effect-outbox/channels/" + n)))`,
      `console.log(modules.map((m) => typeof m.make + "/" + typeof m.makeConfig).join(" "))`,
      `await import("effect-outbox/channels/internal/http").then(() => console.log("internal exported"), (e) => console.log(e.code))`
    ].join("\n")
    const result = ok("node", await run(process.execPath, ["--input-type=module", "-e", script], APP, 30_000))
    expect(result.stdout.trim().split("\n")).toEqual([
      "function/function function/function function/function",
      "ERR_PACKAGE_PATH_NOT_EXPORTED"
    ])
  })

  it("npx effect-outbox --help runs the installed CLI", async () => {
    const help = ok("npx effect-outbox --help", await run("npx", ["effect-outbox", "--help"], APP, 60_000))
    expect(help.stdout).toContain("effect-outbox")
    expect(help.stdout).toContain("stats")
    // npm's own notices about the machine's configuration may come first; the CLI adds nothing
    expect(help.stderr.split("\n").filter((l) => l !== "" && !l.startsWith("npm warn"))).toEqual([])
  })

  it("npx effect-outbox stats reads a database the installed CLI's demo made", async () => {
    const db = path.join(APP, "demo.db")
    ok(
      "npx effect-outbox demo",
      await run("npx", ["effect-outbox", "demo", "--messages", "12", "--json", "--db", db], APP, 90_000)
    )
    const stats = ok("npx effect-outbox stats", await run("npx", ["effect-outbox", "stats", "--db", db], APP, 60_000))
    expect(stats.stdout).toContain(`outbox ${db}: 12 entries`)
    const json = ok(
      "npx effect-outbox stats --json",
      await run("npx", ["effect-outbox", "stats", "--json", "--db", db], APP, 60_000)
    )
    expect(JSON.parse(json.stdout)).toMatchObject({ database: db, total: 12 })
  })
})
