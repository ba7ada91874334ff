/**
 * Cross-entropy class labels live on the GPU (an f32 tensor holding integers): one that is not
 * an integer in [0, C) (nor the ignore index) is refused. The kernel checks every row and
 * records the first bad one; the next read()/sync() throws an ArgumentError naming it, with
 * no readback inside the step.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backward, requiresGrad } from '../../src/autograd/tape.js';
import * as autograd from '../../src/autograd/ops.js';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError } from '../../src/gpu/errors.js';
import { crossEntropy } from '../../src/kernels/softmax.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const C = 5;
const LOGITS = [0.1, -0.3, 0.7, 0.2, -1, 1.5, 0.4, -0.2, 0.3, 0.9, -0.6, 0.05, 0.8, -0.4, 0.25, 0.6, 0.1, -0.9, 0.45, 0.3];

/** Mean cross-entropy over rows whose label is not `ignore` (f64, independent of the kernels). */
function xentRef(x: number[], labels: number[], ignore = -100): number {
  let total = 0;
  let count = 0;
  labels.forEach((l, r) => {
    if (l === ignore) return;
    const row = x.slice(r * C, r * C + C);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    total += lse - row[l]!;
    count++;
  });
  return total / Math.max(count, 1);
}

describe('cross-entropy labels are checked on the GPU', () => {
  it('an out-of-range, negative, fractional or NaN label is refused at the next read, naming the first bad index', async () => {
    for (const [labels, index, value] of [
      [[0, 7, 2, 1], 1, '7'],
      [[0, 1, -1, 9], 2, '-1'],
      [[0, 2.5, 3, 3.25], 1, '2.5'],
      [[1, 2, 3, NaN], 3, 'NaN'],
      [[0, 1, 2, 5], 3, '5'],
    ] as const) {
      await ctx.scopeAsync(async () => {
        const submits = ctx.stats.submits;
        const { loss } = crossEntropy(ctx, ctx.tensor(LOGITS, [4, C]), { labels: ctx.tensor(labels, [4]) });
        expect(ctx.stats.submits).toBe(submits); // nothing read back or submitted while encoding
        const e = await loss.read().then(
          () => null,
          (err: unknown) => err,
        );
        expect(e, `labels [${labels.join(',')}]`).toBeInstanceOf(ArgumentError);
        expect(String(e)).toContain(`crossEntropy: labels[${index}] = ${value}, expected an integer class index in [0, ${C})`);
      });
    }
  });

  it('the check resets: valid labels after a refused batch read normally; ignoreIndex rows are not errors', async () => {
    await ctx.scopeAsync(async () => {
      const bad = crossEntropy(ctx, ctx.tensor(LOGITS, [4, C]), { labels: ctx.tensor([0, 1, 2, 99], [4]) });
      await expect(ctx.sync()).rejects.toThrow(ArgumentError);
      bad.loss.dispose();
      const labels = [4, -100, 0, 2];
      const { loss } = crossEntropy(ctx, ctx.tensor(LOGITS, [4, C]), { labels: ctx.tensor(labels, [4]) });
      const got = (await loss.read())[0]!;
      expect(Math.abs(got - xentRef(LOGITS, labels))).toBeLessThan(1e-5);
      const ignoreSeven = crossEntropy(ctx, ctx.tensor(LOGITS, [4, C]), { labels: ctx.tensor([7, 1, 7, 3], [4]) }, { ignoreIndex: 7 });
      expect(Math.abs((await ignoreSeven.loss.read())[0]! - xentRef(LOGITS, [7, 1, 7, 3], 7))).toBeLessThan(1e-5);
    });
  });

  it('through autograd: a bad label fails the step at its sync (the step stays one submit)', async () => {
    await ctx.scopeAsync(async () => {
      const x = requiresGrad(ctx.tensor(LOGITS, [4, C], 'f32', 'logits'));
      const submits = ctx.stats.submits;
      const l = autograd.crossEntropy(ctx, x, { labels: ctx.tensor([0, 1, 5, 2], [4]) });
      backward(ctx, l);
      expect(ctx.stats.submits).toBe(submits);
      await expect(ctx.sync()).rejects.toThrow(/crossEntropy: labels\[2\] = 5/);
      expect(ctx.stats.submits).toBe(submits + 1);
    });
  });
});
