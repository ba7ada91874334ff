/**
 * A dense, row-major GPU array: a pooled storage buffer with a shape and a dtype.
 * Tensors are owned: `dispose()` returns the buffer to the pool, and a scope
 * (`ctx.scope`) disposes what was made inside it. Any use after disposal throws
 * a DisposedError naming the tensor.
 */
import { DisposedError, ShapeError } from './errors.js';
import type { DType } from './kernel.js';
import type { GpuContext } from './context.js';

let nextTensorId = 0;

export function bytesPerElement(dtype: DType): number {
  return dtype === 'f16' ? 2 : 4;
}

/** Number of elements of `shape`; throws a ShapeError naming `what` for non-integer or zero dims. */
export function shapeSize(shape: readonly number[], what: string): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 1) {
      throw new ShapeError(`${what}: shape [${shape.join(',')}] has dimension ${d}, expected integers >= 1`);
    }
    n *= d;
  }
  return n;
}

/**
 * The byte alignment of a window's offset (Tensor.window, ParamArena slots): the device's
 * minStorageBufferOffsetAlignment, so a window can be bound, and at least 16, so that a window
 * never starts inside another's 16-byte vec4.
 */
export function windowAlignment(ctx: GpuContext): number {
  return Math.max(16, ctx.caps.limits.minStorageBufferOffsetAlignment ?? 256);
}

export class Tensor {
  readonly id = nextTensorId++;
  readonly size: number;
  /**
   * @internal The byte in the buffer where this tensor's room ends: what a kernel may write (or
   * a copy touch) reaches at most here. A tensor with a buffer of its own owns the buffer's
   * padding; a window owns its bytes, its slot's padding when it was given one (ParamArena),
   * or its parent's room when it ends where its parent ends. Never a neighbour's bytes.
   */
  readonly limit: number;
  private buffer_: GPUBuffer | null;
  private releasedBy: string | null = null;

  /** @internal use `ctx.empty`, `ctx.tensor`, or `zeros` / `ones` / `full` from the kernels */
  constructor(
    readonly ctx: GpuContext,
    buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly label: string,
    /** Set for a view: the tensor that owns the storage. */
    readonly parent: Tensor | null = null,
    /**
     * Where the data starts in the buffer: 0, or for a window into a larger tensor (a slot of a
     * ParamArena) a multiple of `windowAlignment`.
     */
    readonly byteOffset = 0,
    limit?: number,
  ) {
    this.size = shapeSize(shape, label);
    this.buffer_ = buffer;
    this.limit = limit ?? buffer.size;
  }

  /** Bytes the data occupies (the pooled buffer may be larger). */
  get byteLength(): number {
    return this.size * bytesPerElement(this.dtype);
  }

  get disposed(): boolean {
    return this.buffer_ === null || (this.parent !== null && this.parent.disposed);
  }

  /** The storage buffer; throws DisposedError after `dispose()`. `op` names the caller in the message. */
  buffer(op = 'tensor'): GPUBuffer {
    if (!this.buffer_ || this.parent?.disposed) {
      const by = this.releasedBy ?? this.parent?.releasedBy;
      throw new DisposedError(`${op}: tensor '${this.label}' [${this.shape.join(',')}] ${this.dtype} was ${by ? `released by ${by}` : 'disposed'}`);
    }
    return this.buffer_;
  }

  /** Return the buffer to the pool. Idempotent. */
  dispose(): void {
    if (!this.buffer_) return;
    if (!this.parent) this.ctx.releaseBuffer(this.buffer_);
    this.buffer_ = null;
  }

  /**
   * @internal Dispose on behalf of `by` (e.g. "backward()"), which a later use's DisposedError
   * then names, so a tensor the caller still held does not just read "was disposed".
   */
  release(by: string): void {
    if (!this.buffer_) return;
    this.releasedBy = by;
    this.dispose();
  }

  /**
   * The same storage under another shape of the same size, without a copy. The view does
   * not own the storage: disposing it does nothing to this tensor, and it is unusable once
   * this tensor is disposed. (To change the shape of a tensor you own, use `ctx.reshape`.)
   */
  view(shape: readonly number[]): Tensor {
    const buf = this.buffer('view');
    const n = shapeSize(shape, `${this.label}.view`);
    if (n !== this.size) throw new ShapeError(`view: [${shape.join(',')}] has ${n} elements, tensor '${this.label}' [${this.shape.join(',')}] has ${this.size}`);
    return new Tensor(this.ctx, buf, [...shape], this.dtype, `${this.label}.view`, this.parent ?? this, this.byteOffset, this.limit);
  }

  /**
   * A window of this tensor's storage: `shape` elements from byte `byteOffset` on, without a
   * copy (the slots of a ParamArena). Like a view it does not own the storage. The offset must
   * be a multiple of {@link windowAlignment} and the window must lie inside this tensor.
   *
   * A window never touches its neighbours: kernels and copies write it only where every byte
   * they would touch is its own. WebGPU writes whole 4-byte words and vec4 kernels whole
   * 16-byte vec4s, so a window that ends inside a word or vec4 followed by other data is
   * refused (BindingError) where such a write would be needed. `slotBytes` (>= the window's
   * bytes) declares padding after it that belongs to it alone (a ParamArena slot's gap).
   */
  window(byteOffset: number, shape: readonly number[], label = `${this.label}.window`, slotBytes?: number): Tensor {
    const buf = this.buffer('window');
    const n = shapeSize(shape, label);
    const align = windowAlignment(this.ctx);
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % align !== 0) {
      throw new ShapeError(`window: byteOffset ${byteOffset} into '${this.label}', expected a multiple of ${align} (minStorageBufferOffsetAlignment, at least 16)`);
    }
    const bytes = n * bytesPerElement(this.dtype);
    const end = byteOffset + bytes;
    if (end > this.byteLength) {
      throw new ShapeError(`window: [${shape.join(',')}] at byte ${byteOffset} ends at byte ${end}, past the ${this.byteLength} bytes of '${this.label}'`);
    }
    if (slotBytes !== undefined && (!Number.isInteger(slotBytes) || slotBytes < bytes)) {
      throw new ShapeError(`window: slotBytes ${slotBytes} for '${label}', expected an integer >= its ${bytes} bytes`);
    }
    const start = this.byteOffset + byteOffset;
    // Ending where this tensor ends, the window may use this tensor's room after it; else only its own bytes (or slot).
    const limit = end === this.byteLength ? this.limit : Math.min(this.limit, start + (slotBytes ?? bytes));
    return new Tensor(this.ctx, buf, [...shape], this.dtype, label, this.parent ?? this, start, limit);
  }

  /** @internal hand the storage to another tensor (ctx.reshape); this one reads as disposed. */
  takeBuffer(): GPUBuffer {
    const b = this.buffer('reshape');
    if (this.parent) throw new ShapeError(`reshape: '${this.label}' is a view; reshape the tensor that owns the storage`);
    this.buffer_ = null;
    return b;
  }

  /** Read back as f32 (f16 tensors are widened). Submits pending work first. */
  read(): Promise<Float32Array> {
    return this.ctx.read(this);
  }

  /** Read back as a plain array of numbers (f16 widened). Submits pending work first. */
  async toArray(): Promise<number[]> {
    return Array.from(await this.ctx.read(this));
  }

  /** `using t = ctx.tensor(...)` disposes `t` at the end of the block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Overwrite the contents (length must equal `size`). Ordered after work already encoded. */
  write(data: ArrayLike<number>): void {
    this.ctx.write(this, data);
  }

  toString(): string {
    return `Tensor(${this.label} [${this.shape.join(',')}] ${this.dtype}${this.disposed ? ', disposed' : ''})`;
  }
}
