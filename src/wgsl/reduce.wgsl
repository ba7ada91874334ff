// reduce.wgsl — reductions over the last axis of x viewed as [rows, cols].
//
// out[r] = scale · reduce_{c < cols} f(x[r·cols + c]), with f = identity for SUM, |·| for
// MAX_ABS, x² for SUM_SQUARES (the global gradient norm for clipping) and (x − y)² for
// SUM_SQ_DIFF (an MSE loss in one pass). One workgroup per row (2-D grid of workgroups for many rows): each lane strides
// over the row accumulating in f32, then a tree reduction in workgroup memory.
// A whole-array reduction is two passes: rows of a fixed chunk, then the partials.
// The last row may be short (n not a multiple of cols): lanes stop at n.
alias T = f32;

struct Params {
  n: u32,
  cols: u32,
  rows: u32,
  scale: f32,
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
      if (OP == 1u) { v = max(v, abs(e)); } else if (OP >= 2u) { v = fma(e, e, v); } else { v += e; }
    }
  }
  partial[li] = v;
  workgroupBarrier();
  if (SERIAL_TAIL) {
    // CPU adapters: every barrier suspends and resumes each SIMD group of the workgroup, so one
    // barrier and a serial sum of the partials by lane 0 beats a log2(WG)-step tree.
    if (li == 0u && row < params.rows) {
      var t = partial[0];
      for (var l = 1u; l < WG; l++) { t = combine(t, partial[l]); }
      out[row] = T(params.scale * t);
    }
    return;
  }
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { partial[li] = combine(partial[li], partial[li + s]); }
    workgroupBarrier();
  }
  if (li == 0u && row < params.rows) { out[row] = T(params.scale * partial[0]); }
}
