/**
 * Malformed safetensors files, hand-assembled from the format's definition, each refused
 * with a SafetensorsError whose message names the problem, by all three readers: in memory,
 * from a Blob, and from a file on disk (which reads the header before the data).
 * Every case that the reference implementation also refuses was checked against it
 * (safetensors 0.8.0's `deserialize`); the two where it is more lenient are marked.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensorsFile } from '../../src/io/node.js';
import { parseSafetensors, readSafetensorsBlob, SafetensorsError } from '../../src/index.js';
import { assemble, entry, header, prefix } from './assemble.js';

const U8 = (name: string, n: number, begin: number) => entry(name, 'U8', [n], begin, begin + n);
const bytes = (...b: number[]) => new Uint8Array(b);

/** [what, file, message pattern]. */
const cases: Array<[string, Uint8Array, RegExp]> = [
  ['an empty file', new Uint8Array(0), /the file is empty \(0 bytes\)/],
  ['a file shorter than the length prefix', bytes(2, 0, 0), /the file is 3 bytes, shorter than the 8-byte header length/],
  ['a length prefix without a header', prefix(16n), /header length 16 runs past the end of the file: 8 \+ 16 = 24 bytes needed, the file has 8/],
  ['a zero length prefix and nothing else', prefix(0n), /header is not valid JSON: unexpected end of the header while reading a value/],
  ['a header length past the end', assemble('{}', 0, 100n), /header length 100 runs past the end of the file: 8 \+ 100 = 108 bytes needed, the file has 10/],
  ['a header length just over the limit', assemble('{}', 0, 100_000_001n), /header length 100000001 is over the limit of 100000000 bytes/],
  ['a header length of 2^64 - 1', assemble('{}', 0, 2n ** 64n - 1n), /header length 18446744073709551615 is over the limit/],
  ['a header length at the limit, past the end', assemble('{}', 0, 100_000_000n), /header length 100000000 runs past the end/],
  ['a header that is not UTF-8 (0xff)', assemble(bytes(0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d)), /header \(7 bytes at file offset 8\) is not valid UTF-8 \(first bad byte near file offset 10\)/],
  ['a header with an overlong UTF-8 encoding', assemble(bytes(0x7b, 0xc0, 0xbb, 0x7d)), /is not valid UTF-8/],
  ['a header with a UTF-8-encoded surrogate', assemble(bytes(0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d)), /is not valid UTF-8/],
  ['a header with a byte order mark', assemble('\ufeff{}'), /header is not valid JSON: expected a JSON value, found U\+FEFF \(at line 1 column 1/],
  ['a header that is not JSON (cut off)', assemble('{"a":'), /header is not valid JSON: unexpected end of the header while reading a value/],
  ['a header that is not JSON (single quotes)', assemble("{'a':1} "), /header is not valid JSON: expected a key string, found '''/],
  ['a header that is not JSON (trailing comma)', assemble('{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0],}}'), /header is not valid JSON: expected a key string, found '}'/],
  ['a header with text after the object', assemble('{}  x  '), /header is not valid JSON: trailing characters after the JSON value \(at line 1 column 5/],
  ['a header with a NUL after the object', assemble('{}\0'), /trailing characters/],
  ['a header that is a JSON array', assemble('[]'), /header must be a JSON object, found an array/],
  ['a header that is a JSON string', assemble('"{}"'), /header must be a JSON object, found the string "{}"/],
  ['a header that is JSON null', assemble('null'), /header must be a JSON object, found null/],
  ['trailing bytes after the data', assemble(header(U8('a', 4, 0)), 5), /1 trailing bytes: the header's tensors end at file offset \d+ \(8 \+ header \d+ \+ data 4\)/],
  ['bytes after an empty header', assemble('{}', 3), /3 trailing bytes/],
  ['data too short', assemble(header(U8('a', 4, 0), U8('b', 4, 4)), 7), /data section too short: the header's tensors end at file offset \d+ \(8 \+ header \d+ \+ data 8\), the file has \d+ bytes/],
  ['offsets that do not match shape × dtype', assemble(header(entry('w', 'F32', [2, 2], 0, 12)), 12), /tensor "w": data_offsets \[0, 12\] hold 12 bytes, expected 16 \(F32 × shape \[2, 2\] = 4 elements of 4 bytes\)/],
  ['overlapping offsets', assemble(header(U8('a', 8, 0), entry('b', 'U8', [8], 4, 12)), 12), /tensor "b": data_offsets \[4, 12\] begin at 4, expected 8 \(the end of tensor "a"\): it overlaps the data before it/],
  ['offsets that end before they begin', assemble(header(U8('a', 4, 0), entry('b', 'U8', [0], 4, 0)), 4), /tensor "b": data_offsets \[4, 0\] end before they begin/],
  ['unsorted, crossing offsets', assemble(header(entry('a', 'U8', [8], 0, 8), entry('b', 'U8', [4], 4, 4)), 8), /tensor "b": data_offsets \[4, 4\] begin at 4, expected 8/],
  ['a hole between tensors', assemble(header(U8('a', 4, 0), U8('b', 4, 8)), 12), /tensor "b": data_offsets \[8, 12\] begin at 8, expected 4 \(the end of tensor "a"\): it leaves a hole of 4 bytes before it/],
  ['a hole at the start', assemble(header(U8('a', 4, 4)), 8), /tensor "a": data_offsets \[4, 8\] begin at 4, expected 0 \(the start of the data section\): it leaves a hole/],
  ['an element count over 2^64', assemble(header(entry('a', 'U8', [2 ** 32, 2 ** 32], 0, 0))), /tensor "a": shape \[4294967296, 4294967296\] overflows: its element count is over 2\^64 - 1/],
  ['a bit count over 2^64', assemble(header(entry('a', 'F32', ['1152921504606846976'], 0, 0))), /shape \[1152921504606846976\] × F32 overflows: 1152921504606846976 elements of 32 bits/],
  ['an overflow before a zero dimension (as the reference)', assemble(header(entry('a', 'U8', [2 ** 32, 2 ** 32, 0], 0, 0))), /overflows/],
  ['a wrapping shape whose product mod 2^64 fits', assemble(header(entry('a', 'U8', ['18446744073709551615', 2], 0, 0))), /overflows/],
  ['a dimension over 2^64 - 1', assemble(header(entry('a', 'U8', [0, '18446744073709551616'], 0, 0))), /shape\[1\] = 18446744073709551616 is over 2\^64 - 1/],
  ['a negative dimension', assemble(header(entry('a', 'U8', [-1], 0, 0))), /tensor "a": shape\[0\] must be a non-negative integer, found -1/],
  ['a dimension of -0', assemble(header(entry('a', 'U8', ['-0'], 0, 0))), /shape\[0\] must be a non-negative integer, found -0/],
  ['a fractional dimension', assemble(header(entry('a', 'U8', [1.5], 0, 0))), /shape\[0\] must be a non-negative integer, found 1.5/],
  ['a dimension written 1.0', assemble(header(entry('a', 'U8', ['1.0'], 0, 1)), 1), /shape\[0\] must be a non-negative integer, found 1.0/],
  ['a dimension written 1e0', assemble(header(entry('a', 'U8', ['1e0'], 0, 1)), 1), /found 1e0/],
  ['a dimension that is a string', assemble(header(entry('a', 'U8', ['"1"'], 0, 1)), 1), /shape\[0\] must be a non-negative integer, found the string "1"/],
  ['a negative offset', assemble(header(entry('a', 'U8', [0], -1, 0))), /data_offsets\[0\] must be a non-negative integer, found -1/],
  ['three offsets', assemble(header('"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,2]}'), 1), /data_offsets must be an array of two non-negative integers \[begin, end\], found an array of 3/],
  ['a shape that is not an array', assemble(header('"a":{"dtype":"U8","shape":3,"data_offsets":[0,3]}'), 3), /shape must be an array of non-negative integers, found the number 3/],
  ['a missing field', assemble(header('"a":{"dtype":"U8","data_offsets":[0,0]}')), /tensor "a": header entry has no "shape"/],
  ['an entry that is not an object', assemble(header('"a":[0,1]'), 1), /tensor "a": header entry must be an object with dtype, shape and data_offsets, found an array/],
  ['an unknown dtype', assemble(header(entry('a', 'F8', [1], 0, 1)), 1), /tensor "a": unknown dtype "F8"; the format's dtypes are BOOL, F4, .*, U64/],
  ['a dtype in lower case', assemble(header(entry('a', 'f32', [1], 0, 4)), 4), /unknown dtype "f32"/],
  ['a dtype that is not a string', assemble(header('"a":{"dtype":4,"shape":[1],"data_offsets":[0,1]}'), 1), /dtype must be a string, found the number 4/],
  ['a duplicate tensor name', assemble(header(U8('a', 1, 0), U8('a', 1, 1)), 2), /tensor name "a" appears twice in the header \(at line 1 column \d+ of the header\); names must be unique/],
  ['a duplicate name written with an escape', assemble(header(U8('w', 1, 0), '"\\u0077":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}'), 2), /tensor name "w" appears twice/],
  ['a duplicate zero-size tensor (the reference keeps one silently)', assemble(header(entry('z', 'U8', [0], 0, 0), entry('z', 'U8', [0], 0, 0))), /tensor name "z" appears twice/],
  ['a duplicate __metadata__', assemble('{"__metadata__":{},"__metadata__":{}}'), /the header has "__metadata__" twice/],
  ['a duplicate field in an entry', assemble(header('"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}'), 1), /the header has a duplicate key "dtype"/],
  ['a duplicate metadata key (the reference keeps the last silently)', assemble('{"__metadata__":{"k":"1","k":"2"}}'), /duplicate key "k"/],
  ['__metadata__ with a number value', assemble('{"__metadata__":{"format":"pt","step":3}}'), /"__metadata__" values must be strings, found the number 3 for key "step"/],
  ['__metadata__ with a nested object', assemble('{"__metadata__":{"a":{}}}'), /"__metadata__" values must be strings, found an object for key "a"/],
  ['__metadata__ that is an array', assemble('{"__metadata__":["a"]}'), /"__metadata__" must be an object of strings, found an array/],
  ['F4 that ends inside a byte', assemble(header(entry('q', 'F4', [3], 0, 2)), 2), /tensor "q": shape \[3\] of F4 \(4 bits each\) is 12 bits, which does not end on a byte boundary/],
  ['nesting deeper than serde_json allows', assemble(header(`"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":${'['.repeat(200)}${']'.repeat(200)}}`), 1), /nesting deeper than 128 levels/],
  ['an unpaired surrogate escape in a name', assemble(header(entry('x', 'U8', [1], 0, 1)).replace('"x"', '"x\\ud800"'), 1), /unpaired high surrogate escape/],
  ['a raw control character in a name', assemble(header(U8('a', 1, 0)).replace('"a"', '"a\u0001"'), 1), /raw control character U\+0001 inside a string/],
  ['a number with a leading zero', assemble(header(entry('a', 'U8', ['01'], 0, 1)), 1), /a number with a leading zero/],
  ['a dimension over 2^53 in an empty tensor (the reference keeps it)', assemble(header(entry('a', 'U8', [0, '9007199254740993'], 0, 0))), /shape\[1\] = 9007199254740993 is over 2\^53 - 1/],
];

describe('malformed safetensors are refused with a SafetensorsError naming the problem', () => {
  const dir = mkdtempSync(join(tmpdir(), 'webgpu-lora-malformed-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  cases.forEach(([what, file, message], i) => {
    it(what, async () => {
      const inMemory = (() => {
        try {
          parseSafetensors(file, 'bad.safetensors');
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(inMemory).toBeInstanceOf(SafetensorsError);
      expect((inMemory as Error).message).toMatch(/^safetensors "bad.safetensors": /);
      expect((inMemory as Error).message).toMatch(message);

      const fromBlob = await readSafetensorsBlob(new Blob([file.slice()]), 'blob').then(() => undefined, (e: unknown) => e);
      expect(fromBlob).toBeInstanceOf(SafetensorsError);
      expect((fromBlob as Error).message).toMatch(message);

      const path = join(dir, `case${i}.safetensors`);
      writeFileSync(path, file);
      const fromFile = await readSafetensorsFile(path).then(() => undefined, (e: unknown) => e);
      expect(fromFile).toBeInstanceOf(SafetensorsError);
      expect((fromFile as Error).message).toContain(`safetensors ${JSON.stringify(path)}: `);
      expect((fromFile as Error).message).toMatch(message);
    });
  });

  it('names longer than 200 characters are cut in messages', () => {
    const long = 'n'.repeat(5000);
    expect(() => parseSafetensors(assemble(header(U8(long, 1, 0), U8(long, 1, 1)), 2))).toThrow(/"n{200}…" \(5000 characters\) appears twice/);
  });
});
