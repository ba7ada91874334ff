/**
 * A small safetensors reader and writer for the PyTorch reference tests only (the files the
 * reference script reads and writes). The library's own, validated and fuzzed reader lives in
 * src/io; this one is deliberately separate so the reference never shares code with what it
 * checks. Reads F64, F32, F16 and BF16 (the last two widened to Float32Array); writes F64 and F32,
 * and F16 / BF16 for values those hold exactly (to test readers).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** A tensor as the tests handle it: a shape and row-major values. */
export interface StTensor {
  shape: number[];
  data: Float64Array | Float32Array;
}

/** What {@link encodeSafetensors} takes: any array of numbers with its shape. */
export interface StInput {
  shape: number[];
  data: ArrayLike<number>;
}

const SIZES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

/** An f16 bit pattern as a number. */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** The f16 bit pattern of `v`; throws unless f16 holds `v` exactly (zero or a normal number). */
function floatToHalf(v: number): number {
  if (v === 0) return Object.is(v, -0) ? 0x8000 : 0;
  const e = Math.floor(Math.log2(Math.abs(v)));
  const frac = (Math.abs(v) / 2 ** e - 1) * 1024;
  if (e < -14 || e > 15 || !Number.isInteger(frac)) throw new Error(`encodeSafetensors: ${v} is not exactly an f16 normal number`);
  return (v < 0 ? 0x8000 : 0) | ((e + 15) << 10) | frac;
}

/**
 * Parse a safetensors file's bytes. Throws an Error naming the problem on a malformed file
 * (nothing is read outside `bytes`).
 */
export function parseSafetensors(bytes: Uint8Array): { tensors: Record<string, StTensor>; metadata?: Record<string, string> } {
  if (bytes.length < 8) throw new Error(`safetensors: ${bytes.length} bytes, the 8-byte header length is missing`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > 100_000_000 || 8 + n > bytes.length) throw new Error(`safetensors: header length ${n} does not fit a ${bytes.length}-byte file`);
  const header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n))) as Record<string, unknown>;
  const metadata = header.__metadata__ as Record<string, string> | undefined;
  delete header.__metadata__;
  const dataStart = 8 + n;
  const dataLen = bytes.length - dataStart;
  const entries = Object.entries(header).map(([name, info]) => {
    const { dtype, shape, data_offsets } = info as { dtype: string; shape: number[]; data_offsets: [number, number] };
    return { name, dtype, shape, begin: data_offsets[0], end: data_offsets[1] };
  });
  entries.sort((a, b) => a.begin - b.begin);
  let expected = 0;
  const tensors: Record<string, StTensor> = {};
  for (const e of entries) {
    const size = SIZES[e.dtype];
    if (size === undefined) throw new Error(`safetensors: tensor ${e.name}: unsupported dtype ${e.dtype}`);
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (e.begin !== expected || e.end - e.begin !== count * size || e.end > dataLen) {
      throw new Error(`safetensors: tensor ${e.name}: data_offsets [${e.begin}, ${e.end}] do not fit ${e.dtype} ${JSON.stringify(e.shape)} at byte ${expected}`);
    }
    expected = e.end;
    const at = dataStart + e.begin;
    let data: Float64Array | Float32Array;
    if (e.dtype === 'F64') {
      data = new Float64Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat64(at + 8 * i, true);
    } else {
      data = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        if (e.dtype === 'F32') data[i] = view.getFloat32(at + 4 * i, true);
        else if (e.dtype === 'F16') data[i] = halfToFloat(view.getUint16(at + 2 * i, true));
        else data[i] = new Float32Array(new Uint32Array([view.getUint16(at + 2 * i, true) << 16]).buffer)[0]!;
      }
    }
    tensors[e.name] = { shape: e.shape, data };
  }
  if (expected !== dataLen) throw new Error(`safetensors: tensor data ends at byte ${expected}, the file has ${dataLen} bytes of data`);
  return metadata ? { tensors, metadata } : { tensors };
}

/**
 * Serialise tensors as the safetensors library does for one dtype: names sorted, a compact
 * JSON header with `__metadata__` first, padded with spaces to a multiple of 8 bytes.
 */
export type StDtype = 'F64' | 'F32' | 'F16' | 'BF16';

export function encodeSafetensors(tensors: Record<string, StInput>, opts: { dtype?: StDtype; metadata?: Record<string, string> } = {}): Uint8Array {
  const dtype = opts.dtype ?? 'F32';
  const size = SIZES[dtype]!;
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  let offset = 0;
  const names = Object.keys(tensors).sort();
  for (const name of names) {
    const t = tensors[name]!;
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== count) throw new Error(`encodeSafetensors: ${name} has ${t.data.length} values, shape ${JSON.stringify(t.shape)} needs ${count}`);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + count * size] };
    offset += count * size;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (new TextEncoder().encode(text).length % 8)) % 8);
  const head = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + head.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const name of names) {
    const d = tensors[name]!.data;
    for (let i = 0; i < d.length; i++, at += size) {
      if (dtype === 'F64') view.setFloat64(at, d[i]!, true);
      else if (dtype === 'F32') view.setFloat32(at, d[i]!, true);
      else if (dtype === 'F16') view.setUint16(at, floatToHalf(d[i]!), true);
      else {
        const bits = new Uint32Array(new Float32Array([d[i]!]).buffer)[0]!;
        if (bits & 0xffff || Math.fround(d[i]!) !== d[i]) throw new Error(`encodeSafetensors: ${d[i]} is not exactly a bf16 number`);
        view.setUint16(at, bits >>> 16, true);
      }
    }
  }
  return out;
}

export function readSafetensorsFile(path: string): { tensors: Record<string, StTensor>; metadata?: Record<string, string> } {
  return parseSafetensors(readFileSync(path));
}

/** Write to a temporary file in the same folder, then rename. */
export function writeSafetensorsFile(path: string, tensors: Record<string, StInput>, opts: { dtype?: StDtype; metadata?: Record<string, string> } = {}): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.tmp-${basename(path)}-${process.pid}`);
  writeFileSync(tmp, encodeSafetensors(tensors, opts));
  renameSync(tmp, path);
}
