import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { outboxRepoContract } from "./contract.js"

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "outbox-contract-"))
let n = 0

outboxRepoContract("sqlite file", () => SqliteOutboxRepo.layerFile({ filename: path.join(dir, `contract-${++n}.db`) }))
