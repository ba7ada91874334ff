/**
 * safetensors in the browser: read from an ArrayBuffer, a typed array, or a Blob / File
 * (an `<input type="file">`, a `fetch` response's `blob()`), and make a Blob to download.
 * Portable: no Node imports (Node 20 has Blob too, which the tests use).
 *
 * A Blob is read in three slices, the 8-byte length, the header, then the data section
 * once, so a malformed file is refused before its data is read, and the data is not copied
 * after reading.
 *
 * @example
 * const file = await readSafetensorsBlob(input.files[0]);
 * const w = file.get('transformer.wte.weight').toFloat32();
 */
import { SafetensorsError } from './errors.js';
import {
  bindSafetensorsData,
  parseSafetensors,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  SAFETENSORS_PREFIX_BYTES,
  serializeSafetensors,
  type SafetensorsFile,
  type SafetensorsTensorsInput,
} from './safetensors.js';

/**
 * Parses a safetensors file held in an ArrayBuffer or a view of one. Tensors' `bytes()`
 * are views into it.
 */
export function readSafetensorsBuffer(buffer: ArrayBuffer | ArrayBufferView, source?: string): SafetensorsFile {
  const bytes = ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
    : new Uint8Array(buffer);
  return parseSafetensors(bytes, source);
}

/**
 * Reads a safetensors Blob (or File, whose name goes into error messages unless `source`
 * is given): the length and header first, validated, then the data section in one read.
 */
export async function readSafetensorsBlob(blob: Blob, source?: string): Promise<SafetensorsFile> {
  const fileName = (blob as unknown as { name?: unknown }).name;
  const name = source ?? (typeof fileName === 'string' ? fileName : undefined);
  const size = blob.size;
  const prefix = await readSlice(blob, 0, Math.min(size, SAFETENSORS_PREFIX_BYTES), name);
  const n = readSafetensorsHeaderLength(prefix, size, name);
  const header = parseSafetensorsHeader(await readSlice(blob, SAFETENSORS_PREFIX_BYTES, SAFETENSORS_PREFIX_BYTES + n, name), size, name);
  return bindSafetensorsData(header, await readSlice(blob, header.dataOffset, size, name));
}

/**
 * A safetensors file as a Blob (`application/octet-stream`), e.g. for a download link.
 * Same layout as `serializeSafetensors`.
 */
export function safetensorsBlob(tensors: SafetensorsTensorsInput, metadata?: Readonly<Record<string, string>>): Blob {
  return new Blob([serializeSafetensors(tensors, metadata)], { type: 'application/octet-stream' });
}

async function readSlice(blob: Blob, start: number, end: number, source: string | undefined): Promise<Uint8Array> {
  const bytes = new Uint8Array(await blob.slice(start, end).arrayBuffer());
  // A File can change on disk between reads; a short read must not pass for the whole.
  if (bytes.length !== end - start) {
    throw new SafetensorsError(`read ${bytes.length} bytes at offset ${start}, expected ${end - start}: the file changed while it was read`, { source });
  }
  return bytes;
}
