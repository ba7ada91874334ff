// reduce.wgsl — reductions over the last axis of x viewed as [rows, cols].
//
// out[outOffset + r] = scale · reduce_{c < cols} f(x[r·cols + c]), with f = identity for SUM, |·| for
// MAX_ABS, x² for SUM_SQUARES (the global gradient norm for clipping) and (x − y)² for
// SUM_SQ_DIFF (an MSE loss in one pass). One workgroup per row (2-D grid of workgroups for many rows): each lane strides
// over the row accumulating in f32, then a tree reduction in workgroup memory.
// A whole-array reduction is two passes: rows of a fixed chunk, then the partials. Over a set
// of arrays larger than one binding (a chunked ParamArena's gradients), each array's first pass
// writes its partials at its own outOffset into one partials array, and one pass adds them all.
// reduce_rows4 is the same over vec4s where rows are whole vec4s.
// The last row may be short (n not a multiple of cols): lanes stop at n.
alias T = f32;

struct Params {
  n: u32,
  cols: u32,
  rows: u32,
  scale: f32,
  outOffset: u32,
}

const WG = 256u;
// 0: sum, 1: max of absolute values, 2: sum of squares, 3: sum of squared differences x − y.
override OP: u32 = 0u;
// Finish with one barrier and a serial sum (CPU adapters) instead of a tree of barriers.
override SERIAL_TAIL: bool = false;

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> y: array<T>;

var<workgroup> partial: array<f32, WG>;

fn combine(a: f32, b: f32) -> f32 {
  if (OP == 1u) { return max(a, b); }
  return a + b;
}

fn accumulate(v: f32, e: f32) -> f32 {
  if (OP == 1u) { return max(v, abs(e)); }
  if (OP >= 2u) { return fma(e, e, v); }
  return v + e;
}

fn accumulate4(v: vec4<f32>, e: vec4<f32>) -> vec4<f32> {
  if (OP == 1u) { return max(v, abs(e)); }
  if (OP >= 2u) { return fma(e, e, v); }
  return v + e;
}

// out[row] = scale · (the workgroup's lanes' `v` combined). Called in uniform control flow.
fn finish_row(li: u32, row: u32, v: f32) {
  partial[li] = v;
  workgroupBarrier();
  if (SERIAL_TAIL) {
    // CPU adapters: every barrier suspends and resumes each SIMD group of the workgroup, so one
    // barrier and a serial sum of the partials by lane 0 beats a log2(WG)-step tree.
    if (li == 0u && row < params.rows) {
      var t = partial[0];
      for (var l = 1u; l < WG; l++) { t = combine(t, partial[l]); }
      out[params.outOffset + row] = T(params.scale * t);
    }
    return;
  }
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { partial[li] = combine(partial[li], partial[li + s]); }
    workgroupBarrier();
  }
  if (li == 0u && row < params.rows) { out[params.outOffset + row] = T(params.scale * partial[0]); }
}

@compute @workgroup_size(WG)
fn reduce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
  // The row is uniform across the workgroup, so every lane reaches the barriers.
  let row = wid.x + wid.y * nwg.x;
  let start = row * params.cols;
  let end = min(start + params.cols, params.n);
  var v = 0.0;
  if (row < params.rows) {
    for (var i = start + li; i < end; i += WG) {
      var e = f32(x[i]);
      if (OP == 3u) { e -= f32(y[i]); }
      v = accumulate(v, e);
    }
  }
  finish_row(li, row, v);
}

// The same over vec4s, where cols and n are multiples of 4 (rows are then whole vec4s): a
// quarter of the loads, which on CPU adapters are per-lane loops (MSE over 64×1024 on
// lavapipe, first pass: 0.30 -> 0.19 ms).
@group(0) @binding(4) var<storage, read> x4: array<vec4<T>>;
@group(0) @binding(5) var<storage, read> y4: array<vec4<T>>;

@compute @workgroup_size(WG)
fn reduce_rows4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
  let row = wid.x + wid.y * nwg.x;
  let start = row * (params.cols / 4u);
  let end = min(start + params.cols / 4u, params.n / 4u);
  var v4 = vec4<f32>(0.0);
  if (row < params.rows) {
    for (var i = start + li; i < end; i += WG) {
      var e = vec4<f32>(x4[i]);
      if (OP == 3u) { e -= vec4<f32>(y4[i]); }
      v4 = accumulate4(v4, e);
    }
  }
  finish_row(li, row, combine(combine(v4.x, v4.y), combine(v4.z, v4.w)));
}
