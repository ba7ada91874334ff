import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { AdamW, type ParamGroup, schedules, SGD } from '../../src/optim/optimizer.js';
import { adamwRef, clipFactorRef, refGroup, sgdRef } from '../../src/optim/optimizer.ref.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const STEPS = 12;
const SIZES = [37, 1000];
const TOL = { atol: 1e-6, rtol: 1e-5 };

type Make = (groups: ParamGroup[]) => AdamW | SGD;

/** Run the GPU optimizer and the f64 reference side by side, new random gradients each step. */
async function compare(make: Make, lrs: number[], wd: number, refStep: (g: ReturnType<typeof refGroup>, grad: Float32Array, t: number, clip: number) => void, maxNorm?: number) {
  const R = rng(lrs.length * 7 + wd * 100);
  await ctx.scopeAsync(async () => {
    const init = SIZES.map((n) => randomArray(n, R));
    const params = init.map((d, i) => ctx.tensor(d, [SIZES[i]!]));
    const grads = SIZES.map((n) => ctx.empty([n]));
    const opt = make(params.map((p, i) => ({ params: p, grads: grads[i]!, lr: lrs[i] })));
    const refs = init.map((d, i) => refGroup(d, lrs[i]!, wd));
    for (let t = 1; t <= STEPS; t++) {
      const g = SIZES.map((n) => randomArray(n, R, -2, 2));
      g.forEach((d, i) => grads[i]!.write(d));
      const submits = ctx.stats.submits;
      opt.step();
      expect(ctx.stats.submits).toBe(submits); // step() only encodes
      const clip = clipFactorRef(g, maxNorm);
      refs.forEach((r, i) => refStep(r, g[i]!, t, clip));
      for (let i = 0; i < SIZES.length; i++) expectClose(await params[i]!.read(), refs[i]!.p, TOL, `step ${t} group ${i}`);
    }
    opt.dispose();
  });
}

describe('fused optimizers against torch update formulas (f64 reference, 12 steps)', () => {
  for (const amsgrad of [false, true]) {
    it(`AdamW${amsgrad ? ' amsgrad' : ''}, weight decay, two groups with their own lr (LoRA+)`, async () => {
      await compare(
        (groups) => new AdamW(ctx, groups, { lr: 1e-3, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.05, amsgrad }),
        [1e-2, 1.6e-1],
        0.05,
        (g, grad, t, clip) => adamwRef(g, grad, t, { b1: 0.9, b2: 0.99, eps: 1e-8, amsgrad, clip }),
      );
    });
  }

  it('AdamW with global-norm clipping computed on the GPU', async () => {
    await compare(
      (groups) => new AdamW(ctx, groups, { lr: 1e-2, weightDecay: 0, maxGradNorm: 1.5 }),
      [1e-2, 1e-2],
      0,
      (g, grad, t, clip) => {
        expect(clip).toBeLessThan(0.2); // clipping is active
        adamwRef(g, grad, t, { b1: 0.9, b2: 0.999, eps: 1e-8, amsgrad: false, clip });
      },
      1.5,
    );
  });

  for (const [name, o] of [
    ['plain', { momentum: 0, dampening: 0, nesterov: false }],
    ['momentum with dampening', { momentum: 0.9, dampening: 0.1, nesterov: false }],
    ['Nesterov', { momentum: 0.8, dampening: 0, nesterov: true }],
  ] as const) {
    it(`SGD ${name}, weight decay`, async () => {
      await compare(
        (groups) => new SGD(ctx, groups, { lr: 0.05, weightDecay: 0.01, ...o }),
        [0.05, 0.02],
        0.01,
        (g, grad, t, clip) => sgdRef(g, grad, t, { ...o, clip }),
      );
    });
  }

  it('SGD with clipping over two groups', async () => {
    await compare(
      (groups) => new SGD(ctx, groups, { lr: 0.1, momentum: 0.9, maxGradNorm: 2 }),
      [0.1, 0.1],
      0,
      (g, grad, t, clip) => sgdRef(g, grad, t, { momentum: 0.9, dampening: 0, nesterov: false, clip }),
      2,
    );
  });

  it('state save and load resumes exactly', async () => {
    await ctx.scopeAsync(async () => {
      const p0 = randomArray(50, rng(1));
      const grads = [randomArray(50, rng(2)), randomArray(50, rng(3)), randomArray(50, rng(4))];
      const run = async (split: boolean) => {
        const p = ctx.tensor(p0, [50]);
        const g = ctx.empty([50]);
        let opt = new AdamW(ctx, [{ params: p, grads: g }], { lr: 0.01 });
        for (let t = 0; t < 3; t++) {
          if (split && t === 2) {
            const saved = await opt.stateDict();
            opt.dispose();
            opt = new AdamW(ctx, [{ params: p, grads: g }], { lr: 0.01 });
            opt.loadStateDict(saved);
            expect(opt.t).toBe(2);
          }
          g.write(grads[t]!);
          opt.step();
        }
        opt.dispose();
        return p.read();
      };
      expect(Array.from(await run(true))).toEqual(Array.from(await run(false)));
    });
  });

  it('rejects bad hyperparameters and mismatched groups', () => {
    ctx.scope(() => {
      const p = ctx.empty([4]);
      expect(() => new AdamW(ctx, [{ params: p, grads: ctx.empty([5]) }], { lr: 1 })).toThrow('AdamW: groups[0] params [4] and grads [5] differ in size');
      expect(() => new AdamW(ctx, [{ params: p, grads: ctx.empty([4]) }], { lr: NaN })).toThrow('AdamW: lr = NaN, expected a finite number >= 0');
      expect(() => new AdamW(ctx, [{ params: p, grads: ctx.empty([4]) }], { lr: 1, betas: [1, 0.9] })).toThrow(/betas = \[1, 0.9\]/);
      expect(() => new SGD(ctx, [{ params: p, grads: ctx.empty([4]) }], { lr: 1, nesterov: true })).toThrow(/nesterov needs momentum/);
      expect(() => new SGD(ctx, [], { lr: 1 })).toThrow('SGD: no parameter groups');
    });
  });

  it('schedules', () => {
    expect(schedules.constant()()).toBe(1);
    expect(schedules.linearWarmup(10)(5)).toBe(0.5);
    expect(schedules.linearWarmup(10)(50)).toBe(1);
    const cos = schedules.cosine(110, 10, 0.1);
    expect(cos(5)).toBe(0.5);
    expect(cos(10)).toBe(1);
    expect(cos(60)).toBeCloseTo(0.55, 10);
    expect(cos(110)).toBeCloseTo(0.1, 10);
    const lin = schedules.linearDecay(20, 10);
    expect(lin(15)).toBe(0.5);
    expect(lin(25)).toBe(0);
  });
});
