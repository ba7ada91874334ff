/**
 * The examples' seeded random numbers: mulberry32 (Tommy Ettinger, public domain), the same
 * generator the tests use. 32 bits of state, so a stream repeats after 2³² draws, far more than
 * a demo draws; every seed gives its own reproducible stream on every platform, because it is
 * integer arithmetic only (`Math.imul`, shifts), never `Math.random`.
 */
import { ArgumentError } from '../../src/gpu/errors.js';
import { mulberry32Uint32 } from '../../src/nn/generate.js';

/** A seeded stream of random numbers. */
export interface Rng {
  /** The next 32-bit unsigned integer. */
  uint32(): number;
  /** A float in [0, 1) with 32 random bits. */
  float(): number;
  /**
   * An integer uniform in [0, n), exactly: draws that would bias the modulo are rejected
   * (at most n / 2³² of them). `n` is an integer in [1, 2³²].
   */
  int(n: number): number;
  /** Shuffles `items` in place (Fisher–Yates) and returns it. */
  shuffle<T>(items: T[]): T[];
}

/**
 * A mulberry32 stream for `seed` (taken modulo 2³²).
 *
 * @example
 * const r = mulberry32(42);
 * const offset = r.int(1000); // the same on every run
 */
export function mulberry32(seed: number): Rng {
  if (!Number.isFinite(seed)) throw new ArgumentError(`mulberry32: seed = ${seed}, expected a finite number`);
  const uint32 = mulberry32Uint32(seed);
  const int = (n: number): number => {
    if (!Number.isInteger(n) || n < 1 || n > 2 ** 32) throw new ArgumentError(`mulberry32.int: n = ${n}, expected an integer in [1, 2^32]`);
    // The largest multiple of n that fits in 32 bits: draws at or above it would favour small results.
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const u = uint32();
      if (u < limit) return u % n;
    }
  };
  return {
    uint32,
    float: () => uint32() / 2 ** 32,
    int,
    shuffle<T>(items: T[]): T[] {
      for (let i = items.length - 1; i > 0; i--) {
        const j = int(i + 1);
        const t = items[i]!;
        items[i] = items[j]!;
        items[j] = t;
      }
      return items;
    },
  };
}
