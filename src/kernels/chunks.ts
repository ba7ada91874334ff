/**
 * Sets of tensors larger than one storage binding. No dispatch can bind more than
 * `maxStorageBufferBindingSize` bytes of a buffer (lavapipe: 128 MiB, 33.5M f32; most GPUs
 * 2–4 GiB), so a set larger than that (GPT-2 small: 124M parameters, about 500 MB) is kept as
 * chunks, each a tensor of its own within the limit, and an op over the set dispatches once per
 * chunk, all in the same submit (ParamArena, the fused optimizers, `flattenChunks`, lerp over
 * chunk lists, `sumSquaresMany`). A tensor never straddles two chunks.
 *
 * A single tensor larger than a binding cannot be bound by any kernel (`ctx.empty` refuses
 * it): store it as row blocks ({@link rowBlocks}), each a tensor of its own, e.g. a [V, D]
 * embedding as [V₀, D], [V₁, D], …; a linear layer over such a weight runs once per block
 * (its output columns split the same way), and `maskedGradRowBlocks` computes the masked
 * gradient block by block.
 *
 * ```ts
 * const blocks = rowBlocks(ctx, [50257, 768]);        // lavapipe: [[25129,768],[25128,768]]
 * const arena = new ParamArena(ctx, [...blocks, ...otherShapes]); // chunks of <= one binding
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import type { DType } from '../gpu/kernel.js';
import { bytesPerElement, shapeSize, windowAlignment } from '../gpu/tensor.js';
import { fmtShape } from './util.js';

/**
 * The most bytes one chunk may hold on this device: maxStorageBufferBindingSize (and
 * maxBufferSize), rounded down to the window alignment so every slot of a full chunk binds.
 */
export function maxChunkBytes(ctx: GpuContext): number {
  const l = ctx.caps.limits;
  const bytes = Math.min(l.maxStorageBufferBindingSize ?? 128 * 1024 * 1024, l.maxBufferSize ?? Infinity);
  const align = windowAlignment(ctx);
  return Math.floor(bytes / align) * align;
}

/** Where each item went: its chunk and byte offset in it, and the bytes each chunk uses. */
export interface ChunkPlacement {
  chunk: number[];
  offset: number[];
  used: number[];
  /** Index of the first item that fit in no chunk, or -1 when every item was placed. */
  misfit: number;
}

/**
 * Place items of `sizes` bytes in order, each at a multiple of `align`: an item goes in the
 * current chunk if it ends within that chunk's capacity, else it starts the next chunk.
 * `capacity` is one limit for every chunk (a new layout), or each existing chunk's size
 * (replaying a layout from its chunks: a chunk's size is what its items used, and it was
 * closed by the first item that did not fit, so the replay gives back the same placement).
 */
export function placeInChunks(sizes: readonly number[], align: number, capacity: number | readonly number[]): ChunkPlacement {
  const cap = (k: number) => (typeof capacity === 'number' ? capacity : (capacity[k] ?? -1));
  const p: ChunkPlacement = { chunk: [], offset: [], used: [], misfit: -1 };
  let k = 0;
  let at = 0;
  for (let i = 0; i < sizes.length; i++) {
    const bytes = Math.ceil(sizes[i]! / align) * align;
    if (at > 0 && at + bytes > cap(k)) {
      p.used.push(at);
      k++;
      at = 0;
    }
    if (bytes > cap(k)) {
      p.misfit = i;
      return p;
    }
    p.chunk.push(k);
    p.offset.push(at);
    at += bytes;
  }
  p.used.push(at);
  return p;
}

/**
 * The row blocks a tensor of `shape` is stored as so that each fits one binding: shapes
 * [rows_b, ...shape[1:]] with the rows split as evenly as possible, each block at most
 * `maxBytes` (default {@link maxChunkBytes}). A tensor that fits gives one block, its own shape.
 */
export function rowBlocks(ctx: GpuContext, shape: readonly number[], dtype: DType = 'f32', maxBytes = maxChunkBytes(ctx)): number[][] {
  const n = shapeSize(shape, 'rowBlocks');
  if (!Number.isInteger(maxBytes) || maxBytes < 4) throw new ArgumentError(`rowBlocks: maxBytes = ${maxBytes}, expected an integer >= 4`);
  const rowBytes = (n / shape[0]!) * bytesPerElement(dtype);
  if (rowBytes > maxBytes) {
    throw new ShapeError(`rowBlocks: one row of ${fmtShape(shape)} ${dtype} is ${rowBytes} bytes, over the ${maxBytes}-byte limit; split another axis`);
  }
  const rows = shape[0]!;
  // Even blocks (the first rows % count get one row more), the fewest whose largest fits: the
  // byte count alone may leave ceil(rows / count) rows one row over the limit.
  let count = Math.ceil((rows * rowBytes) / maxBytes);
  while (Math.ceil(rows / count) * rowBytes > maxBytes) count++;
  const base = Math.floor(rows / count);
  const extra = rows % count;
  return Array.from({ length: count }, (_, b) => [base + (b < extra ? 1 : 0), ...shape.slice(1)]);
}
