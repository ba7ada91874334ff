/**
 * CPU references for norm.wgsl in f64, written from the math (rows of `C`, x viewed as [R, C]):
 *   LayerNorm: x̂ = (x − μ)/√(var + eps), y = x̂·γ + β;   RMSNorm: x̂ = x/√(mean(x²) + eps), y = x̂·γ.
 */
export type NormRefKind = 'layer' | 'rms';

/** Default eps of each kind, as torch (LayerNorm 1e-5) and the launchers (RMSNorm 1e-6). */
export const NORM_REF_EPS: Record<NormRefKind, number> = { layer: 1e-5, rms: 1e-6 };

function rowStats(x: ArrayLike<number>, base: number, C: number, kind: NormRefKind, eps: number): { mu: number; rstd: number } {
  let mu = 0;
  if (kind === 'layer') {
    for (let c = 0; c < C; c++) mu += x[base + c]!;
    mu /= C;
  }
  let v = 0;
  for (let c = 0; c < C; c++) v += (x[base + c]! - mu) ** 2;
  return { mu, rstd: 1 / Math.sqrt(v / C + eps) };
}

/** y [R, C]; `beta` absent for RMSNorm or a LayerNorm without β. */
export function normRef(
  kind: NormRefKind,
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number> | null,
  C: number,
  eps = NORM_REF_EPS[kind],
): Float64Array {
  const out = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += C) {
    const { mu, rstd } = rowStats(x, base, C, kind, eps);
    for (let c = 0; c < C; c++) out[base + c] = (x[base + c]! - mu) * rstd * gamma[c]! + (beta ? beta[c]! : 0);
  }
  return out;
}

/**
 * Gradients of Σ y ⊙ dy: dx [R, C], dγ [C], dβ [C] (dβ = Σ_rows dy whether or not the norm has β).
 * dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) with dx̂ = dy·γ (RMSNorm: without the mean(dx̂) term).
 */
export function normBackwardRef(
  kind: NormRefKind,
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  dy: ArrayLike<number>,
  C: number,
  eps = NORM_REF_EPS[kind],
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const dx = new Float64Array(x.length);
  const dgamma = new Float64Array(C);
  const dbeta = new Float64Array(C);
  const xhat = new Float64Array(C);
  const dxhat = new Float64Array(C);
  for (let base = 0; base < x.length; base += C) {
    const { mu, rstd } = rowStats(x, base, C, kind, eps);
    let mean1 = 0;
    let mean2 = 0;
    for (let c = 0; c < C; c++) {
      xhat[c] = (x[base + c]! - mu) * rstd;
      dxhat[c] = dy[base + c]! * gamma[c]!;
      mean1 += dxhat[c]!;
      mean2 += dxhat[c]! * xhat[c]!;
      dgamma[c] += dy[base + c]! * xhat[c]!;
      dbeta[c] += dy[base + c]!;
    }
    mean1 /= C;
    mean2 /= C;
    for (let c = 0; c < C; c++) dx[base + c] = rstd * (dxhat[c]! - (kind === 'layer' ? mean1 : 0) - xhat[c]! * mean2);
  }
  return { dx, dgamma, dbeta };
}
