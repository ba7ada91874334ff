import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ShapeError } from '../../src/gpu/errors.js';
import { matmulVersions } from '../../src/kernels/matmul.js';
import { matmulRef } from '../../src/kernels/matmul.ref.js';
import { biasMask, type FreezeSpec, GradMask, maskedBiasGrad, maskedGrad } from '../../src/kernels/maskedGrad.js';
import { maskedBiasGradRef, maskedGradRef, trainableRef } from '../../src/kernels/maskedGrad.ref.js';
import { expectF16Product, halfArray } from '../f16.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('masked gradients for partly frozen weights', () => {
  const M = 19;
  const N = 37;
  const K = 44;
  const dy = Array.from(randomArray(M * N, rng(1)), Math.fround);
  const x = Array.from(randomArray(M * K, rng(2)), Math.fround);
  const elements = Array.from({ length: N * K }, (_, i) => (i * 7919) % 5 === 0 ? 1 : 0);
  const specs: [string, FreezeSpec][] = [
    ['rows', { rows: [[0, 5], [20, 23]] }],
    ['cols', { cols: [[8, 40]] }],
    ['rows and cols', { rows: [[10, 37]], cols: [[0, 4]] }],
    ['blocks', { blockRows: 8, blockCols: 16, trainable: [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0] }],
    ['elements', { elements }],
    ['everything frozen', { rows: [[3, 4]], cols: [[43, 44]] }],
  ];
  // The frozen set comes from each spec, decoded by the reference (trainableRef), never from
  // GradMask's own decoding (`mask.trainable`), which builds the GPU mask.
  for (const [name, spec] of specs) {
    it(`${name}: every version matches the reference, frozen entries exactly 0`, async () => {
      const mask = new GradMask(ctx, [N, K], spec);
      const trainable = trainableRef(spec, N, K);
      const want = maskedGradRef(dy, x, M, N, K, trainable);
      try {
        for (const version of matmulVersions(ctx, K, false)) {
          await ctx.scopeAsync(async () => {
            // Garbage in `out` must not survive in frozen entries.
            const out = ctx.tensor(new Array(N * K).fill(123), [N, K]);
            const got = await maskedGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask, { out, version }).read();
            expectClose(got, want, { atol: 1e-5 * Math.sqrt(M), rtol: 1e-4 }, `${name} ${version}`);
            const notZero = Array.from(got).findIndex((v, i) => !trainable[i] && v !== 0);
            expect(notZero, `${name} ${version}: a frozen entry is not exactly 0`).toBe(-1);
          });
        }
      } finally {
        mask.dispose();
      }
    });
  }

  it('f16 storage (f32 accumulation) on every version, frozen entries exactly 0', async () => {
    if (!ctx.caps.f16) {
      console.log('maskedGrad: the adapter has no shader-f16; f16 storage refused');
      expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
      return;
    }
    const R = rng(17);
    const [dyH, xH] = [halfArray(M * N, R), halfArray(M * K, R)];
    for (const [name, spec] of specs.filter(([n]) => n === 'rows and cols' || n === 'elements')) {
      const mask = new GradMask(ctx, [N, K], spec);
      const trainable = trainableRef(spec, N, K);
      const want = maskedGradRef(dyH, xH, M, N, K, trainable);
      const mag = maskedGradRef(dyH.map(Math.abs), xH.map(Math.abs), M, N, K, trainable);
      try {
        for (const version of matmulVersions(ctx, K, false)) {
          await ctx.scopeAsync(async () => {
            const out = ctx.tensor(new Array(N * K).fill(123), [N, K], 'f16');
            const got = await maskedGrad(ctx, ctx.tensor(dyH, [M, N], 'f16'), ctx.tensor(xH, [M, K], 'f16'), mask, { out, version }).read();
            expectF16Product(got, want, mag, { roundings: M + 2 }, `f16 ${name} ${version}`);
            expect(Array.from(got).findIndex((v, i) => !trainable[i] && v !== 0), `f16 ${name} ${version}: a frozen entry is not 0`).toBe(-1);
          });
        }
      } finally {
        mask.dispose();
      }
    }
  }, 600_000);

  it('accumulates into an existing gradient and matches finite differences of Σ dy ⊙ (x·Wᵀ)', async () => {
    const spec = { rows: [[2, 30]] as [number, number][] };
    const mask = new GradMask(ctx, [N, K], spec);
    const trainable = trainableRef(spec, N, K);
    const W = Array.from(randomArray(N * K, rng(3)));
    const loss = (w: number[]) => matmulRef({ a: x, b: w, M, N, K, transB: true }).reduce((a, v, i) => a + v * dy[i]!, 0);
    await ctx.scopeAsync(async () => {
      const out = maskedGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask);
      maskedGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask, { out, accumulate: true });
      const got = await out.read();
      const h = 1e-6;
      for (const e of [0, 5, 2 * K + 3, 29 * K + 43, 30 * K, N * K - 1]) {
        const plus = W.slice();
        const minus = W.slice();
        plus[e]! += h;
        minus[e]! -= h;
        const fd = trainable[e] ? (2 * (loss(plus) - loss(minus))) / (2 * h) : 0;
        expect(Math.abs(got[e]! - fd)).toBeLessThan(1e-4 + 1e-3 * Math.abs(fd));
      }
    });
    mask.dispose();
  });

  it('bias gradient: summed over tokens, frozen entries exactly 0, matches finite differences', async () => {
    const ranges: [number, number][] = [[3, 9], [30, 37]];
    const mask = biasMask(ctx, N, ranges);
    const b = Array.from(randomArray(N, rng(4)));
    // loss(b) = Σ dy ⊙ (x·W0ᵀ + b): only the b term depends on b.
    const loss = (bb: number[]) => dy.reduce((a, v, i) => a + v * bb[i % N]!, 0);
    await ctx.scopeAsync(async () => {
      for (const shape of [[M, N], [1, M, N]]) {
        const db = maskedBiasGrad(ctx, ctx.tensor(dy, shape), mask);
        expect(db.shape).toEqual([N]);
        const got = await db.read();
        expectClose(got, maskedBiasGradRef(dy, N, ranges), { atol: 1e-5 * Math.sqrt(M), rtol: 1e-4 }, `db ${shape}`);
        for (let n = 0; n < N; n++) {
          const h = 1e-6;
          const plus = b.slice();
          const minus = b.slice();
          plus[n]! += h;
          minus[n]! -= h;
          const trainable = (n >= 3 && n < 9) || n >= 30;
          const want = trainable ? (loss(plus) - loss(minus)) / (2 * h) : 0;
          if (!trainable) expect(got[n]).toBe(0);
          else expect(Math.abs(got[n]! - want)).toBeLessThan(1e-4 + 1e-4 * Math.abs(want));
        }
      }
    });
    expect(() => maskedBiasGrad(ctx, ctx.empty([2, N]), new GradMask(ctx, [2, N], { rows: [[0, 1]] }))).toThrow(
      `maskedBiasGrad: the mask is [2,${N}], expected [1,N] (from biasMask)`,
    );
    mask.dispose();
  });

  it('dispatches work only for trainable tiles: 90% of rows frozen runs ~10% of the workgroups', async () => {
    // [1024, 256]: regblock4's tile is 8 rows × 256 columns, regblock4sg's 16 × 256, so one
    // workgroup per 8 (16) rows; rows 0..101 train. What ran is read from the profiler.
    const [Nb, Kb, Mb] = [1024, 256, 4];
    const dyB = Array.from(randomArray(Mb * Nb, rng(5)), Math.fround);
    const xB = Array.from(randomArray(Mb * Kb, rng(6)), Math.fround);
    const cases: [string, number][] = [['regblock4', 8]];
    if (matmulVersions(ctx, Kb, false).includes('regblock4sg')) cases.push(['regblock4sg', 16]);
    for (const [version, rowsPerTile] of cases) {
      for (const trainRows of [102, Nb]) {
        const spec = { rows: [[0, trainRows]] as [number, number][] };
        const mask = new GradMask(ctx, [Nb, Kb], spec);
        await ctx.scopeAsync(async () => {
          let dW: ReturnType<typeof maskedGrad> | undefined;
          const prof = await ctx.profile(() => {
            dW = maskedGrad(ctx, ctx.tensor(dyB, [Mb, Nb]), ctx.tensor(xB, [Mb, Kb]), mask, { version: version as 'regblock4' });
          });
          expectClose(await dW!.read(), maskedGradRef(dyB, xB, Mb, Nb, Kb, trainableRef(spec, Nb, Kb)), { atol: 1e-5 * Math.sqrt(Mb), rtol: 1e-4 }, `${version} ${trainRows} rows`);
          if (!ctx.caps.timestampQuery) {
            console.log('maskedGrad: no timestamp-query, so no profile of the dispatches on this adapter');
            expect(prof).toBeNull();
            return;
          }
          const mm = prof!.filter((p) => p.kernel.endsWith(`:matmul_${version}`));
          expect(mm, `${version}: one matmul dispatch`).toHaveLength(1);
          expect(mm[0]!.workgroups).toEqual([Math.ceil(trainRows / rowsPerTile), 1, 1]);
          // Tiles that are not visited are zero-filled first, only when some are skipped.
          expect(prof!.some((p) => p.kernel.startsWith('elementwise.wgsl:fill'))).toBe(trainRows < Nb);
        });
        mask.dispose();
      }
    }
  }, 600_000);

  it('rejects a mask of the wrong shape and mismatched operands', () => {
    expect(() => new GradMask(ctx, [4, 5], { elements: new Array(19).fill(1) })).toThrow(
      'GradMask: elements has 19 entries, expected N·K = 20 for [4,5]',
    );
    expect(() => new GradMask(ctx, [4, 5], { rows: [[2, 9]] })).toThrow('GradMask: row range [2, 9) is not inside [0, 4) with start < end');
    const mask = new GradMask(ctx, [4, 5], { rows: [[0, 2]] });
    ctx.scope(() => {
      const e = (() => {
        try {
          maskedGrad(ctx, ctx.empty([3, 4]), ctx.empty([2, 5]), mask);
        } catch (err) {
          return err as Error;
        }
      })();
      expect(e).toBeInstanceOf(ShapeError);
      expect(e!.message).toBe('maskedGrad: dy has 3 rows and x has 2; they must match');
      expect(() => maskedGrad(ctx, ctx.empty([3, 6]), ctx.empty([3, 5]), mask)).toThrow(/dy has shape \[3,6\], expected \[\.\.\., N\] with N = 4/);
    });
    mask.dispose();
  });
});
