/**
 * The tape's two rules:
 * - outputs of recorded ops belong to the tape, and backward() releases them (all but the
 *   loss and those passed in `keep`): using one afterwards is a DisposedError that says so;
 * - a parameter that requires a gradient gets it only through the recording ops (`autograd.*`):
 *   when a non-recording kernel (the top-level `matmul`, `add`, `relu`…) consumed it on the way
 *   to the loss, backward() refuses with an ArgumentError naming the parameter, instead of
 *   leaving it silently without its gradient.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as autograd from '../../src/autograd/ops.js';
import { backward, clearTape, grad, noGrad, requiresGrad, tapeLength, zeroGrad } from '../../src/autograd/tape.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, DisposedError } from '../../src/gpu/errors.js';
import { add, relu } from '../../src/kernels/elementwise.js';
import { matmul } from '../../src/kernels/matmul.js';
import { sum } from '../../src/kernels/reduce.js';
import { AdamW } from '../../src/kernels/optim.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const X = [1, -2, 3, 0.5, -1, 2]; // [2,3]
const W = [0.5, -1, 2, 1, 0, -0.5]; // [3,2]

/** x·w for x [2,3], w [3,2], then relu (f64). */
function reluXW(): number[] {
  const out: number[] = [];
  for (let i = 0; i < 2; i++) for (let j = 0; j < 2; j++) out.push(Math.max(0, X[3 * i]! * W[j]! + X[3 * i + 1]! * W[2 + j]! + X[3 * i + 2]! * W[4 + j]!));
  return out;
}

describe('backward releases recorded outputs, explicitly', () => {
  it('an output the caller holds is released by backward(): reading it is a DisposedError that names backward', async () => {
    await ctx.scopeAsync(async () => {
      const w = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w'));
      const h = autograd.relu(ctx, autograd.matmul(ctx, ctx.tensor(X, [2, 3]), w));
      const l = autograd.sum(ctx, h);
      backward(ctx, l);
      expect(h.disposed).toBe(true);
      const e = await h.read().then(
        () => null,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(DisposedError);
      expect(String(e)).toMatch(/tensor 'relu\.out' .* was released by backward\(\)/);
      zeroGrad([w]);
    });
  });

  it('backward(ctx, loss, { keep }) leaves the kept outputs to the caller, with their values', async () => {
    await ctx.scopeAsync(async () => {
      const w = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w'));
      const h = autograd.relu(ctx, autograd.matmul(ctx, ctx.tensor(X, [2, 3]), w));
      const l = autograd.sum(ctx, h);
      backward(ctx, l, { keep: [h] });
      expect(h.disposed).toBe(false);
      expect(await h.toArray()).toEqual(reluXW());
      expect(grad(w)).not.toBeNull();
      expect(tapeLength(ctx)).toBe(0);
      h.dispose();
      zeroGrad([w]);
    });
  });
});

describe('a parameter consumed by a non-recording kernel', () => {
  it('feeding a recorded op: backward names the parameter and the kernel', () => {
    ctx.scope(() => {
      const x = ctx.tensor(X, [2, 3]);
      const w1 = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w1'));
      const w2 = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w2'));
      // autograd.matmul records; the top-level matmul does not: w2 would silently get no gradient.
      const l = autograd.sum(ctx, autograd.add(ctx, autograd.matmul(ctx, x, w1), matmul(ctx, x, w2)));
      let e: unknown = null;
      try {
        backward(ctx, l);
      } catch (err) {
        e = err;
      }
      expect(e).toBeInstanceOf(ArgumentError);
      expect(String(e)).toMatch(/backward: parameter 'w2' requires a gradient but .*matmul\.wgsl.*records nothing/);
      expect(grad(w1)).toBeNull(); // refused before anything ran
      clearTape(ctx);
    });
  });

  it('when the whole path is unrecorded, or a recorded output goes through a non-recording kernel', () => {
    ctx.scope(() => {
      const x = ctx.tensor(X, [2, 3]);
      const w = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w'));
      expect(() => backward(ctx, sum(ctx, matmul(ctx, x, w), 'all'))).toThrow(/backward: parameter 'w' requires a gradient/);
      const h = autograd.matmul(ctx, x, w);
      const l = autograd.sum(ctx, relu(ctx, h)); // relu: the kernel, not autograd.relu
      expect(() => backward(ctx, l)).toThrow(/backward: parameter 'w' requires a gradient but .*elementwise\.wgsl:relu/);
      clearTape(ctx);
    });
  });

  it('no false alarm: noGrad, detach, and optimizer steps that read and write the parameters', async () => {
    await ctx.scopeAsync(async () => {
      const x = ctx.tensor(X, [2, 3]);
      const w = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w'));
      const target = noGrad(ctx, () => matmul(ctx, x, w)); // a constant computed from w, on purpose
      const frozen = autograd.detach(ctx, w);
      const opt = new AdamW(ctx, [{ params: w }], { lr: 0.01 });
      for (let step = 0; step < 3; step++) {
        const l = ctx.scope(() => {
          const y = autograd.add(ctx, autograd.matmul(ctx, x, w), autograd.matmul(ctx, x, frozen));
          const loss = autograd.mse(ctx, y, add(ctx, target, target));
          backward(ctx, loss);
          opt.step(1, [grad(w)]);
          zeroGrad([w]);
          return loss;
        });
        expect(Number.isFinite((await l.read())[0]!)).toBe(true);
        l.dispose();
      }
      opt.dispose();
    });
  });
});

describe('a forward in a scope that closes before backward', () => {
  it("keeps what backward reads (inputs made in the scope, a cross-entropy target) until backward, then frees it", async () => {
    const w = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w'));
    const live0 = ctx.memory().liveBytes;
    // x0 needs no gradient, so relu(x0) is not recorded: its output belongs to the scope, and
    // the linear layer's backward reads it (dW = yᵀ·relu(x0)).
    const loss = ctx.scope(() => {
      const x0 = ctx.tensor(X, [2, 3], 'f32', 'x0');
      const h = autograd.matmul(ctx, relu(ctx, x0), w);
      const labels = ctx.tensor([1, 0], [2], 'f32', 'labels');
      return autograd.crossEntropy(ctx, h, { labels });
    });
    backward(ctx, loss);
    const g = await grad(w)!.read();
    // d mean CE / dw by hand: p = softmax(relu(x)·w), dlogits = (p − onehot)/2, dw = relu(x)ᵀ·dlogits.
    const rx = X.map((v) => Math.max(0, v));
    const logits = [0, 1].map((i) => [0, 1].map((j) => rx[3 * i]! * W[j]! + rx[3 * i + 1]! * W[2 + j]! + rx[3 * i + 2]! * W[4 + j]!));
    const dl = logits.map((row, i) => {
      const m = Math.max(...row);
      const e = row.map((v) => Math.exp(v - m));
      const z = e[0]! + e[1]!;
      return e.map((v, j) => (v / z - (j === [1, 0][i] ? 1 : 0)) / 2);
    });
    const want = [0, 1, 2].flatMap((k) => [0, 1].map((j) => rx[k]! * dl[0]![j]! + rx[3 + k]! * dl[1]![j]!));
    g.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 5));
    loss.dispose();
    zeroGrad([w]);
    expect(ctx.memory().liveBytes).toBe(live0); // what the tape took over is freed by backward
    w.dispose();
  });

  it('a tensor made in an outer scope and used by several steps stays the scope\'s (each backward leaves it alone)', async () => {
    await ctx.scopeAsync(async () => {
      const w = requiresGrad(ctx.tensor(W, [3, 2], 'f32', 'w'));
      const x = ctx.tensor(X, [2, 3], 'f32', 'x');
      for (let step = 0; step < 3; step++) {
        const l = ctx.scope(() => {
          const loss = autograd.sum(ctx, autograd.matmul(ctx, x, w));
          backward(ctx, loss);
          zeroGrad([w]);
          return loss;
        });
        l.dispose();
      }
      expect(x.disposed).toBe(false);
      expect(Array.from(await x.read())).toEqual(X);
    });
  });
});
