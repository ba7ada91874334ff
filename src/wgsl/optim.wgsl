// optim.wgsl — fused optimizer updates over flat parameter arenas, one dispatch per step
// (per parameter group). All state is f32; formulas follow torch.optim.AdamW and SGD.
//
//   p, g, m, v, vmax: [n]; gnorm: [1], the global Σg² computed on the GPU (reduce.wgsl, OP = 2)
//   when clipping, so clipping needs no CPU readback.
//   The gradient used is g·clip with clip = min(1, maxNorm / (‖g‖ + 1e-6)) (CLIP), as
//   torch.nn.utils.clip_grad_norm_ followed by the step.
//
// adamw_step  p ← p − lr·wd·p; m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
//             v̂ = (AMSGRAD ? vmax ← max(vmax, v) : v) / bc2;  p ← p − lr·(m / bc1) / (√v̂ + eps)
// sgd_step    g ← g + wd·p; with momentum μ: buf ← first ? g : μ·buf + (1 − dampening)·g,
//             g ← NESTEROV ? g + μ·buf : buf;  p ← p − lr·g
struct Params {
  n: u32,
  first: u32,
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  weightDecay: f32,
  bc1: f32,
  bc2: f32,
  momentum: f32,
  dampening: f32,
  maxNorm: f32,
}

const WG = 256u;
override AMSGRAD: bool = false;
override NESTEROV: bool = false;
override MOMENTUM: bool = false;
override CLIP: bool = false;

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> gnorm: array<f32>;
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> vmax: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

fn clipped(i: u32) -> f32 {
  if (CLIP) { return g[i] * min(1.0, params.maxNorm / (sqrt(gnorm[0]) + 1e-6)); }
  return g[i];
}

@compute @workgroup_size(WG)
fn adamw_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i >= params.n) { return; }
  let gi = clipped(i);
  var pi = p[i] * (1.0 - params.lr * params.weightDecay);
  let mi = params.beta1 * m[i] + (1.0 - params.beta1) * gi;
  let vi = params.beta2 * v[i] + (1.0 - params.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  var vhat = vi;
  if (AMSGRAD) {
    vhat = max(vmax[i], vi);
    vmax[i] = vhat;
  }
  pi -= params.lr * (mi / params.bc1) / (sqrt(vhat / params.bc2) + params.eps);
  p[i] = pi;
}

// m is the momentum buffer.
@compute @workgroup_size(WG)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = index(gid, nwg);
  if (i >= params.n) { return; }
  let pi = p[i];
  var d = clipped(i) + params.weightDecay * pi;
  if (MOMENTUM) {
    var b = d;
    if (params.first == 0u) { b = params.momentum * m[i] + (1.0 - params.dampening) * d; }
    m[i] = b;
    if (NESTEROV) { d = d + params.momentum * b; } else { d = b; }
  }
  p[i] = pi - params.lr * d;
}
