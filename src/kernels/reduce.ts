/**
 * Launchers for src/wgsl/reduce.wgsl: sum and mean over the last axis or over
 * everything, and the max absolute value (for clipping and NaN hunting).
 *
 * ```ts
 * const rowSums = sum(ctx, x);              // [M,N] -> [M]
 * const total = mean(ctx, x, 'all');        // -> [1]
 * const normSq = sumSquaresMany(ctx, arena.chunks); // Σ x² over several tensors -> [1]
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import { KernelModule, type DType } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { checkTensor, fmtShape, grid2d, outputTensor, sameShape } from './util.js';

/** Elements per row of the first pass of a whole-array reduction. */
const CHUNK = 4096;

export type ReduceAxis = -1 | 'all';

export function reduceModule(dtype: DType): KernelModule {
  return KernelModule.get('reduce.wgsl', wgsl.reduce, dtype);
}

type ReduceOp = 0 | 1 | 2 | 3;

/**
 * How a workgroup finishes its reduction: 'tree' (log2(256) barrier steps, for GPUs), 'serial'
 * (one barrier, then lane 0 adds the 256 partials: on CPU adapters each barrier suspends and
 * resumes every SIMD group of the workgroup; measured on lavapipe, the two-pass MSE over
 * 64×1024 went from 0.85–1.4 to 0.65–0.85 ms), or 'auto' (serial on software adapters).
 * Settable so tests and benchmarks can run both paths on any adapter.
 */
export const reduceConfig: { tail: 'auto' | 'serial' | 'tree' } = { tail: 'auto' };

function serialTail(ctx: GpuContext): boolean {
  return reduceConfig.tail === 'auto' ? ctx.caps.software : reduceConfig.tail === 'serial';
}

/** Whether reduce_rows4 (vec4 loads) serves rows of `cols` over n elements: rows are whole vec4s. */
export function reducesByVec4(n: number, cols: number): boolean {
  return cols % 4 === 0 && n % 4 === 0;
}

/** out[outOffset + r] = scale · reduce(row r of x viewed as rows of `cols` over n elements). */
function reduceRows(ctx: GpuContext, x: Tensor, n: number, cols: number, op: ReduceOp, scale: number, out: Tensor, y?: Tensor, outOffset = 0): void {
  const rows = Math.ceil(n / cols);
  const v4 = reducesByVec4(n, cols);
  ctx.dispatch(reduceModule(x.dtype), v4 ? 'reduce_rows4' : 'reduce_rows', {
    // y is read only by OP 3; the others bind x in its place.
    bindings: v4 ? { x4: x, y4: y ?? x, out } : { x, y: y ?? x, out },
    params: { n, cols, rows, scale, outOffset },
    constants: { OP: op, SERIAL_TAIL: serialTail(ctx) },
    workgroups: grid2d(ctx, rows, 'reduce'),
  });
}

function reduce(opName: string, ctx: GpuContext, x: Tensor, axis: ReduceAxis, op: ReduceOp, mean: boolean, out?: Tensor, y?: Tensor): Tensor {
  const dt = checkTensor(opName, 'x', x);
  if (y) {
    checkTensor(opName, 'y', y, dt);
    if (!sameShape(x.shape, y.shape)) throw new ShapeError(`${opName}: y ${fmtShape(y.shape)} must match x ${fmtShape(x.shape)}`);
  }
  if (axis === -1) {
    const cols = x.shape[x.shape.length - 1]!;
    const shape = x.shape.length > 1 ? x.shape.slice(0, -1) : [1];
    const o = outputTensor(ctx, opName, out, shape, dt);
    reduceRows(ctx, x, x.size, cols, op, mean ? 1 / cols : 1, o, y);
    return o;
  }
  if (axis !== 'all') throw new ArgumentError(`${opName}: axis ${String(axis)}, expected -1 (last) or 'all'`);
  // No limit on the count: the second pass is one row of ceil(n / CHUNK) partials (8192 for
  // the largest f32 tensor lavapipe binds; 256 lanes add 32 each).
  const rows = Math.ceil(x.size / CHUNK);
  const o = outputTensor(ctx, opName, out, [1], dt);
  const finalScale = mean ? 1 / x.size : 1;
  if (x.size <= CHUNK) {
    reduceRows(ctx, x, x.size, x.size, op, finalScale, o, y);
    return o;
  }
  // Two passes: partials over chunks, then one row over the partials.
  ctx.scope(() => {
    const partial = ctx.empty([rows], dt, `${opName}.partial`);
    reduceRows(ctx, x, x.size, CHUNK, op, 1, partial, y);
    // The partials are already squared: the second pass only adds them.
    reduceRows(ctx, partial, rows, rows, op >= 2 ? 0 : op, finalScale, o);
  });
  return o;
}

/** Sum over the last axis ([..., N] -> [...]; [N] -> [1]) or over everything (-> [1]). */
export const sum = (ctx: GpuContext, x: Tensor, axis: ReduceAxis = -1, out?: Tensor) => reduce('sum', ctx, x, axis, 0, false, out);
/** Mean over the last axis or over everything. */
export const mean = (ctx: GpuContext, x: Tensor, axis: ReduceAxis = -1, out?: Tensor) => reduce('mean', ctx, x, axis, 0, true, out);
/** max |x| over the last axis or over everything. */
export const maxAbs = (ctx: GpuContext, x: Tensor, axis: ReduceAxis = -1, out?: Tensor) => reduce('maxAbs', ctx, x, axis, 1, false, out);
/** Σ x² over the last axis or over everything (the squared L2 norm). */
export const sumSquares = (ctx: GpuContext, x: Tensor, axis: ReduceAxis = -1, out?: Tensor) => reduce('sumSquares', ctx, x, axis, 2, false, out);
/** Σ (x − y)² over the last axis or over everything; `mean` divides by the count (an MSE loss). */
export function sumSquaredDiff(ctx: GpuContext, x: Tensor, y: Tensor, o: { axis?: ReduceAxis; mean?: boolean; out?: Tensor } = {}): Tensor {
  return reduce(o.mean ? 'meanSquaredDiff' : 'sumSquaredDiff', ctx, x, o.axis ?? 'all', 3, o.mean ?? false, o.out, y);
}

/**
 * Σ x² over every element of every tensor in `xs` (same dtype) -> [1]: the squared global norm
 * of a parameter or gradient set larger than one storage binding (a chunked ParamArena's
 * chunks, an optimizer's gradients). Each tensor's first pass writes its partials (one per
 * 4096 elements) at its own offset in one partials tensor, then one pass adds them all: a
 * dispatch per tensor plus one, encoded, no readback. One tensor is `sumSquares(x, 'all')`.
 */
export function sumSquaresMany(ctx: GpuContext, xs: readonly Tensor[], out?: Tensor): Tensor {
  const op = 'sumSquaresMany';
  if (!xs.length) throw new ArgumentError(`${op}: no tensors`);
  const dt = checkTensor(op, 'xs[0]', xs[0]!);
  xs.forEach((x, i) => checkTensor(op, `xs[${i}]`, x, dt));
  if (xs.length === 1) return reduce(op, ctx, xs[0]!, 'all', 2, false, out);
  const o = outputTensor(ctx, op, out, [1], dt);
  const rows = xs.map((x) => Math.ceil(x.size / CHUNK));
  const total = rows.reduce((a, b) => a + b, 0);
  ctx.scope(() => {
    const partial = ctx.empty([total], dt, `${op}.partial`);
    let offset = 0;
    xs.forEach((x, i) => {
      reduceRows(ctx, x, x.size, CHUNK, 2, 1, partial, undefined, offset);
      offset += rows[i]!;
    });
    // The partials are already squared: this pass only adds them.
    reduceRows(ctx, partial, total, total, 0, 1, o);
  });
  return o;
}
