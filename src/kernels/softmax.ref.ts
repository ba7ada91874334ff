/** CPU references for softmax.wgsl, f64, rows of `cols`. */
export function softmaxRef(x: ArrayLike<number>, cols: number, log = false): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += cols) {
    let m = -Infinity;
    for (let c = 0; c < cols; c++) m = Math.max(m, x[b + c]!);
    let s = 0;
    for (let c = 0; c < cols; c++) s += Math.exp(x[b + c]! - m);
    const lse = m + Math.log(s);
    for (let c = 0; c < cols; c++) out[b + c] = log ? x[b + c]! - lse : Math.exp(x[b + c]! - lse);
  }
  return out;
}

/** Mean cross-entropy over counted rows, PyTorch semantics (ignore_index, label_smoothing, probability targets). */
export function crossEntropyRef(
  x: ArrayLike<number>,
  cols: number,
  target: { labels: ArrayLike<number> } | { soft: ArrayLike<number> },
  o: { ignoreIndex?: number; labelSmoothing?: number } = {},
): number {
  const ls = softmaxRef(x, cols, true);
  const eps = o.labelSmoothing ?? 0;
  const ignore = o.ignoreIndex ?? -100;
  let total = 0;
  let count = 0;
  for (let r = 0; r < x.length / cols; r++) {
    if ('labels' in target && target.labels[r] === ignore) continue;
    let l = 0;
    for (let c = 0; c < cols; c++) {
      const t = 'labels' in target ? (target.labels[r] === c ? 1 : 0) : target.soft[r * cols + c]!;
      l -= ((1 - eps) * t + eps / cols) * ls[r * cols + c]!;
    }
    total += l;
    count++;
  }
  return total / Math.max(count, 1);
}

/**
 * Causal softmax of attention scores [..., T, T]: row t of each T×T block sees columns 0..t;
 * later columns get probability 0.
 */
export function causalSoftmaxRef(x: ArrayLike<number>, T: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += T) {
    const t = (b / T) % T;
    let m = -Infinity;
    for (let c = 0; c <= t; c++) m = Math.max(m, x[b + c]!);
    let s = 0;
    for (let c = 0; c <= t; c++) s += Math.exp(x[b + c]! - m);
    for (let c = 0; c <= t; c++) out[b + c] = Math.exp(x[b + c]! - m) / s;
  }
  return out;
}

/**
 * dx of Σ softmax(x) ⊙ dy (or of log-softmax with `log`), from x, rows of `cols`:
 * softmax dx = y ⊙ (dy − Σ dy·y); log-softmax dx = dy − softmax(x)·Σ dy.
 */
export function softmaxBackwardRef(x: ArrayLike<number>, dy: ArrayLike<number>, cols: number, log = false): Float64Array {
  const p = softmaxRef(x, cols);
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += cols) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += log ? dy[b + c]! : dy[b + c]! * p[b + c]!;
    for (let c = 0; c < cols; c++) out[b + c] = log ? dy[b + c]! - p[b + c]! * s : p[b + c]! * (dy[b + c]! - s);
  }
  return out;
}

/**
 * d logits of g·crossEntropyRef(x, ...): for each counted row, g·((Σ_c q_c)·softmax(x)_c − q_c)
 * / (number of counted rows), q = (1 − ε)·target + ε/C; ignored rows get 0.
 */
export function crossEntropyGradRef(
  x: ArrayLike<number>,
  cols: number,
  target: { labels: ArrayLike<number> } | { soft: ArrayLike<number> },
  o: { ignoreIndex?: number; labelSmoothing?: number } = {},
  g = 1,
): Float64Array {
  const p = softmaxRef(x, cols);
  const eps = o.labelSmoothing ?? 0;
  const ignore = o.ignoreIndex ?? -100;
  const rows = x.length / cols;
  const counted = (r: number) => !('labels' in target) || target.labels[r] !== ignore;
  let count = 0;
  for (let r = 0; r < rows; r++) if (counted(r)) count++;
  const out = new Float64Array(x.length);
  for (let r = 0; r < rows; r++) {
    if (!counted(r)) continue;
    const q = new Float64Array(cols);
    let sq = 0;
    for (let c = 0; c < cols; c++) {
      const t = 'labels' in target ? (target.labels[r] === c ? 1 : 0) : target.soft[r * cols + c]!;
      q[c] = (1 - eps) * t + eps / cols;
      sq += q[c]!;
    }
    for (let c = 0; c < cols; c++) out[r * cols + c] = (g * (sq * p[r * cols + c]! - q[c]!)) / Math.max(count, 1);
  }
  return out;
}
