/** CPU reference for reduce.wgsl, in f64: rows of `cols` elements (the last one may be short). */
export function reduceRowsRef(x: ArrayLike<number>, cols: number, op: 'sum' | 'mean' | 'maxAbs'): Float64Array {
  const rows = Math.ceil(x.length / cols);
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    for (let c = r * cols; c < Math.min((r + 1) * cols, x.length); c++) {
      acc = op === 'maxAbs' ? Math.max(acc, Math.abs(x[c]!)) : acc + x[c]!;
    }
    out[r] = op === 'mean' ? acc / cols : acc;
  }
  return out;
}
