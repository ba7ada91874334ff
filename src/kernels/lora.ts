/**
 * LoRA on the matmul family: a frozen W [N,K] (+ bias [N]) with a trainable low-rank
 * update, y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ, A [r,K], B [N,r], s = α/r (or α/√r for rsLoRA).
 *
 * - forward: u = dropout(x)·Aᵀ (a skinny product), then one pass over y that adds the
 *   low-rank term in the matmul epilogue — B·A is never materialised.
 * - backward from dy: dB = s·dyᵀ·u and du = s·dy·B (skinny kernels), dA = duᵀ·dropout(x)
 *   (the mask is regenerated from the seed, not stored) and, only when asked, dx = dy·W + du·A
 *   in one pass (the same epilogue with V = A). dW is never computed: W is frozen.
 * - merge / unmerge: W ← W ± s·B·A in one dispatch over W (lora_merge; no B·A buffer).
 *
 * ```ts
 * const layer = new LoraLayer(ctx, { W, bias, rank: 8, alpha: 16 });
 * initLora(ctx, layer, { seed: 0 });                    // PEFT default: A Kaiming-uniform, B = 0
 * const { y, saved } = loraForward(ctx, layer, x);
 * const { dA, dB } = loraBackward(ctx, layer, saved, dy);
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DisposedError, DTypeError, ShapeError } from '../gpu/errors.js';
import { KernelModule, type DType } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { add, fill, transpose } from './elementwise.js';
import { matmul } from './matmul.js';
import { dropout, normal, uniform } from './random.js';
import { fmtShape, grid2d } from './util.js';

/** s = α/r, or α/√r with rsLoRA. */
export function loraScale(alpha: number, rank: number, rsLora = false): number {
  if (!Number.isFinite(alpha)) throw new ArgumentError(`lora: alpha = ${alpha}, expected a finite number`);
  if (!Number.isInteger(rank) || rank < 1) throw new ArgumentError(`lora: rank = ${rank}, expected an integer >= 1`);
  return rsLora ? alpha / Math.sqrt(rank) : alpha / rank;
}

/**
 * How the frozen W is stored: 'NK' = [out, in] (torch, PEFT), 'KN' = [in, out]. With 'KN'
 * the forward x·W is a plain (non-transposed) product. On CPU adapters an [N,K] W costs a
 * transpose per forward (see `transposedBPlan`): of x for a batch of up to N/4 tokens (the
 * product then runs as (W·xᵀ)ᵀ), of W itself for more. The LoRA step on lavapipe (64 tokens,
 * 1024², r = 8, one full bench run): 106 steps/s with W [N,K], 110 with W [K,N]. dx then needs
 * the transposed product. Convert once with `transpose(ctx, W)`, or let the layer do it
 * (`wLayout: 'auto'`).
 */
export type WeightLayout = 'NK' | 'KN';

export interface LoraLayerOptions {
  /** Frozen base weight: [N,K] (out × in) by default, [K,N] with wLayout 'KN'. */
  W: Tensor;
  /**
   * How `W` is given: 'NK' (default) or 'KN'. 'auto' takes W as [N,K] (torch, PEFT) and stores
   * it the way this adapter runs fastest: on CPU adapters the layer transposes it once into a
   * [K,N] copy of its own (`layer.W`, `layer.wLayout === 'KN'`; dispose the original if it is no
   * longer needed), since reading [N,K] costs a transpose (of x or of W) per forward there; elsewhere
   * it keeps W as given.
   */
  wLayout?: WeightLayout | 'auto';
  bias?: Tensor;
  /** Trainable factors; allocated (uninitialised) when not given. */
  A?: Tensor;
  B?: Tensor;
  rank: number;
  alpha: number;
  rsLora?: boolean;
  /** PEFT's lora_dropout on the low-rank input path, 0 <= p < 1. */
  dropout?: number;
  /**
   * The seed of the layer's dropout stream (default: the layer's index among those made on
   * this context, so layers draw different masks and a run reproduces). Each forward that
   * applies dropout without an explicit `seed` / `offset` takes the stream's next offset.
   */
  dropoutSeed?: number;
}

const layersMade = new WeakMap<GpuContext, number>();

function loraModule(dtype: DType): KernelModule {
  return KernelModule.get('lora.wgsl', wgsl.lora, dtype);
}

export class LoraLayer {
  readonly W: Tensor;
  readonly bias?: Tensor;
  readonly A: Tensor;
  readonly B: Tensor;
  readonly rank: number;
  readonly scale: number;
  readonly dropout: number;
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly wLayout: WeightLayout;
  /** True while s·B·A is folded into W. */
  merged = false;
  /** The dropout stream's seed (see {@link LoraLayerOptions.dropoutSeed}). */
  readonly dropoutSeed: number;
  /** The offset the next forward without an explicit seed or offset draws its dropout mask at. */
  dropoutOffset = 0;
  /** Tensors this layer made (A, B when not given; W's [K,N] copy with 'auto'), freed by dispose(). */
  private readonly owned: Tensor[] = [];
  private disposed_ = false;

  constructor(ctx: GpuContext, o: LoraLayerOptions) {
    o.W.buffer('LoraLayer: W');
    const given = o.wLayout ?? 'NK';
    if (given !== 'NK' && given !== 'KN' && given !== 'auto') throw new ArgumentError(`LoraLayer: wLayout '${String(given)}', expected 'NK', 'KN' or 'auto'`);
    const layout: WeightLayout = given === 'auto' ? (ctx.caps.software ? 'KN' : 'NK') : given;
    // How W is given ('auto' takes [N,K]), which the checks below describe.
    const givenNK = given !== 'KN';
    if (o.W.shape.length !== 2) throw new ShapeError(`LoraLayer: W has shape ${fmtShape(o.W.shape)}, expected ${givenNK ? '[N,K]' : '[K,N]'}`);
    const [N, K] = (givenNK ? o.W.shape : [o.W.shape[1], o.W.shape[0]]) as [number, number];
    this.wLayout = layout;
    this.scale = loraScale(o.alpha, o.rank, o.rsLora);
    const r = o.rank;
    const p = o.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new ArgumentError(`LoraLayer: dropout = ${p}, expected 0 <= p < 1`);
    const dt = o.W.dtype;
    for (const [name, t, want] of [['A', o.A, [r, K]], ['B', o.B, [N, r]], ['bias', o.bias, [N]]] as const) {
      if (!t) continue;
      t.buffer(`LoraLayer: ${name}`);
      if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
        throw new ShapeError(`LoraLayer: ${name} has shape ${fmtShape(t.shape)}, expected ${fmtShape(want)} (W is ${givenNK ? `[${N},${K}]` : `[${K},${N}] in-out`}, rank ${r})`);
      }
      if (t.dtype !== dt) throw new DTypeError(`LoraLayer: ${name} is ${t.dtype}, expected ${dt} like W`);
    }
    // What the layer makes it owns (kept out of any enclosing scope, freed by dispose()).
    const own = (t: Tensor) => (this.owned.push(ctx.keep(t)), t);
    // 'auto' on a CPU adapter: a [K,N] copy of W.
    this.W = given === 'auto' && layout === 'KN' ? own(transpose(ctx, o.W)) : o.W;
    this.bias = o.bias;
    this.A = o.A ?? own(ctx.empty([r, K], dt, 'lora.A'));
    this.B = o.B ?? own(ctx.empty([N, r], dt, 'lora.B'));
    this.rank = r;
    this.dropout = p;
    this.inFeatures = K;
    this.outFeatures = N;
    const made = layersMade.get(ctx) ?? 0;
    layersMade.set(ctx, made + 1);
    this.dropoutSeed = o.dropoutSeed ?? made;
    if (!Number.isSafeInteger(this.dropoutSeed) || this.dropoutSeed < 0) throw new ArgumentError(`LoraLayer: dropoutSeed = ${this.dropoutSeed}, expected a non-negative integer below 2^53`);
  }

  get disposed(): boolean {
    return this.disposed_;
  }

  /** Throw a DisposedError naming `op` if the layer was disposed. */
  assertLive(op: string): void {
    if (this.disposed_) throw new DisposedError(`${op}: LoraLayer [N=${this.outFeatures},K=${this.inFeatures},r=${this.rank}] was disposed`);
  }

  /**
   * Free what the layer made: A and B when it allocated them, and W's [K,N] copy with
   * `wLayout: 'auto'` on CPU adapters. Tensors it was given stay the caller's. Idempotent.
   */
  dispose(): void {
    if (this.disposed_) return;
    this.disposed_ = true;
    for (const t of this.owned) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

export interface LoraInitOptions {
  seed: number;
  /** 'kaiming' (PEFT default: A ~ U(±1/√K), as kaiming_uniform_ with a = √5; B = 0) or 'gaussian' (A ~ N(0, 1/r), B = 0). */
  init?: 'kaiming' | 'gaussian';
}

/** Initialise A and B on the GPU, seeded. With B = 0 the layer starts as the base model. */
export function initLora(ctx: GpuContext, layer: LoraLayer, o: LoraInitOptions): void {
  layer.assertLive('initLora');
  if ((o.init ?? 'kaiming') === 'kaiming') {
    const bound = 1 / Math.sqrt(layer.inFeatures);
    uniform(ctx, layer.A, { seed: o.seed, lo: -bound, hi: bound });
  } else if (o.init === 'gaussian') {
    normal(ctx, layer.A, { seed: o.seed, std: 1 / layer.rank });
  } else {
    throw new ArgumentError(`initLora: init '${String(o.init)}', expected 'kaiming' or 'gaussian'`);
  }
  fill(ctx, layer.B, 0);
}

/** Largest rank lora.wgsl's skinny kernel takes; larger ranks use the matmul family. */
export const LORA_DOWN_MAX_RANK = 16;

/**
 * u = x·Aᵀ for x [..., K] and A [r,K], shaped [..., r]: lora.wgsl's skinny kernel (lanes split
 * K) for r ≤ 16, else the matmul family.
 */
export function loraDown(ctx: GpuContext, x: Tensor, A: Tensor, scale = 1, o: { aTransposed?: boolean } = {}): Tensor {
  const aT = o.aTransposed ?? false;
  const [r, K] = (aT ? [A.shape[1], A.shape[0]] : A.shape) as [number, number];
  if (r > LORA_DOWN_MAX_RANK) return matmul(ctx, x, A, { transB: !aT, alpha: scale });
  const M = x.size / K;
  const u = ctx.empty([...x.shape.slice(0, -1), r], x.dtype, 'lora.u');
  const rows = Math.max(1, Math.min(8, Math.floor(64 / r))); // ROWS·RANK <= 64 partial sums per lane (lora.wgsl)
  ctx.dispatch(loraModule(x.dtype), 'lora_down', {
    bindings: { x, a: A, u },
    params: { M, K, scale },
    constants: { ROWS: rows, RANK: r, A_T: aT },
    workgroups: grid2d(ctx, Math.ceil(M / rows), 'loraDown'),
  });
  return u;
}

/**
 * dB = scale · dyᵀ·u for dy [M,N] and u [M,r], shaped [N,r]: lora.wgsl's lora_b_grad (a lane
 * per row of dB; lora_b_grad4, 4 rows per lane, where N % 4 == 0) for r ≤ 16, else the matmul
 * family.
 */
export function loraBGrad(ctx: GpuContext, dy: Tensor, u: Tensor, scale = 1): Tensor {
  const [M, N] = dy.shape as [number, number];
  const r = u.shape[1]!;
  if (r > LORA_DOWN_MAX_RANK) return matmul(ctx, dy, u, { transA: true, alpha: scale });
  const db = ctx.empty([N, r], dy.dtype, 'lora.dB');
  const v4 = N % 4 === 0;
  const entry = v4 ? 'lora_b_grad4' : 'lora_b_grad';
  const m = loraModule(dy.dtype);
  // A lane per row of dB, or per 4 rows (lora_b_grad4).
  const rowsPerGroup = m.workgroupSize(entry)[0] * (v4 ? 4 : 1);
  ctx.dispatch(m, entry, {
    bindings: v4 ? { dy4: dy, uu: u, db } : { dy, uu: u, db },
    params: { M, N, scale },
    constants: { RANK: r },
    workgroups: grid2d(ctx, Math.ceil(N / rowsPerGroup), 'loraBGrad'),
  });
  return db;
}

/** What backward needs from forward. */
export interface LoraSaved {
  x: Tensor;
  /** u = dropout(x)·Aᵀ, [M,r] (or [batch,T,r]); the caller disposes it after backward. */
  u: Tensor;
  seed: number;
  offset: number;
  /** The dropout probability applied in forward (0: none). */
  dropout: number;
}

export interface LoraForwardOptions {
  /**
   * The dropout stream (kept in `saved`, so backward regenerates the same mask). Default: the
   * layer's own stream, advanced by one offset per forward that applies dropout, so every
   * step draws a new mask; an explicit `seed` (offset default 0) or `offset` (with the
   * layer's seed) reproduces a mask and does not advance the stream.
   */
  seed?: number;
  offset?: number;
  /** Apply dropout (default true when the layer has dropout > 0). */
  training?: boolean;
}

/** Rows of x viewed as [M,K]; checks the last dimension and the dtype. */
function checkX(layer: LoraLayer, x: Tensor, op: string): number {
  x.buffer(`${op}: x`);
  const K = layer.inFeatures;
  if (x.shape.length < 2 || x.shape.length > 3 || x.shape[x.shape.length - 1] !== K) {
    throw new ShapeError(`${op}: x has shape ${fmtShape(x.shape)}, expected [M,K] or [batch,T,K] with K = ${K} (W is ${layer.wLayout === 'NK' ? `[${layer.outFeatures},${K}]` : `[${K},${layer.outFeatures}] in-out`})`);
  }
  if (x.dtype !== layer.W.dtype) throw new DTypeError(`${op}: x is ${x.dtype}, expected ${layer.W.dtype} like W`);
  return x.size / K;
}

/**
 * y = x·Wᵀ + b + s·(dropout(x)·Aᵀ)·Bᵀ for x [M,K] or [batch,T,K]: two dispatches, the
 * skinny u and then one pass over y. A merged layer runs the plain matmul.
 */
export function loraForward(ctx: GpuContext, layer: LoraLayer, x: Tensor, o: LoraForwardOptions = {}): { y: Tensor; saved: LoraSaved | null } {
  layer.assertLive('loraForward');
  checkX(layer, x, 'loraForward');
  const transB = layer.wLayout === 'NK';
  if (layer.merged) return { y: matmul(ctx, x, layer.W, { transB, bias: layer.bias }), saved: null };
  const drop = (o.training ?? true) && layer.dropout > 0;
  const seed = o.seed ?? layer.dropoutSeed;
  let offset = o.offset ?? 0;
  if (drop && o.seed === undefined && o.offset === undefined) {
    offset = layer.dropoutOffset;
    layer.dropoutOffset = (offset + 1) % 2 ** 32;
  }
  const u = ctx.scope(() => {
    const xd = drop ? dropout(ctx, x, { p: layer.dropout, seed, offset }) : x;
    return loraDown(ctx, xd, layer.A);
  });
  const y = matmul(ctx, x, layer.W, { transB, bias: layer.bias, lowRank: { u, v: layer.B, scale: layer.scale } });
  return { y, saved: { x, u, seed, offset, dropout: drop ? layer.dropout : 0 } };
}

export interface LoraGrads {
  dA: Tensor;
  dB: Tensor;
  /** Only when `needDx`: the gradient for the layer's input. */
  dx?: Tensor;
}

/**
 * Gradients of a LoRA layer from dy (shaped like y). dW is never computed; dx only when
 * `needDx` (a first layer, or x from a frozen body, needs none).
 */
export function loraBackward(ctx: GpuContext, layer: LoraLayer, saved: LoraSaved, dy: Tensor, o: { needDx?: boolean } = {}): LoraGrads {
  layer.assertLive('loraBackward');
  if (layer.merged) throw new ArgumentError('loraBackward: the layer is merged; unmerge it before training');
  const M = checkX(layer, saved.x, 'loraBackward');
  dy.buffer('loraBackward: dy');
  const N = layer.outFeatures;
  const K = layer.inFeatures;
  const r = layer.rank;
  if (dy.size !== M * N || dy.shape[dy.shape.length - 1] !== N) {
    throw new ShapeError(`loraBackward: dy has shape ${fmtShape(dy.shape)}, expected y's shape [..., N] with ${M} rows and N = ${N}`);
  }
  if (saved.u.disposed || saved.u.size !== M * r) throw new ShapeError(`loraBackward: saved.u must be the live [${M},${r}] tensor from loraForward`);
  const s = layer.scale;
  const drop = saved.dropout > 0;
  return ctx.scope(() => {
    // Sums over the token dimension need 2-D views of the batched tensors.
    const dy2 = dy.view([M, N]);
    const u2 = saved.u.view([M, r]);
    const x2 = saved.x.view([M, K]);
    const dB = loraBGrad(ctx, dy2, u2, s); // [N,r]
    const du = loraDown(ctx, dy2, layer.B, s, { aTransposed: true }); // s·dy·B, [M,r]
    const xd = drop ? dropout(ctx, x2, { p: saved.dropout, seed: saved.seed, offset: saved.offset }) : x2;
    const dA = matmul(ctx, du, xd, { transA: true }); // [r,K]
    if (!o.needDx) return { dA, dB };
    let dx: Tensor;
    if (!drop) {
      // dx = dy·W + du·A in one pass: the low-rank epilogue with V = A [r,K].
      dx = matmul(ctx, dy2, layer.W, { transB: layer.wLayout === 'KN', lowRank: { u: du, v: layer.A, scale: 1, vTransposed: true } });
    } else {
      // The low-rank path's input went through dropout: its gradient takes the same mask and scale.
      const dxd = dropout(ctx, matmul(ctx, du, layer.A), { p: saved.dropout, seed: saved.seed, offset: saved.offset });
      dx = add(ctx, matmul(ctx, dy2, layer.W, { transB: layer.wLayout === 'KN' }), dxd);
    }
    return { dA, dB, dx: ctx.reshape(dx, saved.x.shape) };
  });
}

/** How lora_merge splits W: vec4s of columns per lane, and rows per workgroup. */
export interface MergeTiling {
  vec4sPerLane: number;
  rowsPerWorkgroup: number;
}

/**
 * lora_merge's tiling for this adapter and rank. CPU adapters: up to 4 vec4s per lane and 128
 * rows per workgroup, so R[row, ·] and C's values are loaded once for many elements (every
 * load is a per-lane loop on llvmpipe; at [1024,1024], r = 8, 32 rows ran at 59–77 % of a
 * vec4 copy and 128 at 70–84 %). GPUs: one vec4 per lane and 8 rows, for many workgroups.
 */
export function loraMergeTiling(ctx: GpuContext, rank: number): MergeTiling {
  return ctx.caps.software
    ? { vec4sPerLane: Math.max(1, Math.min(4, Math.floor(64 / rank))), rowsPerWorkgroup: 128 }
    : { vec4sPerLane: 1, rowsPerWorkgroup: 8 };
}

/**
 * W += scale·B·A ([N,K]), or its transpose Aᵀ·Bᵀ for a [K,N] W: lora.wgsl's lora_merge where W's
 * rows are whole vec4s and r ≤ 16, else one matmul with β = 1.
 */
function addLowRank(ctx: GpuContext, layer: LoraLayer, scale: number, tiling?: MergeTiling): void {
  const [rows, cols] = layer.W.shape as [number, number];
  const r = layer.rank;
  if (cols % 4 === 0 && r <= LORA_DOWN_MAX_RANK && rows * cols / 4 <= 2 ** 31) {
    const K = layer.inFeatures;
    const nk = layer.wLayout === 'NK';
    const t = tiling ?? loraMergeTiling(ctx, r);
    if (!Number.isInteger(t.vec4sPerLane) || t.vec4sPerLane < 1 || t.vec4sPerLane * r > 64 || !Number.isInteger(t.rowsPerWorkgroup) || t.rowsPerWorkgroup < 1) {
      throw new ArgumentError(`lora merge: tiling ${JSON.stringify(t)}, expected integers >= 1 with vec4sPerLane·rank <= 64 (rank ${r})`);
    }
    const m = loraModule(layer.W.dtype);
    // Lane l owns vec4sPerLane vec4s of columns: a workgroup covers lanes·vec4sPerLane vec4s of a row.
    const [lanes] = m.workgroupSize('lora_merge');
    ctx.dispatch(m, 'lora_merge', {
      bindings: { w4: layer.W, r_buf: nk ? layer.B : layer.A, c_buf: nk ? layer.A : layer.B },
      // [N,K]: R = B [N,r] (row stride r), C = A [r,K]; [K,N]: R[k, j] = A[j, k], C[j, n] = B[n, j].
      params: nk
        ? { rows, cols4: cols / 4, rRow: r, rJ: 1, cJ: K, cCol: 1, scale }
        : { rows, cols4: cols / 4, rRow: 1, rJ: K, cJ: 1, cCol: r, scale },
      constants: { RANK: r, MERGE_V: t.vec4sPerLane, MERGE_ROWS: t.rowsPerWorkgroup },
      workgroups: [Math.ceil(cols / 4 / (lanes * t.vec4sPerLane)), Math.ceil(rows / t.rowsPerWorkgroup)],
    });
    return;
  }
  if (layer.wLayout === 'NK') matmul(ctx, layer.B, layer.A, { alpha: scale, beta: 1, out: layer.W });
  else matmul(ctx, layer.A, layer.B, { transA: true, transB: true, alpha: scale, beta: 1, out: layer.W });
}

/**
 * W ← W + s·B·A in one dispatch, no B·A buffer (lora_merge; the matmul family with β = 1 where
 * W's rows are not whole vec4s or r > 16). Throws if already merged.
 */
export function loraMerge(ctx: GpuContext, layer: LoraLayer, o: { tiling?: MergeTiling } = {}): void {
  layer.assertLive('loraMerge');
  if (layer.merged) throw new ArgumentError('loraMerge: the layer is already merged (merged = true); unmerge it first');
  addLowRank(ctx, layer, layer.scale, o.tiling);
  layer.merged = true;
}

/** W ← W − s·B·A, undoing {@link loraMerge} (exact up to f32 rounding). Throws if not merged. */
export function loraUnmerge(ctx: GpuContext, layer: LoraLayer, o: { tiling?: MergeTiling } = {}): void {
  layer.assertLive('loraUnmerge');
  if (!layer.merged) throw new ArgumentError('loraUnmerge: the layer is not merged');
  addLowRank(ctx, layer, -layer.scale, o.tiling);
  layer.merged = false;
}
