import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { roundHalf } from '../../src/gpu/half.js';
import type { DType } from '../../src/gpu/kernel.js';
import { add, axpy, fillScalar, scaledDiff, cast, copy, elementsPerInvocation, fill, gelu, geluBackward, mul, relu, reluBackward, scale, silu, siluBackward, slice, concat, sub, swapAxes12, transpose } from '../../src/kernels/elementwise.js';
import { uniform } from '../../src/kernels/random.js';
import { uniformAtRef } from '../../src/kernels/random.ref.js';
import { binaryRef, geluTanhGradRef, geluTanhRef, mapRef } from '../../src/kernels/elementwise.ref.js';
import { expectClose, randomArray, rng, testContext, TOL } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const SIZES = [1, 7, 255, 256, 257, 1031, 65537];

function dtypes(): DType[] {
  return ctx.caps.f16 ? ['f32', 'f16'] : ['f32'];
}

function rounded(n: number, seed: number, dtype: DType, lo = -3, hi = 3): number[] {
  const round = dtype === 'f16' ? roundHalf : Math.fround;
  return Array.from(randomArray(n, rng(seed), lo, hi), round);
}

describe('elementwise kernels against the f64 reference', () => {
  it('fill, copy, scale, relu, gelu over sizes around the workgroup size', async () => {
    for (const dtype of dtypes()) {
      for (const n of SIZES) {
        const x = rounded(n, n, dtype);
        await ctx.scopeAsync(async () => {
          const X = ctx.tensor(x, [n], dtype);
          const F = fill(ctx, ctx.empty([n], dtype), 2.5);
          expectClose(await F.read(), new Array(n).fill(2.5), TOL[dtype], `fill ${dtype} n=${n}`);
          expectClose(await copy(ctx, X).read(), x, { atol: 0, rtol: 0 }, `copy ${dtype} n=${n}`);
          expectClose(await scale(ctx, X, -0.5).read(), mapRef(x, (v) => -0.5 * v), TOL[dtype], `scale ${dtype} n=${n}`);
          expectClose(await relu(ctx, X).read(), mapRef(x, (v) => Math.max(v, 0)), TOL[dtype], `relu ${dtype} n=${n}`);
          expectClose(await gelu(ctx, X).read(), mapRef(x, geluTanhRef), TOL[dtype], `gelu ${dtype} n=${n}`);
          expectClose(await silu(ctx, X).read(), mapRef(x, (v) => v / (1 + Math.exp(-v))), TOL[dtype], `silu ${dtype} n=${n}`);
        });
      }
    }
  });

  it('add, sub, mul with equal shapes and with a broadcast suffix', async () => {
    for (const dtype of dtypes()) {
      for (const [xs, ys] of [
        [[257], [257]],
        [[13, 17], [17]],
        [[3, 5, 7], [5, 7]],
        [[1, 1], [1]],
      ] as const) {
        const nx = xs.reduce((a: number, b: number) => a * b, 1);
        const ny = ys.reduce((a: number, b: number) => a * b, 1);
        const x = rounded(nx, nx + 1, dtype);
        const y = rounded(ny, ny + 2, dtype);
        await ctx.scopeAsync(async () => {
          const X = ctx.tensor(x, xs, dtype);
          const Y = ctx.tensor(y, ys, dtype);
          for (const [op, f] of [['add', add], ['sub', sub], ['mul', mul]] as const) {
            const out = f(ctx, X, Y);
            expect(out.shape).toEqual(xs);
            expectClose(await out.read(), binaryRef(op, x, y), TOL[dtype], `${op} ${dtype} [${xs}] [${ys}]`);
          }
        });
      }
    }
  });

  it('transposes 2-D tensors (element path, and 4×4 blocks when both sides are multiples of 4)', async () => {
    const shapes = [[1, 1], [1, 7], [5, 1], [13, 29], [64, 3], [4, 4], [8, 1028], [1032, 12], [12, 8]] as const;
    for (const [R, C] of shapes) {
      for (const dt of dtypes()) {
        const x = rounded(R * C, R * 100 + C, dt);
        const got = await ctx.scopeAsync(async () => {
          const T = transpose(ctx, ctx.tensor(x, [R, C], dt));
          expect(T.shape).toEqual([C, R]);
          return T.read();
        });
        const want = Array.from({ length: R * C }, (_, i) => x[(i % R) * C + Math.floor(i / R)]!);
        expectClose(got, want, { atol: 0, rtol: 0 }, `transpose ${dt} ${R}x${C}`);
      }
    }
    expect(() => ctx.scope(() => transpose(ctx, ctx.empty([2, 3, 4])))).toThrow('transpose: x has shape [2,3,4], expected rank 2');
  });

  it('slice, concat and swapAxes12 on shapes larger than a chunk', async () => {
    const [A, Bd, C] = [3, 1000, 7];
    const x = rounded(A * Bd * C, 77, 'f32');
    await ctx.scopeAsync(async () => {
      const X = ctx.tensor(x, [A, Bd, C]);
      const s = await slice(ctx, X, 1, 123, 456).read();
      const want: number[] = [];
      for (let i = 0; i < A; i++) want.push(...x.slice((i * Bd + 123) * C, (i * Bd + 579) * C));
      expectClose(s, want, { atol: 0, rtol: 0 }, 'slice');
      const parts = [slice(ctx, X, 1, 0, 400), slice(ctx, X, 1, 400, 600)];
      expectClose(await concat(ctx, parts, 1).read(), x, { atol: 0, rtol: 0 }, 'concat of the slices');
      const sw = await swapAxes12(ctx, X.view([A, 10, 100, C]), [A, 10, 100, C]).read();
      const i = 2, b = 7, c = 55, d = 3;
      expect(sw[((i * 100 + c) * 10 + b) * C + d]).toBe(x[((i * 10 + b) * 100 + c) * C + d]);
    });
  });

  it('axpy updates y in place', async () => {
    const x = rounded(1000, 1, 'f32');
    const y = rounded(1000, 2, 'f32');
    await ctx.scopeAsync(async () => {
      const Y = ctx.tensor(y, [1000]);
      const ret = axpy(ctx, -0.25, ctx.tensor(x, [1000]), Y);
      expect(ret).toBe(Y);
      expectClose(await Y.read(), mapRef(y, (v, i) => v - 0.25 * x[i]!), TOL.f32, 'axpy');
    });
  });

  it('fillScalar and scaledDiff read their scalar on the GPU', async () => {
    for (const dt of dtypes()) {
      for (const n of SIZES) {
        const x = rounded(n, n, dt);
        const y = rounded(n, n + 1, dt);
        await ctx.scopeAsync(async () => {
          const s = ctx.tensor([-1.5], [1], dt);
          const f = fillScalar(ctx, s, [n], 0.5);
          expect(f.shape).toEqual([n]);
          expectClose(await f.read(), new Array(n).fill(-0.75), TOL[dt], `fillScalar ${dt} n=${n}`);
          const d = scaledDiff(ctx, ctx.tensor(x, [n], dt), ctx.tensor(y, [n], dt), s, 2 / n);
          expectClose(await d.read(), mapRef(x, (v, i) => (2 / n) * -1.5 * (v - y[i]!)), TOL[dt], `scaledDiff ${dt} n=${n}`);
        });
      }
    }
    ctx.scope(() => {
      const x = ctx.empty([3, 2]);
      expect(() => fillScalar(ctx, x, [4])).toThrow('fillScalar: s has shape [3,2], expected one element');
      expect(() => scaledDiff(ctx, x, ctx.empty([2, 3]), ctx.empty([1]))).toThrow('scaledDiff: y [2,3] must match x [3,2]');
      expect(() => scaledDiff(ctx, x, x, ctx.empty([2]))).toThrow('scaledDiff: s has shape [2], expected one element');
    });
  });

  it('relu and gelu backward match the reference and finite differences of the forward', async () => {
    const n = 513;
    const x = rounded(n, 3, 'f32', -4, 4).map((v) => (Math.abs(v) < 1e-2 ? 0.5 : v)); // keep relu away from its kink
    const dy = rounded(n, 4, 'f32');
    const h = 1e-4;
    const fd = (f: (v: number) => number) => mapRef(x, (v, i) => (dy[i]! * (f(v + h) - f(v - h))) / (2 * h));
    await ctx.scopeAsync(async () => {
      const X = ctx.tensor(x, [n]);
      const DY = ctx.tensor(dy, [n]);
      const dRelu = await reluBackward(ctx, X, DY).read();
      const dGelu = await geluBackward(ctx, X, DY).read();
      expectClose(dRelu, mapRef(x, (v, i) => (v > 0 ? dy[i]! : 0)), TOL.f32, 'relu_backward vs reference');
      expectClose(dGelu, mapRef(x, (v, i) => dy[i]! * geluTanhGradRef(v)), TOL.f32, 'gelu_backward vs reference');
      expectClose(dRelu, fd((v) => Math.max(v, 0)), { atol: 1e-4, rtol: 1e-3 }, 'relu_backward vs finite differences');
      expectClose(dGelu, fd(geluTanhRef), { atol: 1e-4, rtol: 1e-3 }, 'gelu_backward vs finite differences');
      expectClose(await siluBackward(ctx, X, DY).read(), fd((v) => v / (1 + Math.exp(-v))), { atol: 1e-4, rtol: 1e-3 }, 'silu_backward vs finite differences');
    });
  });

  it('gelu stays finite for large inputs (tanh argument is clamped)', async () => {
    const x = [-1e4, -100, -20, 20, 100, 1e4];
    const got = await ctx.scopeAsync(() => gelu(ctx, ctx.tensor(x, [6])).read());
    expectClose(got, mapRef(x, geluTanhRef), TOL.f32, 'gelu large');
  });

  it('casts f32 <-> f16 (where the adapter has shader-f16)', async () => {
    if (!ctx.caps.f16) {
      // The fallback: f16 is refused with a typed error naming the feature.
      expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
      return;
    }
    // In range only: WGSL leaves the conversion of an out-of-range f32 to f16 indeterminate.
    const x = [0, 1, -2.5, 65504, 1e-7, 3.14159, -60000];
    await ctx.scopeAsync(async () => {
      const H = cast(ctx, ctx.tensor(x, [7]), 'f16');
      expect(H.dtype).toBe('f16');
      expectClose(await H.read(), x.map(roundHalf), { atol: 0, rtol: 0 }, 'cast to f16 rounds to nearest');
      const back = cast(ctx, H, 'f32');
      expect(back.dtype).toBe('f32');
      expectClose(await back.read(), x.map(roundHalf), { atol: 0, rtol: 0 }, 'cast back to f32');
    });
  });

  it('covers more than 65535 workgroups with a 2-D grid (one element per invocation: the Philox kernels)', async () => {
    const n = 65535 * 256 + 1000;
    await ctx.scopeAsync(async () => {
      const t = uniform(ctx, ctx.empty([n]), { seed: 5, lo: 0, hi: 1 });
      const got = await scale(ctx, t, 2).read();
      expect(got.length).toBe(n);
      // Spot checks across the first and second rows of the grid against the CPU Philox reference.
      for (const i of [0, 1, 65535 * 256 - 1, 65535 * 256, 65535 * 256 + 17, n - 1]) {
        const want = 2 * uniformAtRef(i, 5, 0, 0, 1);
        expect(Math.abs(got[i]! - want)).toBeLessThan(1e-6);
      }
    });
  });

  it('each lane fills elementsPerInvocation elements: the dispatch the profiler saw covers n exactly once', async () => {
    const per = elementsPerInvocation(ctx);
    for (const n of [1, 256 * per, 256 * per + 1, 65537]) {
      await ctx.scopeAsync(async () => {
        const t = ctx.empty([n]);
        const prof = await ctx.profile(() => void fill(ctx, t, 3));
        expect(Array.from(await t.read()).every((v) => v === 3), `fill n=${n}`).toBe(true);
        if (!ctx.caps.timestampQuery) {
          console.log('elementwise: no timestamp-query, so no profile of the dispatch on this adapter');
          expect(prof).toBeNull();
          return;
        }
        expect(prof!.map((p) => p.kernel)).toEqual(['elementwise.wgsl:fill']);
        // 256 lanes per workgroup (the WGSL's workgroup size), `per` elements each.
        const [wx, wy, wz] = prof![0]!.workgroups;
        expect(wx * wy * wz, `fill n=${n}: workgroups`).toBe(Math.ceil(n / (256 * per)));
      });
    }
  });
});
