/**
 * Modules and GPT-2 without a torch reference: names, state dicts (and their errors), tied
 * weights, the LM loss against cross-entropy computed here from the logits, classification
 * pooling, sampling, memory over a training loop. Numerics against PyTorch: test/torch/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, ShapeError, SizeLimitError } from '../../src/gpu/errors.js';
import { backward, grad, gradInfo, noGrad, zeroGrad } from '../../src/autograd/tape.js';
import { AdamW } from '../../src/kernels/optim.js';
import { GPT2ForSequenceClassification, GPT2LMHeadModel, gpt2Config } from '../../src/nn/gpt2.js';
import { generate, sampleToken } from '../../src/nn/generate.js';
import { Linear, Sequential, GELU, Conv1D } from '../../src/nn/layers.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const TINY = { vocab_size: 23, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
const batch = (B: number, T: number, seed = 1) => ({ ids: Array.from({ length: B * T }, (_, i) => (i * 7 + seed * 5 + ((i * i) % 3)) % 23), shape: [B, T] as const });

/** Mean CE of logits [R, V] against labels (−100 ignored), in f64 here. */
function ceRef(logits: Float32Array, V: number, labels: number[]): number {
  let total = 0;
  let n = 0;
  labels.forEach((l, r) => {
    if (l === -100) return;
    let m = -Infinity;
    for (let v = 0; v < V; v++) m = Math.max(m, logits[r * V + v]!);
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(logits[r * V + v]! - m);
    total += m + Math.log(s) - logits[r * V + l]!;
    n++;
  });
  return total / n;
}

describe('modules', () => {
  it('names parameters as torch does, in registration order, tied ones once', () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 0 });
    const names = m.namedParameters().map(([n]) => n);
    expect(names.slice(0, 4)).toEqual(['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.h.0.ln_1.weight', 'transformer.h.0.ln_1.bias']);
    expect(names).toContain('transformer.h.1.attn.c_attn.weight');
    expect(names).toContain('transformer.h.1.mlp.c_proj.bias');
    expect(names[names.length - 1]).toBe('transformer.ln_f.bias');
    expect(names).not.toContain('lm_head.weight'); // tied to wte: listed once, as torch's named_parameters
    const sd = m.stateDict();
    expect(sd.get('lm_head.weight')).toBe(sd.get('transformer.wte.weight')); // ...but in the state dict under both names
    expect(m.getSubmodule('transformer.h.0.attn.c_attn').constructor.name).toBe('Conv1D');
    expect(m.transformer.h.items[0]!.child('attn')!.child('c_attn')).toBeInstanceOf(Conv1D);
    const D = 16;
    const perBlock = 2 * 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + (D * 4 * D + 4 * D) + (4 * D * D + D);
    expect(m.numParameters()).toBe(23 * D + 16 * D + 2 * perBlock + 2 * D);
    m.dispose();
  });

  it('a Sequential of layers names its children 0, 1, … and trains', async () => {
    const s = new Sequential(ctx, [new Linear(ctx, 4, 8), new GELU(ctx), new Linear(ctx, 8, 3, { bias: false })]);
    const arena = s.allocate({ seed: 3 })!;
    expect(s.namedParameters().map(([n, t]) => `${n} [${t.shape}]`)).toEqual(['0.weight [8,4]', '0.bias [8]', '2.weight [3,8]']);
    // torch's Linear init: U(±1/√in).
    const w = await s.namedParameters()[0]![1].read();
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(0.5);
    expect(new Set(w).size).toBe(32);
    arena.dispose();
  });

  it('loadStateDict checks every key and shape first: on an error nothing changes', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 0 });
    const before = await m.stateDictHost();
    const sd = new Map(before);
    const wte = sd.get('transformer.wte.weight')!;
    sd.set('transformer.wte.weight', { shape: wte.shape, data: wte.data.map(() => 7) });
    sd.set('transformer.h.0.ln_1.bias', { shape: [15], data: new Float32Array(15) });
    sd.delete('transformer.h.1.mlp.c_fc.bias');
    sd.set('transformer.h.9.attn.c_attn.weight', { shape: [1], data: new Float32Array(1) });
    let err: unknown;
    try {
      m.loadStateDict(sd);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ShapeError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/transformer\.h\.0\.ln_1\.bias: checkpoint \[15\], model \[16\]/);
    expect(msg).toMatch(/missing keys: transformer\.h\.1\.mlp\.c_fc\.bias/);
    expect(msg).toMatch(/unexpected keys: transformer\.h\.9\.attn\.c_attn\.weight/);
    const after = await m.stateDictHost();
    for (const [k, v] of before) expect(after.get(k)!.data).toEqual(v.data);
    // Non-strict: missing and unexpected keys are reported, shape mismatches still refused.
    sd.set('transformer.h.0.ln_1.bias', before.get('transformer.h.0.ln_1.bias')!);
    const r = m.loadStateDict(sd, { strict: false });
    expect(r.missing).toEqual(['transformer.h.1.mlp.c_fc.bias']);
    expect(r.unexpected).toEqual(['transformer.h.9.attn.c_attn.weight']);
    expect((await m.transformer.wte.weight.read())[5]).toBe(7);
    expect((await m.stateDict().get('lm_head.weight')!.read())[5]).toBe(7); // tied
    m.dispose();
  });

  it('refuses bad configs and inputs with errors that name them', () => {
    expect(() => gpt2Config({ ...TINY, n_head: 3 })).toThrow(/n_embd = 16 is not divisible by n_head = 3/);
    expect(() => gpt2Config({ ...TINY, activation_function: 'gelu' })).toThrow(/activation_function 'gelu' is not supported/);
    expect(() => gpt2Config({ ...TINY, model_type: 'llama' } as never)).toThrow(ArgumentError);
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY));
    expect(() => m.forward([[1, 2, 3], [4, 5]])).toThrow(/row 1 has 2 ids, row 0 has 3/);
    expect(() => m.forward({ ids: new Array(17).fill(1), shape: [1, 17] })).toThrow(/exceeds n_positions = 16/);
    expect(() => m.forward([[1, 23]])).toThrow(/ids\[1\] = 23, expected an integer in \[0, 23\)/);
    expect(() => m.loss([[1, 2]], [1, 99])).toThrow(/labels\[1\] = 99/);
    m.dispose();
    const huge = gpt2Config({ ...TINY, vocab_size: 2 ** 25, n_embd: 16 });
    const max = ctx.caps.limits.maxStorageBufferBindingSize!;
    if (2 ** 25 * 16 * 4 > max) expect(() => GPT2LMHeadModel.create(ctx, huge)).toThrow(SizeLimitError);
    expect(() => new GPT2LMHeadModel(ctx, gpt2Config(TINY)).forward([[1]])).toThrow(/not allocated yet/);
  });
});

describe('GPT-2', () => {
  it('the LM loss is HF\'s shifted cross-entropy of the logits (−100 ignored)', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 4 });
    const b = batch(3, 7);
    const labels = Array.from(b.ids);
    labels[2] = -100;
    labels[7 + 3] = -100;
    const [logits, loss] = await ctx.scopeAsync(async () => {
      const lg = noGrad(ctx, () => m.forward(b));
      const l = noGrad(ctx, () => m.loss(b, labels));
      return [await lg.read(), (await l.read())[0]!];
    });
    expect(logits.length).toBe(3 * 7 * 23);
    const shifted: number[] = [];
    for (let r = 0; r < 3; r++) for (let t = 0; t < 7; t++) shifted.push(t + 1 < 7 ? labels[r * 7 + t + 1]! : -100);
    expect(loss).toBeCloseTo(ceRef(logits, 23, shifted), 5);
    m.dispose();
  });

  it('classification pools the last non-pad token of each row', async () => {
    const cfg = gpt2Config({ ...TINY, num_labels: 3, pad_token_id: 0 });
    const m = GPT2ForSequenceClassification.create(ctx, cfg, { seed: 5 });
    const rows = [
      [5, 6, 7, 0, 0],
      [1, 2, 3, 4, 9],
      [8, 0, 0, 0, 0],
    ];
    expect(m.poolPositions(rows.flat(), 3, 5)).toEqual([2, 4, 0]);
    const logits = await noGrad(ctx, () => m.forward(rows)).read();
    // Pooling row b at position p equals running row b truncated to p + 1 tokens alone.
    for (const [b, p] of [[0, 2], [1, 4], [2, 0]] as const) {
      const alone = await noGrad(ctx, () => m.forward([rows[b]!.slice(0, p + 1)])).read();
      for (let c = 0; c < 3; c++) expect(logits[b * 3 + c]).toBeCloseTo(alone[c]!, 5);
    }
    const loss = (await noGrad(ctx, () => m.loss(rows, [0, 2, 1])).read())[0]!;
    expect(loss).toBeCloseTo(ceRef(logits, 3, [0, 2, 1]), 5);
    expect(() => m.loss(rows, [0, 3, 1])).toThrow(/labels\[1\] = 3, expected an integer in \[0, 3\)/);
    m.dispose();
  });

  it('a training loop keeps live bytes flat, is one submit per step, and lowers the loss', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 6 });
    const params = m.parameters();
    const opt = new AdamW(ctx, params.map((p) => ({ params: p })), { lr: 1e-2 });
    const b = batch(2, 8);
    const losses: number[] = [];
    let live0 = 0;
    for (let s = 0; s < 12; s++) {
      const submits = ctx.stats.submits;
      const l = ctx.scope(() => {
        const loss = m.loss(b);
        backward(ctx, loss);
        opt.step(1, params.map(grad));
        zeroGrad(params);
        return loss;
      });
      losses.push((await l.read())[0]!);
      l.dispose();
      expect(ctx.stats.submits - submits).toBe(1);
      if (s === 2) live0 = ctx.memory().liveBytes;
      if (s > 2) expect(ctx.memory().liveBytes).toBe(live0);
    }
    expect(losses[11]!).toBeLessThan(losses[0]! - 0.3);
    opt.dispose();
    m.dispose();
  });

  it('a frozen parameter gets no gradient and stays bit-identical', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 7 });
    m.transformer.wpe.requiresGrad(false);
    const wpe0 = await m.transformer.wpe.weight.read();
    const params = m.namedTrainable().map(([, t]) => t);
    expect(params).not.toContain(m.transformer.wpe.weight);
    const opt = new AdamW(ctx, params.map((p) => ({ params: p })), { lr: 1e-2 });
    for (let s = 0; s < 3; s++) {
      ctx.scope(() => {
        const loss = m.loss(batch(2, 8, s));
        backward(ctx, loss);
        expect(grad(m.transformer.wpe.weight)).toBeNull();
        opt.step(1, params.map(grad));
        zeroGrad(params);
      });
    }
    expect(await m.transformer.wpe.weight.read()).toEqual(wpe0);
    expect(gradInfo(m.transformer.wte.weight).requiresGrad).toBe(true);
    opt.dispose();
    m.dispose();
  });

  it('greedy generation is the argmax chain; sampling is seeded', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 8 });
    const out = await generate(m, [1, 2, 3], { maxNewTokens: 4, temperature: 0 });
    expect(out.slice(0, 3)).toEqual([1, 2, 3]);
    const logits = await noGrad(ctx, () => m.forward([out.slice(0, 3)])).read();
    expect(out[3]).toBe(sampleToken(logits.subarray(2 * 23, 3 * 23), 0, Math.random));
    const a = await generate(m, [1], { maxNewTokens: 6, temperature: 1, seed: 3 });
    const b = await generate(m, [1], { maxNewTokens: 6, temperature: 1, seed: 3 });
    expect(a).toEqual(b);
    expect(m.training).toBe(true); // restored after eval-mode generation
    // Longer than n_positions: the window slides.
    expect((await generate(m, new Array(15).fill(2), { maxNewTokens: 3, temperature: 0 })).length).toBe(18);
    m.dispose();
  });
});
