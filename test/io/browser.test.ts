/**
 * The browser entry, run in Node (which has Blob and File): reading from an ArrayBuffer, a
 * view into a larger buffer, a Blob and a File, and making a Blob to download.
 */
import { describe, expect, it } from 'vitest';
import { parseSafetensors, readSafetensorsBlob, readSafetensorsBuffer, safetensorsBlob, SafetensorsError, serializeSafetensors } from '../../src/index.js';
import { assemble, entry, header } from './assemble.js';

const tensors = {
  w: { dtype: 'F32', shape: [3], data: new Float32Array([1, -2, 3.5]) },
  h: { dtype: 'BF16', shape: [1], data: new Uint16Array([0x3fc0]) }, // 1.5
} as const;
const bytes = serializeSafetensors(tensors, { format: 'pt' });

describe('browser entry', () => {
  it('reads an ArrayBuffer, and a DataView into a larger buffer', () => {
    const fromBuffer = readSafetensorsBuffer(bytes.slice().buffer);
    expect(Array.from(fromBuffer.get('w').toFloat32())).toEqual([1, -2, 3.5]);
    const outer = new Uint8Array(bytes.length + 16);
    outer.set(bytes, 5);
    const fromView = readSafetensorsBuffer(new DataView(outer.buffer, 5, bytes.length), 'view');
    expect(Array.from(fromView.get('h').toFloat32())).toEqual([1.5]);
    expect(fromView.get('w').bytes().buffer).toBe(outer.buffer);
  });

  it('reads a Blob, and a File whose name goes into error messages', async () => {
    const file = await readSafetensorsBlob(new Blob([bytes]));
    expect(file.names().sort()).toEqual(['h', 'w']);
    expect({ ...file.metadata }).toEqual({ format: 'pt' });
    const bad = new File([assemble(header(entry('w', 'F32', [2], 0, 8)), 4)], 'adapter.safetensors');
    await expect(readSafetensorsBlob(bad)).rejects.toThrow(SafetensorsError);
    await expect(readSafetensorsBlob(bad)).rejects.toThrow(/^safetensors "adapter.safetensors": data section too short/);
  });

  it('safetensorsBlob holds the serialized file', async () => {
    const blob = safetensorsBlob(tensors, { format: 'pt' });
    expect(blob.type).toBe('application/octet-stream');
    expect(new Uint8Array(await blob.arrayBuffer())).toEqual(bytes);
    expect(parseSafetensors(new Uint8Array(await blob.arrayBuffer())).get('w').shape).toEqual([3]);
  });
});
