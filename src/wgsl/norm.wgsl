// norm.wgsl — LayerNorm and RMSNorm over the last axis of x viewed as [R, C], f32.
//
//   LayerNorm: x̂ = (x − μ)·rstd, rstd = 1/√(var + eps),  y = x̂·γ + β
//   RMSNorm (RMS): x̂ = x·rstd,   rstd = 1/√(mean(x²) + eps),  y = x̂·γ
// norm_forward: one workgroup per row (2-D grid), lane-strided sums then a tree; saves μ and
// rstd per row (`stats` [R, 2]) for backward.
// norm_backward_x: dŷ = dy·γ;  LayerNorm dx = rstd·(dŷ − mean(dŷ) − x̂·mean(dŷ·x̂)),
//                              RMSNorm   dx = rstd·(dŷ − x̂·mean(dŷ·x̂)).
// norm_backward_params: one invocation per column: dγ = Σ_rows dy·x̂, dβ = Σ_rows dy.
// norm_forward_lane, norm_backward_x_lane: the same per row, one invocation per row (LANE_WG
// rows per workgroup, ceil(R / LANE_WG) workgroups, 2-D grid) walking its row serially, with
// no workgroup memory and no barrier. llvmpipe (lavapipe) runs a workgroup's invocations as
// SIMD loops split at every barrier, so the tree reductions above (~7 barriers each) cost more
// than a whole narrow row; the launcher (src/kernels/norm.ts) picks which version runs.
struct Params {
  rows: u32,
  cols: u32,
  eps: f32,
}

const WG = 64u;
// Rows per workgroup of the `_lane` entries (one invocation each).
const LANE_WG = 32u;
override RMS: bool = false;
override HAS_BETA: bool = true;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> saved: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;

var<workgroup> red: array<f32, WG>;

fn reduce_sum(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = red[li] + red[li + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return min(wid.x + wid.y * nwg.x, params.rows - 1u);
}

@compute @workgroup_size(WG)
fn norm_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = row_of(wid, nwg);
  let base = row * params.cols;
  let n = f32(params.cols);
  var mu = 0.0;
  if (!RMS) {
    var s = 0.0;
    for (var c = li; c < params.cols; c += WG) { s += x[base + c]; }
    mu = reduce_sum(li, s) / n;
  }
  var s2 = 0.0;
  for (var c = li; c < params.cols; c += WG) {
    let d = x[base + c] - mu;
    s2 += d * d;
  }
  let rstd = inverseSqrt(reduce_sum(li, s2) / n + params.eps);
  for (var c = li; c < params.cols; c += WG) {
    var v = (x[base + c] - mu) * rstd * gamma[c];
    if (!RMS && HAS_BETA) { v += beta[c]; }
    out[base + c] = v;
  }
  if (li == 0u) {
    stats[2u * row] = mu;
    stats[2u * row + 1u] = rstd;
  }
}

@compute @workgroup_size(WG)
fn norm_backward_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = row_of(wid, nwg);
  let base = row * params.cols;
  let n = f32(params.cols);
  let mu = saved[2u * row];
  let rstd = saved[2u * row + 1u];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = li; c < params.cols; c += WG) {
    let g = dy[base + c] * gamma[c];
    sg += g;
    sgx += g * (x[base + c] - mu) * rstd;
  }
  let mg = reduce_sum(li, sg) / n;
  let mgx = reduce_sum(li, sgx) / n;
  for (var c = li; c < params.cols; c += WG) {
    let g = dy[base + c] * gamma[c];
    let xh = (x[base + c] - mu) * rstd;
    var d = g - xh * mgx;
    if (!RMS) { d -= mg; }
    out[base + c] = rstd * d;
  }
}

// out = dγ [C], dbeta = dβ [C] (LayerNorm with β).
@compute @workgroup_size(WG)
fn norm_backward_params(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= params.cols) { return; }
  var dg = 0.0;
  var db = 0.0;
  for (var r = 0u; r < params.rows; r++) {
    let i = r * params.cols + c;
    dg += dy[i] * (x[i] - saved[2u * r]) * saved[2u * r + 1u];
    db += dy[i];
  }
  out[c] = dg;
  if (!RMS && HAS_BETA) { dbeta[c] = db; }
}

// ---- `_lane` versions: one invocation per row, no workgroup memory, no barrier. ----

// The row of this invocation; callers return when it is >= params.rows (nothing to keep in step).
fn lane_row(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * LANE_WG + li;
}

@compute @workgroup_size(LANE_WG)
fn norm_forward_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  let n = f32(params.cols);
  var mu = 0.0;
  if (!RMS) {
    var s = 0.0;
    for (var c = 0u; c < params.cols; c++) { s += x[base + c]; }
    mu = s / n;
  }
  // Variance around the mean (a second pass), as norm_forward: no E[x²] − μ² cancellation.
  var s2 = 0.0;
  for (var c = 0u; c < params.cols; c++) {
    let d = x[base + c] - mu;
    s2 += d * d;
  }
  let rstd = inverseSqrt(s2 / n + params.eps);
  for (var c = 0u; c < params.cols; c++) {
    var v = (x[base + c] - mu) * rstd * gamma[c];
    if (!RMS && HAS_BETA) { v += beta[c]; }
    out[base + c] = v;
  }
  stats[2u * row] = mu;
  stats[2u * row + 1u] = rstd;
}

@compute @workgroup_size(LANE_WG)
fn norm_backward_x_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  let n = f32(params.cols);
  let mu = saved[2u * row];
  let rstd = saved[2u * row + 1u];
  var sg = 0.0;
  var sgx = 0.0;
  for (var c = 0u; c < params.cols; c++) {
    let g = dy[base + c] * gamma[c];
    sg += g;
    sgx += g * (x[base + c] - mu) * rstd;
  }
  let mg = sg / n;
  let mgx = sgx / n;
  for (var c = 0u; c < params.cols; c++) {
    let g = dy[base + c] * gamma[c];
    let xh = (x[base + c] - mu) * rstd;
    var d = g - xh * mgx;
    if (!RMS) { d -= mg; }
    out[base + c] = rstd * d;
  }
}
