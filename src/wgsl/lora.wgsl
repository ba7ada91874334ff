// lora.wgsl — the skinny products of a LoRA layer, where one side is the rank r.
//
// lora_down: u = scale · x·Aᵀ, x [M,K], A [r,K] (or [K,r] when A_T: du = s·dy·B with B [N,r]),
//            u [M,r], r ≤ 16.
// The general matmul is a poor fit: u has only r columns, so lanes along N sit idle and B is
// read transposed. Here the 64 lanes of a workgroup split K instead (lane l takes k = l + 64t,
// so x and A are read contiguously), each lane keeps ROWS·r partial sums in registers, and one
// barrier plus a 64-way sum in workgroup memory finishes ROWS rows of u per workgroup.
// lora_b_grad: dB = scale · dyᵀ·u, dy [M,N], u [M,r], dB [N,r], r ≤ 16. As a matmul, dB has only
// r columns (lanes idle) and its long side is a transposed read; here lane n owns row n of dB,
// reads dy[m, n] contiguously across lanes and u[m, ·] as uniform loads, with no barrier
// (lora_b_grad4: 4 rows of dB per lane, dy read as vec4s, where N % 4 == 0).
// lora_merge: W ← W + scale·B·A (a LoRA merge; scale < 0 unmerges), in place, with no B·A buffer.
// In W's own layout: W[row, col] += scale · Σ_j R[row, j]·C[j, col], where ([N,K] W) R = B and
// C = A, or ([K,N] W) R = Aᵀ and C = Bᵀ, both read through strides. Lane l owns MERGE_V vec4s
// of columns of W and keeps C's values for them in registers, then walks MERGE_ROWS rows,
// reading R[row, ·] once per row for all of them. On llvmpipe every buffer load is a per-lane
// loop, so per element of W the cost is its own load and store plus r/(4·MERGE_V) loads of R
// (on lavapipe, MERGE_V = 1 with 32 rows ran at 36–47 % of a vec4 copy, MERGE_V = 4 with 128
// rows at 70–84 %); the matmul's β = 1 epilogue read and wrote W with a stride per lane. Needs
// cols % 4 == 0.
// Accumulates in f32.
alias T = f32;

struct Params {
  M: u32,
  K: u32,
  scale: f32,
}

const WG = 64u;
// Rows of x per workgroup and the rank; ROWS·RANK ≤ 64.
override ROWS: u32 = 4u;
override RANK: u32 = 8u;
override A_T: bool = false;

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> a: array<T>;
@group(0) @binding(2) var<storage, read_write> u: array<T>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> partial: array<f32, 4096>;  // [WG lanes][64 sums]

@compute @workgroup_size(WG)
fn lora_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
  let m0 = (wid.x + wid.y * nwg.x) * ROWS;
  let lastM = params.M - 1u;
  var acc: array<f32, 64>;
  for (var k = lid.x; k < params.K; k += WG) {
    var av: array<f32, 16>;
    if (A_T) {
      for (var j = 0u; j < RANK; j++) { av[j] = f32(a[k * RANK + j]); }
    } else {
      for (var j = 0u; j < RANK; j++) { av[j] = f32(a[j * params.K + k]); }
    }
    for (var i = 0u; i < ROWS; i++) {
      let xv = f32(x[min(m0 + i, lastM) * params.K + k]);
      for (var j = 0u; j < RANK; j++) { acc[i * RANK + j] = fma(xv, av[j], acc[i * RANK + j]); }
    }
  }
  for (var t = 0u; t < ROWS * RANK; t++) { partial[lid.x * 64u + t] = acc[t]; }
  workgroupBarrier();
  let t = lid.x;
  if (t < ROWS * RANK) {
    var s = 0.0;
    for (var l = 0u; l < WG; l++) { s += partial[l * 64u + t]; }
    let m = m0 + t / RANK;
    if (m < params.M) { u[m * RANK + t % RANK] = T(params.scale * s); }
  }
}

struct GradParams {
  M: u32,
  N: u32,
  scale: f32,
}
@group(0) @binding(4) var<storage, read> dy: array<T>;
@group(0) @binding(5) var<storage, read> uu: array<T>;
@group(0) @binding(6) var<storage, read_write> db: array<T>;
@group(0) @binding(7) var<uniform> gparams: GradParams;

@compute @workgroup_size(WG)
fn lora_b_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = (wid.x + wid.y * nwg.x) * WG + lid.x;
  let col = min(n, gparams.N - 1u);
  var acc: array<f32, 16>;
  for (var m = 0u; m < gparams.M; m++) {
    let g = f32(dy[m * gparams.N + col]);
    for (var j = 0u; j < RANK; j++) { acc[j] = fma(g, f32(uu[m * RANK + j]), acc[j]); }
  }
  if (n < gparams.N) {
    for (var j = 0u; j < RANK; j++) { db[n * RANK + j] = T(gparams.scale * acc[j]); }
  }
}

// The same with lane l owning 4 adjacent rows of dB (columns 4l..4l+3 of dy, one vec4 load per
// m), where N % 4 == 0: a quarter of the dy loads, which on CPU adapters are per-lane loops
// (64×1024, r = 8 on lavapipe: 0.39 -> 0.23 ms).
@group(0) @binding(12) var<storage, read> dy4: array<vec4<T>>;

@compute @workgroup_size(WG)
fn lora_b_grad4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let N4 = gparams.N / 4u;
  let c4 = (wid.x + wid.y * nwg.x) * WG + lid.x;
  let col = min(c4, N4 - 1u);
  var acc: array<vec4<f32>, 16>;
  for (var m = 0u; m < gparams.M; m++) {
    let g = vec4<f32>(dy4[m * N4 + col]);
    for (var j = 0u; j < RANK; j++) { acc[j] = fma(vec4<f32>(f32(uu[m * RANK + j])), g, acc[j]); }
  }
  if (c4 < N4) {
    for (var q = 0u; q < 4u; q++) {
      for (var j = 0u; j < RANK; j++) { db[(4u * c4 + q) * RANK + j] = T(gparams.scale * acc[j][q]); }
    }
  }
}

struct MergeParams {
  rows: u32,
  cols4: u32,
  // R[row, j] = r_buf[row·rRow + j·rJ]; C[j, col] = c_buf[j·cJ + col·cCol]
  rRow: u32,
  rJ: u32,
  cJ: u32,
  cCol: u32,
  scale: f32,
}
override MERGE_ROWS: u32 = 32u;
// vec4s of columns per lane, MERGE_V·RANK ≤ 64.
override MERGE_V: u32 = 4u;
@group(0) @binding(8) var<storage, read_write> w4: array<vec4<T>>;
@group(0) @binding(9) var<storage, read> r_buf: array<T>;
@group(0) @binding(10) var<storage, read> c_buf: array<T>;
@group(0) @binding(11) var<uniform> mparams: MergeParams;

@compute @workgroup_size(WG)
fn lora_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  // Lane l owns MERGE_V vec4s of columns, WG vec4s apart (so a workgroup's lanes stay adjacent).
  let first = wid.x * WG * MERGE_V + lid.x;
  var cv: array<vec4<f32>, 64>;  // [MERGE_V][RANK]
  for (var v = 0u; v < MERGE_V; v++) {
    let col = 4u * min(first + v * WG, mparams.cols4 - 1u);
    for (var j = 0u; j < RANK; j++) {
      let base = j * mparams.cJ + col * mparams.cCol;
      cv[v * RANK + j] = mparams.scale * vec4<f32>(f32(c_buf[base]), f32(c_buf[base + mparams.cCol]),
                                                   f32(c_buf[base + 2u * mparams.cCol]), f32(c_buf[base + 3u * mparams.cCol]));
    }
  }
  let row0 = wid.y * MERGE_ROWS;
  let row1 = min(row0 + MERGE_ROWS, mparams.rows);
  for (var row = row0; row < row1; row++) {
    // R[row, ·] is read once per row for all MERGE_V·4 columns of the lane: on llvmpipe every
    // load is a per-lane loop, so this read, not the FMAs, is what costs beside W's own.
    var rv: array<f32, 16>;
    for (var j = 0u; j < RANK; j++) { rv[j] = f32(r_buf[row * mparams.rRow + j * mparams.rJ]); }
    for (var v = 0u; v < MERGE_V; v++) {
      let c4 = first + v * WG;
      if (c4 < mparams.cols4) {
        var acc = vec4<f32>(w4[row * mparams.cols4 + c4]);
        for (var j = 0u; j < RANK; j++) { acc = fma(vec4<f32>(rv[j]), cv[v * RANK + j], acc); }
        w4[row * mparams.cols4 + c4] = vec4<T>(acc);
      }
    }
  }
}
