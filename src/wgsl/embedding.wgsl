// embedding.wgsl — token embedding lookup and its gradient, f32 table [V, D].
//
// The token ids come from the CPU (a tokenizer), so the launcher also builds, once per batch,
// the list of positions of each distinct id (CSR: `starts`, `positions`). That makes the
// backward a deterministic gather instead of a scatter with float atomics (WGSL has none):
//   embedding_gather:   out[t, :] = table[ids[t], :]                  (one workgroup per token)
//   embedding_backward: dtable[u_k, :] = Σ_{t in positions of u_k} dy[t, :]
//                        (one workgroup per distinct id; rows of other ids are left as they are,
//                         the launcher zero-fills them first)
// `aux` holds, as u32: ids [T] at 0, unique ids [U] at `uniq`, starts [U+1] at `starts`,
// positions [T] at `pos`.
struct Params {
  tokens: u32,
  dim: u32,
  unique: u32,
  uniq: u32,
  starts: u32,
  pos: u32,
}

const WG = 64u;

@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn embedding_gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= params.tokens) { return; }
  let src = aux[t] * params.dim;
  let dst = t * params.dim;
  for (var d = lid.x; d < params.dim; d += WG) { out[dst + d] = table[src + d]; }
}

@compute @workgroup_size(WG)
fn embedding_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let k = wid.x + wid.y * nwg.x;
  if (k >= params.unique) { return; }
  let row = aux[params.uniq + k] * params.dim;
  let s0 = aux[params.starts + k];
  let s1 = aux[params.starts + k + 1u];
  for (var d = lid.x; d < params.dim; d += WG) {
    var acc = 0.0;
    for (var s = s0; s < s1; s++) { acc += dy[aux[params.pos + s] * params.dim + d]; }
    out[row + d] = acc;
  }
}
