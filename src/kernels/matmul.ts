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

/** Entry points of matmul.wgsl, slowest first. */
export const MATMUL_VERSIONS = ['naive', 'regblock', 'regblock4', 'tiled'] as const;
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
}

export function matmulModule(dtype: DType): KernelModule {
  return KernelModule.get('matmul.wgsl', wgsl.matmul, dtype);
}

/**
 * The default version for this device and shape. On CPU adapters (lavapipe),
 * register blocking without workgroup memory wins by 2–3×: llvmpipe runs a
 * workgroup's lanes as SIMD loops and barriers split them into coroutines.
 */
export function pickMatmulVersion(ctx: GpuContext, N: number, transB: boolean): MatmulVersion {
  if (!ctx.caps.software) return 'tiled';
  return regblock4Applies(N, transB) ? 'regblock4' : 'regblock';
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
  const mod = matmulModule(p.a.dtype);
  const constants = {
    TRANS_A: p.transA,
    TRANS_B: p.transB,
    HAS_BIAS: p.bias !== undefined,
    ACT: ACT_CODE[p.activation],
  };
  let workgroups: [number, number, number];
  let extra: Record<string, number> = {};
  switch (p.version) {
    case 'naive':
      workgroups = [Math.ceil(p.N / 8), Math.ceil(p.M / 8), p.batch];
      break;
    case 'regblock':
    case 'regblock4': {
      if (p.version === 'regblock4' && !regblock4Applies(p.N, p.transB)) {
        throw new ArgumentError(`matmul: version regblock4 needs N % 4 == 0 and B not transposed (N = ${p.N}, transB = ${p.transB})`);
      }
      const lanes = regblockLanes(p.N);
      extra = { RB_LANES: lanes };
      workgroups = [Math.ceil(p.N / (lanes * 8)), Math.ceil(p.M / 8), p.batch];
      break;
    }
    case 'tiled':
      workgroups = [Math.ceil(p.N / 64), Math.ceil(p.M / 64), p.batch];
      break;
    default:
      throw new ArgumentError(`matmul: version '${String(p.version)}', expected one of ${MATMUL_VERSIONS.join(', ')}`);
  }
  ctx.dispatch(mod, `matmul_${p.version}`, {
    // With no bias the binding still needs a buffer: A is bound read-only in its place, never read.
    bindings: { a: p.a, [p.version === 'regblock4' ? 'b4' : 'b']: p.b, bias: p.bias ?? p.a, c: p.c },
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
  if (opts.version !== undefined && !MATMUL_VERSIONS.includes(opts.version)) {
    throw new ArgumentError(`matmul: version '${opts.version}', expected one of ${MATMUL_VERSIONS.join(', ')}`);
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
  // A batched A times a shared B is one taller matmul: [batch·M, K]·op(B) keeps lanes busy.
  if (batch > 1 && problem.strideB === 0 && !transA && problem.strideA === M * K) {
    problem = { ...problem, M: batch * M, batch: 1, strideA: 0, strideC: 0 };
  }
  encodeMatmul(ctx, problem);
  return c;
}
