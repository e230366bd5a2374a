import * as SqliteOutboxRepo from "../../src/SqliteOutboxRepo.js"
import { outboxRepoContract } from "./contract.js"
import { tempDatabases } from "../support/files.js"

const databases = tempDatabases("contract")

outboxRepoContract("sqlite file", () => SqliteOutboxRepo.layerFile({ filename: databases.fresh() }))
