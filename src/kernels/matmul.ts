/**
 * Launcher for src/wgsl/matmul.wgsl: C = act(alpha · op(A) · op(B) + beta · C + bias).
 *
 * ```ts
 * const y = matmul(ctx, x, w, { transB: true, bias: b, activation: 'relu' }); // relu(x·wᵀ + b)
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, ShapeError } from '../gpu/errors.js';
import { KernelModule, type DType } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { transpose } from './elementwise.js';
import { unusedU32 } from './util.js';

/**
 * Entry points of matmul.wgsl (and matmul_subgroup.wgsl), slowest first; see
 * {@link matmulVersions} for which a device and shape can run.
 */
export const MATMUL_VERSIONS = ['naive', 'regblock', 'regblock4', 'regblock4sg', 'tiled'] as const;
export type MatmulVersion = (typeof MATMUL_VERSIONS)[number];
export type Activation = 'none' | 'relu' | 'gelu';
const ACT_CODE: Record<Activation, number> = { none: 0, relu: 1, gelu: 2 };

export interface MatmulOptions {
  /** A is stored [K,M] (or [batch,K,M]). */
  transA?: boolean;
  /** B is stored [N,K] (or [batch,N,K]); `x·Wᵀ` for a torch-layout weight W [N,K]. */
  transB?: boolean;
  alpha?: number;
  /** Scale of the existing C; needs `out`. 0 (default) never reads C. */
  beta?: number;
  /** [N], added to every row. */
  bias?: Tensor;
  activation?: Activation;
  /** Write into this tensor instead of allocating C. */
  out?: Tensor;
  /** Force a version; by default chosen per adapter and shape ({@link pickMatmulVersion}). */
  version?: MatmulVersion;
  /**
   * Add scale · U·Vᵀ in the same pass (U [M,r]; V [N,r], or [r,N] with vTransposed), e.g.
   * LoRA's s·(x·Aᵀ)·Bᵀ. Not with a batched (rank-3) C unless the batch folds into M.
   */
  lowRank?: { u: Tensor; v: Tensor; scale: number; vTransposed?: boolean };
}

/** The raw problem, for callers that manage strides themselves (autograd, fused ops). */
export interface MatmulProblem {
  a: Tensor;
  b: Tensor;
  c: Tensor;
  bias?: Tensor;
  M: number;
  N: number;
  K: number;
  batch: number;
  /** Element strides between batch items; 0 broadcasts. */
  strideA: number;
  strideB: number;
  strideC: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
  activation: Activation;
  version: MatmulVersion;
  /** Epilogue C += scale · U·Vᵀ, U [M,rank], V [N,rank] (or [rank,N] when vTransposed); batch must be 1. */
  lowRank?: LowRankTerm;
  /** Write frozen entries as 0 (mode 1: row/column masks, 2: element bits) and/or visit only listed tiles. */
  mask?: OutputMask;
  /** Store C transposed: C [M,N] lands in `c` as [N,M] (bias then indexed by m). No mask. */
  transC?: boolean;
}

export interface LowRankTerm {
  u: Tensor;
  v: Tensor;
  rank: number;
  scale: number;
  vTransposed: boolean;
}

/** Masks and tile list in one u32 buffer, offsets in u32 words (see matmul.wgsl). */
export interface OutputMask {
  aux: GPUBuffer;
  mode: 0 | 1 | 2;
  maskRows: number;
  maskCols: number;
  maskBits: number;
  /** Offset of the (tile row, tile column) pairs, and their count; null visits every tile. */
  tileList: number;
  tileCount: number | null;
}

/** Rows and columns of C one workgroup of `version` computes (the unit of a tile list). */
export function matmulTileShape(version: MatmulVersion, N: number): { rows: number; cols: number } {
  switch (version) {
    case 'naive':
      return { rows: 8, cols: 8 };
    case 'tiled':
      return { rows: 64, cols: 64 };
    case 'regblock4sg':
      return { rows: 16, cols: regblockLanes(N) * 8 };
    default:
      return { rows: 8, cols: regblockLanes(N) * 8 };
  }
}

/** The family's module; with `subgroups`, matmul.wgsl plus matmul_subgroup.wgsl under `enable subgroups;`. */
export function matmulModule(dtype: DType, subgroups = false): KernelModule {
  if (!subgroups) return KernelModule.get('matmul.wgsl', wgsl.matmul, dtype);
  return KernelModule.get('matmul.wgsl+matmul_subgroup.wgsl', SUBGROUP_SOURCE, dtype);
}
const SUBGROUP_SOURCE = `enable subgroups;\n${wgsl.matmul}\n${wgsl.matmul_subgroup}`;

/**
 * matmul_regblock4sg shares A's values across 8 lanes of a subgroup: it needs the subgroups
 * feature with subgroups of at least 8 lanes on every dispatch (the adapter's minimum size).
 */
export function subgroupMatmulApplies(ctx: GpuContext): boolean {
  return ctx.caps.subgroups && ctx.caps.subgroupMinSize >= 8;
}

/** Can `version` run this shape on this device? (Why not, or null when it can.) */
export function matmulVersionUnfit(ctx: GpuContext, version: MatmulVersion, N: number, transB: boolean): string | null {
  if (!MATMUL_VERSIONS.includes(version)) return `version '${String(version)}', expected one of ${MATMUL_VERSIONS.join(', ')}`;
  if ((version === 'regblock4' || version === 'regblock4sg') && !regblock4Applies(N, transB)) {
    return `version ${version} needs N % 4 == 0 and B not transposed (N = ${N}, transB = ${transB})`;
  }
  if (version === 'regblock4sg' && !subgroupMatmulApplies(ctx)) {
    return `version regblock4sg needs the subgroups feature with subgroups of >= 8 lanes (this device: ${
      ctx.caps.subgroups ? `subgroups of ${ctx.caps.subgroupMinSize}..${ctx.caps.subgroupMaxSize} lanes` : 'no subgroups'
    })`;
  }
  return null;
}

/** Throw an ArgumentError unless `version` is one this device can run on this shape. */
function checkVersion(ctx: GpuContext, version: MatmulVersion, N: number, transB: boolean): void {
  const unfit = matmulVersionUnfit(ctx, version, N, transB);
  if (unfit) throw new ArgumentError(`matmul: ${unfit}`);
}

/** The versions that can run this shape on this device, slowest first. */
export function matmulVersions(ctx: GpuContext, N: number, transB: boolean): MatmulVersion[] {
  return MATMUL_VERSIONS.filter((v) => matmulVersionUnfit(ctx, v, N, transB) === null);
}

/**
 * The default version for this device and shape. On CPU adapters (lavapipe),
 * register blocking without workgroup memory wins by 2–3×: llvmpipe runs a
 * workgroup's lanes as SIMD loops and barriers split them into coroutines. Where
 * subgroups allow, regblock4sg runs 1.5–1.7× regblock4 (it loads each value of A once
 * per subgroup instead of once per lane: see matmul_subgroup.wgsl).
 */
export function pickMatmulVersion(ctx: GpuContext, N: number, transB: boolean): MatmulVersion {
  if (!ctx.caps.software) return 'tiled';
  if (!regblock4Applies(N, transB)) return 'regblock';
  return subgroupMatmulApplies(ctx) ? 'regblock4sg' : 'regblock4';
}

/**
 * How the default path runs a transposed B ([N,K], e.g. x·Wᵀ with a torch-layout W) on a CPU
 * adapter, where every variant that reads B [N,K] in place gathers each lane's columns from
 * rows K apart and runs at 40–45 % of regblock4 (1024³ on lavapipe: 10 vs 23 GFLOP/s; vec4
 * loads along K, 8–64 lanes, and lanes along K with a workgroup reduction were all no better):
 * - 'transpose-a-swap': compute Cᵀ = B·op(A)ᵀ with regblock4(sg) and store it transposed
 *   (TRANS_C), so C comes out [M,N] as asked. op(A)ᵀ is A itself when transA, else a
 *   4×4-block transpose of A: the small operand is transposed, not W. Needs M % 4 == 0 (Cᵀ's
 *   rows are the vec4 columns of regblock4(sg)) and N >= 32 rows of work; not with a low-rank
 *   V given transposed (the swap reads V as Cᵀ's row factor, [N,r]).
 * - 'transpose-b': transpose B into a scratch [K,N] and run regblock4(sg) (costs about a copy of
 *   B; pays once the product has a few dozen rows).
 * - 'read-in-place': B read as stored (GPUs, too few rows, shapes the vec4 paths cannot take).
 * `rows` is M over the whole batch when a batched A folds into one product. B must be one
 * matrix (rank 2) shared by the batch for either rewrite.
 */
export type TransposedBPlan = 'read-in-place' | 'transpose-b' | 'transpose-a-swap';

/**
 * Force a plan for a transposed B (tests, benchmarks); 'auto' picks by {@link transposedBPlan}.
 * A forced plan that does not apply to a problem ({@link transposedBPlans}) gives the default.
 */
export const matmulConfig: { transposedB: 'auto' | TransposedBPlan } = { transposedB: 'auto' };

export interface TransposedBShape {
  rows: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  bShared: boolean;
  /** A low-rank term with V given [r,N]: the swap would need it as [N,r]. */
  lowRankVT?: boolean;
}

/** Which of the plans above apply to a problem. */
export function transposedBPlans(ctx: GpuContext, p: TransposedBShape): TransposedBPlan[] {
  const plans: TransposedBPlan[] = ['read-in-place'];
  if (!ctx.caps.software || !p.transB || !p.bShared) return plans;
  if (p.rows % 4 === 0 && p.N >= 32 && !p.lowRankVT) plans.push('transpose-a-swap');
  if (p.N % 4 === 0 && p.K % 4 === 0 && p.rows >= 32) plans.push('transpose-b');
  return plans;
}

/**
 * The default plan on a CPU adapter, from `npm run bench -- --suites transb` on lavapipe
 * (N = K = 1024, GPU ms, two runs, with regblock4sg): below 32 rows B is read in place (M = 8:
 * 3.4 against 5.8 for the swap; M = 16: 5.4–6.6 against 5.0–5.8, a draw). From 32 rows the
 * swap saves transposing W (about a copy of it) but its own product runs slower as the rows
 * grow (M = 512: 51–70 against 48–53 with B transposed), and rows that leave the register
 * tile's lanes idle lose the gain (Cᵀ's rows are its columns, 8 per lane: M = 32 and 96 use
 * half and three quarters of them). So: the swap while op(A) is at most a quarter of B
 * (rows·4 <= N) and fills at least 90 % of the lanes (M = 64: 6.2–7.1 against 7.0–7.9;
 * M = 128: 11.9–20.1 against 11.9–15.1), else B transposed first.
 */
export function transposedBPlan(ctx: GpuContext, p: TransposedBShape): TransposedBPlan {
  const plans = transposedBPlans(ctx, p);
  if (p.rows < 32) return 'read-in-place';
  const cols = regblockLanes(p.rows) * 8;
  const laneUse = p.rows / (Math.ceil(p.rows / cols) * cols);
  if (plans.includes('transpose-a-swap') && 4 * p.rows <= p.N && laneUse >= 0.9) return 'transpose-a-swap';
  return plans.includes('transpose-b') ? 'transpose-b' : 'read-in-place';
}

/** matmul_regblock4 reads B through a vec4 view: rows of B must be whole vec4s. */
export function regblock4Applies(N: number, transB: boolean): boolean {
  return N % 4 === 0 && !transB;
}

/** Lanes along N for matmul_regblock: enough to cover N with 8 columns each, 8..128. */
export function regblockLanes(N: number): number {
  let lanes = 8;
  while (lanes < 128 && lanes * 8 < N) lanes *= 2;
  return lanes;
}

/** Encode one matmul over explicit strides (no allocation). */
export function encodeMatmul(ctx: GpuContext, p: MatmulProblem): void {
  const mod = matmulModule(p.a.dtype, p.version === 'regblock4sg');
  const lr = p.lowRank;
  const mask = p.mask;
  if (lr && p.batch !== 1) throw new ArgumentError(`matmul: a low-rank epilogue needs batch 1, got ${p.batch}`);
  if (p.transC && mask) throw new ArgumentError('matmul: an output mask cannot be combined with a transposed C');
  const constants = {
    TRANS_C: p.transC ?? false,
    TRANS_A: p.transA,
    TRANS_B: p.transB,
    HAS_BIAS: p.bias !== undefined,
    ACT: ACT_CODE[p.activation],
    LORA: lr !== undefined,
    LR_VT: lr?.vTransposed ?? false,
    MASK: mask?.mode ?? 0,
    TILES: mask !== undefined && mask.tileCount !== null,
  };
  checkVersion(ctx, p.version, p.N, p.transB);
  const tile = matmulTileShape(p.version, p.N);
  const registerBlocked = p.version === 'regblock' || p.version === 'regblock4' || p.version === 'regblock4sg';
  const extra: Record<string, number> = registerBlocked ? { RB_LANES: regblockLanes(p.N) } : {};
  const vec4B = p.version === 'regblock4' || p.version === 'regblock4sg';
  const workgroups: [number, number, number] =
    mask && mask.tileCount !== null
      ? [mask.tileCount, 1, p.batch]
      : [Math.ceil(p.N / tile.cols), Math.ceil(p.M / tile.rows), p.batch];
  ctx.dispatch(mod, `matmul_${p.version}`, {
    // Unused optional bindings still need buffers: A is bound read-only in their place, never read.
    bindings: {
      a: p.a,
      [vec4B ? 'b4' : 'b']: p.b,
      bias: p.bias ?? p.a,
      c: p.c,
      lr_u: lr?.u ?? p.a,
      lr_v: lr?.v ?? p.a,
      aux: mask?.aux ?? unusedU32(ctx),
    },
    params: {
      M: p.M,
      N: p.N,
      K: p.K,
      batch: p.batch,
      strideA: p.strideA,
      strideB: p.strideB,
      strideC: p.strideC,
      alpha: p.alpha,
      beta: p.beta,
      rank: lr?.rank ?? 0,
      lrScale: lr?.scale ?? 0,
      maskRows: mask?.maskRows ?? 0,
      maskCols: mask?.maskCols ?? 0,
      maskBits: mask?.maskBits ?? 0,
      tileList: mask?.tileList ?? 0,
    },
    constants: { ...constants, ...extra },
    workgroups,
  });
}

function dims(t: Tensor, name: string): [number, number, number] {
  const s = t.shape;
  if (s.length === 2) return [1, s[0]!, s[1]!];
  if (s.length === 3) return [s[0]!, s[1]!, s[2]!];
  throw new ShapeError(`matmul: ${name} has shape [${s.join(',')}], expected rank 2 or 3 ([rows,cols] or [batch,rows,cols])`);
}

/**
 * C = act(alpha · op(A) · op(B) + beta · C + bias). A and B are rank 2 or 3;
 * a rank-2 operand is broadcast over the other's batch. Returns C ([M,N], or
 * [batch,M,N] when either input is batched).
 */
export function matmul(ctx: GpuContext, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  const alpha = opts.alpha ?? 1;
  const beta = opts.beta ?? 0;
  if (!Number.isFinite(alpha)) throw new ArgumentError(`matmul: alpha = ${alpha}, expected a finite number`);
  if (!Number.isFinite(beta)) throw new ArgumentError(`matmul: beta = ${beta}, expected a finite number`);
  if (opts.activation !== undefined && !(opts.activation in ACT_CODE)) {
    throw new ArgumentError(`matmul: activation '${opts.activation}', expected none, relu or gelu`);
  }
  a.buffer('matmul: A');
  b.buffer('matmul: B');
  if (a.dtype !== b.dtype) throw new DTypeError(`matmul: A is ${a.dtype} and B is ${b.dtype}; they must match`);
  const [ba, ra, ca] = dims(a, 'A');
  const [bb, rb, cb] = dims(b, 'B');
  const [M, K] = transA ? [ca, ra] : [ra, ca];
  const [Kb, N] = transB ? [cb, rb] : [rb, cb];
  if (K !== Kb) {
    throw new ShapeError(
      `matmul: inner dimensions differ: op(A) is [M=${M},K=${K}] (A [${a.shape.join(',')}]${transA ? ' transposed' : ''}), ` +
        `op(B) is [K=${Kb},N=${N}] (B [${b.shape.join(',')}]${transB ? ' transposed' : ''})`,
    );
  }
  // Before allocating C; encodeMatmul checks again for callers that come to it directly.
  if (opts.version !== undefined) checkVersion(ctx, opts.version, N, transB);
  if (ba !== bb && ba !== 1 && bb !== 1) {
    throw new ShapeError(`matmul: batch sizes differ: A has ${ba}, B has ${bb} (one may be 1 or rank 2 to broadcast)`);
  }
  const batched = a.shape.length === 3 || b.shape.length === 3;
  const batch = Math.max(ba, bb);
  const outShape = batched ? [batch, M, N] : [M, N];
  if (opts.bias) {
    opts.bias.buffer('matmul: bias');
    if (opts.bias.size !== N || opts.bias.shape.length !== 1) {
      throw new ShapeError(`matmul: bias has shape [${opts.bias.shape.join(',')}], expected [N] = [${N}]`);
    }
    if (opts.bias.dtype !== a.dtype) throw new DTypeError(`matmul: bias is ${opts.bias.dtype}, expected ${a.dtype} like A`);
  }
  // A batched A times a shared B is one taller matmul: [batch·M, K]·op(B) keeps lanes busy.
  const folds = batch > 1 && bb === 1 && ba > 1 && !transA;
  const rowsC = folds ? batch * M : M;
  let lowRank: LowRankTerm | undefined;
  if (opts.lowRank) {
    const { u, v, scale, vTransposed = false } = opts.lowRank;
    u.buffer('matmul: lowRank.u');
    v.buffer('matmul: lowRank.v');
    const r = u.shape[u.shape.length - 1]!;
    const uRows = u.size / r;
    if (uRows !== rowsC || !folds && batch !== 1) {
      throw new ShapeError(`matmul: lowRank.u has shape [${u.shape.join(',')}], expected [M,r] with M = ${rowsC} rows (a batched C must fold into M: A batched, B shared, A not transposed)`);
    }
    const vWant = vTransposed ? [r, N] : [N, r];
    if (v.shape.length !== 2 || v.shape[0] !== vWant[0] || v.shape[1] !== vWant[1]) {
      throw new ShapeError(`matmul: lowRank.v has shape [${v.shape.join(',')}], expected [${vWant.join(',')}] (${vTransposed ? '[r,N]' : '[N,r]'})`);
    }
    if (u.dtype !== a.dtype || v.dtype !== a.dtype) throw new DTypeError(`matmul: lowRank tensors must be ${a.dtype} like A`);
    if (!Number.isFinite(scale)) throw new ArgumentError(`matmul: lowRank.scale = ${scale}, expected a finite number`);
    lowRank = { u, v, rank: r, scale, vTransposed };
  }
  let c = opts.out;
  if (c) {
    c.buffer('matmul: out');
    if (c.shape.length !== outShape.length || c.shape.some((d, i) => d !== outShape[i])) {
      throw new ShapeError(`matmul: out has shape [${c.shape.join(',')}], expected [${outShape.join(',')}]`);
    }
    if (c.dtype !== a.dtype) throw new DTypeError(`matmul: out is ${c.dtype}, expected ${a.dtype}`);
  } else {
    if (beta !== 0) throw new ArgumentError(`matmul: beta = ${beta} reads C, so it needs opts.out`);
    c = ctx.empty(outShape, a.dtype, 'matmul.C');
  }
  let problem: MatmulProblem = {
    a,
    b,
    c,
    bias: opts.bias,
    M,
    N,
    K,
    batch,
    strideA: ba === 1 ? 0 : M * K,
    strideB: bb === 1 ? 0 : K * N,
    strideC: M * N,
    transA,
    transB,
    alpha,
    beta,
    activation: opts.activation ?? 'none',
    version: opts.version ?? pickMatmulVersion(ctx, N, transB),
  };
  const shape: TransposedBShape = { rows: transA ? M : rowsC, N, K, transA, transB, bShared: b.shape.length === 2, lowRankVT: lowRank?.vTransposed };
  let plan: TransposedBPlan = 'read-in-place';
  if (opts.version === undefined && transB) {
    const forced = matmulConfig.transposedB;
    plan = forced !== 'auto' && transposedBPlans(ctx, shape).includes(forced) ? forced : transposedBPlan(ctx, shape);
  }
  let scratch: Tensor | undefined;
  if (plan === 'transpose-a-swap') {
    // Cᵀ [N, rows] = B·op(A)ᵀ, stored transposed into C; op(A)ᵀ is A [K,M] itself when transA.
    const bPrime = transA ? a : (scratch = transpose(ctx, a.view([rowsC, K])));
    const swapped: MatmulProblem = {
      ...problem,
      a: b,
      b: bPrime,
      M: N,
      N: shape.rows,
      strideA: 0,
      strideB: transA && ba > 1 ? K * M : 0,
      strideC: folds ? 0 : M * N,
      batch: folds ? 1 : batch,
      transA: false,
      transB: false,
      transC: true,
      version: pickMatmulVersion(ctx, shape.rows, false),
    };
    if (lowRank) swapped.lowRank = { ...lowRank, u: lowRank.v, v: lowRank.u };
    encodeMatmul(ctx, swapped);
    scratch?.dispose();
    return c;
  }
  if (plan === 'transpose-b') {
    scratch = transpose(ctx, b);
    problem = { ...problem, b: scratch, transB: false, version: pickMatmulVersion(ctx, N, false) };
  }
  if (folds) {
    problem = { ...problem, M: batch * M, batch: 1, strideA: 0, strideC: 0 };
  }
  if (lowRank) problem.lowRank = lowRank;
  encodeMatmul(ctx, problem);
  scratch?.dispose(); // back to the pool once this step is submitted
  return c;
}
