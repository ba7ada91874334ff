import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHalfBits, roundHalf, toHalfBits } from '../../src/gpu/half.js';

describe('binary16 conversion', () => {
  it('round-trips every half value', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = fromHalfBits(h);
      if (Number.isNaN(v)) expect(Number.isNaN(fromHalfBits(toHalfBits(v)))).toBe(true);
      else expect(toHalfBits(v)).toBe(h);
    }
  });

  it('rounds to nearest, ties to even, with subnormals and overflow', () => {
    expect(roundHalf(1 + 2 ** -11)).toBe(1); // tie -> even
    expect(roundHalf(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9); // tie -> even (up)
    expect(roundHalf(65504)).toBe(65504);
    expect(roundHalf(65520)).toBe(Infinity);
    expect(roundHalf(2 ** -24)).toBe(2 ** -24);
    expect(roundHalf(2 ** -26)).toBe(0);
    expect(roundHalf(-0)).toBe(-0);
  });

  it('picks the nearest representable value (property)', () => {
    fc.assert(
      fc.property(fc.float({ min: -60000, max: 60000, noNaN: true }), (x) => {
        // Rounding is symmetric in sign; on magnitudes, neighbouring bit patterns are neighbouring values.
        const a = Math.abs(x);
        const r = roundHalf(a);
        expect(roundHalf(-a)).toBe(-r);
        const h = toHalfBits(a);
        const lo = h > 0 ? fromHalfBits(h - 1) : r;
        const hi = fromHalfBits(h + 1);
        return Math.abs(r - a) <= Math.abs(lo - a) && Math.abs(r - a) <= Math.abs(hi - a);
      }),
      { numRuns: 2000, seed: 7 },
    );
  });
});
