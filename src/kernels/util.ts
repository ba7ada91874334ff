/** Small helpers shared by launchers. */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, ShapeError, SizeLimitError } from '../gpu/errors.js';
import type { DType } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';

/**
 * A u32 storage buffer holding `data` (index lists, masks, tile lists), its size rounded up to
 * 16 bytes; empty data gives 16 zero bytes. A raw buffer of the context (counted in
 * `ctx.memory().rawBytes`): the caller frees it with `ctx.destroyAfterSubmit(buf)`.
 */
export function uploadU32(ctx: GpuContext, data: Uint32Array<ArrayBuffer>, label: string): GPUBuffer {
  return ctx.rawBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), label, data });
}

const unusedTables = new WeakMap<GpuContext, GPUBuffer>();
/**
 * One 16-byte zeroed u32 storage buffer per context, bound where an entry declares a u32 table
 * that this configuration never reads (matmul's aux without a mask, the optimizer's group
 * table for a single tensor). Lives as long as the context's device.
 */
export function unusedU32(ctx: GpuContext): GPUBuffer {
  let d = unusedTables.get(ctx);
  if (!d) {
    d = uploadU32(ctx, new Uint32Array(0), 'u32 table (unused)');
    unusedTables.set(ctx, d);
  }
  return d;
}

/** Throw an ArgumentError naming `op` and `name` unless v is finite (and >= min). */
export function checkFinite(op: string, name: string, v: number, min = -Infinity): void {
  if (!Number.isFinite(v) || v < min) throw new ArgumentError(`${op}: ${name} = ${v}, expected a finite number${min > -Infinity ? ` >= ${min}` : ''}`);
}

/** Workgroups covering `groups` in a 2-D grid, x at most maxComputeWorkgroupsPerDimension. */
export function grid2d(ctx: GpuContext, groups: number, op: string): [number, number, number] {
  const max = ctx.caps.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (groups <= max) return [groups, 1, 1];
  const y = Math.ceil(groups / max);
  if (y > max) throw new SizeLimitError(`${op}: ${groups} workgroups exceed ${max}² (maxComputeWorkgroupsPerDimension squared)`);
  return [Math.ceil(groups / y), y, 1];
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function fmtShape(s: readonly number[]): string {
  return `[${s.join(',')}]`;
}

/** Check `t` is live and has dtype `dtype` (when given); returns its dtype. */
export function checkTensor(op: string, name: string, t: Tensor, dtype?: DType): DType {
  t.buffer(`${op}: ${name}`);
  if (dtype && t.dtype !== dtype) throw new DTypeError(`${op}: ${name} is ${t.dtype}, expected ${dtype}`);
  return t.dtype;
}

/** The output tensor: `out` checked against shape and dtype, or a new one. */
export function outputTensor(
  ctx: GpuContext,
  op: string,
  out: Tensor | undefined,
  shape: readonly number[],
  dtype: DType,
): Tensor {
  if (!out) return ctx.empty(shape, dtype, `${op}.out`);
  checkTensor(op, 'out', out, dtype);
  if (!sameShape(out.shape, shape)) throw new ShapeError(`${op}: out has shape ${fmtShape(out.shape)}, expected ${fmtShape(shape)}`);
  return out;
}
