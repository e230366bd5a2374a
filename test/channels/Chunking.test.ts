import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import * as Chunking from "../../src/Chunking.js"

/** Checks that `chunks` are `text`'s pieces, in order, with only whitespace left out between them. */
const assertReassembles = (text: string, chunks: ReadonlyArray<string>) => {
  let cursor = 0
  for (const chunk of chunks) {
    const at = text.indexOf(chunk, cursor)
    expect(at, `chunk ${JSON.stringify(chunk)} not found after ${cursor}`).toBeGreaterThanOrEqual(0)
    expect(text.slice(cursor, at).trim()).toBe("")
    cursor = at + chunk.length
  }
  expect(text.slice(cursor).trim()).toBe("")
}

const config: Chunking.ChunkConfig = {
  textChunkLimit: 3000,
  chunkMode: "length",
  channels: {
    telegram: { textChunkLimit: 4096, chunkMode: "newline", accounts: { support: { textChunkLimit: 500 } } },
    slack: { accounts: { ops: { chunkMode: "newline" } } }
  }
}

describe("Chunking.resolve", () => {
  const cases: ReadonlyArray<
    readonly [string, Chunking.ChunkConfig | undefined, Chunking.ChunkTarget, Chunking.ResolvedChunking]
  > = [
    ["account beats channel and adapter", config, { channel: "telegram", accountId: "support", adapterLimit: 100 }, {
      limit: 500,
      mode: "newline"
    }],
    ["channel beats adapter", config, { channel: "telegram", accountId: "other", adapterLimit: 100 }, {
      limit: 4096,
      mode: "newline"
    }],
    ["adapter beats the config default", config, { channel: "slack", adapterLimit: 100 }, {
      limit: 100,
      mode: "length"
    }],
    ["config default beats 4000", config, { channel: "slack" }, { limit: 3000, mode: "length" }],
    ["account mode without account limit", config, { channel: "slack", accountId: "ops", adapterLimit: 100 }, {
      limit: 100,
      mode: "newline"
    }],
    ["nothing configured", undefined, { channel: "x" }, { limit: 4000, mode: "length" }],
    ["a nonsense limit is ignored", { channels: { x: { textChunkLimit: 0 } } }, { channel: "x" }, {
      limit: 4000,
      mode: "length"
    }]
  ]
  for (const [name, cfg, target, expected] of cases) {
    it(name, () => expect(Chunking.resolve(cfg, target)).toEqual(expected))
  }
})

describe("Chunking.chunkText", () => {
  const length = (limit: number) => ({ limit, mode: "length" as const })
  const newline = (limit: number) => ({ limit, mode: "newline" as const })

  it("cuts after the last newline, else the last space, else at the limit", () => {
    expect(Chunking.chunkText("aaaa\nbbbbbb", length(8))).toEqual(["aaaa\n", "bbbbbb"])
    expect(Chunking.chunkText("aaaa bbbbbb", length(8))).toEqual(["aaaa ", "bbbbbb"])
    expect(Chunking.chunkText("aaaaaaaaaaaa", length(5))).toEqual(["aaaaa", "aaaaa", "aa"])
  })

  it("never cuts a surrogate pair in half", () => {
    const chunks = Chunking.chunkText("abcd😀efg", length(5))
    expect(chunks).toEqual(["abcd", "😀efg"])
  })

  it("sends text under the limit as one chunk", () => {
    expect(Chunking.chunkText("hello", length(4000))).toEqual(["hello"])
  })

  it("sends nothing for whitespace-only text", () => {
    expect(Chunking.chunkText(" \n\t \n", length(4000))).toEqual([])
    expect(Chunking.chunkText("   ", { ...length(4000), chunker: null })).toEqual([])
  })

  it("with chunker: null sends the text whole whatever its length", () => {
    const text = "x".repeat(10_000)
    expect(Chunking.chunkText(text, { ...length(100), chunker: null })).toEqual([text])
    expect(Chunking.chunkText(text, { ...newline(100), chunker: null })).toEqual([text])
  })

  it("falls back to the whole block when the adapter's chunker returns nothing usable", () => {
    expect(Chunking.chunkText("one\n\ntwo", { ...newline(100), chunker: () => [] })).toEqual(["one", "two"])
    expect(Chunking.chunkText("hello", { ...length(3), chunker: () => ["", "  "] })).toEqual(["hello"])
  })

  it("uses the adapter's chunker with the resolved limit", () => {
    const seen: Array<number> = []
    const chunker = (text: string, limit: number) => {
      seen.push(limit)
      return text.split(" ")
    }
    expect(Chunking.chunkText("a b c", { ...length(42), chunker })).toEqual(["a", "b", "c"])
    expect(seen).toEqual([42])
  })

  it("newline mode sends one chunk per paragraph block", () => {
    const text = "First paragraph\nstill first.\n\n  \nSecond.\n\n\nThird."
    expect(Chunking.chunkText(text, newline(4000))).toEqual(["First paragraph\nstill first.", "Second.", "Third."])
  })

  it("newline mode keeps a fenced code block with blank lines whole", () => {
    const fence = "```ts\nconst a = 1\n\nconst b = 2\n```"
    const text = `Intro.\n\n${fence}\n\nOutro.`
    expect(Chunking.chunkText(text, newline(4000))).toEqual(["Intro.", fence, "Outro."])
  })

  it("newline mode keeps a ~~~ fence whole and treats an unclosed fence as running to the end", () => {
    expect(Chunking.chunkText("a\n\n~~~\nx\n\ny\n~~~\n\nb", newline(100))).toEqual(["a", "~~~\nx\n\ny\n~~~", "b"])
    expect(Chunking.chunkText("a\n\n```\nx\n\ny", newline(100))).toEqual(["a", "```\nx\n\ny"])
  })

  it("newline mode splits a fence only when that block alone exceeds the limit", () => {
    const fence = "```\n" + "line\n".repeat(10) + "```"
    const chunks = Chunking.chunkText(`Intro.\n\n${fence}`, newline(20))
    expect(chunks[0]).toBe("Intro.")
    expect(chunks.length).toBeGreaterThan(2)
    expect(chunks.join("")).toBe(`Intro.${fence}`)
    expect(chunks.every((c) => c.length <= 20)).toBe(true)
  })

  it("markdown length mode cuts before a fence rather than inside it when it fits", () => {
    const text = "Some intro text\n```\ncode line one\ncode line two\n```\n"
    expect(Chunking.chunkText(text, { ...length(40), chunkerMode: "markdown" })).toEqual([
      "Some intro text\n",
      "```\ncode line one\ncode line two\n```\n"
    ])
    // plain text mode just takes the last newline in range
    expect(Chunking.chunkText(text, length(40))[0]).toBe("Some intro text\n```\ncode line one\n")
  })
})

describe("Chunking properties", () => {
  const piece = fc.constantFrom("a", "bb", "word ", " ", "\n", "\n\n", "\n  \n", "```", "~~~", "😀", "é", "\t")
  const text = fc.array(piece, { maxLength: 120 }).map((ps) => ps.join(""))
  const limit = fc.integer({ min: 2, max: 40 })

  it.prop("chunkByLength: concatenation is exactly the text, no chunk over the limit", [text, limit], ([t, l]) => {
    const chunks = Chunking.chunkByLength(t, l)
    expect(chunks.join("")).toBe(t)
    for (const c of chunks) expect(c.length).toBeLessThanOrEqual(l)
    for (const c of chunks) expect(c.length).toBeGreaterThan(0)
  })

  it.prop(
    "markdown chunkByLength: concatenation is exactly the text, no chunk over the limit",
    [text, limit],
    ([t, l]) => {
      const chunks = Chunking.chunkByLength(t, l, { markdown: true })
      expect(chunks.join("")).toBe(t)
      for (const c of chunks) expect(c.length).toBeLessThanOrEqual(l)
    }
  )

  for (const mode of ["length", "newline"] as const) {
    it.prop(`${mode} mode: chunks reassemble the text modulo whitespace at split points`, [text, limit], ([t, l]) => {
      const chunks = Chunking.chunkText(t, { limit: l, mode })
      assertReassembles(t, chunks)
      for (const c of chunks) {
        expect(c.length).toBeLessThanOrEqual(l)
        expect(c.trim()).not.toBe("")
      }
    })
  }

  const block = fc.oneof(
    fc.array(fc.constantFrom("word", "other", " ", "\n"), { minLength: 1, maxLength: 8 }).map((ws) =>
      `p${ws.join("")}`
    ),
    fc.array(fc.constantFrom("code", "\n", "\n\n", " "), { maxLength: 8 }).map((ls) => "```\n" + ls.join("") + "\n```")
  )
  it.prop(
    "newline mode never splits a fence that fits within the limit",
    [fc.array(block, { minLength: 1, maxLength: 8 }), fc.integer({ min: 30, max: 80 })],
    ([blocks, l]) => {
      const t = blocks.join("\n\n")
      const chunks = Chunking.chunkText(t, { limit: l, mode: "newline" })
      for (const b of blocks) {
        if (b.startsWith("```") && b.length <= l) expect(chunks).toContain(b)
      }
    }
  )
})
