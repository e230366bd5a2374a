/** Debian's Chromium driven by playwright-core, for the board's browser tests and screenshots. */
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { BrowserContext } from "playwright-core"
import { chromium } from "playwright-core"

/** Where Debian installs Chromium (`apt-get install chromium`; `.ci/run` does when it is missing). */
export const CHROMIUM = process.env.OUTBOX_CHROMIUM ?? "/usr/bin/chromium"

/** Whether the browser is installed. */
export const hasChromium = (): boolean => fs.existsSync(CHROMIUM)

/** Launches Chromium headless with a fresh profile (removed by `close`); no network beyond what the page asks. */
export const launch = async (): Promise<{ readonly context: BrowserContext; readonly close: () => Promise<void> }> => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-chromium-"))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync"
    ],
    viewport: { width: 1280, height: 900 }
  })
  return {
    context,
    close: async () => {
      await context.close()
      fs.rmSync(profile, { recursive: true, force: true })
    }
  }
}
