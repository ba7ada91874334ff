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
 *
 * A weight larger than one storage binding (a [50257, 768] embedding on lavapipe's 128 MiB)
 * cannot be one tensor: keep it as row blocks (`rowBlocks`) and take its gradient with
 * {@link maskedGradRowBlocks}, block by block with the mask's rows for each.
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DisposedError, DTypeError, ShapeError, SizeLimitError } from '../gpu/errors.js';
import { bytesPerElement, type Tensor } from '../gpu/tensor.js';
import { rowBlocks } from './chunks.js';
import { fill, ones as onesOf, slice } from './elementwise.js';
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
  private readonly blocks = new Map<string, GradMask>();
  private disposed_ = false;

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
    this.checkLive('GradMask.forVersion');
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
    // Laid out in one typed array (a spread of a large mask into an array push overflows the
    // call stack: an element mask of 4M entries is 131 072 words).
    // The element bits, or the row then the column mask, come first; the tile list follows.
    const maskRows = 0;
    const maskBits = 0;
    let maskCols = 0;
    let mode: 0 | 1 | 2 = 0;
    let at = 0;
    if (this.bits) {
      mode = 2;
      at = this.bits.length;
    } else if (this.trainableFraction < 1) {
      mode = 1;
      maskCols = N;
      at = N + K;
    }
    const tileList = at;
    const words = new Uint32Array(at + tiles.length);
    if (this.bits) words.set(this.bits, maskBits);
    else if (mode === 1) {
      words.set(this.rowMask!, maskRows);
      words.set(this.colMask!, maskCols);
    }
    words.set(tiles, tileList);
    const aux = uploadU32(this.ctx, words, 'grad mask');
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

  /**
   * The mask of rows [start, end) as a [end − start, K] mask of its own (for one row block of a
   * weight stored as blocks; {@link maskedGradRowBlocks}). Built once and kept; disposed with
   * this mask.
   */
  rowBlock(start: number, end: number): GradMask {
    this.checkLive('GradMask.rowBlock');
    const [N, K] = this.shape;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > N || start >= end) {
      throw new ArgumentError(`GradMask.rowBlock: rows [${start}, ${end}) are not inside [0, ${N}) with start < end`);
    }
    if (start === 0 && end === N) return this;
    const key = `${start}:${end}`;
    let block = this.blocks.get(key);
    if (block) return block;
    const rows = end - start;
    if (this.bits) {
      const elements = new Uint8Array(rows * K);
      for (let e = 0; e < rows * K; e++) {
        const f = start * K + e;
        elements[e] = (this.bits[f >>> 5]! >>> (f & 31)) & 1;
      }
      block = new GradMask(this.ctx, [rows, K], { elements });
    } else {
      block = new GradMask(this.ctx, [rows, K], { rows: runs(this.rowMask!.subarray(start, end)), cols: runs(this.colMask!) });
    }
    this.blocks.set(key, block);
    return block;
  }

  /** True after `dispose()`; using the mask then throws a DisposedError. */
  get disposed(): boolean {
    return this.disposed_;
  }

  /** Throw a DisposedError naming `op` if the mask was disposed. */
  checkLive(op: string): void {
    if (this.disposed_) throw new DisposedError(`${op}: the GradMask [${this.shape.join(',')}] was disposed`);
  }

  dispose(): void {
    for (const { mask } of this.perVersion.values()) this.ctx.destroyAfterSubmit(mask.aux);
    this.perVersion.clear();
    for (const b of this.blocks.values()) b.dispose();
    this.blocks.clear();
    this.disposed_ = true;
  }
}

/** The [start, end) runs of ones in a 0/1 mask. */
function runs(m: Uint8Array): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < m.length; i++) {
    if (m[i] && (i === 0 || !m[i - 1])) out.push([i, i + 1]);
    else if (m[i]) out[out.length - 1]![1] = i + 1;
  }
  return out;
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
  mask.checkLive('maskedBiasGrad');
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
  mask.checkLive('maskedGrad');
  const [N, K] = mask.shape;
  dy.buffer('maskedGrad: dy');
  x.buffer('maskedGrad: x');
  if (dy.shape[dy.shape.length - 1] !== N) throw new ShapeError(`maskedGrad: dy has shape ${fmtShape(dy.shape)}, expected [..., N] with N = ${N} (the mask is [${N},${K}])`);
  if (x.shape[x.shape.length - 1] !== K) throw new ShapeError(`maskedGrad: x has shape ${fmtShape(x.shape)}, expected [..., K] with K = ${K} (the mask is [${N},${K}])`);
  const M = dy.size / N;
  if (x.size / K !== M) throw new ShapeError(`maskedGrad: dy has ${M} rows and x has ${x.size / K}; they must match`);
  if (dy.dtype !== x.dtype) throw new DTypeError(`maskedGrad: dy is ${dy.dtype} and x is ${x.dtype}; they must match`);
  if (o.accumulate && !o.out) throw new ArgumentError('maskedGrad: accumulate needs opts.out');
  const bytes = N * K * bytesPerElement(dy.dtype);
  const maxBinding = ctx.caps.limits.maxStorageBufferBindingSize ?? Infinity;
  if (bytes > maxBinding) {
    throw new SizeLimitError(
      `maskedGrad: dW [${N},${K}] ${dy.dtype} is ${bytes} bytes, over maxStorageBufferBindingSize ${maxBinding}; keep the weight as row blocks (rowBlocks) and use maskedGradRowBlocks`,
    );
  }
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

export interface MaskedGradRowBlocksOptions {
  /**
   * The row blocks of dW to write, [N_b, K] each, the N_b summing to N (e.g. the ParamArena
   * slots of the weight's gradient blocks). Default: new tensors shaped by `rowBlocks`.
   */
  out?: readonly Tensor[];
  /** dW += the masked product (needs `out`). */
  accumulate?: boolean;
  version?: MatmulVersion;
}

/**
 * dW = mask ⊙ (dyᵀ·x) for a weight [N,K] larger than one storage binding, kept as row blocks:
 * block b is rows [n_b, n_b + N_b) of dW, [N_b, K]. `dy` is one [..., N] tensor (each block's
 * columns are copied out first: M·N_b elements against the block's M·N_b·K multiply-adds) or a
 * list of one [..., N_b] per block (what a linear layer run block by block produces). Each
 * block runs `maskedGrad` with its rows of the mask (`mask.rowBlock`, built once and kept), so
 * frozen tiles are still skipped; everything is encoded, nothing submitted.
 *
 * ```ts
 * const mask = new GradMask(ctx, [50257, 768], { rows: [[50000, 50257]] }); // only new tokens train
 * const dWte = maskedGradRowBlocks(ctx, dLogits, h, mask);                    // lavapipe: 2 blocks
 * ```
 */
export function maskedGradRowBlocks(ctx: GpuContext, dy: Tensor | readonly Tensor[], x: Tensor, mask: GradMask, o: MaskedGradRowBlocksOptions = {}): Tensor[] {
  const op = 'maskedGradRowBlocks';
  mask.checkLive(op);
  const [N, K] = mask.shape;
  x.buffer(`${op}: x`);
  if (o.accumulate && !o.out) throw new ArgumentError(`${op}: accumulate needs opts.out`);
  const shapes = o.out ? o.out.map((t) => [...t.shape]) : rowBlocks(ctx, [N, K], x.dtype);
  shapes.forEach((s, b) => {
    if (s.length !== 2 || s[1] !== K) throw new ShapeError(`${op}: out[${b}] has shape ${fmtShape(s)}, expected [rows, ${K}] (the mask is [${N},${K}])`);
  });
  const total = shapes.reduce((n, s) => n + s[0]!, 0);
  if (total !== N) throw new ShapeError(`${op}: the out blocks have ${total} rows in all, the mask has N = ${N}`);
  let M = 0;
  if (Array.isArray(dy)) {
    if (dy.length !== shapes.length) throw new ShapeError(`${op}: dy has ${dy.length} blocks and dW ${shapes.length}; they must match`);
    (dy as readonly Tensor[]).forEach((d, b) => {
      d.buffer(`${op}: dy[${b}]`);
      if (d.shape[d.shape.length - 1] !== shapes[b]![0]) throw new ShapeError(`${op}: dy[${b}] has shape ${fmtShape(d.shape)}, expected [..., ${shapes[b]![0]}] (block ${b}'s rows)`);
    });
  } else {
    const d = dy as Tensor;
    d.buffer(`${op}: dy`);
    if (d.shape[d.shape.length - 1] !== N) throw new ShapeError(`${op}: dy has shape ${fmtShape(d.shape)}, expected [..., N] with N = ${N} (the mask is [${N},${K}])`);
    M = d.size / N;
  }
  let start = 0;
  return shapes.map((s, b) => {
    const rows = s[0]!;
    const block = mask.rowBlock(start, start + rows);
    const out = o.out?.[b] ?? ctx.empty(s, x.dtype, `${op}.dW${b}`);
    const opts = { out, accumulate: o.accumulate, version: o.version };
    if (Array.isArray(dy)) maskedGrad(ctx, (dy as readonly Tensor[])[b]!, x, block, opts);
    else if (shapes.length === 1) maskedGrad(ctx, dy as Tensor, x, block, opts);
    else {
      const from = start;
      ctx.scope(() => void maskedGrad(ctx, slice(ctx, (dy as Tensor).view([M, N]), 1, from, rows), x, block, opts));
    }
    start += rows;
    return out;
  });
}
