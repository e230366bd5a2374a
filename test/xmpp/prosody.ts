/**
 * A real Prosody server for the XMPP tests, owned by the test: a temporary directory with a config this file writes,
 * accounts registered with `prosodyctl --config <file> register`, and `prosody -F` as a child process that the test
 * starts, stops (SIGTERM, a graceful shutdown), freezes (SIGSTOP) or kills. Never the system service.
 *
 * Two virtual hosts on one loopback port, no TLS (no certificate needed): the gateway's host has mod_smacks
 * (XEP-0198, in Prosody's core since 0.12), the reader's host has none, so a reader never gets a message twice
 * from the server's own stream-management redelivery (Prosody re-queues a client's unacknowledged stanzas into
 * offline storage when it shuts down): every copy the reader sees came from the gateway. Messages to a reader
 * that is offline (the gateway reconnected first after a restart) wait in offline storage, on disk.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

/** The gateway's host (stream management on). */
export const GATEWAY_HOST = "gw.outbox.test"
/** The reader's host (no stream management). */
export const READER_HOST = "rx.outbox.test"

/** A binary on PATH, or undefined. */
const onPath = (name: string): string | undefined =>
  (process.env["PATH"] ?? "").split(path.delimiter).map((dir) => path.join(dir, name)).find((file) => {
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })

/** Why Prosody cannot run here, or undefined when both `prosody` and `prosodyctl` are installed. */
export const unavailable = (): string | undefined => {
  const missing = ["prosody", "prosodyctl"].filter((name) => onPath(name) === undefined)
  return missing.length === 0 ? undefined : `${missing.join(" and ")} not found on PATH`
}

/** True where a missing Prosody must fail the run instead of skipping it (CI; `.ci/run` installs Prosody). */
export const required = (): boolean => process.env["CI"] !== undefined || process.env["OUTBOX_REQUIRE_PROSODY"] === "1"

/** A loopback port nobody listens on right now. */
const freePort = Effect.async<number, Error>((resume) => {
  const server = net.createServer()
  server.once("error", (error) => resume(Effect.fail(error)))
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Resolves when a TCP connection to the port is accepted, fails when it is refused. */
const probe = (port: number) =>
  Effect.async<void, Error>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.void)
    })
    socket.once("error", (error) => {
      socket.destroy()
      resume(Effect.fail(error))
    })
  })

const config = (dir: string, port: number) =>
  `-- written by test/xmpp/prosody.ts
pidfile = "${dir}/prosody.pid"
data_path = "${dir}/data"
certificates = "${dir}/certs"
run_as_root = true
log = { { levels = { min = "warn" }, to = "console" } }
modules_enabled = { "roster", "saslauth", "disco", "ping", "smacks", "offline", "posix" }
modules_disabled = { "s2s" }
c2s_ports = { ${port} }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = {}
legacy_ssl_ports = {}
s2s_ports = {}
c2s_require_encryption = false
authentication = "internal_hashed"
storage = "internal"
VirtualHost "${GATEWAY_HOST}"
VirtualHost "${READER_HOST}"
  modules_disabled = { "smacks" }
`

/** A Prosody instance owned by the test. */
export interface Prosody {
  readonly port: number
  readonly service: string
  /** `prosodyctl register` (the server need not run) */
  readonly register: (user: string, host: string, password: string) => Effect.Effect<void, Error>
  /** starts `prosody -F` and waits until its port accepts connections (15 s deadline) */
  readonly start: Effect.Effect<void, Error>
  /** SIGTERM (a graceful shutdown) and waits for the exit (15 s deadline, then SIGKILL) */
  readonly stop: Effect.Effect<void>
  /** SIGSTOP: the port still accepts bytes, nothing answers */
  readonly freeze: Effect.Effect<void>
  /** SIGCONT */
  readonly thaw: Effect.Effect<void>
  /** what the server wrote to stdout and stderr (warnings and errors) */
  readonly log: () => string
}

/** A configured (not yet started) Prosody in a fresh directory; closing the scope kills it and removes the directory. */
export const make: Effect.Effect<Prosody, Error, Scope.Scope> = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => fs.mkdtempSync(path.join(os.tmpdir(), "outbox-prosody-"))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
  fs.mkdirSync(path.join(dir, "data"))
  fs.mkdirSync(path.join(dir, "certs"))
  const port = yield* freePort
  const file = path.join(dir, "prosody.cfg.lua")
  fs.writeFileSync(file, config(dir, port))
  let child: ChildProcess | undefined
  let output = ""

  const exited = (proc: ChildProcess) =>
    Effect.async<void>((resume) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resume(Effect.void)
      proc.once("exit", () => resume(Effect.void))
    })

  const stop = Effect.suspend(() => {
    const proc = child
    if (proc === undefined) return Effect.void
    child = undefined
    proc.kill("SIGCONT") // a frozen server cannot handle SIGTERM
    proc.kill("SIGTERM")
    return exited(proc).pipe(
      Effect.timeout(Duration.seconds(15)),
      Effect.catchAll(() => Effect.zipRight(Effect.sync(() => proc.kill("SIGKILL")), exited(proc)))
    )
  })
  yield* Effect.addFinalizer(() => stop)

  const start = Effect.gen(function*() {
    if (child !== undefined) return yield* Effect.fail(new Error("prosody is already running"))
    const proc = spawn("prosody", ["--config", file, "-F"], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
    child = proc
    proc.stdout!.setEncoding("utf8").on("data", (d: string) => (output += d))
    proc.stderr!.setEncoding("utf8").on("data", (d: string) => (output += d))
    yield* probe(port).pipe(
      Effect.retry({
        schedule: Schedule.spaced(Duration.millis(50)),
        while: () => proc.exitCode === null && proc.signalCode === null
      }),
      Effect.timeoutFail({
        duration: Duration.seconds(15),
        onTimeout: () => new Error(`prosody did not listen on ${port} within 15 s:\n${output}`)
      }),
      Effect.mapError((error) => new Error(`prosody did not start: ${error.message}\n${output}`))
    )
  })

  const register = (user: string, host: string, password: string) =>
    Effect.async<void, Error>((resume) => {
      execFile("prosodyctl", ["--config", file, "register", user, host, password], (error, stdout, stderr) =>
        resume(
          error === null
            ? Effect.void
            : Effect.fail(new Error(`prosodyctl register ${user}@${host} failed: ${error.message}\n${stdout}${stderr}`))
        ))
    })

  const signal = (name: NodeJS.Signals) => Effect.sync(() => void child?.kill(name))
  return {
    port,
    service: `xmpp://127.0.0.1:${port}`,
    register,
    start,
    stop,
    freeze: signal("SIGSTOP"),
    thaw: signal("SIGCONT"),
    log: () => output
  }
})
