import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { layerNorm, rmsNorm } from '../../src/kernels/norm.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

function normRef(x: number[], g: number[], b: number[] | null, R: number, C: number, rms: boolean, eps: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < R; r++) {
    const row = x.slice(r * C, r * C + C);
    const mu = rms ? 0 : row.reduce((a, v) => a + v, 0) / C;
    const rstd = 1 / Math.sqrt(row.reduce((a, v) => a + (v - mu) ** 2, 0) / C + eps);
    row.forEach((v, c) => out.push((v - mu) * rstd * g[c]! + (b ? b[c]! : 0)));
  }
  return out;
}

describe('LayerNorm and RMSNorm against the f64 reference', () => {
  it('rows of many widths, with an offset mean (variance computed around the mean)', async () => {
    for (const [R, C] of [[1, 1], [4, 7], [3, 64], [70, 33], [2, 1000]] as const) {
      const x = Array.from(randomArray(R * C, rng(R + C), 99, 101), Math.fround); // mean 100, small spread
      const g = Array.from(randomArray(C, rng(C)), Math.fround);
      const b = Array.from(randomArray(C, rng(C + 1)), Math.fround);
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [R, C]);
        const ln = layerNorm(ctx, X, ctx.tensor(g, [C]), ctx.tensor(b, [C]));
        expectClose(await ln.y.read(), normRef(x, g, b, R, C, false, 1e-5), { atol: 2e-4, rtol: 1e-3 }, `layerNorm ${R}x${C}`);
        const rn = rmsNorm(ctx, X, ctx.tensor(g, [C]));
        expectClose(await rn.y.read(), normRef(x, g, null, R, C, true, 1e-6), { atol: 1e-5, rtol: 1e-4 }, `rmsNorm ${R}x${C}`);
      });
    }
  });

  it('rejects mismatched γ and bad eps', () => {
    ctx.scope(() => {
      expect(() => layerNorm(ctx, ctx.empty([2, 3]), ctx.empty([4]))).toThrow('layerNorm: gamma has shape [4], expected [3] (x is [2,3])');
      expect(() => rmsNorm(ctx, ctx.empty([2, 3]), ctx.empty([3]), 0)).toThrow('rmsNorm: eps = 0, expected a finite number > 0');
    });
  });
});
