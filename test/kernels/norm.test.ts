import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { KernelModule } from '../../src/gpu/kernel.js';
import { layerNorm, normBackward, normConfig, NORM_LANE_MAX_COLS, type NormRowPath, rmsNorm } from '../../src/kernels/norm.js';
import { wgsl } from '../../src/wgsl/sources.js';
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

// Both versions of norm_forward and norm_backward_x, forced through normConfig.rowPath, with the
// entries that ran read back from ctx.profile(), so a test of one path cannot pass by running the other.
describe('row paths: a workgroup per row and a lane per row (the `_lane` entries)', () => {
  afterEach(() => {
    normConfig.rowPath = 'auto';
  });
  const laneRows = KernelModule.get('norm.wgsl', wgsl.norm).workgroupSize('norm_forward_lane')[0];
  // One row; primes; more rows than a lane workgroup holds and not a multiple of it; columns on
  // both sides of NORM_LANE_MAX_COLS (the 'auto' threshold on a CPU adapter).
  const ROW_SHAPES: [number, number][] = [
    [1, 1],
    [1, 256],
    [7, 131],
    [laneRows + 1, 64],
    [3 * laneRows + 5, 256],
    [37, NORM_LANE_MAX_COLS],
    [3, NORM_LANE_MAX_COLS + 7],
  ];
  const PATHS: NormRowPath[] = ['workgroup', 'lane'];

  /** Run `fn` under ctx.profile; the norm.wgsl entries that ran and their workgroup counts (null without timestamps). */
  async function profiled<T>(fn: () => T): Promise<{ out: T; ran: { entry: string; groups: number }[] | null }> {
    let out: T | undefined;
    const prof = await ctx.profile(() => {
      out = fn();
    });
    if (!ctx.caps.timestampQuery) {
      console.log('norm: no timestamp-query, so no profile of the entries on this adapter');
      expect(prof).toBeNull();
      return { out: out!, ran: null };
    }
    const ran = prof!
      .filter((p) => p.kernel.startsWith('norm.wgsl:'))
      .map((p) => ({ entry: p.kernel.slice('norm.wgsl:'.length), groups: p.workgroups[0] * p.workgroups[1] * p.workgroups[2] }));
    return { out: out!, ran };
  }

  const expected = (path: NormRowPath, R: number, entry: string) =>
    path === 'lane' ? { entry: `${entry}_lane`, groups: Math.ceil(R / laneRows) } : { entry, groups: R };

  it('forward and dx of LayerNorm (with and without β) and RMSNorm match the f64 references on both paths', async () => {
    for (const path of PATHS) {
      normConfig.rowPath = path;
      for (const [R, C] of ROW_SHAPES) {
        const x = f32(R * C, 5 * R + C, 99, 101); // mean 100, small spread: the variance must be taken around the mean
        const g = f32(C, C + 5);
        const b = f32(C, C + 6);
        const dy = f32(R * C, R * C + 7);
        for (const [kind, beta] of [['layer', true], ['layer', false], ['rms', false]] as const) {
          const what = `${path} ${kind}${beta ? ' with β' : ''} ${R}x${C}`;
          await ctx.scopeAsync(async () => {
            const X = ctx.tensor(x, [R, C]);
            const G = ctx.tensor(g, [C]);
            const { out, ran } = await profiled(() => {
              const fw = kind === 'layer' ? layerNorm(ctx, X, G, beta ? ctx.tensor(b, [C]) : undefined) : rmsNorm(ctx, X, G);
              return { fw, bw: normBackward(ctx, kind, X, G, fw.stats, ctx.tensor(dy, [R, C]), { beta, needParams: false }) };
            });
            if (ran) expect(ran, what).toEqual([expected(path, R, 'norm_forward'), expected(path, R, 'norm_backward_x')]);
            const ftol = kind === 'layer' ? { atol: 2e-4, rtol: 1e-3 } : { atol: 1e-5, rtol: 1e-4 };
            expectClose(await out.fw.y.read(), normRef(kind, x, g, beta ? b : null, C), ftol, `forward ${what}`);
            // x around 100 with spread 1: x̂ carries the rounding of x − μ (|x| ≈ 100, u ≈ 6e-8) times rstd ≈ 3.5.
            const want = normBackwardRef(kind, x, g, dy, C);
            const dtol = kind === 'layer' ? { atol: 2e-5 * Math.sqrt(C), rtol: 1e-3 } : { atol: 2e-6 * Math.sqrt(C), rtol: 1e-4 };
            expectClose(await out.bw.dx!.read(), want.dx, dtol, `dx ${what}`);
          });
        }
      }
    }
  });

  it('dx on the lane path agrees with central finite differences of the f64 reference loss Σ y·dy', async () => {
    normConfig.rowPath = 'lane';
    const [R, C] = [laneRows + 2, 23];
    const x = f32(R * C, 41, -2, 2);
    const g = f32(C, 42);
    const dy = f32(R * C, 43);
    for (const kind of ['layer', 'rms'] as const) {
      const loss = (xs: number[]) => normRef(kind, xs, g, null, C).reduce((s, v, i) => s + v * dy[i]!, 0);
      const got = await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [R, C]);
        const G = ctx.tensor(g, [C]);
        const fw = kind === 'layer' ? layerNorm(ctx, X, G) : rmsNorm(ctx, X, G);
        return normBackward(ctx, kind, X, G, fw.stats, ctx.tensor(dy, [R, C]), { needParams: false }).dx!.read();
      });
      const h = 1e-5;
      // A sample of entries across rows (first, second lane workgroup, last row).
      for (const i of [0, 5, C + 3, laneRows * C + 7, R * C - 1]) {
        const xp = x.slice();
        const xm = x.slice();
        xp[i]! += h;
        xm[i]! -= h;
        const fd = (loss(xp) - loss(xm)) / (2 * h);
        expect(Math.abs(got[i]! - fd), `${kind} dx[${i}]: got ${got[i]}, finite difference ${fd}`).toBeLessThan(1e-4 + 1e-3 * Math.abs(fd));
      }
    }
  });

  it("'auto' takes the lane path on a CPU adapter up to NORM_LANE_MAX_COLS columns, else a workgroup per row", async () => {
    for (const C of [256, NORM_LANE_MAX_COLS, NORM_LANE_MAX_COLS + 1]) {
      const R = 3;
      const x = f32(R * C, C);
      const g = f32(C, C + 1);
      await ctx.scopeAsync(async () => {
        const { out, ran } = await profiled(() => rmsNorm(ctx, ctx.tensor(x, [R, C]), ctx.tensor(g, [C])));
        expectClose(await out.y.read(), normRef('rms', x, g, null, C), { atol: 1e-5, rtol: 1e-4 }, `auto rmsNorm ${R}x${C}`);
        const path: NormRowPath = ctx.caps.software && C <= NORM_LANE_MAX_COLS ? 'lane' : 'workgroup';
        if (ran) expect(ran, `auto ${R}x${C} (software adapter: ${ctx.caps.software})`).toEqual([expected(path, R, 'norm_forward')]);
      });
    }
  });
});
