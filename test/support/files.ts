/** File-system helpers for tests. */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"

/** Every file under `dir` with the hash of its bytes: any delete, move, rename or rewrite changes it. */
export const snapshot = (dir: string): Array<string> =>
  (fs.readdirSync(dir, { recursive: true, withFileTypes: true }) as Array<fs.Dirent>)
    .filter((e) => e.isFile())
    .map((e) => {
      const full = path.join(e.parentPath, e.name)
      return `${path.relative(dir, full)} ${crypto.createHash("sha256").update(fs.readFileSync(full)).digest("hex")}`
    })
    .sort()

/** A temporary directory for one test file's databases, removed after its tests; `fresh()` names a new file in it. */
export const tempDatabases = (name: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `outbox-${name}-`))
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))
  let n = 0
  return { dir, fresh: () => path.join(dir, `${name}-${++n}.db`) }
}
