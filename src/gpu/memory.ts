/**
 * Allocation and memory accounting: every buffer the context makes is counted here.
 *
 * - Tensors take pooled buffers (pool.ts); `liveBytes` / `liveBuffers` count those handed
 *   out, `pooledBytes` those waiting for reuse.
 * - Raw buffers (index tables, masks, the optimizer's group table, staging and query buffers,
 *   the uniform ring, the device-check slots) are made through {@link Memory.rawBuffer} and
 *   counted in `rawBytes` / `rawBuffers` until they are destroyed, so a leak of any of them
 *   shows in `ctx.memory()` like a leaked tensor.
 */
import type { Caps } from './caps.js';
import { DTypeError, SizeLimitError } from './errors.js';
import type { DType } from './kernel.js';
import { BufferPool, POOL_USAGE, type PoolStats } from './pool.js';
import { bytesPerElement, shapeSize, Tensor } from './tensor.js';
import type { GpuContext } from './context.js';

export interface MemoryStats extends PoolStats {
  /** Tensors made and not yet disposed (views and windows are not counted). */
  liveTensors: number;
  /** Bytes of raw (non-pooled) buffers the context made and has not destroyed yet. */
  rawBytes: number;
  /** Number of those raw buffers. */
  rawBuffers: number;
}

export class Memory {
  readonly pool: BufferPool;
  private readonly tensors = new Set<Tensor>();
  private readonly raw = new Set<GPUBuffer>();
  private rawBytes = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly caps: Caps,
    /** True while commands are being encoded (a released buffer then waits for the submit). */
    private readonly encoding: () => boolean,
  ) {
    this.pool = new BufferPool(device, caps.limits.maxBufferSize ?? 256 * 1024 * 1024);
  }

  /** An uninitialised tensor from the pool: dtype supported here, size within one binding. */
  tensor(ctx: GpuContext, shape: readonly number[], dtype: DType, label: string): Tensor {
    this.checkDType(dtype, label);
    const n = shapeSize(shape, label);
    const bytes = n * bytesPerElement(dtype);
    const max = this.caps.limits.maxStorageBufferBindingSize ?? Infinity;
    if (bytes > max) {
      throw new SizeLimitError(`${label}: [${shape.join(',')}] ${dtype} is ${bytes} bytes, over this device's maxStorageBufferBindingSize ${max}`);
    }
    const t = new Tensor(ctx, this.pool.acquire(bytes, label), [...shape], dtype, label);
    this.tensors.add(t);
    return t;
  }

  /** `next` takes over `prev`'s storage (reshape): counted once. */
  replace(prev: Tensor, next: Tensor): void {
    this.tensors.delete(prev);
    this.tensors.add(next);
  }

  /** A tensor's pooled buffer comes back (reusable after the next submit if work is being encoded). */
  release(buf: GPUBuffer): void {
    this.pool.release(buf, this.encoding());
  }

  /**
   * A buffer outside the pool, counted until {@link destroyRaw}. Default usage is the pool's
   * (STORAGE | COPY_SRC | COPY_DST); `data` is written at creation (mapped), and the size is
   * rounded up to 4 bytes.
   */
  rawBuffer(o: { size: number; label: string; usage?: number; data?: ArrayBufferView }): GPUBuffer {
    const size = Math.max(4, Math.ceil(o.size / 4) * 4);
    const mapped = o.data !== undefined && o.data.byteLength > 0;
    const buf = this.device.createBuffer({ size, usage: o.usage ?? POOL_USAGE, label: o.label, mappedAtCreation: mapped });
    if (mapped) {
      const d = o.data!;
      new Uint8Array(buf.getMappedRange()).set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      buf.unmap();
    }
    this.raw.add(buf);
    this.rawBytes += buf.size;
    return buf;
  }

  /** Destroy a buffer now; a raw buffer made here stops being counted. (Callers time it: see the stream.) */
  destroyRaw(buf: GPUBuffer): void {
    if (this.raw.delete(buf)) this.rawBytes -= buf.size;
    buf.destroy();
  }

  stats(): MemoryStats {
    for (const t of this.tensors) if (t.disposed) this.tensors.delete(t);
    return { ...this.pool.stats, liveTensors: this.tensors.size, rawBytes: this.rawBytes, rawBuffers: this.raw.size };
  }

  checkDType(dtype: DType, what: string): void {
    if (dtype !== 'f32' && dtype !== 'f16') throw new DTypeError(`${what}: dtype '${dtype}', expected 'f32' or 'f16'`);
    if (dtype === 'f16' && !this.caps.f16) throw new DTypeError(`${what}: dtype f16 needs the shader-f16 feature, which this device lacks`);
  }

  /** Destroy every buffer, pooled, live and raw (context teardown). */
  destroyAll(): void {
    this.pool.destroyAll();
    for (const b of this.raw) b.destroy();
    this.raw.clear();
    this.rawBytes = 0;
  }
}
