import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { maxAbs, mean, type ReduceAxis, reduceConfig, sum, sumSquaredDiff, sumSquares } from '../../src/kernels/reduce.js';
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

  it('the cases above run both entries: vec4 rows (reduce_rows4) and scalar rows, as the profiler reports', async () => {
    // Shapes from the two tests above, with the entry each pass ran: rows that are whole vec4s
    // take reduce_rows4; a whole-array reduction past 4096 elements takes two passes, the second
    // over the per-chunk partials (16 for 65 536: vec4s; 2 for 4097 and 25 for 100 003: not).
    const cases: [number[], ReduceAxis, string[]][] = [
      [[7, 12], -1, ['reduce_rows4']],
      [[33, 1000], -1, ['reduce_rows4']],
      [[5, 257], -1, ['reduce_rows']],
      [[2, 3, 4099], -1, ['reduce_rows']],
      [[4096], 'all', ['reduce_rows4']],
      [[7], 'all', ['reduce_rows']],
      [[65_536], 'all', ['reduce_rows4', 'reduce_rows4']],
      [[4097], 'all', ['reduce_rows', 'reduce_rows']],
      [[100_003], 'all', ['reduce_rows', 'reduce_rows']],
    ];
    for (const [shape, axis, entries] of cases) {
      await ctx.scopeAsync(async () => {
        const x = ctx.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(1), shape);
        let out: Tensor | undefined;
        const prof = await ctx.profile(() => {
          out = sum(ctx, x, axis);
        });
        expect(Array.from(await out!.read())).toEqual(new Array(out!.size).fill(axis === 'all' ? x.size : shape[shape.length - 1]!));
        if (!ctx.caps.timestampQuery) {
          console.log('reduce: no timestamp-query on this adapter, so no profile of the entries');
          expect(prof).toBeNull();
          return;
        }
        expect(prof!.map((p) => p.kernel), `sum [${shape}] axis ${axis}`).toEqual(entries.map((e) => `reduce.wgsl:${e}`));
      });
    }
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
    expect(got[0]).toBe(3000); // 375·2^3: an f16 number
  });
});
