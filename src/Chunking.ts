/**
 * Splitting reply text into messages a channel accepts. Pure functions: the send plan calls them,
 * so the live path and recovery split a text identically.
 *
 * Lengths are counted in UTF-16 code units (`string.length`), which is what Telegram and Slack
 * count; a surrogate pair is never cut in half.
 */

/** The limit when neither config nor the adapter gives one (the seed's value). */
export const DEFAULT_TEXT_CHUNK_LIMIT = 4000

/** `length`: cut at the limit (at a newline or space where possible); `newline`: one message per paragraph block first. */
export type ChunkMode = "length" | "newline"

/** How a v1 adapter's text is formatted; `markdown` makes `length` mode prefer cuts outside code fences. */
export type ChunkerMode = "text" | "markdown"

/** A v1 adapter's own splitter: text and limit in, chunks out. */
export type Chunker = (text: string, limit: number) => ReadonlyArray<string>

/** A limit and/or mode override. */
export interface ChunkSettings {
  readonly textChunkLimit?: number
  readonly chunkMode?: ChunkMode
}

/** Per-channel settings, with per-account overrides inside. */
export interface ChannelChunkSettings extends ChunkSettings {
  readonly accounts?: Readonly<Record<string, ChunkSettings>>
}

/**
 * Chunking config. The top-level settings are the defaults (they replace the built-in 4000 /
 * `length`, and rank below an adapter's own `textChunkLimit`); `channels` override per channel and account.
 */
export interface ChunkConfig extends ChunkSettings {
  readonly channels?: Readonly<Record<string, ChannelChunkSettings>>
}

/** What the limit and mode are resolved for. */
export interface ChunkTarget {
  readonly channel: string
  readonly accountId?: string | undefined
  readonly adapterLimit?: number | undefined
}

/** The effective limit and mode for one send. */
export interface ResolvedChunking {
  readonly limit: number
  readonly mode: ChunkMode
}

const validLimit = (n: number | undefined): number | undefined =>
  n !== undefined && Number.isFinite(n) && n >= 1 ? Math.floor(n) : undefined

/** Resolves limit (account > channel > adapter `textChunkLimit` > config default > 4000) and mode (account > channel > default > `length`). */
export const resolve = (config: ChunkConfig | undefined, target: ChunkTarget): ResolvedChunking => {
  const channel = config?.channels?.[target.channel]
  const account = target.accountId === undefined ? undefined : channel?.accounts?.[target.accountId]
  const limit = validLimit(account?.textChunkLimit) ??
    validLimit(channel?.textChunkLimit) ??
    validLimit(target.adapterLimit) ??
    validLimit(config?.textChunkLimit) ??
    DEFAULT_TEXT_CHUNK_LIMIT
  const mode = account?.chunkMode ?? channel?.chunkMode ?? config?.chunkMode ?? "length"
  return { limit, mode }
}

/** True for a string with nothing visible to send. */
export const isBlank = (text: string): boolean => text.trim().length === 0

const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})/

const lineSpans = (text: string): Array<{ readonly start: number; readonly end: number }> => {
  // `end` excludes the line's "\n"
  const spans: Array<{ start: number; end: number }> = []
  let start = 0
  while (start <= text.length) {
    const nl = text.indexOf("\n", start)
    const end = nl === -1 ? text.length : nl
    spans.push({ start, end })
    if (nl === -1) break
    start = nl + 1
  }
  return spans
}

/** The `[start, end)` ranges of markdown fenced code blocks (an unclosed fence runs to the end). */
export const fenceRanges = (text: string): ReadonlyArray<readonly [number, number]> => {
  const ranges: Array<readonly [number, number]> = []
  let open: { start: number; char: string; length: number } | undefined
  for (const { start, end } of lineSpans(text)) {
    const line = text.slice(start, end)
    if (open === undefined) {
      const m = FENCE_OPEN.exec(line)
      if (m !== null) open = { start, char: m[1]![0]!, length: m[1]!.length }
    } else {
      const trimmed = line.trim()
      const closes = trimmed.length >= open.length && trimmed === open.char.repeat(trimmed.length) &&
        /^ {0,3}\S/.test(line)
      if (closes) {
        ranges.push([open.start, Math.min(end + 1, text.length)])
        open = undefined
      }
    }
  }
  if (open !== undefined) ranges.push([open.start, text.length])
  return ranges
}

const insideFence = (ranges: ReadonlyArray<readonly [number, number]>, cut: number): boolean =>
  ranges.some(([start, end]) => start < cut && cut < end)

const isHighSurrogate = (code: number): boolean => code >= 0xd800 && code <= 0xdbff

/** Where to end the chunk starting at `start`: after a newline, else after a space, else at the limit. */
const cutPoint = (
  text: string,
  start: number,
  limit: number,
  fences: ReadonlyArray<readonly [number, number]> | undefined
): number => {
  const hardEnd = start + limit
  if (fences !== undefined) {
    for (let nl = text.lastIndexOf("\n", hardEnd - 1); nl >= start; nl = text.lastIndexOf("\n", nl - 1)) {
      if (!insideFence(fences, nl + 1)) return nl + 1
      if (nl === 0) break
    }
  }
  const nl = text.lastIndexOf("\n", hardEnd - 1)
  if (nl >= start) return nl + 1
  for (let i = hardEnd - 1; i > start; i--) {
    if (/\s/.test(text[i]!)) return i + 1
  }
  if (isHighSurrogate(text.charCodeAt(hardEnd - 1))) {
    // never split a surrogate pair; with limit 1 the pair is unsplittable and goes whole
    return hardEnd - 1 > start ? hardEnd - 1 : hardEnd + 1
  }
  return hardEnd
}

/**
 * The core length chunker: chunks of at most `limit` whose concatenation is exactly `text`.
 * With `markdown`, cuts inside fenced code blocks are avoided where a cut outside one fits.
 */
export const chunkByLength = (
  text: string,
  limit: number,
  options?: { readonly markdown?: boolean }
): Array<string> => {
  const max = Math.max(1, Math.floor(limit))
  const fences = options?.markdown === true ? fenceRanges(text) : undefined
  const chunks: Array<string> = []
  let start = 0
  while (text.length - start > max) {
    const end = cutPoint(text, start, max, fences)
    chunks.push(text.slice(start, end))
    start = end
  }
  if (start < text.length) chunks.push(text.slice(start))
  return chunks
}

/**
 * Paragraph blocks: runs of lines separated by blank lines, where blank lines inside a fenced
 * code block do not separate. Each block is an exact substring of `text`; only whitespace lies between blocks.
 */
export const splitParagraphs = (text: string): Array<string> => {
  const fences = fenceRanges(text)
  const blocks: Array<string> = []
  let blockStart: number | undefined
  let blockEnd = 0
  for (const { start, end } of lineSpans(text)) {
    const blank = isBlank(text.slice(start, end)) && !insideFence(fences, start)
    if (blank) {
      if (blockStart !== undefined) blocks.push(text.slice(blockStart, blockEnd))
      blockStart = undefined
    } else {
      blockStart ??= start
      blockEnd = end
    }
  }
  if (blockStart !== undefined) blocks.push(text.slice(blockStart, blockEnd))
  return blocks
}

/** How to chunk one text. */
export interface ChunkTextOptions {
  readonly limit: number
  readonly mode: ChunkMode
  /** a v1 adapter's own chunker; `null` = send the text whole; omitted = the core length chunker */
  readonly chunker?: Chunker | null | undefined
  readonly chunkerMode?: ChunkerMode | undefined
}

/**
 * Splits `text` into the messages to send. Blank text gives none; `chunker: null` gives the text whole;
 * `newline` mode splits paragraph blocks first and length-splits only a block over the limit;
 * blank chunks are dropped and an empty chunker result falls back to the whole block.
 */
export const chunkText = (text: string, options: ChunkTextOptions): Array<string> => {
  if (isBlank(text)) return []
  const chunker = options.chunker
  if (chunker === null) return [text]
  const markdown = options.chunkerMode === "markdown"
  const split = (block: string): Array<string> => {
    const raw = chunker !== undefined
      ? chunker(block, options.limit)
      : chunkByLength(block, options.limit, { markdown })
    const chunks = raw.filter((c) => typeof c === "string" && !isBlank(c))
    return chunks.length > 0 ? chunks : [block]
  }
  if (options.mode === "newline") {
    const blocks = splitParagraphs(text)
    return (blocks.length > 0 ? blocks : [text]).flatMap(split)
  }
  return split(text)
}
