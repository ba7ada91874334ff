/**
 * Masked weight gradients for partly frozen parameters: dW = M ⊙ (dyᵀ·x), dW [N,K],
 * dy [M_tokens,N], x [M_tokens,K], on the matmul family (src/wgsl/matmul.wgsl, MASK and
 * TILES). Only output tiles holding a trainable entry are dispatched, so the work falls
 * with the frozen fraction; frozen entries are exactly 0.
 *
 * ```ts
 * const mask = new GradMask(ctx, [N, K], { rows: [[0, 64]] });   // only rows 0..63 train
 * const dW = maskedGrad(ctx, dy, x, mask);
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, ShapeError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import { fill, ones as onesOf } from './elementwise.js';
import { encodeMatmul, type MatmulVersion, matmulTileShape, type OutputMask, pickMatmulVersion } from './matmul.js';
import { fmtShape, uploadU32 } from './util.js';

/** Which entries of a [N,K] weight train. Ranges are [start, end) and name the trainable part. */
export type FreezeSpec =
  | { rows: [number, number][] }
  | { cols: [number, number][] }
  | { rows: [number, number][]; cols: [number, number][] }
  /** Blocks of blockRows × blockCols; `trainable` has one entry (nonzero = trains) per block, row-major. */
  | { blockRows: number; blockCols: number; trainable: ArrayLike<number> }
  /** One entry per element of [N,K], nonzero = trains. */
  | { elements: ArrayLike<number> };


export class GradMask {
  readonly shape: [number, number];
  /** Fraction of entries that train. */
  readonly trainableFraction: number;
  private readonly rowMask: Uint8Array | null = null;
  private readonly colMask: Uint8Array | null = null;
  private readonly bits: Uint32Array | null = null;
  private readonly perVersion = new Map<string, { mask: OutputMask; skipped: boolean }>();
  private disposed = false;

  constructor(
    private readonly ctx: GpuContext,
    shape: readonly number[],
    spec: FreezeSpec,
  ) {
    if (shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
      throw new ShapeError(`GradMask: shape ${fmtShape(shape)}, expected [N,K] of positive integers`);
    }
    const [N, K] = shape as [number, number];
    this.shape = [N, K];
    const ranges = (rs: [number, number][], len: number, what: string): Uint8Array => {
      const m = new Uint8Array(len);
      for (const [a, b] of rs) {
        if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b > len || a >= b) {
          throw new ArgumentError(`GradMask: ${what} range [${a}, ${b}) is not inside [0, ${len}) with start < end`);
        }
        m.fill(1, a, b);
      }
      return m;
    };
    if ('elements' in spec) {
      if (spec.elements.length !== N * K) {
        throw new ShapeError(`GradMask: elements has ${spec.elements.length} entries, expected N·K = ${N * K} for [${N},${K}]`);
      }
      this.bits = new Uint32Array(Math.ceil((N * K) / 32));
      let n = 0;
      for (let i = 0; i < N * K; i++) {
        if (spec.elements[i]) {
          this.bits[i >>> 5]! |= 1 << (i & 31);
          n++;
        }
      }
      this.trainableFraction = n / (N * K);
    } else if ('blockRows' in spec) {
      const { blockRows: br, blockCols: bc } = spec;
      if (!Number.isInteger(br) || !Number.isInteger(bc) || br < 1 || bc < 1) {
        throw new ArgumentError(`GradMask: block size ${br}×${bc}, expected positive integers`);
      }
      const gr = Math.ceil(N / br);
      const gc = Math.ceil(K / bc);
      if (spec.trainable.length !== gr * gc) {
        throw new ShapeError(`GradMask: trainable has ${spec.trainable.length} entries, expected ${gr}×${gc} = ${gr * gc} blocks of ${br}×${bc} over [${N},${K}]`);
      }
      this.bits = new Uint32Array(Math.ceil((N * K) / 32));
      let n = 0;
      for (let i = 0; i < N; i++) {
        for (let j = 0; j < K; j++) {
          if (spec.trainable[Math.floor(i / br) * gc + Math.floor(j / bc)]) {
            const e = i * K + j;
            this.bits[e >>> 5]! |= 1 << (e & 31);
            n++;
          }
        }
      }
      this.trainableFraction = n / (N * K);
    } else {
      this.rowMask = 'rows' in spec ? ranges(spec.rows, N, 'row') : new Uint8Array(N).fill(1);
      this.colMask = 'cols' in spec ? ranges(spec.cols, K, 'column') : new Uint8Array(K).fill(1);
      const count = (m: Uint8Array) => m.reduce((a, b) => a + b, 0);
      this.trainableFraction = (count(this.rowMask) * count(this.colMask)) / (N * K);
    }
  }

  /** Is entry (i, j) trainable? (CPU side, for references and tests.) */
  trainable(i: number, j: number): boolean {
    if (this.bits) {
      const e = i * this.shape[1] + j;
      return ((this.bits[e >>> 5]! >>> (e & 31)) & 1) === 1;
    }
    return this.rowMask![i] === 1 && this.colMask![j] === 1;
  }

  /** The mask and tile list for `version`'s tile shape, built once and kept on the GPU. */
  forVersion(version: MatmulVersion): { mask: OutputMask; skipped: boolean } {
    if (this.disposed) throw new ArgumentError('GradMask: used after dispose()');
    const hit = this.perVersion.get(version);
    if (hit) return hit;
    const [N, K] = this.shape;
    const t = matmulTileShape(version, K);
    const tr = Math.ceil(N / t.rows);
    const tc = Math.ceil(K / t.cols);
    const tiles: number[] = [];
    for (let y = 0; y < tr; y++) {
      for (let x = 0; x < tc; x++) {
        if (this.tileActive(y * t.rows, Math.min(N, (y + 1) * t.rows), x * t.cols, Math.min(K, (x + 1) * t.cols))) tiles.push(y, x);
      }
    }
    const words: number[] = [];
    let maskRows = 0;
    let maskCols = 0;
    let maskBits = 0;
    let mode: 0 | 1 | 2 = 0;
    if (this.bits) {
      mode = 2;
      maskBits = words.length;
      words.push(...this.bits);
    } else if (this.trainableFraction < 1) {
      mode = 1;
      maskRows = words.length;
      words.push(...this.rowMask!);
      maskCols = words.length;
      words.push(...this.colMask!);
    }
    const tileList = words.length;
    words.push(...tiles);
    const aux = uploadU32(this.ctx, new Uint32Array(words), 'grad mask');
    const entry = {
      mask: { aux, mode, maskRows, maskCols, maskBits, tileList, tileCount: tiles.length / 2 },
      skipped: tiles.length / 2 < tr * tc,
    };
    this.perVersion.set(version, entry);
    return entry;
  }

  private tileActive(r0: number, r1: number, c0: number, c1: number): boolean {
    if (!this.bits) {
      let rows = false;
      let cols = false;
      for (let i = r0; i < r1 && !rows; i++) rows = this.rowMask![i] === 1;
      for (let j = c0; j < c1 && !cols; j++) cols = this.colMask![j] === 1;
      return rows && cols;
    }
    for (let i = r0; i < r1; i++) for (let j = c0; j < c1; j++) if (this.trainable(i, j)) return true;
    return false;
  }

  dispose(): void {
    for (const { mask } of this.perVersion.values()) this.ctx.destroyAfterSubmit(mask.aux);
    this.perVersion.clear();
    this.disposed = true;
  }
}

export interface MaskedGradOptions {
  /** Write into this [N,K] tensor. */
  out?: Tensor;
  /** dW += the masked product (needs `out`, whose frozen entries are expected to be 0). */
  accumulate?: boolean;
  version?: MatmulVersion;
}

/**
 * db = mask ⊙ Σ_tokens dy for a bias [N] whose entries in `trainableRows` train (the rows of
 * W a row mask leaves trainable, typically). Computed as onesᵀ·dy on the masked matmul, so
 * frozen entries are exactly 0 and tiles of frozen entries are skipped. Pass the same
 * GradMask each step (`biasMask(N, ranges)` builds one).
 */
export function maskedBiasGrad(ctx: GpuContext, dy: Tensor, mask: GradMask, o: MaskedGradOptions = {}): Tensor {
  const [one, N] = mask.shape;
  if (one !== 1) throw new ShapeError(`maskedBiasGrad: the mask is [${mask.shape.join(',')}], expected [1,N] (from biasMask)`);
  dy.buffer('maskedBiasGrad: dy');
  if (dy.shape[dy.shape.length - 1] !== N) throw new ShapeError(`maskedBiasGrad: dy has shape ${fmtShape(dy.shape)}, expected [..., N] with N = ${N}`);
  const M = dy.size / N;
  const out = o.out ? o.out.view([1, N]) : undefined;
  const db = ctx.scope(() => {
    const ones = onesOf(ctx, [M, 1], dy.dtype);
    return maskedGrad(ctx, ones, dy, mask, { ...o, out });
  });
  return o.out ?? ctx.reshape(db, [N]);
}

/** The [1,N] mask for {@link maskedBiasGrad}: bias entries in `trainable` ranges train. */
export function biasMask(ctx: GpuContext, N: number, trainable: [number, number][]): GradMask {
  return new GradMask(ctx, [1, N], { cols: trainable });
}

/** dW = mask ⊙ (dyᵀ·x), work only on tiles with a trainable entry. */
export function maskedGrad(ctx: GpuContext, dy: Tensor, x: Tensor, mask: GradMask, o: MaskedGradOptions = {}): Tensor {
  const [N, K] = mask.shape;
  dy.buffer('maskedGrad: dy');
  x.buffer('maskedGrad: x');
  if (dy.shape[dy.shape.length - 1] !== N) throw new ShapeError(`maskedGrad: dy has shape ${fmtShape(dy.shape)}, expected [..., N] with N = ${N} (the mask is [${N},${K}])`);
  if (x.shape[x.shape.length - 1] !== K) throw new ShapeError(`maskedGrad: x has shape ${fmtShape(x.shape)}, expected [..., K] with K = ${K} (the mask is [${N},${K}])`);
  const M = dy.size / N;
  if (x.size / K !== M) throw new ShapeError(`maskedGrad: dy has ${M} rows and x has ${x.size / K}; they must match`);
  if (dy.dtype !== x.dtype) throw new DTypeError(`maskedGrad: dy is ${dy.dtype} and x is ${x.dtype}; they must match`);
  if (o.accumulate && !o.out) throw new ArgumentError('maskedGrad: accumulate needs opts.out');
  let out = o.out;
  if (out) {
    out.buffer('maskedGrad: out');
    if (out.shape.length !== 2 || out.shape[0] !== N || out.shape[1] !== K) throw new ShapeError(`maskedGrad: out has shape ${fmtShape(out.shape)}, expected [${N},${K}]`);
    if (out.dtype !== dy.dtype) throw new DTypeError(`maskedGrad: out is ${out.dtype}, expected ${dy.dtype}`);
  }
  const version = o.version ?? pickMatmulVersion(ctx, K, false);
  const { mask: m, skipped } = mask.forVersion(version);
  out ??= ctx.empty([N, K], dy.dtype, 'maskedGrad.dW');
  // Skipped tiles are never written: they must already hold zeros.
  if (skipped && !o.accumulate) fill(ctx, out, 0);
  if (m.tileCount === 0) return out;
  encodeMatmul(ctx, {
    a: dy,
    b: x,
    c: out,
    M: N,
    N: K,
    K: M,
    batch: 1,
    strideA: 0,
    strideB: 0,
    strideC: 0,
    transA: true,
    transB: false,
    alpha: 1,
    beta: o.accumulate ? 1 : 0,
    activation: 'none',
    version,
    mask: m,
  });
  return out;
}
