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
import { checkTensor, fmtShape, grid2d, outputTensor, sameShape } from './util.js';

const WG = 256;

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
    workgroups: grid2d(ctx, Math.ceil(n / (WG * elementsPerInvocation(ctx))), entry),
  });
}

function finite(op: string, name: string, v: number): void {
  if (!Number.isFinite(v)) throw new ArgumentError(`${op}: ${name} = ${v}, expected a finite number`);
}

/** Set every element of `t` to `value`. */
export function fill(ctx: GpuContext, t: Tensor, value: number): Tensor {
  checkTensor('fill', 't', t);
  finite('fill', 'value', value);
  run(ctx, 'fill', t.dtype, t.size, { out: t }, 1, value);
  return t;
}

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
  run(ctx, 'transpose2d', dt, x.size, { x, out: o }, C);
  return o;
}
