// matmul.wgsl — C = act(alpha · op(A) · op(B) + beta · C + bias), batched.
//
// Shapes, row-major, for each batch item z < batch:
//   op(A): [M,K], stored as A [M,K], or as [K,M] when TRANS_A
//   op(B): [K,N], stored as B [K,N], or as [N,K] when TRANS_B
//   C: [M,N]; bias: [N], broadcast over rows (HAS_BIAS)
// Batch strides are in elements; a stride of 0 broadcasts that operand over the batch.
// ACT: 0 none, 1 relu, 2 gelu (tanh approximation, as PyTorch's approximate='tanh').
// beta = 0 never reads C, so C may hold garbage (NaN) on entry.
//
// Optional epilogue terms, all applied in the same pass over C:
//   LORA   C += lrScale · U·Vᵀ with U [M,rank] and V [N,rank] (or [rank,N] when LR_VT): the
//          low-rank update of a LoRA layer, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, added without materialising
//          B·A; with LR_VT it is dx = dy·W + du·A. Needs batch = 1 (the launcher folds batches).
//   MASK   frozen entries are written as exactly 0: 1 = row mask [M] and column mask [N]
//          (an entry is trainable when both are nonzero), 2 = one bit per element of [M,N].
//   TILES  workgroups visit only the output tiles listed in aux (pairs tile_row, tile_col),
//          so a gradient whose tiles are mostly frozen costs work only for the trainable ones.
//
// Storage is T (f32, or f16 in the launcher's f16 variant); products are
// accumulated in f32 in every version.
//
// Versions (entry points), compared against each other and an f64 CPU reference in tests:
//   matmul_naive     v0  one invocation per output element.
//   matmul_regblock  v1  register-blocked, no workgroup memory. A workgroup owns 8 rows and
//                        RB_LANES·8 columns; every row index derives from workgroup_id alone,
//                        so A's loads are uniform (a scalar broadcast on CPU adapters), and
//                        lane l owns columns n0 + l + j·RB_LANES, so for each j the lanes read
//                        B contiguously (one vector load on llvmpipe, coalesced on GPUs).
//   matmul_regblock4 v1b as v1, but lane l owns 8 contiguous columns and reads them as two
//                        vec4 loads through a vec4 view of B (needs N % 4 == 0, B not
//                        transposed). The default on lavapipe where it applies.
//   matmul_tiled     v2  classic workgroup-memory tiling, 64×64 tile, 4×4 outputs per
//                        invocation, K in steps of 16. For GPUs with fast shared memory.
alias T = f32;

struct Params {
  M: u32,
  N: u32,
  K: u32,
  batch: u32,
  strideA: u32,
  strideB: u32,
  strideC: u32,
  alpha: f32,
  beta: f32,
  rank: u32,
  lrScale: f32,
  maskRows: u32,
  maskCols: u32,
  maskBits: u32,
  tileList: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACT: u32 = 0u;
// Lanes along N in matmul_regblock (the launcher picks 8..128 from N).
override RB_LANES: u32 = 128u;
override LORA: bool = false;
override LR_VT: bool = false;
override MASK: u32 = 0u;
override TILES: bool = false;
// Store C transposed: element (m, n) of the M×N product goes to c[n·M + m]. The launcher uses
// it to compute x·Wᵀ as (W·xᵀ)ᵀ on CPU adapters, where transposing the small x beats
// transposing W (bias then runs along m, C's rows in storage).
override TRANS_C: bool = false;

@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read> b: array<T>;
@group(0) @binding(2) var<storage, read> bias: array<T>;
@group(0) @binding(3) var<storage, read_write> c: array<T>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(6) var<storage, read> lr_u: array<T>;
@group(0) @binding(7) var<storage, read> lr_v: array<T>;
// Masks and the tile list share one u32 buffer (at most 8 storage buffers per stage in core
// WebGPU); params give each part's offset in it.
@group(0) @binding(8) var<storage, read> aux: array<u32>;

// The output tile a workgroup computes: (tile row, tile column).
fn tile_of(wid: vec3<u32>) -> vec2<u32> {
  if (TILES) {
    let t = params.tileList + 2u * wid.x;
    return vec2<u32>(aux[t], aux[t + 1u]);
  }
  return vec2<u32>(wid.y, wid.x);
}

fn a_index(base: u32, m: u32, k: u32) -> u32 {
  if (TRANS_A) { return base + k * params.M + m; }
  return base + m * params.K + k;
}

fn b_index(base: u32, k: u32, n: u32) -> u32 {
  if (TRANS_B) { return base + n * params.K + k; }
  return base + k * params.N + n;
}

fn gelu_tanh(x: f32) -> f32 {
  // Clamp the tanh argument: some drivers return NaN for tanh of large inputs.
  let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
  return 0.5 * x * (1.0 + tanh(u));
}

fn trainable(m: u32, n: u32) -> bool {
  if (MASK == 1u) { return aux[params.maskRows + m] != 0u && aux[params.maskCols + n] != 0u; }
  if (MASK == 2u) {
    let e = m * params.N + n;
    return ((aux[params.maskBits + (e >> 5u)] >> (e & 31u)) & 1u) != 0u;
  }
  return true;
}

fn lr_v_at(n: u32, j: u32) -> f32 {
  if (LR_VT) { return f32(lr_v[j * params.N + n]); }
  return f32(lr_v[n * params.rank + j]);
}

fn low_rank(m: u32, n: u32) -> f32 {
  var s = 0.0;
  for (var j = 0u; j < params.rank; j++) {
    var v: f32;
    if (LR_VT) { v = f32(lr_v[j * params.N + n]); } else { v = f32(lr_v[n * params.rank + j]); }
    s = fma(f32(lr_u[m * params.rank + j]), v, s);
  }
  return params.lrScale * s;
}

// alpha·acc plus the low-rank term, for versions that do not fold the latter into their
// register tile (the register-blocked ones extend their K loop by `rank` steps instead).
fn scaled(acc: f32, m: u32, n: u32) -> f32 {
  var v = params.alpha * acc;
  if (LORA) { v += low_rank(m, n); }
  return v;
}

// Where C[z, m, n] is stored.
fn c_index(z: u32, m: u32, n: u32) -> u32 {
  if (TRANS_C) { return z * params.strideC + n * params.M + m; }
  return z * params.strideC + m * params.N + n;
}

// The value stored at C[z, m, n] given v = alpha·op(A)·op(B) (+ the low-rank term).
fn epilogue(scaled_acc: f32, z: u32, m: u32, n: u32) -> T {
  let ci = c_index(z, m, n);
  if (MASK != 0u && !trainable(m, n)) { return T(0.0); }
  var v = scaled_acc;
  if (params.beta != 0.0) { v += params.beta * f32(c[ci]); }
  if (HAS_BIAS) { v += f32(bias[select(n, m, TRANS_C)]); }
  if (ACT == 1u) { v = max(v, 0.0); } else if (ACT == 2u) { v = gelu_tanh(v); }
  return T(v);
}

// ---------------------------------------------------------------- v0: naive

@compute @workgroup_size(8, 8, 1)
fn matmul_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tile = tile_of(wid);
  let n = tile.y * 8u + lid.x;
  let m = tile.x * 8u + lid.y;
  let z = wid.z;
  if (m >= params.M || n >= params.N) { return; }
  let baseA = z * params.strideA;
  let baseB = z * params.strideB;
  var acc = 0.0;
  for (var k = 0u; k < params.K; k++) {
    acc += f32(a[a_index(baseA, m, k)]) * f32(b[b_index(baseB, k, n)]);
  }
  c[c_index(z, m, n)] = epilogue(scaled(acc, m, n), z, m, n);
}

// ---------------------------------------------------------------- v1: register-blocked

// The end of both register-blocked versions: alpha, then the low-rank term as `rank` more
// steps of the same register tile (the K extension [A | s·U]·[B | V]ᵀ: r·8·8 FMAs per lane
// instead of a dot product per output), then the epilogue and the guarded stores. Column j of
// the tile is n0 + j·colStep (clamped in `cols` for loads).
fn finish_tile(acc0: ptr<function, array<vec4<f32>, 8>>, acc1: ptr<function, array<vec4<f32>, 8>>,
               z: u32, m0: u32, rows: array<u32, 8>, cols: array<u32, 8>, n0: u32, colStep: u32) {
  for (var i = 0u; i < RB_ROWS; i++) {
    (*acc0)[i] *= params.alpha;
    (*acc1)[i] *= params.alpha;
  }
  if (LORA) {
    for (var j = 0u; j < params.rank; j++) {
      let v0 = vec4<f32>(lr_v_at(cols[0], j), lr_v_at(cols[1], j), lr_v_at(cols[2], j), lr_v_at(cols[3], j));
      let v1 = vec4<f32>(lr_v_at(cols[4], j), lr_v_at(cols[5], j), lr_v_at(cols[6], j), lr_v_at(cols[7], j));
      for (var i = 0u; i < RB_ROWS; i++) {
        let uv = params.lrScale * f32(lr_u[rows[i] * params.rank + j]);
        (*acc0)[i] = fma(vec4<f32>(uv), v0, (*acc0)[i]);
        (*acc1)[i] = fma(vec4<f32>(uv), v1, (*acc1)[i]);
      }
    }
  }
  for (var i = 0u; i < RB_ROWS; i++) {
    let m = m0 + i;
    if (m >= params.M) { break; }
    for (var j = 0u; j < 8u; j++) {
      let n = n0 + j * colStep;
      if (n < params.N) {
        var v: f32;
        if (j < 4u) { v = (*acc0)[i][j]; } else { v = (*acc1)[i][j - 4u]; }
        c[c_index(z, m, n)] = epilogue(v, z, m, n);
      }
    }
  }
}


const RB_ROWS = 8u;

@compute @workgroup_size(RB_LANES, 1, 1)
fn matmul_regblock(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wid.z;
  let tile = tile_of(wid);
  let m0 = tile.x * RB_ROWS;
  let n0 = tile.y * RB_LANES * 8u + lid.x;
  let baseA = z * params.strideA;
  let baseB = z * params.strideB;
  // Out-of-range rows and columns are clamped to the last one: loads stay in bounds with no
  // branch in the inner loop, and only the stores are guarded.
  let lastM = params.M - 1u;
  let lastN = params.N - 1u;
  var rows: array<u32, 8>;
  for (var i = 0u; i < RB_ROWS; i++) { rows[i] = min(m0 + i, lastM); }
  var cols: array<u32, 8>;
  for (var j = 0u; j < 8u; j++) { cols[j] = min(n0 + j * RB_LANES, lastN); }

  var acc0: array<vec4<f32>, 8>;  // columns j = 0..3 of each row
  var acc1: array<vec4<f32>, 8>;  // columns j = 4..7
  for (var k = 0u; k < params.K; k++) {
    let b0 = vec4<f32>(f32(b[b_index(baseB, k, cols[0])]), f32(b[b_index(baseB, k, cols[1])]),
                       f32(b[b_index(baseB, k, cols[2])]), f32(b[b_index(baseB, k, cols[3])]));
    let b1 = vec4<f32>(f32(b[b_index(baseB, k, cols[4])]), f32(b[b_index(baseB, k, cols[5])]),
                       f32(b[b_index(baseB, k, cols[6])]), f32(b[b_index(baseB, k, cols[7])]));
    for (var i = 0u; i < RB_ROWS; i++) {
      let av = f32(a[a_index(baseA, rows[i], k)]);
      acc0[i] = fma(vec4<f32>(av), b0, acc0[i]);
      acc1[i] = fma(vec4<f32>(av), b1, acc1[i]);
    }
  }
  finish_tile(&acc0, &acc1, z, m0, rows, cols, n0, RB_LANES);
}

// ---------------------------------------------------------------- v1b: register-blocked, B as vec4

@group(0) @binding(5) var<storage, read> b4: array<vec4<T>>;

// Same tiling as v1, but lane l owns the 8 contiguous columns n0 + 8l .. 8l+7 and reads them as
// two vec4 loads from b4 (the same buffer as b). Needs N % 4 == 0 and B not transposed.
@compute @workgroup_size(RB_LANES, 1, 1)
fn matmul_regblock4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wid.z;
  let tile = tile_of(wid);
  let m0 = tile.x * RB_ROWS;
  let n0 = (tile.y * RB_LANES + lid.x) * 8u;
  let baseA = z * params.strideA;
  let lastM = params.M - 1u;
  let lastN = params.N - 1u;
  let N4 = params.N / 4u;
  var rows: array<u32, 8>;
  for (var i = 0u; i < RB_ROWS; i++) { rows[i] = min(m0 + i, lastM); }
  let c0 = min(n0 / 4u, N4 - 1u);
  let c1 = min(n0 / 4u + 1u, N4 - 1u);
  var acc0: array<vec4<f32>, 8>;
  var acc1: array<vec4<f32>, 8>;
  var rowB = z * params.strideB / 4u;
  for (var k = 0u; k < params.K; k++) {
    let b0 = vec4<f32>(b4[rowB + c0]);
    let b1 = vec4<f32>(b4[rowB + c1]);
    rowB += N4;
    for (var i = 0u; i < RB_ROWS; i++) {
      let av = f32(a[a_index(baseA, rows[i], k)]);
      acc0[i] = fma(vec4<f32>(av), b0, acc0[i]);
      acc1[i] = fma(vec4<f32>(av), b1, acc1[i]);
    }
  }
  var cols: array<u32, 8>;
  for (var j = 0u; j < 8u; j++) { cols[j] = min(n0 + j, lastN); }
  finish_tile(&acc0, &acc1, z, m0, rows, cols, n0, 1u);
}

// ---------------------------------------------------------------- v2: workgroup-tiled

const TILE = 64u;
const TILE_K = 16u;
var<workgroup> tileA: array<f32, 1024>;  // [TILE_K][TILE], op(A) transposed so rows are contiguous
var<workgroup> tileB: array<f32, 1024>;  // [TILE_K][TILE]

@compute @workgroup_size(16, 16, 1)
fn matmul_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
  let z = wid.z;
  let tile = tile_of(wid);
  let m0 = tile.x * TILE;
  let n0 = tile.y * TILE;
  let baseA = z * params.strideA;
  let baseB = z * params.strideB;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < params.K; k0 += TILE_K) {
    // 256 invocations load 1024 elements of each tile, 4 each; out of range reads as 0.
    for (var r = 0u; r < 4u; r++) {
      let e = li + r * 256u;
      let kk = e / TILE;
      let mm = e % TILE;
      let k = k0 + kk;
      var va = 0.0;
      if (k < params.K && m0 + mm < params.M) { va = f32(a[a_index(baseA, m0 + mm, k)]); }
      tileA[kk * TILE + mm] = va;
      var vb = 0.0;
      if (k < params.K && n0 + mm < params.N) { vb = f32(b[b_index(baseB, k, n0 + mm)]); }
      tileB[kk * TILE + mm] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TILE_K; kk++) {
      let bv = vec4<f32>(tileB[kk * TILE + lid.x], tileB[kk * TILE + lid.x + 16u],
                         tileB[kk * TILE + lid.x + 32u], tileB[kk * TILE + lid.x + 48u]);
      for (var i = 0u; i < 4u; i++) {
        acc[i] = fma(vec4<f32>(tileA[kk * TILE + lid.y + i * 16u]), bv, acc[i]);
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + i * 16u;
    if (m >= params.M) { continue; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x + j * 16u;
      if (n < params.N) { c[c_index(z, m, n)] = epilogue(scaled(acc[i][j], m, n), z, m, n); }
    }
  }
}
