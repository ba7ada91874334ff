/**
 * Launchers for src/wgsl/softmax.wgsl (f32): softmax and log-softmax over the last axis
 * with their backward, and a fused softmax cross-entropy with class-index targets
 * (ignore-index), soft targets and label smoothing.
 *
 * ```ts
 * const { loss, saved } = crossEntropy(ctx, logits, { labels }, { labelSmoothing: 0.1 });
 * const dLogits = crossEntropyBackward(ctx, logits, saved, dLoss);  // dLoss: [1]
 * ```
 */
import type { BindingResource, GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import { KernelModule } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { checkTensor, fmtShape, grid2d, LANE_MAX_COLS, rowPath, type RowPath, outputTensor, sameShape } from './util.js';

function mod(): KernelModule {
  return KernelModule.get('softmax.wgsl', wgsl.softmax);
}

function rowsCols(op: string, x: Tensor): [number, number] {
  checkTensor(op, 'x', x, 'f32');
  const C = x.shape[x.shape.length - 1]!;
  return [x.size / C, C];
}

/** How softmax's row-wise entries cover their rows (see {@link RowPath}). */
export type SoftmaxRowPath = RowPath;

/**
 * Force a row path (tests, benchmarks); 'auto' picks by {@link softmaxRowPath}. Applies to
 * softmax, log-softmax, cross-entropy and their backward (not xent_mean, a single workgroup).
 */
export const softmaxConfig: { rowPath: 'auto' | SoftmaxRowPath } = { rowPath: 'auto' };

/** Widest row the 'lane' path takes on a CPU adapter (see {@link LANE_MAX_COLS}: measured for both families). */
export const SOFTMAX_LANE_MAX_COLS = LANE_MAX_COLS;

/** The default row path for rows of `cols` on this device ({@link rowPath}), unless softmaxConfig forces one. */
export function softmaxRowPath(ctx: GpuContext, cols: number): SoftmaxRowPath {
  return rowPath(ctx, cols, softmaxConfig.rowPath);
}

function rowwise(
  ctx: GpuContext,
  op: string,
  entry: string,
  rows: number,
  cols: number,
  bindings: Record<string, BindingResource>,
  extra: { ignoreIndex?: number; smoothing?: number; causalPeriod?: number; check?: number } = {},
  soft = false,
): void {
  const lane = softmaxRowPath(ctx, cols) === 'lane';
  const name = lane ? `${entry}_lane` : entry;
  const constants = { SOFT: soft, CAUSAL: extra.causalPeriod !== undefined };
  ctx.dispatch(mod(), name, {
    bindings,
    params: { rows, cols, ignoreIndex: extra.ignoreIndex ?? -100, smoothing: extra.smoothing ?? 0, period: extra.causalPeriod ?? 1, check: extra.check ?? 0 },
    constants,
    // 'lane': one invocation per row, so ceil(rows / rows per workgroup) workgroups.
    workgroups: grid2d(ctx, lane ? Math.ceil(rows / mod().workgroupSize(name, constants)[0]) : rows, op),
  });
}

/**
 * softmax over the last axis. With `causal`, x holds attention scores [..., T, T] and row t
 * sees only columns 0..t (later ones get probability 0).
 */
export function softmax(ctx: GpuContext, x: Tensor, out?: Tensor, o: { causal?: boolean } = {}): Tensor {
  const [R, C] = rowsCols('softmax', x);
  if (o.causal && (x.shape.length < 2 || x.shape[x.shape.length - 2] !== C)) {
    throw new ShapeError(`softmax: causal needs square score matrices [..., T, T], got ${fmtShape(x.shape)}`);
  }
  const y = outputTensor(ctx, 'softmax', out, x.shape, 'f32');
  rowwise(ctx, 'softmax', 'softmax_rows', R, C, { x, out: y }, o.causal ? { causalPeriod: C } : {});
  return y;
}

/** log-softmax over the last axis. */
export function logSoftmax(ctx: GpuContext, x: Tensor, out?: Tensor): Tensor {
  const [R, C] = rowsCols('logSoftmax', x);
  const o = outputTensor(ctx, 'logSoftmax', out, x.shape, 'f32');
  rowwise(ctx, 'logSoftmax', 'log_softmax_rows', R, C, { x, out: o });
  return o;
}

function backwardCheck(op: string, y: Tensor, dy: Tensor): [number, number] {
  const rc = rowsCols(op, y);
  checkTensor(op, 'dy', dy, 'f32');
  if (!sameShape(y.shape, dy.shape)) throw new ShapeError(`${op}: dy ${fmtShape(dy.shape)} must match y ${fmtShape(y.shape)}`);
  return rc;
}

/** dx from y = softmax(x) and dy. */
export function softmaxBackward(ctx: GpuContext, y: Tensor, dy: Tensor): Tensor {
  const [R, C] = backwardCheck('softmaxBackward', y, dy);
  const o = ctx.empty(y.shape, 'f32', 'softmaxBackward.out');
  rowwise(ctx, 'softmaxBackward', 'softmax_backward', R, C, { y, dy, out: o });
  return o;
}

/** dx from y = logSoftmax(x) and dy. */
export function logSoftmaxBackward(ctx: GpuContext, y: Tensor, dy: Tensor): Tensor {
  const [R, C] = backwardCheck('logSoftmaxBackward', y, dy);
  const o = ctx.empty(y.shape, 'f32', 'logSoftmaxBackward.out');
  rowwise(ctx, 'logSoftmaxBackward', 'log_softmax_backward', R, C, { y, dy, out: o });
  return o;
}

/**
 * Class indices [R] (f32 holding integers) or a target distribution [R, C] per row. Labels are
 * checked on the GPU: one that is neither the ignore index nor an integer in [0, C) counts for
 * nothing, and the next `sync()` / `read()` throws an ArgumentError naming the first such row
 * (there is no readback in the step; shapes and dtypes are checked at once, on the CPU).
 */
export type XentTarget = { labels: Tensor } | { soft: Tensor };

export interface XentOptions {
  /** Rows whose label equals this count for nothing (PyTorch's default -100). */
  ignoreIndex?: number;
  /** ε: the target becomes (1 − ε)·target + ε/C. */
  labelSmoothing?: number;
}

export interface XentSaved {
  target: XentTarget;
  opts: XentOptions;
  /** logΣexp per row [R]. */
  lse: Tensor;
  /** [2]: the mean loss and the number of counted rows. */
  stats: Tensor;
}

/** Both target bindings are declared by the kernels; the unused one gets the logits (never read). */
function targetBindings(t: XentTarget, logits: Tensor): { labels: Tensor; soft: Tensor } {
  return 'soft' in t ? { labels: logits, soft: t.soft } : { labels: t.labels, soft: logits };
}

function checkTarget(op: string, R: number, C: number, t: XentTarget): void {
  if ('labels' in t) {
    checkTensor(op, 'labels', t.labels, 'f32');
    if (t.labels.size !== R) throw new ShapeError(`${op}: labels has ${t.labels.size} entries, expected one per row (${R})`);
  } else {
    checkTensor(op, 'soft', t.soft, 'f32');
    if (t.soft.size !== R * C) throw new ShapeError(`${op}: soft targets ${fmtShape(t.soft.shape)}, expected [${R},${C}] like the logits`);
  }
}

/**
 * Mean cross-entropy of softmax(logits) against the targets, over counted rows -> [1].
 * `saved` is what crossEntropyBackward needs (dispose it after).
 */
export function crossEntropy(ctx: GpuContext, logits: Tensor, target: XentTarget, opts: XentOptions = {}): { loss: Tensor; saved: XentSaved } {
  const [R, C] = rowsCols('crossEntropy', logits);
  checkTarget('crossEntropy', R, C, target);
  const eps = opts.labelSmoothing ?? 0;
  if (!(eps >= 0 && eps <= 1)) throw new ArgumentError(`crossEntropy: labelSmoothing = ${eps}, expected 0 <= ε <= 1`);
  const soft = 'soft' in target;
  const tb = targetBindings(target, logits);
  const lse = ctx.empty([R], 'f32', 'crossEntropy.lse');
  const stats = ctx.empty([2], 'f32', 'crossEntropy.stats');
  const ignore = opts.ignoreIndex ?? -100;
  // Soft targets need no check (the kernels still declare the binding).
  const check = ctx.deviceCheck(
    soft
      ? null
      : (i, bits) =>
          new ArgumentError(
            `crossEntropy: labels[${i}] = ${new Float32Array(new Uint32Array([bits]).buffer)[0]}, expected an integer class index in [0, ${C}) ` +
              `or the ignoreIndex ${ignore} (checked on the GPU, reported at the first sync()/read() after the step; the row counted for nothing)`,
          ),
  );
  const x = { ignoreIndex: opts.ignoreIndex, smoothing: eps, check: check.slot };
  ctx.scope(() => {
    const rows = ctx.empty([R], 'f32', 'crossEntropy.rows');
    rowwise(ctx, 'crossEntropy', 'xent_rows', R, C, { x: logits, ...tb, out: rows, lse, checks: check.buffer }, x, soft);
    ctx.dispatch(mod(), 'xent_mean', {
      bindings: { y: rows, labels: tb.labels, out: stats, checks: check.buffer },
      params: { rows: R, cols: C, ignoreIndex: ignore, smoothing: eps, period: 1, check: check.slot },
      constants: { SOFT: soft, CAUSAL: false },
      workgroups: [1],
    });
  });
  const loss = ctx.empty([1], 'f32', 'crossEntropy.loss');
  ctx.copy(stats, loss, { bytes: 4, op: 'crossEntropy' });
  return { loss, saved: { target, opts, lse, stats } };
}

/** d logits from the upstream gradient of the mean loss (dLoss [1]). */
export function crossEntropyBackward(ctx: GpuContext, logits: Tensor, saved: XentSaved, dLoss: Tensor): Tensor {
  const [R, C] = rowsCols('crossEntropyBackward', logits);
  checkTensor('crossEntropyBackward', 'dLoss', dLoss, 'f32');
  const soft = 'soft' in saved.target;
  const tb = targetBindings(saved.target, logits);
  const dx = ctx.empty(logits.shape, 'f32', 'crossEntropy.dx');
  rowwise(
    ctx,
    'crossEntropyBackward',
    'xent_backward',
    R,
    C,
    { x: logits, ...tb, dy: dLoss, y: saved.lse, stats: saved.stats, out: dx },
    { ignoreIndex: saved.opts.ignoreIndex, smoothing: saved.opts.labelSmoothing },
    soft,
  );
  return dx;
}
