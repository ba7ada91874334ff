/**
 * Reverse-mode autograd over the kernels: a tape of op records per context.
 *
 * An op records itself only when grad mode is on and one of its inputs requires a gradient.
 * `backward(loss)` walks the records in reverse, calls each op's backward with the output
 * gradient and which inputs need one, and accumulates (`+=`) into `grad`, so a tensor used
 * twice gets both contributions. Inputs that do not require a gradient get none, and no
 * kernel runs for them: a frozen parameter costs nothing.
 *
 * Ownership: a recorded op's output belongs to the tape (moved out of any scope), because
 * backward needs it. `backward()` releases every recorded output and saved tensor except the
 * loss and those passed in `keep` (which become the caller's to dispose); `clearTape()` drops
 * a tape that will not be differentiated. A released output the caller still holds is
 * disposed: using it throws a DisposedError that says backward() (or clearTape()) released
 * it. Leaves (parameters, inputs) are never disposed by the tape.
 *
 * Only the recording ops (`autograd.*`) put gradients on the tape; the kernels of the same
 * names (the top-level `matmul`, `add`, `relu`…) record nothing. So that mixing them cannot
 * lose a gradient silently, the tape watches every dispatch on a context that has a tensor
 * requiring a gradient: a kernel outside the tape that reads a parameter (or a recorded
 * output) marks what it writes as having lost that gradient, the mark travels through further
 * unrecorded kernels, and `backward()` refuses, before running anything, with an
 * ArgumentError naming the parameter and the kernel if a marked tensor reaches the loss.
 * Work meant to carry no gradient goes under `noGrad(ctx, …)` or through `autograd.detach`.
 * (Tensors the caller derives by `view`/`window` and copies made with `ctx.copy` are not
 * followed.)
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import { Tensor } from '../gpu/tensor.js';
import { add, full } from '../kernels/elementwise.js';
import type { GradMask } from '../kernels/maskedGrad.js';

export interface GradInfo {
  requiresGrad: boolean;
  grad: Tensor | null;
  /** Partly frozen: only the entries the mask leaves trainable get a gradient (see linear). */
  mask: GradMask | null;
}

/** Autograd state of a tensor (kept beside it, so the GPU layer stays autograd-free). */
const info = new WeakMap<Tensor, GradInfo>();

export function gradInfo(t: Tensor): GradInfo {
  let g = info.get(t);
  if (!g) info.set(t, (g = { requiresGrad: false, grad: null, mask: null }));
  return g;
}

/** Mark `t` as a leaf that accumulates a gradient (a trainable parameter). Returns t. */
export function requiresGrad<T extends Tensor>(t: T, on = true): T {
  gradInfo(t).requiresGrad = on;
  if (on) watch(t.ctx);
  return t;
}

/**
 * Freeze part of a weight: its gradient is computed with the masked-gradient kernel, which
 * skips frozen tiles and writes exactly 0 for frozen entries (used by `linear`). Implies
 * requiresGrad. Pass null to unfreeze.
 */
export function setGradMask<T extends Tensor>(t: T, mask: GradMask | null): T {
  if (mask && (mask.shape[0] !== t.shape[0] || mask.shape[1] !== t.shape[1] || t.shape.length !== 2)) {
    throw new ShapeError(`setGradMask: the mask is [${mask.shape.join(',')}], tensor '${t.label}' is [${t.shape.join(',')}]`);
  }
  const g = gradInfo(t);
  g.mask = mask;
  if (mask) {
    g.requiresGrad = true;
    watch(t.ctx);
  }
  return t;
}

/** The accumulated gradient of `t`, or null. */
export function grad(t: Tensor): Tensor | null {
  return info.get(t)?.grad ?? null;
}

/** Dispose and forget the gradients of `params`. */
export function zeroGrad(params: Tensor[]): void {
  for (const p of params) {
    const g = info.get(p);
    g?.grad?.dispose();
    if (g) g.grad = null;
  }
}

export interface Record_ {
  name: string;
  inputs: Tensor[];
  output: Tensor;
  /** Gradients of the inputs from the output's gradient; null where `needs[i]` is false. */
  backward: (gy: Tensor, needs: boolean[]) => (Tensor | null)[];
  /** Tensors made for backward only; disposed with the record. */
  saved: Tensor[];
  /** Frees what else the record holds (token ids); called when the record is dropped. */
  release?: (() => void) | undefined;
  /** Tensors backward reads that are not inputs (a cross-entropy target): kept alive like inputs. */
  reads?: Tensor[];
  /** Inputs that came from a gradient-carrying tensor through a kernel that records nothing. */
  broken?: { input: number; lost: Lost }[];
}

/** How a tensor lost a gradient: `kernel`, which records nothing, read `source` (a parameter or a recorded output). */
interface Lost {
  source: Tensor;
  kernel: string;
}

interface Tape {
  records: Record_[];
  /** Outputs of recorded ops, disposed after backward. */
  held: Tensor[];
  enabled: boolean;
  /** Tensors produced by recorded ops, whose gradients flow. */
  tracked: WeakSet<Tensor>;
  /** > 0 while a recording op's forward or backward() runs: their kernels are the tape's own. */
  inOp: number;
  /** Tensors written by a non-recording kernel from something that carries a gradient. */
  lost: WeakMap<Tensor, Lost>;
  watching: boolean;
  /** What the records' backward reads besides held outputs (inputs, targets), by storage owner. */
  reads: Set<Tensor>;
  /** Of those, tensors whose scope closed before backward: the tape disposes them when it clears. */
  adopted: Tensor[];
}

const tapes = new WeakMap<GpuContext, Tape>();

function tape(ctx: GpuContext): Tape {
  let t = tapes.get(ctx);
  if (!t) {
    const tp: Tape = { records: [], held: [], enabled: true, tracked: new WeakSet(), inOp: 0, lost: new WeakMap(), watching: false, reads: new Set(), adopted: [] };
    tapes.set(ctx, (t = tp));
    // A forward run in a scope that closes before backward (`const loss = ctx.scope(() => f(x))`,
    // then `backward(ctx, loss)`) would free inputs the backward still reads: the tape takes them
    // over instead, and frees them when it clears.
    ctx.adoptOnScopeExit((x) => {
      if (!tp.reads.has(x)) return false;
      tp.adopted.push(x);
      return true;
    });
  }
  return t;
}

/** Watch the context's dispatches (once it has a tensor that requires a gradient). */
function watch(ctx: GpuContext): void {
  const tp = tape(ctx);
  if (tp.watching) return;
  tp.watching = true;
  ctx.observeDispatches((kernel, read, written) => {
    if (!tp.enabled || tp.inOp > 0) return;
    let lost: Lost | undefined;
    for (const t of read) {
      lost = needsGrad(ctx, t) ? { source: t, kernel } : t.parent && needsGrad(ctx, t.parent) ? { source: t.parent, kernel } : tp.lost.get(t);
      if (lost) break;
    }
    // A written binding may be read too (in place): a parameter updated in place counts, not an old mark.
    if (!lost) for (const t of written) if (needsGrad(ctx, t)) lost = { source: t, kernel };
    for (const t of written) {
      if (lost) tp.lost.set(t, lost);
      else tp.lost.delete(t);
    }
  });
}

/** Run a recording op's forward: its kernels are the tape's own, not unrecorded consumers. */
export function withinOp<T>(ctx: GpuContext, fn: () => T): T {
  const tp = tape(ctx);
  tp.inOp++;
  try {
    return fn();
  } finally {
    tp.inOp--;
  }
}

/** Does `t` carry a gradient (a leaf that requires one, or the output of a recorded op)? */
export function needsGrad(ctx: GpuContext, t: Tensor): boolean {
  return info.get(t)?.requiresGrad === true || tape(ctx).tracked.has(t);
}

/** Record an op if grad mode is on and an input carries a gradient. Used by defineOp. */
export function record(ctx: GpuContext, r: Record_): void {
  const tp = tape(ctx);
  const needs = r.inputs.map((x) => needsGrad(ctx, x));
  const lost = r.inputs.map((x, i) => (needs[i] ? undefined : tp.lost.get(x)));
  if (!tp.enabled || !needs.some(Boolean)) {
    for (const s of r.saved) s.dispose();
    r.release?.();
    // Not on the tape, but made from a lost gradient: the mark travels on.
    const l = lost.find((x) => x !== undefined);
    if (l && tp.enabled) tp.lost.set(r.output, l);
    return;
  }
  const broken = lost.flatMap((l, input) => (l ? [{ input, lost: l }] : []));
  if (broken.length) r.broken = broken;
  tp.tracked.add(r.output);
  tp.records.push(r);
  ctx.keep(r.output);
  ctx.keep(r.saved);
  tp.held.push(r.output);
  for (const x of [...r.inputs, ...(r.reads ?? [])]) tp.reads.add(x.parent ?? x);
}

/**
 * Drop the tape without differentiating: releases held outputs (except `keep`, which become the
 * caller's) and saved tensors. A released output reads as "released by clearTape()".
 */
export function clearTape(ctx: GpuContext, keep: Tensor[] = [], by = 'clearTape()'): void {
  const tp = tape(ctx);
  for (const r of tp.records) {
    for (const s of r.saved) s.dispose();
    r.release?.();
  }
  const kept = new Set(keep);
  for (const t of tp.held) if (!kept.has(t)) t.release(by);
  for (const t of tp.adopted) if (!kept.has(t)) t.dispose();
  tp.records.length = 0;
  tp.held.length = 0;
  tp.reads.clear();
  tp.adopted.length = 0;
}

/** Run `fn` without recording (evaluation, optimizer updates). */
export function noGrad<T>(ctx: GpuContext, fn: () => T): T {
  const tp = tape(ctx);
  const was = tp.enabled;
  tp.enabled = false;
  try {
    return fn();
  } finally {
    tp.enabled = was;
  }
}

/** Is grad mode on (not inside `noGrad`)? Ops record only then. */
export function gradEnabled(ctx: GpuContext): boolean {
  return tape(ctx).enabled;
}

/** Number of records on the tape (tests, debugging). */
export function tapeLength(ctx: GpuContext): number {
  return tape(ctx).records.length;
}

export interface BackwardOptions {
  /** The gradient of `loss` (required when it has more than one element). */
  seed?: Tensor;
  /** Recorded outputs to leave alive: backward releases all others; these become the caller's to dispose. */
  keep?: Tensor[];
}

/**
 * Backpropagate from `loss` (a one-element tensor, or any tensor with an explicit `seed`
 * gradient of its shape). Leaves that require a gradient get `grad(leaf)` (accumulated);
 * every intermediate gradient and record is released, and every recorded output but the
 * loss and `keep` (using one afterwards is a DisposedError naming backward()).
 *
 * Throws an ArgumentError, before any kernel runs, when a parameter's gradient would be lost
 * because a non-recording kernel consumed it on the way to the loss (see the file header).
 */
export function backward(ctx: GpuContext, loss: Tensor, seedOrOptions?: Tensor | BackwardOptions): void {
  const o: BackwardOptions = seedOrOptions instanceof Tensor ? { seed: seedOrOptions } : (seedOrOptions ?? {});
  const seed = o.seed;
  const tp = tape(ctx);
  if (!needsGrad(ctx, loss)) {
    const l = tp.lost.get(loss);
    if (l) throw lostGradient(ctx, l, `'${loss.label}'`, 'is the loss');
    throw new ArgumentError(`backward: '${loss.label}' is not on the tape (no input of the ops that made it requires a gradient)`);
  }
  if (!seed && loss.size !== 1) {
    throw new ShapeError(`backward: '${loss.label}' has shape [${loss.shape.join(',')}]; a non-scalar needs a seed gradient of that shape`);
  }
  if (seed && seed.size !== loss.size) throw new ShapeError(`backward: seed has ${seed.size} elements, loss has ${loss.size}`);
  checkNothingLost(ctx, tp, loss);
  tp.inOp++;
  try {
    accumulateGradients(ctx, tp, loss, seed);
  } finally {
    tp.inOp--;
  }
  clearTape(ctx, [loss, ...(o.keep ?? [])], 'backward()');
}

/** Refuse if a record the loss's gradient reaches has an input whose gradient a non-recording kernel lost. */
function checkNothingLost(ctx: GpuContext, tp: Tape, loss: Tensor): void {
  const reached = new Set<Tensor>([loss]);
  for (let i = tp.records.length - 1; i >= 0; i--) {
    const r = tp.records[i]!;
    if (!reached.has(r.output)) continue;
    const b = r.broken?.[0];
    if (b) throw lostGradient(ctx, b.lost, `'${r.inputs[b.input]!.label}'`, `feeds '${r.name}' on the tape`);
    for (const x of r.inputs) if (needsGrad(ctx, x)) reached.add(x);
  }
}

/** The ArgumentError for a gradient lost through `l.kernel`: names the parameter(s) behind `l.source`. */
function lostGradient(ctx: GpuContext, l: Lost, what: string, where: string): ArgumentError {
  const tp = tape(ctx);
  const params: Tensor[] = [];
  const seen = new Set<Tensor>();
  const visit = (t: Tensor) => {
    if (seen.has(t)) return;
    seen.add(t);
    if (gradInfo(t).requiresGrad) params.push(t);
    for (const r of tp.records) if (r.output === t) r.inputs.forEach(visit);
  };
  visit(l.source);
  const names = params.map((p) => `'${p.label}'`).join(', ') || `'${l.source.label}'`;
  const from = gradInfo(l.source).requiresGrad ? 'from it' : `from '${l.source.label}', which carries its gradient,`;
  return new ArgumentError(
    `backward: parameter ${names} requires a gradient but would get none (or only part of it): ${what} was computed ${from} by ${l.kernel}, ` +
      `a kernel that records nothing, and ${where}. Between a parameter and the loss use the recording ops (autograd.matmul, autograd.add, …); ` +
      'for a value that should carry no gradient, compute it under noGrad(ctx, …) or with autograd.detach',
  );
}

/** The backward walk: each reached record's backward, gradients accumulated into the leaves' `grad`. */
function accumulateGradients(ctx: GpuContext, tp: Tape, loss: Tensor, seed: Tensor | undefined): void {
  const grads = new Map<Tensor, Tensor>();
  grads.set(loss, seed ?? ctx.keep(full(ctx, loss.shape, 1, loss.dtype, 'seed')));
  const ownSeed = !seed;
  const accumulate = (t: Tensor, g: Tensor) => {
    const prev = grads.get(t);
    if (prev) {
      grads.set(t, ctx.keep(add(ctx, prev, g)));
      prev.dispose();
      g.dispose();
    } else grads.set(t, g);
  };
  for (let i = tp.records.length - 1; i >= 0; i--) {
    const r = tp.records[i]!;
    const gy = grads.get(r.output);
    if (!gy) continue;
    const needs = r.inputs.map((x) => needsGrad(ctx, x));
    const gx = ctx.scope(() => r.backward(gy, needs));
    grads.delete(r.output);
    if (gy !== seed || ownSeed) gy.dispose();
    gx.forEach((g, k) => {
      if (!g) return;
      if (!needs[k]) {
        g.dispose();
        return;
      }
      accumulate(r.inputs[k]!, ctx.keep(g));
    });
  }
  // What is left are the leaves' gradients: add them to `grad`.
  for (const [t, g] of grads) {
    const gi = gradInfo(t);
    if (!gi.requiresGrad) {
      g.dispose();
      continue;
    }
    if (gi.grad) {
      const sum = ctx.keep(add(ctx, gi.grad, g));
      gi.grad.dispose();
      g.dispose();
      gi.grad = sum;
    } else gi.grad = g;
  }
}

/**
 * Check mode for numerics: read back every output on the tape, in recording order, and
 * return the first op whose output holds NaN or ±Inf (with its record index), or null.
 * Call it after the forward, before `backward()`. It synchronises with the GPU: a debugging
 * aid, not for every step.
 */
export async function findNonFinite(ctx: GpuContext): Promise<{ op: string; index: number; output: string } | null> {
  const tp = tape(ctx);
  for (let i = 0; i < tp.records.length; i++) {
    const r = tp.records[i]!;
    const v = await r.output.read();
    for (let k = 0; k < v.length; k++) {
      if (!Number.isFinite(v[k]!)) return { op: r.name, index: i, output: r.output.label };
    }
  }
  return null;
}
