/**
 * npm run bench [-- --sizes 128,256,512,1024] [--large] [--suites matmul,transb,dispatch,elementwise,norm,softmax,embedding,optim,lora,step,peers]
 *                [--f16] [--profile] [--dawn-polling] [--out file.json]
 * npm run bench -- --suites models [--model-rounds 5] [--profile]   (GPT-2 training steps against tfjs-webgpu; minutes on lavapipe)
 *
 * Prints one table (wall and GPU medians, GFLOP/s or GB/s) and writes
 * bench/results/<adapter>.json. Wall times of matmul rows include reading C back,
 * for ours and the peers alike; GPU times come from timestamp queries.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { GpuContext } from '../src/gpu/context.js';
import { KernelModule, type DType } from '../src/gpu/kernel.js';
import { createContext } from '../src/gpu/node.js';
import { copy, fill, transpose } from '../src/kernels/elementwise.js';
import { dropout, uniform } from '../src/kernels/random.js';
import { matmul, matmulConfig, MATMUL_VERSIONS, type MatmulVersion, matmulVersionUnfit, pickMatmulVersion, transposedBPlan, transposedBPlans } from '../src/kernels/matmul.js';
import { sum } from '../src/kernels/reduce.js';
import { ParamArena } from '../src/optim/arena.js';
import { AdamW, SGD } from '../src/kernels/optim.js';
import { median, printTable, type Row, wallTime } from './lib.js';
import { chunkedSuite } from './chunked.js';
import { embeddingSuite, normSuite, softmaxSuite } from './kernels.js';
import { loraSuite, makeTimer } from './lora.js';
import { modelSuite } from './models.js';
import { jaxStep, stepRatioSuite, stepSuite, tfjsStep } from './step.js';
import { jaxMatmul, tfjsMatmul } from './peers.js';

const here = dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    sizes: { type: 'string', default: '128,256,512,1024' },
    large: { type: 'boolean', default: false },
    suites: { type: 'string', default: 'matmul,transb,dispatch,elementwise,norm,softmax,embedding,optim,lora,step,peers' },
    versions: { type: 'string', default: MATMUL_VERSIONS.join(',') },
    'max-time': { type: 'string', default: '1.5' },
    f16: { type: 'boolean', default: false },
    out: { type: 'string' },
    // Keep Dawn's own busy polling (no backoff) for the whole run, peers included.
    'dawn-polling': { type: 'boolean', default: false },
    // Print the GPU time of each dispatch of one LoRA training step.
    profile: { type: 'boolean', default: false },
    // Rounds of the interleaved step ratio against tfjs-webgpu (suites step and peers).
    'ratio-rounds': { type: 'string', default: '10' },
    // Rounds of the model suite (each times every configuration once; a step takes seconds on lavapipe).
    'model-rounds': { type: 'string', default: '5' },
  },
});
const sizes = args.sizes!.split(',').map(Number);
if (args.large) sizes.push(2048, 4096);
const suites = new Set(args.suites!.split(','));
const maxTime = Number(args['max-time']);

async function gpuTime(ctx: GpuContext, encode: () => void, reps = 5): Promise<number | null> {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const ns = await ctx.timeGpu(encode);
    if (ns === null) return null;
    ts.push(ns / 1e6);
  }
  return median(ts);
}

async function matmulSuite(ctx: GpuContext, rows: Row[], dtype: DType): Promise<void> {
  const versions = args.versions!.split(',') as MatmulVersion[];
  for (const S of sizes) {
    const a = ctx.tensor(Float32Array.from({ length: S * S }, () => Math.random() - 0.5), [S, S], dtype);
    const b = ctx.tensor(Float32Array.from({ length: S * S }, () => Math.random() - 0.5), [S, S], dtype);
    const c = ctx.empty([S, S], dtype);
    const def = pickMatmulVersion(ctx, S, false);
    for (const version of versions) {
      // Versions this device or shape cannot run (regblock4sg without subgroups of >= 8 lanes).
      const unfit = matmulVersionUnfit(ctx, version, S, false);
      if (unfit) {
        console.error(`  matmul ${dtype} ${version} ${S}: skipped, ${unfit}`);
        continue;
      }
      // The naive version needs seconds per run past 1024 on a CPU adapter.
      if (version === 'naive' && S > 1024 && ctx.caps.software) continue;
      const encode = () => void matmul(ctx, a, b, { version, out: c });
      encode();
      await ctx.sync();
      const gpuMs = await gpuTime(ctx, encode);
      const wallMs = await wallTime(`matmul ${version} ${S}`, async () => {
        encode();
        await c.read();
      }, maxTime);
      rows.push({
        suite: `matmul ${dtype}`,
        name: `${version} ${S}^3${version === def ? ' (default)' : ''}`,
        work: { flops: 2 * S ** 3 },
        wallMs,
        gpuMs,
      });
      console.error(`  matmul ${dtype} ${version} ${S}: gpu ${gpuMs?.toFixed(2)} ms, wall ${wallMs.toFixed(2)} ms`);
    }
    for (const t of [a, b, c]) t.dispose();
  }
}

/**
 * x·Wᵀ with W [1024,1024] stored [N,K] (torch), by each plan for a transposed B (read in
 * place, W transposed first, or Cᵀ = W·xᵀ stored transposed), over the token counts where
 * the default plan changes.
 */
async function transposedBSuite(ctx: GpuContext, rows: Row[]): Promise<void> {
  const D = 1024;
  const W = ctx.tensor(Float32Array.from({ length: D * D }, () => Math.random() - 0.5), [D, D]);
  for (const M of [4, 8, 16, 32, 64, 96, 128, 512]) {
    const x = ctx.tensor(Float32Array.from({ length: M * D }, () => Math.random() - 0.5), [M, D]);
    const shape = { rows: M, N: D, K: D, transA: false, transB: true, bShared: true };
    const def = transposedBPlan(ctx, shape);
    const times = new Map<string, number>();
    try {
      for (const plan of transposedBPlans(ctx, shape)) {
        matmulConfig.transposedB = plan;
        const encode = () => ctx.scope(() => matmul(ctx, x, W, { transB: true }));
        const gpuMs = await gpuTime(ctx, () => void encode());
        const wallMs = await wallTime(`x·Wᵀ ${M} ${plan}`, () => encode().read(), Math.min(maxTime, 0.5));
        times.set(plan, gpuMs ?? wallMs);
        rows.push({ suite: 'matmul x·Wᵀ', name: `M=${M}, ${plan}${plan === def ? ' (default)' : ''}`, work: { flops: 2 * M * D * D }, wallMs, gpuMs });
      }
    } finally {
      matmulConfig.transposedB = 'auto';
    }
    const best = [...times].sort((a, b) => a[1] - b[1])[0]!;
    console.error(`  x·Wᵀ M=${M}: ${[...times].map(([k, v]) => `${k} ${v.toFixed(2)} ms`).join(', ')}; default ${def}, fastest ${best[0]}`);
    x.dispose();
  }
  W.dispose();
}

/**
 * AdamW over many small tensors (the A and B of 32 LoRA layers, r = 8, 1024 wide): a dispatch
 * per tensor, against the same tensors as windows of one ParamArena (gradients copied into
 * the optimizer's gradient arena, then one dispatch). Wall time of encode + submit + wait:
 * timestamps would not see the copies.
 */
async function optimizerSuite(ctx: GpuContext, rows: Row[]): Promise<void> {
  const shapes = Array.from({ length: 64 }, (_, i) => (i % 2 ? [1024, 8] : [8, 1024]));
  const n = shapes.length * 8192;
  const grads = shapes.map((s) => fill(ctx, ctx.empty(s), 0.01));
  const separate = shapes.map((s) => fill(ctx, ctx.empty(s), 0));
  const arena = new ParamArena(ctx, shapes);
  const ms: number[] = [];
  for (const [name, params] of [
    ['AdamW, 64 tensors of 8K, a dispatch each', separate],
    ['AdamW, the same 64 in a ParamArena (one dispatch)', arena.params],
  ] as const) {
    const opt = new AdamW(ctx, params.map((p, i) => ({ params: p, grads: grads[i] })), { lr: 1e-3, maxGradNorm: 1 });
    opt.step();
    await ctx.sync();
    const wallMs = await wallTime(name, async () => {
      opt.step();
      await ctx.sync();
    }, maxTime);
    ms.push(wallMs);
    rows.push({ suite: 'optimizer', name: `${name}, clipped`, work: { bytes: 7 * n * 4 }, wallMs, gpuMs: null, note: ms.length === 2 ? `${(ms[0]! / ms[1]!).toFixed(1)}× faster than a dispatch each` : '' });
    opt.dispose();
  }
  arena.dispose();
  for (const t of [...grads, ...separate]) t.dispose();
  // One 8M-parameter tensor: AdamW reads p, g, m, v and writes p, m, v (7 words per
  // parameter); SGD reads p, g (and the momentum buffer) and writes p (and it): 3 or 5 words.
  const big = 8 * 1024 * 1024;
  const timer = makeTimer(ctx, 'optimizer', maxTime);
  const p = fill(ctx, ctx.empty([big]), 0.5);
  const g = fill(ctx, ctx.empty([big]), 0.01);
  for (const [name, opt, words] of [
    ['AdamW step, 8M params', new AdamW(ctx, [{ params: p, grads: g }], { lr: 1e-3 }), 7],
    ['SGD step, 8M params', new SGD(ctx, [{ params: p, grads: g }], { lr: 1e-3 }), 3],
    ['SGD step, momentum 0.9, 8M params', new SGD(ctx, [{ params: p, grads: g }], { lr: 1e-3, momentum: 0.9 }), 5],
  ] as const) {
    opt.step(); // the momentum buffer exists from the second step on
    rows.push(await timer(name, () => opt.step(), { bytes: words * big * 4 }));
    opt.dispose();
  }
  p.dispose();
  g.dispose();
}

async function dispatchSuite(ctx: GpuContext, rows: Row[]): Promise<void> {
  const mod = KernelModule.get('noop.wgsl', readFileSync(join(here, 'noop.wgsl'), 'utf8'));
  const out = ctx.empty([64]);
  const noop = () => ctx.dispatch(mod, 'noop', { bindings: { out }, params: { n: 1 << 30 }, workgroups: [1] });
  noop();
  await ctx.sync();
  const N = 500;
  const onePass = await wallTime('noop x500 one submit', async () => {
    for (let i = 0; i < N; i++) noop();
    await ctx.sync();
  }, maxTime);
  const eachSubmit = await wallTime('noop x100 submit each', async () => {
    for (let i = 0; i < 100; i++) {
      noop();
      ctx.flush();
    }
    await ctx.sync();
  }, maxTime);
  const roundTrip = await wallTime('noop submit and wait', async () => {
    noop();
    await ctx.sync();
  }, maxTime);
  rows.push({ suite: 'dispatch', name: 'no-op, 500 in one submit (per dispatch)', wallMs: onePass / N, gpuMs: null });
  rows.push({ suite: 'dispatch', name: 'no-op, a submit each (per dispatch)', wallMs: eachSubmit / 100, gpuMs: null });
  rows.push({ suite: 'dispatch', name: 'no-op, submit-and-wait round trip', wallMs: roundTrip, gpuMs: null });
  out.dispose();
}

async function elementwiseSuite(ctx: GpuContext, rows: Row[]): Promise<void> {
  const n = 8 * 1024 * 1024;
  const x = fill(ctx, ctx.empty([n]), 1);
  const y = ctx.empty([n]);
  const s = ctx.empty([1]);
  const cases: [string, () => void, number][] = [
    ['buffer copy (copyBufferToBuffer), 32 MiB', () => ctx.encoder().copyBufferToBuffer(x.buffer(), 0, y.buffer(), 0, n * 4), 2 * n * 4],
    ['copy kernel, 8M f32', () => void copy(ctx, x, y), 2 * n * 4],
    ['fill kernel, 8M f32', () => void fill(ctx, y, 2), n * 4],
    ['sum all, 8M f32', () => void sum(ctx, x, 'all', s), n * 4],
    ['uniform init (Philox), 8M f32', () => void uniform(ctx, y, { seed: 1, lo: -1, hi: 1 }), n * 4],
    ['dropout p=0.1 (Philox), 8M f32', () => void dropout(ctx, x, { seed: 1, p: 0.1 }, y), 2 * n * 4],
    ['transpose [2048,4096] f32', () => void transpose(ctx, x.view([2048, 4096]), y.view([4096, 2048])), 2 * n * 4],
  ];
  for (const [name, encode, bytes] of cases) {
    encode();
    await ctx.sync();
    // Copies are outside a compute pass, so timestamps do not see them: time them by wall clock.
    const isCopy = name.startsWith('buffer copy');
    const gpuMs = isCopy ? null : await gpuTime(ctx, encode);
    const wallMs = await wallTime(name, async () => {
      encode();
      await ctx.sync();
    }, maxTime);
    rows.push({ suite: 'memory', name, work: { bytes }, wallMs, gpuMs });
  }
  for (const t of [x, y, s]) t.dispose();
}

async function main(): Promise<void> {
  const ctx = await createContext(args['dawn-polling'] ? { pollBackoff: false } : {});
  const caps = ctx.caps;
  const adapter = caps.adapter.description || `${caps.adapter.vendor} ${caps.adapter.device}`;
  console.log(`adapter: ${adapter}; software: ${caps.software}; f16: ${caps.f16}; subgroups: ${caps.subgroups}; timestamps: ${caps.timestampQuery}`);
  // The backoff is process-wide: peers in this run wait on Dawn the same way we do.
  console.log(`Dawn polling: ${args['dawn-polling'] ? "Dawn's own (a busy setImmediate loop)" : 'webgpu-lora backoff (0.5 ms spin, then 0.1 ms sleeps)'}`);
  const rows: Row[] = [];
  if (suites.has('dispatch')) await dispatchSuite(ctx, rows);
  if (suites.has('matmul')) {
    await matmulSuite(ctx, rows, 'f32');
    if (args.f16 && caps.f16) await matmulSuite(ctx, rows, 'f16');
  }
  if (suites.has('transb')) await transposedBSuite(ctx, rows);
  if (suites.has('elementwise')) await elementwiseSuite(ctx, rows);
  if (suites.has('norm')) await normSuite(ctx, rows, maxTime);
  if (suites.has('softmax')) await softmaxSuite(ctx, rows, maxTime);
  if (suites.has('embedding')) await embeddingSuite(ctx, rows, maxTime);
  if (suites.has('optim')) await optimizerSuite(ctx, rows);
  // Not in the default suites: it allocates about 1.3 GB (a parameter set past one storage binding).
  if (suites.has('chunked')) await chunkedSuite(ctx, rows, maxTime);
  if (suites.has('lora')) await loraSuite(ctx, rows, maxTime);
  if (suites.has('step')) await stepSuite(ctx, rows, maxTime, args.profile);
  if (suites.has('models')) await modelSuite(ctx, rows, { rounds: Number(args['model-rounds']), roundTime: 0.5, tensRounds: 3, profile: args.profile! });
  if (suites.has('peers')) {
    const peers: [string, () => Promise<Row[]>][] = [
      ['tfjs-webgpu', () => tfjsMatmul(sizes, maxTime)],
      ['jax-js', () => jaxMatmul(sizes, maxTime)],
    ];
    if (suites.has('step')) {
      peers.push(['tfjs-webgpu step', () => tfjsStep(maxTime)]);
      peers.push(['jax-js step', () => jaxStep(maxTime)]);
      peers.push(['jax-js wasm step', () => jaxStep(maxTime, 'wasm')]);
      peers.push(['tfjs-wasm step', () => tfjsStep(maxTime, 'wasm')]);
      peers.push(['step ratio', () => stepRatioSuite(ctx, Number(args['ratio-rounds']), 0.5)]);
    }
    for (const [name, peer] of peers) {
      try {
        rows.push(...(await peer()));
      } catch (e) {
        console.error(`peer ${name} failed: ${(e as Error).message}`);
        rows.push({ suite: 'matmul f32', name: `${name} (failed)`, wallMs: NaN, gpuMs: null, note: (e as Error).message.slice(0, 80) });
      }
    }
  }
  printTable(rows);
  const slug = adapter.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60) || 'unknown';
  const file = args.out ?? join(here, 'results', `${slug}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(
    file,
    JSON.stringify({ adapter: caps.adapter, software: caps.software, date: new Date().toISOString(), node: process.version, dawnPolling: args['dawn-polling'] ? 'dawn' : 'backoff', sizes, rows }, null, 2) + '\n',
  );
  console.log(`wrote ${file}`);
  ctx.destroy();
  // Peers keep their own devices alive; the run is over.
  setTimeout(() => process.exit(0), 100);
}

await main();
