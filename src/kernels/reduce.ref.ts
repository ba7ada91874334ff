export type ReduceRefOp = 'sum' | 'mean' | 'maxAbs' | 'sumSquares' | 'sumSquaredDiff' | 'meanSquaredDiff';

/**
 * CPU reference for reduce.wgsl, in f64: rows of `cols` elements (the last one may be short).
 * The squared-difference ops read `y` beside `x`.
 */
export function reduceRowsRef(x: ArrayLike<number>, cols: number, op: ReduceRefOp, y?: ArrayLike<number>): Float64Array {
  const rows = Math.ceil(x.length / cols);
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = r * cols; c < Math.min((r + 1) * cols, x.length); c++) {
      const v = op.endsWith('SquaredDiff') ? x[c]! - y![c]! : x[c]!;
      if (op === 'maxAbs') acc = Math.max(acc, Math.abs(v));
      else if (op === 'sum' || op === 'mean') acc += v;
      else acc += v * v;
    }
    out[r] = op === 'mean' || op === 'meanSquaredDiff' ? acc / cols : acc;
  }
  return out;
}
