/**
 * The examples' character vocabulary, Node-free so that the browser page (examples/browser) uses
 * the very same encoding as the demo and the pre-trained checkpoint: `CharVocab` (pad, unknown,
 * then newline and printable ASCII) and `normalizeText`, which maps any other text (a prompt, a
 * pasted paragraph) onto that alphabet. brown.ts re-exports all of it.
 */
import { ArgumentError } from '../../src/gpu/errors.js';

/** The default alphabet: newline, then printable ASCII 32 (space) … 126 (`~`). */
export const ASCII_ALPHABET = '\n' + Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');

/** The character that stands for anything outside the alphabet (decoded from the unknown id). */
export const UNKNOWN_CHAR = '\uFFFD';

/** Typographic characters that have a plain-ASCII spelling. */
const ASCII_SPELLING: Record<string, string> = {
  '\t': ' ',
  '\u00a0': ' ', // no-break space
  '\u2018': "'",
  '\u2019': "'",
  '\u201c': '"',
  '\u201d': '"',
  '\u2013': '-', // en dash
  '\u2014': '--', // em dash, as the corpus writes it
  '\u2026': '...',
};

/**
 * Text onto the default alphabet: `\r\n` → `\n`, the typographic characters above to ASCII,
 * accents dropped (`é` → `e`, by NFKD decomposition), and anything else still outside printable
 * ASCII and newline to `UNKNOWN_CHAR`. The Brown corpus is plain ASCII and changes nothing;
 * this is here so that any other text (a prompt typed by a user) encodes the same way.
 * Idempotent.
 */
export function normalizeText(text: string): string {
  let s = text.replace(/\r\n?/g, '\n');
  if (!/[^\n\x20-\x7e]/.test(s)) return s;
  s = s.replace(/[\t\u00a0\u2018\u2019\u201c\u201d\u2013\u2014\u2026]/g, (c) => ASCII_SPELLING[c]!);
  s = s.normalize('NFKD').replace(/[\u0300-\u036f]/g, '');
  return s.replace(/[^\n\x20-\x7e]/gu, UNKNOWN_CHAR);
}

/**
 * A character-level vocabulary: id 0 is padding (decodes to nothing; never produced by
 * `encode`, for batches of unequal lengths, e.g. `pad_token_id` of a sequence classifier),
 * id 1 is the unknown character (decodes to `UNKNOWN_CHAR`), ids 2… are the alphabet's
 * characters in order. The default alphabet gives 98 ids: pad, unknown, `\n`, and ' '…'~'.
 *
 * @example
 * const vocab = new CharVocab();
 * const ids = vocab.encode('Hi!\n'); // Uint16Array [43, 76, 4, 2]: id = code - 29, newline 2
 * vocab.decode(ids); // 'Hi!\n'
 */
export class CharVocab {
  /** Padding id: decodes to the empty string. */
  readonly pad = 0;
  /** Unknown-character id: decodes to `UNKNOWN_CHAR`. */
  readonly unk = 1;
  /** Number of ids (the model's `vocab_size`). */
  readonly size: number;
  /** Each id's string: `''` for pad, `UNKNOWN_CHAR` for unknown, then the alphabet. */
  readonly symbols: readonly string[];
  private readonly ascii = new Int16Array(128).fill(-1);
  private readonly other = new Map<number, number>();

  constructor(alphabet: string = ASCII_ALPHABET) {
    const chars = [...alphabet];
    const seen = new Set<string>();
    for (const c of chars) {
      if (seen.has(c) || c === UNKNOWN_CHAR) {
        throw new ArgumentError(`CharVocab: alphabet has '${JSON.stringify(c)}' ${c === UNKNOWN_CHAR ? '(the unknown symbol)' : 'twice'}, expected distinct characters other than U+FFFD`);
      }
      seen.add(c);
    }
    this.symbols = ['', UNKNOWN_CHAR, ...chars];
    this.size = this.symbols.length;
    chars.forEach((c, i) => {
      const code = c.codePointAt(0)!;
      if (code < 128) this.ascii[code] = i + 2;
      else this.other.set(code, i + 2);
    });
  }

  /** The ids of `text`, one per code point; characters outside the alphabet get `unk`. */
  encode(text: string): Uint16Array {
    const out = new Uint16Array(text.length);
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code < 128) {
        const id = this.ascii[code]!;
        out[n++] = id < 0 ? this.unk : id;
      } else {
        const cp = text.codePointAt(i)!;
        if (cp > 0xffff) i++; // the second half of a surrogate pair
        out[n++] = this.other.get(cp) ?? this.unk;
      }
    }
    return n === out.length ? out : out.slice(0, n);
  }

  /** The text of `ids`; an id outside [0, size) is an error. */
  decode(ids: ArrayLike<number>): string {
    const parts: string[] = [];
    let chunk: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const s = this.symbols[id];
      if (s === undefined) throw new ArgumentError(`CharVocab.decode: ids[${i}] = ${id}, expected an integer in [0, ${this.size})`);
      chunk.push(s);
      if (chunk.length === 8192) {
        parts.push(chunk.join(''));
        chunk = [];
      }
    }
    parts.push(chunk.join(''));
    return parts.join('');
  }

  /** How many of `ids` are the unknown id. */
  countUnknown(ids: ArrayLike<number>): number {
    let n = 0;
    for (let i = 0; i < ids.length; i++) if (ids[i] === this.unk) n++;
    return n;
  }
}
