import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ShapeError } from '../../src/gpu/errors.js';
import { matmul, matmulVersions } from '../../src/kernels/matmul.js';
import { matmulRef } from '../../src/kernels/matmul.ref.js';
import { biasMask, type FreezeSpec, GradMask, maskedBiasGrad, maskedGrad } from '../../src/kernels/maskedGrad.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

/** dW = mask ⊙ (dyᵀ·x) in f64. */
function maskedRef(dy: number[], x: number[], M: number, N: number, K: number, mask: GradMask): Float64Array {
  const full = matmulRef({ a: dy, b: x, M: N, N: K, K: M, transA: true });
  for (let i = 0; i < N; i++) for (let j = 0; j < K; j++) if (!mask.trainable(i, j)) full[i * K + j] = 0;
  return full;
}

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
  for (const [name, spec] of specs) {
    it(`${name}: every version matches the reference, frozen entries exactly 0`, async () => {
      const mask = new GradMask(ctx, [N, K], spec);
      const want = maskedRef(dy, x, M, N, K, mask);
      try {
        for (const version of matmulVersions(ctx, K, false)) {
          await ctx.scopeAsync(async () => {
            // Garbage in `out` must not survive in frozen entries.
            const out = ctx.tensor(new Array(N * K).fill(123), [N, K]);
            const got = await maskedGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask, { out, version }).read();
            expectClose(got, want, { atol: 1e-5 * Math.sqrt(M), rtol: 1e-4 }, `${name} ${version}`);
            for (let i = 0; i < N * K; i++) if (!mask.trainable(Math.floor(i / K), i % K)) expect(got[i]).toBe(0);
          });
        }
      } finally {
        mask.dispose();
      }
    });
  }

  it('accumulates into an existing gradient and matches finite differences of Σ dy ⊙ (x·Wᵀ)', async () => {
    const mask = new GradMask(ctx, [N, K], { rows: [[2, 30]] });
    const W = Array.from(randomArray(N * K, rng(3)));
    const loss = (w: number[]) => matmulRef({ a: x, b: w, M, N, K, transB: true }).reduce((a, v, i) => a + v * dy[i]!, 0);
    await ctx.scopeAsync(async () => {
      const out = maskedGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask);
      maskedGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask, { out, accumulate: true });
      const got = await out.read();
      const h = 1e-6;
      for (const e of [0, 5, 2 * K + 3, 29 * K + 43, 30 * K, N * K - 1]) {
        const i = Math.floor(e / K);
        const plus = W.slice();
        const minus = W.slice();
        plus[e]! += h;
        minus[e]! -= h;
        const fd = mask.trainable(i, e % K) ? (2 * (loss(plus) - loss(minus))) / (2 * h) : 0;
        expect(Math.abs(got[e]! - fd)).toBeLessThan(1e-4 + 1e-3 * Math.abs(fd));
      }
    });
    mask.dispose();
  });

  it('bias gradient: summed over tokens, frozen entries exactly 0, matches finite differences', async () => {
    const mask = biasMask(ctx, N, [[3, 9], [30, 37]]);
    const b = Array.from(randomArray(N, rng(4)));
    // loss(b) = Σ dy ⊙ (x·W0ᵀ + b): only the b term depends on b.
    const loss = (bb: number[]) => dy.reduce((a, v, i) => a + v * bb[i % N]!, 0);
    await ctx.scopeAsync(async () => {
      for (const shape of [[M, N], [1, M, N]]) {
        const db = maskedBiasGrad(ctx, ctx.tensor(dy, shape), mask);
        expect(db.shape).toEqual([N]);
        const got = await db.read();
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

  it('dispatches work only for trainable tiles: 90% of rows frozen visits ~10% of the tiles', async () => {
    const big = new GradMask(ctx, [1024, 256], { rows: [[0, 102]] });
    const all = new GradMask(ctx, [1024, 256], { rows: [[0, 1024]] });
    const v = 'regblock4' as const;
    const frozen = big.forVersion(v).mask.tileCount!;
    const free = all.forVersion(v).mask.tileCount!;
    expect(free).toBe(128);
    expect(frozen).toBe(13); // ceil(102 / 8) row tiles of 8
    if (matmulVersions(ctx, 256, false).includes('regblock4sg')) {
      expect(all.forVersion('regblock4sg').mask.tileCount).toBe(64);
      expect(big.forVersion('regblock4sg').mask.tileCount).toBe(7); // ceil(102 / 16) row tiles of 16
    }
    big.dispose();
    all.dispose();
  });

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
    // An unmasked product still goes through matmul for comparison.
    expect(typeof matmul).toBe('function');
  });
});
