/**
 * Launchers for src/wgsl/elementwise.wgsl: fill, copy/cast, add/sub/mul (with a
 * broadcast second operand), scale, axpy, relu and gelu forward and backward.
 *
 * ```ts
 * const h = add(ctx, xw, bias);        // bias [N] broadcast over the rows of xw [M,N]
 * axpy(ctx, -lr, grad, weight);        // weight += -lr · grad, in place
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, ShapeError } from '../gpu/errors.js';
import { KernelModule, type DType } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { checkFinite as finite, checkTensor, fmtShape, grid2d, outputTensor, sameShape } from './util.js';

/**
 * Elements per invocation (see elementwise.wgsl): 32 on CPU adapters, where it makes copy and
 * fill 2–4× faster than one element each (measured on lavapipe: 1.4 -> 5.2 GB/s); 4 on GPUs,
 * which need many invocations in flight more than they need fewer of them.
 */
export function elementsPerInvocation(ctx: GpuContext): number {
  return ctx.caps.software ? 32 : 4;
}

export function elementwiseModule(dtype: DType): KernelModule {
  return KernelModule.get('elementwise.wgsl', wgsl.elementwise, dtype);
}

/** Lanes per workgroup of an elementwise.wgsl entry, from its `@workgroup_size`. */
function lanes(dtype: DType, entry: string): number {
  return elementwiseModule(dtype).workgroupSize(entry)[0];
}

function run(
  ctx: GpuContext,
  entry: string,
  dtype: DType,
  n: number,
  bindings: Record<string, Tensor>,
  ny = 1,
  alpha = 0,
): void {
  ctx.dispatch(elementwiseModule(dtype), entry, {
    bindings,
    params: { n, ny, alpha, per: elementsPerInvocation(ctx) },
    workgroups: grid2d(ctx, Math.ceil(n / (lanes(dtype, entry) * elementsPerInvocation(ctx))), entry),
  });
}

/** Set every element of `t` to `value`. */
export function fill(ctx: GpuContext, t: Tensor, value: number): Tensor {
  checkTensor('fill', 't', t);
  finite('fill', 'value', value);
  run(ctx, 'fill', t.dtype, t.size, { out: t }, 1, value);
  return t;
}

/** checkTensor for a one-element tensor; returns its dtype. */
function checkScalar(op: string, name: string, t: Tensor, dtype?: DType): DType {
  const dt = checkTensor(op, name, t, dtype);
  if (t.size !== 1) throw new ShapeError(`${op}: ${name} has shape ${fmtShape(t.shape)}, expected one element`);
  return dt;
}

/** `alpha · s` (s a one-element tensor, read on the GPU) in every element of a new tensor of `shape`. */
export function fillScalar(ctx: GpuContext, s: Tensor, shape: readonly number[], alpha = 1, out?: Tensor): Tensor {
  const dt = checkScalar('fillScalar', 's', s);
  finite('fillScalar', 'alpha', alpha);
  const o = outputTensor(ctx, 'fillScalar', out, shape, dt);
  run(ctx, 'fill_scalar', dt, o.size, { s, out: o }, 1, alpha);
  return o;
}

/** `alpha · s · (x − y)` with s a one-element tensor read on the GPU (the gradient of an MSE loss). */
export function scaledDiff(ctx: GpuContext, x: Tensor, y: Tensor, s: Tensor, alpha = 1, out?: Tensor): Tensor {
  const dt = checkTensor('scaledDiff', 'x', x);
  checkTensor('scaledDiff', 'y', y, dt);
  checkScalar('scaledDiff', 's', s, dt);
  finite('scaledDiff', 'alpha', alpha);
  if (!sameShape(x.shape, y.shape)) throw new ShapeError(`scaledDiff: y ${fmtShape(y.shape)} must match x ${fmtShape(x.shape)}`);
  const o = outputTensor(ctx, 'scaledDiff', out, x.shape, dt);
  run(ctx, 'scaled_diff', dt, x.size, { x, y, s, out: o }, 1, alpha);
  return o;
}

/** A new tensor of `shape` with every element `value` (one fill dispatch). */
export function full(ctx: GpuContext, shape: readonly number[], value: number, dtype: DType = 'f32', label = 'full'): Tensor {
  finite('full', 'value', value);
  return fill(ctx, ctx.empty(shape, dtype, label), value);
}

/** A new tensor of zeros. */
export const zeros = (ctx: GpuContext, shape: readonly number[], dtype: DType = 'f32') => full(ctx, shape, 0, dtype, 'zeros');
/** A new tensor of ones. */
export const ones = (ctx: GpuContext, shape: readonly number[], dtype: DType = 'f32') => full(ctx, shape, 1, dtype, 'ones');

/** A copy of `x` (into `out` if given). */
export function copy(ctx: GpuContext, x: Tensor, out?: Tensor): Tensor {
  const dt = checkTensor('copy', 'x', x);
  const o = outputTensor(ctx, 'copy', out, x.shape, dt);
  run(ctx, 'copy', dt, x.size, { x, out: o });
  return o;
}

/** `x` converted to `dtype` (f32 <-> f16; a copy when the dtypes match). */
export function cast(ctx: GpuContext, x: Tensor, dtype: DType, out?: Tensor): Tensor {
  checkTensor('cast', 'x', x);
  if (x.dtype === dtype) return copy(ctx, x, out);
  const o = outputTensor(ctx, 'cast', out, x.shape, dtype);
  if (dtype === 'f16') run(ctx, 'cast_to_t', 'f16', x.size, { x32: x, out: o });
  else run(ctx, 'cast_from_t', 'f16', x.size, { x, out32: o });
  return o;
}

function binary(entry: 'add' | 'sub' | 'mul', ctx: GpuContext, x: Tensor, y: Tensor, out?: Tensor): Tensor {
  const dt = checkTensor(entry, 'x', x);
  checkTensor(entry, 'y', y);
  if (y.dtype !== dt) throw new DTypeError(`${entry}: x is ${dt} and y is ${y.dtype}; they must match`);
  // y broadcasts when its shape is a suffix of x's (a bias [N] over [M,N], a row over a batch).
  const k = y.shape.length;
  const suffix = k <= x.shape.length && sameShape(x.shape.slice(x.shape.length - k), y.shape);
  if (!suffix) {
    throw new ShapeError(`${entry}: y ${fmtShape(y.shape)} does not broadcast to x ${fmtShape(x.shape)} (y's shape must equal x's or a suffix of it)`);
  }
  const o = outputTensor(ctx, entry, out, x.shape, dt);
  run(ctx, entry, dt, x.size, { x, y, out: o }, y.size);
  return o;
}

/** x + y, y broadcast over x's leading dimensions. */
export const add = (ctx: GpuContext, x: Tensor, y: Tensor, out?: Tensor) => binary('add', ctx, x, y, out);
/** x − y, y broadcast over x's leading dimensions. */
export const sub = (ctx: GpuContext, x: Tensor, y: Tensor, out?: Tensor) => binary('sub', ctx, x, y, out);
/** x ⊙ y, y broadcast over x's leading dimensions. */
export const mul = (ctx: GpuContext, x: Tensor, y: Tensor, out?: Tensor) => binary('mul', ctx, x, y, out);

/** alpha · x. */
export function scale(ctx: GpuContext, x: Tensor, alpha: number, out?: Tensor): Tensor {
  const dt = checkTensor('scale', 'x', x);
  finite('scale', 'alpha', alpha);
  const o = outputTensor(ctx, 'scale', out, x.shape, dt);
  run(ctx, 'scale', dt, x.size, { x, out: o }, 1, alpha);
  return o;
}

/** y ← alpha · x + y, in place; returns y. */
export function axpy(ctx: GpuContext, alpha: number, x: Tensor, y: Tensor): Tensor {
  const dt = checkTensor('axpy', 'x', x);
  checkTensor('axpy', 'y', y, dt);
  finite('axpy', 'alpha', alpha);
  if (!sameShape(x.shape, y.shape)) throw new ShapeError(`axpy: x ${fmtShape(x.shape)} and y ${fmtShape(y.shape)} differ`);
  run(ctx, 'axpy', dt, x.size, { x, acc: y }, 1, alpha);
  return y;
}

function unary(entry: 'relu' | 'gelu' | 'silu', ctx: GpuContext, x: Tensor, out?: Tensor): Tensor {
  const dt = checkTensor(entry, 'x', x);
  const o = outputTensor(ctx, entry, out, x.shape, dt);
  run(ctx, entry, dt, x.size, { x, out: o });
  return o;
}

function unaryBackward(entry: 'relu_backward' | 'gelu_backward' | 'silu_backward', ctx: GpuContext, x: Tensor, dy: Tensor, out?: Tensor): Tensor {
  const dt = checkTensor(entry, 'x', x);
  checkTensor(entry, 'dy', dy, dt);
  if (!sameShape(x.shape, dy.shape)) throw new ShapeError(`${entry}: dy ${fmtShape(dy.shape)} must match x ${fmtShape(x.shape)}`);
  const o = outputTensor(ctx, entry, out, x.shape, dt);
  run(ctx, entry, dt, x.size, { x, y: dy, out: o }, dy.size);
  return o;
}

export const relu = (ctx: GpuContext, x: Tensor, out?: Tensor) => unary('relu', ctx, x, out);
/** GELU, tanh approximation (PyTorch's `approximate='tanh'`). */
export const gelu = (ctx: GpuContext, x: Tensor, out?: Tensor) => unary('gelu', ctx, x, out);
/** SiLU (swish): x·σ(x). */
export const silu = (ctx: GpuContext, x: Tensor, out?: Tensor) => unary('silu', ctx, x, out);
/** dx = dy · σ(x)·(1 + x·(1 − σ(x))). */
export const siluBackward = (ctx: GpuContext, x: Tensor, dy: Tensor, out?: Tensor) => unaryBackward('silu_backward', ctx, x, dy, out);
/** dx = dy where x > 0, else 0. */
export const reluBackward = (ctx: GpuContext, x: Tensor, dy: Tensor, out?: Tensor) => unaryBackward('relu_backward', ctx, x, dy, out);
/** dx = dy · gelu'(x) (tanh approximation). */
export const geluBackward = (ctx: GpuContext, x: Tensor, dy: Tensor, out?: Tensor) => unaryBackward('gelu_backward', ctx, x, dy, out);

/** The transpose of a 2-D tensor ([R,C] -> [C,R]), e.g. to store a frozen weight as [in, out]. */
export function transpose(ctx: GpuContext, x: Tensor, out?: Tensor): Tensor {
  const dt = checkTensor('transpose', 'x', x);
  if (x.shape.length !== 2) throw new ShapeError(`transpose: x has shape ${fmtShape(x.shape)}, expected rank 2`);
  const [R, C] = x.shape as [number, number];
  const o = outputTensor(ctx, 'transpose', out, [C, R], dt);
  if (R % 4 === 0 && C % 4 === 0 && R / 4 <= (ctx.caps.limits.maxComputeWorkgroupsPerDimension ?? 65535)) {
    ctx.dispatch(elementwiseModule(dt), 'transpose2d_4x4', {
      bindings: { x4: x, out4: o },
      params: { n: x.size, ny: C, alpha: 0, per: 1 },
      workgroups: [Math.ceil(C / 4 / lanes(dt, 'transpose2d_4x4')), R / 4],
    });
  } else {
    run(ctx, 'transpose2d', dt, x.size, { x, out: o }, C);
  }
  return o;
}

/** Normalise an axis (negative counts from the end) of a shape, with a clear error. */
function axisOf(op: string, shape: readonly number[], axis: number): number {
  const a = axis < 0 ? shape.length + axis : axis;
  if (!Number.isInteger(a) || a < 0 || a >= shape.length) throw new ArgumentError(`${op}: axis ${axis} is out of range for shape ${fmtShape(shape)}`);
  return a;
}

/** Copy a block of columns between [rows, srcCols] and [rows, dstCols] views (slice / concat). */
function copyWindow(ctx: GpuContext, x: Tensor, out: Tensor, rows: number, width: number, srcCols: number, srcOff: number, dstCols: number, dstOff: number): void {
  const n = rows * width;
  const per = elementsPerInvocation(ctx);
  ctx.dispatch(elementwiseModule(x.dtype), 'copy_window', {
    bindings: { x, out },
    params: { n, width, srcCols, srcOff, dstCols, dstOff, per },
    workgroups: grid2d(ctx, Math.ceil(n / (lanes(x.dtype, 'copy_window') * per)), 'copy_window'),
  });
}

/**
 * The gradient of `slice`: zeros of `shape` with gy placed at [start, start + length) along `axis`.
 */
export function sliceBackward(ctx: GpuContext, gy: Tensor, shape: readonly number[], axis: number, start: number): Tensor {
  const dt = checkTensor('sliceBackward', 'gy', gy);
  const a = axisOf('sliceBackward', shape, axis);
  const dim = shape[a]!;
  const length = gy.shape[a]!;
  const inner = shape.slice(a + 1).reduce((p, d) => p * d, 1);
  const outer = shape.slice(0, a).reduce((p, d) => p * d, 1);
  const dx = full(ctx, shape, 0, dt, 'sliceBackward.out');
  copyWindow(ctx, gy, dx, outer, length * inner, length * inner, 0, dim * inner, start * inner);
  return dx;
}

/** x[..., start:start+length, ...] along `axis`. */
export function slice(ctx: GpuContext, x: Tensor, axis: number, start: number, length: number): Tensor {
  const dt = checkTensor('slice', 'x', x);
  const a = axisOf('slice', x.shape, axis);
  const dim = x.shape[a]!;
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 1 || start + length > dim) {
    throw new ShapeError(`slice: [${start}, ${start + length}) is not inside axis ${a} of size ${dim} (x ${fmtShape(x.shape)})`);
  }
  const inner = x.shape.slice(a + 1).reduce((p, d) => p * d, 1);
  const outer = x.size / (dim * inner);
  const shape = x.shape.map((d, i) => (i === a ? length : d));
  const out = ctx.empty(shape, dt, 'slice.out');
  copyWindow(ctx, x, out, outer, length * inner, dim * inner, start * inner, length * inner, 0);
  return out;
}

/** Concatenate tensors along `axis` (all other dimensions equal). */
export function concat(ctx: GpuContext, xs: readonly Tensor[], axis: number): Tensor {
  if (!xs.length) throw new ArgumentError('concat: no tensors');
  const dt = checkTensor('concat', 'xs[0]', xs[0]!);
  const a = axisOf('concat', xs[0]!.shape, axis);
  xs.forEach((t, i) => {
    checkTensor('concat', `xs[${i}]`, t, dt);
    if (t.shape.length !== xs[0]!.shape.length || t.shape.some((d, k) => k !== a && d !== xs[0]!.shape[k])) {
      throw new ShapeError(`concat: xs[${i}] ${fmtShape(t.shape)} does not match xs[0] ${fmtShape(xs[0]!.shape)} outside axis ${a}`);
    }
  });
  const total = xs.reduce((s, t) => s + t.shape[a]!, 0);
  const shape = xs[0]!.shape.map((d, i) => (i === a ? total : d));
  const inner = shape.slice(a + 1).reduce((p, d) => p * d, 1);
  const outer = shape.slice(0, a).reduce((p, d) => p * d, 1);
  const out = ctx.empty(shape, dt, 'concat.out');
  let off = 0;
  for (const t of xs) {
    const w = t.shape[a]! * inner;
    copyWindow(ctx, t, out, outer, w, w, 0, total * inner, off * inner);
    off += t.shape[a]!;
  }
  return out;
}

/** x [a, b, c, d] -> [a, c, b, d] (e.g. [batch, T, heads, dh] -> [batch, heads, T, dh]). */
export function swapAxes12(ctx: GpuContext, x: Tensor, dims: readonly [number, number, number, number]): Tensor {
  const dt = checkTensor('swapAxes12', 'x', x);
  const [a, b, c, d] = dims;
  if (a * b * c * d !== x.size) throw new ShapeError(`swapAxes12: dims [${dims.join(',')}] hold ${a * b * c * d} elements, x ${fmtShape(x.shape)} has ${x.size}`);
  const out = ctx.empty([a, c, b, d], dt, 'swapAxes12.out');
  const per = elementsPerInvocation(ctx);
  ctx.dispatch(elementwiseModule(dt), 'swap12', {
    bindings: { x, out },
    params: { n: x.size, b, c, d, per },
    workgroups: grid2d(ctx, Math.ceil(x.size / (lanes(dt, 'swap12') * per)), 'swapAxes12'),
  });
  return out;
}
