// lerp.wgsl — weight interpolation (WiSE-FT): θ = (1 − α)·θ0 + α·θ1, computed in f32 as
// fma(α, θ1, (1 − α)·θ0) so that α = 0 gives θ0 and α = 1 gives θ1 exactly, over flat
// parameter arenas viewed as vec4s.
//
// θ0, θ1, out: [n] (n4 = ceil(n/4) vec4s; the launcher binds tensors rounded up to 16 bytes,
// so the last vec4 may read and write a tensor's padding, never another tensor).
// Each workgroup handles a contiguous chunk of per·WG vec4s with lanes interleaved, which
// keeps a CPU adapter's SIMD loads contiguous and amortises the per-invocation cost. `per` is
// a runtime value: as an override constant the loop is unrolled, which llvmpipe ran 3× slower.
//
// Entries: lerp (into out), lerp_inplace (θ0 ← θ), copy4 (out = θ0, the bandwidth baseline).
alias T = f32;

struct Params {
  n4: u32,
  alpha: f32,
  per: u32,
}

const WG = 64u;

@group(0) @binding(0) var<storage, read> theta0: array<vec4<T>>;
@group(0) @binding(1) var<storage, read> theta1: array<vec4<T>>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<T>>;
@group(0) @binding(3) var<storage, read_write> acc: array<vec4<T>>;
@group(0) @binding(4) var<uniform> params: Params;

fn blend(t0: vec4<f32>, t1: vec4<f32>) -> vec4<f32> {
  return fma(vec4<f32>(params.alpha), t1, vec4<f32>(1.0 - params.alpha) * t0);
}

fn chunk_base(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.x + wid.y * nwg.x) * params.per * WG + lid.x;
}

@compute @workgroup_size(WG)
fn lerp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk_base(wid, nwg, lid);
  for (var j = 0u; j < params.per; j++) {
    let i = base + j * WG;
    if (i < params.n4) {
      out[i] = vec4<T>(blend(vec4<f32>(theta0[i]), vec4<f32>(theta1[i])));
    }
  }
}

@compute @workgroup_size(WG)
fn lerp_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk_base(wid, nwg, lid);
  for (var j = 0u; j < params.per; j++) {
    let i = base + j * WG;
    if (i < params.n4) {
      acc[i] = vec4<T>(blend(vec4<f32>(acc[i]), vec4<f32>(theta1[i])));
    }
  }
}

// A plain vec4 copy with the same chunking: the shader-side bandwidth baseline for lerp.
@compute @workgroup_size(WG)
fn copy4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let base = chunk_base(wid, nwg, lid);
  for (var j = 0u; j < params.per; j++) {
    let i = base + j * WG;
    if (i < params.n4) { out[i] = theta0[i]; }
  }
}
