/**
 * Parameter sets in several chunks (sets larger than one storage binding), at small sizes: the
 * chunk size is forced down to a few KiB so every path runs with many chunks and every value
 * is checked against an f64 reference. test/optim/large.test.ts runs the same paths past
 * lavapipe's real 128 MiB binding limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, ShapeError, SizeLimitError } from '../../src/gpu/errors.js';
import { roundHalf } from '../../src/gpu/half.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { rowBlocks } from '../../src/kernels/chunks.js';
import { flatten, flattenChunks, lerp, lerpInPlace, unflatten } from '../../src/kernels/lerp.js';
import { type FreezeSpec, GradMask, maskedGrad, maskedGradRowBlocks } from '../../src/kernels/maskedGrad.js';
import { sumSquares, sumSquaresMany } from '../../src/kernels/reduce.js';
import { ParamArena } from '../../src/optim/arena.js';
import { AdamW, type ParamGroup, SGD } from '../../src/kernels/optim.js';
import { adamwRef, clipFactorRef, refGroup, sgdRef } from '../../src/kernels/optim.ref.js';
import { expectClose, randomArray, rng, testContext, TOL } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
/** 4 KiB chunks: 1024 f32 (a multiple of every adapter's window alignment). */
const CHUNK = 4096;
/** Slot shapes: several per chunk, one that fills most of a chunk, sizes that are not multiples of 4. */
const SHAPES = [[300], [5, 7], [1000], [3], [200, 2], [17, 13], [1], [900], [64], [250]];

describe('ParamArena in chunks', () => {
  it('packs slots in order, never across chunks, a new chunk only where the next slot does not fit', async () => {
    await ctx.scopeAsync(async () => {
      const data = SHAPES.map((s, i) => randomArray(size(s), rng(i)));
      const specs = SHAPES.map((s, i) => (i % 2 ? ctx.tensor(data[i]!, s) : s));
      const arena = new ParamArena(ctx, specs, [], { chunkBytes: CHUNK });
      expect(arena.chunks.length).toBeGreaterThan(2);
      expect(arena.chunks.every((c) => c.byteLength <= CHUNK)).toBe(true);
      const used = arena.chunks.map(() => 0);
      arena.params.forEach((p, i) => {
        const k = arena.chunkOf[i]!;
        const chunk = arena.chunks[k]!;
        expect(p.parent).toBe(chunk);
        expect(p.byteOffset).toBe(arena.offsets[i]! * 4);
        expect(p.byteOffset + p.byteLength).toBeLessThanOrEqual(chunk.byteLength); // inside its chunk
        if (i > 0) expect(k === arena.chunkOf[i - 1] || k === arena.chunkOf[i - 1]! + 1).toBe(true); // in order
        // A slot opens a new chunk only when it would not have fit after the previous one.
        if (i > 0 && k !== arena.chunkOf[i - 1]) expect(used[k - 1]! + p.byteLength).toBeGreaterThan(CHUNK);
        used[k] = p.byteOffset + p.byteLength;
        expect(arena.slotOf(p)).toBe(i);
      });
      expect(arena.size).toBe(arena.chunks.reduce((n, c) => n + c.size, 0));
      // Copied slots hold their data, zeroed slots and gaps are zero.
      for (let i = 0; i < SHAPES.length; i++) {
        const got = await arena.params[i]!.read();
        if (i % 2) expect(Array.from(got)).toEqual(Array.from(data[i]!));
        else expect(got.every((v) => v === 0)).toBe(true);
      }
      let nonzero = 0;
      for (const c of arena.chunks) nonzero += (await c.read()).filter((v) => v !== 0).length;
      expect(nonzero).toBe(SHAPES.reduce((n, s, i) => n + (i % 2 ? size(s) : 0), 0));
      expect(() => arena.storage).toThrow(SizeLimitError);
      expect(() => arena.storage).toThrow(/ParamArena.storage: the arena is \d+ chunks of up to 4096 bytes .*use arena.chunks/);
      arena.dispose();
      expect(arena.params[0]!.disposed).toBe(true);
    });
  });

  it('refuses a parameter larger than a chunk (naming it and the limit) and a bad chunk size', () => {
    expect(() => new ParamArena(ctx, [[10], [1025]], ['small', 'wte'], { chunkBytes: CHUNK })).toThrow(
      'ParamArena: wte [1025] f32 is 4100 bytes, over the 4096-byte chunk limit: no kernel can bind it whole; give it as row blocks (rowBlocks), one slot each',
    );
    // The real limit: a [50257, 768] embedding is 154 MB, over lavapipe's 128 MiB binding.
    const max = ctx.caps.limits.maxStorageBufferBindingSize!;
    if (max < 50257 * 768 * 4) {
      expect(() => new ParamArena(ctx, [[50257, 768]])).toThrow(/ParamArena: specs\[0\] \[50257,768\] f32 is 154389504 bytes, over the \d+-byte chunk limit \(maxStorageBufferBindingSize\)/);
    }
    expect(() => new ParamArena(ctx, [[4]], [], { chunkBytes: 1000 })).toThrow(ArgumentError);
    expect(() => new ParamArena(ctx, [[4]], [], { chunkBytes: 2 ** 40 })).toThrow(/ParamArena: chunkBytes = 1099511627776, expected a multiple of \d+ \(the window alignment\) in \[\d+, \d+\] \(the binding limit\)/);
  });
});

/**
 * An optimizer over a chunked arena against the f64 reference, every element, several steps:
 * groups in scrambled order with their own lr and weight decay, a slot no group owns (which
 * must not move), clipping over all chunks.
 */
describe('fused optimizers over a chunked arena', () => {
  const owned = [0, 2, 3, 5, 6, 7, 9]; // slots 1, 4, 8 belong to no group
  const run = async (kind: 'adamw' | 'sgd', maxGradNorm: number | undefined) => {
    await ctx.scopeAsync(async () => {
      const R = rng(kind === 'adamw' ? 7 : 8);
      const init = SHAPES.map((s) => randomArray(size(s), R));
      const arena = new ParamArena(ctx, SHAPES.map((s, i) => ctx.tensor(init[i]!, s)), [], { chunkBytes: CHUNK });
      const order = [5, 0, 9, 3, 7, 2, 6]; // group k is slot order[k]
      expect([...order].sort((a, b) => a - b)).toEqual(owned);
      const lr = (k: number) => 0.01 * (1 + k);
      const wd = (k: number) => (k % 3) * 0.02;
      const grads = order.map((i) => ctx.empty(SHAPES[i]!));
      const groups: ParamGroup[] = order.map((i, k) => ({ params: arena.params[i]!, grads: grads[k]!, lr: lr(k), weightDecay: wd(k) }));
      const opt = kind === 'adamw' ? new AdamW(ctx, groups, { lr: 1, maxGradNorm, betas: [0.9, 0.99] }) : new SGD(ctx, groups, { lr: 1, maxGradNorm, momentum: 0.9, dampening: 0.1 });
      const refs = order.map((i, k) => refGroup(init[i]!, lr(k), wd(k)));
      const chunksWithGroups = new Set(owned.map((i) => arena.chunkOf[i])).size;
      expect(chunksWithGroups).toBeGreaterThan(1);
      for (let t = 1; t <= 4; t++) {
        const g = order.map((i) => randomArray(size(SHAPES[i]!), R, -2, 2));
        g.forEach((d, k) => grads[k]!.write(d));
        const submits = ctx.stats.submits;
        const dispatches = ctx.stats.dispatches;
        const live = ctx.memory().liveBytes;
        opt.step();
        expect(ctx.stats.submits).toBe(submits); // encoded only: the whole step is one submit
        expect(ctx.memory().liveBytes).toBe(live); // the norm's partials are freed: live bytes stay flat
        // One update per chunk holding a group; clipping: a first pass per such chunk, one final pass.
        expect(ctx.stats.dispatches - dispatches).toBe(chunksWithGroups + (maxGradNorm === undefined ? 0 : chunksWithGroups + 1));
        const clip = clipFactorRef(g, maxGradNorm);
        if (maxGradNorm !== undefined) {
          expect(clip).toBeLessThan(0.5); // clipping is active
          const sq = g.reduce((s, d) => s + d.reduce((a, v) => a + v * v, 0), 0);
          expectClose(await opt.gradNormSq!.read(), [sq], { atol: 0, rtol: 1e-5 }, 'Σg² over every chunk');
        }
        refs.forEach((r, k) =>
          kind === 'adamw'
            ? adamwRef(r, g[k]!, t, { b1: 0.9, b2: 0.99, eps: 1e-8, amsgrad: false, clip })
            : sgdRef(r, g[k]!, t, { momentum: 0.9, dampening: 0.1, nesterov: false, clip }),
        );
        for (let k = 0; k < order.length; k++) expectClose(await arena.params[order[k]!]!.read(), refs[k]!.p, { atol: 1e-6, rtol: 1e-5 }, `${kind} step ${t} slot ${order[k]}`);
      }
      for (const i of [1, 4, 8]) expect(Array.from(await arena.params[i]!.read())).toEqual(Array.from(init[i]!)); // untouched
      const state = await opt.stateDict();
      expect(state.state.map((s) => s[0]!.length)).toEqual(order.map((i) => size(SHAPES[i]!)));
      expect(opt.gradNormSq === null).toBe(maxGradNorm === undefined);
      opt.dispose();
      arena.dispose();
    });
  };
  it('AdamW with global-norm clipping', () => run('adamw', 3));
  it('AdamW without clipping', () => run('adamw', undefined));
  it('SGD with momentum, dampening and clipping', () => run('sgd', 2));

  it('a single group in one chunk of a chunked arena: one dispatch over that chunk', async () => {
    await ctx.scopeAsync(async () => {
      const arena = new ParamArena(ctx, SHAPES, [], { chunkBytes: CHUNK });
      const g = ctx.tensor(new Array(1000).fill(1), [1000]);
      const opt = new SGD(ctx, [{ params: arena.params[2]!, grads: g, lr: 0.5 }], { lr: 1 });
      const before = ctx.stats.dispatches;
      opt.step();
      expect(ctx.stats.dispatches - before).toBe(1);
      expect(new Set(await arena.params[2]!.toArray())).toEqual(new Set([-0.5]));
      expect((await arena.params[3]!.toArray()).every((v) => v === 0)).toBe(true);
      opt.dispose();
      arena.dispose();
    });
  });
});

describe('sumSquaresMany', () => {
  it('Σx² over several tensors: a first pass per tensor, one pass over all partials', async () => {
    const sizes = [1, 4096, 4097, 10_001, 3, 70_000];
    const xs = sizes.map((n, i) => Array.from(randomArray(n, rng(40 + i)), Math.fround));
    await ctx.scopeAsync(async () => {
      const ts = xs.map((x, i) => ctx.tensor(x, [sizes[i]!]));
      const before = ctx.stats.dispatches;
      const got = sumSquaresMany(ctx, ts);
      expect(ctx.stats.dispatches - before).toBe(sizes.length + 1);
      let want = 0;
      for (const x of xs) for (const v of x) want += v * v;
      expectClose(await got.read(), [want], { atol: 0, rtol: 1e-5 }, 'sumSquaresMany');
      // One tensor: the whole-array sumSquares itself.
      const one = await sumSquaresMany(ctx, [ts[4]!]).read();
      expect(Array.from(one)).toEqual(Array.from(await sumSquares(ctx, ts[4]!, 'all').read()));
      expect(() => sumSquaresMany(ctx, [])).toThrow('sumSquaresMany: no tensors');
    });
  });
});

describe('lerp, flatten and unflatten over chunk lists', () => {
  const lerpRef = (a: ArrayLike<number>, b: ArrayLike<number>, alpha: number) => Array.from(a, (v, i) => (1 - alpha) * v + alpha * b[i]!);

  it('two arenas of the same specs interpolate chunk by chunk: exact at 0 and 1, a dispatch per chunk', async () => {
    await ctx.scopeAsync(async () => {
      const R = rng(3);
      const pre = SHAPES.map((s) => Array.from(randomArray(size(s), R), Math.fround));
      const ft = SHAPES.map((s) => Array.from(randomArray(size(s), R), Math.fround));
      const model = new ParamArena(ctx, SHAPES.map((s, i) => ctx.tensor(pre[i]!, s)), [], { chunkBytes: CHUNK });
      const tuned = new ParamArena(ctx, SHAPES.map((s, i) => ctx.tensor(ft[i]!, s)), [], { chunkBytes: CHUNK });
      const n = model.chunks.length;
      const out = model.chunks.map((c) => ctx.empty(c.shape));
      // The out chunks viewed as the model's slots.
      const slot = (i: number) => out[model.chunkOf[i]!]!.window(model.offsets[i]! * 4, SHAPES[i]!);
      for (const alpha of [0, 1, 0.3]) {
        const before = ctx.stats.dispatches;
        const got = lerp(ctx, model.chunks, tuned.chunks, alpha, out);
        expect(ctx.stats.dispatches - before).toBe(n);
        expect(got).toEqual(out);
        for (let i = 0; i < SHAPES.length; i++) {
          const v = Array.from(await slot(i).read());
          if (alpha === 0) expect(v).toEqual(pre[i]);
          else if (alpha === 1) expect(v).toEqual(ft[i]);
          else expectClose(v, lerpRef(pre[i]!, ft[i]!, alpha), TOL.f32, `lerp slot ${i}`);
        }
      }
      const fresh = lerp(ctx, model.chunks, tuned.chunks, 0.5);
      expect(fresh.map((c) => c.size)).toEqual(model.chunks.map((c) => c.size));
      lerpInPlace(ctx, model.chunks, tuned.chunks, 0.25);
      for (let i = 0; i < SHAPES.length; i++) expectClose(await model.params[i]!.read(), lerpRef(pre[i]!, ft[i]!, 0.25), TOL.f32, `lerpInPlace slot ${i}`);
      for (let i = 0; i < SHAPES.length; i++) expect(Array.from(await tuned.params[i]!.read())).toEqual(ft[i]); // θ1 untouched
      // Lists that do not pair up.
      expect(() => lerp(ctx, model.chunks, tuned.chunks.slice(1), 0.5)).toThrow(`lerp: theta0 has ${n} chunks and theta1 has ${n - 1}; they must match`);
      expect(() => lerpInPlace(ctx, model.chunks, tuned.chunks[0]! as unknown as Tensor[], 0.5)).toThrow(/lerpInPlace: theta0 is a list of \d+ chunks, theta1 one tensor/);
      expect(() => lerp(ctx, model.chunks, [...tuned.chunks].reverse(), 0.5)).toThrow(/lerp: theta0\[0\] \[\d+\] and theta1\[0\] \[\d+\] differ/);
      model.dispose();
      tuned.dispose();
    });
  });

  it('flattenChunks / unflatten round trip exactly (f32 and f16); one chunk is flatten', async () => {
    const shapes = [[3, 5], [300], [7], [2, 2, 3], [1000], [1], [513]];
    for (const dtype of ctx.caps.f16 ? (['f32', 'f16'] as const) : (['f32'] as const)) {
      await ctx.scopeAsync(async () => {
        const data = shapes.map((s, i) => Array.from(randomArray(size(s), rng(60 + i)), dtype === 'f16' ? roundHalf : Math.fround));
        const ts = data.map((d, i) => ctx.tensor(d, shapes[i]!, dtype));
        const chunkBytes = dtype === 'f16' ? CHUNK / 2 : CHUNK;
        const chunks = flattenChunks(ctx, ts, { chunkBytes });
        expect(chunks.length).toBeGreaterThan(1);
        expect(chunks.every((c) => c.byteLength <= chunkBytes && c.dtype === dtype)).toBe(true);
        const back = shapes.map((s) => ctx.empty(s, dtype));
        unflatten(ctx, chunks, back);
        for (let i = 0; i < shapes.length; i++) expect(Array.from(await back[i]!.read()), `${dtype} tensor ${i}`).toEqual(data[i]);
        // Without a small limit everything fits one chunk, laid out as flatten lays it out.
        const one = flattenChunks(ctx, ts);
        expect(one.length).toBe(1);
        expect(Array.from(await one[0]!.read())).toEqual(Array.from(await flatten(ctx, ts).read()));
        // Chunks that are not these tensors' layout.
        expect(() => unflatten(ctx, chunks.slice(1), back)).toThrow(/unflatten: chunks of \[.*\] elements are not the layout flattenChunks gives these 7 tensors/);
        expect(() => unflatten(ctx, [...chunks, chunks[0]!], back)).toThrow(ShapeError);
        const small = dtype === 'f16' ? 1024 : 2048; // [1000] is the first tensor over it
        expect(() => flattenChunks(ctx, ts, { chunkBytes: small })).toThrow(`flattenChunks: tensors[4] 'tensor' [1000] ${dtype} is ${1000 * (dtype === 'f16' ? 2 : 4)} bytes, over the ${small}-byte chunk limit`);
        expect(() => flattenChunks(ctx, ts, { chunkBytes: 1000 })).toThrow(ArgumentError);
      });
    }
  });
});

/** Trainable (i, j) for each spec, decoded here on its own (not through GradMask). */
function decode(spec: FreezeSpec, N: number, K: number): (i: number, j: number) => boolean {
  const inRanges = (rs: [number, number][], v: number) => rs.some(([a, b]) => v >= a && v < b);
  if ('elements' in spec) return (i, j) => spec.elements[i * K + j] !== 0;
  if ('blockRows' in spec) return (i, j) => spec.trainable[Math.floor(i / spec.blockRows) * Math.ceil(K / spec.blockCols) + Math.floor(j / spec.blockCols)] !== 0;
  const rows = 'rows' in spec ? spec.rows : [[0, N] as [number, number]];
  const cols = 'cols' in spec ? spec.cols : [[0, K] as [number, number]];
  return (i, j) => inRanges(rows, i) && inRanges(cols, j);
}

describe('maskedGradRowBlocks: the masked gradient of a weight kept as row blocks', () => {
  const N = 37;
  const K = 20;
  const M = 5;
  const specs: [string, FreezeSpec][] = [
    ['rows', { rows: [[3, 9], [15, 16], [30, 37]] }],
    ['cols', { cols: [[0, 4], [11, 20]] }],
    ['rows and cols', { rows: [[7, 25]], cols: [[5, 13]] }],
    ['blocks', { blockRows: 6, blockCols: 7, trainable: Array.from({ length: 7 * 3 }, (_, b) => (b * 5) % 3 === 0 ? 1 : 0) }],
    ['elements', { elements: Array.from({ length: N * K }, (_, e) => ((e * 7) % 11 < 4 ? 1 : 0)) }],
  ];

  it('rowBlocks splits rows evenly into blocks within the limit', () => {
    expect(rowBlocks(ctx, [37, 20], 'f32', 8 * 80)).toEqual([[8, 20], [8, 20], [7, 20], [7, 20], [7, 20]]);
    expect(rowBlocks(ctx, [37, 20])).toEqual([[37, 20]]);
    expect(rowBlocks(ctx, [10, 3, 4], 'f16', 5 * 24)).toEqual([[5, 3, 4], [5, 3, 4]]);
    for (const [rows, limit] of [[1001, 4 * 77], [50257, 768 * 4 * 1000], [7, 4]] as const) {
      const b = rowBlocks(ctx, [rows, 1], 'f32', limit);
      expect(b.reduce((n, s) => n + s[0]!, 0)).toBe(rows);
      expect(b.every((s) => s[0]! * 4 <= limit)).toBe(true);
      expect(Math.max(...b.map((s) => s[0]!)) - Math.min(...b.map((s) => s[0]!))).toBeLessThanOrEqual(1);
    }
    expect(() => rowBlocks(ctx, [4, 100], 'f32', 256)).toThrow('rowBlocks: one row of [4,100] f32 is 400 bytes, over the 256-byte limit; split another axis');
  });

  for (const [name, spec] of specs) {
    it(`${name}: dy whole or in column blocks, fresh or accumulated, equals the f64 reference`, async () => {
      const trains = decode(spec, N, K);
      const dy = randomArray(M * N, rng(name.length));
      const x = randomArray(M * K, rng(name.length + 1));
      const want = new Float64Array(N * K);
      for (let i = 0; i < N; i++) for (let j = 0; j < K; j++) if (trains(i, j)) for (let m = 0; m < M; m++) want[i * K + j] += dy[m * N + i]! * x[m * K + j]!;
      const shapes = rowBlocks(ctx, [N, K], 'f32', 8 * K * 4);
      const mask = new GradMask(ctx, [N, K], spec);
      await ctx.scopeAsync(async () => {
        const X = ctx.tensor(x, [M, K]);
        const dyT = ctx.tensor(dy, [M, N]);
        // The same dy as one [M, N_b] tensor per block (a linear layer run block by block).
        let r0 = 0;
        const dyBlocks = shapes.map((s) => {
          const d = new Float32Array(M * s[0]!);
          for (let m = 0; m < M; m++) for (let c = 0; c < s[0]!; c++) d[m * s[0]! + c] = dy[m * N + r0 + c]!;
          r0 += s[0]!;
          return ctx.tensor(d, [M, s[0]!]);
        });
        const read = async (blocks: Tensor[]) => {
          expect(blocks.map((b) => b.shape)).toEqual(shapes);
          const parts = await Promise.all(blocks.map((b) => b.read()));
          const all = new Float32Array(N * K);
          let at = 0;
          for (const p of parts) {
            all.set(p, at);
            at += p.length;
          }
          return all;
        };
        const check = (got: Float32Array, scale: number, what: string) => {
          for (let e = 0; e < N * K; e++) if (!trains(Math.floor(e / K), e % K)) expect(got[e], `${what}: frozen (${Math.floor(e / K)},${e % K})`).toBe(0);
          expectClose(got, Array.from(want, (v) => scale * v), { atol: 1e-6, rtol: 1e-5 }, what);
        };
        const out = shapes.map((s) => ctx.empty(s));
        check(await read(maskedGradRowBlocks(ctx, dyT, X, mask, { out })), 1, `${name}, dy whole`);
        check(await read(maskedGradRowBlocks(ctx, dyBlocks, X, mask, { out, accumulate: true })), 2, `${name}, dy in blocks, accumulated`);
        // Default blocks (the device limit): one block, the plain masked gradient.
        const [whole] = maskedGradRowBlocks(ctx, dyT, X, mask);
        expect(Array.from(await whole!.read())).toEqual(Array.from(await maskedGrad(ctx, dyT, X, mask).read()));
        // Mismatched blocks are refused.
        expect(() => maskedGradRowBlocks(ctx, dyBlocks.slice(1), X, mask, { out })).toThrow(`maskedGradRowBlocks: dy has ${shapes.length - 1} blocks and dW ${shapes.length}; they must match`);
        expect(() => maskedGradRowBlocks(ctx, dyT, X, mask, { out: out.slice(1) })).toThrow(/maskedGradRowBlocks: the out blocks have \d+ rows in all, the mask has N = 37/);
      });
      mask.dispose();
    });
  }

  it('maskedGrad refuses a dW larger than one binding, pointing to row blocks', () => {
    const max = ctx.caps.limits.maxStorageBufferBindingSize!;
    const N2 = Math.floor(max / 4 / 1000) + 1;
    const mask = new GradMask(ctx, [N2, 1000], { rows: [[0, 10]] });
    ctx.scope(() => {
      expect(() => maskedGrad(ctx, ctx.empty([1, N2]), ctx.empty([1, 1000]), mask)).toThrow(
        `maskedGrad: dW [${N2},1000] f32 is ${N2 * 4000} bytes, over maxStorageBufferBindingSize ${max}; keep the weight as row blocks (rowBlocks) and use maskedGradRowBlocks`,
      );
    });
    mask.dispose();
  });
});
