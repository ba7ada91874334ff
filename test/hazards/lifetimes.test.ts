/**
 * Lifetimes that used to leak or fail unclearly: a LoraLayer frees what it made, TokenIds know
 * they were disposed, a destroyed context refuses writes and waits cleanly, and async scopes
 * that interleave on one context are refused instead of mixing their tensors.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, DisposedError } from '../../src/gpu/errors.js';
import { createContext } from '../../src/gpu/node.js';
import { embedding, TokenIds } from '../../src/kernels/embedding.js';
import { LoraLayer, loraForward, loraMerge } from '../../src/kernels/lora.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('LoraLayer.dispose', () => {
  it('frees the factors and the W copy the layer made, not the tensors it was given; a disposed layer is refused', async () => {
    await ctx.sync();
    const before = ctx.memory();
    const W = ctx.tensor(new Array(8 * 12).fill(0.5), [8, 12], 'f32', 'W'); // [N,K]
    const layer = new LoraLayer(ctx, { W, rank: 2, alpha: 4, wLayout: 'auto' }); // A, B (and on CPU adapters W [K,N]) made here
    const given = new LoraLayer(ctx, { W, A: ctx.tensor(new Array(24).fill(0), [2, 12]), B: ctx.tensor(new Array(16).fill(0), [8, 2]), rank: 2, alpha: 4 });
    expect(ctx.memory().liveTensors).toBeGreaterThan(before.liveTensors + 3);
    layer.dispose();
    layer.dispose(); // idempotent
    expect(layer.disposed).toBe(true);
    expect(layer.A.disposed && layer.B.disposed).toBe(true);
    expect(W.disposed).toBe(false); // the caller's
    const x = ctx.tensor(new Array(12).fill(1), [1, 12], 'f32', 'x');
    expect(() => loraForward(ctx, layer, x)).toThrow(DisposedError);
    expect(() => loraForward(ctx, layer, x)).toThrow(/loraForward: LoraLayer .* was disposed/);
    expect(() => loraMerge(ctx, layer)).toThrow(DisposedError);
    given.dispose();
    expect(given.A.disposed).toBe(false); // given factors stay the caller's
    for (const t of [given.A, given.B, W, x]) t.dispose();
    await ctx.sync();
    expect(ctx.memory().liveBytes).toBe(before.liveBytes);
    expect(ctx.memory().liveTensors).toBe(before.liveTensors);
  });
});

describe('TokenIds', () => {
  it('know they were disposed; using them afterwards is a DisposedError; their buffer is accounted', async () => {
    const table = ctx.tensor(new Array(10 * 4).fill(1), [10, 4], 'f32', 'table');
    const raw = ctx.memory().rawBytes;
    const ids = new TokenIds(ctx, [1, 5, 1], 10);
    expect(ctx.memory().rawBytes).toBeGreaterThan(raw);
    expect(ids.disposed).toBe(false);
    ids.dispose();
    ids.dispose(); // idempotent
    expect(ids.disposed).toBe(true);
    expect(() => embedding(ctx, table, ids)).toThrow(DisposedError);
    expect(() => embedding(ctx, table, ids)).toThrow(/embedding: ids .* disposed/);
    await ctx.sync();
    expect(ctx.memory().rawBytes).toBe(raw);
    table.dispose();
  });
});

describe('a destroyed context', () => {
  it('refuses write, read, flush and sync with a DisposedError', async () => {
    const c = await createContext();
    const t = c.tensor([1, 2], [2]);
    c.destroy();
    expect(() => c.write(t, [3, 4])).toThrow(DisposedError);
    expect(() => t.write([3, 4])).toThrow(/write: the context was destroyed/);
    expect(() => c.flush()).toThrow(DisposedError);
    await expect(c.sync()).rejects.toThrow(/sync: the context was destroyed/);
    await expect(t.read()).rejects.toThrow(DisposedError);
    c.destroy(); // idempotent
  });
});

describe('async scopes', () => {
  it('interleaved scopeAsync calls on one context are refused (and free what they made)', async () => {
    await ctx.sync();
    const before = ctx.memory();
    let openA!: () => void;
    let openB!: () => void;
    const gateA = new Promise<void>((res) => (openA = res));
    const gateB = new Promise<void>((res) => (openB = res));
    const a = ctx.scopeAsync(async () => {
      ctx.empty([4], 'f32', 'a0');
      await gateA;
      ctx.empty([4], 'f32', 'a1');
      return 1;
    });
    const b = ctx.scopeAsync(async () => {
      ctx.empty([4], 'f32', 'b0');
      await gateB;
      return 2;
    });
    openA(); // a finishes while b, opened after it, is still open
    const ra = await a.then(
      () => null,
      (e: unknown) => e,
    );
    openB();
    const rb = await b.then(
      () => null,
      (e: unknown) => e,
    );
    expect(ra).toBeInstanceOf(ArgumentError);
    expect(String(ra)).toMatch(/scopeAsync: .*interleaved/);
    expect(rb).toBeInstanceOf(ArgumentError);
    // The scope stack is sound again, and nothing leaked.
    expect(ctx.scope(() => ctx.empty([2]).size)).toBe(2);
    await ctx.sync();
    expect(ctx.memory().liveTensors).toBe(before.liveTensors);
    expect(ctx.memory().liveBytes).toBe(before.liveBytes);
  });

  it('nested scopeAsync calls (awaited in turn) are fine', async () => {
    const v = await ctx.scopeAsync(async () => {
      const t = ctx.tensor([1, 2], [2]);
      await t.read();
      const inner = await ctx.scopeAsync(async () => {
        const u = ctx.tensor([3], [1]);
        return (await u.read())[0]!;
      });
      return inner + (await t.read())[1]!;
    });
    expect(v).toBe(5);
  });
});
