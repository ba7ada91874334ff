import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { add, attention, causalSelfAttention, concat, crossEntropy, dropout, embedding, gelu, mergeHeads, slice, splitHeads, layerNorm, linear, logSoftmax, loraLinear, matmul, mean, mse, mul, relu, reshape, rmsNorm, scale, silu, softmax, sub, sum, transpose } from '../../src/autograd/ops.js';
import { dropoutMaskRef } from '../../src/kernels/random.ref.js';
import { causalSoftmaxRef, crossEntropyRef, softmaxRef } from '../../src/kernels/softmax.ref.js';
import { loraForwardRef } from '../../src/kernels/lora.ref.js';
import { trainableRef } from '../../src/kernels/maskedGrad.ref.js';
import { normRef } from '../../src/kernels/norm.ref.js';
import { backward, clearTape, findNonFinite, grad, noGrad, requiresGrad, setGradMask, tapeLength, zeroGrad } from '../../src/autograd/tape.js';
import { GradMask } from '../../src/kernels/maskedGrad.js';
import { TokenIds } from '../../src/kernels/embedding.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, ShapeError } from '../../src/gpu/errors.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { LoraLayer } from '../../src/kernels/lora.js';
import { geluTanhRef } from '../../src/kernels/matmul.ref.js';
import { AdamW } from '../../src/kernels/optim.js';
import { expectClose, randomArray, rng, testContext, TOL } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

type Arr = number[];

/** Row-major [M,K]·[K,N] in f64 with optional transposes (op(A) [M,K], op(B) [K,N]). */
function mm(a: Arr, b: Arr, M: number, N: number, K: number, tA = false, tB = false): Arr {
  const out = new Array(M * N).fill(0);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[m * N + n] += a[tA ? k * M + m : m * K + k]! * b[tB ? n * K + k : k * N + n]!;
  return out;
}

/**
 * Finite-difference check of one op: loss = Σ op(inputs) ⊙ G on the GPU through the tape, and
 * the same loss from an f64 CPU function, differentiated by central differences.
 */
async function gradCheck(
  name: string,
  shapes: number[][],
  gpuOp: (xs: Tensor[]) => Tensor,
  cpuOp: (xs: Arr[]) => Arr,
  opts: {
    positive?: boolean;
    /** atol = rtol for the gradients (default 1e-3), or atol alone where gradients are small. */
    tol?: number;
    atol?: number;
    /** Check this many entries of each gradient (first, last, the rest spread at random), not all: for big shapes. */
    sample?: number;
    /** Per input, entries whose gradient must be exactly 0 (frozen) instead of the finite difference. */
    frozen?: (ArrayLike<number> | null)[];
  } = {},
): Promise<void> {
  const R = rng(name.length * 13 + shapes.length);
  const data = shapes.map((s) => Array.from(randomArray(s.reduce((a, b) => a * b, 1), R, opts.positive ? 0.2 : -1, 1), Math.fround));
  const outLen = cpuOp(data).length;
  const G = Array.from(randomArray(outLen, R), Math.fround);
  const loss = (xs: Arr[]) => cpuOp(xs).reduce((a, v, i) => a + v * G[i]!, 0);
  await ctx.scopeAsync(async () => {
    const xs = data.map((d, i) => requiresGrad(ctx.tensor(d, shapes[i]!, 'f32', `in${i}`)));
    const y = gpuOp(xs);
    const l = sum(ctx, mul(ctx, y, ctx.tensor(G, y.shape, 'f32', 'G')));
    expectClose(await l.read(), [loss(data)], { atol: 1e-4, rtol: 1e-4 }, `${name} forward`);
    backward(ctx, l);
    l.dispose();
    for (let i = 0; i < xs.length; i++) {
      const g = await grad(xs[i]!)!.read();
      const n = data[i]!.length;
      let idx = Array.from({ length: n }, (_, j) => j);
      if (opts.sample && opts.sample < n) {
        const pick = rng(n + i);
        idx = [0, n - 1, ...Array.from({ length: opts.sample - 2 }, () => Math.floor(pick() * n))];
      }
      const frozen = opts.frozen?.[i];
      const fd = idx.map((j) => {
        if (frozen?.[j]) return 0;
        const h = 1e-5;
        const plus = data.map((d) => d.slice());
        const minus = data.map((d) => d.slice());
        plus[i]![j]! += h;
        minus[i]![j]! -= h;
        return (loss(plus) - loss(minus)) / (2 * h);
      });
      const tol = opts.tol ?? 1e-3;
      expectClose(idx.map((j) => g[j]!), fd, { atol: opts.atol ?? tol, rtol: tol }, `${name}: d input ${i} vs finite differences${idx.length < n ? ` (${idx.length} of ${n} entries)` : ''}`);
      if (frozen) expect(Array.from(g).findIndex((v, j) => frozen[j] && v !== 0), `${name}: d input ${i} at a frozen entry`).toBe(-1);
    }
    zeroGrad(xs);
  });
}

describe('gradient checks of every op (finite differences of an f64 reference)', () => {
  it('matmul, all four transposes', async () => {
    const [M, N, K] = [3, 4, 5];
    for (const tA of [false, true]) for (const tB of [false, true]) {
      await gradCheck(`matmul ${tA}${tB}`, [tA ? [K, M] : [M, K], tB ? [N, K] : [K, N]], ([a, b]) => matmul(ctx, a!, b!, { transA: tA, transB: tB }), ([a, b]) => mm(a!, b!, M, N, K, tA, tB));
    }
  });

  it('batched matmul, with a shared rank-2 operand on either side', async () => {
    const [Bt, M, N, K] = [2, 3, 4, 5];
    const bmm = (a: Arr, b: Arr, aB: boolean, bB: boolean, tB: boolean) => {
      const o: Arr = [];
      for (let z = 0; z < Bt; z++) o.push(...mm(aB ? a.slice(z * M * K, (z + 1) * M * K) : a, bB ? b.slice(z * K * N, (z + 1) * K * N) : b, M, N, K, false, tB));
      return o;
    };
    await gradCheck('bmm both batched, B transposed', [[Bt, M, K], [Bt, N, K]], ([a, b]) => matmul(ctx, a!, b!, { transB: true }), ([a, b]) => bmm(a!, b!, true, true, true));
    await gradCheck('bmm shared B', [[Bt, M, K], [K, N]], ([a, b]) => matmul(ctx, a!, b!), ([a, b]) => bmm(a!, b!, true, false, false));
    await gradCheck('bmm shared A', [[M, K], [Bt, K, N]], ([a, b]) => matmul(ctx, a!, b!), ([a, b]) => bmm(a!, b!, false, true, false));
  });

  it('mul with a broadcast suffix', async () => {
    await gradCheck('mul broadcast', [[3, 4], [4]], ([x, y]) => mul(ctx, x!, y!), ([x, y]) => x!.map((v, i) => v * y![i % 4]!));
  });

  it('linear with bias, x batched [2,3,K]', async () => {
    const [B, T, K, N] = [2, 3, 4, 5];
    await gradCheck('linear', [[B, T, K], [N, K], [N]], ([x, W, b]) => linear(ctx, x!, W!, b), ([x, W, b]) => mm(x!, W!, B * T, N, K, false, true).map((v, i) => v + b![i % N]!));
  });

  it('add and sub with broadcast, mul, scale', async () => {
    await gradCheck('add broadcast', [[3, 4], [4]], ([x, y]) => add(ctx, x!, y!), ([x, y]) => x!.map((v, i) => v + y![i % 4]!));
    await gradCheck('sub broadcast', [[2, 3, 4], [3, 4]], ([x, y]) => sub(ctx, x!, y!), ([x, y]) => x!.map((v, i) => v - y![i % 12]!));
    await gradCheck('mul', [[5, 3], [5, 3]], ([x, y]) => mul(ctx, x!, y!), ([x, y]) => x!.map((v, i) => v * y![i]!));
    await gradCheck('scale', [[7]], ([x]) => scale(ctx, x!, -2.5), ([x]) => x!.map((v) => -2.5 * v));
  });

  it('relu, gelu, sum, mean, mse', async () => {
    await gradCheck('relu', [[4, 6]], ([x]) => relu(ctx, x!), ([x]) => x!.map((v) => Math.max(v, 0)), { positive: false });
    await gradCheck('gelu', [[4, 6]], ([x]) => gelu(ctx, x!), ([x]) => x!.map(geluTanhRef));
    await gradCheck('sum', [[3, 5]], ([x]) => sum(ctx, x!), ([x]) => [x!.reduce((a, b) => a + b, 0)]);
    await gradCheck('mean', [[3, 5]], ([x]) => mean(ctx, x!), ([x]) => [x!.reduce((a, b) => a + b, 0) / 15]);
    await gradCheck('mse', [[3, 5], [3, 5]], ([p, t]) => mse(ctx, p!, t!), ([p, t]) => [p!.reduce((a, v, i) => a + (v - t![i]!) ** 2, 0) / 15]);
    // Over 4096 elements the reduction takes two passes.
    await gradCheck('mse two-pass', [[70, 80], [70, 80]], ([p, t]) => mse(ctx, p!, t!), ([p, t]) => [p!.reduce((a, v, i) => a + (v - t![i]!) ** 2, 0) / 5600]);
    expect(() => ctx.scope(() => mse(ctx, requiresGrad(ctx.empty([2, 3])), ctx.empty([3, 2])))).toThrow('mse: target [3,2] must match pred [2,3]');
  });

  it('silu, transpose, dropout (mask regenerated from the seed)', async () => {
    await gradCheck('silu', [[4, 5]], ([x]) => silu(ctx, x!), ([x]) => x!.map((v) => v / (1 + Math.exp(-v))));
    await gradCheck('transpose', [[3, 4]], ([x]) => transpose(ctx, x!), ([x]) => Array.from({ length: 12 }, (_, i) => x![(i % 3) * 4 + Math.floor(i / 3)]!));
    const keep = dropoutMaskRef(24, 5, 2, 0.4);
    await gradCheck('dropout', [[4, 6]], ([x]) => dropout(ctx, x!, { p: 0.4, seed: 5, offset: 2 }), ([x]) => x!.map((v, i) => (keep[i] ? v / 0.6 : 0)));
  });

  it('embedding: gather forward, per-id sum backward (repeated ids accumulate)', async () => {
    const [V, D] = [7, 5];
    const idList = [3, 0, 3, 6, 3, 1];
    const ids = new TokenIds(ctx, idList, V, [2, 3]);
    await gradCheck('embedding', [[V, D]], ([t]) => embedding(ctx, t!, ids), ([t]) => idList.flatMap((id) => t!.slice(id * D, id * D + D)));
    ids.dispose();
    expect(() => new TokenIds(ctx, [1, 9], V)).toThrow('TokenIds: ids[1] = 9, expected an integer in [0, 7)');
  });

  it('slice and concat along each axis', async () => {
    const sh = [2, 3, 4];
    const at = (x: Arr, i: number, j: number, k: number) => x[i * 12 + j * 4 + k]!;
    await gradCheck('slice axis 1', [sh], ([x]) => slice(ctx, x!, 1, 1, 2), ([x]) => {
      const o: Arr = [];
      for (let i = 0; i < 2; i++) for (let j = 1; j < 3; j++) for (let k = 0; k < 4; k++) o.push(at(x!, i, j, k));
      return o;
    });
    await gradCheck('slice axis -1', [sh], ([x]) => slice(ctx, x!, -1, 3, 1), ([x]) => {
      const o: Arr = [];
      for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) o.push(at(x!, i, j, 3));
      return o;
    });
    await gradCheck('concat axis 1', [[2, 1, 4], [2, 3, 4]], ([a, b]) => concat(ctx, [a!, b!], 1), ([a, b]) => {
      const o: Arr = [];
      for (let i = 0; i < 2; i++) {
        o.push(...a!.slice(i * 4, i * 4 + 4), ...b!.slice(i * 12, i * 12 + 12));
      }
      return o;
    });
    await gradCheck('concat axis 0', [[1, 3], [2, 3]], ([a, b]) => concat(ctx, [a!, b!], 0), ([a, b]) => [...a!, ...b!]);
    expect(() => ctx.scope(() => slice(ctx, ctx.empty([2, 3]), 1, 2, 2))).toThrow('slice: [2, 4) is not inside axis 1 of size 3 (x [2,3])');
    expect(() => ctx.scope(() => concat(ctx, [ctx.empty([2, 3]), ctx.empty([3, 2])], 0))).toThrow('concat: xs[1] [3,2] does not match xs[0] [2,3] outside axis 0');
  });

  it('attention: split/merge heads, causal softmax, scaled dot-product, and a causal self-attention block', async () => {
    const [B, T, H, dh] = [2, 3, 2, 2];
    const D = H * dh;
    // CPU: split [B,T,H·dh] -> [B·H,T,dh].
    const split = (x: Arr) => {
      const o: Arr = [];
      for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) for (let e = 0; e < dh; e++) o.push(x[(b * T + t) * D + h * dh + e]!);
      return o;
    };
    const merge = (x: Arr) => {
      const o: Arr = new Array(B * T * D);
      for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) for (let e = 0; e < dh; e++) o[(b * T + t) * D + h * dh + e] = x[((b * H + h) * T + t) * dh + e]!;
      return o;
    };
    const attn = (q: Arr, k: Arr, v: Arr, n: number, causal: boolean) => {
      const o: Arr = [];
      for (let z = 0; z < n; z++) for (let i = 0; i < T; i++) {
        const sc: number[] = [];
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let e = 0; e < dh; e++) s += q[(z * T + i) * dh + e]! * k[(z * T + j) * dh + e]!;
          sc.push(causal && j > i ? -Infinity : s / Math.sqrt(dh));
        }
        const m = Math.max(...sc);
        const ex = sc.map((s) => Math.exp(s - m));
        const tot = ex.reduce((a, b) => a + b, 0);
        for (let e = 0; e < dh; e++) o.push(ex.reduce((a, p, j) => a + (p / tot) * v[(z * T + j) * dh + e]!, 0));
      }
      return o;
    };
    await gradCheck('splitHeads', [[B, T, D]], ([x]) => splitHeads(ctx, x!, H), ([x]) => split(x!));
    await gradCheck('mergeHeads', [[B * H, T, dh]], ([x]) => mergeHeads(ctx, x!, H), ([x]) => merge(x!));
    for (const causal of [false, true]) {
      await gradCheck(`attention causal=${causal}`, [[B * H, T, dh], [B * H, T, dh], [B * H, T, dh]], ([q, k, v]) => attention(ctx, q!, k!, v!, { causal }), ([q, k, v]) => attn(q!, k!, v!, B * H, causal));
    }
    const lin = (x: Arr, w: Arr) => mm(x, w, B * T, D, D, false, true);
    await gradCheck(
      'causalSelfAttention',
      [[B, T, D], [D, D], [D, D], [D, D], [D, D]],
      ([x, wq, wk, wv, wo]) => causalSelfAttention(ctx, x!, { q: wq!, k: wk!, v: wv!, o: wo! }, H),
      ([x, wq, wk, wv, wo]) => lin(merge(attn(split(lin(x!, wq!)), split(lin(x!, wk!)), split(lin(x!, wv!)), B * H, true)), wo!),
      { tol: 2e-3 },
    );
  });

  // Rows of 5 and of 150 columns (the 64-lane workgroup's strided loops run 3 times), one
  // workgroup per row; the big shapes check a sample of each gradient's entries.
  it('softmax, logSoftmax, reshape', async () => {
    for (const [R, C] of [[3, 5], [6, 150]] as const) {
      const o = C > 64 ? { sample: 120, atol: 2e-5 } : {};
      await gradCheck(`softmax ${R}x${C}`, [[R, C]], ([x]) => softmax(ctx, x!), ([x]) => Array.from(softmaxRef(x!, C)), o);
      await gradCheck(`logSoftmax ${R}x${C}`, [[R, C]], ([x]) => logSoftmax(ctx, x!), ([x]) => Array.from(softmaxRef(x!, C, true)), o);
    }
    await gradCheck('reshape', [[2, 6]], ([x]) => relu(ctx, reshape(ctx, x!, [3, 4])), ([x]) => x!.map((v) => Math.max(v, 0)));
  });

  it('causal softmax alone, over [Z, T, T] scores: 3×3, and T = 70 (rows and columns past the workgroup)', async () => {
    for (const [Z, T] of [[2, 3], [2, 70]] as const) {
      const o = T > 64 ? { sample: 150, atol: 2e-5 } : {};
      await gradCheck(`causal softmax ${Z}x${T}x${T}`, [[Z, T, T]], ([x]) => softmax(ctx, x!, { causal: true }), ([x]) => Array.from(causalSoftmaxRef(x!, T)), o);
    }
  });

  it('layerNorm (with and without β) and rmsNorm: dx, dγ, dβ', async () => {
    // 7 columns, and 150 (dγ, dβ: one lane per column, so three workgroups).
    for (const [R, C] of [[3, 7], [5, 150]] as const) {
      const o = { tol: 2e-3, ...(C > 64 ? { sample: 150 } : {}) };
      await gradCheck(`layerNorm ${R}x${C}`, [[R, C], [C], [C]], ([x, g, b]) => layerNorm(ctx, x!, g!, b), ([x, g, b]) => Array.from(normRef('layer', x!, g!, b!, C)), o);
      await gradCheck(`layerNorm no beta ${R}x${C}`, [[R, C], [C]], ([x, g]) => layerNorm(ctx, x!, g!), ([x, g]) => Array.from(normRef('layer', x!, g!, null, C)), o);
      await gradCheck(`rmsNorm ${R}x${C}`, [[R, C], [C]], ([x, g]) => rmsNorm(ctx, x!, g!), ([x, g]) => Array.from(normRef('rms', x!, g!, null, C)), o);
    }
  });

  it('crossEntropy: labels with ignore-index and label smoothing, and soft targets', async () => {
    // 5×4, and 70×130: xent_mean's lanes walk 70 rows, every row loop runs 3 times.
    for (const [R, C] of [[5, 4], [70, 130]] as const) {
      const pick = rng(R + C);
      const labels = Array.from({ length: R }, (_, r) => (r % 4 === 1 ? -100 : Math.floor(pick() * C)));
      const soft = Array.from({ length: R * C }, (_, i) => (i % C === i % 3 ? 0.7 : 0.1));
      const o = C > 64 ? { sample: 150, atol: 1e-6 } : {};
      await ctx.scopeAsync(async () => {
        const L = ctx.tensor(labels, [R]);
        const S = ctx.tensor(soft, [R, C]);
        await gradCheck(`xent labels ${R}x${C}`, [[R, C]], ([x]) => crossEntropy(ctx, x!, { labels: L }, { labelSmoothing: 0.1 }), ([x]) => [crossEntropyRef(x!, C, { labels }, { labelSmoothing: 0.1 })], o);
        await gradCheck(`xent soft ${R}x${C}`, [[R, C]], ([x]) => crossEntropy(ctx, x!, { soft: S }), ([x]) => [crossEntropyRef(x!, C, { soft })], o);
      });
    }
  });

  it('loraLinear: dx, dA, dB (W frozen, no dW)', async () => {
    const [M, K, N, r] = [4, 6, 5, 2];
    const W = Array.from(randomArray(N * K, rng(9)), Math.fround);
    await ctx.scopeAsync(async () => {
      const Wt = ctx.tensor(W, [N, K], 'f32', 'W');
      await gradCheck(
        'loraLinear',
        [[M, K], [r, K], [N, r]],
        ([x, A, B]) => loraLinear(ctx, x!, new LoraLayer(ctx, { W: Wt, A: A!, B: B!, rank: r, alpha: 4 })),
        ([x, A, B]) => {
          const u = mm(x!, A!, M, r, K, false, true);
          const low = mm(u, B!, M, N, r, false, true);
          return mm(x!, W, M, N, K, false, true).map((v, i) => v + 2 * low[i]!);
        },
      );
      expect(grad(Wt)).toBeNull();
    });
  });

  it('loraLinear with dropout, bias, W stored [K,N] and x batched [2,3,K]: dx, dA, dB', async () => {
    const [Bt, T, K, N, r, p, seed, offset] = [2, 3, 6, 5, 2, 0.3, 11, 4];
    const M = Bt * T;
    const R0 = rng(10);
    const W = Array.from(randomArray(N * K, R0), Math.fround); // [N,K]
    const bias = Array.from(randomArray(N, R0), Math.fround);
    const Wkn = Array.from({ length: K * N }, (_, i) => W[(i % N) * K + Math.floor(i / N)]!); // [K,N]
    const keep = dropoutMaskRef(M * K, seed, offset, p);
    expect(keep.some((v) => v === 0) && keep.some((v) => v === 1)).toBe(true); // the mask drops some, keeps some
    await ctx.scopeAsync(async () => {
      const Wt = ctx.tensor(Wkn, [K, N], 'f32', 'W [K,N]');
      const b = ctx.tensor(bias, [N], 'f32', 'bias');
      await gradCheck(
        'loraLinear dropout bias KN batched',
        [[Bt, T, K], [r, K], [N, r]],
        ([x, A, B]) => loraLinear(ctx, x!, new LoraLayer(ctx, { W: Wt, wLayout: 'KN', bias: b, A: A!, B: B!, rank: r, alpha: 4, dropout: p }), { seed, offset }),
        ([x, A, B]) => Array.from(loraForwardRef({ x: x!, W, bias, A: A!, B: B!, M, N, K, r, s: 2, keep, p }).y),
      );
      expect(grad(Wt)).toBeNull();
    });
  });

  it('linear with a partly frozen weight (setGradMask): dW is the finite difference on trainable entries and exactly 0 on frozen ones; dx and db as usual', async () => {
    const [M, K, N] = [4, 6, 5];
    for (const spec of [{ rows: [[1, 3]] as [number, number][] }, { elements: Array.from({ length: N * K }, (_, i) => (i % 3 === 0 ? 1 : 0)) }]) {
      const mask = new GradMask(ctx, [N, K], spec);
      const frozen = trainableRef(spec, N, K).map((t) => 1 - t);
      await gradCheck(
        `masked linear ${Object.keys(spec)[0]}`,
        [[M, K], [N, K], [N]],
        ([x, W, b]) => linear(ctx, x!, setGradMask(W!, mask), b),
        ([x, W, b]) => mm(x!, W!, M, N, K, false, true).map((v, i) => v + b![i % N]!),
        { frozen: [null, frozen, null] },
      );
      mask.dispose();
    }
  });
});

describe('tape semantics', () => {
  it('a tensor used twice gets both contributions', async () => {
    await ctx.scopeAsync(async () => {
      const x = requiresGrad(ctx.tensor([1, 2, 3], [3]));
      const l = sum(ctx, add(ctx, mul(ctx, x, x), x)); // Σ x² + x -> 2x + 1
      backward(ctx, l);
      expect(Array.from(await grad(x)!.read())).toEqual([3, 5, 7]);
      zeroGrad([x]);
    });
  });

  it('records nothing without a tensor that requires a gradient, or under noGrad', () => {
    ctx.scope(() => {
      const x = ctx.tensor([1, 2], [2]);
      relu(ctx, x);
      expect(tapeLength(ctx)).toBe(0);
      const w = requiresGrad(ctx.tensor([1, 2], [2]));
      noGrad(ctx, () => relu(ctx, w));
      expect(tapeLength(ctx)).toBe(0);
      relu(ctx, w);
      expect(tapeLength(ctx)).toBe(1);
      clearTape(ctx);
    });
  });

  it('a frozen weight costs no gradient kernel (dispatches counted)', async () => {
    const count = async (trainW: boolean) =>
      ctx.scopeAsync(async () => {
        const x = requiresGrad(ctx.tensor(new Array(12).fill(0.5), [3, 4]));
        const W = requiresGrad(ctx.tensor(new Array(20).fill(0.1), [5, 4]), trainW);
        const l = sum(ctx, linear(ctx, x, W));
        const before = ctx.stats.dispatches;
        backward(ctx, l);
        const n = ctx.stats.dispatches - before;
        expect(grad(W) === null).toBe(!trainW);
        zeroGrad([x, W]);
        l.dispose();
        return n;
      });
    expect(await count(true)).toBe((await count(false)) + 1); // exactly the dW matmul
  });

  it('mse costs one reduction pass forward and one dispatch per input that needs a gradient', async () => {
    await ctx.scopeAsync(async () => {
      const p = requiresGrad(ctx.tensor(new Array(12).fill(0.5), [3, 4]));
      const t = ctx.tensor(new Array(12).fill(0.25), [3, 4]);
      let before = ctx.stats.dispatches;
      const l = mse(ctx, p, t);
      expect(ctx.stats.dispatches - before).toBe(1);
      before = ctx.stats.dispatches;
      backward(ctx, l);
      expect(ctx.stats.dispatches - before).toBe(2); // the seed's fill, then 2/n·g·(p − t)
      expectClose(await grad(p)!.read(), new Array(12).fill((2 / 12) * 0.25), TOL.f32, 'mse gradient');
      zeroGrad([p]);
    });
  });

  it('check mode names the first op that produced NaN or Inf', async () => {
    await ctx.scopeAsync(async () => {
      const w = requiresGrad(ctx.tensor([1, 2, 3], [3]));
      const a = relu(ctx, w);
      const b = scale(ctx, a, 1e38); // 3e38 overflows f32 in the next op, not here
      mul(ctx, b, b);
      expect(await findNonFinite(ctx)).toEqual({ op: 'mul', index: 2, output: 'mul.out' });
      clearTape(ctx);
      relu(ctx, w);
      expect(await findNonFinite(ctx)).toBeNull();
      clearTape(ctx);
    });
  });

  it('a partly frozen weight (setGradMask) gets the masked gradient: frozen rows exactly 0', async () => {
    const [M, K, N] = [6, 5, 8];
    const x = Array.from(randomArray(M * K, rng(1)), Math.fround);
    const w = Array.from(randomArray(N * K, rng(2)), Math.fround);
    const G = Array.from(randomArray(M * N, rng(3)), Math.fround);
    const mask = new GradMask(ctx, [N, K], { rows: [[2, 5]] });
    await ctx.scopeAsync(async () => {
      const W = setGradMask(ctx.tensor(w, [N, K]), mask);
      const l = sum(ctx, mul(ctx, linear(ctx, ctx.tensor(x, [M, K]), W), ctx.tensor(G, [M, N])));
      backward(ctx, l);
      const got = await grad(W)!.read();
      const full = mm(G, x, N, K, M, true, false); // dyᵀ·x
      expectClose(got, full.map((v, i) => (Math.floor(i / K) >= 2 && Math.floor(i / K) < 5 ? v : 0)), { atol: 1e-5, rtol: 1e-4 }, 'masked dW');
      zeroGrad([W]);
      l.dispose();
    });
    mask.dispose();
  });

  it('rejects backward on a non-scalar without a seed, and on a tensor not on the tape', () => {
    ctx.scope(() => {
      const x = requiresGrad(ctx.tensor([1, 2], [2]));
      const y = relu(ctx, x);
      expect(() => backward(ctx, y)).toThrow(ShapeError);
      expect(() => backward(ctx, y)).toThrow("backward: 'relu.out' has shape [2]; a non-scalar needs a seed gradient of that shape");
      clearTape(ctx);
      expect(() => backward(ctx, ctx.tensor([1], [1], 'f32', 'c'))).toThrow(ArgumentError);
      expect(() => backward(ctx, ctx.tensor([1], [1], 'f32', 'c'))).toThrow("backward: 'c' is not on the tape");
    });
  });
});

describe('training', () => {
  it('a 3-layer MLP step (forward, backward, AdamW) is one submit; loss falls; live bytes stay flat over 500 steps', async () => {
    const R = rng(42);
    const [B, D, H] = [32, 8, 16];
    // Target: y = sin-ish nonlinear function of x.
    const xData = Array.from(randomArray(B * D, R), Math.fround);
    const yData = Array.from({ length: B }, (_, i) => Math.tanh(xData.slice(i * D, i * D + D).reduce((a, v, j) => a + v * (j % 3 - 1), 0)));
    const init = (n: number, fan: number) => ctx.tensor(randomArray(n, R, -1 / Math.sqrt(fan), 1 / Math.sqrt(fan)), [n]);
    const W1 = requiresGrad(ctx.reshape(init(H * D, D), [H, D]));
    const b1 = requiresGrad(ctx.tensor(new Array(H).fill(0), [H]));
    const W2 = requiresGrad(ctx.reshape(init(H * H, H), [H, H]));
    const b2 = requiresGrad(ctx.tensor(new Array(H).fill(0), [H]));
    const W3 = requiresGrad(ctx.reshape(init(H, H), [1, H]));
    const params = [W1, b1, W2, b2, W3];
    const x = ctx.tensor(xData, [B, D]);
    const y = ctx.tensor(yData, [B, 1]);
    // Gradients go into fixed buffers the optimizer reads: grads are copied there each step.
    const gradBufs = params.map((p) => ctx.empty(p.shape));
    const opt = new AdamW(ctx, params.map((p, i) => ({ params: p, grads: gradBufs[i]! })), { lr: 1e-2, weightDecay: 0 });
    const step = () =>
      ctx.scope(() => {
        const h1 = relu(ctx, linear(ctx, x, W1, b1));
        const h2 = gelu(ctx, linear(ctx, h1, W2, b2));
        const loss = mse(ctx, linear(ctx, h2, W3), y);
        backward(ctx, loss);
        params.forEach((p, i) => {
          ctx.encoder().copyBufferToBuffer(grad(p)!.buffer(), 0, gradBufs[i]!.buffer(), 0, p.byteLength);
        });
        zeroGrad(params);
        opt.step();
        return loss;
      });
    const first = step();
    const l0 = (await first.read())[0]!;
    first.dispose();
    const live: number[] = [];
    let last = l0;
    for (let t = 1; t <= 500; t++) {
      const submits = ctx.stats.submits;
      const loss = step();
      expect(ctx.stats.submits).toBe(submits); // nothing submitted while encoding the step
      if (t % 100 === 0) {
        last = (await loss.read())[0]!;
        expect(ctx.stats.submits).toBe(submits + 1); // the whole step was one submit
        live.push(ctx.memory().liveBytes);
      }
      loss.dispose();
    }
    expect(new Set(live).size).toBe(1);
    expect(last).toBeLessThan(0.2 * l0);
    expect(last).toBeLessThan(0.02);
    opt.dispose();
    for (const t of [...params, ...gradBufs, x, y]) t.dispose();
  });
});
