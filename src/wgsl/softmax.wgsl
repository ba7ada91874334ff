// softmax.wgsl — row-wise softmax (optionally causal, for attention scores), log-softmax
// and a fused softmax cross-entropy over the last axis of x viewed as [R, C], in f32.
//
// Two versions of each row-wise entry (the launcher picks one per call, see src/kernels/softmax.ts):
// - `<entry>`: one workgroup per row (2-D grid for many rows); every reduction (max, Σexp, Σ) is
//   a lane-strided loop then a tree in workgroup memory. For wide rows, and for GPUs.
// - `<entry>_lane`: one invocation per row, LANE_WG rows per workgroup (ceil(R / LANE_WG)
//   workgroups, 2-D grid): the invocation walks its row serially (max, Σexp, write), with no
//   workgroup memory and no barrier. llvmpipe (lavapipe) runs a workgroup's invocations as SIMD
//   loops split at every barrier, so a tree reduction's ~7 barriers per reduction cost more than
//   a whole narrow row (128–256 columns); per row the arithmetic is the same, in the same order
//   of operations per element (max-shifted logΣexp), with serial f32 sums instead of trees.
//
// Cross-entropy, with targets either class indices (`labels` [R], as f32 holding integers;
// rows whose label equals ignoreIndex count for nothing) or a distribution per row
// (SOFT: `soft` [R, C], e.g. weak or noisy labels), and label smoothing ε:
//   q = (1 − ε)·target + ε/C,   loss_r = −Σ_c q_c·log softmax(x_r)_c = (Σ_c q_c)·logΣexp(x_r) − Σ_c q_c·x_rc
//   (as PyTorch, soft targets need not sum to 1),
//   loss = Σ_r loss_r / (number of counted rows)               (xent_rows, then xent_mean)
//   dx_rc = g · ((Σ q_r)·softmax(x_r)_c − q_rc) / count, 0 for ignored rows   (xent_backward)
// xent_rows also stores logΣexp per row (lse) for backward, and xent_mean the count.
// Labels are checked on the GPU: a label that is neither ignoreIndex nor an integer in [0, C)
// (negative, too large, fractional, NaN) counts for nothing, and xent_rows records the first
// such row in the device-check slot `check` (word 0: 0xffffffff − row by atomicMax, so the
// smallest row wins; xent_mean then stores the label's bits in word 1). The runtime turns a
// recorded row into an ArgumentError at the next sync()/read(), with no readback in the step.
struct Params {
  rows: u32,
  cols: u32,
  ignoreIndex: f32,
  smoothing: f32,
  // CAUSAL softmax: row r is query position r % period and sees columns 0..=(r % period).
  period: u32,
  // The device-check slot of this cross-entropy (xent_rows, xent_mean).
  check: u32,
}

const WG = 64u;
// Rows per workgroup of the `_lane` entries (one invocation each).
const LANE_WG = 32u;
override SOFT: bool = false;
override CAUSAL: bool = false;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<f32>;
@group(0) @binding(2) var<storage, read> soft: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> lse: array<f32>;
@group(0) @binding(8) var<uniform> params: Params;
@group(0) @binding(9) var<storage, read_write> checks: array<atomic<u32>>;

var<workgroup> red: array<f32, WG>;

fn row_of(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// Tree reduction of v across the workgroup (max when is_max), returned to every lane.
fn reduce(li: u32, v: f32, is_max: bool) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      if (is_max) { red[li] = max(red[li], red[li + s]); } else { red[li] = red[li] + red[li + s]; }
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

// Columns of row `row` that take part: all, or up to the query position when CAUSAL.
fn visible(row: u32) -> u32 {
  if (CAUSAL) { return min(row % params.period + 1u, params.cols); }
  return params.cols;
}

// logΣexp of row `row` of x over its visible columns (max-shifted, so large logits do not overflow).
fn log_sum_exp(row: u32, li: u32) -> f32 {
  let base = row * params.cols;
  let n = visible(row);
  var m = -3.4e38;
  for (var c = li; c < n; c += WG) { m = max(m, x[base + c]); }
  m = reduce(li, m, true);
  var s = 0.0;
  for (var c = li; c < n; c += WG) { s += exp(x[base + c] - m); }
  s = reduce(li, s, false);
  return m + log(s);
}

@compute @workgroup_size(WG)
fn softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = min(row_of(wid, nwg), params.rows - 1u);  // uniform: extra workgroups redo the last row
  let l = log_sum_exp(row, li);
  let base = row * params.cols;
  let n = visible(row);
  // Masked (future) columns get probability 0, so backward needs no mask.
  for (var c = li; c < params.cols; c += WG) { out[base + c] = select(0.0, exp(x[base + c] - l), c < n); }
}

@compute @workgroup_size(WG)
fn log_softmax_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = min(row_of(wid, nwg), params.rows - 1u);
  let l = log_sum_exp(row, li);
  let base = row * params.cols;
  for (var c = li; c < params.cols; c += WG) { out[base + c] = x[base + c] - l; }
}

// dx = y ⊙ (dy − Σ dy⊙y), y = softmax(x).
@compute @workgroup_size(WG)
fn softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = min(row_of(wid, nwg), params.rows - 1u);
  let base = row * params.cols;
  var s = 0.0;
  for (var c = li; c < params.cols; c += WG) { s += dy[base + c] * y[base + c]; }
  s = reduce(li, s, false);
  for (var c = li; c < params.cols; c += WG) { out[base + c] = y[base + c] * (dy[base + c] - s); }
}

// dx = dy − softmax(x)·Σ dy, from y = log_softmax(x).
@compute @workgroup_size(WG)
fn log_softmax_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = min(row_of(wid, nwg), params.rows - 1u);
  let base = row * params.cols;
  var s = 0.0;
  for (var c = li; c < params.cols; c += WG) { s += dy[base + c]; }
  s = reduce(li, s, false);
  for (var c = li; c < params.cols; c += WG) { out[base + c] = dy[base + c] - exp(y[base + c]) * s; }
}

// A class index in [0, cols), or ignoreIndex.
fn label_valid(row: u32) -> bool {
  let v = labels[row];
  return v == params.ignoreIndex || (v >= 0.0 && v < f32(params.cols) && v == floor(v));
}

fn counted(row: u32) -> bool {
  if (SOFT) { return true; }
  return labels[row] != params.ignoreIndex && label_valid(row);
}

// q_rc: the smoothed target.
fn target_prob(row: u32, c: u32) -> f32 {
  var t: f32;
  if (SOFT) { t = soft[row * params.cols + c]; } else { t = select(0.0, 1.0, u32(labels[row]) == c); }
  return (1.0 - params.smoothing) * t + params.smoothing / f32(params.cols);
}

// out[r] = loss_r (0 when ignored), lse[r] = logΣexp(x_r).
@compute @workgroup_size(WG)
fn xent_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = row_of(wid, nwg);
  let row = min(r, params.rows - 1u);
  let l = log_sum_exp(row, li);
  let base = row * params.cols;
  var s = 0.0;
  var sq = 0.0;
  for (var c = li; c < params.cols; c += WG) {
    let q = target_prob(row, c);
    s += q * x[base + c];
    sq += q;
  }
  s = reduce(li, s, false);
  sq = reduce(li, sq, false);
  if (li == 0u && r < params.rows) {
    lse[row] = l;
    out[row] = select(0.0, sq * l - s, counted(row));
    if (!SOFT && !label_valid(row)) { atomicMax(&checks[2u * params.check], 0xffffffffu - row); }
  }
}

// One workgroup: out[0] = Σ loss_r / count, out[1] = count (for backward). `y` holds loss_r.
@compute @workgroup_size(WG)
fn xent_mean(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  var n = 0.0;
  for (var r = li; r < params.rows; r += WG) {
    s += y[r];
    n += select(0.0, 1.0, counted(r));
  }
  s = reduce(li, s, false);
  n = reduce(li, n, false);
  if (li == 0u) {
    out[0] = s / max(n, 1.0);
    out[1] = n;
    // The bad label's value, for the error message (xent_rows ran before this dispatch).
    let code = atomicLoad(&checks[2u * params.check]);
    let bad = 0xffffffffu - code;
    if (!SOFT && code != 0u && bad < params.rows) { atomicStore(&checks[2u * params.check + 1u], bitcast<u32>(labels[bad])); }
  }
}

// dx from the upstream scalar gradient dy[0], lse (in `y`) and count (stats[1]).
@compute @workgroup_size(WG)
fn xent_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = min(row_of(wid, nwg), params.rows - 1u);
  let base = row * params.cols;
  let g = dy[0] / max(stats[1], 1.0);
  let keep = counted(row);
  var sq = 0.0;
  for (var c = li; c < params.cols; c += WG) { sq += target_prob(row, c); }
  sq = reduce(li, sq, false);
  for (var c = li; c < params.cols; c += WG) {
    out[base + c] = select(0.0, g * (sq * exp(x[base + c] - y[row]) - target_prob(row, c)), keep);
  }
}

// ---- `_lane` versions: one invocation per row, no workgroup memory, no barrier. ----

// The row of this invocation; callers return when it is >= params.rows (nothing to keep in step).
fn lane_row(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wid.x + wid.y * nwg.x) * LANE_WG + li;
}

// logΣexp of row `row` over its visible columns, serially (max-shifted like log_sum_exp).
fn log_sum_exp_lane(row: u32) -> f32 {
  let base = row * params.cols;
  let n = visible(row);
  var m = -3.4e38;
  for (var c = 0u; c < n; c++) { m = max(m, x[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < n; c++) { s += exp(x[base + c] - m); }
  return m + log(s);
}

@compute @workgroup_size(LANE_WG)
fn softmax_rows_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let l = log_sum_exp_lane(row);
  let base = row * params.cols;
  let n = visible(row);
  for (var c = 0u; c < n; c++) { out[base + c] = exp(x[base + c] - l); }
  for (var c = n; c < params.cols; c++) { out[base + c] = 0.0; }
}

@compute @workgroup_size(LANE_WG)
fn log_softmax_rows_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let l = log_sum_exp_lane(row);
  let base = row * params.cols;
  for (var c = 0u; c < params.cols; c++) { out[base + c] = x[base + c] - l; }
}

@compute @workgroup_size(LANE_WG)
fn softmax_backward_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var s = 0.0;
  for (var c = 0u; c < params.cols; c++) { s += dy[base + c] * y[base + c]; }
  for (var c = 0u; c < params.cols; c++) { out[base + c] = y[base + c] * (dy[base + c] - s); }
}

@compute @workgroup_size(LANE_WG)
fn log_softmax_backward_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  var s = 0.0;
  for (var c = 0u; c < params.cols; c++) { s += dy[base + c]; }
  for (var c = 0u; c < params.cols; c++) { out[base + c] = dy[base + c] - exp(y[base + c]) * s; }
}

@compute @workgroup_size(LANE_WG)
fn xent_rows_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let l = log_sum_exp_lane(row);
  let base = row * params.cols;
  var s = 0.0;
  var sq = 0.0;
  for (var c = 0u; c < params.cols; c++) {
    let q = target_prob(row, c);
    s += q * x[base + c];
    sq += q;
  }
  lse[row] = l;
  out[row] = select(0.0, sq * l - s, counted(row));
  if (!SOFT && !label_valid(row)) { atomicMax(&checks[2u * params.check], 0xffffffffu - row); }
}

@compute @workgroup_size(LANE_WG)
fn xent_backward_lane(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = lane_row(wid, nwg, li);
  if (row >= params.rows) { return; }
  let base = row * params.cols;
  let g = dy[0] / max(stats[1], 1.0);
  let keep = counted(row);
  var sq = 0.0;
  for (var c = 0u; c < params.cols; c++) { sq += target_prob(row, c); }
  for (var c = 0u; c < params.cols; c++) {
    out[base + c] = select(0.0, g * (sq * exp(x[base + c] - y[row]) - target_prob(row, c)), keep);
  }
}
