/**
 * The demo's data layer on the real corpus: parsing, the vocabulary, the splits and every kind
 * of example it cuts. Expected texts are written by hand from the tagged lines quoted beside them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ASCII_ALPHABET,
  batchesOf,
  CharVocab,
  classificationSet,
  corpusStats,
  CorpusFormatError,
  detokenize,
  DOCUMENT_SEPARATOR,
  evalWindows,
  FINETUNE_GENRES,
  GENRE_CLASSES,
  GENRE_CODES,
  GENRES,
  joinDocuments,
  lmBatches,
  loadBrown,
  normalizeText,
  OOD_GENRES,
  parseTaggedDocument,
  preferencePairs,
  PRETRAIN_GENRES,
  selectDocuments,
  splitOf,
  splitTaggedToken,
  splitTokens,
  type BrownCorpus,
  type BrownDocument,
} from '../../examples/lib/brown.js';
import { ArgumentError } from '../../src/gpu/errors.js';

let corpus: BrownCorpus;
const vocab = new CharVocab();
const doc = (id: string): BrownDocument => corpus.documents.find((d) => d.id === id)!;
const paragraphs = (id: string): string[] => doc(id).text.split('\n');

beforeAll(() => {
  corpus = loadBrown();
});

describe('tags and detokenisation', () => {
  it('splits a token at its last slash', () => {
    expect(splitTaggedToken("Atlanta's/np$")).toEqual({ word: "Atlanta's", tag: 'np$' });
    expect(splitTaggedToken('1/2/cd')).toEqual({ word: '1/2', tag: 'cd' });
    expect(splitTaggedToken('and/or/cc')).toEqual({ word: 'and/or', tag: 'cc' });
    expect(splitTaggedToken('//in')).toEqual({ word: '/', tag: 'in' });
    for (const bad of ['word', '/nn', 'word/']) expect(() => splitTaggedToken(bad, 'ca01 line 3')).toThrow(CorpusFormatError);
    expect(() => splitTaggedToken('word', 'ca01 line 3')).toThrow(/ca01 line 3: expected 'word\/tag', found 'word'/);
  });

  it('joins tokens as print does', () => {
    expect(detokenize(['``', 'Only', 'a', 'handful', "''", ',', 'he', 'said', '.'])).toBe('"Only a handful", he said.');
    expect(detokenize(['(', 'a', ')', 'b', ';', 'c', ':', 'd', '?', '?', 'e', '!', '!'])).toBe('(a) b; c: d? e!');
    expect(detokenize(['more', "'", 'pro', "'", 'than', "'", 'con', "'", '.'])).toBe("more 'pro' than 'con'.");
    expect(detokenize(['Ivan', 'Allen', 'Jr.', '.'])).toBe('Ivan Allen Jr.');
    expect(detokenize(['about', "1/8''", "''", 'from'])).toBe('about 1/8" from');
    expect(detokenize(['war', '--', 'and', 'peace'])).toBe('war -- and peace');
  });

  it('reads real paragraphs as a person would write them', () => {
    // ca01: The/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at investigation/nn of/in
    // Atlanta's/np$ recent/jj primary/nn election/nn produced/vbd ``/`` no/at evidence/nn ''/'' that/cs any/dti
    // irregularities/nns took/vbd place/nn ./.
    expect(paragraphs('ca01')[0]).toBe(
      `The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "no evidence" that any irregularities took place.`,
    );
    // ca01: ... won/vbn by/in Mayor-nominate/nn-tl Ivan/np Allen/np Jr./np ./.
    expect(paragraphs('ca01')[2]).toMatch(/ won by Mayor-nominate Ivan Allen Jr\.$/);
    // ca01: ``/`` Only/rb a/at relative/jj handful/nn ... received/vbn ''/'' ,/, the/at jury/nn said/vbd ,/, ``/`` considering/in ... city/nn ''/'' ./.
    expect(paragraphs('ca01')[3]).toBe(
      '"Only a relative handful of such reports was received", the jury said, "considering the widespread interest in the election, the number of voters and the size of this city".',
    );
    // ca01: a headline run into the next sentence's paragraph: Merger/nn-hl proposed/vbn-hl / However/wrb ,/, ...
    const merger = paragraphs('ca01').indexOf('Merger proposed');
    expect(merger).toBeGreaterThan(0);
    expect(paragraphs('ca01')[merger + 1]).toMatch(/^However, the jury said it believes "these two offices should be combined/);
    // ca02: ``/`` We're/ppss+ber getting/vbg more/ap '/' pro/jj '/' letters/nns than/in '/' con/jj '/' on/in horse/nn
    // race/nn betting/nn ''/'' ,/, said/vbd Ratcliff/np ./.
    expect(paragraphs('ca02').some((p) => p.startsWith(`"We're getting more 'pro' letters than 'con' on horse race betting", said Ratcliff.`))).toBe(true);
    // ca03: ... inquired/vbd ,/, ``/`` You/ppss mean/vb ... admitting/vbg this/dt ''/'' ?/. ?/.
    expect(paragraphs('ca03')).toContain('Judge Parsons leaned over the bench and inquired, "You mean some of the defendants made statements admitting this"?');
    // ca02: ... between/in Reps./nns-tl V./np E./np (/( Red/np )/) Berry/np and/cc Joe/np Ratcliff/np ./.
    expect(doc('ca02').text).toContain('between Reps. V. E. (Red) Berry and Joe Ratcliff.');
    // cf35: To/to keep/vb 'em/ppo scattered/vbn somewhat/rb and/cc yet/rb herd/vb 'em/ppo was/bedz called/vbn ``/`` loose/jj herdin'/nn ''/'' ./.
    expect(doc('cf35').text).toContain(`To keep 'em scattered somewhat and yet herd 'em was called "loose herdin'".`);
    // ce07: ... about/rb 1/8''/nn ''/'' from/in any/dti edge/nn ./.
    expect(doc('ce07').text).toContain('the centers are about 1/8" from any edge.');
    // cl01: ``/`` I/ppss wouldn't/md* have/hv gone/vbn into/in nursing/vbg if/cs I/ppss didn't/dod* care/vb about/in people/nns ./.
    expect(doc('cl01').text).toContain(`"I wouldn't have gone into nursing if I didn't care about people.`);
    // ck01 starts with a chapter heading (Thirty-three/cd-hl) on its own line.
    expect(paragraphs('ck01')[0]).toBe('Thirty-three');
    expect(paragraphs('ck01')[1]).toMatch(/^Scotty did not go back to school\. His parents talked seriously/);
  });

  it('leaves no tags, tabs, backquotes or doubled punctuation in any document', () => {
    for (const d of corpus.documents) {
      expect(d.text, d.id).not.toMatch(/\/(?:at|nn|np|vbd|jj|in|cc)(?=\s|$)|\t|`|([?!;:,])\1|\.\.|^\s|\s$|  /);
    }
  });

  it('parses a tagged document into paragraph lines', () => {
    const raw = "\n\n\tThe/at cat/nn sat/vbd ./.\nIt/pps slept/vbd ./.\n\n\n\tA/at-hl Headline/nn-hl \nThen/rb ``/`` text/nn ''/'' ./.\n";
    expect(parseTaggedDocument(raw)).toBe('The cat sat. It slept.\nA Headline\nThen "text".');
    expect(() => parseTaggedDocument('\tThe/at cat sat/vbd\n', 'cx01')).toThrow(/cx01 line 1: expected 'word\/tag', found 'cat'/);
  });
});

describe('corpus and genres', () => {
  it('has the 15 genres with the documented counts, agreeing with cats.txt', () => {
    expect(corpus.documents).toHaveLength(500);
    expect(GENRE_CODES.join('')).toBe('abcdefghjklmnpr');
    for (const g of GENRE_CODES) {
      const docs = corpus.documents.filter((d) => d.genre === g);
      expect(docs, g).toHaveLength(GENRES[g].documents);
      expect(new Set(docs.map((d) => d.category)), g).toEqual(new Set([GENRES[g].category]));
      expect(docs.every((d) => d.id[1] === g)).toBe(true);
    }
    expect(corpus.documents.map((d) => d.id)).toEqual([...corpus.documents.map((d) => d.id)].sort());
  });

  it('groups genres into disjoint pre-training, fine-tuning and out-of-distribution sets', () => {
    const all = [...PRETRAIN_GENRES, ...FINETUNE_GENRES, ...OOD_GENRES];
    expect(new Set(all).size).toBe(15);
    expect(FINETUNE_GENRES.map((g) => GENRES[g].category)).toEqual(['fiction', 'mystery', 'adventure', 'romance']);
    expect(OOD_GENRES.map((g) => GENRES[g].category)).toEqual(['science_fiction', 'humor']);
  });

  it('rejects a malformed corpus folder with the file and line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'brown-'));
    try {
      const tagged = '\n\n\tThe/at cat/nn sat/vbd ./.\n';
      writeFileSync(join(dir, 'ca01'), tagged);
      writeFileSync(join(dir, 'cats.txt'), 'ca01 news\n');
      expect(loadBrown({ root: dir }).documents.map((d) => d.text)).toEqual(['The cat sat.']);
      const bad = (cats: string, files: Record<string, string>, message: RegExp) => {
        const d = mkdtempSync(join(tmpdir(), 'brown-bad-'));
        try {
          writeFileSync(join(d, 'cats.txt'), cats);
          for (const [f, t] of Object.entries(files)) writeFileSync(join(d, f), t);
          expect(() => loadBrown({ root: d })).toThrow(message);
        } finally {
          rmSync(d, { recursive: true });
        }
      };
      bad('ca01 fiction\n', { ca01: tagged }, /cats.txt line 1: file 'ca01' is in category 'fiction', expected 'news'/);
      bad('ca01\n', { ca01: tagged }, /cats.txt line 1: expected '<file id> <category>'/);
      bad('ca01 news\nca01 news\n', { ca01: tagged }, /listed twice/);
      bad('cz01 news\n', { cz01: tagged }, /genre letter 'z'/);
      bad('ca01 news\ncb01 editorial\n', { ca01: tagged }, /lists 'cb01', but .* does not exist/);
      bad('ca01 news\n', { ca01: tagged, ca02: tagged }, /'ca02' is not in cats.txt/);
      bad('ca01 news\n', { ca01: '\tThe/at cat\n' }, /ca01 line 1: expected 'word\/tag', found 'cat'/);
      expect(() => loadBrown({ root: join(dir, 'missing') })).toThrow(/cats.txt not found/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});

describe('character vocabulary', () => {
  it('has pad, unknown, newline and printable ASCII', () => {
    expect(vocab.size).toBe(98);
    expect(vocab.symbols.slice(0, 4)).toEqual(['', '\uFFFD', '\n', ' ']);
    expect(vocab.symbols[97]).toBe('~');
    expect([...vocab.encode('Hi!\n')]).toEqual([43, 76, 4, 2]); // 'H' = 72, 'i' = 105, '!' = 33: code - 29
    expect(vocab.decode([vocab.pad, 42, vocab.pad])).toBe(vocab.symbols[42]);
    expect(() => vocab.decode([98])).toThrow(ArgumentError);
    expect(() => new CharVocab('abca')).toThrow(/alphabet has '"a"' twice/);
  });

  it('round-trips the whole corpus with no unknown characters', () => {
    const text = joinDocuments(corpus.documents);
    const ids = vocab.encode(text);
    expect(ids.length).toBe(text.length);
    expect(vocab.decode(ids)).toBe(text);
    const unknown = vocab.countUnknown(ids);
    console.info(`Brown corpus: ${ids.length} characters, ${unknown} unknown (${((100 * unknown) / ids.length).toFixed(4)}%), vocabulary ${vocab.size}`);
    expect(unknown).toBe(0);
    for (const d of corpus.documents.slice(0, 50)) expect(normalizeText(d.text)).toBe(d.text);
  });

  it('normalises other text onto the alphabet, unknowns as one symbol each', () => {
    const s = normalizeText('caf\u00e9 \u201cquoted\u201d \u2014 it\u2019s\u2026\r\n\tna\u00efve \u{1F600} \u4e2d');
    expect(s).toBe('cafe "quoted" -- it\'s...\n naive \uFFFD \uFFFD');
    const ids = vocab.encode(s);
    expect(vocab.countUnknown(ids)).toBe(2);
    expect(vocab.decode(ids)).toBe(s);
    expect(normalizeText(s)).toBe(s);
    // An astral character left unnormalised is still one unknown id.
    expect([...vocab.encode('a\u{1F600}b')]).toEqual([vocab.encode('a')[0], vocab.unk, vocab.encode('b')[0]]);
    expect(ASCII_ALPHABET).toHaveLength(96);
  });
});

describe('splits', () => {
  it('hold out every 5th document of each genre, deterministically and disjointly', () => {
    const train = selectDocuments(corpus, { split: 'train' });
    const val = selectDocuments(corpus, { split: 'validation' });
    expect(train.length + val.length).toBe(500);
    const trainIds = new Set(train.map((d) => d.id));
    expect(val.some((d) => trainIds.has(d.id))).toBe(false);
    expect(selectDocuments(loadBrown(), { split: 'validation' }).map((d) => d.id)).toEqual(val.map((d) => d.id));
    // The rule by hand: ca05, ca10, ..., ca40 (44 documents); cm05 of 6; cr05 of 9.
    expect(val.filter((d) => d.genre === 'a').map((d) => d.id)).toEqual(['ca05', 'ca10', 'ca15', 'ca20', 'ca25', 'ca30', 'ca35', 'ca40']);
    expect(val.filter((d) => d.genre === 'm').map((d) => d.id)).toEqual(['cm05']);
    expect(val.filter((d) => d.genre === 'r').map((d) => d.id)).toEqual(['cr05']);
    for (const g of GENRE_CODES) {
      expect(train.some((d) => d.genre === g), g).toBe(true);
      expect(val.some((d) => d.genre === g), g).toBe(true);
    }
    expect(val).toHaveLength(93);
    expect(splitOf(doc('ca10'), 10)).toBe('validation');
    expect(splitOf(doc('ca05'), 10)).toBe('train');
    expect(() => splitOf(doc('ca05'), 1)).toThrow(/every = 1, expected an integer >= 2/);
  });

  it('selects by genre and joins documents with a blank line', () => {
    const ood = selectDocuments(corpus, { genres: OOD_GENRES, split: 'all' });
    expect(ood).toHaveLength(15);
    const tokens = splitTokens(corpus, vocab, { genres: OOD_GENRES, split: 'all' });
    expect(vocab.decode(tokens)).toBe(ood.map((d) => d.text).join(DOCUMENT_SEPARATOR));
    expect(() => selectDocuments(corpus, { genres: ['x' as 'a'], split: 'all' })).toThrow(/genres has 'x'/);
  });

  it('counts characters per genre and split', () => {
    const stats = corpusStats(corpus);
    expect(stats.map((s) => s.documents)).toEqual(GENRE_CODES.map((g) => GENRES[g].documents));
    const total = stats.reduce((n, s) => n + s.trainChars + s.validationChars, 0);
    expect(total).toBe(corpus.documents.reduce((n, d) => n + d.text.length, 0));
    expect(stats.find((s) => s.genre === 'm')).toMatchObject({ trainDocuments: 5, validationDocuments: 1, validationChars: doc('cm05').text.length });
  });
});

describe('language-model windows', () => {
  const tokens = Uint16Array.from({ length: 1000 }, (_, i) => (i * 7) % 98);

  it('cuts seeded random windows whose targets are the next tokens', () => {
    const a = [...lmBatches(tokens, { batch: 4, seqLen: 16, seed: 7, steps: 50 })];
    expect(a).toHaveLength(50);
    const seen = new Set<number>();
    for (const b of a) {
      expect(b.inputs).toHaveLength(64);
      for (let r = 0; r < 4; r++) {
        const o = b.offsets[r]!;
        seen.add(o);
        expect(o).toBeGreaterThanOrEqual(0);
        expect(o + 16).toBeLessThanOrEqual(tokens.length - 1);
        for (let t = 0; t < 16; t++) {
          expect(b.inputs[r * 16 + t]).toBe(tokens[o + t]);
          expect(b.targets[r * 16 + t]).toBe(tokens[o + t + 1]);
        }
      }
    }
    expect(seen.size).toBeGreaterThan(150); // 200 draws from 984 offsets: spread out, not stuck
    const again = [...lmBatches(tokens, { batch: 4, seqLen: 16, seed: 7, steps: 50 })];
    expect(again.map((b) => [...b.offsets])).toEqual(a.map((b) => [...b.offsets]));
    const other = [...lmBatches(tokens, { batch: 4, seqLen: 16, seed: 8, steps: 50 })];
    expect(other.map((b) => [...b.offsets])).not.toEqual(a.map((b) => [...b.offsets]));
  });

  it('reaches both ends of the stream', () => {
    const small = Uint16Array.from({ length: 6 }, (_, i) => i);
    const offsets = new Set<number>();
    for (const b of lmBatches(small, { batch: 8, seqLen: 3, seed: 1, steps: 20 })) b.offsets.forEach((o) => offsets.add(o));
    expect([...offsets].sort()).toEqual([0, 1, 2]);
  });

  it('rejects streams too short and bad sizes', () => {
    expect(() => lmBatches(tokens.subarray(0, 16), { batch: 1, seqLen: 16, seed: 0 }).next()).toThrow(/tokens has 16 tokens, expected at least seqLen \+ 1 = 17/);
    expect(() => lmBatches(tokens, { batch: 0, seqLen: 16, seed: 0 }).next()).toThrow(/batch = 0/);
    expect(() => lmBatches(tokens, { batch: 1, seqLen: 2.5, seed: 0 }).next()).toThrow(/seqLen = 2.5/);
  });

  it('evaluates on fixed, non-overlapping windows spread over the stream', () => {
    const e = evalWindows(tokens, { seqLen: 31, count: 10 });
    expect(e).toEqual(evalWindows(tokens, { seqLen: 31, count: 10 }));
    expect(e.offsets[0]).toBe(0);
    expect(e.offsets[9]! + 32).toBe(tokens.length);
    for (let i = 1; i < 10; i++) expect(e.offsets[i]! - e.offsets[i - 1]!).toBeGreaterThanOrEqual(32);
    for (let r = 0; r < 10; r++) expect([...e.targets.subarray(r * 31, r * 31 + 31)]).toEqual([...tokens.subarray(e.offsets[r]! + 1, e.offsets[r]! + 32)]);
    // Exactly full: windows touch.
    const full = evalWindows(tokens.subarray(0, 320), { seqLen: 31, count: 10 });
    expect([...full.offsets]).toEqual([0, 32, 64, 96, 128, 160, 192, 224, 256, 288]);
    expect(() => evalWindows(tokens.subarray(0, 319), { seqLen: 31, count: 10 })).toThrow(/expected at least count \* \(seqLen \+ 1\) = 320/);
    expect([...evalWindows(tokens, { seqLen: 5, count: 1 }).offsets]).toEqual([0]);
    const pieces = [...batchesOf(e, 4)];
    expect(pieces.map((p) => p.batch)).toEqual([4, 4, 2]);
    expect(pieces[2]!.inputs).toEqual(e.inputs.subarray(8 * 31));
    expect(pieces[1]!.offsets).toEqual(e.offsets.subarray(4, 8));
  });

  it('cuts the real fine-tuning split', () => {
    const train = splitTokens(corpus, vocab, { genres: FINETUNE_GENRES, split: 'train' });
    const b = lmBatches(train, { batch: 2, seqLen: 64, seed: 3 }).next().value!;
    const text = vocab.decode(train);
    expect(vocab.decode(b.inputs.subarray(0, 64))).toBe(text.slice(b.offsets[0], b.offsets[0]! + 64));
  });
});

describe('genre classification', () => {
  it('is balanced, labelled by class, from the split\'s documents, and seeded', () => {
    const opts = { seqLen: 64, perClass: 100, seed: 5 };
    const train = classificationSet(corpus, vocab, { split: 'train', ...opts });
    const val = classificationSet(corpus, vocab, { split: 'validation', ...opts });
    for (const set of [train, val]) {
      expect(set.count).toBe(300);
      expect(set.classNames).toEqual(['press', 'non-fiction', 'fiction']);
      const perLabel = [0, 0, 0];
      set.labels.forEach((l) => perLabel[l]!++);
      expect(perLabel).toEqual([100, 100, 100]);
      set.sources.forEach((s, i) => {
        const d = doc(s.docId);
        expect(GENRE_CLASSES[set.labels[i]!]!.genres).toContain(d.genre);
        expect(vocab.decode(set.ids.subarray(i * 64, i * 64 + 64))).toBe(d.text.slice(s.offset, s.offset + 64));
        expect(s.offset % 64).toBe(0);
      });
      // Each class's snippets are spread over its documents, not the first pieces of the first few.
      for (let label = 0; label < 3; label++) {
        const docs = new Set(set.sources.filter((_, i) => set.labels[i] === label).map((s) => s.docId));
        expect(docs.size, set.classNames[label]).toBeGreaterThan(set === train ? 30 : 10);
      }
      // Not sorted by class: the first 30 hold more than one class.
      expect(new Set(set.labels.subarray(0, 30)).size).toBeGreaterThan(1);
    }
    expect(train.sources.every((s) => splitOf(doc(s.docId)) === 'train')).toBe(true);
    expect(val.sources.every((s) => splitOf(doc(s.docId)) === 'validation')).toBe(true);
    const again = classificationSet(corpus, vocab, { split: 'train', ...opts });
    expect(again.sources).toEqual(train.sources);
    expect(again.ids).toEqual(train.ids);
    expect(classificationSet(corpus, vocab, { split: 'train', ...opts, seed: 6 }).sources).not.toEqual(train.sources);
    expect(() => classificationSet(corpus, vocab, { split: 'validation', seqLen: 64, perClass: 100_000, seed: 1 })).toThrow(/class 'press' has only \d+ snippets/);
  });
});

describe('preference pairs', () => {
  it('pair a prompt with its true continuation and another document\'s text', () => {
    const pairs = preferencePairs(corpus, vocab, { split: 'train', promptLen: 48, continuationLen: 24, count: 200, seed: 9 });
    expect(pairs.count).toBe(200);
    const used = new Map<string, [number, number][]>();
    pairs.sources.forEach((s, i) => {
      const d = doc(s.docId);
      const other = doc(s.rejectedDocId);
      expect(FINETUNE_GENRES).toContain(d.genre);
      expect(FINETUNE_GENRES).toContain(other.genre);
      expect(splitOf(d)).toBe('train');
      expect(splitOf(other)).toBe('train');
      expect(s.rejectedDocId).not.toBe(s.docId);
      const prompt = vocab.decode(pairs.prompt.subarray(i * 48, i * 48 + 48));
      const chosen = vocab.decode(pairs.chosen.subarray(i * 24, i * 24 + 24));
      const rejected = vocab.decode(pairs.rejected.subarray(i * 24, i * 24 + 24));
      expect(prompt + chosen).toBe(d.text.slice(s.offset, s.offset + 72));
      expect(rejected).toBe(other.text.slice(s.rejectedOffset, s.rejectedOffset + 24));
      expect(chosen[0]).toBe(' ');
      expect(rejected[0]).toBe(' ');
      const spans = used.get(s.docId) ?? [];
      for (const [a, b] of spans) expect(s.offset >= b || s.offset + 72 <= a, `${s.docId} pairs overlap`).toBe(true);
      spans.push([s.offset, s.offset + 72]);
      used.set(s.docId, spans);
    });
    expect(used.size).toBeGreaterThan(40); // drawn from many documents, not a few
    const again = preferencePairs(corpus, vocab, { split: 'train', promptLen: 48, continuationLen: 24, count: 200, seed: 9 });
    expect(again.sources).toEqual(pairs.sources);
    expect(again.rejected).toEqual(pairs.rejected);
    const val = preferencePairs(corpus, vocab, { split: 'validation', promptLen: 48, continuationLen: 24, count: 50, seed: 9 });
    expect(val.sources.every((s) => splitOf(doc(s.docId)) === 'validation' && splitOf(doc(s.rejectedDocId)) === 'validation')).toBe(true);
    expect(() => preferencePairs(corpus, vocab, { split: 'validation', genres: ['m'], promptLen: 8, continuationLen: 8, count: 1, seed: 1 })).toThrow(/has 1 document\(s\), expected at least 2/);
    expect(() => preferencePairs(corpus, vocab, { split: 'validation', promptLen: 48, continuationLen: 24, count: 1e6, seed: 1 })).toThrow(/only \d+ non-overlapping pairs/);
  });
});
