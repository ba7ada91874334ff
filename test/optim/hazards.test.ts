/**
 * Silent-corruption hazards in the optimizers and the masked gradient (issue 10, item 3), each
 * with a test that fails on the code before its fix.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, DisposedError } from '../../src/gpu/errors.js';
import { GradMask, maskedGrad } from '../../src/kernels/maskedGrad.js';
import { ParamArena } from '../../src/optim/arena.js';
import { AdamW, type ParamGroup, SGD } from '../../src/kernels/optim.js';
import { randomArray, rng, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('optimizer group options are validated whether or not the group carries its gradients', () => {
  // Before the fix a group's lr and weight decay were checked only inside `if (g.grads)`: groups
  // whose gradients come to step() went unchecked. In an arena they went into the group table
  // as bits: lr NaN turned every weight of the group into NaN, a negative lr marked the group
  // as absent (the kernel's sentinel) so it silently never trained.
  const bad: [keyof ParamGroup, number][] = [
    ['lr', NaN],
    ['lr', -1e-3],
    ['lr', Infinity],
    ['weightDecay', NaN],
    ['weightDecay', -0.1],
  ];
  for (const layout of ['arena', 'tensors'] as const) {
    for (const [name, make] of [
      ['AdamW', (g: ParamGroup[]) => new AdamW(ctx, g, { lr: 1e-3 })],
      ['SGD', (g: ParamGroup[]) => new SGD(ctx, g, { lr: 1e-3, momentum: 0.9 })],
    ] as const) {
      it(`${name}, parameters as ${layout}: a bad lr or weightDecay is refused at construction`, () => {
        ctx.scope(() => {
          const arena = layout === 'arena' ? new ParamArena(ctx, [[8], [3, 5]]) : null;
          const params = arena ? arena.params : [ctx.empty([8]), ctx.empty([3, 5])];
          for (const [key, v] of bad) {
            const groups: ParamGroup[] = [{ params: params[0]! }, { params: params[1]!, [key]: v }];
            let err: unknown;
            try {
              make(groups).dispose();
            } catch (e) {
              err = e;
            }
            expect(err, `${key} = ${v}`).toBeInstanceOf(ArgumentError);
            expect((err as Error).message).toBe(`${name}: groups[1].${key} = ${v}, expected a finite number >= 0`);
          }
          arena?.dispose();
        });
      });
    }
  }

  it('a valid group without grads (given to step) still trains as its lr says', async () => {
    await ctx.scopeAsync(async () => {
      const arena = new ParamArena(ctx, [[8], [5]]);
      const g = [ctx.tensor(new Array(8).fill(1), [8]), ctx.tensor(new Array(5).fill(2), [5])];
      const opt = new SGD(ctx, [{ params: arena.params[0]!, lr: 0.5 }, { params: arena.params[1]!, lr: 0.25 }], { lr: 1 });
      opt.step(1, g);
      expect(await arena.params[0]!.toArray()).toEqual(new Array(8).fill(-0.5));
      expect(await arena.params[1]!.toArray()).toEqual(new Array(5).fill(-0.5));
      opt.dispose();
      arena.dispose();
    });
  });
});

describe('GradMask', () => {
  it('a disposed mask throws DisposedError (it threw ArgumentError)', () => {
    const mask = new GradMask(ctx, [4, 5], { rows: [[0, 2]] });
    mask.dispose();
    ctx.scope(() => {
      let err: unknown;
      try {
        maskedGrad(ctx, ctx.empty([3, 4]), ctx.empty([3, 5]), mask);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DisposedError);
      expect((err as Error).message).toBe('maskedGrad: the GradMask [4,5] was disposed');
      expect(mask.disposed).toBe(true);
    });
    expect(() => mask.rowBlock(0, 2)).toThrow(new DisposedError('GradMask.rowBlock: the GradMask [4,5] was disposed'));
    expect(() => mask.forVersion('naive')).toThrow(DisposedError);
  });

  it('an element mask over 4M entries works (its words were spread into Array.push, which overflowed the stack)', async () => {
    const N = 2048;
    const K = 2048;
    const M = 3;
    // The trainable pattern, decoded here on its own (not through GradMask.trainable).
    const trains = (i: number, j: number) => (i * 31 + j * 17) % 7 < 3;
    const elements = new Uint8Array(N * K);
    for (let i = 0; i < N; i++) for (let j = 0; j < K; j++) elements[i * K + j] = trains(i, j) ? 1 : 0;
    const dy = randomArray(M * N, rng(1));
    const x = randomArray(M * K, rng(2));
    const mask = new GradMask(ctx, [N, K], { elements });
    const got = await ctx.scopeAsync(() => maskedGrad(ctx, ctx.tensor(dy, [M, N]), ctx.tensor(x, [M, K]), mask).read());
    mask.dispose();
    let bad = 0;
    let first = '';
    for (let i = 0; i < N; i++) {
      for (let j = 0; j < K; j++) {
        let want = 0;
        if (trains(i, j)) for (let m = 0; m < M; m++) want += dy[m * N + i]! * x[m * K + j]!;
        const g = got[i * K + j]!;
        const ok = trains(i, j) ? Math.abs(g - want) <= 1e-6 + 1e-5 * Math.abs(want) : g === 0;
        if (!ok && bad++ === 0) first = `(${i},${j}) got ${g}, expected ${want}`;
      }
    }
    expect(bad, first).toBe(0);
  });
});
