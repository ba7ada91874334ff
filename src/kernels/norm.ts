/**
 * Launchers for src/wgsl/norm.wgsl (f32): LayerNorm and RMSNorm over the last axis, forward
 * (saving μ and rstd per row) and backward for x, γ and β.
 *
 * ```ts
 * const { y, stats } = layerNorm(ctx, x, gamma, beta);
 * const { dx, dgamma, dbeta } = normBackward(ctx, 'layer', x, gamma, stats, dy, { beta: true });
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import { KernelModule } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { checkTensor, fmtShape, grid2d, LANE_MAX_COLS, rowPath, type RowPath, sameShape } from './util.js';

export type NormKind = 'layer' | 'rms';

function mod(): KernelModule {
  return KernelModule.get('norm.wgsl', wgsl.norm);
}

/** How norm's row-wise entries cover their rows (see {@link RowPath}). */
export type NormRowPath = RowPath;

/** Force a row path (tests, benchmarks); 'auto' picks by {@link normRowPath}. */
export const normConfig: { rowPath: 'auto' | NormRowPath } = { rowPath: 'auto' };

/** Widest row the 'lane' path takes on a CPU adapter (see {@link LANE_MAX_COLS}: measured for both families). */
export const NORM_LANE_MAX_COLS = LANE_MAX_COLS;

/** The default row path for rows of `cols` on this device ({@link rowPath}), unless normConfig forces one. */
export function normRowPath(ctx: GpuContext, cols: number): NormRowPath {
  return rowPath(ctx, cols, normConfig.rowPath);
}

/** Entry and workgroups of a row-wise norm entry (norm_forward, norm_backward_x) for R rows of C. */
function rowDispatch(ctx: GpuContext, entry: string, R: number, C: number, constants: Record<string, boolean>, op: string): [string, [number, number, number]] {
  if (normRowPath(ctx, C) === 'workgroup') return [entry, grid2d(ctx, R, op)];
  const name = `${entry}_lane`;
  return [name, grid2d(ctx, Math.ceil(R / mod().workgroupSize(name, constants)[0]), op)]; // a lane per row
}

function check(op: string, x: Tensor, gamma: Tensor, beta?: Tensor, eps = 1e-5): [number, number] {
  checkTensor(op, 'x', x, 'f32');
  checkTensor(op, 'gamma', gamma, 'f32');
  const C = x.shape[x.shape.length - 1]!;
  if (gamma.size !== C) throw new ShapeError(`${op}: gamma has shape ${fmtShape(gamma.shape)}, expected [${C}] (x is ${fmtShape(x.shape)})`);
  if (beta) {
    checkTensor(op, 'beta', beta, 'f32');
    if (beta.size !== C) throw new ShapeError(`${op}: beta has shape ${fmtShape(beta.shape)}, expected [${C}]`);
  }
  if (!(eps > 0) || !Number.isFinite(eps)) throw new ArgumentError(`${op}: eps = ${eps}, expected a finite number > 0`);
  return [x.size / C, C];
}

function forward(ctx: GpuContext, kind: NormKind, x: Tensor, gamma: Tensor, beta: Tensor | undefined, eps: number): { y: Tensor; stats: Tensor } {
  const op = kind === 'layer' ? 'layerNorm' : 'rmsNorm';
  const [R, C] = check(op, x, gamma, beta, eps);
  const y = ctx.empty(x.shape, 'f32', `${op}.out`);
  const stats = ctx.empty([R, 2], 'f32', `${op}.stats`);
  const constants = { RMS: kind === 'rms', HAS_BETA: beta !== undefined };
  const [entry, workgroups] = rowDispatch(ctx, 'norm_forward', R, C, constants, op);
  ctx.dispatch(mod(), entry, {
    bindings: { x, gamma, beta: beta ?? gamma, out: y, stats },
    params: { rows: R, cols: C, eps },
    constants,
    workgroups,
  });
  return { y, stats };
}

/** LayerNorm over the last axis; `stats` ([R,2]: μ, rstd) feeds normBackward. */
export const layerNorm = (ctx: GpuContext, x: Tensor, gamma: Tensor, beta?: Tensor, eps = 1e-5) => forward(ctx, 'layer', x, gamma, beta, eps);
/** RMSNorm over the last axis (no β); `stats` feeds normBackward. */
export const rmsNorm = (ctx: GpuContext, x: Tensor, gamma: Tensor, eps = 1e-6) => forward(ctx, 'rms', x, gamma, undefined, eps);

/** Gradients of a LayerNorm/RMSNorm: dx always, dγ and dβ when asked. */
export function normBackward(
  ctx: GpuContext,
  kind: NormKind,
  x: Tensor,
  gamma: Tensor,
  stats: Tensor,
  dy: Tensor,
  o: { beta?: boolean; needDx?: boolean; needParams?: boolean } = {},
): { dx?: Tensor; dgamma?: Tensor; dbeta?: Tensor } {
  const op = 'normBackward';
  const [R, C] = check(op, x, gamma);
  checkTensor(op, 'dy', dy, 'f32');
  if (!sameShape(x.shape, dy.shape)) throw new ShapeError(`${op}: dy ${fmtShape(dy.shape)} must match x ${fmtShape(x.shape)}`);
  const constants = { RMS: kind === 'rms', HAS_BETA: o.beta ?? false };
  const out: { dx?: Tensor; dgamma?: Tensor; dbeta?: Tensor } = {};
  if (o.needDx ?? true) {
    out.dx = ctx.empty(x.shape, 'f32', `${op}.dx`);
    const [entry, workgroups] = rowDispatch(ctx, 'norm_backward_x', R, C, constants, op);
    ctx.dispatch(mod(), entry, {
      bindings: { x, gamma, dy, saved: stats, out: out.dx },
      params: { rows: R, cols: C, eps: 1 },
      constants,
      workgroups,
    });
  }
  if (o.needParams ?? true) {
    out.dgamma = ctx.empty([C], 'f32', `${op}.dgamma`);
    const dbeta = ctx.empty([C], 'f32', `${op}.dbeta`);
    ctx.dispatch(mod(), 'norm_backward_params', {
      bindings: { x, dy, saved: stats, out: out.dgamma, dbeta },
      params: { rows: R, cols: C, eps: 1 },
      constants,
      workgroups: grid2d(ctx, Math.ceil(C / mod().workgroupSize('norm_backward_params')[0]), op), // a lane per column
    });
    if (o.beta) out.dbeta = dbeta;
    else dbeta.dispose();
  }
  return out;
}
