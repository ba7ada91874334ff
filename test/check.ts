/**
 * Test helpers that need neither Node nor `webgpu`, so the browser page (test/browser) uses
 * them too: a seeded RNG, random arrays, tolerances, and `expectClose`, which reports the first
 * mismatches and the max error.
 */
/** mulberry32: small, seeded, reproducible. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(n: number, rand: () => number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * rand();
  return out;
}

export interface Tolerance {
  atol: number;
  rtol: number;
}

export const TOL: Record<'f32' | 'f16', Tolerance> = {
  f32: { atol: 1e-5, rtol: 1e-4 },
  f16: { atol: 2e-2, rtol: 1e-2 },
};

/**
 * Throws unless |actual - expected| <= atol + rtol·|expected| everywhere; the message names
 * the first mismatching indices and the max absolute error.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance, what = 'result'): void {
  if (actual.length !== expected.length) throw new Error(`${what}: length ${actual.length}, expected ${expected.length}`);
  const bad: string[] = [];
  let maxErr = 0;
  let nBad = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (a === e) continue; // also equal infinities
    const err = Math.abs(a - e);
    if (!(err <= tol.atol + tol.rtol * Math.abs(e))) {
      nBad++;
      if (bad.length < 5) bad.push(`[${i}] got ${a}, expected ${e} (err ${err.toExponential(2)})`);
    }
    if (Number.isNaN(err)) maxErr = NaN;
    else if (err > maxErr) maxErr = err;
  }
  if (nBad) {
    throw new Error(
      `${what}: ${nBad}/${actual.length} mismatches (atol ${tol.atol}, rtol ${tol.rtol}), max abs error ${maxErr}; first: ${bad.join('; ')}`,
    );
  }
}
