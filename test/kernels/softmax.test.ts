import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError } from '../../src/gpu/errors.js';
import { KernelModule } from '../../src/gpu/kernel.js';
import {
  crossEntropy,
  crossEntropyBackward,
  logSoftmax,
  logSoftmaxBackward,
  softmax,
  softmaxBackward,
  softmaxConfig,
  SOFTMAX_LANE_MAX_COLS,
  type SoftmaxRowPath,
} from '../../src/kernels/softmax.js';
import { wgsl } from '../../src/wgsl/sources.js';
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
      x[0] = 100; // exp(100) ≈ 2.7e43 overflows f32 (max ≈ 3.4e38; exp(80) ≈ 5.5e34 would not) without the max shift
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

// Both versions of each row-wise entry, forced through softmaxConfig.rowPath, with the entry that
// ran read back from ctx.profile(), so a test of one path cannot pass by running the other.
describe('row paths: a workgroup per row and a lane per row (the `_lane` entries)', () => {
  afterEach(() => {
    softmaxConfig.rowPath = 'auto';
  });
  const laneRows = KernelModule.get('softmax.wgsl', wgsl.softmax).workgroupSize('softmax_rows_lane')[0];
  // One row; primes; more rows than a lane workgroup holds and not a multiple of it; columns on
  // both sides of SOFTMAX_LANE_MAX_COLS (the 'auto' threshold on a CPU adapter).
  const SHAPES: [number, number][] = [
    [1, 1],
    [1, 128],
    [7, 131],
    [laneRows + 1, 64],
    [3 * laneRows + 5, 256],
    [37, SOFTMAX_LANE_MAX_COLS],
    [3, SOFTMAX_LANE_MAX_COLS + 7],
    [2, 2048],
  ];
  const PATHS: SoftmaxRowPath[] = ['workgroup', 'lane'];

  /** Run `fn` under ctx.profile; the softmax.wgsl entries that ran and their workgroup counts (null without timestamps). */
  async function profiled<T>(fn: () => T): Promise<{ out: T; ran: { entry: string; groups: number }[] | null }> {
    let out: T | undefined;
    const prof = await ctx.profile(() => {
      out = fn();
    });
    if (!ctx.caps.timestampQuery) {
      console.log('softmax: no timestamp-query, so no profile of the entries on this adapter');
      expect(prof).toBeNull();
      return { out: out!, ran: null };
    }
    const ran = prof!
      .filter((p) => p.kernel.startsWith('softmax.wgsl:'))
      .map((p) => ({ entry: p.kernel.slice('softmax.wgsl:'.length), groups: p.workgroups[0] * p.workgroups[1] * p.workgroups[2] }));
    return { out: out!, ran };
  }

  /** What `entries` of a row-wise op over R rows look like on `path`: the entry name and its workgroups. */
  const expected = (path: SoftmaxRowPath, R: number, ...entries: string[]) =>
    entries.map((e) => (path === 'lane' ? { entry: `${e}_lane`, groups: Math.ceil(R / laneRows) } : { entry: e, groups: R }));

  it('softmax, log-softmax and their backward match the f64 references on both paths (max shift: a logit of 100)', async () => {
    for (const path of PATHS) {
      softmaxConfig.rowPath = path;
      for (const [R, C] of SHAPES) {
        const x = Array.from(randomArray(R * C, rng(R * 31 + C), -5, 5), Math.fround);
        x[Math.floor(R / 2) * C] = 100; // exp(100) overflows f32 without the max shift
        const dy = Array.from(randomArray(R * C, rng(R + C * 7)), Math.fround);
        const what = `${path} ${R}x${C}`;
        await ctx.scopeAsync(async () => {
          const X = ctx.tensor(x, [R, C]);
          const DY = ctx.tensor(dy, [R, C]);
          const sm = await profiled(() => {
            const y = softmax(ctx, X);
            return { y, dx: softmaxBackward(ctx, y, DY) };
          });
          if (sm.ran) expect(sm.ran, what).toEqual(expected(path, R, 'softmax_rows', 'softmax_backward'));
          expectClose(await sm.out.y.read(), softmaxRef(x, C), { atol: 1e-6, rtol: 1e-4 }, `softmax ${what}`);
          expectClose(await sm.out.dx.read(), softmaxBackwardRef(x, dy, C), { atol: 2e-7 * Math.sqrt(C), rtol: 1e-4 }, `softmaxBackward ${what}`);
          const ls = await profiled(() => {
            const y = logSoftmax(ctx, X);
            return { y, dx: logSoftmaxBackward(ctx, y, DY) };
          });
          if (ls.ran) expect(ls.ran, what).toEqual(expected(path, R, 'log_softmax_rows', 'log_softmax_backward'));
          expectClose(await ls.out.y.read(), softmaxRef(x, C, true), { atol: 1e-5, rtol: 1e-5 }, `logSoftmax ${what}`);
          expectClose(await ls.out.dx.read(), softmaxBackwardRef(x, dy, C, true), { atol: 2e-6 * Math.sqrt(C), rtol: 1e-4 }, `logSoftmaxBackward ${what}`);
        });
      }
    }
  });

  it('causal softmax on both paths: row t of each T×T block sees columns 0..t, later ones are 0', async () => {
    for (const path of PATHS) {
      softmaxConfig.rowPath = path;
      // Z·T rows: 1; 111 (three lane workgroups and a part); 260.
      for (const [Z, T] of [[1, 1], [3, 37], [2, 130]] as const) {
        const x = Array.from(randomArray(Z * T * T, rng(T + 1)), Math.fround);
        x[(T - 1) * T] = 100; // column 0 of the first block's last row: visible, and exp(100) overflows f32 unshifted
        const { out, ran } = await profiled(() => softmax(ctx, ctx.tensor(x, [Z, T, T]), undefined, { causal: true }));
        if (ran) expect(ran, `${path} ${Z}x${T}x${T}`).toEqual(expected(path, Z * T, 'softmax_rows'));
        expectClose(await out.read(), causalSoftmaxRef(x, T), { atol: 1e-6, rtol: 1e-4 }, `causal softmax ${path} ${Z}x${T}x${T}`);
        out.dispose();
      }
    }
  });

  it('cross-entropy forward and backward on both paths (labels with ignore-index, soft targets, smoothing)', async () => {
    for (const path of PATHS) {
      softmaxConfig.rowPath = path;
      for (const [R, C] of [[1, 3], [laneRows + 3, 17], [2 * laneRows + 1, 256], [5, 2048]] as const) {
        const R0 = rng(R * 5 + C);
        const x = Array.from(randomArray(R * C, R0, -4, 4), Math.fround);
        x[0] = 100; // overflows exp without the max shift
        const labels = Array.from({ length: R }, (_, r) => (R > 1 && r % 4 === 2 ? -100 : Math.floor(R0() * C)));
        const soft = Array.from(randomArray(R * C, R0, 0, 1), Math.fround);
        const g = 0.5;
        const opts = { labelSmoothing: 0.1 };
        await ctx.scopeAsync(async () => {
          const X = ctx.tensor(x, [R, C]);
          const dLoss = ctx.tensor([g], [1]);
          for (const [name, target, ref] of [
            ['labels', { labels: ctx.tensor(labels, [R]) }, { labels }],
            ['soft', { soft: ctx.tensor(soft, [R, C]) }, { soft }],
          ] as const) {
            const what = `${path} ${name} ${R}x${C}`;
            const { out, ran } = await profiled(() => {
              const f = crossEntropy(ctx, X, target, opts);
              return { ...f, dx: crossEntropyBackward(ctx, X, f.saved, dLoss) };
            });
            if (ran) {
              const rows = expected(path, R, 'xent_rows')[0]!;
              expect(ran, what).toEqual([rows, { entry: 'xent_mean', groups: 1 }, expected(path, R, 'xent_backward')[0]!]);
            }
            // The lane path sums a row serially in f32: error up to C·u (u = 2⁻²⁴) of Σ|q·x|, against log C·u for the tree.
            expectClose(await out.loss.read(), [crossEntropyRef(x, C, ref, opts)], { atol: 1e-5, rtol: 1e-5 + C * 6e-8 }, `loss ${what}`);
            expectClose(await out.dx.read(), crossEntropyGradRef(x, C, ref, opts, g), { atol: 1e-6, rtol: 1e-4 }, `d logits ${what}`);
          }
        });
      }
    }
  });

  it('a bad label past the first lane workgroup is reported on both paths', async () => {
    for (const path of PATHS) {
      softmaxConfig.rowPath = path;
      const R = 2 * laneRows + 3;
      const C = 9;
      const labels = Array.from({ length: R }, (_, r) => r % C);
      labels[laneRows + 4] = 9; // == C: out of range
      labels[laneRows + 6] = -2;
      await ctx.scopeAsync(async () => {
        const { loss } = crossEntropy(ctx, ctx.tensor(randomArray(R * C, rng(3)), [R, C]), { labels: ctx.tensor(labels, [R]) });
        const e = await loss.read().then(
          () => null,
          (err: unknown) => err,
        );
        expect(e, path).toBeInstanceOf(ArgumentError);
        expect(String(e)).toContain(`crossEntropy: labels[${laneRows + 4}] = 9, expected an integer class index in [0, ${C})`);
      });
    }
  });

  it("'auto' takes the lane path on a CPU adapter up to SOFTMAX_LANE_MAX_COLS columns, else a workgroup per row", async () => {
    for (const C of [128, SOFTMAX_LANE_MAX_COLS, SOFTMAX_LANE_MAX_COLS + 1]) {
      const R = 3;
      const x = Array.from(randomArray(R * C, rng(C)), Math.fround);
      const { out, ran } = await profiled(() => softmax(ctx, ctx.tensor(x, [R, C])));
      expectClose(await out.read(), softmaxRef(x, C), { atol: 1e-6, rtol: 1e-4 }, `auto softmax ${R}x${C}`);
      out.dispose();
      const path: SoftmaxRowPath = ctx.caps.software && C <= SOFTMAX_LANE_MAX_COLS ? 'lane' : 'workgroup';
      if (ran) expect(ran, `auto ${R}x${C} (software adapter: ${ctx.caps.software})`).toEqual(expected(path, R, 'softmax_rows'));
    }
  });
});
