/**
 * Fused optimizers (src/wgsl/optim.wgsl): state allocated once, global-norm clipping computed
 * on the GPU, and `step()` only encodes (the training step's single submit carries it).
 * Parameters that are windows of one ParamArena (src/optim/arena.ts) are updated by one
 * dispatch for all groups per chunk of the arena (one chunk unless the arena is larger than a
 * storage binding), each group with its own lr and weight decay; other parameters get a
 * dispatch each. Clipping reduces every gradient into partials and adds them in one pass.
 *
 * ```ts
 * // LoRA+: B learns 16× faster than A.
 * const opt = new AdamW(ctx, [{ params: A, grads: dA, lr: 1e-4 }, { params: B, grads: dB, lr: 1.6e-3 }], { lr: 1e-4, weightDecay: 0.01, maxGradNorm: 1 });
 * opt.step();
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, ShapeError } from '../gpu/errors.js';
import { KernelModule } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { full } from './elementwise.js';
import { sumSquaresMany } from './reduce.js';
import { checkFinite as finite, grid2d, unusedU32, uploadU32 } from './util.js';
import { wgsl } from '../wgsl/sources.js';
import { arenaOfChunk } from '../optim/arena.js';

export interface ParamGroup {
  /** Parameters, f32 (any tensor, or a window of a ParamArena), updated in place. */
  params: Tensor;
  /** Gradients of the same size, read at every step; or pass them to `step()` each time. */
  grads?: Tensor;
  lr?: number;
  weightDecay?: number;
}

interface CommonOptions {
  lr: number;
  weightDecay?: number;
  /** Clip the global gradient norm over all groups to this value (on the GPU). */
  maxGradNorm?: number;
}

export interface AdamWOptions extends CommonOptions {
  betas?: [number, number];
  eps?: number;
  amsgrad?: boolean;
}

export interface SGDOptions extends CommonOptions {
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
}

function optimModule(): KernelModule {
  return KernelModule.get('optim.wgsl', wgsl.optim);
}

/** Elements per workgroup of both optim.wgsl entries (one per lane): the grid and the arena's group table are per workgroup. */
function optimLanes(): number {
  const [a] = optimModule().workgroupSize('adamw_step');
  const [s] = optimModule().workgroupSize('sgd_step');
  if (a !== s) throw new ArgumentError(`optim.wgsl: adamw_step has ${a} lanes and sgd_step ${s}; the arena's group table needs one workgroup size`);
  return a;
}

/** Copy `src`'s data to byte `dstByte` of `dst` (checked by ctx.copy, encoded in order with the kernels). */
function copyInto(ctx: GpuContext, src: Tensor, dst: Tensor, dstByte: number, op: string): void {
  ctx.copy(src, dst, { dstOffset: dstByte, op });
}

/**
 * The storage tensors all groups are windows (or views) of, if they are: one tensor (a
 * ParamArena of one chunk, or any tensor), or chunks of one ParamArena (in chunk order, those
 * holding a group). Groups that overlap in a storage are refused (they would be updated twice).
 */
function arenaStorages(name: string, groups: readonly ParamGroup[]): Tensor[] | null {
  const parents = groups.map((g) => g.params.parent);
  const first = parents[0];
  if (!first || parents.some((p) => !p)) return null;
  let storages = [first];
  if (!parents.every((p) => p === first)) {
    const arena = arenaOfChunk(first);
    if (!arena || !parents.every((p) => arenaOfChunk(p!) === arena)) return null;
    storages = arena.chunks.filter((c) => parents.includes(c));
  }
  for (const storage of storages) {
    const ranges = groups
      .map((g, i) => ({ i, parent: g.params.parent, start: g.params.byteOffset, end: g.params.byteOffset + g.params.byteLength }))
      .filter((r) => r.parent === storage)
      .sort((a, b) => a.start - b.start);
    for (let k = 1; k < ranges.length; k++) {
      if (ranges[k]!.start < ranges[k - 1]!.end) {
        throw new ArgumentError(`${name}: groups[${ranges[k - 1]!.i}] and groups[${ranges[k]!.i}] share storage (overlapping windows of '${storage.label}'); give each parameter once`);
      }
    }
  }
  return storages;
}

/** One update dispatch: a storage tensor (an arena chunk) and the groups that are windows of it. */
interface ArenaPart {
  storage: Tensor;
  /** Indices of the groups in this storage. */
  groups: number[];
  /** One flat tensor per state slot over the storage; each group's state is a window. */
  state: Tensor[];
  /** The step's gradients, copied to their groups' places, so one binding serves every group. */
  grads: Tensor;
  /** Ranges, lr and weight decay of the groups, then each workgroup's first group (optim.wgsl). */
  table: GPUBuffer;
}

abstract class Optimizer {
  /** Completed steps. */
  t = 0;
  protected readonly state: Tensor[][];
  private readonly norm: Tensor | null;
  /**
   * Set when every group is a window of one storage, or of the chunks of one ParamArena: one
   * update dispatch per storage (chunk) and step instead of one per group.
   */
  private readonly parts: ArenaPart[] | null;
  /** Bound where the kernel declares a binding this configuration never touches (two: one read, one written). */
  private readonly unused: [Tensor, Tensor];

  constructor(
    protected readonly ctx: GpuContext,
    protected readonly groups: ParamGroup[],
    protected readonly opts: CommonOptions,
    protected readonly name: string,
    stateSlots: number,
  ) {
    if (!groups.length) throw new ArgumentError(`${name}: no parameter groups`);
    finite(name, 'lr', opts.lr, 0);
    if (opts.maxGradNorm !== undefined) finite(name, 'maxGradNorm', opts.maxGradNorm, 0);
    groups.forEach((g, i) => {
      g.params.buffer(`${name}: groups[${i}].params`);
      if (g.params.dtype !== 'f32') throw new DTypeError(`${name}: groups[${i}].params must be f32, got ${g.params.dtype}`);
      // Every group's own options, whether or not it carries its gradients: in an arena they go
      // to the group table unchecked (NaN spreads to every weight, a negative lr marks the group
      // as absent), and a negative lr would ascend elsewhere.
      if (g.lr !== undefined) finite(name, `groups[${i}].lr`, g.lr, 0);
      if (g.weightDecay !== undefined) finite(name, `groups[${i}].weightDecay`, g.weightDecay, 0);
      if (!g.grads) return;
      g.grads.buffer(`${name}: groups[${i}].grads`);
      if (g.grads.dtype !== 'f32') throw new DTypeError(`${name}: groups[${i}].grads must be f32, got ${g.grads.dtype}`);
      if (g.params.size !== g.grads.size) {
        throw new ShapeError(`${name}: groups[${i}] params [${g.params.shape.join(',')}] and grads [${g.grads.shape.join(',')}] differ in size`);
      }
    });
    const storages = arenaStorages(name, groups);
    if (storages) {
      this.parts = storages.map((storage) => this.arenaPart(storage, stateSlots));
      this.state = groups.map((g) => {
        const part = this.parts!.find((p) => p.storage === g.params.parent)!;
        return part.state.map((f) => f.window(g.params.byteOffset - part.storage.byteOffset, [g.params.size]));
      });
    } else {
      this.parts = null;
      this.state = groups.map((g) =>
        Array.from({ length: stateSlots }, (_, k) => ctx.keep(full(ctx, [g.params.size], 0, 'f32', `${name}.state${k}`))),
      );
    }
    this.norm = opts.maxGradNorm !== undefined ? ctx.keep(ctx.empty([1], 'f32', `${name}.gradNormSq`)) : null;
    this.unused = [ctx.keep(ctx.empty([4], 'f32', `${name}.unused`)), ctx.keep(ctx.empty([4], 'f32', `${name}.unused`))];
  }

  /** State, gradient staging and group table for the groups that are windows of `storage`. */
  private arenaPart(storage: Tensor, stateSlots: number): ArenaPart {
    const { ctx, name, opts } = this;
    const groups = this.groups.flatMap((g, i) => (g.params.parent === storage ? [i] : []));
    const state = Array.from({ length: stateSlots }, (_, k) => ctx.keep(full(ctx, [storage.size], 0, 'f32', `${name}.state${k}`)));
    const grads = ctx.keep(full(ctx, [storage.size], 0, 'f32', `${name}.grads`));
    // Groups in order of their start, then each workgroup's first group (the
    // first that ends past the workgroup's start), so a lane's lookup is a short scan.
    const order = groups
      .map((i) => ({ g: this.groups[i]!, start: (this.groups[i]!.params.byteOffset - storage.byteOffset) / 4 }))
      .sort((a, b) => a.start - b.start);
    const lanes = optimLanes();
    const wgs = Math.ceil(storage.size / lanes);
    const table = new Uint32Array(4 * order.length + wgs);
    const bits = new Float32Array(table.buffer);
    order.forEach(({ g, start }, k) => {
      table.set([start, start + g.params.size], 4 * k);
      bits[4 * k + 2] = g.lr ?? opts.lr;
      bits[4 * k + 3] = g.weightDecay ?? this.defaultWeightDecay(opts);
    });
    let k = 0;
    for (let w = 0; w < wgs; w++) {
      while (k < order.length && order[k]!.start + order[k]!.g.params.size <= lanes * w) k++;
      table[4 * order.length + w] = k;
    }
    return { storage, groups, state, grads, table: uploadU32(ctx, table, `${name} groups`) };
  }

  /**
   * Σ g² over every group's gradients of the last step (before clipping), on the GPU: [1] f32,
   * a view (read it to log the norm, as torch's clip_grad_norm_ returns it); null without
   * `maxGradNorm`.
   */
  get gradNormSq(): Tensor | null {
    return this.norm ? this.norm.view([1]) : null;
  }

  /** Σ g² over every group into `norm` (clipping), encoded before the updates. */
  protected encodeNorm(grads: readonly Tensor[]): void {
    if (this.norm) sumSquaresMany(this.ctx, grads, this.norm);
  }

  /** Gradients for this step, replacing the groups' `grads` (e.g. fresh ones from backward). */
  protected stepGrads: (Tensor | undefined)[] = [];

  protected useGrads(grads: (Tensor | null | undefined)[] | undefined): void {
    this.stepGrads = [];
    if (!grads) return;
    if (grads.length !== this.groups.length) throw new ShapeError(`${this.name}: step got ${grads.length} gradients for ${this.groups.length} groups`);
    grads.forEach((g, i) => {
      if (!g) return;
      g.buffer(`${this.name}: grads[${i}]`);
      if (g.dtype !== 'f32') throw new DTypeError(`${this.name}: grads[${i}] must be f32, got ${g.dtype}`);
      if (g.size !== this.groups[i]!.params.size) throw new ShapeError(`${this.name}: grads[${i}] has ${g.size} elements, params have ${this.groups[i]!.params.size}`);
      this.stepGrads[i] = g;
    });
  }

  protected grads(i: number): Tensor {
    const g = this.stepGrads[i] ?? this.groups[i]!.grads;
    if (!g) throw new ArgumentError(`${this.name}: group ${i} has no gradient: give groups[${i}].grads or pass grads to step()`);
    g.buffer(`${this.name}: groups[${i}].grads`);
    return g;
  }

  /** Weight decay when neither the group nor the options give one (AdamW 0.01, SGD 0, as torch). */
  protected abstract defaultWeightDecay(opts: CommonOptions): number;

  /**
   * Encode the update of every group: one dispatch per arena storage (each group's lr and
   * weight decay from the storage's group table, `lrScale` from the schedule), else one per
   * group. `common` are the entry's params shared by all groups.
   */
  protected update(entry: 'adamw_step' | 'sgd_step', lrScale: number, common: Record<string, number>, constants: Record<string, boolean>): void {
    // Every gradient is found (or the step refused) before anything is encoded.
    const grads = this.groups.map((_, i) => this.grads(i));
    const base = { maxNorm: this.opts.maxGradNorm ?? 0, ...common };
    // One dispatch of `entry` over p/g and their state [m, v, vmax].
    const dispatch = (p: Tensor, g: Tensor, [m, v, vmax]: Tensor[], groups: GPUBuffer, ngroups: number, lr: number, weightDecay: number) =>
      this.ctx.dispatch(optimModule(), entry, {
        bindings: {
          g,
          gnorm: this.norm ?? this.unused[0],
          p,
          m: m!,
          ...(entry === 'adamw_step' ? { v: v!, vmax: vmax ?? this.unused[1] } : {}),
          groups,
        },
        params: { ...base, ngroups, n: p.size, lr, weightDecay },
        constants: { ...constants, CLIP: this.norm !== null, ARENA: this.parts !== null },
        workgroups: grid2d(this.ctx, Math.ceil(p.size / optimLanes()), this.name),
      });
    if (this.parts) {
      for (const part of this.parts) {
        for (const i of part.groups) copyInto(this.ctx, grads[i]!, part.grads, this.groups[i]!.params.byteOffset - part.storage.byteOffset, `${this.name}: grads[${i}]`);
      }
      // The norm covers every chunk before any is updated.
      this.encodeNorm(this.parts.map((part) => part.grads));
      // Each group's lr and weight decay come from the group table; params.lr is the schedule's scale.
      for (const part of this.parts) dispatch(part.storage, part.grads, part.state, part.table, part.groups.length, lrScale, 0);
      return;
    }
    this.encodeNorm(grads);
    this.groups.forEach((g, i) => {
      dispatch(g.params, grads[i]!, this.state[i]!, unusedU32(this.ctx), 0, (g.lr ?? this.opts.lr) * lrScale, g.weightDecay ?? this.defaultWeightDecay(this.opts));
    });
  }

  /** The state as CPU arrays, for checkpoints. */
  async stateDict(): Promise<{ t: number; state: Float32Array[][] }> {
    const state: Float32Array[][] = [];
    for (const slots of this.state) state.push(await Promise.all(slots.map((s) => s.read())));
    return { t: this.t, state };
  }

  /** Restore a `stateDict()`; shapes must match this optimizer's groups. */
  loadStateDict(d: { t: number; state: ArrayLike<number>[][] }): void {
    if (d.state.length !== this.state.length) throw new ShapeError(`${this.name}: state has ${d.state.length} groups, expected ${this.state.length}`);
    d.state.forEach((slots, i) => {
      if (slots.length !== this.state[i]!.length) throw new ShapeError(`${this.name}: group ${i} has ${slots.length} state tensors, expected ${this.state[i]!.length}`);
      slots.forEach((s, k) => this.state[i]![k]!.write(s));
    });
    this.t = d.t;
  }

  dispose(): void {
    for (const slots of this.state) for (const s of slots) s.dispose();
    for (const part of this.parts ?? []) {
      for (const s of part.state) s.dispose();
      part.grads.dispose();
      this.ctx.destroyAfterSubmit(part.table);
    }
    this.norm?.dispose();
    for (const u of this.unused) u.dispose();
  }
}

/** torch.optim.AdamW: decoupled weight decay, bias correction, optional amsgrad. */
export class AdamW extends Optimizer {
  constructor(ctx: GpuContext, groups: ParamGroup[], private readonly o: AdamWOptions) {
    super(ctx, groups, o, 'AdamW', o.amsgrad ? 3 : 2);
    const [b1, b2] = o.betas ?? [0.9, 0.999];
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new ArgumentError(`AdamW: betas = [${b1}, ${b2}], expected each in [0, 1)`);
    finite('AdamW', 'eps', o.eps ?? 1e-8, 0);
    finite('AdamW', 'weightDecay', o.weightDecay ?? 0.01, 0);
  }

  /**
   * Encode one update of every group; `lrScale` multiplies each group's lr (schedules);
   * `grads` (one per group) replaces the groups' gradient tensors for this step.
   */
  step(lrScale = 1, grads?: (Tensor | null | undefined)[]): void {
    finite('AdamW', 'lrScale', lrScale, 0);
    this.useGrads(grads);
    this.t++;
    const [b1, b2] = this.o.betas ?? [0.9, 0.999];
    this.update(
      'adamw_step',
      lrScale,
      { first: this.t === 1 ? 1 : 0, beta1: b1, beta2: b2, eps: this.o.eps ?? 1e-8, bc1: 1 - b1 ** this.t, bc2: 1 - b2 ** this.t, momentum: 0, dampening: 0 },
      { AMSGRAD: this.o.amsgrad ?? false, MOMENTUM: false, NESTEROV: false },
    );
  }

  protected defaultWeightDecay(o: CommonOptions): number {
    return o.weightDecay ?? 0.01;
  }
}

/** torch.optim.SGD: momentum with dampening, Nesterov, L2 weight decay. */
export class SGD extends Optimizer {
  constructor(ctx: GpuContext, groups: ParamGroup[], private readonly o: SGDOptions) {
    super(ctx, groups, o, 'SGD', 1);
    finite('SGD', 'momentum', o.momentum ?? 0, 0);
    finite('SGD', 'dampening', o.dampening ?? 0, 0);
    if (o.nesterov && (!o.momentum || o.dampening)) throw new ArgumentError('SGD: nesterov needs momentum > 0 and dampening = 0 (as torch)');
  }

  step(lrScale = 1, grads?: (Tensor | null | undefined)[]): void {
    finite('SGD', 'lrScale', lrScale, 0);
    this.useGrads(grads);
    this.t++;
    const momentum = this.o.momentum ?? 0;
    this.update(
      'sgd_step',
      lrScale,
      { first: this.t === 1 ? 1 : 0, beta1: 0, beta2: 0, eps: 0, bc1: 1, bc2: 1, momentum, dampening: this.o.dampening ?? 0 },
      { AMSGRAD: false, MOMENTUM: momentum > 0, NESTEROV: this.o.nesterov ?? false },
    );
  }

  protected defaultWeightDecay(o: CommonOptions): number {
    return o.weightDecay ?? 0;
  }
}

/** Learning-rate multipliers by step (1-based), for `step(lrScale)`. */
export const schedules = {
  constant: () => () => 1,
  /** Linear warmup from 0 over `warmup` steps, then constant. */
  linearWarmup: (warmup: number) => (t: number) => Math.min(1, t / Math.max(1, warmup)),
  /** Linear warmup, then cosine decay to `minScale` at `total`. */
  cosine: (total: number, warmup = 0, minScale = 0) => (t: number) =>
    t <= warmup ? t / Math.max(1, warmup) : minScale + (1 - minScale) * 0.5 * (1 + Math.cos((Math.PI * Math.min(t - warmup, total - warmup)) / Math.max(1, total - warmup))),
  /** Linear warmup, then linear decay to 0 at `total`. */
  linearDecay: (total: number, warmup = 0) => (t: number) =>
    t <= warmup ? t / Math.max(1, warmup) : Math.max(0, (total - t) / Math.max(1, total - warmup)),
};
