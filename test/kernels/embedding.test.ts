import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { embedding, embeddingBackward, TokenIds } from '../../src/kernels/embedding.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('embedding against the reference', () => {
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
      expectClose(await out.read(), idList.flatMap((id) => table.slice(id * D, id * D + D)), { atol: 0, rtol: 0 }, 'gather');
      const want = new Float64Array(V * D);
      idList.forEach((id, k) => { for (let d = 0; d < D; d++) want[id * D + d] += dy[k * D + d]!; });
      expectClose(await embeddingBackward(ctx, t, ids, ctx.tensor(dy, [T, D])).read(), want, { atol: 1e-5, rtol: 1e-5 }, 'backward');
      expect(() => embedding(ctx, ctx.empty([V + 1, D]), ids)).toThrow(`embedding: table has shape [${V + 1},${D}], expected [V,D] with V = ${V}`);
    });
    ids.dispose();
  });
});
