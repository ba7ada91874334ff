/**
 * Files on disk, for Node (`webgpu-lora/io/node`): safetensors read and write, and atomic
 * writes of any file.
 *
 * Reading a safetensors file opens it once: the 8-byte length and the header are read and
 * validated first (a malformed file is refused before its data is touched), then the data
 * section is read once into one buffer, which the tensors view. Nothing is read twice and
 * nothing is copied after reading. The data section must fit in one typed array
 * (Node 20: up to 2^32 bytes); a larger file is refused with a {@link SafetensorsError}.
 *
 * Every write goes to a temporary file in the destination's folder (same file system, so
 * the rename is atomic), is flushed to disk with fsync, then renamed over the destination,
 * and the folder is fsynced so the rename itself survives a crash. A write that fails or is
 * interrupted leaves the old file as it was and removes the temporary file; readers never
 * see a partial file at the destination path.
 *
 * @example
 * import { readSafetensorsFile, writeSafetensorsFile } from 'webgpu-lora/io/node';
 * const file = await readSafetensorsFile('model.safetensors');
 * await writeSafetensorsFile('copy.safetensors', { w: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) } }, { format: 'pt' });
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { SafetensorsError } from './errors.js';
import { formatJson, type FormatJsonOptions } from './json.js';
import {
  bindSafetensorsData,
  encodeSafetensors,
  parseSafetensorsHeader,
  readSafetensorsHeaderLength,
  SAFETENSORS_PREFIX_BYTES,
  type SafetensorsFile,
  type SafetensorsTensorsInput,
} from './safetensors.js';

/** fs reads take at most 2^31 - 1 bytes per call; read big sections in pieces of 1 GiB. */
const READ_PIECE = 1 << 30;

/**
 * Reads and validates a safetensors file (see the file header for how it is read).
 * Throws {@link SafetensorsError} for a malformed file; fs errors (a missing file, no
 * permission) come through as they are.
 */
export async function readSafetensorsFile(path: string): Promise<SafetensorsFile> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const prefix = await readAt(fh, new Uint8Array(Math.min(size, SAFETENSORS_PREFIX_BYTES)), 0, path);
    const n = readSafetensorsHeaderLength(prefix, size, path);
    const headerBytes = await readAt(fh, new Uint8Array(n), SAFETENSORS_PREFIX_BYTES, path);
    const header = parseSafetensorsHeader(headerBytes, size, path);
    let data: Uint8Array;
    try {
      data = new Uint8Array(header.dataLength);
    } catch (e) {
      throw new SafetensorsError(`cannot hold the ${header.dataLength}-byte data section in one buffer`, { source: path }, { cause: e });
    }
    await readAt(fh, data, header.dataOffset, path);
    return bindSafetensorsData(header, data);
  } finally {
    await fh.close();
  }
}

/**
 * Writes tensors as a safetensors file, atomically (see {@link writeFileAtomicWith}), in the
 * reference writer's layout. Tensor data is written straight from the given arrays, without
 * first joining the file in memory.
 *
 * @example
 * await writeSafetensorsFile('adapter_model.safetensors', tensors, { format: 'pt' });
 */
export async function writeSafetensorsFile(
  path: string,
  tensors: SafetensorsTensorsInput,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const { chunks } = encodeSafetensors(tensors, metadata); // validates before any file is made
  await writeFileAtomicWith(path, async (write) => {
    for (const c of chunks) await write(c);
  });
}

/**
 * Writes `data` (bytes, or a string as UTF-8) to `path` atomically: temporary file in the
 * same folder, fsync, rename. On failure the old file (if any) is unchanged.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  await writeFileAtomicWith(path, (write) => write(bytes));
}

/**
 * Writes `value` as JSON to `path` atomically, formatted by `formatJson` (default: indent 2,
 * keys in the object's order, a final newline).
 *
 * @example
 * await writeJsonAtomic('adapter_config.json', config, { sortKeys: true, finalNewline: false });
 */
export async function writeJsonAtomic(path: string, value: unknown, options?: FormatJsonOptions): Promise<void> {
  await writeFileAtomic(path, formatJson(value, options));
}

/**
 * The atomic write under the others: `fill` writes the file's content through `write`,
 * chunk by chunk, into a temporary file `.<name>.<random>.tmp` beside `path`; when `fill`
 * resolves the file is fsynced, closed and renamed over `path`. When `fill` (or a write,
 * the fsync or the rename) throws, the temporary file is removed, `path` is untouched, and
 * the error is rethrown.
 *
 * @example
 * await writeFileAtomicWith('big.bin', async (write) => {
 *   for (const part of parts) await write(part);
 * });
 */
export async function writeFileAtomicWith(path: string, fill: (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>): Promise<void> {
  const target = resolve(path);
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx');
  let filled = false;
  let closed = false;
  try {
    await fill(async (chunk) => {
      if (filled) throw new Error(`writeFileAtomicWith(${JSON.stringify(path)}): write called after the fill function returned`);
      let at = 0;
      while (at < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, at, chunk.length - at);
        at += bytesWritten;
      }
    });
    filled = true;
    await fh.sync();
    closed = true;
    await fh.close();
    await rename(tmp, target);
  } catch (e) {
    if (!closed) {
      closed = true;
      await fh.close().catch(() => undefined);
    }
    await rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
  await syncFolder(dir);
}

/** Flushes a folder's entries (the rename) to disk. Not every platform can open a folder
 * (Windows cannot); there the rename is as durable as the OS makes it. */
async function syncFolder(dir: string): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch {
    // best effort, see above
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Fills `into` from the file at `position`; a file that ends early is an error, not a short read. */
async function readAt(fh: FileHandle, into: Uint8Array, position: number, source: string): Promise<Uint8Array> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, Math.min(READ_PIECE, into.length - done), position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(
        `the file ended at byte ${position + done} while ${into.length} bytes were read from offset ${position}: it changed while it was read`,
        { source },
      );
    }
    done += bytesRead;
  }
  return into;
}
