/**
 * Upload, readback and copies. A write is ordered after work already encoded (a staged copy
 * while encoding, a queue write otherwise); a read submits pending work and waits for it;
 * a copy is encoded like a dispatch, checked like one: live tensors, 4-byte words, inside
 * each tensor's own bytes, never a neighbour's.
 */
import type { DeviceChecks } from './deviceChecks.js';
import type { DeviceErrors } from './deviceErrors.js';
import { ArgumentError, BindingError, DeviceError, ShapeError } from './errors.js';
import { decodeHalf, encodeHalf } from './half.js';
import type { Memory } from './memory.js';
import type { CommandStream } from './stream.js';
import type { Tensor } from './tensor.js';

const MAP_READ_USAGE = 0x0001 | 0x0008; // MAP_READ | COPY_DST
const COPY_SRC = 0x0004;
const MAP_MODE_READ = 0x0001;

/** Byte ranges of a copy, relative to each tensor's first byte. */
export interface CopyOptions {
  /** Default 0. */
  srcOffset?: number;
  /** Default 0. */
  dstOffset?: number;
  /** Default: the rest of `src` from srcOffset, rounded up to whole 4-byte words. */
  bytes?: number;
  /** The op named in errors (default 'copy'). */
  op?: string;
}

/** A tensor's bytes rounded up to whole 4-byte words (what WebGPU reads or writes of it). */
const words = (t: Tensor) => Math.ceil(t.byteLength / 4) * 4;

function describe(t: Tensor): string {
  return `'${t.label}' [${t.shape.join(',')}] ${t.dtype} (${t.byteLength} bytes${t.parent ? ` at byte ${t.byteOffset} of '${t.parent.label}'` : ''})`;
}

export class Transfer {
  constructor(
    private readonly device: GPUDevice,
    private readonly memory: Memory,
    private readonly stream: CommandStream,
    private readonly errors: DeviceErrors,
    private readonly checks: DeviceChecks,
  ) {}

  write(t: Tensor, data: ArrayLike<number>): void {
    const buf = t.buffer('write');
    this.errors.checkAlive('write');
    if (data.length !== t.size) {
      throw new ShapeError(`write: data has ${data.length} elements, tensor '${t.label}' [${t.shape.join(',')}] has ${t.size}`);
    }
    let bytes: Uint8Array<ArrayBuffer>;
    if (t.dtype === 'f16') {
      const h = encodeHalf(data);
      // WebGPU writes whole 4-byte words: an odd f16 count writes one half-word more, which
      // must be this tensor's own padding, never a neighbour's element.
      if (h.length & 1 && t.byteOffset + words(t) > t.limit) {
        throw new BindingError(`write: ${describe(t)} ends inside a 4-byte word whose other half belongs to its neighbour; WebGPU writes whole words, so write a window with an even number of f16 elements`);
      }
      const padded = new Uint16Array(h.length + (h.length & 1));
      padded.set(h);
      bytes = new Uint8Array(padded.buffer);
    } else {
      const f: Float32Array<ArrayBuffer> =
        data instanceof Float32Array && data.buffer instanceof ArrayBuffer ? (data as Float32Array<ArrayBuffer>) : Float32Array.from(data);
      bytes = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    }
    if (this.stream.pending) {
      // A queue write would run before the encoded commands that may still read the old contents.
      const staging = this.memory.rawBuffer({ size: bytes.byteLength, usage: COPY_SRC, label: `write ${t.label}`, data: bytes });
      this.stream.encoder().copyBufferToBuffer(staging, 0, buf, t.byteOffset, bytes.byteLength);
      this.stream.destroyAfterSubmit(staging);
    } else {
      this.device.queue.writeBuffer(buf, t.byteOffset, bytes);
    }
  }

  async read(t: Tensor): Promise<Float32Array> {
    const buf = t.buffer('read');
    this.errors.checkAlive('read');
    const size = words(t);
    const staging = this.memory.rawBuffer({ size, usage: MAP_READ_USAGE, label: `read ${t.label}` });
    let checks = null;
    try {
      this.stream.encoder().copyBufferToBuffer(buf, t.byteOffset, staging, 0, size);
      checks = this.checks.collect();
      this.stream.flush();
      try {
        await this.stream.wait(() => staging.mapAsync(MAP_MODE_READ));
      } catch (e) {
        this.errors.throwPending('read');
        throw new DeviceError(`read: mapping '${t.label}' failed: ${(e as Error).message}`);
      }
      const raw = staging.getMappedRange().slice(0);
      await this.errors.awaitCompileChecks();
      this.errors.throwPending('read');
      const c = checks;
      checks = null;
      await this.checks.report(c, (start) => this.stream.wait(start));
      if (t.dtype === 'f16') return decodeHalf(new Uint16Array(raw, 0, t.size));
      return new Float32Array(raw, 0, t.size);
    } finally {
      this.memory.destroyRaw(staging);
      this.checks.discard(checks);
    }
  }

  /** Submit pending work and wait for the GPU; throws what the device reported and failed device checks. */
  async sync(): Promise<void> {
    this.errors.checkAlive('sync');
    const checks = this.checks.collect();
    try {
      this.stream.flush();
      await this.stream.wait(() => this.device.queue.onSubmittedWorkDone());
      await this.errors.awaitCompileChecks();
      this.errors.throwPending('sync');
    } catch (e) {
      this.checks.discard(checks);
      throw e;
    }
    await this.checks.report(checks, (start) => this.stream.wait(start));
  }

  copy(src: Tensor, dst: Tensor, o: CopyOptions = {}): void {
    const op = o.op ?? 'copy';
    const sb = src.buffer(`${op}: src`);
    const db = dst.buffer(`${op}: dst`);
    this.errors.checkAlive(op);
    const srcOffset = o.srcOffset ?? 0;
    const dstOffset = o.dstOffset ?? 0;
    const bytes = o.bytes ?? words(src) - srcOffset;
    for (const [name, v] of [['srcOffset', srcOffset], ['dstOffset', dstOffset], ['bytes', bytes]] as const) {
      if (!Number.isInteger(v) || v < 0 || v % 4 !== 0) throw new ArgumentError(`${op}: ${name} = ${v}, expected a non-negative multiple of 4 (WebGPU copies whole 4-byte words)`);
    }
    for (const [name, t, off] of [['src', src, srcOffset], ['dst', dst, dstOffset]] as const) {
      if (off + bytes > words(t)) throw new ShapeError(`${op}: ${name} bytes [${off}, ${off + bytes}) run past ${describe(t)}`);
    }
    // The word that holds an odd f16 window's last element is written whole: it must be dst's own.
    if (dstOffset + bytes > dst.byteLength && dst.byteOffset + dstOffset + bytes > dst.limit) {
      throw new BindingError(`${op}: dst bytes [${dstOffset}, ${dstOffset + bytes}) of ${describe(dst)} end inside a 4-byte word shared with its neighbour`);
    }
    if (sb === db) throw new BindingError(`${op}: src '${src.label}' and dst '${dst.label}' share one buffer; WebGPU copies only between two buffers`);
    if (bytes === 0) return;
    this.stream.encoder().copyBufferToBuffer(sb, src.byteOffset + srcOffset, db, dst.byteOffset + dstOffset, bytes);
  }
}
