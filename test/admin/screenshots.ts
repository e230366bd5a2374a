/**
 * Takes the README's screenshots of the board (desktop 1280 px and phone 390 px wide) on the seeded rows.
 * Run: npx tsx test/admin/screenshots.ts   (writes docs/board-desktop.jpg, board-entry.jpg, board-phone.jpg and
 * board-phone-entries.jpg: JPEG at the viewport's size, small enough to ship in the package with the README)
 */
import * as Effect from "effect/Effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Outbox } from "../../src/Outbox.js"
import { launch } from "./browser.js"
import { seedRows } from "./seed.js"
import { startBoard } from "./support.js"

const JPEG = { type: "jpeg", quality: 80 } as const
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-shots-"))
// inside a gateway with two channels, so the live feed has this process's events to show
let sent = 0
const board = await startBoard({
  filename: path.join(dir, "board.db"),
  rows: seedRows(Date.now()),
  channels: {
    telegram: { sendText: () => Promise.resolve({ messageId: `tg-${++sent}` }) },
    slack: { sendText: () => Promise.reject(Object.assign(new Error("HTTP 502 Bad Gateway"), { status: 502 })) }
  }
})
const replies = [
  { channel: "telegram", to: "chat-77", payloads: [{ text: "Your parcel is on its way." }] },
  { channel: "slack", to: "C0456", payloads: [{ text: "Deploy finished." }] },
  { channel: "telegram", to: "chat-78", payloads: [{ text: "Thanks, noted!" }] }
]
const browser = await launch()
try {
  const page = await browser.context.newPage()
  await page.goto(board.url)
  await page.locator("#entries tbody tr").first().waitFor()
  for (const reply of replies) {
    await board.run(Effect.ignore(Effect.flatMap(Outbox, (outbox) => outbox.deliver(reply))))
  }
  await page.locator("#feed li").nth(4).waitFor()
  await page.waitForTimeout(2500) // the counts refresh after the events
  await page.screenshot({ path: "docs/board-desktop.jpg", ...JPEG })
  await page.locator("#entries tbody tr[data-id=PARTS]").click()
  await page.locator("#entry .part").first().waitFor()
  await page.screenshot({ path: "docs/board-entry.jpg", ...JPEG })
  const phone = await browser.context.newPage()
  await phone.setViewportSize({ width: 390, height: 844 })
  await phone.goto(board.url)
  await phone.locator("#entries tbody tr").first().waitFor()
  await phone.screenshot({ path: "docs/board-phone.jpg", ...JPEG })
  await phone.locator("#filters").evaluate((node) => node.scrollIntoView({ block: "start" }))
  await phone.waitForTimeout(300)
  await phone.screenshot({ path: "docs/board-phone-entries.jpg", ...JPEG })
} finally {
  await browser.close()
  await board.close()
  fs.rmSync(dir, { recursive: true, force: true })
}
