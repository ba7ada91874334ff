/**
 * A window never touches its neighbours, whatever the kernel: every kernel that writes an
 * odd-sized window (5 f32 = 20 bytes, not a whole number of 16-byte vec4s) either leaves the
 * bytes after it exactly as they were or is refused with a BindingError before anything is
 * encoded. The neighbours hold sentinels, and the whole parent is read back after each op.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { BindingError } from '../../src/gpu/errors.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { windowAlignment } from '../../src/gpu/tensor.js';
import { add, axpy, copy, fill, scale } from '../../src/kernels/elementwise.js';
import { lerp, lerpInPlace } from '../../src/kernels/lerp.js';
import { matmul } from '../../src/kernels/matmul.js';
import { dropout, uniform } from '../../src/kernels/random.js';
import { ParamArena } from '../../src/optim/arena.js';
import { AdamW } from '../../src/kernels/optim.js';
import { expectClose, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const SENTINEL = 777;
const A = [1, 2, 3, 4, 5];
const B = [10, 20, 30, 40, 50];

/**
 * A parent of two window slots filled with sentinels, its first 5 elements as a window `w`, and
 * a second window `next` at the next aligned offset (a neighbour another tensor could own).
 */
function parent(dtype: 'f32' | 'f16' = 'f32'): { whole: Tensor; w: Tensor; next: Tensor; n: number } {
  const slot = Math.max(32, windowAlignment(ctx));
  const n = (2 * slot) / (dtype === 'f16' ? 2 : 4);
  const whole = ctx.tensor(new Array(n).fill(SENTINEL), [n], dtype, 'whole');
  return { whole, w: whole.window(0, [5], 'w'), next: whole.window(slot, [5], 'next'), n };
}

/** Everything after the window's 5 elements is still a sentinel; returns the window's values. */
async function neighboursIntact(whole: Tensor, what: string): Promise<number[]> {
  const all = await whole.toArray();
  const touched = all.map((v, i) => [i, v] as const).filter(([i, v]) => i >= 5 && v !== SENTINEL);
  expect(touched, `${what}: elements after the window that changed`).toEqual([]);
  return all.slice(0, 5);
}

describe('odd-sized windows and their neighbours', () => {
  it('lerp into a window and lerpInPlace on one never write past it (vec4 kernels)', async () => {
    await ctx.scopeAsync(async () => {
      for (const [name, op] of [
        ['lerp', (w: Tensor) => lerp(ctx, ctx.tensor(A, [5]), ctx.tensor(B, [5]), 0.5, w)],
        ['lerpInPlace', (w: Tensor) => lerpInPlace(ctx, w, ctx.tensor(B, [5]), 0.5)],
      ] as const) {
        const { whole, w } = parent();
        w.write(A);
        let refused: unknown = null;
        try {
          op(w);
        } catch (e) {
          refused = e;
        }
        const vals = await neighboursIntact(whole, name);
        // Either refused before encoding (the window then still holds A), or computed exactly.
        if (refused) {
          expect(refused).toBeInstanceOf(BindingError);
          expect(String(refused)).toMatch(new RegExp(`${name === 'lerp' ? 'out' : 'acc'}'.*'w'.*neighbour`));
          expect(vals).toEqual(A);
        } else {
          expect(vals).toEqual(A.map((a, i) => 0.5 * a + 0.5 * B[i]!));
        }
      }
    });
  });

  it('reading an odd window through a vec4 binding is fine, and gives the window only', async () => {
    await ctx.scopeAsync(async () => {
      const { whole, w } = parent();
      w.write(A);
      const out = lerp(ctx, w, ctx.tensor(B, [5]), 0.25);
      expect(await out.toArray()).toEqual(A.map((a, i) => 0.75 * a + 0.25 * B[i]!));
      await neighboursIntact(whole, 'lerp reading the window');
    });
  });

  it('scalar kernels (fill, copy, add, scale, axpy, uniform, dropout, matmul) write exactly the window', async () => {
    await ctx.scopeAsync(async () => {
      const cases: [string, (w: Tensor) => void, number[] | null][] = [
        ['fill', (w) => void fill(ctx, w, 3), [3, 3, 3, 3, 3]],
        ['copy', (w) => void copy(ctx, ctx.tensor(B, [5]), w), B],
        ['add', (w) => void add(ctx, ctx.tensor(A, [5]), ctx.tensor(B, [5]), w), A.map((a, i) => a + B[i]!)],
        ['scale', (w) => void scale(ctx, ctx.tensor(A, [5]), -2, w), A.map((a) => -2 * a)],
        ['axpy', (w) => (w.write(A), void axpy(ctx, 2, ctx.tensor(B, [5]), w)), A.map((a, i) => a + 2 * B[i]!)],
        ['uniform', (w) => void uniform(ctx, w, { seed: 1, lo: -1, hi: 1 }), null],
        ['dropout', (w) => void dropout(ctx, ctx.tensor(A, [5]), { p: 0.5, seed: 3 }, w), null],
        ['matmul', (w) => void matmul(ctx, ctx.tensor([1, 2], [1, 2]), ctx.tensor([...A, ...B], [2, 5]), { out: w.view([1, 5]) }), A.map((a, i) => a + 2 * B[i]!)],
      ];
      for (const [name, op, want] of cases) {
        const { whole, w } = parent();
        op(w);
        const vals = await neighboursIntact(whole, name);
        if (want) expect(vals, name).toEqual(want);
        else expect(vals.every((v) => v !== SENTINEL), `${name} wrote the window`).toBe(true);
      }
    });
  });

  it('an optimizer step on odd windows updates them and nothing else', async () => {
    await ctx.scopeAsync(async () => {
      const { whole, w, next } = parent();
      w.write(A);
      next.write(B);
      const opt = new AdamW(ctx, [{ params: w, grads: ctx.tensor([1, 1, 1, 1, 1], [5]) }], { lr: 0.1, weightDecay: 0 });
      opt.step();
      const all = await whole.toArray();
      // AdamW's first step moves each parameter by lr·sign(g) (up to eps).
      expectClose(all.slice(0, 5), A.map((a) => a - 0.1), { atol: 1e-5, rtol: 1e-6 }, 'the window after one step');
      const nextStart = next.byteOffset / 4;
      expect(all.slice(nextStart, nextStart + 5)).toEqual(B);
      const changed = all.map((v, i) => [i, v] as const).filter(([i, v]) => i >= 5 && (i < nextStart || i >= nextStart + 5) && v !== SENTINEL);
      expect(changed).toEqual([]);
      opt.dispose();
    });
  });

  it('f16: an odd window is written (write, fill) without touching the half-word after it', async () => {
    if (!ctx.caps.f16) return;
    await ctx.scopeAsync(async () => {
      for (const [name, op] of [
        ['write', (w: Tensor) => w.write(A)],
        ['fill', (w: Tensor) => void fill(ctx, w, 3)],
      ] as const) {
        const { whole, w } = parent('f16');
        let refused: unknown = null;
        try {
          op(w);
        } catch (e) {
          refused = e;
        }
        const vals = await neighboursIntact(whole, `f16 ${name}`);
        if (refused) {
          expect(refused).toBeInstanceOf(BindingError);
          expect(vals).toEqual([SENTINEL, SENTINEL, SENTINEL, SENTINEL, SENTINEL]);
        } else {
          expect(vals).toEqual(name === 'write' ? A : [3, 3, 3, 3, 3]);
        }
      }
    });
  });

  it('a ParamArena slot owns its padding: lerpInPlace on an odd-sized slot runs and the next slot is untouched', async () => {
    await ctx.scopeAsync(async () => {
      const arena = new ParamArena(ctx, [ctx.tensor(A, [5]), ctx.tensor(B, [5])]);
      const [p0, p1] = arena.params as [Tensor, Tensor];
      lerpInPlace(ctx, p0, ctx.tensor(B, [5]), 1);
      expect(await p0.toArray()).toEqual(B);
      expect(await p1.toArray()).toEqual(B);
      arena.dispose();
    });
  });
});
