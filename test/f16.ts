/**
 * f16 test data and the error bound of a product stored in f16 and accumulated in f32.
 * Node-free (the browser page may use it too), and independent of the library: values are
 * built as exact f16 numbers, so no rounding function of the code under test decides what
 * the GPU and the reference see.
 */

/**
 * n exact f16 values ±(1 + j/1024)·2^e, j ∈ [0, 1024), e ∈ [-4, 0] (so |v| ∈ [1/16, 2)):
 * every significand bit is used, so products need 22 bits and f32 sums round.
 */
export function halfArray(n: number, rand: () => number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const j = Math.floor(rand() * 1024);
    const e = -Math.floor(rand() * 5);
    out.push((rand() < 0.5 ? -1 : 1) * (1 + j / 1024) * 2 ** e);
  }
  return out;
}

/** f32 unit roundoff. */
const U32 = 2 ** -24;
/** Largest |gelu'(x)| of the tanh approximation (1.1290, near x = 1.5). */
const GELU_LIPSCHITZ = 1.13;

export interface F16ProductCheck {
  /** Longest chain of f32 roundings any term goes through: K − 1 additions, then α·, +β·C, +bias. */
  roundings: number;
  activation?: 'none' | 'relu' | 'gelu';
}

/**
 * The bound on |got − exact| for C = fl16(act(fl32(α·Σ_k a_k·b_k + β·c + bias))) with f16
 * inputs (products exact in f32: 11 × 11 significand bits), `mag` = |α|·Σ|a_k·b_k| + |β·c| +
 * |bias| (the reference on absolute values):
 *
 *   f32: |v − e| ≤ γ_n·mag, γ_n = n·u/(1 − n·u), u = 2^-24 (any summation order, n roundings)
 *   act: relu is exact and 1-Lipschitz; gelu multiplies by ≤ 1.13 and adds its own f32
 *        evaluation error, taken as 2^-20·(1 + |e|) (WGSL leaves tanh's accuracy to the driver)
 *   f16: WGSL lets f32 → f16 round to either neighbour: ≤ 2^-10·|v| for normal values; values
 *        below 2^-14 may also flush to 0, hence 2^-14 absolute.
 *
 *   bound = (1 + 2^-10)·(L·γ_n·mag + e_act) + 2^-10·|e| + 2^-14
 */
export function f16ProductBound(exact: number, mag: number, c: F16ProductCheck): number {
  const n = c.roundings;
  const gamma = (n * U32) / (1 - n * U32);
  const gelu = c.activation === 'gelu';
  const f32Err = (gelu ? GELU_LIPSCHITZ : 1) * gamma * mag + (gelu ? 2 ** -20 * (1 + Math.abs(exact)) : 0);
  return (1 + 2 ** -10) * f32Err + 2 ** -10 * Math.abs(exact) + 2 ** -14;
}

/**
 * Throws unless every |got[i] − exact[i]| ≤ f16ProductBound(exact[i], mag[i]); names the first
 * mismatches and the largest error relative to its bound.
 */
export function expectF16Product(got: ArrayLike<number>, exact: ArrayLike<number>, mag: ArrayLike<number>, c: F16ProductCheck, what: string): void {
  if (got.length !== exact.length) throw new Error(`${what}: length ${got.length}, expected ${exact.length}`);
  const bad: string[] = [];
  let nBad = 0;
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const bound = f16ProductBound(exact[i]!, mag[i]!, c);
    const err = Math.abs(got[i]! - exact[i]!);
    const ratio = err / bound;
    if (!(ratio <= 1)) {
      nBad++;
      if (bad.length < 5) bad.push(`[${i}] got ${got[i]}, expected ${exact[i]} (err ${err.toExponential(2)}, bound ${bound.toExponential(2)})`);
    }
    worst = Number.isNaN(ratio) ? NaN : Math.max(worst, ratio);
  }
  if (nBad) throw new Error(`${what}: ${nBad}/${got.length} outside the f16-storage/f32-accumulation bound, worst error ${worst.toFixed(2)}× its bound; first: ${bad.join('; ')}`);
}

export interface F16ChainCheck {
  /** Longest chain of f32 roundings from the inputs to the result. */
  f32Roundings: number;
  /** f16 roundings of intermediates on the way (a value stored in f16 and read again). */
  f16Roundings: number;
  /** Absolute allowance for intermediates below 2^-14 that may flush to 0: 2^-14 × what multiplies them. */
  flushWeight?: ArrayLike<number> | number;
}

/**
 * A result computed in f32 through intermediates stored in f16, itself stored in f16. Every
 * rounding multiplies a term by (1 + δ), |δ| ≤ 2^-24 (f32) or 2^-10 (f16, either neighbour), so
 * with `mag` the same computation on absolute values:
 *   |got − exact| ≤ (1 + 2^-10)·((1 + 2^-10)^k·(1 + 2^-24)^n − 1)·mag + 2^-10·|exact| + 2^-14·(1 + w)
 * (the last factor for the result's and the intermediates' possible flush to 0).
 */
export function expectF16Chain(got: ArrayLike<number>, exact: ArrayLike<number>, mag: ArrayLike<number>, c: F16ChainCheck, what: string): void {
  const grow = (1 + 2 ** -10) ** c.f16Roundings * (1 + 2 ** -24) ** c.f32Roundings - 1;
  const w = (i: number) => (typeof c.flushWeight === 'number' ? c.flushWeight : (c.flushWeight?.[i] ?? 0));
  const bad: string[] = [];
  let nBad = 0;
  let worst = 0;
  if (got.length !== exact.length) throw new Error(`${what}: length ${got.length}, expected ${exact.length}`);
  for (let i = 0; i < got.length; i++) {
    const bound = (1 + 2 ** -10) * grow * mag[i]! + 2 ** -10 * Math.abs(exact[i]!) + 2 ** -14 * (1 + w(i));
    const err = Math.abs(got[i]! - exact[i]!);
    if (!(err <= bound)) {
      nBad++;
      if (bad.length < 5) bad.push(`[${i}] got ${got[i]}, expected ${exact[i]} (err ${err.toExponential(2)}, bound ${bound.toExponential(2)})`);
    }
    worst = Number.isNaN(err) ? NaN : Math.max(worst, err / bound);
  }
  if (nBad) throw new Error(`${what}: ${nBad}/${got.length} outside the f16 bound, worst error ${worst.toFixed(2)}× its bound; first: ${bad.join('; ')}`);
}
