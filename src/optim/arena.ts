/**
 * A parameter arena: many parameter tensors as windows of a few large f32 buffers, so an
 * optimizer updates all of them in one dispatch per buffer (and clips by their global norm in
 * one reduction) instead of one dispatch per tensor. Each slot starts at a multiple of
 * `windowAlignment`, so every window binds like a tensor of its own; the gaps between slots
 * are zero and stay zero under the optimizers' updates.
 *
 * An arena is one chunk (`storage`) unless its parameters need more than one storage binding
 * (lavapipe binds 128 MiB; a GPT-2-small model is about 500 MB): then slots are packed in
 * order into several chunks of at most a binding each, a parameter never straddling two, and
 * the optimizers dispatch once per chunk, still in one submit. A parameter larger than a
 * binding is refused (a SizeLimitError naming it): no kernel could bind it; give it as row
 * blocks (`rowBlocks` in src/kernels/chunks.ts), one slot each.
 *
 * ```ts
 * const arena = new ParamArena(ctx, [A0, B0]);         // copies A0, B0 in; or give shapes
 * const [A, B] = arena.params;                           // use these from now on
 * const layer = new LoraLayer(ctx, { W, A, B, rank: 8, alpha: 16 });
 * const opt = new AdamW(ctx, [{ params: A }, { params: B, lr: 16 * lr }], { lr }); // one dispatch
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, SizeLimitError } from '../gpu/errors.js';
import { shapeSize, type Tensor, windowAlignment } from '../gpu/tensor.js';
import { maxChunkBytes, placeInChunks } from '../kernels/chunks.js';
import { full } from '../kernels/elementwise.js';
import { fmtShape } from '../kernels/util.js';

export interface ParamArenaOptions {
  /**
   * The most bytes a chunk holds: a multiple of the window alignment, at most (and by default)
   * the device's storage binding limit ({@link maxChunkBytes}). Smaller chunks are for tests.
   */
  chunkBytes?: number;
}

/** The arena each chunk tensor belongs to (optimizers recognise an arena from its windows). */
const chunkOwner = new WeakMap<Tensor, ParamArena>();

/** The ParamArena whose chunk `storage` is (a chunk tensor itself, as a window's `parent`), if any. */
export function arenaOfChunk(storage: Tensor): ParamArena | undefined {
  return chunkOwner.get(storage);
}

/** Copy `bytes` from `src`'s data to byte `dstByte` of `dst` (checked by ctx.copy, encoded in order with the kernels). */
function copyInto(ctx: GpuContext, src: Tensor, dst: Tensor, dstByte: number, bytes: number, op: string): void {
  ctx.copy(src, dst, { dstOffset: dstByte, bytes, op });
}

export class ParamArena {
  /** The chunks, [elements] f32 each, at most `chunkBytes` bytes; the windows in `params` are their slots. */
  readonly chunks: readonly Tensor[];
  /** One window per parameter, in the order given. */
  readonly params: readonly Tensor[];
  /** Element offset of each slot in its chunk (`chunks[chunkOf[i]]`). */
  readonly offsets: readonly number[];
  /** The chunk each slot lives in. */
  readonly chunkOf: readonly number[];
  /** The most bytes a chunk holds. */
  readonly chunkBytes: number;

  /**
   * Slots for `specs` in order: a shape gives a zeroed slot, a tensor (f32) a slot holding a
   * copy of its data (encoded now; the tensor stays the caller's). Labels name the windows.
   */
  constructor(
    ctx: GpuContext,
    specs: readonly (Tensor | readonly number[])[],
    labels: readonly string[] = [],
    options: ParamArenaOptions = {},
  ) {
    if (!specs.length) throw new ArgumentError('ParamArena: no parameters');
    const align = windowAlignment(ctx);
    const limit = maxChunkBytes(ctx);
    const chunkBytes = options.chunkBytes ?? limit;
    if (!Number.isInteger(chunkBytes) || chunkBytes < align || chunkBytes % align !== 0 || chunkBytes > limit) {
      throw new ArgumentError(`ParamArena: chunkBytes = ${chunkBytes}, expected a multiple of ${align} (the window alignment) in [${align}, ${limit}] (the binding limit)`);
    }
    this.chunkBytes = chunkBytes;
    const shapes = specs.map((s, i) => {
      if (Array.isArray(s)) return [...(s as readonly number[])];
      const t = s as Tensor;
      t.buffer(`ParamArena: specs[${i}]`);
      if (t.dtype !== 'f32') throw new DTypeError(`ParamArena: specs[${i}] '${t.label}' is ${t.dtype}, expected f32 (optimizers update f32 parameters)`);
      return [...t.shape];
    });
    const sizes = shapes.map((shape, i) => 4 * shapeSize(shape, `ParamArena: specs[${i}]`));
    const place = placeInChunks(sizes, align, chunkBytes);
    if (place.misfit >= 0) {
      const i = place.misfit;
      const name = labels[i] ?? (Array.isArray(specs[i]) ? `specs[${i}]` : `specs[${i}] '${(specs[i] as Tensor).label}'`);
      throw new SizeLimitError(
        `ParamArena: ${name} ${fmtShape(shapes[i]!)} f32 is ${sizes[i]} bytes, over the ${chunkBytes}-byte chunk limit` +
          `${chunkBytes === limit ? ' (maxStorageBufferBindingSize)' : ''}: no kernel can bind it whole; give it as row blocks (rowBlocks), one slot each`,
      );
    }
    // Zeroed, gaps included: the optimizers then leave the gaps at zero.
    this.chunks = place.used.map((bytes, k) => ctx.keep(full(ctx, [bytes / 4], 0, 'f32', place.used.length > 1 ? `ParamArena.chunk${k}` : 'ParamArena')));
    for (const c of this.chunks) chunkOwner.set(c, this);
    this.chunkOf = place.chunk;
    this.offsets = place.offset.map((b) => b / 4);
    // Each window owns its slot up to the next slot of its chunk (or the chunk's end), padding
    // included, so kernels may round it up to whole vec4s without touching a neighbour.
    const slotBytes = (i: number) => {
      const k = place.chunk[i]!;
      const next = place.offset.filter((o, j) => place.chunk[j] === k && o > place.offset[i]!);
      return (next.length ? Math.min(...next) : place.used[k]!) - place.offset[i]!;
    };
    this.params = shapes.map((shape, i) => this.chunks[place.chunk[i]!]!.window(place.offset[i]!, shape, labels[i] ?? `ParamArena[${i}]`, slotBytes(i)));
    specs.forEach((s, i) => {
      if (Array.isArray(s)) return;
      const t = s as Tensor;
      copyInto(ctx, t, this.chunks[place.chunk[i]!]!, place.offset[i]!, Math.ceil(t.byteLength / 4) * 4, `ParamArena: specs[${i}]`);
    });
  }

  /**
   * The whole arena as one tensor, [elements] f32, when it is one chunk (every arena within a
   * binding). A SizeLimitError for an arena of several chunks: use `chunks`.
   */
  get storage(): Tensor {
    if (this.chunks.length > 1) {
      throw new SizeLimitError(
        `ParamArena.storage: the arena is ${this.chunks.length} chunks of up to ${this.chunkBytes} bytes (one binding each), not one tensor; use arena.chunks (e.g. lerpInPlace(ctx, a.chunks, b.chunks, alpha))`,
      );
    }
    return this.chunks[0]!;
  }

  /** Elements in the arena, gaps included, over all chunks. */
  get size(): number {
    return this.chunks.reduce((n, c) => n + c.size, 0);
  }

  /** Index of the slot that `t` (a window of this arena, or a view of one) is, or -1. */
  slotOf(t: Tensor): number {
    const k = t.parent ? this.chunks.indexOf(t.parent) : -1;
    if (k < 0) return -1;
    const at = (t.byteOffset - t.parent!.byteOffset) / 4;
    const i = this.offsets.findIndex((o, j) => o === at && this.chunkOf[j] === k);
    return i >= 0 && this.params[i]!.size === t.size ? i : -1;
  }

  /** Free the arena; its windows read as disposed afterwards. */
  dispose(): void {
    for (const c of this.chunks) c.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
