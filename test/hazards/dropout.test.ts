/**
 * LoRA dropout draws a new mask at every forward unless the caller fixes the stream: the
 * layer advances its own (seed, offset) by default; explicit seeds still reproduce.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as autograd from '../../src/autograd/ops.js';
import { clearTape, requiresGrad } from '../../src/autograd/tape.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { LoraLayer, loraForward } from '../../src/kernels/lora.js';
import { randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const [M, K, N, r] = [8, 16, 12, 4];

function layer(): LoraLayer {
  const R = rng(5);
  return new LoraLayer(ctx, {
    W: ctx.tensor(randomArray(N * K, R), [N, K]),
    A: ctx.tensor(randomArray(r * K, R), [r, K]),
    B: ctx.tensor(randomArray(N * r, R), [N, r]),
    rank: r,
    alpha: 8,
    dropout: 0.5,
  });
}

describe('LoRA dropout streams', () => {
  it('loraForward without a seed draws a different mask each call; an explicit seed reproduces', async () => {
    await ctx.scopeAsync(async () => {
      const l = layer();
      const x = ctx.tensor(randomArray(M * K, rng(6)), [M, K]);
      const f1 = loraForward(ctx, l, x);
      const f2 = loraForward(ctx, l, x);
      const [y1, y2] = [await f1.y.toArray(), await f2.y.toArray()];
      expect(y1).not.toEqual(y2);
      expect([f1.saved!.seed, f1.saved!.offset]).not.toEqual([f2.saved!.seed, f2.saved!.offset]);
      const e1 = await loraForward(ctx, l, x, { seed: 11 }).y.toArray();
      const e2 = await loraForward(ctx, l, x, { seed: 11 }).y.toArray();
      expect(e1).toEqual(e2);
      const o1 = await loraForward(ctx, l, x, { seed: 11, offset: 3 }).y.toArray();
      expect(o1).not.toEqual(e1);
      // Without dropout (evaluation) the output does not depend on the stream at all.
      const t1 = await loraForward(ctx, l, x, { training: false }).y.toArray();
      const t2 = await loraForward(ctx, l, x, { training: false }).y.toArray();
      expect(t1).toEqual(t2);
    });
  });

  it('two layers do not share a stream, and autograd.loraLinear advances it too', async () => {
    await ctx.scopeAsync(async () => {
      const [a, b] = [layer(), layer()];
      const x = ctx.tensor(randomArray(M * K, rng(7)), [M, K]);
      const ya = await loraForward(ctx, a, x).y.toArray();
      const yb = await loraForward(ctx, b, x).y.toArray(); // same weights, first call each
      expect(ya).not.toEqual(yb);
      requiresGrad(a.A);
      const g1 = await autograd.loraLinear(ctx, x, a).toArray();
      const g2 = await autograd.loraLinear(ctx, x, a).toArray();
      expect(g1).not.toEqual(g2);
      clearTape(ctx);
    });
  });
});
