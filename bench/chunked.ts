/**
 * Bench suite for parameter sets larger than one storage binding (src/kernels/chunks.ts):
 * AdamW with clipping over a ParamArena of 36.3M f32 (145 MB; lavapipe binds 128 MiB, so two
 * chunks: a gradient copy per parameter, a norm pass per chunk and a final one, an update per
 * chunk, one submit), and lerp over the chunks of two such arenas.
 */
import type { GpuContext } from '../src/gpu/context.js';
import { fill } from '../src/kernels/elementwise.js';
import { lerp } from '../src/kernels/lerp.js';
import { ParamArena } from '../src/optim/arena.js';
import { AdamW } from '../src/kernels/optim.js';
import { type Row, wallTime } from './lib.js';
import { makeTimer } from './lora.js';

/** 36.3M f32 in 8 tensors: a GPT-2-small-like mix of large and small matrices. */
const SHAPES = [[16384, 768], [8192, 768], [768, 3072], [3072, 768], [8192, 768], [768, 2304], [6000, 768], [768]];

export async function chunkedSuite(ctx: GpuContext, rows: Row[], maxTime: number): Promise<void> {
  const n = SHAPES.reduce((s, sh) => s + sh[0]! * (sh[1] ?? 1), 0);
  const arena = new ParamArena(ctx, SHAPES);
  const what = `${(n / 1e6).toFixed(1)}M f32 in ${arena.chunks.length} chunk${arena.chunks.length > 1 ? 's' : ''}`;
  {
    const grads = SHAPES.map((s) => fill(ctx, ctx.empty(s), 0.01));
    const opt = new AdamW(ctx, arena.params.map((p, i) => ({ params: p, grads: grads[i] })), { lr: 1e-3, maxGradNorm: 1 });
    opt.step();
    await ctx.sync();
    const name = `AdamW, clipped, ${what}`;
    const wallMs = await wallTime(name, async () => {
      opt.step();
      await ctx.sync();
    }, maxTime);
    // 7 words per parameter as the optim suite counts them (g, p, m, v read; p, m, v written),
    // plus the gradient copy into the arena's staging and the norm's pass over it (3 more).
    rows.push({ suite: 'chunked', name, work: { bytes: 10 * n * 4 }, wallMs, gpuMs: null, note: 'wall time of encode + submit + wait; 10 words per parameter' });
    console.error(`  chunked ${name}: wall ${wallMs.toFixed(1)} ms`);
    opt.dispose();
    for (const g of grads) g.dispose();
  }
  {
    const tuned = new ParamArena(ctx, SHAPES);
    const out = arena.chunks.map((c) => ctx.empty(c.shape));
    const t = makeTimer(ctx, 'chunked', maxTime);
    rows.push(await t(`lerp over the chunks, ${what}`, () => void lerp(ctx, arena.chunks, tuned.chunks, 0.5, out), { bytes: 3 * n * 4 }));
    for (const o of out) o.dispose();
    tuned.dispose();
  }
  arena.dispose();
}
