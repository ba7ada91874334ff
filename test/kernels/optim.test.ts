import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ParamArena } from '../../src/optim/arena.js';
import { AdamW, type ParamGroup, schedules, SGD } from '../../src/kernels/optim.js';
import { adamwRef, clipFactorRef, refGroup, sgdRef } from '../../src/kernels/optim.ref.js';
import { type Tensor, windowAlignment } from '../../src/gpu/tensor.js';
import { expectClose, randomArray, rng, testContext } from '../helpers.js';
import { loraTrainingInit, trainLora } from '../loraTraining.js';

let ctx: GpuContext;
const fillT = (shape: number[], v: number) => ctx.tensor(new Array(shape.reduce((a, b) => a * b, 1)).fill(v), shape);
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const STEPS = 12;
const SIZES = [37, 1000];
const TOL = { atol: 1e-6, rtol: 1e-5 };

type Make = (groups: ParamGroup[]) => AdamW | SGD;

/**
 * How the parameters are stored: separate tensors (a dispatch each), or windows of one
 * ParamArena (one dispatch for all groups), with a slot between them that no group owns and
 * that must come out untouched.
 */
type Storage = 'tensors' | 'arena';

/** Run the GPU optimizer and the f64 reference side by side, new random gradients each step. */
async function compare(storage: Storage, make: Make, lrs: number[], wd: number, refStep: (g: ReturnType<typeof refGroup>, grad: Float32Array, t: number, clip: number) => void, maxNorm?: number) {
  const R = rng(lrs.length * 7 + wd * 100);
  await ctx.scopeAsync(async () => {
    const init = SIZES.map((n) => randomArray(n, R));
    const bystander = randomArray(70, R);
    let params: Tensor[];
    let arena: ParamArena | undefined;
    if (storage === 'arena') {
      arena = new ParamArena(ctx, [ctx.tensor(init[0]!, [SIZES[0]!]), [70], ctx.tensor(init[1]!, [SIZES[1]!])]);
      arena.params[1]!.write(bystander);
      params = [arena.params[0]!, arena.params[2]!];
    } else params = init.map((d, i) => ctx.tensor(d, [SIZES[i]!]));
    const grads = SIZES.map((n) => ctx.empty([n]));
    const opt = make(params.map((p, i) => ({ params: p, grads: grads[i]!, lr: lrs[i] })));
    const refs = init.map((d, i) => refGroup(d, lrs[i]!, wd));
    for (let t = 1; t <= STEPS; t++) {
      const g = SIZES.map((n) => randomArray(n, R, -2, 2));
      g.forEach((d, i) => grads[i]!.write(d));
      const submits = ctx.stats.submits;
      const dispatches = ctx.stats.dispatches;
      opt.step();
      expect(ctx.stats.submits).toBe(submits); // step() only encodes
      // One update dispatch over the arena, else one per group; clipping adds the norm: one
      // reduction over the arena's gradients (one pass at these sizes), else one per group and
      // the adds between them.
      const updates = storage === 'arena' ? 1 : SIZES.length;
      const norm = maxNorm === undefined ? 0 : storage === 'arena' ? 1 : 2 * SIZES.length - 1;
      expect(ctx.stats.dispatches - dispatches).toBe(updates + norm);
      const clip = clipFactorRef(g, maxNorm);
      refs.forEach((r, i) => refStep(r, g[i]!, t, clip));
      for (let i = 0; i < SIZES.length; i++) expectClose(await params[i]!.read(), refs[i]!.p, TOL, `${storage} step ${t} group ${i}`);
    }
    if (arena) expect(Array.from(await arena.params[1]!.read())).toEqual(Array.from(bystander));
    opt.dispose();
    arena?.dispose();
  });
}

describe.each(['tensors', 'arena'] as const)('fused optimizers against torch update formulas (f64 reference, 12 steps), parameters as %s', (storage) => {
  for (const amsgrad of [false, true]) {
    it(`AdamW${amsgrad ? ' amsgrad' : ''}, weight decay, two groups with their own lr (LoRA+)`, async () => {
      await compare(
        storage,
        (groups) => new AdamW(ctx, groups, { lr: 1e-3, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.05, amsgrad }),
        [1e-2, 1.6e-1],
        0.05,
        (g, grad, t, clip) => adamwRef(g, grad, t, { b1: 0.9, b2: 0.99, eps: 1e-8, amsgrad, clip }),
      );
    });
  }

  it('AdamW with global-norm clipping computed on the GPU', async () => {
    await compare(
      storage,
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
        storage,
        (groups) => new SGD(ctx, groups, { lr: 0.05, weightDecay: 0.01, ...o }),
        [0.05, 0.02],
        0.01,
        (g, grad, t, clip) => sgdRef(g, grad, t, { ...o, clip }),
      );
    });
  }

  it('SGD with clipping over two groups', async () => {
    await compare(
      storage,
      (groups) => new SGD(ctx, groups, { lr: 0.1, momentum: 0.9, maxGradNorm: 2 }),
      [0.1, 0.1],
      0,
      (g, grad, t, clip) => sgdRef(g, grad, t, { momentum: 0.9, dampening: 0, nesterov: false, clip }),
      2,
    );
  });

});

describe('optimizer state, errors and schedules', () => {
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

  it('state save and load resumes exactly with an arena (per-group state windows)', async () => {
    await ctx.scopeAsync(async () => {
      const init = [randomArray(30, rng(11)), randomArray(90, rng(12))];
      const grads = [0, 1, 2].map((t) => [randomArray(30, rng(20 + t)), randomArray(90, rng(30 + t))]);
      const run = async (split: boolean) => {
        const arena = new ParamArena(ctx, [ctx.tensor(init[0]!, [30]), ctx.tensor(init[1]!, [3, 30])]);
        const g = [ctx.empty([30]), ctx.empty([3, 30])];
        const make = () => new AdamW(ctx, arena.params.map((p, i) => ({ params: p, grads: g[i], lr: 0.01 * (i + 1) })), { lr: 0.01 });
        let opt = make();
        for (let t = 0; t < 3; t++) {
          if (split && t === 2) {
            const saved = await opt.stateDict();
            expect(saved.state.map((slots) => slots.map((x) => x.length))).toEqual([[30, 30], [90, 90]]);
            opt.dispose();
            opt = make();
            opt.loadStateDict(saved);
          }
          g.forEach((x, i) => x.write(grads[t]![i]!));
          opt.step();
        }
        opt.dispose();
        const out = await Promise.all(arena.params.map((p) => p.read()));
        arena.dispose();
        return out.flatMap((x) => Array.from(x));
      };
      expect(await run(true)).toEqual(await run(false));
    });
  });

  it('one update dispatch for any number of arena groups; overlapping groups are refused', async () => {
    await ctx.scopeAsync(async () => {
      const shapes = Array.from({ length: 20 }, (_, i) => [3 + i, 5]);
      const arena = new ParamArena(ctx, shapes);
      const sep = shapes.map((s) => fillT(s, 0));
      const grads = shapes.map((s) => fillT(s, 0.5));
      // Groups given in reverse order of their slots, each with its own lr.
      const lr = (i: number) => 0.01 * (i + 1);
      for (const [params, want] of [[arena.params, 1], [sep, 20]] as const) {
        const groups = params.map((p, i) => ({ params: p, grads: grads[i], lr: lr(i) })).reverse();
        const opt = new SGD(ctx, groups, { lr: 0.1 });
        const before = ctx.stats.dispatches;
        opt.step();
        expect(ctx.stats.dispatches - before).toBe(want);
        opt.dispose();
      }
      // Every slot moved by −lr·g = −0.5·lr of its own group, in both layouts.
      for (const params of [arena.params, sep]) {
        for (let i = 0; i < params.length; i++) expect(new Set(await params[i]!.toArray())).toEqual(new Set([Math.fround(-0.5 * Math.fround(lr(i)))]));
      }
      const whole = arena.storage;
      expect(() => new SGD(ctx, [{ params: arena.params[0]!, grads: grads[0] }, { params: arena.params[0]!.view([15]), grads: grads[0] }], { lr: 1 })).toThrow(
        /SGD: groups\[0\] and groups\[1\] share storage \(overlapping windows of 'ParamArena'\)/,
      );
      expect(whole.size).toBe(arena.size);
      arena.dispose();
      await expect(arena.params[3]!.read()).rejects.toThrow(/ParamArena\[3\]' \[6,5\] f32 was disposed/);
    });
  });

  it('ParamArena: slots copied from tensors or zeroed, aligned, gaps zero; bad specs refused', async () => {
    await ctx.scopeAsync(async () => {
      const align = windowAlignment(ctx);
      const src = ctx.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const arena = new ParamArena(ctx, [[3], src, [1, 1]], ['first', 'copied']);
      expect(arena.params.map((p) => p.shape)).toEqual([[3], [2, 3], [1, 1]]);
      expect(arena.params.map((p) => p.label)).toEqual(['first', 'copied', 'ParamArena[2]']);
      expect(arena.params.every((p) => p.byteOffset % align === 0)).toBe(true);
      expect(await arena.params[1]!.toArray()).toEqual([1, 2, 3, 4, 5, 6]);
      const all = await arena.storage.toArray();
      expect(all.filter((v) => v !== 0)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(arena.slotOf(arena.params[2]!)).toBe(2);
      expect(arena.slotOf(src)).toBe(-1);
      arena.dispose();
      expect(() => new ParamArena(ctx, [])).toThrow('ParamArena: no parameters');
      expect(() => new ParamArena(ctx, [[2, 0]])).toThrow(/ParamArena: specs\[0\]: shape \[2,0\]/);
      if (ctx.caps.f16) expect(() => new ParamArena(ctx, [ctx.empty([2], 'f16', 'h')])).toThrow("ParamArena: specs[0] 'h' is f16, expected f32");
    });
  });

  it('a LoRA layer whose A and B live in an arena trains exactly as with separate tensors (one AdamW dispatch)', async () => {
    const c = { M: 6, N: 12, K: 20, rank: 4, seed: 99, steps: 5, maxGradNorm: 5 };
    const sep = await trainLora(ctx, c, false);
    const packed = await trainLora(ctx, c, true);
    expect(packed.optimizerDispatches).toBe(2); // the norm's reduction and one update
    expect(sep.optimizerDispatches).toBe(5); // two reductions, an add, two updates
    expectClose(packed.out, sep.out, { atol: 1e-6, rtol: 1e-5 }, 'LoRA factors after 5 AdamW steps, arena vs separate');
    expect(packed.out).not.toEqual(loraTrainingInit(c)); // they moved
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
