import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { roundHalf } from '../../src/gpu/half.js';
import { maxAbs, mean, type ReduceAxis, reduceConfig, reducesByVec4, sum, sumSquaredDiff, sumSquares } from '../../src/kernels/reduce.js';
import { type ReduceRefOp, reduceRowsRef } from '../../src/kernels/reduce.ref.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

// (x, axis, y): the one-input reductions ignore y (their fourth parameter is `out`).
const OPS = {
  sum: (c: GpuContext, x: Tensor, axis: ReduceAxis) => sum(c, x, axis),
  mean: (c: GpuContext, x: Tensor, axis: ReduceAxis) => mean(c, x, axis),
  maxAbs: (c: GpuContext, x: Tensor, axis: ReduceAxis) => maxAbs(c, x, axis),
  sumSquares: (c: GpuContext, x: Tensor, axis: ReduceAxis) => sumSquares(c, x, axis),
  sumSquaredDiff: (c: GpuContext, x: Tensor, axis: ReduceAxis, y: Tensor) => sumSquaredDiff(c, x, y, { axis }),
  meanSquaredDiff: (c: GpuContext, x: Tensor, axis: ReduceAxis, y: Tensor) => sumSquaredDiff(c, x, y, { axis, mean: true }),
} as const;

describe.each(['serial', 'tree'] as const)('reductions against the f64 reference (%s tail)', (tail) => {
  beforeAll(() => {
    reduceConfig.tail = tail;
  });
  afterAll(() => {
    reduceConfig.tail = 'auto';
  });

  it('over the last axis', async () => {
    for (const shape of [[1], [7], [3, 1], [4], [5, 257], [7, 12], [33, 1000], [2, 3, 4099]]) {
      const n = shape.reduce((a, b) => a * b, 1);
      const x = Array.from(randomArray(n, rng(n)), Math.fround);
      const y = Array.from(randomArray(n, rng(n + 1)), Math.fround);
      const cols = shape[shape.length - 1]!;
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, shape);
        const Y = ctx.tensor(y, shape);
        for (const [name, f] of Object.entries(OPS)) {
          const out = f(ctx, X, -1, Y);
          expect(out.shape).toEqual(shape.length > 1 ? shape.slice(0, -1) : [1]);
          expectClose(await out.read(), reduceRowsRef(x, cols, name as ReduceRefOp, y), { atol: 1e-5 * Math.sqrt(cols), rtol: 1e-5 }, `${name} [${shape}]`);
        }
      });
    }
  });

  it('over everything, one pass and two passes', async () => {
    for (const n of [1, 4096, 4097, 65_536, 100_003]) {
      const x = Array.from(randomArray(n, rng(n + 5)), Math.fround);
      const y = Array.from(randomArray(n, rng(n + 6)), Math.fround);
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [n]);
        const Y = ctx.tensor(y, [n]);
        for (const [name, f] of Object.entries(OPS)) {
          const out = f(ctx, X, 'all', Y);
          expect(out.shape).toEqual([1]);
          expectClose(await out.read(), reduceRowsRef(x, n, name as ReduceRefOp, y), { atol: 1e-5 * Math.sqrt(n), rtol: 1e-5 }, `${name} all n=${n}`);
        }
      });
    }
  });

  it('the cases above run both entries: vec4 rows (reduce_rows4) and scalar rows', () => {
    // [7,12], [33,1000], n = 4096 and 65 536 (both passes) are whole vec4s; 257, 4099, 4097 are not.
    expect([reducesByVec4(84, 12), reducesByVec4(33_000, 1000), reducesByVec4(65_536, 4096), reducesByVec4(16, 16)]).toEqual([true, true, true, true]);
    expect([reducesByVec4(1285, 257), reducesByVec4(24_594, 4099), reducesByVec4(4097, 4096), reducesByVec4(2, 2)]).toEqual([false, false, false, false]);
  });

  it('sumSquaredDiff refuses a y of another shape or dtype', () => {
    ctx.scope(() => {
      const x = ctx.empty([4, 3]);
      expect(() => sumSquaredDiff(ctx, x, ctx.empty([3, 4]))).toThrow('sumSquaredDiff: y [3,4] must match x [4,3]');
      if (ctx.caps.f16) expect(() => sumSquaredDiff(ctx, x, ctx.empty([4, 3], 'f16'))).toThrow(/sumSquaredDiff: y .*f16.*f32|f32.*f16/);
    });
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
