import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { crossEntropy, crossEntropyBackward, logSoftmax, logSoftmaxBackward, softmax, softmaxBackward } from '../../src/kernels/softmax.js';
import { causalSoftmaxRef, crossEntropyGradRef, crossEntropyRef, softmaxBackwardRef, softmaxRef } from '../../src/kernels/softmax.ref.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('softmax family against the f64 reference', () => {
  it('softmax and log-softmax over rows of many widths, stable for large logits', async () => {
    for (const [R, C] of [[1, 1], [3, 7], [5, 64], [2, 1000], [70, 3]] as const) {
      const x = Array.from(randomArray(R * C, rng(R * C), -5, 5), Math.fround);
      x[0] = 80; // exp(80) overflows f32 without the max shift
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [R, C]);
        expectClose(await softmax(ctx, X).read(), softmaxRef(x, C), { atol: 1e-6, rtol: 1e-4 }, `softmax ${R}x${C}`);
        expectClose(await logSoftmax(ctx, X).read(), softmaxRef(x, C, true), { atol: 1e-5, rtol: 1e-5 }, `logSoftmax ${R}x${C}`);
      });
    }
  });

  it('causal softmax over [..., T, T] scores: row t sees columns 0..t', async () => {
    for (const [Z, T] of [[1, 1], [3, 37], [2, 130]] as const) {
      const x = Array.from(randomArray(Z * T * T, rng(T)), Math.fround);
      const want = causalSoftmaxRef(x, T);
      const got = await ctx.scopeAsync(() => softmax(ctx, ctx.tensor(x, [Z, T, T]), undefined, { causal: true }).read());
      expectClose(got, want, { atol: 1e-6, rtol: 1e-4 }, `causal softmax ${Z}x${T}x${T}`);
    }
    expect(() => ctx.scope(() => softmax(ctx, ctx.empty([2, 3]), undefined, { causal: true }))).toThrow('softmax: causal needs square score matrices [..., T, T], got [2,3]');
  });

  it('cross-entropy: labels, ignore-index, label smoothing, soft targets', async () => {
    const [R, C] = [9, 6];
    const x = Array.from(randomArray(R * C, rng(5), -3, 3), Math.fround);
    const labels = [0, 5, 2, -100, 3, 3, 1, -100, 4];
    const soft = Array.from({ length: R * C }, (_, i) => ((i * 7) % 5) + 1);
    for (let r = 0; r < R; r++) {
      const s = soft.slice(r * C, r * C + C).reduce((a, b) => a + b, 0);
      for (let c = 0; c < C; c++) soft[r * C + c]! /= s;
    }
    await ctx.scopeAsync(async () => {
      const X = ctx.tensor(x, [R, C]);
      const L = ctx.tensor(labels, [R]);
      const S = ctx.tensor(soft, [R, C]);
      for (const eps of [0, 0.1]) {
        const a = crossEntropy(ctx, X, { labels: L }, { labelSmoothing: eps });
        expectClose(await a.loss.read(), [crossEntropyRef(x, C, { labels }, { labelSmoothing: eps })], { atol: 1e-5, rtol: 1e-5 }, `labels eps=${eps}`);
        expect((await a.saved.stats.read())[1]).toBe(7); // two rows ignored
        const b = crossEntropy(ctx, X, { soft: S }, { labelSmoothing: eps });
        expectClose(await b.loss.read(), [crossEntropyRef(x, C, { soft }, { labelSmoothing: eps })], { atol: 1e-5, rtol: 1e-5 }, `soft eps=${eps}`);
        for (const t of [a.saved.lse, a.saved.stats, b.saved.lse, b.saved.stats]) t.dispose();
      }
      expect(() => crossEntropy(ctx, X, { labels: ctx.empty([4]) })).toThrow('crossEntropy: labels has 4 entries, expected one per row (9)');
      expect(() => crossEntropy(ctx, X, { labels: L }, { labelSmoothing: 2 })).toThrow(/labelSmoothing = 2/);
    });
  });

  // Rows past the 64-lane workgroup (the strided loops run up to 16 times) and many rows (a
  // workgroup each; xent_mean's lanes walk 70 rows).
  const WIDE = [[1, 1], [3, 7], [70, 65], [5, 1000]] as const;

  it('softmax and log-softmax backward against the analytic f64 gradients', async () => {
    for (const [R, C] of WIDE) {
      const x = Array.from(randomArray(R * C, rng(R + 2 * C), -4, 4), Math.fround);
      const dy = Array.from(randomArray(R * C, rng(R * C)), Math.fround);
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [R, C]);
        const DY = ctx.tensor(dy, [R, C]);
        const tol = { atol: 2e-7 * Math.sqrt(C), rtol: 1e-4 };
        expectClose(await softmaxBackward(ctx, softmax(ctx, X), DY).read(), softmaxBackwardRef(x, dy, C), tol, `softmaxBackward ${R}x${C}`);
        const ltol = { atol: 2e-6 * Math.sqrt(C), rtol: 1e-4 };
        expectClose(await logSoftmaxBackward(ctx, logSoftmax(ctx, X), DY).read(), softmaxBackwardRef(x, dy, C, true), ltol, `logSoftmaxBackward ${R}x${C}`);
      });
    }
  });

  it('cross-entropy forward and backward over wide and many rows: labels with ignore-index and smoothing, soft targets', async () => {
    for (const [R, C] of WIDE) {
      const R0 = rng(R * 3 + C);
      const x = Array.from(randomArray(R * C, R0, -4, 4), Math.fround);
      // Every third row ignored (none when there is one row).
      const labels = Array.from({ length: R }, (_, r) => (R > 1 && r % 3 === 1 ? -100 : Math.floor(R0() * C)));
      const soft = Array.from(randomArray(R * C, R0, 0, 1), Math.fround); // need not sum to 1
      const g = -1.75;
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [R, C]);
        const dLoss = ctx.tensor([g], [1]);
        for (const [name, target, ref] of [
          ['labels', { labels: ctx.tensor(labels, [R]) }, { labels }],
          ['soft', { soft: ctx.tensor(soft, [R, C]) }, { soft }],
        ] as const) {
          const opts = { labelSmoothing: 0.1 };
          const { loss, saved } = crossEntropy(ctx, X, target, opts);
          expectClose(await loss.read(), [crossEntropyRef(x, C, ref, opts)], { atol: 1e-5, rtol: 1e-5 }, `${name} loss ${R}x${C}`);
          const dx = crossEntropyBackward(ctx, X, saved, dLoss);
          // (Σq)·softmax − q cancels: soft rows of 1000 columns have Σq ≈ 500, each term ≈ q.
          expectClose(await dx.read(), crossEntropyGradRef(x, C, ref, opts, g), { atol: 1e-6, rtol: 1e-4 }, `${name} d logits ${R}x${C}`);
          saved.lse.dispose();
          saved.stats.dispose();
        }
      });
    }
  });
});
