// elementwise.wgsl — one invocation per element over flat arrays of n elements.
//
// out, x, y: [n] (any shape, flattened); y may be shorter and is then broadcast by
// repetition: y[i % ny] (a bias [N] over rows of an [M,N] x has ny = N).
// Arithmetic is in f32 whatever the storage type T.
// Each workgroup covers a contiguous chunk of per·WG elements, lanes interleaved (element
// base + t·WG): a CPU adapter (llvmpipe) pays per workgroup and per invocation, and this runs
// several times faster there than one element per invocation; `per` is a runtime value since
// unrolling the loop (an override) made llvmpipe slower. Dispatches are 2-D (x up to 65535
// workgroups, then y) so n may exceed 65535·WG·per.
//
// Entries: fill, fill_scalar (alpha · a scalar read from a buffer), scaled_diff, copy, add, sub, mul, scale, axpy (y += alpha·x, in place),
//          relu, relu_backward, gelu, gelu_backward (tanh approximation), silu, silu_backward,
//          cast_to_t (f32 -> T), cast_from_t (T -> f32),
//          transpose2d (x [n/ny, ny] -> out [ny, n/ny]),
//          copy_window (a block of columns between row-major [rows, srcCols] and [rows, dstCols]:
//          slice and concat along an axis, and their backward),
//          swap12 (x [a, b, c, d] -> out [a, c, b, d]: attention's head split and merge).
alias T = f32;

struct Params {
  n: u32,
  ny: u32,
  alpha: f32,
  per: u32,
}

// copy_window: out[r, dstOff + c] = x[r, srcOff + c] for c < width, over n = rows·width.
struct WindowParams {
  n: u32,
  width: u32,
  srcCols: u32,
  srcOff: u32,
  dstCols: u32,
  dstOff: u32,
  per: u32,
}
@group(0) @binding(7) var<uniform> window: WindowParams;

// swap12: x [a, b, c, d] -> out [a, c, b, d], n = a·b·c·d.
struct SwapParams {
  n: u32,
  b: u32,
  c: u32,
  d: u32,
  per: u32,
}
@group(0) @binding(8) var<uniform> swap: SwapParams;

const WG = 256u;

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> y: array<T>;
@group(0) @binding(2) var<storage, read> x32: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<T>;
@group(0) @binding(4) var<storage, read_write> out32: array<f32>;
@group(0) @binding(5) var<storage, read_write> acc: array<T>;
@group(0) @binding(6) var<uniform> params: Params;

fn chunk(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * WG * params.per + lid.x;
}

fn gelu_tanh(v: f32) -> f32 {
  // Clamp the tanh argument: some drivers return NaN for tanh of large inputs.
  let u = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -15.0, 15.0);
  return 0.5 * v * (1.0 + tanh(u));
}

fn gelu_tanh_grad(v: f32) -> f32 {
  let c = 0.7978845608028654;
  let u = clamp(c * (v + 0.044715 * v * v * v), -15.0, 15.0);
  let t = tanh(u);
  return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * v * v);
}

@compute @workgroup_size(WG)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(params.alpha); }
  }
}

// A one-element tensor read on the GPU (a loss gradient), so a backward pass needs no readback.
@group(0) @binding(11) var<storage, read> s: array<T>;

// out = alpha · s[0] everywhere: a scalar's gradient broadcast (the backward of sum and mean).
@compute @workgroup_size(WG)
fn fill_scalar(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  let v = T(params.alpha * f32(s[0]));
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = v; }
  }
}

// out = alpha · s[0] · (x − y): the backward of mean((x − y)²) with alpha = 2/n.
@compute @workgroup_size(WG)
fn scaled_diff(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  let k = params.alpha * f32(s[0]);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(k * (f32(x[i]) - f32(y[i]))); }
  }
}

@compute @workgroup_size(WG)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = x[i]; }
  }
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(f32(x[i]) + f32(y[i % params.ny])); }
  }
}

@compute @workgroup_size(WG)
fn sub(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(f32(x[i]) - f32(y[i % params.ny])); }
  }
}

@compute @workgroup_size(WG)
fn mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(f32(x[i]) * f32(y[i % params.ny])); }
  }
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(params.alpha * f32(x[i])); }
  }
}

@compute @workgroup_size(WG)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { acc[i] = T(fma(params.alpha, f32(x[i]), f32(acc[i]))); }
  }
}

@compute @workgroup_size(WG)
fn relu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(max(f32(x[i]), 0.0)); }
  }
}

// dx = dy where x > 0, else 0 (the subgradient at 0 is 0, as in PyTorch). x: input, y: dy.
@compute @workgroup_size(WG)
fn relu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = select(T(0.0), y[i], f32(x[i]) > 0.0); }
  }
}

@compute @workgroup_size(WG)
fn gelu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(gelu_tanh(f32(x[i]))); }
  }
}

// dx = dy · gelu'(x). x: input, y: dy.
@compute @workgroup_size(WG)
fn gelu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(f32(y[i]) * gelu_tanh_grad(f32(x[i]))); }
  }
}

fn sigmoid(v: f32) -> f32 {
  // exp of a large positive argument overflows to inf, and 1/(1+inf) = 0 is the right limit.
  return 1.0 / (1.0 + exp(-v));
}

@compute @workgroup_size(WG)
fn silu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { let v = f32(x[i]); out[i] = T(v * sigmoid(v)); }
  }
}

// dx = dy · σ(x)·(1 + x·(1 − σ(x))). x: input, y: dy.
@compute @workgroup_size(WG)
fn silu_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) {
      let v = f32(x[i]);
      let s = sigmoid(v);
      out[i] = T(f32(y[i]) * s * (1.0 + v * (1.0 - s)));
    }
  }
}

@compute @workgroup_size(WG)
fn cast_to_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[i] = T(x32[i]); }
  }
}

@compute @workgroup_size(WG)
fn cast_from_t(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out32[i] = f32(x[i]); }
  }
}

// out[j, i] = x[i, j] for x [rows, cols] with cols = ny; for converting a frozen weight's
// layout once (torch's [out, in] to [in, out]), not for hot loops.
@compute @workgroup_size(WG)
fn transpose2d(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk(wid, nwg, lid);
  let rows = params.n / params.ny;
  for (var t = 0u; t < params.per; t++) {
    let i = base + t * WG;
    if (i < params.n) { out[(i % params.ny) * rows + i / params.ny] = x[i]; }
  }
}

@group(0) @binding(9) var<storage, read> x4: array<vec4<T>>;
@group(0) @binding(10) var<storage, read_write> out4: array<vec4<T>>;

// transpose2d for rows % 4 == 0 and cols % 4 == 0: each invocation moves one 4×4 block with
// four vec4 loads and four vec4 stores, and takes its block from the 2-D grid, so there is no
// per-element index division (llvmpipe has no vector integer divide). Grid: x over
// column blocks (WG per workgroup), y over row blocks.
@compute @workgroup_size(WG)
fn transpose2d_4x4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let cols4 = params.ny / 4u;
  let rows = params.n / params.ny;
  let cb = wid.x * WG + lid.x;
  let rb = wid.y;
  if (cb >= cols4) { return; }
  let r0 = x4[(4u * rb) * cols4 + cb];
  let r1 = x4[(4u * rb + 1u) * cols4 + cb];
  let r2 = x4[(4u * rb + 2u) * cols4 + cb];
  let r3 = x4[(4u * rb + 3u) * cols4 + cb];
  let rows4 = rows / 4u;
  out4[(4u * cb) * rows4 + rb] = vec4<T>(r0.x, r1.x, r2.x, r3.x);
  out4[(4u * cb + 1u) * rows4 + rb] = vec4<T>(r0.y, r1.y, r2.y, r3.y);
  out4[(4u * cb + 2u) * rows4 + rb] = vec4<T>(r0.z, r1.z, r2.z, r3.z);
  out4[(4u * cb + 3u) * rows4 + rb] = vec4<T>(r0.w, r1.w, r2.w, r3.w);
}

// Viewing a tensor as [outer, axis·inner], a slice or a concat along `axis` moves a block of
// columns: width = length·inner at offset start·inner.
@compute @workgroup_size(WG)
fn copy_window(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = (wid.x + wid.y * nwg.x) * WG * window.per + lid.x;
  for (var t = 0u; t < window.per; t++) {
    let i = base + t * WG;
    if (i < window.n) {
      let r = i / window.width;
      let c = i % window.width;
      out[r * window.dstCols + window.dstOff + c] = x[r * window.srcCols + window.srcOff + c];
    }
  }
}

@compute @workgroup_size(WG)
fn swap12(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = (wid.x + wid.y * nwg.x) * WG * swap.per + lid.x;
  for (var t = 0u; t < swap.per; t++) {
    let i = base + t * WG;
    if (i < swap.n) {
      // i indexes x [a, b, c, d]; write at [a, c, b, d].
      let k = i % swap.d;
      let j = (i / swap.d) % swap.c;
      let bb = (i / (swap.d * swap.c)) % swap.b;
      let a = i / (swap.d * swap.c * swap.b);
      out[((a * swap.c + j) * swap.b + bb) * swap.d + k] = x[i];
    }
  }
}
