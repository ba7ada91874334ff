/** CPU reference for a LoRA layer, f64: forward and analytic gradients, written from the math. */
export interface LoraRefProblem {
  x: ArrayLike<number>; // [M,K]
  W: ArrayLike<number>; // [N,K]
  bias?: ArrayLike<number>; // [N]
  A: ArrayLike<number>; // [r,K]
  B: ArrayLike<number>; // [N,r]
  M: number;
  N: number;
  K: number;
  r: number;
  s: number;
  /** Dropout keep mask [M,K] (1 kept) and p; absent: no dropout. */
  keep?: ArrayLike<number>;
  p?: number;
}

function dropped(q: LoraRefProblem): Float64Array {
  const xd = new Float64Array(q.M * q.K);
  for (let i = 0; i < xd.length; i++) xd[i] = q.keep ? (q.keep[i]! ? q.x[i]! / (1 - q.p!) : 0) : q.x[i]!;
  return xd;
}

/** u = dropout(x)·Aᵀ [M,r] and y = x·Wᵀ + b + s·u·Bᵀ [M,N]. */
export function loraForwardRef(q: LoraRefProblem): { u: Float64Array; y: Float64Array } {
  const { M, N, K, r, s } = q;
  const xd = dropped(q);
  const u = new Float64Array(M * r);
  for (let m = 0; m < M; m++) for (let j = 0; j < r; j++) {
    let acc = 0;
    for (let k = 0; k < K; k++) acc += xd[m * K + k]! * q.A[j * K + k]!;
    u[m * r + j] = acc;
  }
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let acc = q.bias ? q.bias[n]! : 0;
    for (let k = 0; k < K; k++) acc += q.x[m * K + k]! * q.W[n * K + k]!;
    let low = 0;
    for (let j = 0; j < r; j++) low += u[m * r + j]! * q.B[n * r + j]!;
    y[m * N + n] = acc + s * low;
  }
  return { u, y };
}

/** Gradients of Σ y ⊙ dy. */
export function loraGradsRef(q: LoraRefProblem, dy: ArrayLike<number>): { dA: Float64Array; dB: Float64Array; dx: Float64Array } {
  const { M, N, K, r, s } = q;
  const xd = dropped(q);
  const { u } = loraForwardRef(q);
  const du = new Float64Array(M * r);
  for (let m = 0; m < M; m++) for (let j = 0; j < r; j++) {
    let acc = 0;
    for (let n = 0; n < N; n++) acc += dy[m * N + n]! * q.B[n * r + j]!;
    du[m * r + j] = s * acc;
  }
  const dB = new Float64Array(N * r);
  for (let n = 0; n < N; n++) for (let j = 0; j < r; j++) {
    let acc = 0;
    for (let m = 0; m < M; m++) acc += dy[m * N + n]! * u[m * r + j]!;
    dB[n * r + j] = s * acc;
  }
  const dA = new Float64Array(r * K);
  for (let j = 0; j < r; j++) for (let k = 0; k < K; k++) {
    let acc = 0;
    for (let m = 0; m < M; m++) acc += du[m * r + j]! * xd[m * K + k]!;
    dA[j * K + k] = acc;
  }
  const dx = new Float64Array(M * K);
  for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) {
    let acc = 0;
    for (let n = 0; n < N; n++) acc += dy[m * N + n]! * q.W[n * K + k]!;
    let low = 0;
    for (let j = 0; j < r; j++) low += du[m * r + j]! * q.A[j * K + k]!;
    if (q.keep) low = q.keep[m * K + k]! ? low / (1 - q.p!) : 0;
    dx[m * K + k] = acc + low;
  }
  return { dA, dB, dx };
}

/** W + sign·s·B·A [N,K]. */
export function loraMergeRef(W: ArrayLike<number>, A: ArrayLike<number>, B: ArrayLike<number>, N: number, K: number, r: number, s: number): Float64Array {
  const out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
    let acc = 0;
    for (let j = 0; j < r; j++) acc += B[n * r + j]! * A[j * K + k]!;
    out[n * K + k] = W[n * K + k]! + s * acc;
  }
  return out;
}
