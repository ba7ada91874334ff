import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { dropout, normal, uniform } from '../../src/kernels/random.js';
import { dropoutMaskRef, normalRef, philoxRef, uniformRef } from '../../src/kernels/random.ref.js';
import { expectClose, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('Philox random kernels', () => {
  it('the CPU reference reproduces Random123 known-answer vectors for philox4x32-10', () => {
    expect(philoxRef([0, 0, 0, 0], [0, 0])).toEqual([0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    expect(philoxRef([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])).toEqual([0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    expect(philoxRef([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])).toEqual([0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
  });

  it('uniform and normal match the reference for the same seed and offset, and differ across seeds', async () => {
    const n = 1000;
    await ctx.scopeAsync(async () => {
      const u = await uniform(ctx, ctx.empty([n]), { seed: 2 ** 40 + 5, offset: 3, lo: -2, hi: 3 }).read();
      expectClose(u, uniformRef(n, 2 ** 40 + 5, 3, -2, 3), { atol: 2e-6, rtol: 1e-6 }, 'uniform');
      const z = await normal(ctx, ctx.empty([n]), { seed: 9, mean: 1, std: 2 }).read();
      expectClose(z, normalRef(n, 9, 0, 1, 2), { atol: 1e-4, rtol: 1e-4 }, 'normal');
      const other = await uniform(ctx, ctx.empty([n]), { seed: 2 ** 40 + 6, offset: 3, lo: -2, hi: 3 }).read();
      expect(other.some((v, i) => v !== u[i])).toBe(true);
    });
  });

  it('dropout keeps 1 − p of the elements, scaled by 1/(1 − p), with the reference mask', async () => {
    const n = 4096;
    const p = 0.25;
    const x = Array.from({ length: n }, (_, i) => (i % 7) - 3);
    const keep = dropoutMaskRef(n, 77, 1, p);
    const got = await ctx.scopeAsync(() => dropout(ctx, ctx.tensor(x, [n]), { p, seed: 77, offset: 1 }).read());
    expectClose(got, x.map((v, i) => (keep[i] ? v / (1 - p) : 0)), { atol: 1e-6, rtol: 1e-6 }, 'dropout');
    const frac = keep.reduce((a, b) => a + b, 0) / n;
    expect(Math.abs(frac - (1 - p))).toBeLessThan(0.03);
  });

  it('rejects bad seeds and probabilities', () => {
    ctx.scope(() => {
      const t = ctx.empty([4]);
      expect(() => uniform(ctx, t, { seed: -1, lo: 0, hi: 1 })).toThrow('uniform: seed = -1, expected a non-negative integer below 2^53');
      expect(() => dropout(ctx, t, { seed: 1, p: 1 })).toThrow('dropout: p = 1, expected 0 <= p < 1');
      expect(() => uniform(ctx, t, { seed: 1, lo: 1, hi: 1 })).toThrow('uniform: hi = 1 must exceed lo = 1');
    });
  });
});
