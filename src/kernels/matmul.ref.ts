/**
 * CPU reference for matmul.wgsl: naive loops, f64 accumulation. Never derived from the WGSL.
 */
export interface MatmulRefProblem {
  a: ArrayLike<number>;
  b: ArrayLike<number>;
  /** Existing C (read when beta != 0). */
  c?: ArrayLike<number>;
  bias?: ArrayLike<number>;
  M: number;
  N: number;
  K: number;
  batch?: number;
  strideA?: number;
  strideB?: number;
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  activation?: 'none' | 'relu' | 'gelu';
}

export function geluTanhRef(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** C [batch, M, N] as f64. */
export function matmulRef(p: MatmulRefProblem): Float64Array {
  const { M, N, K } = p;
  const batch = p.batch ?? 1;
  const sA = p.strideA ?? M * K;
  const sB = p.strideB ?? K * N;
  const alpha = p.alpha ?? 1;
  const beta = p.beta ?? 0;
  const out = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let acc = 0;
        for (let k = 0; k < K; k++) {
          const av = p.a[z * sA + (p.transA ? k * M + m : m * K + k)]!;
          const bv = p.b[z * sB + (p.transB ? n * K + k : k * N + n)]!;
          acc += av * bv;
        }
        const ci = z * M * N + m * N + n;
        let v = alpha * acc;
        if (beta !== 0) v += beta * p.c![ci]!;
        if (p.bias) v += p.bias[n]!;
        if (p.activation === 'relu') v = Math.max(v, 0);
        else if (p.activation === 'gelu') v = geluTanhRef(v);
        out[ci] = v;
      }
    }
  }
  return out;
}
