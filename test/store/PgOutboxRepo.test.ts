import { freshStore } from "../support/pg.js"
import { outboxRepoContract } from "./contract.js"

// the local PostgreSQL (.ci/run starts it); each test gets its own schema, dropped after it
outboxRepoContract("postgresql", () => freshStore().layer)
