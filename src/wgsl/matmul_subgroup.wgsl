// matmul_subgroup.wgsl — the subgroup version of the matmul family (v1c, matmul_regblock4sg).
//
// Not a module of its own: the launcher compiles `enable subgroups;` + matmul.wgsl + this file,
// only on devices with the subgroups feature and subgroups of at least 8 lanes. It reuses
// matmul.wgsl's bindings, params, overrides, tile_of/a_index and finish_tile epilogue.
//
// Why it exists: llvmpipe (lavapipe) compiles every storage load whose address is not a
// constant as one scalar load per lane, each behind a bounds-check branch, so regblock4 pays
// 8 rows × 8 lanes scalar loads per k for A although its 8 lanes need the same 8 values. Here
// lane l of each subgroup loads row l % 8 of A once, and the lanes pass the values around with
// subgroupBroadcast (a register shuffle on a CPU adapter): A costs 8 loads per k per subgroup
// instead of 64. The saving pays for 16 rows per workgroup (two register tiles of 8), which
// halves B's loads per FMA. On lavapipe: 27–30 GFLOP/s at 512³ and 1024³ against regblock4's
// 17–18 (`npm run bench -- --suites matmul`); 30–43 in standalone sweeps, where 16 rows × 8
// columns per lane beat 8×8, 16×4, 16×12, 24×4 and 32×4/32×8.

// Eight rows of one register tile: row i's value of A comes from lane i of the subgroup.
// (subgroupBroadcast takes a constant lane, hence eight written-out steps.)
fn sg_rows_fma(acc0: ptr<function, array<vec4<f32>, 8>>, acc1: ptr<function, array<vec4<f32>, 8>>,
               v: f32, b0: vec4<f32>, b1: vec4<f32>) {
  var av = vec4<f32>(subgroupBroadcast(v, 0u));
  (*acc0)[0] = fma(av, b0, (*acc0)[0]); (*acc1)[0] = fma(av, b1, (*acc1)[0]);
  av = vec4<f32>(subgroupBroadcast(v, 1u));
  (*acc0)[1] = fma(av, b0, (*acc0)[1]); (*acc1)[1] = fma(av, b1, (*acc1)[1]);
  av = vec4<f32>(subgroupBroadcast(v, 2u));
  (*acc0)[2] = fma(av, b0, (*acc0)[2]); (*acc1)[2] = fma(av, b1, (*acc1)[2]);
  av = vec4<f32>(subgroupBroadcast(v, 3u));
  (*acc0)[3] = fma(av, b0, (*acc0)[3]); (*acc1)[3] = fma(av, b1, (*acc1)[3]);
  av = vec4<f32>(subgroupBroadcast(v, 4u));
  (*acc0)[4] = fma(av, b0, (*acc0)[4]); (*acc1)[4] = fma(av, b1, (*acc1)[4]);
  av = vec4<f32>(subgroupBroadcast(v, 5u));
  (*acc0)[5] = fma(av, b0, (*acc0)[5]); (*acc1)[5] = fma(av, b1, (*acc1)[5]);
  av = vec4<f32>(subgroupBroadcast(v, 6u));
  (*acc0)[6] = fma(av, b0, (*acc0)[6]); (*acc1)[6] = fma(av, b1, (*acc1)[6]);
  av = vec4<f32>(subgroupBroadcast(v, 7u));
  (*acc0)[7] = fma(av, b0, (*acc0)[7]); (*acc1)[7] = fma(av, b1, (*acc1)[7]);
}

// Rows of C per workgroup: two register tiles of RB_ROWS.
const SG_ROWS = 16u;

// As regblock4 (lane l owns the 8 contiguous columns n0 .. n0+7, B read as two vec4s; needs
// N % 4 == 0 and B not transposed), with 16 rows per workgroup and A shared through the subgroup.
@compute @workgroup_size(RB_LANES, 1, 1)
fn matmul_regblock4sg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                       @builtin(subgroup_invocation_id) sgLane: u32) {
  let z = wid.z;
  let tile = tile_of(wid);
  let m0 = tile.x * SG_ROWS;
  let n0 = (tile.y * RB_LANES + lid.x) * 8u;
  let baseA = z * params.strideA;
  let lastM = params.M - 1u;
  let lastN = params.N - 1u;
  let N4 = params.N / 4u;
  // The row of each tile whose A values this lane loads for its subgroup.
  let loadLo = min(m0 + (sgLane & 7u), lastM);
  let loadHi = min(m0 + 8u + (sgLane & 7u), lastM);
  let c0 = min(n0 / 4u, N4 - 1u);
  let c1 = min(n0 / 4u + 1u, N4 - 1u);
  var lo0: array<vec4<f32>, 8>;  // rows m0 .. m0+7, columns n0 .. n0+3
  var lo1: array<vec4<f32>, 8>;  // rows m0 .. m0+7, columns n0+4 .. n0+7
  var hi0: array<vec4<f32>, 8>;  // rows m0+8 .. m0+15
  var hi1: array<vec4<f32>, 8>;
  var rowB = z * params.strideB / 4u;
  for (var k = 0u; k < params.K; k++) {
    let b0 = vec4<f32>(b4[rowB + c0]);
    let b1 = vec4<f32>(b4[rowB + c1]);
    rowB += N4;
    sg_rows_fma(&lo0, &lo1, f32(a[a_index(baseA, loadLo, k)]), b0, b1);
    sg_rows_fma(&hi0, &hi1, f32(a[a_index(baseA, loadHi, k)]), b0, b1);
  }
  var cols: array<u32, 8>;
  for (var j = 0u; j < 8u; j++) { cols[j] = min(n0 + j, lastN); }
  // One finish_tile for both halves, in a loop the compiler cannot unroll (its count depends
  // on M): inlined twice, its epilogue made lavapipe's compile of a variant 2.5× as long.
  let halves = select(1u, 2u, m0 + RB_ROWS < params.M);
  for (var h = 0u; h < halves; h++) {
    if (h == 1u) {
      lo0 = hi0;
      lo1 = hi1;
    }
    let mh = m0 + h * RB_ROWS;
    var rows: array<u32, 8>;
    for (var i = 0u; i < RB_ROWS; i++) { rows[i] = min(mh + i, lastM); }
    finish_tile(&lo0, &lo1, z, mh, rows, cols, n0, 1u);
  }
}
