/**
 * Measuring helpers for `bench/pipeline.ts`: CPU per message, event-loop lag, memory, percentiles, and the child
 * processes each section runs in (so a section's peak RSS is its own). No library code here.
 */
import * as FiberRef from "effect/FiberRef"
import type * as Scheduler from "effect/Scheduler"
import { spawnSync } from "node:child_process"
import * as os from "node:os"
import { monitorEventLoopDelay, performance } from "node:perf_hooks"

export const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The nearest-rank percentile `p` (0–100) of `xs`. */
export const percentile = (xs: ReadonlyArray<number>, p: number) => {
  if (xs.length === 0) return Number.NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

/** User + system CPU of the whole process (all threads: V8's parallel GC helpers count too), in µs. */
export const cpuMicros = () => {
  const u = process.cpuUsage()
  return u.user + u.system
}

export interface LagReport {
  /** the longest time between two firings of a 5 ms `setInterval` (or from the last firing to the end), ms */
  readonly timerMaxGapMs: number
  /**
   * the most CPU the process used between two firings (process.cpuUsage, all threads): the gap this process caused
   * itself, which stays meaningful when other processes load the machine and stretch the wall-clock gap
   */
  readonly timerMaxGapCpuMs: number
  /** firings seen, against the duration / 5 ms that an idle loop would give */
  readonly timerFirings: number
  readonly timerExpected: number
  /**
   * `monitorEventLoopDelay` (resolution 1 ms): max and p99 delay, ms. It samples on the loop itself, so a loop that
   * never turned records nothing: then both are the section's whole duration (the delay was at least that).
   */
  readonly loopDelayMaxMs: number
  readonly loopDelayP99Ms: number
}

/** Starts watching the event loop; the returned function stops and reports. */
export const watchEventLoop = (): () => LagReport => {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  const start = performance.now()
  let last = start
  let maxGap = 0
  let maxGapCpu = 0
  let lastCpu = process.cpuUsage()
  let firings = 0
  const timer = setInterval(() => {
    const now = performance.now()
    const cpu = process.cpuUsage(lastCpu)
    maxGap = Math.max(maxGap, now - last)
    maxGapCpu = Math.max(maxGapCpu, (cpu.user + cpu.system) / 1000)
    last = now
    lastCpu = process.cpuUsage()
    firings++
  }, 5)
  return () => {
    const end = performance.now()
    clearInterval(timer)
    histogram.disable()
    return {
      timerMaxGapMs: Math.max(maxGap, end - last), // a loop that never let the timer fire still shows its gap
      timerMaxGapCpuMs: (() => {
        const cpu = process.cpuUsage(lastCpu)
        return Math.max(maxGapCpu, (cpu.user + cpu.system) / 1000)
      })(),
      timerFirings: firings,
      timerExpected: Math.floor((end - start) / 5),
      loopDelayMaxMs: histogram.count === 0 ? end - start : histogram.max / 1e6,
      loopDelayP99Ms: histogram.count === 0 ? end - start : histogram.percentile(99) / 1e6
    }
  }
}

export interface MemoryReport {
  /** the process's peak resident set (`resourceUsage().maxRSS`, the kernel's figure for the whole child), MiB */
  readonly maxRssMiB: number
  /** the largest of each `memoryUsage()` field seen by a 20 ms sampler (it misses what a starved loop hides), MiB */
  readonly peakHeapUsedMiB: number
  readonly peakHeapTotalMiB: number
  readonly peakExternalMiB: number
  /** the heap still reachable at the end, after a full collection (needs `--expose-gc`; the children get it), MiB */
  readonly heapAfterGcMiB: number
}

const MiB = 1024 * 1024

/** Samples `process.memoryUsage()` every 20 ms; the returned function stops and reports. */
export const watchMemory = (): () => MemoryReport => {
  let heapUsed = 0
  let heapTotal = 0
  let external = 0
  const sample = () => {
    const m = process.memoryUsage()
    heapUsed = Math.max(heapUsed, m.heapUsed)
    heapTotal = Math.max(heapTotal, m.heapTotal)
    external = Math.max(external, m.external)
  }
  const timer = setInterval(sample, 20)
  return () => {
    clearInterval(timer)
    sample()
    const gc = (globalThis as { gc?: () => void }).gc
    gc?.()
    return {
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
      peakHeapUsedMiB: heapUsed / MiB,
      peakHeapTotalMiB: heapTotal / MiB,
      peakExternalMiB: external / MiB,
      heapAfterGcMiB: gc === undefined ? Number.NaN : process.memoryUsage().heapUsed / MiB
    }
  }
}

/** The figures a child reports: numbers by name, in one `RESULT {json}` line on stdout. */
export type Figures = Record<string, number>

export const report = (figures: Figures) => {
  console.log(`RESULT ${JSON.stringify({ ...figures, load1m: os.loadavg()[0]! })}`)
}

/** Runs `script --child section args` in a fresh node (with `--expose-gc`) and returns its figures. */
export const runChild = (script: string, section: string, args: Record<string, unknown>): Figures => {
  const child = spawnSync(process.execPath, ["--expose-gc", script, "--child", section, JSON.stringify(args)], {
    encoding: "utf8",
    maxBuffer: 64 * MiB,
    env: process.env
  })
  const line = child.stdout.split("\n").find((l) => l.startsWith("RESULT "))
  if (child.status !== 0 || line === undefined) {
    throw new Error(
      `${script} ${section} exited ${child.status ?? child.signal}:\n${child.stdout.slice(-2000)}\n${
        child.stderr.slice(-4000)
      }`
    )
  }
  return JSON.parse(line.slice("RESULT ".length)) as Figures
}

/**
 * A what-if for the fairness fix (SCHEDULER=sliced): an Effect scheduler that runs queued fiber steps for at most
 * `budgetMs`, then lets Node's event loop turn (`setImmediate`) before the next slice. Effect's default scheduler
 * chains up to 2,048 microtask drains before it lets a macrotask run, so every fiber a journal batch resumes runs
 * before any timer or socket does. Not the library's default: the bench installs it around a whole section.
 */
export const slicedScheduler = (budgetMs: number): Scheduler.Scheduler => {
  let queue: Array<Scheduler.Task> = []
  let head = 0
  let running = false
  const slice = () => {
    const until = performance.now() + budgetMs
    while (head < queue.length && performance.now() < until) queue[head++]!()
    if (head < queue.length) {
      if (head > 4096) {
        queue = queue.slice(head)
        head = 0
      }
      setImmediate(slice)
      return
    }
    queue = []
    head = 0
    running = false
  }
  return {
    shouldYield: (fiber) =>
      fiber.currentOpCount > fiber.getFiberRef(FiberRef.currentMaxOpsBeforeYield)
        ? fiber.getFiberRef(FiberRef.currentSchedulingPriority)
        : false,
    scheduleTask: (task) => {
      queue.push(task)
      if (!running) {
        running = true
        setImmediate(slice)
      }
    }
  }
}
