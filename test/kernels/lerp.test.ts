import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { flatten, lerp, lerpInPlace, unflatten } from '../../src/kernels/lerp.js';
import { lerpRef } from '../../src/kernels/lerp.ref.js';
import { ParamArena } from '../../src/optim/arena.js';
import { halfArray } from '../f16.js';
import { expectClose, randomArray, rng, testContext, TOL } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('lerp (WiSE-FT)', () => {
  it('into a third tensor and in place, sizes that are not multiples of 4 or of a chunk', async () => {
    for (const n of [1, 3, 4, 5, 1023, 4097, 70001]) {
      const a = Array.from(randomArray(n, rng(n)), Math.fround);
      const b = Array.from(randomArray(n, rng(n + 1)), Math.fround);
      await ctx.scopeAsync(async () => {
        const A = ctx.tensor(a, [n]);
        const B = ctx.tensor(b, [n]);
        for (const alpha of [0, 0.3, 1, 1.5]) {
          const got = await lerp(ctx, A, B, alpha).read();
          expectClose(got, lerpRef(a, b, alpha), TOL.f32, `lerp n=${n} alpha=${alpha}`);
          if (alpha === 0) expect(Array.from(got)).toEqual(a); // exact at the ends
          if (alpha === 1) expect(Array.from(got)).toEqual(b);
        }
        lerpInPlace(ctx, A, B, 0.25);
        expectClose(await A.read(), lerpRef(a, b, 0.25), TOL.f32, `lerpInPlace n=${n}`);
        expectClose(await B.read(), b, { atol: 0, rtol: 0 }, 'theta1 untouched');
      });
    }
  });

  it('f16 storage (where the adapter has shader-f16)', async () => {
    if (!ctx.caps.f16) {
      expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
      return;
    }
    const n = 1001;
    const a = halfArray(n, rng(1));
    const b = halfArray(n, rng(2));
    const got = await ctx.scopeAsync(() => lerp(ctx, ctx.tensor(a, [n], 'f16'), ctx.tensor(b, [n], 'f16'), 0.4).read());
    // f32 arithmetic (a few roundings of values below 4: < 1e-6), then f32 -> f16, which WGSL lets
    // round to either neighbour (2^-10 relative; 2^-14 absolute where it may flush to 0).
    expectClose(got, lerpRef(a, b, 0.4), { atol: 2 ** -14 + 1e-6, rtol: 2 ** -10 }, 'lerp f16');
  });

  it('a list of tensors in one dispatch through a flat arena, and a sweep over alpha without re-uploading', async () => {
    const shapes = [[3, 5], [7], [2, 2, 3], [1]];
    const pre = shapes.map((s, i) => Array.from(randomArray(s.reduce((a, b) => a * b, 1), rng(10 + i)), Math.fround));
    const ft = shapes.map((s, i) => Array.from(randomArray(s.reduce((a, b) => a * b, 1), rng(20 + i)), Math.fround));
    await ctx.scopeAsync(async () => {
      const preT = pre.map((d, i) => ctx.tensor(d, shapes[i]!));
      const ftT = ft.map((d, i) => ctx.tensor(d, shapes[i]!));
      const model = shapes.map((s) => ctx.empty(s));
      const P = flatten(ctx, preT);
      const F = flatten(ctx, ftT);
      const theta = ctx.empty(P.shape);
      const dispatchesBefore = ctx.stats.dispatches;
      for (const alpha of [0, 0.5, 1]) {
        lerp(ctx, P, F, alpha, theta);
        unflatten(ctx, theta, model);
        for (let i = 0; i < shapes.length; i++) {
          expectClose(await model[i]!.read(), lerpRef(pre[i]!, ft[i]!, alpha), TOL.f32, `tensor ${i} alpha ${alpha}`);
        }
      }
      expect(ctx.stats.dispatches - dispatchesBefore).toBe(3); // one dispatch per alpha for the whole list
    });
  });

  it('a model whose parameters live in a ParamArena interpolates in place in one dispatch, no copies', async () => {
    const shapes = [[3, 5], [7], [2, 2, 2]];
    const R = rng(5);
    const pre = shapes.map((s) => Array.from(randomArray(s.reduce((a, b) => a * b, 1), R), Math.fround));
    const ft = shapes.map((s) => Array.from(randomArray(s.reduce((a, b) => a * b, 1), R), Math.fround));
    await ctx.scopeAsync(async () => {
      const model = new ParamArena(ctx, shapes.map((s, i) => ctx.tensor(pre[i]!, s)));
      const tuned = new ParamArena(ctx, shapes.map((s, i) => ctx.tensor(ft[i]!, s)));
      const before = ctx.stats.dispatches;
      lerpInPlace(ctx, model.storage, tuned.storage, 0.4);
      expect(ctx.stats.dispatches - before).toBe(1);
      for (let i = 0; i < shapes.length; i++) expectClose(await model.params[i]!.read(), lerpRef(pre[i]!, ft[i]!, 0.4), TOL.f32, `arena slot ${i}`);
      model.dispose();
      tuned.dispose();
    });
  });

  it('rejects mismatched shapes and non-finite alpha', () => {
    ctx.scope(() => {
      expect(() => lerp(ctx, ctx.empty([4]), ctx.empty([5]), 0.5)).toThrow('lerp: theta0 [4] and theta1 [5] differ');
      expect(() => lerp(ctx, ctx.empty([4]), ctx.empty([4]), NaN)).toThrow('lerp: alpha = NaN, expected a finite number');
    });
  });
});
