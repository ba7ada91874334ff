import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { layerNorm, normBackward, rmsNorm } from '../../src/kernels/norm.js';
import { normBackwardRef, normRef } from '../../src/kernels/norm.ref.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const f32 = (n: number, seed: number, lo = -1, hi = 1) => Array.from(randomArray(n, rng(seed), lo, hi), Math.fround);

// Rows narrower and wider than the 64-lane workgroup (its strided loops run 1..16 times), one
// row and many (a workgroup per row; norm_backward_params has a lane per column, so wide rows
// span several workgroups there).
const SHAPES = [[1, 1], [4, 7], [3, 64], [70, 33], [2, 1000], [9, 130]] as const;

describe('LayerNorm and RMSNorm against the f64 reference', () => {
  it('forward: rows of many widths, with an offset mean (variance computed around the mean)', async () => {
    for (const [R, C] of SHAPES) {
      const x = f32(R * C, R + C, 99, 101); // mean 100, small spread
      const g = f32(C, C);
      const b = f32(C, C + 1);
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [R, C]);
        const ln = layerNorm(ctx, X, ctx.tensor(g, [C]), ctx.tensor(b, [C]));
        expectClose(await ln.y.read(), normRef('layer', x, g, b, C), { atol: 2e-4, rtol: 1e-3 }, `layerNorm ${R}x${C}`);
        const rn = rmsNorm(ctx, X, ctx.tensor(g, [C]));
        expectClose(await rn.y.read(), normRef('rms', x, g, null, C), { atol: 1e-5, rtol: 1e-4 }, `rmsNorm ${R}x${C}`);
      });
    }
  });

  it('backward: dx, dγ, dβ of LayerNorm (with and without β) and RMSNorm against the analytic f64 gradients', async () => {
    for (const [R, C] of SHAPES) {
      const x = f32(R * C, 3 * R + C, -2, 3);
      const g = f32(C, C + 2);
      const b = f32(C, C + 3);
      const dy = f32(R * C, R * C + 4);
      for (const [kind, beta] of [['layer', true], ['layer', false], ['rms', false]] as const) {
        await ctx.scopeAsync(async () => {
          const X = ctx.tensor(x, [R, C]);
          const G = ctx.tensor(g, [C]);
          const fw = kind === 'layer' ? layerNorm(ctx, X, G, beta ? ctx.tensor(b, [C]) : undefined) : rmsNorm(ctx, X, G);
          const got = normBackward(ctx, kind, X, G, fw.stats, ctx.tensor(dy, [R, C]), { beta });
          const want = normBackwardRef(kind, x, g, dy, C);
          const what = `${kind}${beta ? ' with β' : ''} ${R}x${C}`;
          // dx sums C terms per row, dγ and dβ R terms per column.
          expectClose(await got.dx!.read(), want.dx, { atol: 2e-6 * Math.sqrt(C), rtol: 1e-4 }, `dx ${what}`);
          expectClose(await got.dgamma!.read(), want.dgamma, { atol: 2e-6 * Math.sqrt(R), rtol: 1e-4 }, `dγ ${what}`);
          if (beta) expectClose(await got.dbeta!.read(), want.dbeta, { atol: 2e-6 * Math.sqrt(R), rtol: 1e-4 }, `dβ ${what}`);
          else expect(got.dbeta).toBeUndefined();
        });
      }
    }
  });

  it('rejects mismatched γ and bad eps', () => {
    ctx.scope(() => {
      expect(() => layerNorm(ctx, ctx.empty([2, 3]), ctx.empty([4]))).toThrow('layerNorm: gamma has shape [4], expected [3] (x is [2,3])');
      expect(() => rmsNorm(ctx, ctx.empty([2, 3]), ctx.empty([3]), 0)).toThrow('rmsNorm: eps = 0, expected a finite number > 0');
    });
  });
});
