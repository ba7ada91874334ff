/**
 * Bench suites for the LoRA family: fused forward and backward against the base matmul
 * alone and the unfused path, masked gradients by frozen fraction, and lerp / merge
 * bandwidth against a buffer copy on the same device.
 */
import type { GpuContext } from '../src/gpu/context.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { add, transpose } from '../src/kernels/elementwise.js';
import { copy4, lerp } from '../src/kernels/lerp.js';
import { initLora, LoraLayer, loraBackward, loraForward, loraMerge, loraUnmerge } from '../src/kernels/lora.js';
import { GradMask, maskedGrad } from '../src/kernels/maskedGrad.js';
import { matmul } from '../src/kernels/matmul.js';
import { uniform } from '../src/kernels/random.js';
import { median, type Row, wallTime } from './lib.js';

export interface Timer {
  (name: string, encode: () => void, work?: Row['work'], note?: string): Promise<Row>;
}

/** Times `encode` (GPU timestamps and wall clock); temporaries made by `encode` are freed each run. */
export function makeTimer(ctx: GpuContext, suite: string, maxTime: number): Timer {
  return async (name, encode, work, note) => {
    const run = () => ctx.scope(() => void encode());
    run();
    await ctx.sync();
    const ts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const ns = await ctx.timeGpu(run);
      if (ns !== null) ts.push(ns / 1e6);
    }
    const wallMs = await wallTime(name, async () => {
      run();
      await ctx.sync();
    }, maxTime);
    const row: Row = { suite, name, work, wallMs, gpuMs: ts.length ? median(ts) : null, note };
    console.error(`  ${suite} ${name}: gpu ${row.gpuMs?.toFixed(2)} ms, wall ${wallMs.toFixed(2)} ms`);
    return row;
  };
}

function rand(ctx: GpuContext, shape: number[], seed: number, bound = 0.05): Tensor {
  return uniform(ctx, ctx.empty(shape), { seed, lo: -bound, hi: bound });
}

export async function loraSuite(ctx: GpuContext, rows: Row[], maxTime: number): Promise<void> {
  const M = 512;
  const K = 1024;
  const N = 1024;
  const r = 8;
  const t = makeTimer(ctx, 'lora', maxTime);
  const layer = new LoraLayer(ctx, { W: rand(ctx, [N, K], 1), rank: r, alpha: 16 });
  initLora(ctx, layer, { seed: 2 });
  uniform(ctx, layer.B, { seed: 3, lo: -0.05, hi: 0.05 });
  const x = rand(ctx, [M, K], 4, 1);
  const dy = rand(ctx, [M, N], 5, 1);
  const fwdFlops = 2 * M * K * N + 2 * M * K * r + 2 * M * r * N;
  const shape = `M=${M} K=${K} N=${N} r=${r}`;
  const base = await t(`base matmul x·Wᵀ, ${shape}`, () => matmul(ctx, x, layer.W, { transB: true }), { flops: 2 * M * K * N });
  const fused = await t(`fused forward, ${shape}`, () => loraForward(ctx, layer, x).y, { flops: fwdFlops });
  const unfused = await t(`unfused forward, skinny (x·Aᵀ, u·Bᵀ, x·Wᵀ, add), ${shape}`, () => {
    const u = matmul(ctx, x, layer.A, { transB: true });
    const low = matmul(ctx, u, layer.B, { transB: true, alpha: layer.scale });
    return add(ctx, matmul(ctx, x, layer.W, { transB: true }), low);
  }, { flops: fwdFlops });
  const materialised = await t(`unfused forward, B·A materialised (B·A, x·(BA)ᵀ, x·Wᵀ, add)`, () => {
    const BA = matmul(ctx, layer.B, layer.A, { alpha: layer.scale });
    return add(ctx, matmul(ctx, x, layer.W, { transB: true }), matmul(ctx, x, BA, { transB: true }));
  }, { flops: 2 * N * r * K + 4 * M * K * N });
  fused.note = `${(fused.gpuMs! / base.gpuMs!).toFixed(2)}× base, ${(fused.gpuMs! / unfused.gpuMs!).toFixed(2)}× skinny unfused, ${(fused.gpuMs! / materialised.gpuMs!).toFixed(2)}× B·A unfused`;
  rows.push(base, fused, unfused, materialised);
  // The same layer with W stored [K,N]: the base product needs no transpose.
  const layerKN = new LoraLayer(ctx, { W: transpose(ctx, layer.W), wLayout: 'KN', A: layer.A, B: layer.B, rank: r, alpha: 16 });
  const baseKN = await t(`base matmul x·W, W stored [K,N], ${shape}`, () => matmul(ctx, x, layerKN.W), { flops: 2 * M * K * N });
  const fusedKN = await t(`fused forward, W stored [K,N], ${shape}`, () => loraForward(ctx, layerKN, x).y, { flops: fwdFlops });
  fusedKN.note = `${(fusedKN.gpuMs! / baseKN.gpuMs!).toFixed(2)}× its base, ${(fusedKN.gpuMs! / fused.gpuMs!).toFixed(2)}× the [N,K] layer`;
  rows.push(baseKN, fusedKN);
  layerKN.W.dispose();

  const { saved } = loraForward(ctx, layer, x);
  const bwdFlops = 2 * M * N * r * 2 + 2 * M * r * K + 2 * M * N * K + 2 * M * r * K;
  const bf = await t(`fused backward with dx, ${shape}`, () => loraBackward(ctx, layer, saved!, dy, { needDx: true }), { flops: bwdFlops });
  const bu = await t(`unfused backward with dx, ${shape}`, () => {
    const dB = matmul(ctx, dy, saved!.u, { transA: true, alpha: layer.scale });
    const du = matmul(ctx, dy, layer.B, { alpha: layer.scale });
    const dA = matmul(ctx, du, x, { transA: true });
    const dx = add(ctx, matmul(ctx, dy, layer.W), matmul(ctx, du, layer.A));
    return [dA, dB, dx];
  }, { flops: bwdFlops });
  const bn = await t(`fused backward, no dx (frozen input), ${shape}`, () => loraBackward(ctx, layer, saved!, dy), { flops: 2 * M * N * r * 2 + 2 * M * r * K });
  bf.note = `${(bf.gpuMs! / bu.gpuMs!).toFixed(2)}× unfused`;
  rows.push(bf, bu, bn);
  saved!.u.dispose();

  // Masked gradient dW = mask ⊙ dyᵀ·x by frozen fraction of W's rows.
  let freeMs = 0;
  for (const frozen of [0, 0.5, 0.9, 0.99]) {
    const trainRows = Math.max(1, Math.round(N * (1 - frozen)));
    const mask = new GradMask(ctx, [N, K], { rows: [[0, trainRows]] });
    const out = ctx.empty([N, K]);
    const row = await t(`masked dW, ${Math.round(frozen * 100)}% rows frozen`, () => maskedGrad(ctx, dy, x, mask, { out }), { flops: 2 * M * trainRows * K });
    if (frozen === 0) freeMs = row.gpuMs!;
    else row.note = `${(freeMs / row.gpuMs!).toFixed(1)}× faster than nothing frozen`;
    rows.push(row);
    out.dispose();
    mask.dispose();
  }

  // Bandwidth: lerp reads 2 and writes 1; merge reads W, B, A and writes W; copy reads 1, writes 1.
  const P = 4 * 1024 * 1024;
  const t0 = rand(ctx, [P], 6);
  const t1 = rand(ctx, [P], 7);
  const out = ctx.empty([P]);
  const copyRow = await t('buffer copy (copyBufferToBuffer), 16 MiB', () => ctx.encoder().copyBufferToBuffer(t0.buffer(), 0, out.buffer(), 0, P * 4), { bytes: 2 * P * 4 }, 'wall clock (copies have no timestamps)');
  copyRow.gpuMs = null;
  const copyK = await t('vec4 copy kernel, 4M f32', () => copy4(ctx, t0, out), { bytes: 2 * P * 4 });
  const lerpRow = await t('lerp, 4M f32', () => lerp(ctx, t0, t1, 0.5, out), { bytes: 3 * P * 4 });
  const merge = await t(`merge+unmerge W ± s·B·A, [${N},${K}] r=${r}`, () => {
    loraMerge(ctx, layer);
    loraUnmerge(ctx, layer);
  }, { bytes: 2 * 2 * N * K * 4 });
  // The same merge on a W of the copies' size (4M elements): a 1M-element W pays the fixed
  // per-dispatch cost (~0.1 ms on lavapipe) on a quarter of the bytes.
  const big = new LoraLayer(ctx, { W: rand(ctx, [2048, 2048], 8), rank: r, alpha: 16 });
  initLora(ctx, big, { seed: 9 });
  const mergeBig = await t(`merge+unmerge W ± s·B·A, [2048,2048] r=${r} (4M f32)`, () => {
    loraMerge(ctx, big);
    loraUnmerge(ctx, big);
  }, { bytes: 2 * 2 * P * 4 });
  const bw = (row: Row) => (row.work!.bytes! / (row.gpuMs ?? row.wallMs)) / 1e6;
  for (const row of [lerpRow, merge, mergeBig]) {
    row.note = `${((100 * bw(row)) / bw(copyRow)).toFixed(0)}% of buffer copy, ${((100 * bw(row)) / bw(copyK)).toFixed(0)}% of copy kernel`;
  }
  rows.push(copyRow, copyK, lerpRow, merge, mergeBig);
  for (const tt of [t0, t1, out, x, dy, layer.W, layer.A, layer.B, big.W, big.A, big.B]) tt.dispose();
}
