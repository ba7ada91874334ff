import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { roundHalf } from '../../src/gpu/half.js';
import { maxAbs, mean, sum } from '../../src/kernels/reduce.js';
import { reduceRowsRef } from '../../src/kernels/reduce.ref.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const OPS = { sum, mean, maxAbs } as const;

describe('reductions against the f64 reference', () => {
  it('over the last axis', async () => {
    for (const shape of [[1], [7], [3, 1], [5, 257], [33, 1000], [2, 3, 4099]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = Array.from(randomArray(n, rng(n)), Math.fround);
      const cols = shape[shape.length - 1]!;
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, shape);
        for (const [name, f] of Object.entries(OPS)) {
          const out = f(ctx, X);
          expect(out.shape).toEqual(shape.length > 1 ? shape.slice(0, -1) : [1]);
          expectClose(await out.read(), reduceRowsRef(x, cols, name as keyof typeof OPS), { atol: 1e-5 * Math.sqrt(cols), rtol: 1e-5 }, `${name} [${shape}]`);
        }
      });
    }
  });

  it('over everything, one pass and two passes', async () => {
    for (const n of [1, 4096, 4097, 100_003]) {
      const x = Array.from(randomArray(n, rng(n + 5)), Math.fround);
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [n]);
        for (const [name, f] of Object.entries(OPS)) {
          const out = f(ctx, X, 'all');
          expect(out.shape).toEqual([1]);
          expectClose(await out.read(), reduceRowsRef(x, n, name as keyof typeof OPS), { atol: 1e-5 * Math.sqrt(n), rtol: 1e-5 }, `${name} all n=${n}`);
        }
      });
    }
  });

  it('f16 storage accumulates in f32 (where the adapter has shader-f16)', async () => {
    if (!ctx.caps.f16) {
      expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
      return;
    }
    // 3000 ones: an f16 accumulator would stop at 2048; f32 accumulation gives 3000 exactly.
    const n = 3000;
    const got = await ctx.scopeAsync(() => sum(ctx, ctx.tensor(new Array(n).fill(1), [n], 'f16'), 'all').read());
    expect(got[0]).toBe(roundHalf(3000));
  });
});
