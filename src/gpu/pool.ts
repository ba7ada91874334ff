/**
 * A size-class pool of storage buffers with a live-bytes counter.
 *
 * Sizes are rounded up to a class (powers of two split in four steps, so at
 * most ~19% is wasted) and freed buffers wait on a per-class free list. A
 * buffer released while commands that use it are still being encoded must not
 * be handed out again before those commands are submitted: a later
 * `queue.writeBuffer` into it would run *before* them on the queue timeline.
 * Such buffers wait in `pending` until the context submits (see `afterSubmit`).
 */

/**
 * Usage of every pooled buffer: STORAGE | COPY_SRC | COPY_DST. The values are fixed by
 * the WebGPU spec; `GPUBufferUsage` itself is not a global in Node unless `webgpu`'s
 * globals are installed, so the numbers are spelled out.
 */
export const POOL_USAGE = 0x0080 | 0x0004 | 0x0008;

const MIN_CLASS = 256;

/** The byte size a request of `bytes` is served with. */
export function sizeClass(bytes: number): number {
  if (bytes <= MIN_CLASS) return MIN_CLASS;
  const p = 2 ** Math.floor(Math.log2(bytes));
  if (p === bytes) return p;
  const step = p / 4;
  return Math.ceil(bytes / step) * step;
}

export interface PoolStats {
  /** Bytes of buffers handed out and not yet released (class sizes). */
  liveBytes: number;
  /** Number of buffers handed out and not yet released. */
  liveBuffers: number;
  /** Bytes of buffers waiting in the pool for reuse. */
  pooledBytes: number;
  /** Buffers created since the pool started (a flat count in a loop means reuse works). */
  created: number;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private pending: GPUBuffer[] = [];
  private live = new Set<GPUBuffer>();
  private stats_: PoolStats = { liveBytes: 0, liveBuffers: 0, pooledBytes: 0, created: 0 };

  constructor(
    private readonly device: GPUDevice,
    private readonly maxBufferSize: number,
  ) {}

  /** A buffer of at least `bytes` bytes (STORAGE | COPY_SRC | COPY_DST). Contents are undefined. */
  acquire(bytes: number, label?: string): GPUBuffer {
    const size = sizeClass(Math.max(4, bytes));
    const list = this.free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.stats_.pooledBytes -= size;
    } else {
      // A class may round past maxBufferSize although the request fits: fall back to the size
      // rounded to 16 bytes (whole vec4s, like every class), or to 4 where even that does not fit.
      const v4 = Math.ceil(bytes / 16) * 16;
      const alloc = size <= this.maxBufferSize ? size : v4 <= this.maxBufferSize ? v4 : Math.ceil(bytes / 4) * 4;
      buf = this.device.createBuffer({ size: alloc, usage: POOL_USAGE, label });
      this.stats_.created++;
    }
    this.live.add(buf);
    this.stats_.liveBytes += buf.size;
    this.stats_.liveBuffers++;
    return buf;
  }

  /** Give a buffer back. If commands using it are still being encoded, it is reusable only after the next submit. */
  release(buf: GPUBuffer, encoding: boolean): void {
    if (!this.live.delete(buf)) return;
    this.stats_.liveBytes -= buf.size;
    this.stats_.liveBuffers--;
    if (encoding) this.pending.push(buf);
    else this.toFree(buf);
  }

  /** Called by the context after each submit: pending buffers become reusable. */
  afterSubmit(): void {
    for (const b of this.pending) this.toFree(b);
    this.pending.length = 0;
  }

  private toFree(buf: GPUBuffer): void {
    const list = this.free.get(buf.size);
    if (list) list.push(buf);
    else this.free.set(buf.size, [buf]);
    this.stats_.pooledBytes += buf.size;
  }

  /** Destroy every pooled (not live) buffer. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats_.pooledBytes = 0;
  }

  /** Destroy everything, live buffers included (context teardown). */
  destroyAll(): void {
    this.trim();
    for (const b of this.pending) b.destroy();
    for (const b of this.live) b.destroy();
    this.pending.length = 0;
    this.live.clear();
    this.stats_.liveBytes = 0;
    this.stats_.liveBuffers = 0;
  }

  get stats(): PoolStats {
    return { ...this.stats_ };
  }
}
