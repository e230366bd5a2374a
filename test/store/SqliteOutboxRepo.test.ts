import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { tempDatabases } from "../support/files.js"
import { outboxRepoContract } from "./contract.js"

const databases = tempDatabases("contract")

outboxRepoContract("sqlite file", () => SqliteOutboxRepo.layerFile({ filename: databases.fresh() }))
