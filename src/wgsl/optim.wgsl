// optim.wgsl — fused optimizer updates, one dispatch per parameter tensor, or (ARENA) one
// dispatch for every group whose parameters are windows of one ParamArena. All state is f32;
// formulas follow torch.optim.AdamW and SGD.
//
//   ARENA: p, g, m, v, vmax span the whole arena; `groups` holds, for each group in order of
//   its start, (start, end, lr bits, weight decay bits), then for each workgroup of 256
//   elements the first group that ends inside or after it; params.lr is the schedule's scale.
//   A workgroup walks only the groups that overlap it, so the lookup costs a group or two per
//   element rather than one per group (a scan of all 64 per element ran 2.3× slower than 64
//   dispatches).
//   An element outside every range (a gap between slots, or a parameter this optimizer does
//   not own) is left alone.
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
  ngroups: u32,
}

const WG = 256u;
override AMSGRAD: bool = false;
override NESTEROV: bool = false;
override MOMENTUM: bool = false;
override CLIP: bool = false;
override ARENA: bool = false;

@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> gnorm: array<f32>;
@group(0) @binding(2) var<storage, read_write> p: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read_write> vmax: array<f32>;
@group(0) @binding(6) var<uniform> params: Params;
// ARENA: 4 words per group (start, end, lr bits, weight decay bits), params.ngroups of them,
// then the first group of each workgroup.
@group(0) @binding(7) var<storage, read> groups: array<u32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

// The workgroup's linear index: element i's workgroup, i / WG.
fn wg_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// (lr, weight decay) for element i: the group's in an arena (lr < 0: i is in no group), else
// the dispatch's own.
fn lr_wd(i: u32, wg: u32) -> vec2<f32> {
  if (ARENA) {
    // The workgroup walks the groups that overlap it (uniform loads and loop), each lane
    // keeping the one that holds its element.
    var h = vec2<f32>(-1.0, 0.0);
    let wgEnd = (wg + 1u) * WG;
    for (var k = groups[4u * params.ngroups + wg]; k < params.ngroups; k++) {
      let start = groups[4u * k];
      if (start >= wgEnd) { break; }
      if (i >= start && i < groups[4u * k + 1u]) {
        h = vec2<f32>(params.lr * bitcast<f32>(groups[4u * k + 2u]), bitcast<f32>(groups[4u * k + 3u]));
      }
    }
    return h;
  }
  return vec2<f32>(params.lr, params.weightDecay);
}

fn clipped(i: u32) -> f32 {
  if (CLIP) { return g[i] * min(1.0, params.maxNorm / (sqrt(gnorm[0]) + 1e-6)); }
  return g[i];
}

@compute @workgroup_size(WG)
fn adamw_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(workgroup_id) wid: vec3<u32>) {
  let i = index(gid, nwg);
  if (i >= params.n) { return; }
  let h = lr_wd(i, wg_index(wid, nwg));
  if (h.x < 0.0) { return; }
  let lr = h.x;
  let gi = clipped(i);
  var pi = p[i] * (1.0 - lr * h.y);
  let mi = params.beta1 * m[i] + (1.0 - params.beta1) * gi;
  let vi = params.beta2 * v[i] + (1.0 - params.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  var vhat = vi;
  if (AMSGRAD) {
    vhat = max(vmax[i], vi);
    vmax[i] = vhat;
  }
  pi -= lr * (mi / params.bc1) / (sqrt(vhat / params.bc2) + params.eps);
  p[i] = pi;
}

// m is the momentum buffer.
@compute @workgroup_size(WG)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(workgroup_id) wid: vec3<u32>) {
  let i = index(gid, nwg);
  if (i >= params.n) { return; }
  let h = lr_wd(i, wg_index(wid, nwg));
  if (h.x < 0.0) { return; }
  let pi = p[i];
  var d = clipped(i) + h.y * pi;
  if (MOMENTUM) {
    var b = d;
    if (params.first == 0u) { b = params.momentum * m[i] + (1.0 - params.dampening) * d; }
    m[i] = b;
    if (NESTEROV) { d = d + params.momentum * b; } else { d = b; }
  }
  p[i] = pi - h.x * d;
}
