// noop.wgsl — an empty kernel: its cost is the per-dispatch overhead of the runtime and driver.
struct Params {
  n: u32,
}
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

@compute @workgroup_size(64)
fn noop(@builtin(global_invocation_id) gid: vec3<u32>) {
  // A store that never happens keeps the bindings alive in the compiled shader.
  if (gid.x > params.n) { out[0] = 0.0; }
}
