// lora.wgsl — merge and unmerge of a LoRA layer: W ← W + scale·B·A (scale = ±s), in place,
// without a B·A buffer.
//
// W [N,K] and A [r,K] are viewed as rows of vec4s (K % 4 == 0; the launcher falls back to the
// matmul family with β = 1 otherwise); B [N,r]. One invocation updates one vec4 of W: its row
// n comes from the workgroup, so B[n, j] is a uniform load, and lanes walk along K, so reads
// and writes of W and A are contiguous. Accumulates in f32.
alias T = f32;

struct Params {
  N: u32,
  K4: u32,
  rank: u32,
  scale: f32,
}

const WG = 64u;

@group(0) @binding(0) var<storage, read> a: array<vec4<T>>;
@group(0) @binding(1) var<storage, read> b: array<T>;
@group(0) @binding(2) var<storage, read_write> w: array<vec4<T>>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn lora_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = wid.y + wid.z * 65535u;
  let k4 = wid.x * WG + lid.x;
  if (n >= params.N || k4 >= params.K4) { return; }
  var acc = vec4<f32>(0.0);
  for (var j = 0u; j < params.rank; j++) {
    acc = fma(vec4<f32>(f32(b[n * params.rank + j])), vec4<f32>(a[j * params.K4 + k4]), acc);
  }
  let i = n * params.K4 + k4;
  w[i] = vec4<T>(fma(vec4<f32>(params.scale), acc, vec4<f32>(w[i])));
}
