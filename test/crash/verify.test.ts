/** The crash checks catch what they are for: each made-up run below breaks one promise and is reported. */
import { describe, expect, it } from "vitest"
import { type MessageSpec, verify } from "./harness.js"

const spec = (conversation: string, seq: number, parts = 1): MessageSpec => ({
  key: `${conversation}:${seq}`,
  conversation,
  seq,
  parts,
  live: false
})
const specs = [spec("a", 0), spec("a", 1, 2), spec("b", 0)]
const rows = [
  { id: "A0", key: "a:0", state: "delivered" },
  { id: "A1", key: "a:1", state: "delivered" },
  { id: "B0", key: "b:0", state: "delivered" }
]
const sends = [
  { entryId: "A0", partIndex: 0 },
  { entryId: "B0", partIndex: 0 },
  { entryId: "A1", partIndex: 0 },
  { entryId: "A1", partIndex: 1 }
]
const run = (overrides: Partial<Parameters<typeof verify>[0]> = {}) =>
  verify({ specs, rows, sends, inFlightAtKills: [new Set<string>()], perKillBound: 1, ...overrides })

describe("crash checks", () => {
  it("a clean run has no violations", () => {
    expect(run()).toMatchObject({ lost: 0, duplicates: 0, violations: [] })
  })

  it("a message never stored, or a part never sent, is lost", () => {
    expect(run({ rows: rows.filter((r) => r.id !== "B0") }).lost).toBe(1)
    const partial = run({ sends: sends.filter((s) => !(s.entryId === "A1" && s.partIndex === 1)) })
    expect(partial.lost).toBe(1)
    expect(partial.violations.join("\n")).toMatch(
      /1 messages lost: a:1 \(A1, delivered\)[\s\S]*delivered without being sent: A1/
    )
  })

  it("a duplicate of a row that was not in flight at a kill is a violation; one that was is counted", () => {
    const twice = [...sends, { entryId: "B0", partIndex: 0 }]
    expect(run({ sends: twice }).violations.join("\n")).toMatch(
      /entry B0 was sent 2 times but found in flight after 0 kills/
    )
    const explained = run({ sends: twice, inFlightAtKills: [new Set(["B0"])] })
    expect(explained).toMatchObject({ duplicates: 1, duplicatedEntries: 1, violations: [] })
  })

  it("more duplicates than the per-kill bound allows is a violation", () => {
    const dups = [...sends, { entryId: "B0", partIndex: 0 }, { entryId: "A0", partIndex: 0 }]
    const r = run({ sends: dups, inFlightAtKills: [new Set(["A0", "B0"])], perKillBound: 1 })
    expect(r.violations).toEqual(["2 duplicates exceed 1"])
  })

  it("a conversation whose first sends are out of enqueue order is a violation", () => {
    const swapped = [sends[2]!, sends[3]!, sends[0]!, sends[1]!]
    expect(run({ sends: swapped }).violations).toEqual(["conversation a: message 1 was first sent before message 0"])
  })

  it("rows left in flight or queued are violations", () => {
    const stuck = rows.map((
      r
    ) => (r.id === "B0" ? { ...r, state: "in_flight" } : r.id === "A0" ? { ...r, state: "queued" } : r))
    expect(run({ rows: stuck }).violations).toEqual(
      expect.arrayContaining(["1 rows end in_flight", "1 rows end queued"])
    )
  })

  it("sends of entries the table does not know are violations", () => {
    expect(run({ sends: [...sends, { entryId: "ZZ", partIndex: 0 }] }).violations).toEqual([
      "sends of entries not in the table: ZZ"
    ])
  })
})
