import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, ShapeError } from '../../src/gpu/errors.js';
import { transpose } from '../../src/kernels/elementwise.js';
import { initLora, LORA_DOWN_MAX_RANK, LoraLayer, loraBackward, loraBGrad, loraDown, loraMergeTiling, loraForward, loraMerge, loraScale, loraUnmerge } from '../../src/kernels/lora.js';
import { matmulRef } from '../../src/kernels/matmul.ref.js';
import { loraForwardRef, loraGradsRef, loraMergeRef, type LoraRefProblem } from '../../src/kernels/lora.ref.js';
import { dropoutMaskRef, uniformRef } from '../../src/kernels/random.ref.js';
import { expectF16Chain, halfArray } from '../f16.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

interface Shape {
  M: number;
  N: number;
  K: number;
  r: number;
  batch?: number; // x as [batch, M/batch, K]
  bias?: boolean;
  p?: number;
  rs?: boolean;
  /** Store W as [K,N] (wLayout 'KN'), transposed on the GPU. */
  kn?: boolean;
}

function problem(sh: Shape, seed: number): LoraRefProblem & { alpha: number } {
  const R = rng(seed);
  const f = (n: number, scale = 1) => Array.from(randomArray(n, R, -scale, scale), Math.fround);
  const alpha = 2 * sh.r;
  return {
    M: sh.M, N: sh.N, K: sh.K, r: sh.r, alpha,
    s: loraScale(alpha, sh.r, sh.rs),
    x: f(sh.M * sh.K),
    W: f(sh.N * sh.K, 0.5),
    bias: sh.bias ? f(sh.N) : undefined,
    A: f(sh.r * sh.K, 0.5),
    B: f(sh.N * sh.r, 0.5),
  };
}

function tol(K: number) {
  return { atol: 2e-5 * Math.sqrt(K), rtol: 1e-4 };
}

const SHAPES: Shape[] = [
  { M: 1, N: 1, K: 1, r: 1 },
  { M: 1, N: 17, K: 9, r: 1 },
  { M: 7, N: 13, K: 31, r: 4, bias: true },
  { M: 33, N: 40, K: 24, r: 24 }, // r = K
  { M: 12, N: 64, K: 48, r: 8, batch: 3, bias: true, rs: true },
  { M: 65, N: 36, K: 130, r: 3 },
  { M: 7, N: 13, K: 31, r: 4, bias: true, kn: true },
  { M: 12, N: 64, K: 48, r: 8, batch: 3, kn: true },
];

/** W uploaded as [N,K], or transposed on the GPU to [K,N] for wLayout 'KN'. */
function weight(q: LoraRefProblem, kn: boolean | undefined) {
  const W = ctx.tensor(q.W, [q.N, q.K]);
  return kn ? { W: transpose(ctx, W), wLayout: 'KN' as const } : { W };
}

describe('LoRA layer against the f64 reference', () => {
  for (const sh of SHAPES) {
    it(`forward and every gradient: ${JSON.stringify(sh)}`, async () => {
      const q = problem(sh, sh.M * 31 + sh.K);
      const dyData = Array.from(randomArray(sh.M * sh.N, rng(99)), Math.fround);
      const want = loraForwardRef(q);
      const grads = loraGradsRef(q, dyData);
      await ctx.scopeAsync(async () => {
        const xShape = sh.batch ? [sh.batch, sh.M / sh.batch, sh.K] : [sh.M, sh.K];
        const layer = new LoraLayer(ctx, {
          ...weight(q, sh.kn),
          bias: q.bias ? ctx.tensor(q.bias, [sh.N]) : undefined,
          A: ctx.tensor(q.A, [sh.r, sh.K]),
          B: ctx.tensor(q.B, [sh.N, sh.r]),
          rank: sh.r,
          alpha: q.alpha,
          rsLora: sh.rs,
        });
        const x = ctx.tensor(q.x, xShape);
        const { y, saved } = loraForward(ctx, layer, x);
        expect(y.shape).toEqual(sh.batch ? [sh.batch, sh.M / sh.batch, sh.N] : [sh.M, sh.N]);
        expectClose(await y.read(), want.y, tol(sh.K), 'y');
        const dy = ctx.tensor(dyData, y.shape);
        const g = loraBackward(ctx, layer, saved!, dy, { needDx: true });
        expect(g.dx!.shape).toEqual(xShape);
        expectClose(await g.dB.read(), grads.dB, tol(sh.M), 'dB');
        expectClose(await g.dA.read(), grads.dA, tol(sh.M * sh.N), 'dA');
        expectClose(await g.dx!.read(), grads.dx, tol(sh.N), 'dx');
      });
    });
  }

  it('f16 storage: forward and every gradient within the bound of f32 arithmetic through f16 intermediates', async () => {
    if (!ctx.caps.f16) {
      console.log('lora: the adapter has no shader-f16; f16 storage refused');
      expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
      return;
    }
    const f16Shapes: Shape[] = [
      { M: 12, N: 64, K: 48, r: 8, batch: 3, bias: true },
      { M: 7, N: 13, K: 31, r: 4, kn: true },
      { M: 9, N: 20, K: 24, r: 17 }, // r > 16: the matmul fallbacks
    ];
    for (const sh of f16Shapes) {
      const R = rng(sh.M * 7 + sh.r);
      // Exact f16 inputs, |W|, |A|, |B| < 1 (halfArray gives |v| in [1/16, 2)).
      const h = (n: number, scale = 1) => halfArray(n, R).map((v) => v * scale);
      const alpha = 2 * sh.r;
      const q: LoraRefProblem = {
        M: sh.M, N: sh.N, K: sh.K, r: sh.r, s: loraScale(alpha, sh.r),
        x: h(sh.M * sh.K), W: h(sh.N * sh.K, 0.5), bias: sh.bias ? h(sh.N) : undefined, A: h(sh.r * sh.K, 0.5), B: h(sh.N * sh.r, 0.5),
      };
      const dyData = h(sh.M * sh.N);
      const abs = (v?: ArrayLike<number>) => (v ? Array.from(v, Math.abs) : undefined);
      const qAbs: LoraRefProblem = { ...q, x: abs(q.x)!, W: abs(q.W)!, bias: abs(q.bias), A: abs(q.A)!, B: abs(q.B)!, s: Math.abs(q.s) };
      const want = loraForwardRef(q);
      const grads = loraGradsRef(q, dyData);
      const magY = loraForwardRef(qAbs).y;
      const magG = loraGradsRef(qAbs, abs(dyData)!);
      const maxAbs = (v: ArrayLike<number>) => Math.max(...Array.from(v, Math.abs));
      const { M, N, K, r, s } = q;
      const what = `f16 ${JSON.stringify(sh)}`;
      await ctx.scopeAsync(async () => {
        const xShape = sh.batch ? [sh.batch, M / sh.batch, K] : [M, K];
        const W = ctx.tensor(q.W, [N, K], 'f16');
        const layer = new LoraLayer(ctx, {
          ...(sh.kn ? { W: transpose(ctx, W), wLayout: 'KN' as const } : { W }),
          bias: q.bias ? ctx.tensor(q.bias, [N], 'f16') : undefined,
          A: ctx.tensor(q.A, [r, K], 'f16'),
          B: ctx.tensor(q.B, [N, r], 'f16'),
          rank: r,
          alpha,
        });
        const { y, saved } = loraForward(ctx, layer, ctx.tensor(q.x, xShape, 'f16'));
        // y: u = x·Aᵀ is stored in f16 (one intermediate rounding), then x·Wᵀ + b + s·u·Bᵀ in f32.
        expectF16Chain(await y.read(), want.y, magY, { f32Roundings: 2 * K + r + 4, f16Roundings: 1, flushWeight: s * r * maxAbs(q.B) }, `${what} y`);
        const g = loraBackward(ctx, layer, saved!, ctx.tensor(dyData, y.shape, 'f16'), { needDx: true });
        // dB = s·dyᵀ·u (u in f16); du = s·dy·B stored in f16, then dA = duᵀ·x and dx = dy·W + du·A.
        expectF16Chain(await g.dB.read(), grads.dB, magG.dB, { f32Roundings: K + M + 4, f16Roundings: 1, flushWeight: s * M * maxAbs(dyData) }, `${what} dB`);
        expectF16Chain(await g.dA.read(), grads.dA, magG.dA, { f32Roundings: N + M + 4, f16Roundings: 1, flushWeight: M * maxAbs(q.x) }, `${what} dA`);
        expectF16Chain(await g.dx!.read(), grads.dx, magG.dx, { f32Roundings: 2 * N + r + 4, f16Roundings: 1, flushWeight: r * maxAbs(q.A) }, `${what} dx`);
      });
    }
  }, 600_000);

  it('the skinny u = x·Aᵀ kernel (r ≤ 16) and its matmul fallback (r > 16) match the reference', async () => {
    for (const [M, K, r] of [[1, 1, 1], [9, 70, 5], [33, 257, 16], [10, 40, 17], [64, 1024, 8]] as const) {
      const x = Array.from(randomArray(M * K, rng(M + K)), Math.fround);
      const A = Array.from(randomArray(r * K, rng(r)), Math.fround);
      const want = matmulRef({ a: x, b: A, M, N: r, K, transB: true, alpha: 0.5 });
      const got = await ctx.scopeAsync(() => loraDown(ctx, ctx.tensor(x, [M, K]), ctx.tensor(A, [r, K]), 0.5).read());
      expectClose(got, want, tol(K), `loraDown M=${M} K=${K} r=${r}${r > LORA_DOWN_MAX_RANK ? ' (fallback)' : ''}`);
      // The same with A stored transposed, [K,r] (du = s·dy·B with B [N,r]).
      const At = Array.from({ length: r * K }, (_, i) => A[(i % r) * K + Math.floor(i / r)]!);
      const gotT = await ctx.scopeAsync(() => loraDown(ctx, ctx.tensor(x, [M, K]), ctx.tensor(At, [K, r]), 0.5, { aTransposed: true }).read());
      expectClose(gotT, want, tol(K), `loraDown A transposed M=${M} K=${K} r=${r}`);
    }
  });

  it('the skinny dB = s·dyᵀ·u kernel (r ≤ 16) and its matmul fallback match the reference', async () => {
    // N % 4 == 0 runs lora_b_grad4 (36: a partial workgroup; 1024: several), the others lora_b_grad.
    for (const [M, N, r] of [[1, 1, 1], [9, 70, 5], [257, 33, 16], [10, 40, 17], [64, 1024, 8], [3, 65, 2], [7, 36, 3], [2, 4, 16], [5, 300, 1]] as const) {
      const dy = Array.from(randomArray(M * N, rng(M + N)), Math.fround);
      const u = Array.from(randomArray(M * r, rng(r + 3)), Math.fround);
      const want = matmulRef({ a: dy, b: u, M: N, N: r, K: M, transA: true, alpha: -0.75 });
      const got = await ctx.scopeAsync(async () => {
        const dB = loraBGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(u, [M, r]), -0.75);
        expect(dB.shape).toEqual([N, r]);
        return dB.read();
      });
      expectClose(got, want, tol(M), `loraBGrad M=${M} N=${N} r=${r}${r > LORA_DOWN_MAX_RANK ? ' (fallback)' : ''}`);
    }
  });

  it('gradients match finite differences of the f64 forward (dA, dB, dx separately)', async () => {
    const sh: Shape = { M: 5, N: 6, K: 7, r: 3, bias: true };
    const q = problem(sh, 5);
    const G = Array.from(randomArray(sh.M * sh.N, rng(6)));
    const loss = (p: LoraRefProblem) => loraForwardRef(p).y.reduce((a, v, i) => a + v * G[i]!, 0);
    const fd = (key: 'A' | 'B' | 'x', i: number) => {
      const h = 1e-6;
      const plus = Array.from(q[key]);
      const minus = Array.from(q[key]);
      plus[i]! += h;
      minus[i]! -= h;
      return (loss({ ...q, [key]: plus }) - loss({ ...q, [key]: minus })) / (2 * h);
    };
    await ctx.scopeAsync(async () => {
      const layer = new LoraLayer(ctx, {
        W: ctx.tensor(q.W, [sh.N, sh.K]), bias: ctx.tensor(q.bias!, [sh.N]),
        A: ctx.tensor(q.A, [sh.r, sh.K]), B: ctx.tensor(q.B, [sh.N, sh.r]), rank: sh.r, alpha: q.alpha,
      });
      const { saved } = loraForward(ctx, layer, ctx.tensor(q.x, [sh.M, sh.K]));
      const g = loraBackward(ctx, layer, saved!, ctx.tensor(G, [sh.M, sh.N]), { needDx: true });
      for (const [key, t] of [['A', g.dA], ['B', g.dB], ['x', g.dx!]] as const) {
        const got = await t.read();
        const want = Array.from({ length: got.length }, (_, i) => fd(key, i));
        expectClose(got, want, { atol: 1e-4, rtol: 1e-3 }, `d${key} vs finite differences`);
      }
    });
  });

  it('dropout on the low-rank path: the mask is regenerated from the seed, on the CPU too', async () => {
    const sh: Shape = { M: 9, N: 12, K: 20, r: 4 };
    const p = 0.3;
    const q = problem(sh, 11);
    const seed = 1234;
    const offset = 7;
    const keep = dropoutMaskRef(sh.M * sh.K, seed, offset, p);
    const kept = keep.reduce((a, b) => a + b, 0) / keep.length;
    expect(kept).toBeGreaterThan(0.5); // ~0.7 kept: the mask is not degenerate
    expect(kept).toBeLessThan(0.9);
    const qd = { ...q, keep, p };
    const dyData = Array.from(randomArray(sh.M * sh.N, rng(12)), Math.fround);
    const want = loraForwardRef(qd);
    const grads = loraGradsRef(qd, dyData);
    await ctx.scopeAsync(async () => {
      const layer = new LoraLayer(ctx, {
        W: ctx.tensor(q.W, [sh.N, sh.K]), A: ctx.tensor(q.A, [sh.r, sh.K]), B: ctx.tensor(q.B, [sh.N, sh.r]),
        rank: sh.r, alpha: q.alpha, dropout: p,
      });
      const x = ctx.tensor(q.x, [sh.M, sh.K]);
      const { y, saved } = loraForward(ctx, layer, x, { seed, offset });
      expectClose(await y.read(), want.y, tol(sh.K), 'y with dropout');
      const g = loraBackward(ctx, layer, saved!, ctx.tensor(dyData, [sh.M, sh.N]), { needDx: true });
      expectClose(await g.dA.read(), grads.dA, tol(sh.M * sh.N), 'dA with dropout');
      expectClose(await g.dB.read(), grads.dB, tol(sh.M), 'dB with dropout');
      expectClose(await g.dx!.read(), grads.dx, tol(sh.N), 'dx with dropout');
      // Evaluation mode skips dropout.
      const evalY = loraForward(ctx, layer, x, { training: false }).y;
      expectClose(await evalY.read(), loraForwardRef(q).y, tol(sh.K), 'y in eval mode');
    });
  });

  // lora_merge where W's rows are whole vec4s and r ≤ 16 (several row and column blocks in the
  // larger ones), the matmul (β = 1) otherwise.
  const mergeShapes = [
    { M: 6, N: 40, K: 36, r: 8, bias: true },
    { M: 3, N: 9, K: 13, r: 2, bias: true },
    { M: 4, N: 12, K: 20, r: 3, kn: true },
    { M: 2, N: 70, K: 264, r: 16 },
    { M: 2, N: 300, K: 40, r: 5, kn: true },
    { M: 2, N: 21, K: 18, r: 17, kn: true },
    { M: 2, N: 40, K: 1100, r: 3 }, // 275 vec4 columns: two workgroups across, 4 vec4s per lane
  ];
  for (const sh of mergeShapes as Shape[]) {
  it(`merge matches W + s·B·A; unmerge returns W within f32 rounding; merged forward = unmerged (K=${sh.K}${sh.kn ? ', W as [K,N]' : ''})`, async () => {
    const q = problem(sh, 21);
    await ctx.scopeAsync(async () => {
      const layer = new LoraLayer(ctx, {
        ...weight(q, sh.kn), bias: q.bias ? ctx.tensor(q.bias, [sh.N]) : undefined,
        A: ctx.tensor(q.A, [sh.r, sh.K]), B: ctx.tensor(q.B, [sh.N, sh.r]), rank: sh.r, alpha: q.alpha,
      });
      // W as stored, read back in [N,K] order for the reference.
      const readW = async () => (sh.kn ? transpose(ctx, layer.W).read() : layer.W.read());
      const x = ctx.tensor(q.x, [sh.M, sh.K]);
      const before = await loraForward(ctx, layer, x).y.read();
      loraMerge(ctx, layer);
      expect(layer.merged).toBe(true);
      expectClose(await readW(), loraMergeRef(q.W, q.A, q.B, sh.N, sh.K, sh.r, q.s), { atol: 1e-6, rtol: 1e-5 }, 'merged W');
      expect(() => loraMerge(ctx, layer)).toThrow(ArgumentError);
      expect(() => loraMerge(ctx, layer)).toThrow('loraMerge: the layer is already merged (merged = true); unmerge it first');
      const merged = await loraForward(ctx, layer, x).y.read();
      expectClose(merged, before, tol(sh.K), 'merged forward = unmerged forward');
      loraUnmerge(ctx, layer);
      expect(() => loraUnmerge(ctx, layer)).toThrow('loraUnmerge: the layer is not merged');
      expectClose(await readW(), q.W, { atol: 1e-6, rtol: 1e-6 }, 'unmerge(merge(W)) = W');
      // The other adapters' tiling too (one vec4 per lane, 8 rows per workgroup on GPUs), and a
      // ragged one: every tiling computes the same W.
      // Each round trip may add an f32 rounding of W to the error.
      const tilings = [{ vec4sPerLane: 1, rowsPerWorkgroup: 8 }, { vec4sPerLane: 2, rowsPerWorkgroup: 5 }];
      for (const [i, tiling] of tilings.entries()) {
        const atol = 1e-6 * (i + 2);
        loraMerge(ctx, layer, { tiling });
        expectClose(await readW(), loraMergeRef(q.W, q.A, q.B, sh.N, sh.K, sh.r, q.s), { atol, rtol: 1e-5 }, `merged W, tiling ${JSON.stringify(tiling)}`);
        loraUnmerge(ctx, layer, { tiling });
        expectClose(await readW(), q.W, { atol, rtol: 1e-6 }, `unmerged W, tiling ${JSON.stringify(tiling)}`);
      }
    });
  });
  }

  it('merges with the tiling it picks for the adapter (the dispatch, read from the profiler) and refuses bad ones', async () => {
    // W [300, 1040], r = 8: 260 vec4 columns, 64 lanes per workgroup.
    const [N, K, r] = [300, 1040, 8];
    const t = loraMergeTiling(ctx, r);
    expect(t.vec4sPerLane * r).toBeLessThanOrEqual(64); // lora_merge keeps vec4sPerLane·r values of A per lane
    await ctx.scopeAsync(async () => {
      const q = problem({ M: 1, N, K, r }, 8);
      const layer = new LoraLayer(ctx, { W: ctx.tensor(q.W, [N, K]), A: ctx.tensor(q.A, [r, K]), B: ctx.tensor(q.B, [N, r]), rank: r, alpha: q.alpha });
      const prof = await ctx.profile(() => loraMerge(ctx, layer));
      expectClose(await layer.W.read(), loraMergeRef(q.W, q.A, q.B, N, K, r, q.s), { atol: 1e-6, rtol: 1e-5 }, 'merged W');
      if (!ctx.caps.timestampQuery) {
        console.log('lora: no timestamp-query, so no profile of the merge dispatch on this adapter');
        expect(prof).toBeNull();
        return;
      }
      expect(prof!.map((p) => p.kernel)).toEqual(['lora.wgsl:lora_merge']);
      expect(prof![0]!.workgroups).toEqual([Math.ceil(K / 4 / (64 * t.vec4sPerLane)), Math.ceil(N / t.rowsPerWorkgroup), 1]);
    });
    ctx.scope(() => {
      const layer = new LoraLayer(ctx, { W: ctx.empty([8, 8]), rank: 8, alpha: 8 });
      expect(() => loraMerge(ctx, layer, { tiling: { vec4sPerLane: 9, rowsPerWorkgroup: 8 } })).toThrow(
        'lora merge: tiling {"vec4sPerLane":9,"rowsPerWorkgroup":8}, expected integers >= 1 with vec4sPerLane·rank <= 64 (rank 8)',
      );
      expect(layer.merged).toBe(false);
    });
  }, 600_000);

  it("wLayout 'auto' takes a torch-layout W and stores it as this adapter runs fastest", async () => {
    const sh = { M: 5, N: 12, K: 8, r: 2 };
    const q = problem(sh as Shape, 5);
    await ctx.scopeAsync(async () => {
      const W = ctx.tensor(q.W, [sh.N, sh.K]);
      const layer = new LoraLayer(ctx, { W, wLayout: 'auto', A: ctx.tensor(q.A, [sh.r, sh.K]), B: ctx.tensor(q.B, [sh.N, sh.r]), rank: sh.r, alpha: q.alpha });
      if (ctx.caps.software) {
        expect(layer.wLayout).toBe('KN');
        expect(layer.W).not.toBe(W);
        expect(layer.W.shape).toEqual([sh.K, sh.N]);
      } else {
        console.log("LoRA wLayout 'auto': not a software adapter; W is kept as given ([N,K])");
        expect(layer.wLayout).toBe('NK');
        expect(layer.W).toBe(W);
      }
      expectClose(await loraForward(ctx, layer, ctx.tensor(q.x, [sh.M, sh.K])).y.read(), loraForwardRef(q).y, tol(sh.K), "y with wLayout 'auto'");
      if (ctx.caps.software) {
        loraMerge(ctx, layer); // merges into the layer's copy; the caller's W is untouched
        expect(Array.from(await W.read())).toEqual(Array.from(q.W, Math.fround));
      }
      expect(() => new LoraLayer(ctx, { W, wLayout: 'auto', A: ctx.empty([2, 12]), rank: 2, alpha: 1 })).toThrow(
        'LoraLayer: A has shape [2,12], expected [2,8] (W is [12,8], rank 2)',
      );
      if (layer.W !== W) layer.W.dispose();
    });
  });

  it('initialises A Kaiming-uniform (seeded, as the CPU Philox reference) and B to zero', async () => {
    await ctx.scopeAsync(async () => {
      const layer = new LoraLayer(ctx, { W: ctx.empty([16, 50]), rank: 4, alpha: 8 });
      initLora(ctx, layer, { seed: 3 });
      const bound = 1 / Math.sqrt(50);
      expectClose(await layer.A.read(), uniformRef(4 * 50, 3, 0, -bound, bound), { atol: 1e-6, rtol: 1e-6 }, 'A');
      expect(Array.from(await layer.B.read()).every((v) => v === 0)).toBe(true);
      initLora(ctx, layer, { seed: 4, init: 'gaussian' });
      const a = await layer.A.read();
      const mean = a.reduce((s, v) => s + v, 0) / a.length;
      const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length);
      expect(Math.abs(mean)).toBeLessThan(0.05);
      expect(std).toBeGreaterThan(0.2); // N(0, 1/r = 0.25)
      expect(std).toBeLessThan(0.3);
    });
    expect(loraScale(16, 8)).toBe(2);
    expect(loraScale(16, 4, true)).toBe(8);
  });

  it('rejects mismatched shapes, non-finite alpha and backward on a merged layer', async () => {
    await ctx.scopeAsync(async () => {
      const W = ctx.empty([8, 6]);
      expect(() => new LoraLayer(ctx, { W, A: ctx.empty([2, 5]), rank: 2, alpha: 4 })).toThrow(
        'LoraLayer: A has shape [2,5], expected [2,6] (W is [8,6], rank 2)',
      );
      expect(() => new LoraLayer(ctx, { W, B: ctx.empty([7, 2]), rank: 2, alpha: 4 })).toThrow(ShapeError);
      expect(() => new LoraLayer(ctx, { W, rank: 2, alpha: Infinity })).toThrow('lora: alpha = Infinity, expected a finite number');
      expect(() => new LoraLayer(ctx, { W, rank: 0, alpha: 1 })).toThrow(/rank = 0/);
      const layer = new LoraLayer(ctx, { W, rank: 2, alpha: 4 });
      expect(() => loraForward(ctx, layer, ctx.empty([3, 5]))).toThrow(
        'loraForward: x has shape [3,5], expected [M,K] or [batch,T,K] with K = 6 (W is [8,6])',
      );
      const { saved } = loraForward(ctx, layer, ctx.empty([3, 6]));
      expect(() => loraBackward(ctx, layer, saved!, ctx.empty([3, 7]))).toThrow(/dy has shape \[3,7\]/);
      loraMerge(ctx, layer);
      expect(() => loraBackward(ctx, layer, saved!, ctx.empty([3, 8]))).toThrow(/the layer is merged/);
    });
  });
});
