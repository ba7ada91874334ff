/**
 * The Node entry: safetensors files on disk, and atomic writes (temporary file in the same
 * folder, fsync, rename): a failed or interrupted write leaves the old file intact, never a
 * partial file at the destination, and no temporary file behind.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensorsFile, writeFileAtomic, writeFileAtomicWith, writeJsonAtomic, writeSafetensorsFile } from '../../src/io/node.js';
import { parseSafetensors, SafetensorsError, serializeSafetensors } from '../../src/index.js';
import { assemble } from './assemble.js';

const root = mkdtempSync(join(tmpdir(), 'webgpu-lora-io-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => {
  const d = join(root, `d${dirs++}`);
  mkdirSync(d);
  return d;
};

const tensors = {
  'lora_A.weight': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
  'lora_B.weight': { dtype: 'F16', shape: [3, 2], data: new Float32Array([0.5, -1, 2, 0, 1e-3, 7]) },
} as const;

describe('readSafetensorsFile / writeSafetensorsFile', () => {
  it('writes the same bytes as serializeSafetensors and reads them back', async () => {
    const dir = freshDir();
    const path = join(dir, 'adapter_model.safetensors');
    await writeSafetensorsFile(path, tensors, { format: 'pt' });
    const onDisk = new Uint8Array(readFileSync(path));
    expect(onDisk).toEqual(serializeSafetensors(tensors, { format: 'pt' }));
    const file = await readSafetensorsFile(path);
    expect(file.source).toBe(path);
    expect(file.byteLength).toBe(onDisk.length);
    expect({ ...file.metadata }).toEqual({ format: 'pt' });
    expect(Array.from(file.get('lora_A.weight').toFloat32())).toEqual([1, 2, 3, 4, 5, 6]);
    expect(file.get('lora_B.weight').toFloat32()).toEqual(parseSafetensors(onDisk).get('lora_B.weight').toFloat32());
    expect(readdirSync(dir)).toEqual(['adapter_model.safetensors']);
  });

  it('a file with no tensors, and one with a zero-size tensor, read back', async () => {
    const dir = freshDir();
    await writeSafetensorsFile(join(dir, 'empty.safetensors'), {});
    expect((await readSafetensorsFile(join(dir, 'empty.safetensors'))).tensors).toEqual([]);
    await writeSafetensorsFile(join(dir, 'z.safetensors'), { z: { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) } });
    expect((await readSafetensorsFile(join(dir, 'z.safetensors'))).get('z').shape).toEqual([0, 4]);
  });

  it('refuses a bad header before reading the data: a 3 GiB sparse file is refused at once', async () => {
    // Reading the whole file first would fail differently (fs refuses reads over 2 GiB into
    // one buffer) or take minutes; the header check comes before any data is read.
    const path = join(freshDir(), 'big.safetensors');
    const bad = assemble('{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}', 0);
    const fh = await open(path, 'w');
    await fh.write(bad, 0, bad.length, 0);
    await fh.truncate(3 * 2 ** 30);
    await fh.close();
    await expect(readSafetensorsFile(path)).rejects.toThrow(SafetensorsError);
    await expect(readSafetensorsFile(path)).rejects.toThrow(/header is not valid JSON: expected ',' or '}' in an object, found the end of the header/);
  });

  it('an invalid tensor is refused before any file is made, and the old file stays', async () => {
    const dir = freshDir();
    const path = join(dir, 'model.safetensors');
    writeFileSync(path, 'old');
    await expect(writeSafetensorsFile(path, { w: { dtype: 'F32', shape: [4], data: new Float32Array(3) } })).rejects.toThrow(SafetensorsError);
    expect(readFileSync(path, 'utf8')).toBe('old');
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('a missing file is an fs error, not a SafetensorsError', async () => {
    await expect(readSafetensorsFile(join(root, 'missing.safetensors'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('atomic writes', () => {
  it('writeFileAtomic creates and replaces a file, leaving nothing else in the folder', async () => {
    const dir = freshDir();
    const path = join(dir, 'a.bin');
    await writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect(Array.from(readFileSync(path))).toEqual([1, 2, 3]);
    await writeFileAtomic(path, 'text ✓');
    expect(readFileSync(path, 'utf8')).toBe('text ✓');
    expect(readdirSync(dir)).toEqual(['a.bin']);
  });

  it('while a write is under way the destination still holds the old file, and the new data goes to a sibling temporary file', async () => {
    const dir = freshDir();
    const path = join(dir, 'model.safetensors');
    writeFileSync(path, 'old content');
    const seen: string[][] = [];
    await writeFileAtomicWith(path, async (write) => {
      await write(new Uint8Array(1000).fill(7));
      expect(readFileSync(path, 'utf8')).toBe('old content');
      seen.push(readdirSync(dir).sort());
      await write(new Uint8Array(24).fill(8));
    });
    expect(seen[0]!.length).toBe(2);
    const tmp = seen[0]!.find((f) => f !== 'model.safetensors')!;
    expect(tmp).toMatch(/^\.model\.safetensors\.[0-9a-f]{12}\.tmp$/);
    expect(statSync(path).size).toBe(1024);
    expect(readdirSync(dir)).toEqual(['model.safetensors']);
  });

  it('a write that fails midway leaves the old file intact and removes the temporary file', async () => {
    const dir = freshDir();
    const path = join(dir, 'adapter_config.json');
    writeFileSync(path, '{"r": 8}');
    const failure = new Error('disk full (injected)');
    await expect(
      writeFileAtomicWith(path, async (write) => {
        await write(new TextEncoder().encode('{"r": 1'));
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(readFileSync(path, 'utf8')).toBe('{"r": 8}');
    expect(readdirSync(dir)).toEqual(['adapter_config.json']);
  });

  it('a failed rename (the destination is a non-empty folder) leaves it as it was and no temporary file', async () => {
    const dir = freshDir();
    const path = join(dir, 'taken');
    mkdirSync(path);
    writeFileSync(join(path, 'inside'), 'x');
    await expect(writeFileAtomic(path, 'data')).rejects.toMatchObject({ code: expect.stringMatching(/^(EISDIR|ENOTEMPTY|EEXIST|EPERM)$/) });
    expect(readdirSync(dir)).toEqual(['taken']);
    expect(readFileSync(join(path, 'inside'), 'utf8')).toBe('x');
  });

  it('a write into a folder that does not exist fails without creating anything', async () => {
    const path = join(root, 'no-such-folder', 'f.json');
    await expect(writeJsonAtomic(path, {})).rejects.toMatchObject({ code: 'ENOENT' });
    expect(existsSync(join(root, 'no-such-folder'))).toBe(false);
  });

  it('writeJsonAtomic writes formatted JSON', async () => {
    const dir = freshDir();
    await writeJsonAtomic(join(dir, 'c.json'), { r: 8, peft_type: 'LORA', target_modules: ['c_attn'] }, { sortKeys: true, finalNewline: false });
    expect(readFileSync(join(dir, 'c.json'), 'utf8')).toBe('{\n  "peft_type": "LORA",\n  "r": 8,\n  "target_modules": [\n    "c_attn"\n  ]\n}');
    await writeJsonAtomic(join(dir, 'd.json'), { b: 1, a: 2 });
    expect(readFileSync(join(dir, 'd.json'), 'utf8')).toBe('{\n  "b": 1,\n  "a": 2\n}\n');
  });
});
