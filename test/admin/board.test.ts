/**
 * The board's page in a real browser (Debian's Chromium, driven by playwright-core), against boards on seeded SQLite
 * files: filtering by state, an entry's parts and last error, a retry confirmed in the page and checked in the
 * database, a read-only board, a reply made of markup that must stay text, and a board with a token on every
 * interface. One browser for the file.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type { BrowserContext, Page } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { OutboxRepo } from "../../src/OutboxRepo.js"
import { entryId } from "../support/entries.js"
import { tempDatabases } from "../support/files.js"
import { CHROMIUM, hasChromium, launch } from "./browser.js"
import { HOSTILE, seedRows } from "./seed.js"
import type { Board } from "./support.js"
import { startBoard } from "./support.js"

const databases = tempDatabases("admin-browser")
const TOKEN = "browser-test-token-0123456789abcdef"

const stateOf = (board: Board, id: string) =>
  board.run(Effect.map(Effect.flatMap(OutboxRepo, (repo) => repo.get(entryId(id))), Option.map((e) => e.state)))

let browser: { readonly context: BrowserContext; readonly close: () => Promise<void> }
let board: Board
let readOnly: Board
let guarded: Board

beforeAll(async () => {
  if (!hasChromium()) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run installs it when missing)`)
  }
  const now = Date.now()
  ;[browser, board, readOnly, guarded] = await Promise.all([
    launch(),
    startBoard({ filename: databases.fresh(), rows: seedRows(now) }),
    startBoard({ filename: databases.fresh(), rows: seedRows(now), admin: { readOnly: true } }),
    startBoard({
      filename: databases.fresh(),
      rows: seedRows(now),
      admin: { host: "0.0.0.0", token: Redacted.make(TOKEN) }
    })
  ])
}, 30_000)

afterAll(async () => {
  await Promise.all([browser?.close(), board?.close(), readOnly?.close(), guarded?.close()])
})

/** A new page on `target`, once its table has rows; fails the test on any script error in the page. */
const open = async (target: Board): Promise<Page> => {
  const page = await browser.context.newPage()
  page.on("pageerror", (error) => {
    throw error
  })
  await page.goto(target.url)
  await page.locator("#entries tbody tr").first().waitFor()
  return page
}

describe("the board in a browser", () => {
  it("filters the table by state", async () => {
    const page = await open(board)
    await page.locator("#f-state").selectOption("failed_terminal")
    await page.locator("#filters button[type=submit]").click()
    await expect.poll(() => page.locator("#entries tbody tr[data-state=delivered]").count()).toBe(0)
    const states = await page.locator("#entries tbody tr").evaluateAll((rows) =>
      rows.map((r) => r.getAttribute("data-state"))
    )
    expect(states).toEqual(["failed_terminal", "failed_terminal", "failed_terminal", "failed_terminal"])
    // the bulk retry is offered for a failed state
    expect(await page.locator("#retry-all").isVisible()).toBe(true)
    await page.close()
  })

  it("shows an entry's parts, the delivered one marked, and its last error", async () => {
    const page = await open(board)
    await page.locator("#entries tbody tr[data-id=PARTS]").click()
    await page.locator("#entry .part").first().waitFor()
    const parts = await page.locator("#entry .part").evaluateAll((nodes) =>
      nodes.map((n) => [n.classList.contains("done"), n.querySelector("pre")?.textContent])
    )
    expect(parts).toEqual([[true, "Step 1: open the app."], [false, "Step 2: tap Settings."], [
      false,
      "Step 3: choose Notifications."
    ]])
    expect(await page.locator("[data-testid=last-error]").textContent()).toBe(
      "part 1 (media): HTTP 429 Too Many Requests, retry after 30 s"
    )
    // a retrying entry is not offered a manual retry
    expect(await page.locator("#entry-retry").isVisible()).toBe(false)
    await page.close()
  })

  it("retries a failed_terminal entry after a confirmation: queued in the database", async () => {
    const page = await open(board)
    await page.locator("#f-state").selectOption("failed_terminal")
    await page.locator("#filters button[type=submit]").click()
    await page.locator("#entries tbody tr[data-id=FAILED-1]").click()
    await page.locator("#entry-retry").click()
    // cancelling changes nothing
    await page.locator("#confirm button[value=cancel]").click()
    expect(await stateOf(board, "FAILED-1")).toEqual(Option.some("failed_terminal"))
    await page.locator("#entry-retry").click()
    expect(await page.locator("#confirm-text").textContent()).toMatch(/^Requeue entry FAILED-1 \(failed_terminal\)/)
    const answered = page.waitForResponse((r) => r.url().endsWith("/api/entries/FAILED-1/retry"))
    await page.locator("#confirm-ok").click()
    expect((await answered).status()).toBe(200)
    expect(await stateOf(board, "FAILED-1")).toEqual(Option.some("queued"))
    await expect.poll(() => page.locator("#entry dl").textContent()).toMatch(/statequeued/)
    expect(await page.locator("#entry-retry").isVisible()).toBe(false)
    await page.close()
  })

  it("shows a reply made of markup as text: its <script> never runs", async () => {
    const page = await open(board)
    await page.locator("#entries tbody tr[data-id=HOSTILE]").click()
    await page.locator("#entry .part pre").waitFor()
    expect(await page.locator("#entry .part pre").textContent()).toBe(HOSTILE)
    expect(await page.locator("#entries tbody tr[data-id=HOSTILE] td.reply").textContent()).toContain("<script>")
    expect(await page.locator("[data-testid=last-error]").textContent()).toContain("<img src=x onerror=")
    expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined()
    // no element came from the reply's markup
    expect(await page.locator("#entry script, #entry img, #entries img").count()).toBe(0)
    await page.close()
  })
})

describe("a read-only board in a browser", () => {
  it("hides the retry and prune buttons, and the API refuses a retry anyway", async () => {
    const page = await open(readOnly)
    expect(await page.locator("#mode").textContent()).toContain("read-only")
    await page.locator("#f-state").selectOption("failed_terminal")
    await page.locator("#filters button[type=submit]").click()
    await page.locator("#entries tbody tr[data-id=FAILED-2]").click()
    await page.locator("#entry .part").first().waitFor()
    expect(await page.locator("#entry-retry").isVisible()).toBe(false)
    expect(await page.locator("#retry-all").isVisible()).toBe(false)
    expect(await page.locator("#prune").isVisible()).toBe(false)
    const status = await page.evaluate(() =>
      fetch("api/entries/FAILED-2/retry", { method: "POST", headers: { "content-type": "application/json" } })
        .then((r) => r.status)
    )
    expect(status).toBe(403)
    expect(await stateOf(readOnly, "FAILED-2")).toEqual(Option.some("failed_terminal"))
    await page.close()
  })
})

describe("a board on every interface, with a token, in a browser", () => {
  it("refuses the page's requests without the token and asks for it; the token opens it", async () => {
    const page = await browser.context.newPage()
    await page.goto(guarded.url)
    await page.locator("#login").waitFor()
    expect(await page.locator("#board").isHidden()).toBe(true)
    const refused = await page.evaluate(() =>
      Promise.all(["api/stats", "api/entries", "metrics"].map((path) => fetch(path).then((r) => r.status)))
    )
    expect(refused).toEqual([401, 401, 401])
    await page.locator("#token").fill("not-the-token-0000000000")
    await page.locator("#login-form button").click()
    await expect.poll(() => page.locator("#login-error").textContent()).toContain("not the board's token")
    await page.locator("#token").fill(TOKEN)
    await page.locator("#login-form button").click()
    await page.locator("#entries tbody tr").first().waitFor()
    expect(await page.locator("#login").isHidden()).toBe(true)
    await page.close()
  })
})
