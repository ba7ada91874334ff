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
