/**
 * Launchers for src/wgsl/lerp.wgsl: WiSE-FT weight interpolation over flat parameter
 * arenas, plus `flatten`/`unflatten` to pack a list of tensors into one arena (so a whole
 * model interpolates in one dispatch) and back.
 *
 * A model whose parameters are windows of a ParamArena needs no flatten: interpolate the
 * arenas' storage (same layout) directly, `lerpInPlace(ctx, model.storage, tuned.storage, α)`.
 *
 * ```ts
 * const pre = flatten(ctx, preTrained);  const ft = flatten(ctx, fineTuned);   // once
 * for (const alpha of [0, 0.25, 0.5, 0.75, 1]) {                               // no re-upload
 *   lerp(ctx, pre, ft, alpha, theta);  unflatten(ctx, theta, modelParams);  evaluate();
 * }
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, ShapeError } from '../gpu/errors.js';
import { KernelModule, type DType } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { checkTensor, fmtShape, grid2d, outputTensor, sameShape } from './util.js';

/** vec4s per lane (a runtime param: see lerp.wgsl); the lanes per workgroup come from the WGSL. */
const PER = 16;

export function lerpModule(dtype: DType): KernelModule {
  return KernelModule.get('lerp.wgsl', wgsl.lerp, dtype);
}

function dispatch(ctx: GpuContext, entry: string, dtype: DType, n: number, bindings: Record<string, Tensor>, alpha: number): void {
  const n4 = Math.ceil(n / 4);
  const m = lerpModule(dtype);
  const [lanes] = m.workgroupSize(entry);
  ctx.dispatch(m, entry, {
    bindings,
    params: { n4, alpha, per: PER },
    workgroups: grid2d(ctx, Math.ceil(n4 / (lanes * PER)), entry),
  });
}

function check(op: string, theta0: Tensor, theta1: Tensor, alpha: number): DType {
  const dt = checkTensor(op, 'theta0', theta0);
  checkTensor(op, 'theta1', theta1);
  if (theta1.dtype !== dt) throw new DTypeError(`${op}: theta0 is ${dt} and theta1 is ${theta1.dtype}; they must match`);
  if (!sameShape(theta0.shape, theta1.shape)) throw new ShapeError(`${op}: theta0 ${fmtShape(theta0.shape)} and theta1 ${fmtShape(theta1.shape)} differ`);
  if (!Number.isFinite(alpha)) throw new ArgumentError(`${op}: alpha = ${alpha}, expected a finite number`);
  return dt;
}

/** θ = (1 − α)·θ0 + α·θ1 into `out` (a new tensor if not given). α outside [0, 1] extrapolates. */
export function lerp(ctx: GpuContext, theta0: Tensor, theta1: Tensor, alpha: number, out?: Tensor): Tensor {
  const dt = check('lerp', theta0, theta1, alpha);
  const o = outputTensor(ctx, 'lerp', out, theta0.shape, dt);
  dispatch(ctx, 'lerp', dt, theta0.size, { theta0, theta1, out: o }, alpha);
  return o;
}

/** θ0 ← (1 − α)·θ0 + α·θ1, in place; returns θ0. */
export function lerpInPlace(ctx: GpuContext, theta0: Tensor, theta1: Tensor, alpha: number): Tensor {
  const dt = check('lerpInPlace', theta0, theta1, alpha);
  dispatch(ctx, 'lerp_inplace', dt, theta0.size, { acc: theta0, theta1 }, alpha);
  return theta0;
}

/** A vec4 copy kernel with lerp's chunking: the shader bandwidth baseline (benchmarks). */
export function copy4(ctx: GpuContext, x: Tensor, out: Tensor): Tensor {
  const dt = checkTensor('copy4', 'x', x);
  outputTensor(ctx, 'copy4', out, x.shape, dt);
  dispatch(ctx, 'copy4', dt, x.size, { theta0: x, out }, 0);
  return out;
}

/** Byte offsets of each tensor in a flat arena: 16-byte aligned, so every copy is legal. */
function arenaLayout(tensors: readonly Tensor[], op: string): { offsets: number[]; elements: number; dtype: DType } {
  if (!tensors.length) throw new ArgumentError(`${op}: no tensors`);
  const dtype = tensors[0]!.dtype;
  const per = dtype === 'f16' ? 2 : 4;
  const offsets: number[] = [];
  let bytes = 0;
  tensors.forEach((t, i) => {
    checkTensor(op, `tensors[${i}]`, t, dtype);
    offsets.push(bytes);
    bytes += Math.ceil(t.byteLength / 16) * 16;
  });
  return { offsets, elements: bytes / per, dtype };
}

/** Pack tensors (same dtype) into one flat arena tensor, each at a 16-byte-aligned offset. */
export function flatten(ctx: GpuContext, tensors: readonly Tensor[]): Tensor {
  const { offsets, elements, dtype } = arenaLayout(tensors, 'flatten');
  const flat = ctx.empty([elements], dtype, 'arena');
  tensors.forEach((t, i) => ctx.copy(t, flat, { dstOffset: offsets[i]!, op: 'flatten' }));
  return flat;
}

/** Copy an arena made by `flatten` back into tensors of the same shapes. */
export function unflatten(ctx: GpuContext, flat: Tensor, tensors: readonly Tensor[]): void {
  const { offsets, elements } = arenaLayout(tensors, 'unflatten');
  checkTensor('unflatten', 'flat', flat, tensors[0]!.dtype);
  if (flat.size !== elements) throw new ShapeError(`unflatten: flat has ${flat.size} elements, the tensors' arena needs ${elements}`);
  tensors.forEach((t, i) => ctx.copy(flat, t, { srcOffset: offsets[i]!, bytes: Math.ceil(t.byteLength / 4) * 4, op: 'unflatten' }));
}
