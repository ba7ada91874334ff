/**
 * Reverse-mode autograd over the kernels: a tape of op records per context.
 *
 * An op records itself only when grad mode is on and one of its inputs requires a gradient.
 * `backward(loss)` walks the records in reverse, calls each op's backward with the output
 * gradient and which inputs need one, and accumulates (`+=`) into `grad`, so a tensor used
 * twice gets both contributions. Inputs that do not require a gradient get none, and no
 * kernel runs for them: a frozen parameter costs nothing.
 *
 * Ownership: a recorded op's output is held by the tape (moved out of any scope), because
 * backward needs it. `backward()` releases every intermediate output and saved tensor except
 * the loss, which is the caller's to dispose; `clearTape()` drops a tape that will not be
 * differentiated. Leaves (parameters, inputs) are never disposed by the tape.
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
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
  if (mask) g.requiresGrad = true;
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
}

interface Tape {
  records: Record_[];
  /** Outputs of recorded ops, disposed after backward. */
  held: Tensor[];
  enabled: boolean;
  /** Tensors produced by recorded ops, whose gradients flow. */
  tracked: WeakSet<Tensor>;
}

const tapes = new WeakMap<GpuContext, Tape>();

function tape(ctx: GpuContext): Tape {
  let t = tapes.get(ctx);
  if (!t) tapes.set(ctx, (t = { records: [], held: [], enabled: true, tracked: new WeakSet() }));
  return t;
}

/** Does `t` carry a gradient (a leaf that requires one, or the output of a recorded op)? */
export function needsGrad(ctx: GpuContext, t: Tensor): boolean {
  return gradInfo(t).requiresGrad || tape(ctx).tracked.has(t);
}

/** Record an op if grad mode is on and an input carries a gradient. Used by defineOp. */
export function record(ctx: GpuContext, r: Record_): void {
  const tp = tape(ctx);
  if (!tp.enabled || !r.inputs.some((x) => needsGrad(ctx, x))) {
    for (const s of r.saved) s.dispose();
    r.release?.();
    return;
  }
  tp.tracked.add(r.output);
  tp.records.push(r);
  ctx.keep(r.output);
  ctx.keep(r.saved);
  tp.held.push(r.output);
}

/** Drop the tape without differentiating: releases held outputs (except `keep`) and saved tensors. */
export function clearTape(ctx: GpuContext, keep: Tensor[] = []): void {
  const tp = tape(ctx);
  for (const r of tp.records) {
    for (const s of r.saved) s.dispose();
    r.release?.();
  }
  for (const t of tp.held) if (!keep.includes(t)) t.dispose();
  tp.records.length = 0;
  tp.held.length = 0;
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

/** Number of records on the tape (tests, debugging). */
export function tapeLength(ctx: GpuContext): number {
  return tape(ctx).records.length;
}

/**
 * Backpropagate from `loss` (a one-element tensor, or any tensor with an explicit `seed`
 * gradient of its shape). Leaves that require a gradient get `grad(leaf)` (accumulated);
 * every intermediate gradient and record is released.
 */
export function backward(ctx: GpuContext, loss: Tensor, seed?: Tensor): void {
  const tp = tape(ctx);
  if (!needsGrad(ctx, loss)) {
    throw new ArgumentError(`backward: '${loss.label}' is not on the tape (no input of the ops that made it requires a gradient)`);
  }
  if (!seed && loss.size !== 1) {
    throw new ShapeError(`backward: '${loss.label}' has shape [${loss.shape.join(',')}]; a non-scalar needs a seed gradient of that shape`);
  }
  if (seed && seed.size !== loss.size) throw new ShapeError(`backward: seed has ${seed.size} elements, loss has ${loss.size}`);
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
  clearTape(ctx, [loss]);
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
