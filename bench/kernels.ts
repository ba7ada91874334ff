/**
 * Bench suites, one per kernel family without a suite of its own: norm (LayerNorm / RMSNorm
 * forward and backward), softmax (softmax, log-softmax, causal softmax, cross-entropy, each
 * forward and backward) and embedding (gather and the per-id backward). Rates are GB/s of
 * the bytes each kernel must move (napkin math in each row), from GPU timestamp medians. The
 * norm and softmax suites also time the GPT-2 shapes of bench/models.ts on both row paths
 * (a workgroup per row, a lane per row) and note the speed-up.
 */
import type { GpuContext } from '../src/gpu/context.js';
import { fill } from '../src/kernels/elementwise.js';
import { embedding, embeddingBackward, TokenIds } from '../src/kernels/embedding.js';
import { layerNorm, normBackward, normConfig, type NormRowPath, rmsNorm } from '../src/kernels/norm.js';
import { uniform } from '../src/kernels/random.js';
import {
  crossEntropy,
  crossEntropyBackward,
  logSoftmax,
  logSoftmaxBackward,
  softmax,
  softmaxBackward,
  softmaxConfig,
  type SoftmaxRowPath,
} from '../src/kernels/softmax.js';
import type { Row } from './lib.js';
import { makeTimer } from './lora.js';

type Timer = ReturnType<typeof makeTimer>;

/**
 * One op on both row paths ('workgroup': a workgroup per row; 'lane': an invocation per row),
 * forced through `setPath`, timed in this process one after the other; the lane row's note
 * gives the speed-up (workgroup time / lane time) of the GPU medians and of benchmark.js's wall
 * medians.
 */
async function bothPaths(
  t: Timer,
  name: string,
  setPath: (p: 'auto' | NormRowPath | SoftmaxRowPath) => void,
  encode: () => unknown,
  work: { bytes: number },
): Promise<Row[]> {
  try {
    setPath('workgroup');
    const wg = await t(`${name}, workgroup per row`, encode, work);
    setPath('lane');
    const lane = await t(`${name}, lane per row`, encode, work);
    const gpu = wg.gpuMs !== null && lane.gpuMs !== null ? `gpu ${(wg.gpuMs / lane.gpuMs).toFixed(2)}×, ` : '';
    lane.note = `speed-up over workgroup per row: ${gpu}wall ${(wg.wallMs / lane.wallMs).toFixed(2)}×`;
    return [wg, lane];
  } finally {
    setPath('auto');
  }
}

/** The GPT-2 of bench/models.ts: 4 heads, batch 8 × 128 tokens, width 256. */
const GPT2 = { batch: 8, T: 128, heads: 4, width: 256 };

/** [8192, 1024] f32 rows: 32 MiB per tensor, 8192 workgroups (one per row). */
const R = 8192;
const C = 1024;
const n = R * C;
const word = 4;

export async function normSuite(ctx: GpuContext, rows: Row[], maxTime: number): Promise<void> {
  const t = makeTimer(ctx, 'norm', maxTime);
  const x = uniform(ctx, ctx.empty([R, C]), { seed: 1, lo: -2, hi: 3 });
  const dy = uniform(ctx, ctx.empty([R, C]), { seed: 2, lo: -1, hi: 1 });
  const gamma = fill(ctx, ctx.empty([C]), 1.5);
  const beta = fill(ctx, ctx.empty([C]), 0.25);
  const ln = layerNorm(ctx, x, gamma, beta);
  const rn = rmsNorm(ctx, x, gamma);
  const shape = `[${R},${C}] f32`;
  // Forward reads x and writes y; dx reads x, dy and writes dx; dγ/dβ read x and dy.
  rows.push(await t(`layerNorm forward, ${shape}`, () => layerNorm(ctx, x, gamma, beta), { bytes: 2 * n * word }));
  rows.push(await t(`layerNorm backward dx, ${shape}`, () => normBackward(ctx, 'layer', x, gamma, ln.stats, dy, { beta: true, needParams: false }), { bytes: 3 * n * word }));
  rows.push(await t(`layerNorm backward dγ, dβ, ${shape}`, () => normBackward(ctx, 'layer', x, gamma, ln.stats, dy, { beta: true, needDx: false }), { bytes: 2 * n * word }));
  rows.push(await t(`rmsNorm forward, ${shape}`, () => rmsNorm(ctx, x, gamma), { bytes: 2 * n * word }));
  rows.push(await t(`rmsNorm backward dx, ${shape}`, () => normBackward(ctx, 'rms', x, gamma, rn.stats, dy, { needParams: false }), { bytes: 3 * n * word }));
  rows.push(await t(`rmsNorm backward dγ, ${shape}`, () => normBackward(ctx, 'rms', x, gamma, rn.stats, dy, { needDx: false }), { bytes: 2 * n * word }));
  for (const tt of [x, dy, gamma, beta, ln.y, ln.stats, rn.y, rn.stats]) tt.dispose();

  // The GPT-2 LayerNorm, [batch·T, width]: both row paths (the default on a CPU adapter is the lane one).
  const gR = GPT2.batch * GPT2.T;
  const gC = GPT2.width;
  const gn = gR * gC;
  const setPath = (p: 'auto' | NormRowPath) => void (normConfig.rowPath = p);
  const gx = uniform(ctx, ctx.empty([gR, gC]), { seed: 11, lo: -2, hi: 3 });
  const gdy = uniform(ctx, ctx.empty([gR, gC]), { seed: 12, lo: -1, hi: 1 });
  const gg = fill(ctx, ctx.empty([gC]), 1.5);
  const gb = fill(ctx, ctx.empty([gC]), 0.25);
  const gln = layerNorm(ctx, gx, gg, gb);
  const gshape = `GPT-2 [${gR},${gC}]`;
  rows.push(...(await bothPaths(t, `layerNorm forward, ${gshape}`, setPath, () => layerNorm(ctx, gx, gg, gb), { bytes: 2 * gn * word })));
  rows.push(
    ...(await bothPaths(t, `layerNorm backward dx, ${gshape}`, setPath, () => normBackward(ctx, 'layer', gx, gg, gln.stats, gdy, { beta: true, needParams: false }), {
      bytes: 3 * gn * word,
    })),
  );
  for (const tt of [gx, gdy, gg, gb, gln.y, gln.stats]) tt.dispose();
}

export async function softmaxSuite(ctx: GpuContext, rows: Row[], maxTime: number): Promise<void> {
  const t = makeTimer(ctx, 'softmax', maxTime);
  const x = uniform(ctx, ctx.empty([R, C]), { seed: 3, lo: -4, hi: 4 });
  const dy = uniform(ctx, ctx.empty([R, C]), { seed: 4, lo: -1, hi: 1 });
  const y = softmax(ctx, x);
  const ly = logSoftmax(ctx, x);
  const labels = ctx.tensor(Array.from({ length: R }, (_, i) => (i * 7919) % C), [R]);
  const soft = uniform(ctx, ctx.empty([R, C]), { seed: 5, lo: 0, hi: 1 });
  const dLoss = ctx.tensor([1], [1]);
  const shape = `[${R},${C}] f32`;
  // softmax reads x twice (max and Σexp, then the output pass) and writes y: counted as 2 words.
  rows.push(await t(`softmax forward, ${shape}`, () => softmax(ctx, x), { bytes: 2 * n * word }));
  rows.push(await t(`softmax backward, ${shape}`, () => softmaxBackward(ctx, y, dy), { bytes: 3 * n * word }));
  rows.push(await t(`log-softmax forward, ${shape}`, () => logSoftmax(ctx, x), { bytes: 2 * n * word }));
  rows.push(await t(`log-softmax backward, ${shape}`, () => logSoftmaxBackward(ctx, ly, dy), { bytes: 3 * n * word }));
  // Causal attention scores [8, 1024, 1024]: the same 8M elements.
  const scores = x.view([8, C, C]);
  rows.push(await t(`causal softmax forward, [8,${C},${C}] f32`, () => softmax(ctx, scores, undefined, { causal: true }), { bytes: 2 * n * word }));
  for (const [name, target] of [['labels', { labels }], ['soft targets', { soft }]] as const) {
    // Forward reads the logits (and soft targets); backward reads them again and writes d logits.
    const extra = name === 'soft targets' ? n * word : 0;
    rows.push(await t(`cross-entropy forward, ${name}, ${shape}`, () => {
      const { loss, saved } = crossEntropy(ctx, x, target);
      saved.lse.dispose();
      saved.stats.dispose();
      return loss;
    }, { bytes: n * word + extra }));
    const { loss, saved } = crossEntropy(ctx, x, target);
    rows.push(await t(`cross-entropy backward, ${name}, ${shape}`, () => crossEntropyBackward(ctx, x, saved, dLoss), { bytes: 2 * n * word + extra }));
    for (const tt of [loss, saved.lse, saved.stats]) tt.dispose();
  }
  for (const tt of [x, dy, y, ly, labels, soft, dLoss]) tt.dispose();

  // The GPT-2 attention softmax, causal scores [batch·heads, T, T]: both row paths (the default
  // on a CPU adapter is the lane one).
  const { batch, heads, T } = GPT2;
  const gn = batch * heads * T * T;
  const setPath = (p: 'auto' | SoftmaxRowPath) => void (softmaxConfig.rowPath = p);
  const scoresG = uniform(ctx, ctx.empty([batch * heads, T, T]), { seed: 13, lo: -4, hi: 4 });
  const dyG = uniform(ctx, ctx.empty([batch * heads, T, T]), { seed: 14, lo: -1, hi: 1 });
  const yG = softmax(ctx, scoresG, undefined, { causal: true });
  const gshape = `GPT-2 [${batch * heads},${T},${T}]`;
  rows.push(...(await bothPaths(t, `causal softmax forward, ${gshape}`, setPath, () => softmax(ctx, scoresG, undefined, { causal: true }), { bytes: 2 * gn * word })));
  rows.push(...(await bothPaths(t, `softmax backward, ${gshape}`, setPath, () => softmaxBackward(ctx, yG, dyG), { bytes: 3 * gn * word })));
  for (const tt of [scoresG, dyG, yG]) tt.dispose();
}

export async function embeddingSuite(ctx: GpuContext, rows: Row[], maxTime: number): Promise<void> {
  const t = makeTimer(ctx, 'embedding', maxTime);
  const [V, D, T] = [32000, 1024, 8192];
  const table = uniform(ctx, ctx.empty([V, D]), { seed: 6, lo: -1, hi: 1 });
  const dy = uniform(ctx, ctx.empty([T, D]), { seed: 7, lo: -1, hi: 1 });
  // 8192 tokens over 4096 distinct ids (each id twice), and all distinct.
  for (const [what, ids] of [
    ['8192 distinct ids', Array.from({ length: T }, (_, i) => (i * 7919) % V)],
    ['4096 ids twice each', Array.from({ length: T }, (_, i) => ((i >> 1) * 7919) % V)],
  ] as const) {
    const tokens = new TokenIds(ctx, ids, V);
    // gather: reads T rows, writes T rows. backward: zero-fills the [V,D] gradient, reads dy, writes the U rows.
    rows.push(await t(`gather, ${T} tokens × ${D} from [${V},${D}], ${what}`, () => embedding(ctx, table, tokens), { bytes: 2 * T * D * word }));
    rows.push(await t(`backward into [${V},${D}], ${T} tokens, ${what}`, () => embeddingBackward(ctx, table, tokens, dy), { bytes: (V * D + T * D + tokens.unique * D) * word }, 'includes zero-filling the table gradient'));
    tokens.dispose();
  }
  table.dispose();
  dy.dispose();
}
