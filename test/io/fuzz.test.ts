/**
 * Randomised safetensors reading (fast-check, fixed seeds): valid files cut short, with bytes
 * flipped, inserted or deleted, with JSON punctuation dropped into the header or the length
 * prefix nudged, either fail with a SafetensorsError (never a RangeError, TypeError or any
 * other escape) or load correctly: every tensor view lies inside the buffer, the views tile
 * the data section exactly, sizes agree with shape × dtype, and the values read back are the
 * bytes at those offsets. The checks here are written independently of src/io (DataView reads,
 * their own dtype table and binary16 decoding, JSON.parse as a second opinion on the header).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseSafetensors, SafetensorsError, serializeSafetensors, type SafetensorsFile, type SafetensorsTensorInput } from '../../src/index.js';

const BITS: Record<string, number> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8, F8_E4M3FNUZ: 8,
  F8_E5M2FNUZ: 8, I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
};
const DTYPES = ['F32', 'F16', 'BF16', 'U8', 'I64', 'BOOL', 'F4'] as const;

/** binary16 bits to a number, from the IEEE 754 definition. */
function half(h: number): number {
  const s = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * Math.pow(2, -24) : s * Math.pow(2, e - 15) * (1 + m / 1024);
}

const sameValue = (a: number, b: number) => (Number.isNaN(a) && Number.isNaN(b)) || Object.is(a, b);

/** What a successful load must satisfy, checked against the raw buffer. */
function checkLoad(buf: Uint8Array, file: SafetensorsFile): void {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  expect(file.headerLength).toBe(n);
  expect(n).toBeLessThanOrEqual(100_000_000);
  // A second opinion on the header: it must be JSON (JSON.parse is laxer about duplicates),
  // whose non-metadata keys are the tensor names.
  const json = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n))) as Record<string, unknown>;
  expect(Object.keys(json).filter((k) => k !== '__metadata__').sort()).toEqual(file.names().sort());

  let at = 8 + n;
  for (const t of file.tensors) {
    expect(t.byteOffset).toBe(at);
    const numel = t.shape.reduce((p, d) => p * BigInt(d), 1n);
    expect(BigInt(t.byteLength) * 8n).toBe(numel * BigInt(BITS[t.dtype]!));
    at += t.byteLength;
    expect(at).toBeLessThanOrEqual(buf.length);
    const view = t.bytes();
    expect(view.buffer).toBe(buf.buffer);
    expect(view.byteOffset).toBe(buf.byteOffset + t.byteOffset);
    expect(view.length).toBe(t.byteLength);
    if (t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16') {
      const v = t.toFloat32();
      const bits = new Uint32Array(v.buffer, v.byteOffset, v.length);
      expect(v.length).toBe(Number(numel));
      for (let i = 0; i < v.length; i++) {
        if (t.dtype === 'F32') expect(bits[i]).toBe(dv.getUint32(t.byteOffset + 4 * i, true));
        else if (t.dtype === 'BF16') expect(bits[i]).toBe((dv.getUint16(t.byteOffset + 2 * i, true) << 16) >>> 0);
        else expect(sameValue(v[i]!, half(dv.getUint16(t.byteOffset + 2 * i, true)))).toBe(true);
      }
    } else {
      expect(() => t.toFloat32()).toThrow(SafetensorsError);
    }
  }
  expect(at).toBe(buf.length);
}

const nameChars = fc.constantFrom('a', 'b', 'w', '.', '0', '"', '\\', '\n', '\u0001', 'é', '😀', '\uff5e');
const tensorSpec = fc.record({
  name: fc.string({ unit: nameChars, maxLength: 5 }).filter((s) => s !== '__metadata__'),
  dtype: fc.constantFrom(...DTYPES),
  shape: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
  seed: fc.integer({ min: 0, max: 255 }),
});
const validFile = fc
  .record({
    tensors: fc.uniqueArray(tensorSpec, { selector: (t) => t.name, maxLength: 4 }),
    metadata: fc.option(fc.dictionary(fc.string({ unit: nameChars, maxLength: 3 }), fc.string({ unit: nameChars, maxLength: 3 }), { maxKeys: 2 }), { nil: undefined }),
  })
  .map(({ tensors, metadata }) => {
    const input = new Map<string, SafetensorsTensorInput>();
    for (const t of tensors) {
      let numel = t.shape.reduce((p, d) => p * d, 1);
      // F4 needs an even element count; pad the shape with a 2.
      const shape = t.dtype === 'F4' && numel % 2 ? [...t.shape, 2] : t.shape;
      numel = shape.reduce((p, d) => p * d, 1);
      const data = Uint8Array.from({ length: (numel * BITS[t.dtype]!) / 8 }, (_, i) => (t.seed + 37 * i) & 255);
      input.set(t.name, { dtype: t.dtype, shape, data });
    }
    return { input, bytes: serializeSafetensors(input, metadata), metadata };
  });

const JSONISH = '{}[],:"0123456789-.eE \\nu'.split('').map((c) => c.charCodeAt(0));
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('set' as const), pos: fc.nat(), byte: fc.constantFrom(...JSONISH) }),
  fc.record({ kind: fc.constant('truncate' as const), pos: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), pos: fc.nat(), byte: fc.constantFrom(...JSONISH, 0, 0xff) }),
  fc.record({ kind: fc.constant('delete' as const), pos: fc.nat() }),
  fc.record({ kind: fc.constant('length' as const), delta: fc.integer({ min: -12, max: 12 }) }),
  // Whitespace inserted into the header with the length prefix grown to match: often still
  // valid (between tokens), sometimes a new name (inside a string) or an error (raw newline).
  fc.record({ kind: fc.constant('pad' as const), pos: fc.nat(), byte: fc.constantFrom(0x20, 0x0a, 0x09, 0x0d) }),
  // A byte near the end: usually tensor data, so the file stays valid with other values.
  fc.record({ kind: fc.constant('tail' as const), pos: fc.nat({ max: 15 }), byte: fc.integer({ min: 0, max: 255 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(bytes: Uint8Array, ms: readonly Mutation[]): Uint8Array {
  let b = Array.from(bytes);
  for (const m of ms) {
    if (m.kind === 'length' || m.kind === 'pad') {
      if (b.length < 8) continue;
      const n = b[0]! + 256 * b[1]!;
      const grown = n + (m.kind === 'length' ? m.delta : 1);
      if (grown < 0 || grown >= 65536) continue;
      [b[0], b[1]] = [grown & 255, grown >> 8];
      if (m.kind === 'pad') b.splice(8 + (m.pos % (n + 1)), 0, m.byte);
      continue;
    }
    if (m.kind === 'tail') {
      if (b.length) b[Math.max(0, b.length - 1 - m.pos)] = m.byte;
      continue;
    }
    const pos = b.length ? m.pos % (b.length + (m.kind === 'insert' || m.kind === 'truncate' ? 1 : 0)) : 0;
    if (m.kind === 'set' && b.length) b[pos] = m.byte;
    else if (m.kind === 'truncate') b = b.slice(0, pos);
    else if (m.kind === 'insert') b.splice(pos, 0, m.byte);
    else if (m.kind === 'delete' && b.length) b.splice(pos, 1);
  }
  // At an odd offset inside a larger buffer, so that views must carry the right byteOffset.
  const outer = new Uint8Array(b.length + 3);
  outer.set(b, 1);
  return outer.subarray(1, 1 + b.length);
}

describe('safetensors: randomised files', () => {
  it('valid files load with the data they were written with', () => {
    fc.assert(
      fc.property(validFile, ({ input, bytes, metadata }) => {
        const file = parseSafetensors(bytes);
        checkLoad(bytes, file);
        expect(file.metadata === undefined ? undefined : { ...file.metadata }).toEqual(metadata);
        expect(file.names().sort()).toEqual([...input.keys()].sort());
        for (const [name, t] of input) expect(file.get(name).bytes()).toEqual(t.data);
      }),
      { seed: 0x5afe, numRuns: 500 },
    );
  });

  it('damaged files fail with a SafetensorsError or load correctly, never anything else', () => {
    let loaded = 0;
    let refused = 0;
    fc.assert(
      fc.property(validFile, fc.array(mutation, { minLength: 1, maxLength: 4 }), ({ bytes }, ms) => {
        const buf = mutate(bytes, ms);
        let file: SafetensorsFile;
        try {
          file = parseSafetensors(buf);
        } catch (e) {
          if (!(e instanceof SafetensorsError)) throw e;
          refused++;
          return;
        }
        loaded++;
        checkLoad(buf, file);
      }),
      { seed: 0x7e57, numRuns: 3000 },
    );
    // Both outcomes must have been exercised for the property to mean anything.
    expect(loaded).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(1000);
  });
});
