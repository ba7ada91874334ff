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

/**
 * How a row-wise entry (softmax and norm families) covers its rows: 'workgroup' (one 64-lane
 * workgroup per row, tree reductions in workgroup memory) or 'lane' (one invocation per row
 * walking it serially, no barrier: the `_lane` entries).
 */
export type RowPath = 'workgroup' | 'lane';

/**
 * Widest row that the 'lane' path takes on a CPU adapter. Lavapipe (2 cores), GPU ms, workgroup
 * per row against lane per row at ~0.5–8M elements, softmax / its backward / LayerNorm / its dx:
 * 128 columns ×10 / ×8 / ×10 / ×10; 256: ×5.6 / ×4.6 / ×6.0 / ×5.6; 512: ×3.9 / ×3.0 / ×3.9 / ×3.4;
 * 1024 (512 and 8192 rows): ×2.3 / ×1.2–1.35 / ×2.1–3.1 / ×1.4–1.6; 2048: ×1.7 / ×1.0 / ×1.6–1.8 / ×1.0;
 * 4096: ×1.5 / ×0.8 / ×1.3 / ×0.8. So up to 1024 columns every entry gains, and from 2048 the
 * backward entries (two reads per element, and a single lane's serial loop) no longer do. Under
 * 128 rows (fewer lane workgroups than cores) both take under ~1 ms and neither wins clearly.
 * Measured with the row paths forced (see `bench/kernels.ts`, `--suites norm,softmax`).
 */
export const LANE_MAX_COLS = 1024;

/**
 * The row path for rows of `cols` on this device, unless `forced`. On a CPU adapter (lavapipe) a
 * workgroup's 64 invocations run as SIMD loops split at each barrier, and each tree reduction
 * costs ~7 barriers (2–3 reductions per row): one invocation per row, with no barrier, is faster
 * up to LANE_MAX_COLS columns (measured crossover in the constant's comment). On a GPU the
 * workgroup version stays: a lane per row reads its row serially, uncoalesced, and leaves the
 * GPU idle unless there are tens of thousands of rows (not measured here, no GPU).
 */
export function rowPath(ctx: GpuContext, cols: number, forced: 'auto' | RowPath): RowPath {
  if (forced !== 'auto') return forced;
  return ctx.caps.software && cols <= LANE_MAX_COLS ? 'lane' : 'workgroup';
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
