import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import type { DType } from '../../src/gpu/kernel.js';
import { dropout, normal, randomModule, uniform } from '../../src/kernels/random.js';
import { dropoutMaskRef, normalRef, philoxRef, uniformRef } from '../../src/kernels/random.ref.js';
import { halfArray } from '../f16.js';
import { expectClose, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

type Words4 = [number, number, number, number];

/**
 * Random123's known answers for philox4x32-10 (counter c0..c3, key k0 k1 -> four output words),
 * from its kat_vectors file, as quoted in D. E. Shaw Research's core123 test
 * (github.com/DEShawResearch/fs123, core123/ut/ut_philox.cpp).
 */
const KAT: [Words4, [number, number], Words4][] = [
  [[0x00000000, 0x00000000, 0x00000000, 0x00000000], [0x00000000, 0x00000000], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
  [[0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]],
  [[0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0], [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]],
];

/** The GPU's raw Philox words for each (counter, key), through random.wgsl's philox_words entry. */
async function gpuPhilox(dtype: DType, cases: [Words4, [number, number]][]): Promise<Words4[]> {
  const input = new Uint32Array(cases.flatMap(([c, k]) => [...c, ...k]));
  return ctx.scopeAsync(async () => {
    // u32 words travel in f32 tensors as raw bits (uploaded from, and read back into, the same bytes).
    const kin = ctx.tensor(new Float32Array(input.buffer), [input.length], 'f32', 'kat_in');
    const kout = ctx.empty([4 * cases.length], 'f32', 'kat_out');
    ctx.dispatch(randomModule(dtype), 'philox_words', {
      bindings: { kat_in: kin, kat_out: kout },
      params: { n: cases.length, seedLo: 0, seedHi: 0, offset: 0, a: 0, b: 0 },
      workgroups: [Math.ceil(cases.length / 256), 1, 1],
    });
    const f = await kout.read();
    const w = new Uint32Array(f.buffer, f.byteOffset, f.length);
    return cases.map((_, i) => Array.from(w.subarray(4 * i, 4 * i + 4)) as Words4);
  });
}

function dtypes(): DType[] {
  return ctx.caps.f16 ? ['f32', 'f16'] : ['f32'];
}

describe('Philox random kernels', () => {
  it('the GPU generator reproduces Random123 known-answer vectors for philox4x32-10, bit for bit (f32 and f16 modules)', async () => {
    for (const dtype of dtypes()) {
      const got = await gpuPhilox(dtype, KAT.map(([c, k]) => [c, k]));
      expect(got, `philox_words (${dtype} module)`).toEqual(KAT.map(([, , want]) => want));
    }
  });

  it('the CPU reference reproduces the same known answers, and the GPU words of the streams the kernels draw from', async () => {
    for (const [c, k, want] of KAT) expect(philoxRef(c, k)).toEqual(want);
    // Element i of (seed, offset) uses counter (i, offset, 0, 0) and key (seed mod 2^32, seed / 2^32).
    const seed = 2 ** 40 + 5;
    const cases: [Words4, [number, number]][] = [0, 1, 255, 256, 70_000].map((i) => [[i, 3, 0, 0], [seed % 2 ** 32, Math.floor(seed / 2 ** 32)]]);
    expect(await gpuPhilox('f32', cases)).toEqual(cases.map(([c, kk]) => philoxRef(c, kk)));
  });

  it('uniform and normal match the reference for the same seed and offset, and differ across seeds', async () => {
    const n = 1000;
    await ctx.scopeAsync(async () => {
      const u = await uniform(ctx, ctx.empty([n]), { seed: 2 ** 40 + 5, offset: 3, lo: -2, hi: 3 }).read();
      expectClose(u, uniformRef(n, 2 ** 40 + 5, 3, -2, 3), { atol: 2e-6, rtol: 1e-6 }, 'uniform');
      const z = await normal(ctx, ctx.empty([n]), { seed: 9, mean: 1, std: 2 }).read();
      expectClose(z, normalRef(n, 9, 0, 1, 2), { atol: 1e-4, rtol: 1e-4 }, 'normal');
      const other = await uniform(ctx, ctx.empty([n]), { seed: 2 ** 40 + 6, offset: 3, lo: -2, hi: 3 }).read();
      // Independent streams: about 1 in 2^23 equal by chance per element.
      expect(other.filter((v, i) => v === u[i]).length).toBeLessThan(3);
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

  it('f16 storage: the same draws as f32, rounded once to f16', async () => {
    if (!ctx.caps.f16) {
      console.log('random: the adapter has no shader-f16; f16 storage refused');
      expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
      return;
    }
    const n = 3001; // 12 workgroups, the last one partial
    // f32 arithmetic, then f32 -> f16 rounded to either neighbour (2^-10 relative, 2^-14 where it may flush).
    const tol = (scale: number) => ({ atol: 2 ** -14 + 1e-6 * scale, rtol: 2 ** -10 });
    await ctx.scopeAsync(async () => {
      const u = await uniform(ctx, ctx.empty([n], 'f16'), { seed: 12, offset: 5, lo: -0.5, hi: 0.25 }).read();
      expectClose(u, uniformRef(n, 12, 5, -0.5, 0.25), tol(1), 'uniform f16');
      const z = await normal(ctx, ctx.empty([n], 'f16'), { seed: 13, mean: 0.5, std: 0.25 }).read();
      expectClose(z, normalRef(n, 13, 0, 0.5, 0.25), tol(100), 'normal f16'); // log/cos/sqrt in f32: ~1e-4 at |z| ≈ 5
      const x = halfArray(n, rng(14));
      const p = 0.125;
      const keep = dropoutMaskRef(n, 15, 2, p);
      const d = await dropout(ctx, ctx.tensor(x, [n], 'f16'), { p, seed: 15, offset: 2 }).read();
      expectClose(d, x.map((v, i) => (keep[i] ? v / (1 - p) : 0)), tol(1), 'dropout f16');
      expect(Array.from(d).findIndex((v, i) => !keep[i] && v !== 0), 'a dropped f16 element is not exactly 0').toBe(-1);
    });
  });

  it('rejects bad seeds and probabilities', () => {
    ctx.scope(() => {
      const t = ctx.empty([4]);
      expect(() => uniform(ctx, t, { seed: -1, lo: 0, hi: 1 })).toThrow('uniform: seed = -1, expected a non-negative integer below 2^53');
      expect(() => normal(ctx, t, { seed: 2 ** 53, std: 1 })).toThrow(`normal: seed = ${2 ** 53}, expected a non-negative integer below 2^53`);
      expect(() => dropout(ctx, t, { seed: 1.5, p: 0.5 })).toThrow('dropout: seed = 1.5, expected a non-negative integer below 2^53');
      expect(() => dropout(ctx, t, { seed: 1, p: 1 })).toThrow('dropout: p = 1, expected 0 <= p < 1');
      expect(() => uniform(ctx, t, { seed: 1, lo: 1, hi: 1 })).toThrow('uniform: hi = 1 must exceed lo = 1');
    });
  });
});
