import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../../examples/lib/rng.js';

describe('mulberry32', () => {
  it('gives the published mulberry32 stream', () => {
    // First outputs of mulberry32(0) and (1), from the reference C function compiled with gcc
    // (uint32_t t = a += 0x6D2B79F5; t = (t ^ t >> 15) * (t | 1); t ^= t + (t ^ t >> 7) * (t | 61); return t ^ t >> 14).
    const r0 = mulberry32(0);
    expect([r0.uint32(), r0.uint32(), r0.uint32()]).toEqual([1144304738, 1416247, 958946056]);
    const r1 = mulberry32(1);
    expect(r1.uint32()).toBe(2693262067);
  });

  it('draws integers uniformly in [0, n)', () => {
    const r = mulberry32(123);
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[r.int(6)]!++;
    // Each count is Binomial(60000, 1/6): sd ≈ 91, so ±500 is more than 5 sd.
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
    expect(mulberry32(5).int(1)).toBe(0);
    expect(() => r.int(0)).toThrow(/n = 0/);
    expect(() => r.int(2.5)).toThrow(/n = 2.5/);
    // Without rejection, u % n for n = 3·2^30 would put half the draws below 2^30 instead of a third.
    const big = 3 * 2 ** 30;
    let low = 0;
    for (let i = 0; i < 6000; i++) if (r.int(big) < 2 ** 30) low++;
    expect(Math.abs(low / 6000 - 1 / 3)).toBeLessThan(0.03); // sd ≈ 0.006
    for (let i = 0; i < 1000; i++) {
      const x = r.int(2 ** 32);
      expect(Number.isInteger(x) && x >= 0 && x < 2 ** 32).toBe(true);
    }
  });

  it('shuffles reproducibly into a permutation', () => {
    const a = mulberry32(9).shuffle(Array.from({ length: 100 }, (_, i) => i));
    const b = mulberry32(9).shuffle(Array.from({ length: 100 }, (_, i) => i));
    expect(a).toEqual(b);
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(a).not.toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(() => mulberry32(NaN)).toThrow(/seed = NaN/);
  });
});
