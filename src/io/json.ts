/**
 * A strict JSON reader for file headers, and a JSON writer with Python's options.
 *
 * Why not `JSON.parse`: a safetensors header must be read as the reference implementation
 * (serde_json) reads it, and `JSON.parse` differs where it matters:
 * - it keeps the last of two equal keys silently; the format forbids duplicate keys, so
 *   {@link parseJsonStrict} reports them, comparing keys after unescaping (`"a"` and
 *   `"\u0061"` are the same key);
 * - it turns `1.0`, `1e0` and `-0` into the integer 1 or 0; serde_json reads those as floats
 *   and refuses them as sizes, so numbers are kept as their source text;
 * - it has no depth limit, and a header of 50 MB of `[` would end in a RangeError from the
 *   stack; serde_json stops at 128 levels, and so does this reader.
 * Like serde_json it refuses unpaired surrogate escapes (`"\ud800"`), raw control
 * characters in strings, and anything after the value except JSON whitespace
 * (space, tab, line feed, carriage return), which is also allowed before it.
 */

/** A JSON value with the position (UTF-16 index in the text) where it starts. */
export type JsonValue =
  | { readonly type: 'object'; readonly entries: ReadonlyArray<readonly [string, JsonValue]>; readonly at: number }
  | { readonly type: 'array'; readonly items: readonly JsonValue[]; readonly at: number }
  | { readonly type: 'string'; readonly value: string; readonly at: number }
  | { readonly type: 'number'; readonly raw: string; readonly at: number }
  | { readonly type: 'boolean'; readonly value: boolean; readonly at: number }
  | { readonly type: 'null'; readonly at: number };

/** Why {@link parseJsonStrict} refused a text; `at` is a UTF-16 index into it. */
export class JsonSyntaxError extends Error {
  constructor(
    readonly problem: string,
    readonly at: number,
    /** Set for a duplicate key: the key, and how deep its object is (1 = the top-level object). */
    readonly duplicate?: { readonly key: string; readonly depth: number },
  ) {
    super(problem);
    this.name = 'JsonSyntaxError';
  }
}

/** serde_json's default recursion limit. */
export const MAX_JSON_DEPTH = 128;

/**
 * Parses `text` as one JSON value, strictly (see the file header). Throws
 * {@link JsonSyntaxError}, and nothing else, on bad input.
 *
 * @example
 * const v = parseJsonStrict('{"shape": [2, 3]}');
 * // v.type === 'object', v.entries[0][0] === 'shape'
 */
export function parseJsonStrict(text: string, maxDepth = MAX_JSON_DEPTH): JsonValue {
  const p = new Parser(text, maxDepth);
  p.skipWhitespace();
  const value = p.value(0);
  p.skipWhitespace();
  if (p.i < text.length) throw new JsonSyntaxError('trailing characters after the JSON value', p.i);
  return value;
}

/** `at` as `line L column C` (both from 1), for messages. */
export function jsonPosition(text: string, at: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < at && i < text.length; i++) {
    if (text.charCodeAt(i) === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return `line ${line} column ${at - lineStart + 1}`;
}

const enum C {
  Tab = 0x09,
  Lf = 0x0a,
  Cr = 0x0d,
  Space = 0x20,
  Quote = 0x22,
  Plus = 0x2b,
  Comma = 0x2c,
  Minus = 0x2d,
  Dot = 0x2e,
  Zero = 0x30,
  Nine = 0x39,
  Colon = 0x3a,
  UpperE = 0x45,
  LBracket = 0x5b,
  Backslash = 0x5c,
  RBracket = 0x5d,
  LowerE = 0x65,
  LBrace = 0x7b,
  RBrace = 0x7d,
}

class Parser {
  i = 0;
  constructor(
    readonly s: string,
    readonly maxDepth: number,
  ) {}

  fail(problem: string, at = this.i): never {
    throw new JsonSyntaxError(problem, at);
  }

  skipWhitespace(): void {
    const s = this.s;
    let i = this.i;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c !== C.Space && c !== C.Lf && c !== C.Tab && c !== C.Cr) break;
    }
    this.i = i;
  }

  /** `depth` is the number of arrays and objects around the value. */
  value(depth: number): JsonValue {
    const s = this.s;
    const at = this.i;
    if (at >= s.length) this.fail('unexpected end of the header while reading a value');
    const c = s.charCodeAt(at);
    if (c === C.LBrace) return this.object(depth + 1);
    if (c === C.LBracket) return this.array(depth + 1);
    if (c === C.Quote) return { type: 'string', value: this.string(), at };
    if (c === C.Minus || (c >= C.Zero && c <= C.Nine)) return { type: 'number', raw: this.number(), at };
    for (const [word, v] of LITERALS) {
      if (s.startsWith(word, at)) {
        this.i = at + word.length;
        return v === null ? { type: 'null', at } : { type: 'boolean', value: v, at };
      }
    }
    return this.fail(`expected a JSON value, found ${describeChar(s, at)}`);
  }

  object(depth: number): JsonValue {
    const at = this.i;
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth} levels`);
    this.i++; // {
    const entries: Array<readonly [string, JsonValue]> = [];
    const seen = new Set<string>();
    this.skipWhitespace();
    if (this.s.charCodeAt(this.i) === C.RBrace) {
      this.i++;
      return { type: 'object', entries, at };
    }
    for (;;) {
      this.skipWhitespace();
      const keyAt = this.i;
      if (this.s.charCodeAt(keyAt) !== C.Quote) this.fail(`expected a key string, found ${describeChar(this.s, keyAt)}`);
      const key = this.string();
      if (seen.has(key)) throw new JsonSyntaxError(`duplicate key ${JSON.stringify(key)}`, keyAt, { key, depth });
      seen.add(key);
      this.skipWhitespace();
      if (this.s.charCodeAt(this.i) !== C.Colon) this.fail(`expected ':' after a key, found ${describeChar(this.s, this.i)}`);
      this.i++;
      this.skipWhitespace();
      entries.push([key, this.value(depth)]);
      this.skipWhitespace();
      const c = this.s.charCodeAt(this.i);
      if (c === C.Comma) {
        this.i++;
        continue;
      }
      if (c === C.RBrace) {
        this.i++;
        return { type: 'object', entries, at };
      }
      this.fail(`expected ',' or '}' in an object, found ${describeChar(this.s, this.i)}`);
    }
  }

  array(depth: number): JsonValue {
    const at = this.i;
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth} levels`);
    this.i++; // [
    const items: JsonValue[] = [];
    this.skipWhitespace();
    if (this.s.charCodeAt(this.i) === C.RBracket) {
      this.i++;
      return { type: 'array', items, at };
    }
    for (;;) {
      this.skipWhitespace();
      items.push(this.value(depth));
      this.skipWhitespace();
      const c = this.s.charCodeAt(this.i);
      if (c === C.Comma) {
        this.i++;
        continue;
      }
      if (c === C.RBracket) {
        this.i++;
        return { type: 'array', items, at };
      }
      this.fail(`expected ',' or ']' in an array, found ${describeChar(this.s, this.i)}`);
    }
  }

  /** Reads the string starting at the quote at `this.i` and returns it unescaped. */
  string(): string {
    const s = this.s;
    let i = this.i + 1;
    let out = '';
    let runStart = i;
    for (;;) {
      if (i >= s.length) this.fail('unexpected end of the header inside a string', this.i);
      const c = s.charCodeAt(i);
      if (c === C.Quote) {
        out += s.slice(runStart, i);
        this.i = i + 1;
        return out;
      }
      if (c < 0x20) this.fail(`raw control character U+${hex4(c)} inside a string (must be escaped)`, i);
      if (c !== C.Backslash) {
        i++;
        continue;
      }
      out += s.slice(runStart, i);
      const e = s.charCodeAt(i + 1);
      switch (e) {
        case C.Quote: out += '"'; i += 2; break;
        case C.Backslash: out += '\\'; i += 2; break;
        case 0x2f: out += '/'; i += 2; break;
        case 0x62: out += '\b'; i += 2; break;
        case 0x66: out += '\f'; i += 2; break;
        case 0x6e: out += '\n'; i += 2; break;
        case 0x72: out += '\r'; i += 2; break;
        case 0x74: out += '\t'; i += 2; break;
        case 0x75: {
          const u = this.hexEscape(i);
          i += 6;
          if (u >= 0xdc00 && u <= 0xdfff) this.fail('unpaired low surrogate escape in a string', i - 6);
          if (u >= 0xd800 && u <= 0xdbff) {
            // serde_json (and UTF-8) need the pair: a lone high surrogate is no character.
            if (s.charCodeAt(i) !== C.Backslash || s.charCodeAt(i + 1) !== 0x75) this.fail('unpaired high surrogate escape in a string', i - 6);
            const lo = this.hexEscape(i);
            if (lo < 0xdc00 || lo > 0xdfff) this.fail('high surrogate escape not followed by a low surrogate escape', i);
            i += 6;
            out += String.fromCharCode(u, lo);
          } else {
            out += String.fromCharCode(u);
          }
          break;
        }
        default:
          this.fail(`invalid escape ${i + 1 < s.length ? JSON.stringify(s.slice(i, i + 2)) : 'at the end of the header'} in a string`, i);
      }
      runStart = i;
    }
  }

  /** The code unit of the `\uXXXX` escape at `at`. */
  hexEscape(at: number): number {
    const digits = this.s.slice(at + 2, at + 6);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) this.fail('\\u escape without four hex digits', at);
    return parseInt(digits, 16);
  }

  /** Reads an RFC 8259 number and returns its source text. */
  number(): string {
    const s = this.s;
    const start = this.i;
    let i = start;
    if (s.charCodeAt(i) === C.Minus) i++;
    const d0 = s.charCodeAt(i);
    if (d0 === C.Zero) i++;
    else if (d0 > C.Zero && d0 <= C.Nine) i = digitsEnd(s, i);
    else this.fail('a minus sign without digits', start);
    if (s.charCodeAt(i) === C.Dot) {
      const j = digitsEnd(s, i + 1);
      if (j === i + 1) this.fail('a decimal point without digits after it', i);
      i = j;
    }
    const e = s.charCodeAt(i);
    if (e === C.LowerE || e === C.UpperE) {
      let j = i + 1;
      const sign = s.charCodeAt(j);
      if (sign === C.Plus || sign === C.Minus) j++;
      const k = digitsEnd(s, j);
      if (k === j) this.fail('an exponent without digits', i);
      i = k;
    }
    // "01" is two tokens to JSON; serde_json calls it an invalid number.
    const next = s.charCodeAt(i);
    if (next >= C.Zero && next <= C.Nine) this.fail('a number with a leading zero', start);
    this.i = i;
    return s.slice(start, i);
  }
}

const LITERALS: ReadonlyArray<readonly [string, boolean | null]> = [
  ['true', true],
  ['false', false],
  ['null', null],
];

function digitsEnd(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c < C.Zero || c > C.Nine) break;
    i++;
  }
  return i;
}

function hex4(c: number): string {
  return c.toString(16).toUpperCase().padStart(4, '0');
}

function describeChar(s: string, at: number): string {
  if (at >= s.length) return 'the end of the header';
  const cp = s.codePointAt(at)!;
  return cp >= 0x20 && cp < 0x7f ? `'${String.fromCodePoint(cp)}'` : `U+${hex4(cp)}`;
}

/** Options of {@link formatJson}. */
export interface FormatJsonOptions {
  /** Spaces per level; 0 writes one line (`JSON.stringify`'s compact form). Default 2. */
  indent?: number;
  /** Write every object's keys in code point order, as Python sorts str. Default false. */
  sortKeys?: boolean;
  /** Escape every character outside U+0020..U+007E as `\uXXXX`, as Python's `ensure_ascii` does. Default false. */
  ensureAscii?: boolean;
  /** End the text with a line feed. Default true. */
  finalNewline?: boolean;
}

/**
 * JSON text for `value`, with the layout options Python's `json.dumps` has (indent,
 * sort_keys, ensure_ascii). Numbers are written as JavaScript writes them (`1e-5` becomes
 * `0.00001`, `8.0` becomes `8`), so this is not byte-identical to Python for floats.
 *
 * @example
 * formatJson({ r: 8, peft_type: 'LORA' }, { sortKeys: true });
 * // '{\n  "peft_type": "LORA",\n  "r": 8\n}\n'
 */
export function formatJson(value: unknown, options: FormatJsonOptions = {}): string {
  const { indent = 2, sortKeys = false, ensureAscii = false, finalNewline = true } = options;
  const replacer = sortKeys
    ? (_key: string, v: unknown): unknown => {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
        // A null prototype keeps a key named "__proto__" an ordinary key.
        const sorted = Object.create(null) as Record<string, unknown>;
        for (const k of Object.keys(v).sort(compareCodePoints)) sorted[k] = (v as Record<string, unknown>)[k];
        return sorted;
      }
    : undefined;
  let text = JSON.stringify(value, replacer, indent > 0 ? indent : undefined);
  if (text === undefined) throw new TypeError(`formatJson: value of type ${typeof value} has no JSON form`);
  // Outside strings the text is ASCII, so this touches string contents only.
  if (ensureAscii) text = text.replace(/[^\x20-\x7e\n]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return finalNewline ? text + '\n' : text;
}

/**
 * Orders strings by Unicode code point, which is the byte order of their UTF-8 forms (how
 * Rust compares `str` and Python compares `str`). JavaScript's `<` compares UTF-16 code
 * units, which puts U+10000 and above (surrogate pairs) before U+E000..U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codeUnitRank(x) - codeUnitRank(y);
  }
  return a.length - b.length;
}

/** Moves surrogates (D800..DFFF) above E000..FFFF so that code unit order becomes code point order. */
function codeUnitRank(c: number): number {
  if (c >= 0xd800 && c <= 0xdfff) return c + 0x2000;
  if (c >= 0xe000) return c - 0x800;
  return c;
}
