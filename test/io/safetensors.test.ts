/**
 * safetensors read and write in memory: agreement with the reference implementation (a file
 * it wrote, test/io/fixtures, with torch's values), round trips, and the writer's checks.
 * Malformed files are in malformed.test.ts, the randomised test in fuzz.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  formatJson,
  parseSafetensors,
  SafetensorsError,
  serializeSafetensors,
  type SafetensorsTensorInput,
} from '../../src/index.js';
import { assemble, entry, header } from './assemble.js';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url);
const referenceBytes = new Uint8Array(readFileSync(fixture('reference.safetensors')));

interface ExpectedTensor {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
  input_f32_bits?: number[];
  bits?: number[];
  readback_f32_bits?: number[];
  int64?: string[];
  uint8?: number[];
}
const reference = JSON.parse(readFileSync(fixture('reference.json'), 'utf8')) as {
  metadata: Record<string, string>;
  tensors: Record<string, ExpectedTensor>;
};

const f32FromBits = (bits: number[]) => new Float32Array(new Int32Array(bits).buffer);
const bitsOf = (a: Float32Array) => Array.from(new Int32Array(a.buffer, a.byteOffset, a.length));

/** The fixture's tensors as writer inputs, from the recorded inputs (not from the file). */
function referenceInputs(f16FromF32: boolean): Map<string, SafetensorsTensorInput> {
  const out = new Map<string, SafetensorsTensorInput>();
  for (const [name, e] of Object.entries(reference.tensors)) {
    const dtype = e.dtype as SafetensorsTensorInput['dtype'];
    let data: SafetensorsTensorInput['data'];
    if (dtype === 'F32') data = f32FromBits(e.input_f32_bits!);
    else if (dtype === 'F16' && f16FromF32 && e.input_f32_bits) data = f32FromBits(e.input_f32_bits);
    else if (dtype === 'F16' || dtype === 'BF16') data = new Uint16Array(e.bits!);
    else if (dtype === 'I64') data = new Uint8Array(new BigInt64Array(e.int64!.map(BigInt)).buffer);
    else data = new Uint8Array(e.uint8!);
    out.set(name, { dtype, shape: e.shape, data });
  }
  return out;
}

describe('safetensors: agreement with the reference implementation', () => {
  it('the writer reproduces a file the reference wrote, byte for byte (order, escapes, padding)', () => {
    // F16 given as bits, and F16 converted from float32 here: both must give torch's bits.
    for (const f16FromF32 of [false, true]) {
      const ours = serializeSafetensors(referenceInputs(f16FromF32), reference.metadata);
      expect(ours.length).toBe(referenceBytes.length);
      const firstDiff = ours.findIndex((b, i) => b !== referenceBytes[i]);
      expect(firstDiff, `first differing byte (F16 from float32: ${f16FromF32})`).toBe(-1);
    }
  });

  it('the reader gives torch values, shapes, dtypes and offsets for every tensor of the reference file', () => {
    const file = parseSafetensors(referenceBytes, 'reference.safetensors');
    expect({ ...file.metadata }).toEqual(reference.metadata);
    expect(file.names().sort()).toEqual(Object.keys(reference.tensors).sort());
    for (const [name, e] of Object.entries(reference.tensors)) {
      const t = file.get(name);
      expect([t.dtype, t.shape, t.dataOffsets], name).toEqual([e.dtype, e.shape, e.data_offsets]);
      expect(t.byteOffset).toBe(8 + file.headerLength + e.data_offsets[0]);
      if (e.readback_f32_bits) expect(bitsOf(t.toFloat32()), name).toEqual(e.readback_f32_bits);
      if (e.int64) expect(Array.from(new BigInt64Array(t.bytes().slice().buffer), String)).toEqual(e.int64);
      if (e.uint8) expect(Array.from(t.bytes())).toEqual(e.uint8);
    }
    // Data order: the reference writer's order, which is also its offsets' order.
    const byOffset = Object.entries(reference.tensors).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0] || a[1].data_offsets[1] - b[1].data_offsets[1]);
    expect(file.tensors.map((t) => t.dataOffsets)).toEqual(byOffset.map(([, e]) => e.data_offsets));
  });
});

describe('safetensors: round trips', () => {
  const rand = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 1000 + i * 12.9898) * 43758.5453 % 7);

  it('F32 and F16 (bits) round-trip bit for bit, with metadata kept', () => {
    const w = rand(6 * 5, 1);
    const h = new Uint16Array(Array.from({ length: 7 }, (_, i) => (i * 0x2345 + 0x3c00) & 0xffff));
    h[0] = 0x7c00; // +inf
    h[1] = 0x8000; // -0
    h[2] = 0x0001; // smallest subnormal
    const metadata = { format: 'pt', 'clé ✓': 'välue\n"x"', __proto__x: '', '': 'empty key' };
    const bytes = serializeSafetensors({ w: { dtype: 'F32', shape: [6, 5], data: w }, h: { dtype: 'F16', shape: [7], data: h } }, metadata);
    const file = parseSafetensors(bytes);
    expect({ ...file.metadata }).toEqual(metadata);
    expect(bitsOf(file.get('w').toFloat32())).toEqual(bitsOf(w));
    expect(Array.from(new Uint16Array(file.get('h').bytes().slice().buffer))).toEqual(Array.from(h));
    const hv = file.get('h').toFloat32();
    expect([hv[0], Object.is(hv[1], -0), hv[2]]).toEqual([Infinity, true, 2 ** -24]);
  });

  it('metadata keys are written in code point order (the reference writes a hash order; one key, as PEFT writes, is the same)', () => {
    const expected = assemble('{"__metadata__":{"a":"2","b":"1","\uff5e":"3","😀":"4"},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}     ', new Uint8Array([9]));
    const ours = serializeSafetensors({ x: { dtype: 'U8', shape: [1], data: new Uint8Array([9]) } }, { '😀': '4', b: '1', '\uff5e': '3', a: '2' });
    expect(new TextDecoder().decode(ours)).toBe(new TextDecoder().decode(expected));
  });

  it('a metadata key "__proto__" stays an ordinary key', () => {
    const metadata = JSON.parse('{"__proto__":"p","a":"b"}') as Record<string, string>;
    const file = parseSafetensors(serializeSafetensors([], metadata));
    expect(Object.keys(file.metadata!)).toEqual(['__proto__', 'a']);
    expect(file.metadata!['__proto__']).toBe('p');
  });

  it('BF16 is read as the float32 whose top half it is', () => {
    // 0x3f80 = 1, 0xc049 = -3.140625, 0x7f80 = +inf, 0x0001 = the smallest bf16 subnormal.
    const file = parseSafetensors(assemble(header(entry('b', 'BF16', [2, 2], 0, 8)), new Uint8Array([0x80, 0x3f, 0x49, 0xc0, 0x80, 0x7f, 0x01, 0x00])));
    expect(Array.from(file.get('b').toFloat32())).toEqual([1, -3.140625, Infinity, 2 ** -133]);
  });

  it('no tensors: "{}" padded to 8 bytes, with or without metadata', () => {
    expect(serializeSafetensors({})).toEqual(assemble('{}      '));
    expect(serializeSafetensors(new Map(), {})).toEqual(assemble('{"__metadata__":{}}     '));
    const file = parseSafetensors(serializeSafetensors([]));
    expect(file.tensors).toEqual([]);
    expect(file.metadata).toBeUndefined();
  });

  it('scalars (shape []) and zero-size tensors (a 0 dimension) round-trip', () => {
    const bytes = serializeSafetensors({
      s: { dtype: 'F32', shape: [], data: new Float32Array([2.5]) },
      z: { dtype: 'F32', shape: [0], data: new Float32Array(0) },
      z2: { dtype: 'F16', shape: [3, 0, 2], data: new Uint16Array(0) },
      u: { dtype: 'U8', shape: [0], data: new Uint8Array(0) },
    });
    const file = parseSafetensors(bytes);
    expect(file.get('s').shape).toEqual([]);
    expect(file.get('s').numel).toBe(1);
    expect(Array.from(file.get('s').toFloat32())).toEqual([2.5]);
    for (const [n, shape] of [['z', [0]], ['z2', [3, 0, 2]], ['u', [0]]] as const) {
      expect(file.get(n).shape).toEqual(shape);
      expect(file.get(n).byteLength).toBe(0);
    }
    expect(file.get('z2').toFloat32().length).toBe(0);
  });

  it('F16 converted from float32 rounds to nearest even, like torch', () => {
    const e = reference.tensors['half']!;
    const file = parseSafetensors(serializeSafetensors({ h: { dtype: 'F16', shape: e.shape, data: f32FromBits(e.input_f32_bits!) } }));
    expect(Array.from(new Uint16Array(file.get('h').bytes().slice().buffer))).toEqual(e.bits);
  });

  it('raw bytes for dtypes without a float conversion (I64, BOOL, F4) round-trip; toFloat32 refuses them', () => {
    const ids = new BigInt64Array([-1n, 2n ** 62n]);
    const bytes = serializeSafetensors({
      ids: { dtype: 'I64', shape: [2], data: new Uint8Array(ids.buffer) },
      mask: { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
      q: { dtype: 'F4', shape: [2, 3], data: new Uint8Array([0x12, 0x34, 0x56]) },
    });
    const file = parseSafetensors(bytes, 'raw.safetensors');
    expect(Array.from(new BigInt64Array(file.get('ids').bytes().slice().buffer))).toEqual([-1n, 2n ** 62n]);
    expect(Array.from(file.get('q').bytes())).toEqual([0x12, 0x34, 0x56]);
    expect(() => file.get('ids').toFloat32()).toThrow(SafetensorsError);
    expect(() => file.get('mask').toFloat32()).toThrow(/"raw.safetensors": tensor "mask": toFloat32 converts F32, F16 and BF16, found BOOL/);
  });

  it("tensors come in data order whatever the header's key order, and bytes() views the given buffer", () => {
    const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const bytes = assemble(header(entry('c', 'U8', [4], 8, 12), entry('a', 'U8', [4], 0, 4), entry('b', 'I16', [2], 4, 8)), data);
    const outer = new Uint8Array(bytes.length + 5);
    outer.set(bytes, 3);
    const view = outer.subarray(3, 3 + bytes.length);
    const file = parseSafetensors(view);
    expect(file.names()).toEqual(['a', 'b', 'c']);
    const b = file.get('b').bytes();
    expect(b.buffer).toBe(outer.buffer);
    expect(b.byteOffset).toBe(3 + file.get('b').byteOffset);
    expect(Array.from(b)).toEqual([5, 6, 7, 8]);
  });

  it('zero-size tensors at one offset keep their header order', () => {
    const file = parseSafetensors(assemble(header(entry('y', 'F32', [0], 0, 0), entry('x', 'F32', [0], 0, 0), entry('w', 'U8', [1], 0, 1)), 1));
    expect(file.names()).toEqual(['y', 'x', 'w']);
  });

  it('accepts what the reference accepts: JSON whitespace around the object, unknown entry fields, null __metadata__, escaped names', () => {
    const body = header(`"\\u0061\\n\\ud83d\\ude00":{"extra":[{"x":null}],"data_offsets":[0,4],"shape":[1],"dtype":"F32"}`, '"__metadata__":null');
    const file = parseSafetensors(assemble(` \n\t\r${body}\n  \t`, new Uint8Array(new Float32Array([1.5]).buffer)));
    expect(file.names()).toEqual(['a\n😀']);
    expect(file.metadata).toBeUndefined();
    expect(Array.from(file.get('a\n😀').toFloat32())).toEqual([1.5]);
  });

  it('get() of a missing name names it and lists some of the names there are', () => {
    const file = parseSafetensors(serializeSafetensors({ a: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }), 'f.safetensors');
    expect(file.has('a')).toBe(true);
    expect(file.has('b')).toBe(false);
    expect(() => file.get('b')).toThrow(/safetensors "f.safetensors": tensor "b": not in the file, which has 1 tensors: "a"/);
  });
});

describe('safetensors: the writer refuses what no reader would accept', () => {
  const ok = { dtype: 'F32', shape: [2], data: new Float32Array(2) } as const;
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['data shorter than the shape', () => serializeSafetensors({ w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), /tensor "w": data has 2 float32 values, expected 3 \(shape \[3\]\)/],
    ['raw bytes that do not fit', () => serializeSafetensors({ w: { dtype: 'I64', shape: [2], data: new Uint8Array(15) } }), /data has 15 bytes, expected 16 \(I64 × shape \[2\]\)/],
    ['an unknown dtype', () => serializeSafetensors({ w: { ...ok, dtype: 'F31' as 'F32' } }), /unknown dtype "F31"/],
    ['a Float32Array for I32', () => serializeSafetensors({ w: { dtype: 'I32', shape: [2], data: new Float32Array(2) } }), /data is a Float32Array, which does not go with dtype I32/],
    ['a negative dimension', () => serializeSafetensors({ w: { ...ok, shape: [-2] } }), /shape\[0\] must be a non-negative safe integer, found -2/],
    ['a fractional dimension', () => serializeSafetensors({ w: { ...ok, shape: [1.5] } }), /shape\[0\] must be a non-negative safe integer, found 1.5/],
    ['a name given twice', () => serializeSafetensors([['w', ok], ['w', ok]]), /tensor "w": given twice/],
    ['a tensor called __metadata__', () => serializeSafetensors({ __metadata__: ok }), /"__metadata__" is reserved/],
    ['a name with an unpaired surrogate', () => serializeSafetensors({ ['a\ud800']: ok }), /unpaired surrogate/],
    ['a metadata value that is not a string', () => serializeSafetensors({}, { n: 1 as unknown as string }), /metadata values must be strings, found number for key "n"/],
    ['F4 ending inside a byte', () => serializeSafetensors({ q: { dtype: 'F4', shape: [3], data: new Uint8Array(2) } }), /does not end on a byte boundary/],
  ];
  for (const [what, run, message] of cases) {
    it(what, () => {
      expect(run).toThrow(SafetensorsError);
      expect(run).toThrow(message);
    });
  }
});

describe('formatJson', () => {
  it("matches Python's json.dumps(indent=2, sort_keys=True) for strings, nesting and code point key order", () => {
    const v = { b: 'é\u2028', a: [1, 2], c: {}, Z: null, '😀': true, '\uff5e': false, d: { y: 1, x: '\x7f\n' } };
    // Printed by /usr/bin/python3: json.dumps(v, indent=2, sort_keys=True)
    const python = '{\n  "Z": null,\n  "a": [\n    1,\n    2\n  ],\n  "b": "\\u00e9\\u2028",\n  "c": {},\n  "d": {\n    "x": "\\u007f\\n",\n    "y": 1\n  },\n  "\\uff5e": false,\n  "\\ud83d\\ude00": true\n}';
    expect(formatJson(v, { sortKeys: true, ensureAscii: true, finalNewline: false })).toBe(python);
    expect(formatJson({ b: 1, a: 2 }, { indent: 0 })).toBe('{"b":1,"a":2}\n');
  });
});
