/**
 * The LoRA-layer training step (issue target): batch 64, 1024 -> 1024, r = 8, AdamW, only A
 * and B trainable, MSE to a fixed target, in steps/s; ours with W stored [N,K] (torch) and
 * [K,N], and tfjs-webgpu running the same step on the same Dawn adapter. Each timed step ends
 * with the loss read back, for both.
 */
import { loraLinear, mse } from '../src/autograd/ops.js';
import { backward, grad, requiresGrad, zeroGrad } from '../src/autograd/tape.js';
import type { GpuContext } from '../src/gpu/context.js';
import { transpose } from '../src/kernels/elementwise.js';
import { initLora, LoraLayer, type WeightLayout } from '../src/kernels/lora.js';
import { uniform } from '../src/kernels/random.js';
import { AdamW } from '../src/kernels/optim.js';
import type { Row } from './lib.js';
import { median, wallTime } from './lib.js';
import { loadJaxWebgpu, loadTfjs } from './peers.js';

const [B, D, R] = [64, 1024, 8];
const FLOPS = 2 * B * D * D + 2 * B * D * R * 4 + 2 * B * D * R; // forward, dA/dB/du, u

/** Our LoRA step with W stored `layout`: `step` runs one (loss read back), `encodeStep` encodes one. */
function ourStep(ctx: GpuContext, layout: WeightLayout) {
  const W0 = uniform(ctx, ctx.empty([D, D]), { seed: 1, lo: -0.03, hi: 0.03 });
  const W = layout === 'KN' ? transpose(ctx, W0) : W0;
  const layer = new LoraLayer(ctx, { W, wLayout: layout, rank: R, alpha: 16 });
  initLora(ctx, layer, { seed: 2 });
  requiresGrad(layer.A);
  requiresGrad(layer.B);
  const x = uniform(ctx, ctx.empty([B, D]), { seed: 3, lo: -1, hi: 1 });
  const target = uniform(ctx, ctx.empty([B, D]), { seed: 4, lo: -1, hi: 1 });
  const opt = new AdamW(ctx, [{ params: layer.A }, { params: layer.B }], { lr: 1e-3 });
  // One training step, encoded (not submitted); returns the loss.
  const encodeStep = () =>
    ctx.scope(() => {
      const l = mse(ctx, loraLinear(ctx, x, layer), target);
      backward(ctx, l);
      opt.step(1, [grad(layer.A), grad(layer.B)]);
      zeroGrad([layer.A, layer.B]);
      return l;
    });
  const step = async () => {
    const loss = encodeStep();
    await loss.read();
    loss.dispose();
  };
  // Ten steps, the loss read after the last only (as a loop that logs every ten steps): each
  // step is submitted as it is encoded, so encoding overlaps the GPU's work on the one before.
  const tenSteps = async () => {
    for (let i = 0; i < 9; i++) {
      encodeStep().dispose();
      ctx.flush();
    }
    await step();
  };
  const dispose = () => {
    opt.dispose();
    for (const t of new Set([W0, W, layer.A, layer.B, x, target])) t.dispose();
  };
  return { step, tenSteps, encodeStep, dispose };
}

const layoutName = (layout: WeightLayout) => `W stored ${layout === 'NK' ? '[N,K] (torch)' : '[K,N]'}`;

export async function stepSuite(ctx: GpuContext, rows: Row[], maxTime: number, profile = false): Promise<void> {
  for (const layout of ['NK', 'KN'] as WeightLayout[]) {
    const { step, encodeStep, dispose } = ourStep(ctx, layout);
    await step();
    const submits = ctx.stats.submits;
    await step();
    const perStep = ctx.stats.submits - submits;
    const ms = await wallTime(`lora step ${layout}`, step, maxTime);
    if (profile) await printProfile(ctx, layout, encodeStep);
    rows.push({
      suite: 'lora step',
      name: `webgpu-lora, ${layoutName(layout)}`,
      work: { flops: FLOPS },
      wallMs: ms,
      gpuMs: null,
      note: `${(1000 / ms).toFixed(1)} steps/s, ${perStep} submit per step`,
    });
    console.error(`  lora step ${layout}: ${(1000 / ms).toFixed(1)} steps/s`);
    dispose();
  }
}

/** Where one step's GPU time goes: each dispatch in a pass of its own (ctx.profile), median of 5. */
async function printProfile(ctx: GpuContext, layout: WeightLayout, body: () => { dispose(): void }): Promise<void> {
  const runs: { kernel: string; workgroups: number[]; ns: number }[][] = [];
  for (let i = 0; i < 5; i++) {
    let loss: { dispose(): void } | undefined;
    const p = await ctx.profile(() => {
      loss = body();
    });
    loss?.dispose();
    if (!p) {
      console.error('  profile: this adapter has no timestamp-query');
      return;
    }
    runs.push(p);
  }
  console.error(`  one step, ${layoutName(layout)}, GPU ms per dispatch (median of 5):`);
  let total = 0;
  runs[0]!.forEach((d, i) => {
    const ms = runs.map((r) => r[i]!.ns / 1e6).sort((a, b) => a - b)[2]!;
    total += ms;
    console.error(`    ${d.kernel.padEnd(36)} ${JSON.stringify(d.workgroups).padEnd(14)} ${ms.toFixed(3)}`);
  });
  console.error(`    ${'total'.padEnd(51)} ${total.toFixed(3)} (${runs[0]!.length} dispatches)`);
}

/** tfjs's same step (on whichever backend `tf` runs): W [N,K] used as x·Wᵀ, or pre-transposed [K,N] (`pre`). */
function tfjsStepOf(tf: Awaited<ReturnType<typeof loadTfjs>>, pre: boolean) {
  const W = tf.randomUniform([D, D], -0.03, 0.03);
  const A = tf.variable(tf.randomUniform([R, D], -1 / 32, 1 / 32));
  const Bv = tf.variable(tf.zeros([D, R]));
  const x = tf.randomUniform([B, D], -1, 1);
  const target = tf.randomUniform([B, D], -1, 1);
  const opt = tf.train.adam(1e-3);
  const s = 16 / R;
  const encodeStep = () =>
    opt.minimize(() => {
      const base = tf.matMul(x, W, false, !pre);
      const low = tf.matMul(tf.matMul(x, A, false, true), Bv, false, true).mul(s);
      return tf.losses.meanSquaredError(target, base.add(low)) as ReturnType<typeof tf.scalar>;
    }, true, [A, Bv])!;
  const step = async () => {
    const cost = encodeStep();
    await cost.data();
    cost.dispose();
  };
  const tenSteps = async () => {
    for (let i = 0; i < 9; i++) encodeStep().dispose();
    await step();
  };
  const dispose = () => {
    for (const t of [W, A, Bv, x, target]) t.dispose();
    opt.dispose();
  };
  return { step, tenSteps, dispose };
}

/** tfjs's step on its WebGPU backend (our Dawn adapter), or on its Wasm backend (the CPU, for scale). */
export async function tfjsStep(maxTime: number, backend: 'webgpu' | 'wasm' = 'webgpu'): Promise<Row[]> {
  const tf = await loadTfjs(backend);
  const rows: Row[] = [];
  for (const pre of [false, true]) {
    const { step, dispose } = tfjsStepOf(tf, pre);
    await step();
    const ms = await wallTime(`tfjs ${backend} step ${pre}`, step, maxTime);
    rows.push({
      suite: 'lora step',
      name: `tfjs-${backend}${pre ? ', W pre-transposed' : ''}${backend === 'wasm' ? ' (CPU backend)' : ''}`,
      work: { flops: FLOPS },
      wallMs: ms,
      gpuMs: null,
      note: `${(1000 / ms).toFixed(1)} steps/s (peer)`,
    });
    dispose();
  }
  return rows;
}

/**
 * Our step against tfjs-webgpu's, interleaved: `rounds` rounds, each timing both (in
 * alternating order) for `roundTime` s, and the ratio of their steps/s taken within the
 * round. The machine's speed drifts between runs and within one; sequential suites put
 * minutes between the two measurements, a round puts a second.
 */
export async function stepRatioSuite(ctx: GpuContext, rounds: number, roundTime: number): Promise<Row[]> {
  const tf = await loadTfjs();
  const rows: Row[] = [];
  const pairs: [WeightLayout, boolean, boolean, string][] = [
    ['NK', false, false, 'both given W [N,K]: x·Wᵀ'],
    ['KN', true, false, 'both given W [K,N]: x·W'],
    ['NK', false, true, 'both given W [N,K], loss read every 10 steps'],
  ];
  for (const [layout, pre, tens, what] of pairs) {
    const ours = ourStep(ctx, layout);
    const peer = tfjsStepOf(tf, pre);
    const [runOurs, runPeer] = tens ? [ours.tenSteps, peer.tenSteps] : [ours.step, peer.step];
    const per = tens ? 10 : 1;
    await runOurs();
    await runPeer();
    const ratios: number[] = [];
    const oursMs: number[] = [];
    const peerMs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const first = r % 2 === 0;
      const a = await wallTime(`ratio ${what} ${r} ${first ? 'ours' : 'tfjs'}`, first ? runOurs : runPeer, roundTime);
      const b = await wallTime(`ratio ${what} ${r} ${first ? 'tfjs' : 'ours'}`, first ? runPeer : runOurs, roundTime);
      const [o, p] = first ? [a, b] : [b, a];
      oursMs.push(o / per);
      peerMs.push(p / per);
      ratios.push(p / o);
    }
    ours.dispose();
    peer.dispose();
    const sorted = [...ratios].sort((x, y) => x - y);
    rows.push({
      suite: 'lora step ratio',
      name: `webgpu-lora / tfjs-webgpu, ${what}`,
      work: { flops: FLOPS },
      wallMs: median(oursMs),
      gpuMs: null,
      note: `${median(ratios).toFixed(2)}× (rounds ${sorted[0]!.toFixed(2)}–${sorted[sorted.length - 1]!.toFixed(2)}, ${rounds}); ${(1000 / median(oursMs)).toFixed(1)} vs ${(1000 / median(peerMs)).toFixed(1)} steps/s`,
    });
    console.error(`  step ratio, ${what}: median ${median(ratios).toFixed(2)}× over ${rounds} rounds [${ratios.map((x) => x.toFixed(2)).join(', ')}]`);
  }
  return rows;
}

/**
 * jax-js on WebGPU, the same step under one jit: valueAndGrad of the loss in A and B, then Adam
 * (bias-corrected, as ours) written with jax-js array ops inside the jitted function. W is
 * [N,K] and used as x·Wᵀ, as in the torch-layout row.
 */
export async function jaxStep(maxTime: number, device: 'webgpu' | 'wasm' = 'webgpu'): Promise<Row[]> {
  const jax = await loadJaxWebgpu();
  // The CPU backend too, for scale: a 2-core CPU runs this small step faster through Wasm SIMD
  // than through a software WebGPU adapter.
  jax.defaultDevice(device);
  const np = jax.numpy;
  type Arr = ReturnType<typeof np.zeros>;
  type AB = { A: Arr; B: Arr };
  const rnd = (n: number, a: number) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * a);
  const W = np.array(rnd(D * D, 0.03)).reshape([D, D]);
  const x = np.array(rnd(B * D, 1)).reshape([B, D]);
  const target = np.array(rnd(B * D, 1)).reshape([B, D]);
  let params: AB = { A: np.array(rnd(R * D, 1 / 32)).reshape([R, D]), B: np.zeros([D, R]) };
  let m: AB = { A: np.zeros([R, D]), B: np.zeros([D, R]) };
  let v: AB = { A: np.zeros([R, D]), B: np.zeros([D, R]) };
  const s = 16 / R;
  const [lr, b1, b2, eps] = [1e-3, 0.9, 0.999, 1e-8];
  // jax-js arrays are moved into every call; `.ref` keeps one for a later use.
  const loss = (p: AB, x: Arr, W: Arr, t: Arr) => {
    const base = np.matmul(x.ref, W.transpose());
    const low = np.matmul(np.matmul(x, p.A.transpose()), p.B.transpose()).mul(s);
    return np.square(base.add(low).sub(t)).mean();
  };
  const step = jax.jit((p: AB, m: AB, v: AB, c1: Arr, c2: Arr, x: Arr, W: Arr, t: Arr) => {
    const [l, g] = jax.valueAndGrad(loss)({ A: p.A.ref, B: p.B.ref }, x, W, t) as [Arr, AB];
    const next = { p: {} as AB, m: {} as AB, v: {} as AB };
    for (const k of ['A', 'B'] as const) {
      const mk = m[k].mul(b1).add(g[k].ref.mul(1 - b1));
      const vk = v[k].mul(b2).add(np.square(g[k]).mul(1 - b2));
      const upd = mk.ref.mul(c1.ref).div(np.sqrt(vk.ref.mul(c2.ref)).add(eps)).mul(lr);
      next.p[k] = p[k].sub(upd);
      next.m[k] = mk;
      next.v[k] = vk;
    }
    c1.dispose();
    c2.dispose();
    return [l, next.p, next.m, next.v];
  });
  let t = 0;
  const run = async () => {
    t++;
    const [l, p2, m2, v2] = step(params, m, v, np.array([1 / (1 - b1 ** t)]), np.array([1 / (1 - b2 ** t)]), x.ref, W.ref, target.ref) as [Arr, AB, AB, AB];
    params = p2;
    m = m2;
    v = v2;
    await l.data();
  };
  await run();
  const ms = await wallTime(`jax-js ${device} step`, run, maxTime);
  for (const a of [W, x, target, params.A, params.B, m.A, m.B, v.A, v.B]) a.dispose();
  return [
    {
      suite: 'lora step',
      name: `jax-js ${device}, jit${device === 'wasm' ? ' (CPU backend)' : ''}`,
      work: { flops: FLOPS },
      wallMs: ms,
      gpuMs: null,
      note: `${(1000 / ms).toFixed(1)} steps/s (peer)`,
    },
  ];
}
