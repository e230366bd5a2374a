import * as MemoryOutboxRepo from "../../src/MemoryOutboxRepo.js"
import { outboxRepoContract } from "./contract.js"

outboxRepoContract("memory", () => MemoryOutboxRepo.layer)
