/** CPU references for embedding.wgsl, f64: a table [V, D] indexed by token ids. */

/** table[ids] -> [ids.length, D]. */
export function embeddingRef(table: ArrayLike<number>, ids: ArrayLike<number>, D: number): Float64Array {
  const out = new Float64Array(ids.length * D);
  for (let t = 0; t < ids.length; t++) for (let d = 0; d < D; d++) out[t * D + d] = table[ids[t]! * D + d]!;
  return out;
}

/** d table [V, D] of Σ embedding(table, ids) ⊙ dy: each token's dy row added to its id's row. */
export function embeddingBackwardRef(ids: ArrayLike<number>, dy: ArrayLike<number>, V: number, D: number): Float64Array {
  const out = new Float64Array(V * D);
  for (let t = 0; t < ids.length; t++) for (let d = 0; d < D; d++) out[ids[t]! * D + d] += dy[t * D + d]!;
  return out;
}
