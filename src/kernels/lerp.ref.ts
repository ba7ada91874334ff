/** CPU reference for lerp.wgsl, f64: θ = (1 − α)·θ0 + α·θ1 elementwise (WiSE-FT). */
export function lerpRef(theta0: ArrayLike<number>, theta1: ArrayLike<number>, alpha: number): Float64Array {
  const out = new Float64Array(theta0.length);
  for (let i = 0; i < out.length; i++) out[i] = (1 - alpha) * theta0[i]! + alpha * theta1[i]!;
  return out;
}
