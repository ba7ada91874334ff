/**
 * safetensors, read and written in memory: the portable core that the Node entry
 * (`webgpu-lora/io/node`) and the browser entry (`src/io/browser.ts`) share. No Node imports.
 *
 * The format (https://github.com/huggingface/safetensors): 8 bytes of little-endian u64 `N`,
 * then `N` bytes of UTF-8 JSON, then the data section. The JSON is an object whose keys are
 * tensor names, each `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}` with
 * offsets relative to the start of the data section, plus an optional `"__metadata__"` map of
 * strings to strings.
 *
 * Reading validates as the reference implementation does (the Rust crate's
 * `SafeTensors::read_metadata` and `Metadata::validate`, serde_json underneath):
 * - `N` at most 100,000,000 and `8 + N` within the file;
 * - the header is UTF-8 (a BOM is not whitespace and is refused), JSON (JSON whitespace
 *   before and after the object is allowed, as serde_json allows it; the reference writer
 *   pads with spaces), and an object; every tensor entry has a known `dtype` string, a
 *   `shape` of non-negative integers and `data_offsets` of exactly two (`1.0`, `1e0` and
 *   `-0` are floats to serde_json and refused); unknown fields in an entry are ignored, as
 *   serde ignores them; `__metadata__` is null or an object of strings;
 * - tensors sorted by `data_offsets` must tile the data section: the first begins at 0,
 *   each begins where the one before it ends (no holes, no overlap), `end >= begin`, and the
 *   last ends exactly at the end of the file (no trailing bytes);
 * - `end - begin` equals product(shape) × the dtype's size, computed as the reference does
 *   in 64-bit unsigned integers with every overflow an error (BigInt here), and sub-byte
 *   dtypes (F4, F6_*) must end on a byte boundary.
 * Two deliberate differences, both stricter: duplicate keys are refused at every level (the
 * format forbids them; serde_json keeps the last tensor or metadata entry silently), and a
 * dimension above 2^53 - 1 is refused because shapes are JavaScript numbers here (only a
 * tensor with another dimension of 0 can have one and still pass the checks above).
 *
 * The key order of the JSON does not matter (the reference sorts by offsets);
 * {@link SafetensorsFile.tensors} lists tensors in data order.
 *
 * Writing follows the reference writer byte for byte: tensors ordered by dtype alignment,
 * largest first (the reference's dtype order reversed: U64, I64, F64, C64, F32, U32, I32,
 * BF16, F16, ...), then by name in code point order (UTF-8 byte order); the header is
 * compact JSON with the keys `dtype`, `shape`, `data_offsets` in that order and
 * `__metadata__` first, padded with spaces to a multiple of 8 bytes so the data section
 * starts 8-aligned. Metadata keys are written sorted (the reference writes a hash map's
 * order, which is the same when there is one key, as in PEFT's `{"format": "pt"}`).
 *
 * @example
 * const bytes = serializeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) } }, { format: 'pt' });
 * const file = parseSafetensors(bytes, 'w.safetensors');
 * file.get('w').toFloat32(); // Float32Array [1, 2, 3, 4]
 */
import { decodeHalf, encodeHalf } from '../gpu/half.js';
import { quoteName, SafetensorsError } from './errors.js';
import { compareCodePoints, jsonPosition, JsonSyntaxError, parseJsonStrict, type JsonValue } from './json.js';

/** Every dtype the reference implementation knows, in its order (increasing alignment). */
export const SAFETENSORS_DTYPES = [
  'BOOL',
  'F4',
  'F6_E2M3',
  'F6_E3M2',
  'U8',
  'I8',
  'F8_E5M2',
  'F8_E4M3',
  'F8_E8M0',
  'F8_E4M3FNUZ',
  'F8_E5M2FNUZ',
  'I16',
  'U16',
  'F16',
  'BF16',
  'I32',
  'U32',
  'F32',
  'C64',
  'F64',
  'I64',
  'U64',
] as const;

/** A safetensors dtype name. */
export type SafetensorsDType = (typeof SAFETENSORS_DTYPES)[number];

/** Bits per element of each dtype (F4 is 4, F6_* are 6; everything else is whole bytes). */
export const SAFETENSORS_DTYPE_BITS: Readonly<Record<SafetensorsDType, number>> = Object.freeze({
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  F8_E4M3FNUZ: 8, F8_E5M2FNUZ: 8, I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32,
  F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
});

/** The largest header the reference implementation reads (bytes). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

/** Bytes of the little-endian u64 header length at the start of a file. */
export const SAFETENSORS_PREFIX_BYTES = 8;

const U64_MAX = (1n << 64n) - 1n;
const DTYPE_RANK = new Map<string, number>(SAFETENSORS_DTYPES.map((d, i) => [d, i]));
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** One tensor's entry in a validated header. */
export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** `[begin, end)` in bytes, relative to the start of the data section, as in the header. */
  readonly dataOffsets: readonly [number, number];
  /** Elements: product(shape), 1 for a scalar (shape `[]`). */
  readonly numel: number;
}

/** A validated header: what a reader needs to place the data section and its tensors. */
export interface SafetensorsHeader {
  /** The file's path or name, for messages. */
  readonly source: string | undefined;
  /** `N`, the header's length in bytes (padding included). */
  readonly headerLength: number;
  /** Where the data section starts in the file: 8 + N. */
  readonly dataOffset: number;
  /** Bytes of the data section: the file's length less 8 + N. */
  readonly dataLength: number;
  /** `__metadata__` (a null-prototype object), or undefined when the header has none or null. */
  readonly metadata: Readonly<Record<string, string>> | undefined;
  /** The tensors in data order (sorted by `data_offsets`). */
  readonly entries: readonly SafetensorsEntry[];
}

/**
 * Reads and checks the 8-byte header length at the start of a file of `fileLength` bytes.
 * `prefix` holds at least the file's first 8 bytes (or all of it when shorter).
 * Returns `N`, known to be at most {@link SAFETENSORS_MAX_HEADER_BYTES} and to fit in the file.
 */
export function readSafetensorsHeaderLength(prefix: Uint8Array, fileLength: number, source?: string): number {
  const site = { source };
  if (fileLength === 0) throw new SafetensorsError('the file is empty (0 bytes); a safetensors file starts with an 8-byte header length', site);
  if (fileLength < SAFETENSORS_PREFIX_BYTES || prefix.length < SAFETENSORS_PREFIX_BYTES) {
    throw new SafetensorsError(`the file is ${Math.min(fileLength, prefix.length)} bytes, shorter than the 8-byte header length it must start with`, site);
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, SAFETENSORS_PREFIX_BYTES);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new SafetensorsError(`header length ${n} is over the limit of ${SAFETENSORS_MAX_HEADER_BYTES} bytes`, site);
  }
  const headerLength = Number(n);
  if (SAFETENSORS_PREFIX_BYTES + headerLength > fileLength) {
    throw new SafetensorsError(
      `header length ${headerLength} runs past the end of the file: 8 + ${headerLength} = ${8 + headerLength} bytes needed, the file has ${fileLength}`,
      site,
    );
  }
  return headerLength;
}

/**
 * Parses and validates the header bytes (the `N` bytes after the length) of a file of
 * `fileLength` bytes, without looking at the data section. Throws {@link SafetensorsError}.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileLength: number, source?: string): SafetensorsHeader {
  const site = { source };
  const headerLength = headerBytes.length;
  const dataOffset = SAFETENSORS_PREFIX_BYTES + headerLength;
  if (dataOffset > fileLength) {
    throw new SafetensorsError(`header of ${headerLength} bytes does not fit in a file of ${fileLength} bytes`, site);
  }

  let text: string;
  try {
    // ignoreBOM keeps a leading U+FEFF in the text, where the JSON reader refuses it as serde_json does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (e) {
    throw new SafetensorsError(`header (${headerLength} bytes at file offset 8) is not valid UTF-8${firstBadUtf8(headerBytes)}`, site, { cause: e });
  }

  let root: JsonValue;
  try {
    root = parseJsonStrict(text);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    const where = `(at ${jsonPosition(text, e.at)} of the header)`;
    if (e.duplicate?.depth === 1) {
      if (e.duplicate.key === '__metadata__') throw new SafetensorsError(`the header has "__metadata__" twice ${where}`, site, { cause: e });
      throw new SafetensorsError(`tensor name ${quoteName(e.duplicate.key)} appears twice in the header ${where}; names must be unique`, site, { cause: e });
    }
    if (e.duplicate) throw new SafetensorsError(`the header has a duplicate key ${quoteName(e.duplicate.key)} ${where}`, site, { cause: e });
    throw new SafetensorsError(`header is not valid JSON: ${e.problem} ${where}`, site, { cause: e });
  }
  if (root.type !== 'object') throw new SafetensorsError(`header must be a JSON object, found ${describeJson(root)}`, site);

  let metadata: Record<string, string> | undefined;
  const raw: RawEntry[] = [];
  for (const [key, value] of root.entries) {
    if (key === '__metadata__') {
      metadata = readMetadata(value, source);
    } else {
      raw.push(readEntry(key, value, source));
    }
  }

  // The reference sorts by (begin, end); Array.prototype.sort is stable, so zero-size
  // tensors at one offset keep their header order.
  raw.sort((a, b) => (a.begin < b.begin ? -1 : a.begin > b.begin ? 1 : a.end < b.end ? -1 : a.end > b.end ? 1 : 0));

  let start = 0n;
  let previous: string | undefined;
  for (const t of raw) {
    const tsite = { source, tensor: t.name };
    const offsets = `data_offsets [${t.begin}, ${t.end}]`;
    if (t.begin !== start) {
      const after = previous === undefined ? 'the start of the data section' : `the end of tensor ${quoteName(previous)}`;
      const problem = t.begin < start ? `overlaps the data before it` : `leaves a hole of ${t.begin - start} bytes before it`;
      throw new SafetensorsError(`${offsets} begin at ${t.begin}, expected ${start} (${after}): it ${problem}`, tsite);
    }
    if (t.end < t.begin) throw new SafetensorsError(`${offsets} end before they begin`, tsite);
    start = t.end;
    previous = t.name;

    let numel = 1n;
    for (const d of t.shape) {
      numel *= d;
      if (numel > U64_MAX) throw new SafetensorsError(`shape [${t.shape.join(', ')}] overflows: its element count is over 2^64 - 1`, tsite);
    }
    const bits = BigInt(SAFETENSORS_DTYPE_BITS[t.dtype]);
    const nbits = numel * bits;
    if (nbits > U64_MAX) {
      throw new SafetensorsError(`shape [${t.shape.join(', ')}] × ${t.dtype} overflows: ${numel} elements of ${bits} bits is over 2^64 - 1 bits`, tsite);
    }
    if (nbits % 8n !== 0n) {
      throw new SafetensorsError(`shape [${t.shape.join(', ')}] of ${t.dtype} (${bits} bits each) is ${nbits} bits, which does not end on a byte boundary`, tsite);
    }
    const size = nbits / 8n;
    if (t.end - t.begin !== size) {
      throw new SafetensorsError(
        `${offsets} hold ${t.end - t.begin} bytes, expected ${size} (${t.dtype} × shape [${t.shape.join(', ')}] = ${numel} elements of ${Number(bits) / 8} bytes)`,
        tsite,
      );
    }
    t.numel = numel;
  }

  const expectedLength = BigInt(dataOffset) + start;
  if (expectedLength !== BigInt(fileLength)) {
    const covered = `the header's tensors end at file offset ${expectedLength} (8 + header ${headerLength} + data ${start})`;
    if (expectedLength < BigInt(fileLength)) {
      throw new SafetensorsError(`${BigInt(fileLength) - expectedLength} trailing bytes: ${covered}, the file has ${fileLength} bytes`, site);
    }
    throw new SafetensorsError(`data section too short: ${covered}, the file has ${fileLength} bytes`, site);
  }

  const entries = raw.map((t): SafetensorsEntry => {
    const shape = t.shape.map((d, axis) => {
      if (d > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new SafetensorsError(`shape[${axis}] = ${d} is over 2^53 - 1, the largest dimension this reader keeps exactly`, { source, tensor: t.name });
      }
      return Number(d);
    });
    return Object.freeze({
      name: t.name,
      dtype: t.dtype,
      shape: Object.freeze(shape),
      dataOffsets: Object.freeze([Number(t.begin), Number(t.end)] as const),
      numel: Number(t.numel),
    });
  });
  return Object.freeze({
    source,
    headerLength,
    dataOffset,
    dataLength: fileLength - dataOffset,
    metadata,
    entries: Object.freeze(entries),
  });
}

/**
 * Binds a validated header to its data section (the file's bytes from `header.dataOffset`
 * on, exactly `header.dataLength` of them). The tensors' `bytes()` are views into `data`.
 */
export function bindSafetensorsData(header: SafetensorsHeader, data: Uint8Array): SafetensorsFile {
  if (data.length !== header.dataLength) {
    throw new SafetensorsError(`data section is ${data.length} bytes, expected ${header.dataLength} from the header and the file length`, {
      source: header.source,
    });
  }
  return new SafetensorsFile(header, data);
}

/**
 * Parses a whole safetensors file held in memory. The tensors' `bytes()` are views into
 * `bytes` (no copy); `source` (a path or name) goes into error messages.
 *
 * @example
 * const file = parseSafetensors(new Uint8Array(await (await fetch(url)).arrayBuffer()), url);
 * for (const t of file.tensors) console.log(t.name, t.dtype, t.shape);
 */
export function parseSafetensors(bytes: Uint8Array, source?: string): SafetensorsFile {
  const n = readSafetensorsHeaderLength(bytes, bytes.length, source);
  const header = parseSafetensorsHeader(bytes.subarray(SAFETENSORS_PREFIX_BYTES, SAFETENSORS_PREFIX_BYTES + n), bytes.length, source);
  return bindSafetensorsData(header, bytes.subarray(header.dataOffset));
}

/** A parsed safetensors file: its metadata and its tensors, in data order and by name. */
export class SafetensorsFile {
  /** The file's path or name, when given. */
  readonly source: string | undefined;
  /** `__metadata__` (a frozen null-prototype object), or undefined when the file has none. */
  readonly metadata: Readonly<Record<string, string>> | undefined;
  /** The tensors in data order. */
  readonly tensors: readonly SafetensorsTensor[];
  /** `N`, the header's length in bytes. */
  readonly headerLength: number;
  /** The file's length in bytes. */
  readonly byteLength: number;
  readonly #byName: Map<string, SafetensorsTensor>;

  /** Use {@link parseSafetensors} or {@link bindSafetensorsData}. */
  constructor(header: SafetensorsHeader, data: Uint8Array) {
    this.source = header.source;
    this.metadata = header.metadata;
    this.headerLength = header.headerLength;
    this.byteLength = header.dataOffset + data.length;
    this.tensors = Object.freeze(header.entries.map((e) => new SafetensorsTensor(e, header, data)));
    this.#byName = new Map(this.tensors.map((t) => [t.name, t]));
  }

  /** Tensor names in data order. */
  names(): string[] {
    return this.tensors.map((t) => t.name);
  }

  /** Whether the file has a tensor called `name`. */
  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /** The tensor called `name`; throws {@link SafetensorsError} when there is none. */
  get(name: string): SafetensorsTensor {
    const t = this.#byName.get(name);
    if (t === undefined) {
      const some = this.names().slice(0, 8).map(quoteName).join(', ');
      const more = this.tensors.length > 8 ? ', …' : '';
      throw new SafetensorsError(`not in the file, which has ${this.tensors.length} tensors${this.tensors.length ? `: ${some}${more}` : ''}`, {
        source: this.source,
        tensor: name,
      });
    }
    return t;
  }
}

/** One tensor of a {@link SafetensorsFile}. */
export class SafetensorsTensor implements SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly dataOffsets: readonly [number, number];
  readonly numel: number;
  /** Where the tensor's bytes start in the file (the data section's offset + begin). */
  readonly byteOffset: number;
  readonly byteLength: number;
  readonly #data: Uint8Array;
  readonly #source: string | undefined;

  /** Use {@link parseSafetensors} or {@link bindSafetensorsData}. */
  constructor(entry: SafetensorsEntry, header: SafetensorsHeader, data: Uint8Array) {
    const [begin, end] = entry.dataOffsets;
    // bindSafetensorsData and the header checks make this impossible; checked again so that
    // no path can hand out a view past the data.
    if (!(begin >= 0 && begin <= end && end <= data.length)) {
      throw new SafetensorsError(`data_offsets [${begin}, ${end}] lie outside the ${data.length}-byte data section`, {
        source: header.source,
        tensor: entry.name,
      });
    }
    this.name = entry.name;
    this.dtype = entry.dtype;
    this.shape = entry.shape;
    this.dataOffsets = entry.dataOffsets;
    this.numel = entry.numel;
    this.byteOffset = header.dataOffset + begin;
    this.byteLength = end - begin;
    this.#data = data;
    this.#source = header.source;
  }

  /** The tensor's raw little-endian bytes: a view into the file's buffer (no copy). */
  bytes(): Uint8Array {
    return this.#data.subarray(this.dataOffsets[0], this.dataOffsets[1]);
  }

  /**
   * The values as a new Float32Array: F32 copied, F16 and BF16 converted exactly (every
   * binary16 and bfloat16 value is a float32 value). Other dtypes are refused; read their
   * bytes with {@link bytes}.
   */
  toFloat32(): Float32Array {
    const bytes = this.bytes();
    switch (this.dtype) {
      case 'F32': {
        const out = new Float32Array(this.numel);
        if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
        else {
          const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
          for (let i = 0; i < out.length; i++) out[i] = v.getFloat32(4 * i, true);
        }
        return out;
      }
      case 'F16':
        return decodeHalf(readUint16(bytes, this.numel));
      case 'BF16': {
        // bfloat16 is the top half of a float32.
        const bits = readUint16(bytes, this.numel);
        const out = new Float32Array(this.numel);
        const out32 = new Uint32Array(out.buffer);
        for (let i = 0; i < bits.length; i++) out32[i] = bits[i]! << 16;
        return out;
      }
      default:
        throw new SafetensorsError(`toFloat32 converts F32, F16 and BF16, found ${this.dtype}; read its little-endian bytes with bytes()`, {
          source: this.#source,
          tensor: this.name,
        });
    }
  }
}

/** A tensor to write. */
export interface SafetensorsTensorInput {
  readonly dtype: SafetensorsDType;
  /** Non-negative integer dimensions; `[]` is a scalar, a 0 makes an empty tensor. */
  readonly shape: readonly number[];
  /**
   * - F32: a Float32Array;
   * - F16: a Uint16Array of binary16 bits, or a Float32Array, converted with round to
   *   nearest even (as torch's `.half()`);
   * - BF16: a Uint16Array of bfloat16 bits;
   * - any dtype: a Uint8Array of the little-endian bytes as they go in the file.
   */
  readonly data: Float32Array | Uint16Array | Uint8Array;
}

/** Tensors by name: a Map, [name, tensor] pairs, or a plain object. */
export type SafetensorsTensorsInput =
  | ReadonlyMap<string, SafetensorsTensorInput>
  | Iterable<readonly [string, SafetensorsTensorInput]>
  | Readonly<Record<string, SafetensorsTensorInput>>;

/** A file to write as pieces (header first, then each tensor's bytes), for streaming writers. */
export interface SafetensorsChunks {
  /** The 8-byte length and the padded header, then one entry per tensor in file order. */
  readonly chunks: readonly Uint8Array[];
  /** The file's length: the sum of the chunks' lengths. */
  readonly byteLength: number;
}

/**
 * Lays out a safetensors file as pieces without copying tensor data that is already in its
 * file form (F32 from a Float32Array, raw bytes, F16/BF16 bits on a little-endian machine).
 * {@link serializeSafetensors} joins them; the Node entry writes them one after another.
 */
export function encodeSafetensors(tensors: SafetensorsTensorsInput, metadata?: Readonly<Record<string, string>>): SafetensorsChunks {
  const items: Array<{ name: string; dtype: SafetensorsDType; shape: readonly number[]; bytes: Uint8Array }> = [];
  const seen = new Set<string>();
  for (const [name, t] of tensorEntries(tensors)) {
    if (typeof name !== 'string') throw new SafetensorsError(`tensor names must be strings, found ${typeof name}`);
    if (seen.has(name)) throw new SafetensorsError('given twice; names must be unique', { tensor: name });
    seen.add(name);
    items.push({ name, dtype: t.dtype, shape: t.shape, bytes: tensorBytes(name, t) });
  }
  items.sort((a, b) => DTYPE_RANK.get(b.dtype)! - DTYPE_RANK.get(a.dtype)! || compareCodePoints(a.name, b.name));

  const parts: string[] = [];
  if (metadata !== undefined) parts.push(`"__metadata__":${metadataJson(metadata)}`);
  let offset = 0;
  for (const t of items) {
    const end = offset + t.bytes.length;
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${end}]}`);
    offset = end;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const headerLength = Math.ceil(json.length / 8) * 8;
  if (headerLength > SAFETENSORS_MAX_HEADER_BYTES) {
    throw new SafetensorsError(`the header would be ${headerLength} bytes, over the limit of ${SAFETENSORS_MAX_HEADER_BYTES} that readers accept`);
  }
  const head = new Uint8Array(SAFETENSORS_PREFIX_BYTES + headerLength).fill(0x20, SAFETENSORS_PREFIX_BYTES);
  new DataView(head.buffer).setBigUint64(0, BigInt(headerLength), true);
  head.set(json, SAFETENSORS_PREFIX_BYTES);
  return { chunks: [head, ...items.map((t) => t.bytes)], byteLength: head.length + offset };
}

/**
 * A safetensors file as bytes, laid out as the reference writer lays it out (see the file
 * header): tensors by dtype alignment then name, header padded with spaces to 8 bytes.
 *
 * @example
 * const bytes = serializeSafetensors(
 *   { 'lora_A.weight': { dtype: 'F32', shape: [4, 16], data: new Float32Array(64) } },
 *   { format: 'pt' },
 * );
 */
export function serializeSafetensors(tensors: SafetensorsTensorsInput, metadata?: Readonly<Record<string, string>>): Uint8Array<ArrayBuffer> {
  const { chunks, byteLength } = encodeSafetensors(tensors, metadata);
  const out = new Uint8Array(byteLength);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// ---- header reading ----

interface RawEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: bigint[];
  begin: bigint;
  end: bigint;
  numel: bigint;
}

function readMetadata(value: JsonValue, source: string | undefined): Record<string, string> | undefined {
  if (value.type === 'null') return undefined;
  if (value.type !== 'object') {
    throw new SafetensorsError(`"__metadata__" must be an object of strings, found ${describeJson(value)}`, { source });
  }
  const out = Object.create(null) as Record<string, string>;
  for (const [k, v] of value.entries) {
    if (v.type !== 'string') {
      throw new SafetensorsError(`"__metadata__" values must be strings, found ${describeJson(v)} for key ${quoteName(k)}`, { source });
    }
    out[k] = v.value;
  }
  return Object.freeze(out);
}

function readEntry(name: string, value: JsonValue, source: string | undefined): RawEntry {
  const site = { source, tensor: name };
  if (value.type !== 'object') {
    throw new SafetensorsError(`header entry must be an object with dtype, shape and data_offsets, found ${describeJson(value)}`, site);
  }
  const field = (key: string): JsonValue => {
    const f = value.entries.find(([k]) => k === key);
    if (f === undefined) throw new SafetensorsError(`header entry has no "${key}"`, site);
    return f[1];
  };
  const d = field('dtype');
  if (d.type !== 'string') throw new SafetensorsError(`dtype must be a string, found ${describeJson(d)}`, site);
  if (!DTYPE_RANK.has(d.value)) {
    throw new SafetensorsError(`unknown dtype ${quoteName(d.value)}; the format's dtypes are ${SAFETENSORS_DTYPES.join(', ')}`, site);
  }
  const s = field('shape');
  if (s.type !== 'array') throw new SafetensorsError(`shape must be an array of non-negative integers, found ${describeJson(s)}`, site);
  const shape = s.items.map((v, axis) => readUsize(v, `shape[${axis}]`, site));
  const o = field('data_offsets');
  if (o.type !== 'array' || o.items.length !== 2) {
    const found = o.type === 'array' ? `an array of ${o.items.length}` : describeJson(o);
    throw new SafetensorsError(`data_offsets must be an array of two non-negative integers [begin, end], found ${found}`, site);
  }
  return {
    name,
    dtype: d.value as SafetensorsDType,
    shape,
    begin: readUsize(o.items[0]!, 'data_offsets[0]', site),
    end: readUsize(o.items[1]!, 'data_offsets[1]', site),
    numel: 0n,
  };
}

/** A u64 as serde_json reads one: an integer without sign, fraction or exponent, at most 2^64 - 1. */
function readUsize(v: JsonValue, what: string, site: { source: string | undefined; tensor: string }): bigint {
  if (v.type !== 'number') throw new SafetensorsError(`${what} must be a non-negative integer, found ${describeJson(v)}`, site);
  if (!/^(0|[1-9][0-9]*)$/.test(v.raw)) throw new SafetensorsError(`${what} must be a non-negative integer, found ${clip(v.raw)}`, site);
  const n = BigInt(v.raw);
  if (n > U64_MAX) throw new SafetensorsError(`${what} = ${clip(v.raw)} is over 2^64 - 1`, site);
  return n;
}

function describeJson(v: JsonValue): string {
  switch (v.type) {
    case 'object': return 'an object';
    case 'array': return 'an array';
    case 'string': return `the string ${quoteName(v.value)}`;
    case 'number': return `the number ${clip(v.raw)}`;
    case 'boolean': return `${v.value}`;
    case 'null': return 'null';
  }
}

function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}… (${s.length} characters)` : s;
}

/** ` (first bad byte at file offset K)`, for the UTF-8 error's message. */
function firstBadUtf8(bytes: Uint8Array): string {
  let lo = 0;
  let hi = bytes.length;
  // The longest prefix that decodes: a bad sequence makes every longer prefix fail too,
  // while a cut-off good sequence only fails at its end, so this finds the first bad byte
  // to within one character.
  const ok = (n: number): boolean => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, n), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return ` (first bad byte near file offset ${SAFETENSORS_PREFIX_BYTES + lo})`;
}

// ---- writing ----

function tensorEntries(tensors: SafetensorsTensorsInput): Iterable<readonly [string, SafetensorsTensorInput]> {
  if (tensors instanceof Map) return tensors.entries();
  if (typeof (tensors as { [Symbol.iterator]?: unknown })[Symbol.iterator] === 'function') {
    return tensors as Iterable<readonly [string, SafetensorsTensorInput]>;
  }
  return Object.entries(tensors as Record<string, SafetensorsTensorInput>);
}

const LONE_SURROGATE = /\p{Surrogate}/u;

function checkWellFormed(s: string, what: string, site: { tensor?: string }): void {
  if (LONE_SURROGATE.test(s)) throw new SafetensorsError(`${what} has an unpaired surrogate, which UTF-8 cannot encode`, site);
}

/** The file bytes of one tensor, after checking dtype, shape and data against each other. */
function tensorBytes(name: string, t: SafetensorsTensorInput): Uint8Array {
  const site = { tensor: name };
  if (name === '__metadata__') throw new SafetensorsError('"__metadata__" is reserved for the metadata map and cannot name a tensor', site);
  checkWellFormed(name, 'the name', site);
  if (t === null || typeof t !== 'object') throw new SafetensorsError(`expected { dtype, shape, data }, found ${t === null ? 'null' : typeof t}`, site);
  if (!DTYPE_RANK.has(t.dtype)) throw new SafetensorsError(`unknown dtype ${JSON.stringify(String(t.dtype))}; the format's dtypes are ${SAFETENSORS_DTYPES.join(', ')}`, site);
  if (!Array.isArray(t.shape)) throw new SafetensorsError(`shape must be an array of non-negative integers, found ${typeof t.shape}`, site);
  let numel = 1;
  t.shape.forEach((d: unknown, axis: number) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(`shape[${axis}] must be a non-negative safe integer, found ${String(d)}`, site);
    }
    numel *= d;
  });
  const bits = SAFETENSORS_DTYPE_BITS[t.dtype];
  if (!Number.isSafeInteger(numel * bits)) throw new SafetensorsError(`shape [${t.shape.join(', ')}] has too many elements (${numel})`, site);
  if ((numel * bits) % 8 !== 0) {
    throw new SafetensorsError(`shape [${t.shape.join(', ')}] of ${t.dtype} (${bits} bits each) does not end on a byte boundary`, site);
  }
  const nbytes = (numel * bits) / 8;
  const d = t.data;
  const expect = (count: number, unit: string): void => {
    if (count !== numel) throw new SafetensorsError(`data has ${count} ${unit}, expected ${numel} (shape [${t.shape.join(', ')}])`, site);
  };
  if (d instanceof Uint8Array) {
    if (d.length !== nbytes) {
      throw new SafetensorsError(`data has ${d.length} bytes, expected ${nbytes} (${t.dtype} × shape [${t.shape.join(', ')}])`, site);
    }
    return d;
  }
  if (d instanceof Float32Array && t.dtype === 'F32') {
    expect(d.length, 'float32 values');
    return littleEndianBytes(d, 4);
  }
  if (d instanceof Float32Array && t.dtype === 'F16') {
    expect(d.length, 'float32 values');
    return littleEndianBytes(encodeHalf(d), 2);
  }
  if (d instanceof Uint16Array && (t.dtype === 'F16' || t.dtype === 'BF16')) {
    expect(d.length, `${t.dtype} bit patterns`);
    return littleEndianBytes(d, 2);
  }
  const kind = d === null || typeof d !== 'object' ? String(d) : (d as object).constructor.name;
  throw new SafetensorsError(
    `data is a ${kind}, which does not go with dtype ${t.dtype}: give F32 a Float32Array, F16 a Uint16Array of bits or a Float32Array, BF16 a Uint16Array, any dtype a Uint8Array of its bytes`,
    site,
  );
}

/** The bytes of `a` in little-endian order: a view on little-endian machines, a swapped copy otherwise. */
function littleEndianBytes(a: Float32Array | Uint16Array, size: 2 | 4): Uint8Array {
  const bytes = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE_ENDIAN) return bytes;
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < out.length; i += size) for (let j = 0; j < size; j++) out[i + j] = bytes[i + size - 1 - j]!;
  return out;
}

/** `n` little-endian u16s read from `bytes` into a new array. */
function readUint16(bytes: Uint8Array, n: number): Uint16Array {
  const out = new Uint16Array(n);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes.subarray(0, 2 * n));
  else for (let i = 0; i < n; i++) out[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
  return out;
}

function metadataJson(metadata: Readonly<Record<string, string>>): string {
  if (metadata === null || typeof metadata !== 'object') throw new SafetensorsError(`metadata must be an object of strings, found ${metadata === null ? 'null' : typeof metadata}`);
  const keys = Object.keys(metadata).sort(compareCodePoints);
  return `{${keys
    .map((k) => {
      const v: unknown = metadata[k];
      if (typeof v !== 'string') throw new SafetensorsError(`metadata values must be strings, found ${typeof v} for key ${quoteName(k)}`);
      checkWellFormed(k, `metadata key ${quoteName(k)}`, {});
      checkWellFormed(v, `metadata value for key ${quoteName(k)}`, {});
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    })
    .join(',')}}`;
}
