import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { embedding, embeddingBackward, TokenIds } from '../../src/kernels/embedding.js';
import { embeddingBackwardRef, embeddingRef } from '../../src/kernels/embedding.ref.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('embedding against the f64 reference', () => {
  it('gathers rows and sums the gradient of repeated ids, leaving other rows 0', async () => {
    const [V, D, T] = [50, 130, 257];
    const R = rng(3);
    const table = Array.from(randomArray(V * D, R), Math.fround);
    const idList = Array.from({ length: T }, () => Math.floor(R() * 20)); // ids 20..49 never occur
    const dy = Array.from(randomArray(T * D, R), Math.fround);
    const ids = new TokenIds(ctx, idList, V);
    await ctx.scopeAsync(async () => {
      const t = ctx.tensor(table, [V, D]);
      const out = embedding(ctx, t, ids);
      expect(out.shape).toEqual([T, D]);
      expectClose(await out.read(), embeddingRef(table, idList, D), { atol: 0, rtol: 0 }, 'gather');
      // Ids 0..19 over 257 tokens: each row sums about 13 dy rows.
      expectClose(await embeddingBackward(ctx, t, ids, ctx.tensor(dy, [T, D])).read(), embeddingBackwardRef(idList, dy, V, D), { atol: 1e-5, rtol: 1e-5 }, 'backward');
      expect(() => embedding(ctx, ctx.empty([V + 1, D]), ids)).toThrow(`embedding: table has shape [${V + 1},${D}], expected [V,D] with V = ${V}`);
    });
    ids.dispose();
  });
});
