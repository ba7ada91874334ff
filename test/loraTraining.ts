/**
 * A few AdamW steps of one LoRA layer with its factors in separate tensors or in a ParamArena,
 * shared by the Node test (test/kernels/optim.test.ts) and the browser page (test/browser): Node-free, the
 * library only.
 */
import { AdamW, autograd, backward, grad, LoraLayer, ParamArena, requiresGrad, zeroGrad } from '../src/index.js';
import type { GpuContext } from '../src/gpu/context.js';
import { randomArray, rng } from './check.js';

export interface LoraTrainingCase {
  M: number;
  N: number;
  K: number;
  rank: number;
  seed: number;
  steps: number;
  maxGradNorm?: number;
}

export interface LoraTrainingRun {
  /** A then B after the last step. */
  out: number[];
  /** Dispatches the last `opt.step()` encoded. */
  optimizerDispatches: number;
  /** Byte offset of B in its buffer (0 when separate). */
  bOffset: number;
}

/** The initial A then B of a case (what `out` starts from). */
export function loraTrainingInit(c: LoraTrainingCase): number[] {
  return data(c).ab.map(Math.fround);
}

function data(c: LoraTrainingCase) {
  const r = rng(c.seed);
  const x = randomArray(c.M * c.K, r);
  const w = randomArray(c.N * c.K, r, -0.3, 0.3);
  const a = randomArray(c.rank * c.K, r, -0.2, 0.2);
  const b = randomArray(c.N * c.rank, r, -0.2, 0.2);
  const t = randomArray(c.M * c.N, r);
  return { x, w, a, b, t, ab: [...a, ...b] };
}

/** Train the case's layer for `steps` AdamW steps (B at 4× A's lr), factors in an arena or not. */
export function trainLora(ctx: GpuContext, c: LoraTrainingCase, inArena: boolean): Promise<LoraTrainingRun> {
  const { x, w, a, b, t } = data(c);
  const { M, N, K, rank } = c;
  return ctx.scopeAsync(async () => {
    const A0 = ctx.tensor(a, [rank, K]);
    const B0 = ctx.tensor(b, [N, rank]);
    const arena = inArena ? new ParamArena(ctx, [A0, B0]) : null;
    const [A, B] = (arena ? arena.params : [A0, B0]) as [typeof A0, typeof B0];
    const layer = new LoraLayer(ctx, { W: ctx.tensor(w, [N, K]), A, B, rank, alpha: 8 });
    requiresGrad(A);
    requiresGrad(B);
    const opt = new AdamW(ctx, [{ params: A }, { params: B, lr: 0.02 }], { lr: 0.005, maxGradNorm: c.maxGradNorm });
    const X = ctx.tensor(x, [M, K]);
    const T = ctx.tensor(t, [M, N]);
    let optimizerDispatches = 0;
    for (let s = 0; s < c.steps; s++) {
      const loss = ctx.scope(() => {
        const l = autograd.mse(ctx, autograd.loraLinear(ctx, X, layer), T);
        backward(ctx, l);
        const before = ctx.stats.dispatches;
        opt.step(1, [grad(A), grad(B)]);
        optimizerDispatches = ctx.stats.dispatches - before;
        zeroGrad([A, B]);
        return l;
      });
      await loss.read();
      loss.dispose();
    }
    const out = [...(await A.toArray()), ...(await B.toArray())];
    const bOffset = B.byteOffset;
    opt.dispose();
    arena?.dispose();
    return { out, optimizerDispatches, bOffset };
  });
}
