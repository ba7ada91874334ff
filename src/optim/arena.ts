/**
 * A parameter arena: many parameter tensors as windows of one f32 buffer, so an optimizer
 * updates all of them in one dispatch (and clips by their global norm in one reduction)
 * instead of one dispatch per tensor. Each slot starts at a multiple of `windowAlignment`,
 * so every window binds like a tensor of its own; the gaps
 * between slots are zero and stay zero under the optimizers' updates.
 *
 * ```ts
 * const arena = new ParamArena(ctx, [A0, B0]);         // copies A0, B0 in; or give shapes
 * const [A, B] = arena.params;                           // use these from now on
 * const layer = new LoraLayer(ctx, { W, A, B, rank: 8, alpha: 16 });
 * const opt = new AdamW(ctx, [{ params: A }, { params: B, lr: 16 * lr }], { lr }); // one dispatch
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError } from '../gpu/errors.js';
import { shapeSize, type Tensor, windowAlignment } from '../gpu/tensor.js';
import { full } from '../kernels/elementwise.js';

export class ParamArena {
  /** The whole arena, [elements] f32; the windows in `params` are its slots. */
  readonly storage: Tensor;
  /** One window per parameter, in the order given. */
  readonly params: readonly Tensor[];
  /** Element offset of each slot in `storage`. */
  readonly offsets: readonly number[];

  /**
   * Slots for `specs` in order: a shape gives a zeroed slot, a tensor (f32) a slot holding a
   * copy of its data (encoded now; the tensor stays the caller's). Labels name the windows.
   */
  constructor(
    ctx: GpuContext,
    specs: readonly (Tensor | readonly number[])[],
    labels: readonly string[] = [],
  ) {
    if (!specs.length) throw new ArgumentError('ParamArena: no parameters');
    const align = windowAlignment(ctx);
    const offsets: number[] = [];
    const shapes: number[][] = [];
    let bytes = 0;
    specs.forEach((s, i) => {
      let shape: number[];
      if (Array.isArray(s)) shape = [...(s as readonly number[])];
      else {
        const t = s as Tensor;
        t.buffer(`ParamArena: specs[${i}]`);
        if (t.dtype !== 'f32') throw new DTypeError(`ParamArena: specs[${i}] '${t.label}' is ${t.dtype}, expected f32 (optimizers update f32 parameters)`);
        shape = [...t.shape];
      }
      const n = shapeSize(shape, `ParamArena: specs[${i}]`);
      offsets.push(bytes / 4);
      shapes.push(shape);
      bytes += Math.ceil((n * 4) / align) * align;
    });
    // Zeroed, gaps included: the optimizers then leave the gaps at zero.
    this.storage = ctx.keep(full(ctx, [bytes / 4], 0, 'f32', 'ParamArena'));
    this.offsets = offsets;
    // Each window owns its slot, padding included (kernels may round it up to whole vec4s).
    const slotEnds = [...offsets.slice(1).map((o) => o * 4), bytes];
    this.params = shapes.map((shape, i) => this.storage.window(offsets[i]! * 4, shape, labels[i] ?? `ParamArena[${i}]`, slotEnds[i]! - offsets[i]! * 4));
    specs.forEach((s, i) => {
      if (Array.isArray(s)) return;
      ctx.copy(s as Tensor, this.params[i]!, { op: `ParamArena: specs[${i}]` });
    });
  }

  /** Elements in the arena, gaps included. */
  get size(): number {
    return this.storage.size;
  }

  /** Index of the slot that `t` (a window of this arena, or a view of one) is, or -1. */
  slotOf(t: Tensor): number {
    if (t.parent !== this.storage) return -1;
    const i = this.offsets.indexOf(t.byteOffset / 4 - this.storage.byteOffset / 4);
    return i >= 0 && this.params[i]!.size === t.size ? i : -1;
  }

  /** Free the arena; its windows read as disposed afterwards. */
  dispose(): void {
    this.storage.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
