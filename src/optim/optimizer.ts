/**
 * Fused optimizers (src/wgsl/optim.wgsl): state allocated once, global-norm clipping computed
 * on the GPU, and `step()` only encodes (the training step's single submit carries it).
 * Parameters that are windows of one ParamArena (src/optim/arena.ts) are updated by one
 * dispatch for all groups, each group with its own lr and weight decay; other parameters get
 * a dispatch each.
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
import { add, full } from '../kernels/elementwise.js';
import { sumSquares } from '../kernels/reduce.js';
import { checkFinite as finite, grid2d, unusedU32, uploadU32 } from '../kernels/util.js';
import { wgsl } from '../wgsl/sources.js';

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

/**
 * The storage all groups are windows (or views) of, if they are: a ParamArena's, or any
 * tensor's. Groups that overlap in it are refused (they would be updated twice).
 */
function arenaOf(name: string, groups: readonly ParamGroup[]): { storage: Tensor } | null {
  const storage = groups[0]!.params.parent;
  if (!storage || !groups.every((g) => g.params.parent === storage)) return null;
  const ranges = groups.map((g, i) => ({ i, start: g.params.byteOffset, end: g.params.byteOffset + g.params.byteLength })).sort((a, b) => a.start - b.start);
  for (let k = 1; k < ranges.length; k++) {
    if (ranges[k]!.start < ranges[k - 1]!.end) {
      throw new ArgumentError(`${name}: groups[${ranges[k - 1]!.i}] and groups[${ranges[k]!.i}] share storage (overlapping windows of '${storage.label}'); give each parameter once`);
    }
  }
  return { storage };
}

abstract class Optimizer {
  /** Completed steps. */
  t = 0;
  protected readonly state: Tensor[][];
  private readonly norm: Tensor | null;
  /** Set when every group is a window of one ParamArena's storage: one dispatch per step. */
  private readonly arena: { storage: Tensor } | null;
  private readonly flatState: Tensor[] = [];
  private readonly gradArena: Tensor | null = null;
  private readonly groupTable: GPUBuffer | null = null;
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
      if (!g.grads) return;
      g.grads.buffer(`${name}: groups[${i}].grads`);
      if (g.grads.dtype !== 'f32') throw new DTypeError(`${name}: groups[${i}].grads must be f32, got ${g.grads.dtype}`);
      if (g.params.size !== g.grads.size) {
        throw new ShapeError(`${name}: groups[${i}] params [${g.params.shape.join(',')}] and grads [${g.grads.shape.join(',')}] differ in size`);
      }
      if (g.lr !== undefined) finite(name, `groups[${i}].lr`, g.lr, 0);
      if (g.weightDecay !== undefined) finite(name, `groups[${i}].weightDecay`, g.weightDecay, 0);
    });
    this.arena = arenaOf(name, groups);
    if (this.arena) {
      // One flat tensor per state slot over the whole arena; each group's state is a window.
      const { storage } = this.arena;
      this.flatState = Array.from({ length: stateSlots }, (_, k) => ctx.keep(full(ctx, [storage.size], 0, 'f32', `${name}.state${k}`)));
      this.state = groups.map((g) => this.flatState.map((f) => f.window(g.params.byteOffset - storage.byteOffset, [g.params.size])));
      this.gradArena = ctx.keep(full(ctx, [storage.size], 0, 'f32', `${name}.grads`));
      // Groups in order of their start, then each workgroup's first group (the
      // first that ends past the workgroup's start), so a lane's lookup is a short scan.
      const order = groups.map((g, i) => ({ g, start: (g.params.byteOffset - storage.byteOffset) / 4 })).sort((a, b) => a.start - b.start);
      const lanes = optimLanes();
      const wgs = Math.ceil(storage.size / lanes);
      const table = new Uint32Array(4 * groups.length + wgs);
      const bits = new Float32Array(table.buffer);
      order.forEach(({ g, start }, k) => {
        table.set([start, start + g.params.size], 4 * k);
        bits[4 * k + 2] = g.lr ?? opts.lr;
        bits[4 * k + 3] = g.weightDecay ?? this.defaultWeightDecay(opts);
      });
      let k = 0;
      for (let w = 0; w < wgs; w++) {
        while (k < order.length && order[k]!.start + order[k]!.g.params.size <= lanes * w) k++;
        table[4 * groups.length + w] = k;
      }
      this.groupTable = uploadU32(ctx, table, `${name} groups`);
    } else {
      this.state = groups.map((g) =>
        Array.from({ length: stateSlots }, (_, k) => ctx.keep(full(ctx, [g.params.size], 0, 'f32', `${name}.state${k}`))),
      );
    }
    this.norm = opts.maxGradNorm !== undefined ? ctx.keep(ctx.empty([1], 'f32', `${name}.gradNormSq`)) : null;
    this.unused = [ctx.keep(ctx.empty([4], 'f32', `${name}.unused`)), ctx.keep(ctx.empty([4], 'f32', `${name}.unused`))];
  }

  /** Σ g² over every group into `norm` (clipping), encoded before the updates. */
  protected encodeNorm(): void {
    const norm = this.norm;
    if (!norm) return;
    if (this.gradArena) {
      sumSquares(this.ctx, this.gradArena, 'all', norm);
      return;
    }
    const n = this.groups.length;
    if (n === 1) {
      sumSquares(this.ctx, this.grads(0), 'all', norm);
      return;
    }
    this.ctx.scope(() => {
      let acc = sumSquares(this.ctx, this.grads(0), 'all');
      for (let i = 1; i < n; i++) acc = add(this.ctx, acc, sumSquares(this.ctx, this.grads(i), 'all'), i === n - 1 ? norm : undefined);
    });
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
    return g;
  }

  /** Weight decay when neither the group nor the options give one (AdamW 0.01, SGD 0, as torch). */
  protected abstract defaultWeightDecay(opts: CommonOptions): number;

  /**
   * Encode the update of every group: one dispatch over the arena (each group's lr and weight
   * decay from the group table, `lrScale` from the schedule), else one per group. `common` are
   * the entry's params shared by all groups.
   */
  protected update(entry: 'adamw_step' | 'sgd_step', lrScale: number, common: Record<string, number>, constants: Record<string, boolean>): void {
    const base = { maxNorm: this.opts.maxGradNorm ?? 0, ngroups: this.groups.length, ...common };
    // One dispatch of `entry` over p/g and their state [m, v, vmax].
    const dispatch = (p: Tensor, g: Tensor, [m, v, vmax]: Tensor[], groups: GPUBuffer, lr: number, weightDecay: number) =>
      this.ctx.dispatch(optimModule(), entry, {
        bindings: {
          g,
          gnorm: this.norm ?? this.unused[0],
          p,
          m: m!,
          ...(entry === 'adamw_step' ? { v: v!, vmax: vmax ?? this.unused[1] } : {}),
          groups,
        },
        params: { ...base, n: p.size, lr, weightDecay },
        constants: { ...constants, CLIP: this.norm !== null, ARENA: this.arena !== null },
        workgroups: grid2d(this.ctx, Math.ceil(p.size / optimLanes()), this.name),
      });
    if (this.arena) {
      const { storage } = this.arena;
      const grads = this.gradArena!;
      this.groups.forEach((g, i) => {
        this.ctx.copy(this.grads(i), grads, { dstOffset: g.params.byteOffset - storage.byteOffset, op: `${this.name}: grads[${i}]` });
      });
      this.encodeNorm();
      // Each group's lr and weight decay come from the group table; params.lr is the schedule's scale.
      dispatch(storage, grads, this.flatState, this.groupTable!, lrScale, 0);
      return;
    }
    this.encodeNorm();
    this.groups.forEach((g, i) => {
      dispatch(g.params, this.grads(i), this.state[i]!, unusedU32(this.ctx), (g.lr ?? this.opts.lr) * lrScale, g.weightDecay ?? this.defaultWeightDecay(this.opts));
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
    for (const s of this.flatState) s.dispose();
    this.gradArena?.dispose();
    if (this.groupTable) this.ctx.destroyAfterSubmit(this.groupTable);
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
