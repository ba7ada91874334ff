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

/** A copy of every base parameter (the arena's storage, one copy dispatch); the caller disposes it. */
export function snapshot(model: ArenaModel): Tensor {
  return model.ctx.keep(copy(model.ctx, model.baseArena.storage));
}

function check(model: ArenaModel, pre: Tensor, ft: Tensor): void {
  const s = model.baseArena.storage;
  for (const [n, t] of [['pre', pre], ['ft', ft]] as const) {
    t.buffer(`interpolate: ${n}`);
    if (t.size !== s.size) throw new ShapeError(`interpolate: ${n} has ${t.size} elements, the model's arena ${s.size} (a snapshot of another model?)`);
  }
}

/**
 * Set the model's parameters to (1 − α)·pre + α·ft in one dispatch. α = 0 and α = 1 give the
 * endpoints bit for bit; α outside [0, 1] extrapolates.
 */
export function interpolate(model: ArenaModel, pre: Tensor, ft: Tensor, alpha: number): void {
  if (!Number.isFinite(alpha)) throw new ArgumentError(`interpolate: alpha = ${alpha}, expected a finite number`);
  check(model, pre, ft);
  lerp(model.ctx, pre, ft, alpha, model.baseArena.storage);
}

/**
 * For each α: interpolate, then `evaluate(α)`; no allocation beyond what `evaluate` does. The
 * model is left at the last α (pass 1 last to keep the fine-tuned weights).
 */
export async function interpolationSweep<T>(model: ArenaModel, pre: Tensor, ft: Tensor, alphas: readonly number[], evaluate: (alpha: number) => Promise<T> | T): Promise<{ alpha: number; value: T }[]> {
  check(model, pre, ft);
  const out: { alpha: number; value: T }[] = [];
  for (const a of alphas) {
    interpolate(model, pre, ft, a);
    out.push({ alpha: a, value: await evaluate(a) });
  }
  return out;
}
