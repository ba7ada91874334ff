// random.wgsl — counter-based random numbers (Philox4x32-10), reproducible by seed.
//
// Element i draws from philox(counter = (i, offset, stream, 0), key = seed): the same
// (seed, offset) gives the same numbers on every device and on the CPU reference
// (src/kernels/random.ref.ts), so a dropout mask can be regenerated in backward
// instead of stored.
//
// Entries:
//   rand_uniform  out[i] = lo + (hi − lo)·u,   u ∈ (0, 1) from the top 24 bits of word 0
//   rand_normal   out[i] = mean + std·z,       z from Box–Muller on words 0 and 1
//   dropout       out[i] = x[i]·keep/(1 − p),  keep = u ≥ p (PEFT's lora_dropout, inverted scaling)
//   philox_words  the raw generator: case i reads counter (4 words) and key (2) from
//                 kat_in[6i..6i+6) and writes the 4 output words to kat_out[4i..4i+4), so tests
//                 compare the GPU's Philox with Random123's known-answer vectors bit for bit
alias T = f32;

struct Params {
  n: u32,
  seedLo: u32,
  seedHi: u32,
  offset: u32,
  a: f32,  // lo, mean, or p
  b: f32,  // hi or std
}

const WG = 256u;

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> kat_in: array<u32>;
@group(0) @binding(4) var<storage, read_write> kat_out: array<u32>;

// High and low 32 bits of a·b, from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let p00 = a0 * b0;
  let p01 = a0 * b1;
  let p10 = a1 * b0;
  let p11 = a1 * b1;
  let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
  let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
  return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
  var c = counter;
  var k = key;
  for (var r = 0u; r < 10u; r++) {
    let p0 = mulhilo(0xD2511F53u, c.x);
    let p1 = mulhilo(0xCD9E8D57u, c.z);
    c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
  }
  return c;
}

fn draw(i: u32) -> vec4<u32> {
  return philox(vec4<u32>(i, params.offset, 0u, 0u), vec2<u32>(params.seedLo, params.seedHi));
}

// A uniform in (0, 1): never 0, so log() in Box–Muller is finite.
fn to_unit(w: u32) -> f32 {
  return (f32(w >> 8u) + 0.5) * (1.0 / 16777216.0);
}

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(WG)
fn rand_uniform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  out[i] = T(params.a + (params.b - params.a) * to_unit(draw(i).x));
}

@compute @workgroup_size(WG)
fn rand_normal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  let w = draw(i);
  let z = sqrt(-2.0 * log(to_unit(w.x))) * cos(6.283185307179586 * to_unit(w.y));
  out[i] = T(params.a + params.b * z);
}

@compute @workgroup_size(WG)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  let keep = to_unit(draw(i).x) >= params.a;
  out[i] = select(T(0.0), T(f32(x[i]) / (1.0 - params.a)), keep);
}

// params.n cases; see the header.
@compute @workgroup_size(WG)
fn philox_words(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= params.n) { return; }
  let c = vec4<u32>(kat_in[6u * i], kat_in[6u * i + 1u], kat_in[6u * i + 2u], kat_in[6u * i + 3u]);
  let w = philox(c, vec2<u32>(kat_in[6u * i + 4u], kat_in[6u * i + 5u]));
  kat_out[4u * i] = w.x;
  kat_out[4u * i + 1u] = w.y;
  kat_out[4u * i + 2u] = w.z;
  kat_out[4u * i + 3u] = w.w;
}
