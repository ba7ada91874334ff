/**
 * WiSE-FT (Wortsman et al., 2022): θ(α) = (1 − α)·θ_pre + α·θ_ft over every parameter of a
 * model, in one lerp dispatch over the model's parameter arena. Works for full fine-tunes and for
 * merged LoRA models (merge, then snapshot: the merged weights are θ_ft).
 *
 * ```ts
 * const pre = snapshot(model);              // before fine-tuning
 * … train …
 * const ft = snapshot(model);
 * const curve = await interpolationSweep(model, pre, ft, [0, 0.5, 1], async (a) => evaluate(model));
 * ```
 */
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import { copy } from '../kernels/elementwise.js';
import { lerp } from '../kernels/lerp.js';
import type { ParamArena } from '../optim/arena.js';
import type { Module } from '../nn/module.js';

/** A model whose base parameters live in one arena (the GPT-2 models). */
export interface ArenaModel extends Module {
  readonly baseArena: ParamArena;
}

/** A copy of a model's base parameters: one tensor per chunk of its arena. */
export class Snapshot {
  constructor(readonly chunks: readonly Tensor[]) {}

  /** Elements over all chunks. */
  get size(): number {
    return this.chunks.reduce((a, t) => a + t.size, 0);
  }

  dispose(): void {
    for (const t of this.chunks) t.dispose();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A copy of every base parameter (one copy dispatch per arena chunk); the caller disposes it. */
export function snapshot(model: ArenaModel): Snapshot {
  const ctx = model.ctx;
  return new Snapshot(model.baseArena.chunks.map((c) => ctx.keep(copy(ctx, c))));
}

function check(model: ArenaModel, pre: Snapshot, ft: Snapshot): void {
  const chunks = model.baseArena.chunks;
  for (const [n, s] of [['pre', pre], ['ft', ft]] as const) {
    if (s.chunks.length !== chunks.length || s.chunks.some((t, i) => t.size !== chunks[i]!.size)) {
      throw new ShapeError(`interpolate: ${n} has ${s.size} elements in ${s.chunks.length} chunk(s), the model's arena ${chunks.reduce((a, t) => a + t.size, 0)} in ${chunks.length} (a snapshot of another model?)`);
    }
    s.chunks.forEach((t, i) => t.buffer(`interpolate: ${n}.chunks[${i}]`));
  }
}

/**
 * Set the model's parameters to (1 − α)·pre + α·ft, one dispatch per arena chunk (one for any
 * model within a storage binding). α = 0 and α = 1 give the endpoints bit for bit; α outside
 * [0, 1] extrapolates.
 */
export function interpolate(model: ArenaModel, pre: Snapshot, ft: Snapshot, alpha: number): void {
  if (!Number.isFinite(alpha)) throw new ArgumentError(`interpolate: alpha = ${alpha}, expected a finite number`);
  check(model, pre, ft);
  lerp(model.ctx, pre.chunks, ft.chunks, alpha, model.baseArena.chunks);
}

/**
 * For each α: interpolate, then `evaluate(α)`; no allocation beyond what `evaluate` does. The
 * model is left at the last α (pass 1 last to keep the fine-tuned weights).
 */
export async function interpolationSweep<T>(model: ArenaModel, pre: Snapshot, ft: Snapshot, alphas: readonly number[], evaluate: (alpha: number) => Promise<T> | T): Promise<{ alpha: number; value: T }[]> {
  check(model, pre, ft);
  const out: { alpha: number; value: T }[] = [];
  for (const a of alphas) {
    interpolate(model, pre, ft, a);
    out.push({ alpha: a, value: await evaluate(a) });
  }
  return out;
}
