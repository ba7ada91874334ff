/**
 * A parameter set past one storage binding, at real size: about 200 MB of f32 (50M values in
 * several tensors, one of them 18.4M values, past the old 4096² cap of a whole-array
 * reduction) against lavapipe's 128 MiB binding limit. ParamArena chunks, AdamW with clipping
 * (a CPU reference on sampled indices, the exact global norm), lerp and lerpInPlace over the
 * chunks, flattenChunks / unflatten, and the masked gradient of a 164 MB weight in row blocks.
 * Memory: about 1 GB of buffers (lavapipe's live in host memory) and 0.6 GB of CPU arrays.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { SizeLimitError } from '../../src/gpu/errors.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { flatten, flattenChunks, lerp, lerpInPlace, unflatten } from '../../src/kernels/lerp.js';
import { GradMask, maskedGradRowBlocks } from '../../src/kernels/maskedGrad.js';
import { sumSquares } from '../../src/kernels/reduce.js';
import { ParamArena } from '../../src/optim/arena.js';
import { AdamW } from '../../src/kernels/optim.js';
import { adamwRef, refGroup } from '../../src/kernels/optim.ref.js';
import { randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const TIMEOUT = 300_000;
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
/** 49.8M f32 (199 MB): a large embedding-like block, matrices, odd sizes, small vectors. */
const SHAPES = [[24000, 768], [8192, 768], [5000, 768], [3000, 3001], [8192, 768], [2304, 769], [2048, 2048], [4097], [5, 7], [768]];
const BYSTANDER = 8; // a slot no optimizer group owns
const TOTAL = SHAPES.reduce((n, s) => n + size(s), 0);

/**
 * n uniform values in [lo, hi) from a seeded xorshift32, in one tight loop (100M values through
 * the closure-based helper took seconds of the test's time).
 */
function fastRandom(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  const scale = (hi - lo) / 4294967296;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = lo + (s >>> 0) * scale;
  }
  return out;
}

/** Compare every element with want(i); the first mismatches and the count in the message. */
function compareAll(got: Float32Array, want: (i: number) => number, tol: { atol: number; rtol: number }, what: string): void {
  let bad = 0;
  const first: string[] = [];
  for (let i = 0; i < got.length; i++) {
    const w = want(i);
    const g = got[i]!;
    if (g === w) continue;
    if (!(Math.abs(g - w) <= tol.atol + tol.rtol * Math.abs(w))) {
      if (first.length < 3) first.push(`[${i}] got ${g}, expected ${w}`);
      bad++;
    }
  }
  expect(bad, `${what}: ${bad} mismatches; ${first.join('; ')}`).toBe(0);
}

describe('a ~200 MB parameter set, past one storage binding', () => {
  let init: Float32Array[];
  let grads: Float32Array[];
  let arena: ParamArena;
  /** The gradients on the GPU, one tensor per slot. */
  let gradT: Tensor[];
  /** The arena's values after the optimizer steps, then after lerpInPlace. */
  let after: Float32Array[];
  let blended: Float32Array[];

  it('ParamArena packs it in chunks of at most one binding; a single [50257,768] slot is refused', () => {
    expect(TOTAL * 4).toBeGreaterThan(190e6);
    init = SHAPES.map((s, i) => fastRandom(size(s), 1000 + i));
    grads = SHAPES.map((s, i) => fastRandom(size(s), 2000 + i));
    gradT = SHAPES.map((s, i) => ctx.tensor(grads[i]!, s, 'f32', `g${i}`));
    arena = new ParamArena(ctx, SHAPES, SHAPES.map((_, i) => `p${i}`));
    arena.params.forEach((p, i) => p.write(init[i]!));
    const max = ctx.caps.limits.maxStorageBufferBindingSize!;
    expect(arena.chunks.every((c) => c.byteLength <= max)).toBe(true);
    if (TOTAL * 4 > max) expect(arena.chunks.length).toBeGreaterThan(1); // lavapipe: 2 chunks of <= 128 MiB
    expect(arena.chunks[0]!.size).toBeGreaterThan(4096 * 4096); // the old cap of a whole-array reduction
    expect(() => arena.storage).toThrow(SizeLimitError);
    if (50257 * 768 * 4 > max) expect(() => new ParamArena(ctx, [[50257, 768]], ['wte'])).toThrow(/ParamArena: wte \[50257,768\] f32 is 154389504 bytes, over the \d+-byte chunk limit/);
  }, TIMEOUT);

  it('sumSquares over 18.4M values (past 4096²) equals the f64 sum', async () => {
    const g = grads[0]!;
    let want = 0;
    for (let i = 0; i < g.length; i++) want += g[i]! * g[i]!;
    const got = await ctx.scopeAsync(() => sumSquares(ctx, gradT[0]!, 'all').read());
    expect(Math.abs(got[0]! - want) / want).toBeLessThan(1e-5);
  }, TIMEOUT);

  it('AdamW with maxGradNorm over every chunk: one submit, the exact global norm, a CPU reference on sampled indices', async () => {
    const groups = SHAPES.map((_, i) => i).filter((i) => i !== BYSTANDER);
    const lr = (i: number) => 1e-3 * (1 + (i % 3));
    const wd = (i: number) => (i % 2) * 0.01;
    const maxGradNorm = 1;
    const opt = new AdamW(ctx, groups.map((i) => ({ params: arena.params[i]!, grads: gradT[i]!, lr: lr(i), weightDecay: wd(i) })), { lr: 1, maxGradNorm, betas: [0.9, 0.99] });
    await ctx.sync();
    const chunks = new Set(groups.map((i) => arena.chunkOf[i])).size;
    // Two steps on the same gradients (the second reads the state the first wrote).
    for (let t = 1; t <= 2; t++) {
      const submits = ctx.stats.submits;
      const dispatches = ctx.stats.dispatches;
      opt.step();
      expect(ctx.stats.submits).toBe(submits);
      expect(ctx.stats.dispatches - dispatches).toBe(chunks + chunks + 1); // updates; a norm pass per chunk and the final one
    }
    let sq = 0;
    for (const i of groups) for (const v of grads[i]!) sq += v * v;
    const gpuSq = (await opt.gradNormSq!.read())[0]!;
    expect(Math.abs(gpuSq - sq) / sq).toBeLessThan(1e-5);
    const clip = Math.min(1, maxGradNorm / (Math.sqrt(sq) + 1e-6));
    expect(clip).toBeLessThan(1e-2); // clipping is active
    opt.dispose();
    for (const g of gradT) g.dispose();
    after = [];
    const R = rng(7);
    for (const i of SHAPES.keys()) {
      const got = await arena.params[i]!.read();
      after.push(got);
      if (i === BYSTANDER) {
        expect(Array.from(got)).toEqual(Array.from(init[i]!));
        continue;
      }
      const n = got.length;
      const idx = [0, n - 1, ...Array.from({ length: 300 }, () => Math.floor(R() * n))];
      const ref = refGroup(idx.map((j) => init[i]![j]!), lr(i), wd(i));
      const g = idx.map((j) => grads[i]![j]!);
      for (let t = 1; t <= 2; t++) adamwRef(ref, g, t, { b1: 0.9, b2: 0.99, eps: 1e-8, amsgrad: false, clip });
      idx.forEach((j, k) => {
        const want = ref.p[k]!;
        expect(Math.abs(got[j]! - want), `slot ${i} [${j}]: got ${got[j]}, expected ${want}`).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(want));
      });
    }
  }, TIMEOUT);

  it('lerp over the chunks exact at α = 0 and 1; lerpInPlace over the chunks close at α = 0.3', async () => {
    // θ1: a second arena of the same specs, holding the gradient arrays as its values.
    const tuned = new ParamArena(ctx, SHAPES);
    tuned.params.forEach((p, i) => p.write(grads[i]!));
    const out = arena.chunks.map((c) => ctx.keep(ctx.empty(c.shape, 'f32', 'lerp.out')));
    const slot = (i: number) => out[arena.chunkOf[i]!]!.window(arena.offsets[i]! * 4, SHAPES[i]!);
    for (const alpha of [0, 1]) {
      const before = ctx.stats.dispatches;
      lerp(ctx, arena.chunks, tuned.chunks, alpha, out);
      expect(ctx.stats.dispatches - before).toBe(arena.chunks.length);
      for (const i of SHAPES.keys()) {
        const want = alpha === 0 ? after[i]! : grads[i]!;
        compareAll(await slot(i).read(), (j) => want[j]!, { atol: 0, rtol: 0 }, `α = ${alpha}, slot ${i}`);
      }
    }
    for (const o of out) o.dispose();
    // (lerp into `out` at other α runs the same dispatches with another uniform.)
    const before = ctx.stats.dispatches;
    lerpInPlace(ctx, arena.chunks, tuned.chunks, 0.3);
    expect(ctx.stats.dispatches - before).toBe(arena.chunks.length);
    blended = [];
    for (const i of SHAPES.keys()) {
      const got = await arena.params[i]!.read();
      const t0 = after[i]!;
      const t1 = grads[i]!;
      compareAll(got, (j) => 0.7 * t0[j]! + 0.3 * t1[j]!, { atol: 1e-6, rtol: 1e-6 }, `lerpInPlace α = 0.3, slot ${i}`);
      blended.push(got);
    }
    tuned.dispose();
  }, TIMEOUT);

  it('flattenChunks / unflatten round trip exactly; flatten refuses the set', async () => {
    expect(() => flatten(ctx, arena.params)).toThrow(/flatten: the 10 tensors take \d+ bytes flat, over maxStorageBufferBindingSize \d+; use flattenChunks/);
    await ctx.scopeAsync(async () => {
      const chunks = flattenChunks(ctx, arena.params);
      expect(chunks.length).toBeGreaterThan(1);
      arena.dispose(); // the chunks are all that is left of the values
      const back = SHAPES.map((s) => ctx.empty(s));
      unflatten(ctx, chunks, back);
      for (const i of SHAPES.keys()) compareAll(await back[i]!.read(), (j) => blended[i]![j]!, { atol: 0, rtol: 0 }, `round trip, tensor ${i}`);
    });
  }, TIMEOUT);

  it('the masked gradient of a 164 MB weight [40000,1024], kept as row blocks, on sampled entries', async () => {
    const N = 40000;
    const K = 1024; // rows of 4 KiB: a row window is aligned on any adapter
    const M = 8;
    const trains = (i: number, j: number) => i >= 1000 && i < 39000 && j < 900;
    const dy = randomArray(M * N, rng(11));
    const x = randomArray(M * K, rng(12));
    const mask = new GradMask(ctx, [N, K], { rows: [[1000, 39000]], cols: [[0, 900]] });
    await ctx.scopeAsync(async () => {
      const blocks = maskedGradRowBlocks(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask);
      if (N * K * 4 > ctx.caps.limits.maxStorageBufferBindingSize!) expect(blocks.length).toBeGreaterThan(1);
      // Sampled rows of each block (reading 164 MB back would dominate the test): the first and
      // last rows, rows in the frozen range, random rows; every entry of each against the reference.
      const R = rng(13);
      let row0 = 0;
      for (const b of blocks) {
        const rows = b.shape[0]!;
        const sample = [0, rows - 1, ...Array.from({ length: 12 }, () => Math.floor(R() * rows))];
        if (row0 === 0) sample.push(999, 1000); // the frozen rows' edge
        for (const r of sample) {
          const got = await b.window(r * K * 4, [K]).read();
          const i = row0 + r;
          for (let j = 0; j < K; j++) {
            let want = 0;
            if (trains(i, j)) for (let m = 0; m < M; m++) want += dy[m * N + i]! * x[m * K + j]!;
            if (!trains(i, j)) expect(got[j], `frozen (${i},${j})`).toBe(0);
            else expect(Math.abs(got[j]! - want), `(${i},${j}): got ${got[j]}, expected ${want}`).toBeLessThanOrEqual(1e-6 + 1e-5 * Math.abs(want));
          }
        }
        row0 += rows;
      }
      expect(row0).toBe(N);
    });
    mask.dispose();
  }, TIMEOUT);
});
