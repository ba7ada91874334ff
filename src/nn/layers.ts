/**
 * Layers with torch's parameter names and layouts, on the autograd ops (src/autograd/ops.ts):
 * Linear (weight [out, in]), Conv1D (GPT-2's [in, out]), Embedding, LayerNorm, RMSNorm,
 * Dropout, GELU / ReLU, Sequential and ModuleList. Initialisation follows torch's defaults
 * (models such as GPT-2 set their own).
 *
 * ```ts
 * const fc = new Linear(ctx, 768, 3072);   // fc.weight [3072, 768], fc.bias [3072]
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import type { TokenIds } from '../kernels/embedding.js';
import { fmtShape } from '../kernels/util.js';
import { type Init, Module, type ParamSlot } from './module.js';

/** Something that maps [..., in] to [..., out]. */
export abstract class Layer extends Module {
  abstract forward(x: Tensor): Tensor;
}

/**
 * A layer y = x·Wᵀ + b (Linear, W [out, in]) or y = x·W + b (Conv1D, W [in, out]): the modules
 * that LoRA wraps. `weightLayout` says which.
 */
export abstract class LinearLike extends Layer {
  abstract readonly inFeatures: number;
  abstract readonly outFeatures: number;
  /** 'NK': weight [out, in] (torch Linear); 'KN': weight [in, out] (GPT-2 Conv1D, PEFT's fan_in_fan_out). */
  abstract readonly weightLayout: 'NK' | 'KN';
  abstract get weight(): Tensor;
  abstract get bias(): Tensor | undefined;
  /** The bias slot, for re-declaration by wrappers that keep it. */
  abstract readonly biasSlot: ParamSlot | null;
  abstract readonly weightSlot: ParamSlot;
}

/** torch.nn.Linear: weight [out, in], bias [out]; U(±1/√in) init for both, as torch. */
export class Linear extends LinearLike {
  readonly weightLayout = 'NK' as const;
  readonly weightSlot: ParamSlot;
  readonly biasSlot: ParamSlot | null;

  constructor(
    ctx: GpuContext,
    readonly inFeatures: number,
    readonly outFeatures: number,
    o: { bias?: boolean; init?: Init; biasInit?: Init; tiedWeight?: ParamSlot } = {},
  ) {
    super(ctx);
    const bound = 1 / Math.sqrt(inFeatures);
    if (o.tiedWeight && (o.tiedWeight.shape[0] !== outFeatures || o.tiedWeight.shape[1] !== inFeatures)) {
      throw new ShapeError(`Linear: tied weight ${fmtShape(o.tiedWeight.shape)}, expected [${outFeatures},${inFeatures}]`);
    }
    // A tied weight is another module's parameter under a second name (lm_head.weight = wte.weight).
    this.weightSlot = o.tiedWeight ? this.tie('weight', o.tiedWeight) : this.declare('weight', [outFeatures, inFeatures], o.init ?? { kind: 'uniform', bound });
    this.biasSlot = o.bias ?? true ? this.declare('bias', [outFeatures], o.biasInit ?? { kind: 'uniform', bound }) : null;
  }

  get weight(): Tensor {
    return this.tensorOf(this.weightSlot, 'weight');
  }

  get bias(): Tensor | undefined {
    return this.biasSlot ? this.tensorOf(this.biasSlot, 'bias') : undefined;
  }

  forward(x: Tensor): Tensor {
    return ops.linear(this.ctx, x, this.weight, this.bias);
  }
}

/**
 * Hugging Face's Conv1D (GPT-2): a linear layer with weight [in, out] (nx × nf), y = x·W + b;
 * N(0, 0.02) weight and zero bias, as HF initialises it.
 */
export class Conv1D extends LinearLike {
  readonly weightLayout = 'KN' as const;
  readonly weightSlot: ParamSlot;
  readonly biasSlot: ParamSlot;

  /** `nf` outputs from `nx` inputs, HF's argument order. */
  constructor(
    ctx: GpuContext,
    readonly outFeatures: number,
    readonly inFeatures: number,
    o: { init?: Init } = {},
  ) {
    super(ctx);
    this.weightSlot = this.declare('weight', [inFeatures, outFeatures], o.init ?? { kind: 'normal', std: 0.02 });
    this.biasSlot = this.declare('bias', [outFeatures], { kind: 'constant', value: 0 });
  }

  get weight(): Tensor {
    return this.tensorOf(this.weightSlot, 'weight');
  }

  get bias(): Tensor {
    return this.tensorOf(this.biasSlot, 'bias');
  }

  forward(x: Tensor): Tensor {
    return ops.conv1d(this.ctx, x, this.weight, this.bias);
  }
}

/** torch.nn.Embedding: weight [num, dim], N(0, 1) init as torch. */
export class Embedding extends Module {
  readonly weightSlot: ParamSlot;

  constructor(
    ctx: GpuContext,
    readonly numEmbeddings: number,
    readonly embeddingDim: number,
    o: { init?: Init } = {},
  ) {
    super(ctx);
    this.weightSlot = this.declare('weight', [numEmbeddings, embeddingDim], o.init ?? { kind: 'normal', std: 1 });
  }

  get weight(): Tensor {
    return this.tensorOf(this.weightSlot, 'weight');
  }

  /** weight[ids] -> [...ids.shape, dim]; with `disposeIds` the op disposes the ids when done with them. */
  forward(ids: TokenIds, o: { disposeIds?: boolean } = {}): Tensor {
    if (ids.vocab !== this.numEmbeddings) {
      throw new ShapeError(`Embedding: ids were made for a vocabulary of ${ids.vocab}, the table has ${this.numEmbeddings} rows`);
    }
    return ops.embedding(this.ctx, this.weight, ids, o);
  }
}

/** torch.nn.LayerNorm over the last axis: weight (γ) ones, bias (β) zeros. */
export class LayerNorm extends Layer {
  readonly weightSlot: ParamSlot;
  readonly biasSlot: ParamSlot | null;

  constructor(
    ctx: GpuContext,
    readonly dim: number,
    readonly eps = 1e-5,
    o: { bias?: boolean } = {},
  ) {
    super(ctx);
    this.weightSlot = this.declare('weight', [dim], { kind: 'constant', value: 1 });
    this.biasSlot = o.bias ?? true ? this.declare('bias', [dim], { kind: 'constant', value: 0 }) : null;
  }

  forward(x: Tensor): Tensor {
    checkLast('LayerNorm', x, this.dim);
    return ops.layerNorm(this.ctx, x, this.tensorOf(this.weightSlot, 'weight'), this.biasSlot ? this.tensorOf(this.biasSlot, 'bias') : undefined, this.eps);
  }
}

/** RMSNorm over the last axis (torch.nn.RMSNorm): weight ones. */
export class RMSNorm extends Layer {
  readonly weightSlot: ParamSlot;

  constructor(
    ctx: GpuContext,
    readonly dim: number,
    readonly eps = 1e-6,
  ) {
    super(ctx);
    this.weightSlot = this.declare('weight', [dim], { kind: 'constant', value: 1 });
  }

  forward(x: Tensor): Tensor {
    checkLast('RMSNorm', x, this.dim);
    return ops.rmsNorm(this.ctx, x, this.tensorOf(this.weightSlot, 'weight'), this.eps);
  }
}

function checkLast(op: string, x: Tensor, dim: number): void {
  if (x.shape[x.shape.length - 1] !== dim) throw new ShapeError(`${op}: x ${fmtShape(x.shape)}, expected the last dimension ${dim}`);
}

/**
 * Inverted dropout, active in training mode only. Each call draws a fresh mask: the stream is
 * (seed, call count), so a run is reproducible from its seed and no two steps share a mask.
 */
export class Dropout extends Layer {
  /** Seed of this module's stream; models give each Dropout its own. */
  seed = 0;
  private calls = 0;

  constructor(
    ctx: GpuContext,
    readonly p: number,
  ) {
    super(ctx);
    if (!(p >= 0 && p < 1)) throw new ArgumentError(`Dropout: p = ${p}, expected 0 <= p < 1`);
  }

  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x;
    const offset = this.calls++ % 2 ** 32;
    return ops.dropout(this.ctx, x, { p: this.p, seed: this.seed, offset });
  }
}

/** Activations as modules (HF names them `act`; they have no parameters). */
export class GELU extends Layer {
  forward(x: Tensor): Tensor {
    return ops.gelu(this.ctx, x);
  }
}

export class ReLU extends Layer {
  forward(x: Tensor): Tensor {
    return ops.relu(this.ctx, x);
  }
}

/** torch.nn.Sequential: children named '0', '1', …, applied in order. */
export class Sequential extends Layer {
  readonly layers: Layer[];

  constructor(ctx: GpuContext, layers: Layer[]) {
    super(ctx);
    this.layers = layers;
    layers.forEach((l, i) => this.add(String(i), l));
  }

  forward(x: Tensor): Tensor {
    let y = x;
    for (const [, l] of this.namedChildren()) y = (l as Layer).forward(y);
    return y;
  }
}

/** torch.nn.ModuleList: children named '0', '1', … (GPT-2's `h`). */
export class ModuleList<M extends Module> extends Module {
  constructor(ctx: GpuContext, items: M[]) {
    super(ctx);
    items.forEach((m, i) => this.add(String(i), m));
  }

  /** The items in order (after any replacement by adapters). */
  get items(): M[] {
    return this.namedChildren().map(([, m]) => m as M);
  }

  get length(): number {
    return this.namedChildren().length;
  }
}

/** torch.nn.ModuleDict: children by name (PEFT keeps one LoRA factor per adapter name in one). */
export class ModuleDict<M extends Module> extends Module {
  set(name: string, m: M): M {
    if (this.child(name)) this.replaceChild(name, m);
    else this.add(name, m);
    return m;
  }

  get(name: string): M | undefined {
    return this.child(name) as M | undefined;
  }

  delete(name: string): void {
    this.removeChild(name);
  }

  keys(): string[] {
    return this.namedChildren().map(([n]) => n);
  }
}
