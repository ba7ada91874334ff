import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import type { DType } from '../../src/gpu/kernel.js';
import {
  type Activation,
  matmul,
  type MatmulVersion,
  matmulVersions,
  pickMatmulVersion,
  matmulConfig,
  subgroupMatmulApplies,
  type TransposedBPlan,
  transposedBPlan,
  transposedBPlans,
} from '../../src/kernels/matmul.js';
import { matmulRef } from '../../src/kernels/matmul.ref.js';
import { expectF16Product, halfArray } from '../f16.js';
import { expectClose, randomArray, rng, TOL } from '../helpers.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

interface Case {
  M: number;
  N: number;
  K: number;
  batchA: number; // 0: rank-2 A (shared over the batch)
  batchB: number;
  transA: boolean;
  transB: boolean;
  /** 'default': no version given, the launcher plans (and may transpose B first). */
  version: MatmulVersion | 'default';
  dtype: DType;
  bias: boolean;
  activation: Activation;
  alpha: number;
  beta: number;
}

function versionsFor(N: number, transB: boolean): MatmulVersion[] {
  return matmulVersions(ctx, N, transB);
}

/**
 * Run one case on the GPU and compare with the f64 reference on the very values the GPU holds
 * (f32 values, or exact f16 values built by `halfArray`).
 */
async function check(c: Case, seed: number): Promise<void> {
  const r = rng(seed);
  const data = (n: number) => (c.dtype === 'f16' ? halfArray(n, r) : Array.from(randomArray(n, r), Math.fround));
  const batch = Math.max(c.batchA, c.batchB, 1);
  const batched = c.batchA > 0 || c.batchB > 0;
  const a = data(Math.max(c.batchA, 1) * c.M * c.K);
  const b = data(Math.max(c.batchB, 1) * c.K * c.N);
  const bias = c.bias ? data(c.N) : undefined;
  const c0 = c.beta !== 0 ? data(batch * c.M * c.N) : undefined;
  const aShape = c.transA ? [c.K, c.M] : [c.M, c.K];
  const bShape = c.transB ? [c.N, c.K] : [c.K, c.N];
  await ctx.scopeAsync(async () => {
    const A = ctx.tensor(a, c.batchA ? [c.batchA, ...aShape] : aShape, c.dtype, 'A');
    const B = ctx.tensor(b, c.batchB ? [c.batchB, ...bShape] : bShape, c.dtype, 'B');
    const biasT = bias ? ctx.tensor(bias, [c.N], c.dtype, 'bias') : undefined;
    const out = c0 ? ctx.tensor(c0, batched ? [batch, c.M, c.N] : [c.M, c.N], c.dtype, 'C') : undefined;
    const C = matmul(ctx, A, B, {
      transA: c.transA,
      transB: c.transB,
      version: c.version === 'default' ? undefined : c.version,
      bias: biasT,
      activation: c.activation,
      alpha: c.alpha,
      beta: c.beta,
      out,
    });
    expect(C.shape).toEqual(batched ? [batch, c.M, c.N] : [c.M, c.N]);
    const got = await C.read();
    const problem = {
      M: c.M,
      N: c.N,
      K: c.K,
      batch,
      strideA: c.batchA > 1 ? c.M * c.K : 0,
      strideB: c.batchB > 1 ? c.K * c.N : 0,
      transA: c.transA,
      transB: c.transB,
    };
    const want = matmulRef({ ...problem, a, b, c: c0, bias, alpha: c.alpha, beta: c.beta, activation: c.activation });
    if (c.dtype === 'f16') {
      // The magnitude |α|·Σ|a·b| + |β·c| + |bias| that f32 rounding errors scale with.
      const abs = (v?: number[]) => v?.map(Math.abs);
      const mag = matmulRef({ ...problem, a: abs(a)!, b: abs(b)!, c: abs(c0), bias: abs(bias), alpha: Math.abs(c.alpha), beta: Math.abs(c.beta) });
      expectF16Product(got, want, mag, { roundings: c.K + 2, activation: c.activation }, `matmul ${JSON.stringify(c)}`);
      return;
    }
    // The error of a K-term dot product grows with K; scale atol by sqrt(K).
    const base = TOL.f32;
    const tol = { atol: base.atol * Math.sqrt(c.K) * 2, rtol: base.rtol };
    expectClose(got, want, tol, `matmul ${JSON.stringify(c)}`);
  });
}

const plain = { batchA: 0, batchB: 0, bias: false, activation: 'none' as const, alpha: 1, beta: 0, dtype: 'f32' as const };

describe('matmul edge shapes, every version and op(A)/op(B)', () => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [1, 7, 5],
    [5, 1, 3],
    [4, 4, 1],
    [2, 3, 4],
    [7, 13, 31],
    [17, 65, 19],
    [65, 63, 129],
    [9, 257, 33],
    [3, 5, 4099], // large K
  ];
  for (const [M, N, K] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        it(`${M}x${N}x${K} transA=${transA} transB=${transB}`, async () => {
          for (const version of versionsFor(N, transB)) {
            await check({ ...plain, M, N, K, transA, transB, version }, M * 1000 + N * 10 + K);
          }
        });
      }
    }
  }

  it('a multi-tile shape with every epilogue on every version', async () => {
    for (const activation of ['none', 'relu', 'gelu'] as const) {
      for (const version of versionsFor(136, false)) {
        await check({ ...plain, M: 70, N: 136, K: 45, transA: false, transB: false, version, bias: true, activation, alpha: 0.5, beta: 0.25 }, 7);
      }
    }
  }, 600_000);

  it('adds a low-rank term s·U·Vᵀ (V as [N,r] or [r,N]) in the same pass, on every version', async () => {
    const [M, N, K, r] = [21, 44, 37, 5];
    const R = rng(77);
    const f = (n: number) => Array.from(randomArray(n, R), Math.fround);
    const a = f(M * K);
    const b = f(K * N);
    const u = f(M * r);
    const v = f(N * r);
    const base = matmulRef({ a, b, M, N, K, alpha: 0.5 });
    for (const vTransposed of [false, true]) {
      // V [N,r] or its transpose [r,N]: the same term either way.
      const vData = vTransposed ? Array.from({ length: N * r }, (_, i) => v[(i % N) * r + Math.floor(i / N)]!) : v;
      const want = base.map((x, i) => {
        const m = Math.floor(i / N);
        const n = i % N;
        let acc = 0;
        for (let j = 0; j < r; j++) acc += u[m * r + j]! * v[n * r + j]!;
        return x + 1.5 * acc;
      });
      for (const version of versionsFor(N, false)) {
        await ctx.scopeAsync(async () => {
          const C = matmul(ctx, ctx.tensor(a, [M, K]), ctx.tensor(b, [K, N]), {
            version,
            alpha: 0.5,
            lowRank: { u: ctx.tensor(u, [M, r]), v: ctx.tensor(vData, vTransposed ? [r, N] : [N, r]), scale: 1.5, vTransposed },
          });
          expectClose(await C.read(), want, { atol: 1e-5 * Math.sqrt(K), rtol: 1e-4 }, `lowRank ${version} vT=${vTransposed}`);
        });
      }
    }
  }, 600_000);

  it('runs a transposed B by every plan that applies (in place, B transposed first, Cᵀ = B·op(A)ᵀ stored transposed), with every epilogue', async () => {
    const cases: [number, number, number, number, number][] = [
      // M, N, K, batchA, batchB
      [40, 12, 8, 0, 0], // N < 32: no swap
      [33, 64, 100, 0, 0], // M % 4 != 0: no swap
      [36, 64, 100, 0, 0],
      [12, 40, 36, 3, 0], // a batch of 3 sharing B (36 rows when A folds)
      [4, 36, 7, 0, 0], // few rows, K % 4 != 0: the swap only
      [31, 8, 8, 0, 0], // in place only
      [12, 20, 36, 3, 3], // B batched: in place only
    ];
    const seen = new Set<TransposedBPlan>();
    const perMatmul = (plan: TransposedBPlan, transA: boolean) => (plan === 'read-in-place' || (plan === 'transpose-a-swap' && transA) ? 1 : 2);
    try {
      for (const [M, N, K, batchA, batchB] of cases) {
        for (const transA of [false, true]) {
          const rows = transA ? M : M * Math.max(batchA, 1);
          const plans = transposedBPlans(ctx, { rows, N, K, transA, transB: true, bShared: batchB === 0 });
          for (const plan of plans) {
            seen.add(plan);
            matmulConfig.transposedB = plan;
            const before = ctx.stats.dispatches;
            await check({ ...plain, M, N, K, batchA, batchB, transA, transB: true, version: 'default' }, M + N + K);
            await check({ ...plain, M, N, K, batchA, batchB, transA, transB: true, version: 'default', bias: true, activation: 'gelu', alpha: 0.5, beta: 0.25 }, 3);
            expect(ctx.stats.dispatches - before, `${plan} ${M}x${N}x${K} transA=${transA}`).toBe(2 * perMatmul(plan, transA));
          }
        }
      }
    } finally {
      matmulConfig.transposedB = 'auto';
    }
    if (ctx.caps.software) expect([...seen].sort()).toEqual(['read-in-place', 'transpose-a-swap', 'transpose-b']);
    else {
      expect([...seen]).toEqual(['read-in-place']);
      console.log('matmul: not a software adapter; B [N,K] is read in place (the transpose plans are for CPU adapters)');
    }
  }, 600_000);

  it('adds the low-rank term on the swapped plan too (V [N,r]; V [r,N] falls back)', async () => {
    const [M, N, K, r] = [24, 44, 37, 5];
    const R = rng(78);
    const f = (n: number) => Array.from(randomArray(n, R), Math.fround);
    const [a, w, u, v, bias] = [f(M * K), f(N * K), f(M * r), f(N * r), f(N)];
    const base = matmulRef({ a, b: w, bias, M, N, K, transB: true, alpha: 0.5 });
    const want = base.map((x, i) => {
      let acc = 0;
      for (let j = 0; j < r; j++) acc += u[Math.floor(i / N) * r + j]! * v[(i % N) * r + j]!;
      return x + 1.5 * acc;
    });
    try {
      for (const vTransposed of [false, true]) {
        const vData = vTransposed ? Array.from({ length: N * r }, (_, i) => v[(i % N) * r + Math.floor(i / N)]!) : v;
        for (const plan of ['transpose-a-swap', 'transpose-b', 'read-in-place'] as const) {
          matmulConfig.transposedB = plan;
          await ctx.scopeAsync(async () => {
            const C = matmul(ctx, ctx.tensor(a, [M, K]), ctx.tensor(w, [N, K]), {
              transB: true,
              alpha: 0.5,
              bias: ctx.tensor(bias, [N]),
              lowRank: { u: ctx.tensor(u, [M, r]), v: ctx.tensor(vData, vTransposed ? [r, N] : [N, r]), scale: 1.5, vTransposed },
            });
            expectClose(await C.read(), want, { atol: 1e-5 * Math.sqrt(K), rtol: 1e-4 }, `lowRank ${plan} vT=${vTransposed}`);
          });
        }
      }
    } finally {
      matmulConfig.transposedB = 'auto';
    }
    if (ctx.caps.software) {
      expect(transposedBPlans(ctx, { rows: M, N, K, transA: false, transB: true, bShared: true, lowRankVT: false })).toContain('transpose-a-swap');
      expect(transposedBPlans(ctx, { rows: M, N, K, transA: false, transB: true, bShared: true, lowRankVT: true })).not.toContain('transpose-a-swap');
    }
  });

  it('by default swaps for few rows on a CPU adapter (where the lanes stay busy), else transposes B, or reads it in place below 32 rows', () => {
    const p = (rows: number, N: number, K: number, transA = false) => transposedBPlan(ctx, { rows, N, K, transA, transB: true, bShared: true });
    if (ctx.caps.software) {
      expect(p(64, 1024, 1024)).toBe('transpose-a-swap'); // x·Wᵀ for a batch of tokens: transpose x
      expect(p(2048, 1024, 1024)).toBe('transpose-b'); // more rows than W: transpose W
      expect(p(512, 1024, 1024)).toBe('transpose-b'); // the swapped product slows as rows grow
      expect(p(256, 1024, 1024, true)).toBe('transpose-a-swap'); // A [K,M] already is op(A)ᵀ
      expect(p(62, 1024, 1024)).toBe('transpose-b'); // rows % 4 != 0
      expect(p(96, 1024, 1024)).toBe('transpose-b'); // Cᵀ would leave a quarter of the lanes idle
      expect(p(128, 1024, 1024)).toBe('transpose-a-swap');
      expect(p(16, 1024, 1024)).toBe('read-in-place'); // too few rows for either rewrite
      expect(p(16, 1024, 1024, true)).toBe('read-in-place');
    } else {
      expect(p(64, 1024, 1024)).toBe('read-in-place');
    }
  });

  it('picks regblock4sg (or regblock4 without subgroups of >= 8 lanes) on a software adapter only where it applies', () => {
    if (ctx.caps.software) {
      const vec4 = subgroupMatmulApplies(ctx) ? 'regblock4sg' : 'regblock4';
      console.log(`matmul: default version on this adapter ${vec4} (subgroups: ${ctx.caps.subgroups}, ${ctx.caps.subgroupMinSize}..${ctx.caps.subgroupMaxSize} lanes)`);
      expect(pickMatmulVersion(ctx, 1024, false)).toBe(vec4);
      expect(pickMatmulVersion(ctx, 1024, true)).toBe('regblock');
      expect(pickMatmulVersion(ctx, 1022, false)).toBe('regblock');
    } else {
      expect(pickMatmulVersion(ctx, 1024, false)).toBe('tiled');
    }
    // The fallback rule, on the capabilities alone (a device without subgroups, or with 4-lane ones).
    const fake = (subgroups: boolean, min: number) =>
      ({ caps: { ...ctx.caps, software: true, subgroups, subgroupMinSize: min, subgroupMaxSize: Math.max(min, 4) } }) as GpuContext;
    expect(pickMatmulVersion(fake(true, 8), 1024, false)).toBe('regblock4sg');
    expect(pickMatmulVersion(fake(true, 4), 1024, false)).toBe('regblock4');
    expect(pickMatmulVersion(fake(false, 0), 1024, false)).toBe('regblock4');
    expect(matmulVersions(fake(false, 0), 1024, false)).not.toContain('regblock4sg');
    expect(() => matmul(fake(true, 4), ctx.empty([2, 4]), ctx.empty([4, 4]), { version: 'regblock4sg' })).toThrow(/regblock4sg needs the subgroups feature with subgroups of >= 8 lanes \(this device: subgroups of 4\.\.4 lanes\)/);
  });
});

describe('matmul f16 storage, f32 accumulation, every version', () => {
  // Checked against the bound of f16 storage with f32 accumulation (test/f16.ts): an
  // f16 accumulator, or a K term left out, lands far outside it.
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [7, 13, 31],
    [17, 64, 19],
    [65, 36, 129],
    [3, 8, 4099], // large K: f32 accumulation error near its bound's γ_K term
  ];
  for (const [M, N, K] of shapes) {
    it(`${M}x${N}x${K}, op(A)/op(B) in all four combinations`, async () => {
      if (!ctx.caps.f16) {
        console.log('matmul: the adapter has no shader-f16; f16 storage refused');
        expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
        return;
      }
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const version of versionsFor(N, transB)) {
            await check({ ...plain, dtype: 'f16', M, N, K, transA, transB, version }, M * 7 + N + K);
          }
        }
      }
    }, 600_000);
  }

  it('with α, β·C, bias and gelu in the epilogue', async () => {
    if (!ctx.caps.f16) return void expect(() => ctx.empty([4], 'f16')).toThrow(/shader-f16/);
    // gelu only: its path goes through every epilogue step (relu is exact; the random problems run it).
    for (const version of versionsFor(72, false)) {
      await check({ ...plain, dtype: 'f16', M: 21, N: 72, K: 45, transA: false, transB: false, version, bias: true, activation: 'gelu', alpha: 0.5, beta: -0.75 }, 9);
    }
  }, 600_000);
});

describe('matmul random shapes (fast-check)', () => {
  const dtypes: DType[] = ['f32'];
  beforeAll(() => {
    if (ctx.caps.f16) dtypes.push('f16');
  });

  it('agrees with the f64 reference on 240 random problems (f32, and f16 where the adapter has shader-f16)', async () => {
    const arb = fc
      .record({
        M: fc.integer({ min: 1, max: 48 }),
        N: fc.integer({ min: 1, max: 80 }),
        K: fc.integer({ min: 1, max: 96 }),
        batchA: fc.constantFrom(0, 0, 1, 3),
        batchB: fc.constantFrom(0, 0, 1, 3),
        transA: fc.boolean(),
        transB: fc.boolean(),
        f16: fc.boolean(),
        epilogue: fc.integer({ min: 0, max: 7 }),
        versionPick: fc.nat(),
        seed: fc.nat(),
      })
      .filter((r) => r.batchA === 0 || r.batchB === 0 || r.batchA === r.batchB || r.batchA === 1 || r.batchB === 1);
    const seen = { f16: 0, batched: 0, trans: new Set<string>(), versions: new Set<string>() };
    await fc.assert(
      fc.asyncProperty(arb, async (r) => {
        const versions = versionsFor(r.N, r.transB);
        const dtype: DType = r.f16 && dtypes.includes('f16') ? 'f16' : 'f32';
        // A quarter of the cases add bias, activation, alpha and beta. They run on the versions that
        // compile fast: lavapipe needs 2–5 s per register-blocked pipeline variant, and the epilogue
        // code they share is also covered on every version by the fixed-shape epilogue test.
        const withEpilogue = r.epilogue < 2;
        const pool = withEpilogue ? versions.filter((v) => v === 'naive' || v === 'tiled') : versions;
        const c: Case = {
          M: r.M,
          N: r.N,
          K: r.K,
          batchA: r.batchA,
          batchB: r.batchB,
          transA: r.transA,
          transB: r.transB,
          version: pool[r.versionPick % pool.length]!,
          dtype,
          bias: withEpilogue,
          activation: withEpilogue ? (['relu', 'gelu'] as const)[r.epilogue]! : 'none',
          alpha: withEpilogue ? 0.75 : 1,
          beta: withEpilogue ? -0.5 : 0,
        };
        if (dtype === 'f16') seen.f16++;
        seen.versions.add(`${c.version} ${dtype}`);
        if (r.batchA || r.batchB) seen.batched++;
        seen.trans.add(`${r.transA}${r.transB}`);
        await check(c, r.seed);
      }),
      { numRuns: 240, seed: 20261127, endOnFailure: true },
    );
    expect(seen.trans.size).toBe(4);
    expect(seen.batched).toBeGreaterThan(40);
    // Every version the adapter runs came up in f16 (the seed is fixed; the fixed-shape tests
    // above run every version in f32).
    console.log(`matmul random problems: ${[...seen.versions].sort().join(', ')}`);
    if (dtypes.includes('f16')) for (const v of matmulVersions(ctx, 4, false)) expect(seen.versions).toContain(`${v} f16`);
    if (ctx.caps.f16) expect(seen.f16).toBeGreaterThan(40);
    else console.log('matmul: the adapter has no shader-f16; the f16 cases ran as f32 (the f16 path was not exercised)');
  }, 900_000);
});
