/**
 * Partial fine-tuning, heads, bottleneck adapters and WiSE-FT on a tiny GPT-2: what is frozen
 * stays bit-identical, what trains moves, and interpolation hits its endpoints exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError } from '../../src/gpu/errors.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { backward, grad, gradInfo, noGrad, zeroGrad } from '../../src/autograd/tape.js';
import { AdamW, type ParamGroup } from '../../src/kernels/optim.js';
import { GPT2ForSequenceClassification, GPT2LMHeadModel, gpt2Config } from '../../src/nn/gpt2.js';
import type { Module } from '../../src/nn/module.js';
import { addBottleneckAdapters } from '../../src/peft/bottleneck.js';
import { freeze, linearProbe, optimizerGroups, unfreeze } from '../../src/peft/freeze.js';
import { interpolate, interpolationSweep, snapshot } from '../../src/peft/interpolate.js';
import { getPeftModel } from '../../src/peft/lora.js';
import { expectClose, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const TINY = { vocab_size: 23, n_positions: 16, n_embd: 16, n_layer: 4, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
const ids = (B: number, T: number, seed = 1) => ({ ids: Array.from({ length: B * T }, (_, i) => (i * 7 + seed * 5 + ((i * i) % 3)) % 23), shape: [B, T] as const });

async function hostParams(m: Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, t] of m.namedParameters()) out.set(n, await t.read());
  return out;
}

/** `steps` AdamW steps (weight decay on, to show it does not touch what is frozen) of `loss`. */
async function train(groups: ParamGroup[], loss: (s: number) => Tensor, steps: number): Promise<number[]> {
  const params = groups.map((g) => g.params);
  const opt = new AdamW(ctx, groups, { lr: 3e-2, weightDecay: 0.1 });
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    const l = ctx.scope(() => {
      const x = loss(s);
      backward(ctx, x);
      opt.step(1, params.map(grad));
      zeroGrad(params);
      return x;
    });
    losses.push((await l.read())[0]!);
    l.dispose();
  }
  opt.dispose();
  return losses;
}

describe('freezing', () => {
  it('the first half of the blocks frozen: bit-identical after training, the rest moves', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 1 });
    const rep = freeze(m, { firstBlocks: 2 });
    expect(rep.frozen.every((n) => /^transformer\.h\.[01]\./.test(n))).toBe(true);
    expect(rep.frozen).toHaveLength(2 * 12);
    const before = await hostParams(m);
    await train(optimizerGroups(m), (s) => m.loss(ids(2, 8, s)), 4);
    const after = await hostParams(m);
    for (const [n, v] of before) {
      if (/^transformer\.h\.[01]\./.test(n)) expect(after.get(n), n).toEqual(v);
      else expect(after.get(n), n).not.toEqual(v);
    }
    expect(() => freeze(m, { firstBlocks: 5 })).toThrow(/firstBlocks = 5, expected an integer in \[0, 4\]/);
    expect(() => freeze(m, { names: ['transformer.h.7'] })).toThrow(/neither a parameter nor a module/);
    m.dispose();
  });

  it('part of a weight frozen through the masked gradient: frozen entries get gradient 0 and do not move', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 2 });
    const name = 'transformer.h.1.mlp.c_fc.weight'; // Conv1D [in 16, out 64]
    const rep = freeze(m, { trainableParts: { [name]: { cols: [[0, 16]] }, 'transformer.h.2.attn.c_attn.weight': { rows: [[4, 12]] } } });
    expect(rep.partial.map((p) => p.trainableFraction)).toEqual([0.25, 0.5]);
    const W = new Map(m.namedParameters()).get(name)!;
    expect(gradInfo(W).mask).not.toBeNull();
    const w0 = await W.read();
    const g = await ctx.scopeAsync(async () => {
      const loss = m.loss(ids(2, 8));
      backward(ctx, loss);
      const gw = await grad(W)!.read();
      zeroGrad(m.parameters());
      return gw;
    });
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 64; j++) {
        if (j >= 16) expect(g[i * 64 + j]).toBe(0);
      }
    }
    expect(g.slice(0, 16).some((v) => v !== 0)).toBe(true);
    await train(optimizerGroups(m), (s) => m.loss(ids(2, 8, s)), 3);
    const w1 = await W.read();
    let moved = 0;
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 64; j++) {
        if (j >= 16) expect(w1[i * 64 + j]).toBe(w0[i * 64 + j]);
        else if (w1[i * 64 + j] !== w0[i * 64 + j]) moved++;
      }
    }
    expect(moved).toBeGreaterThan(200);
    expect(() => freeze(m, { trainableParts: { 'transformer.h.0.ln_1.weight': { rows: [[0, 1]] } } })).toThrow(/not the weight of a Linear \/ Conv1D/);
    unfreeze(m, 'all');
    expect(gradInfo(W).mask).toBeNull();
    m.dispose();
  });

  it('linear probing trains only a new head on a frozen body', async () => {
    const cfg = gpt2Config({ ...TINY, num_labels: 3, pad_token_id: 0 });
    const m = GPT2ForSequenceClassification.create(ctx, cfg, { seed: 3 });
    linearProbe(m, ['score']);
    expect(m.namedTrainable().map(([n]) => n)).toEqual(['score.weight']);
    const before = await hostParams(m);
    const rows = [
      [3, 4, 5, 6, 0],
      [7, 8, 9, 0, 0],
      [1, 2, 3, 4, 5],
    ];
    const losses = await train(optimizerGroups(m), () => m.loss(rows, [0, 1, 2]), 8);
    expect(losses[7]!).toBeLessThan(losses[0]!);
    const after = await hostParams(m);
    for (const [n, v] of before) {
      if (n === 'score.weight') expect(after.get(n)).not.toEqual(v);
      else expect(after.get(n), n).toEqual(v);
    }
    expect(() => linearProbe(m, ['head'])).toThrow(ArgumentError);
    m.dispose();
  });
});

describe('bottleneck adapters', () => {
  it('start as the base model, train with the base frozen, and disable back to it exactly', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 4 });
    const b = ids(2, 8);
    const base = await noGrad(ctx, () => m.forward(b)).read();
    const baseParams = await hostParams(m);
    const ad = addBottleneckAdapters(m, { adapter_type: 'houlsby', bottleneck_size: 4, non_linearity: 'gelu' }, 'default', { seed: 5 });
    const rep = ad.trainableParameters();
    expect(rep.trainable).toBe(4 * 2 * (16 * 4 + 4 + 4 * 16 + 16)); // 4 blocks × (attn, mlp) × (down + up)
    expect(await noGrad(ctx, () => m.forward(b)).read()).toEqual(base);
    const losses = await train(optimizerGroups(m), (s) => m.loss(ids(2, 8, s % 2)), 10);
    expect(losses[9]!).toBeLessThan(losses[1]!);
    expect(await noGrad(ctx, () => ad.withAdaptersDisabled(() => m.forward(b))).read()).toEqual(base);
    expect([...ad.adapterStateDict().keys()].slice(0, 2)).toEqual(['base_model.model.transformer.h.0.attn.adapter_down.weight', 'base_model.model.transformer.h.0.attn.adapter_down.bias']);
    const plain = ad.unload();
    const now = await hostParams(plain);
    for (const [n, v] of baseParams) expect(now.get(n), n).toEqual(v);
    m.dispose();
  });
});

describe('WiSE-FT', () => {
  it('interpolates every parameter in one dispatch; α = 0 and 1 are the endpoints bit for bit', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 6 });
    const pre = snapshot(m);
    const preHost = await hostParams(m);
    await train(optimizerGroups(m), (s) => m.loss(ids(2, 8, s)), 3);
    const ft = snapshot(m);
    const ftHost = await hostParams(m);
    const d0 = ctx.stats.dispatches;
    interpolate(m, pre, ft, 0.25);
    expect(ctx.stats.dispatches - d0).toBe(1);
    const mid = await hostParams(m);
    for (const [n, a] of preHost) {
      const b = ftHost.get(n)!;
      expectClose(mid.get(n)!, Array.from(a, (v, i) => 0.75 * v + 0.25 * b[i]!), { atol: 1e-7, rtol: 1e-6 }, n);
    }
    const seen: number[] = [];
    const curve = await interpolationSweep(m, pre, ft, [0, 0.5, 1], async (a) => {
      seen.push(a);
      if (a === 0) for (const [n, v] of await hostParams(m)) expect(v, n).toEqual(preHost.get(n));
      return (await noGrad(ctx, () => m.loss(ids(2, 8))).read())[0]!;
    });
    expect(seen).toEqual([0, 0.5, 1]);
    expect(curve).toHaveLength(3);
    for (const [n, v] of await hostParams(m)) expect(v, n).toEqual(ftHost.get(n));
    // Merged LoRA: merge, snapshot, and the sweep's endpoint is the merged model.
    const peft = getPeftModel(m, { r: 2, target_modules: ['c_attn'], init_lora_weights: false }, 'default', { warn: () => {} });
    const withAdapter = await noGrad(ctx, () => m.forward(ids(1, 5))).read();
    const plain = peft.mergeAndUnload();
    const merged = snapshot(plain);
    interpolate(plain, ft, merged, 1);
    expectClose(await noGrad(ctx, () => plain.forward(ids(1, 5))).read(), withAdapter, { atol: 2e-5, rtol: 1e-4 }, 'α = 1 is the merged LoRA model');
    const other = GPT2LMHeadModel.create(ctx, gpt2Config({ ...TINY, n_layer: 1 }));
    expect(() => interpolate(other, pre, ft, 0.5)).toThrow(/snapshot of another model/);
    for (const t of [pre, ft, merged]) t.dispose();
    other.dispose();
    m.dispose();
  });
});

describe('a model in several arena chunks (larger than one storage binding)', () => {
  it('trains with one optimizer dispatch per chunk, interpolates chunk by chunk, and matches the one-chunk model', async () => {
    const one = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 9 });
    const many = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 9, chunkBytes: 16384 });
    expect(one.baseArena.chunks).toHaveLength(1);
    expect(many.baseArena.chunks.length).toBeGreaterThan(3);
    const [h1, h2] = [await hostParams(one), await hostParams(many)];
    for (const [n, v] of h1) expect(h2.get(n), n).toEqual(v); // same seeds, same values
    const preMany = snapshot(many);
    const l1 = await train(optimizerGroups(one), (s) => one.loss(ids(2, 8, s)), 3);
    const l2 = await train(optimizerGroups(many), (s) => many.loss(ids(2, 8, s)), 3);
    expect(l2).toEqual(l1);
    const [t1, t2] = [await hostParams(one), await hostParams(many)];
    for (const [n, v] of t1) expect(t2.get(n), n).toEqual(v);
    const ftMany = snapshot(many);
    const before = ctx.stats.dispatches;
    interpolate(many, preMany, ftMany, 0);
    expect(ctx.stats.dispatches - before).toBe(many.baseArena.chunks.length);
    for (const [n, v] of await hostParams(many)) expect(v, n).toEqual(h1.get(n));
    expect(() => interpolate(one, preMany, ftMany, 0.5)).toThrow(/snapshot of another model/);
    preMany.dispose();
    ftMany.dispose();
    one.dispose();
    many.dispose();
  });
});
