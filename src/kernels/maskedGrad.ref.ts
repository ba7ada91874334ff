/**
 * CPU reference for maskedGrad (matmul.wgsl's MASK/TILES epilogue), f64. The freeze spec is
 * decoded here from its definition, entry by entry, independently of GradMask (which packs it
 * into row/column masks or bits for the GPU): a mistake in that packing cannot hide here.
 */

/** The freeze specs of maskedGrad.ts, restated: ranges and blocks name what trains. */
export type FreezeSpecRef =
  | { rows: [number, number][]; cols?: [number, number][] }
  | { cols: [number, number][] }
  | { blockRows: number; blockCols: number; trainable: ArrayLike<number> }
  | { elements: ArrayLike<number> };

function inRanges(i: number, ranges: [number, number][] | undefined): boolean {
  if (!ranges) return true; // no ranges on this axis: the whole axis trains
  return ranges.some(([a, b]) => i >= a && i < b);
}

/** 1 where entry (i, j) of a [N, K] weight trains, row-major. */
export function trainableRef(spec: FreezeSpecRef, N: number, K: number): Uint8Array {
  const out = new Uint8Array(N * K);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < K; j++) {
      let t: boolean;
      if ('elements' in spec) t = spec.elements[i * K + j] !== 0;
      else if ('blockRows' in spec) t = spec.trainable[Math.floor(i / spec.blockRows) * Math.ceil(K / spec.blockCols) + Math.floor(j / spec.blockCols)] !== 0;
      else t = inRanges(i, 'rows' in spec ? spec.rows : undefined) && inRanges(j, 'cols' in spec ? spec.cols : undefined);
      out[i * K + j] = t ? 1 : 0;
    }
  }
  return out;
}

/** dW [N, K] = trainable ⊙ (dyᵀ·x), dy [M, N], x [M, K]; frozen entries 0. */
export function maskedGradRef(dy: ArrayLike<number>, x: ArrayLike<number>, M: number, N: number, K: number, trainable: ArrayLike<number>): Float64Array {
  const out = new Float64Array(N * K);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < K; j++) {
      if (!trainable[i * K + j]) continue;
      let acc = 0;
      for (let m = 0; m < M; m++) acc += dy[m * N + i]! * x[m * K + j]!;
      out[i * K + j] = acc;
    }
  }
  return out;
}

/** db [N] = Σ_tokens dy for trainable entries of a bias [N], 0 elsewhere; dy [M, N]. */
export function maskedBiasGradRef(dy: ArrayLike<number>, N: number, trainable: [number, number][]): Float64Array {
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    if (!inRanges(n, trainable)) continue;
    for (let m = 0; m < dy.length / N; m++) out[n] += dy[m * N + n]!;
  }
  return out;
}
