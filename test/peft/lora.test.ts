/**
 * LoRA injection without a torch reference: target matching as PEFT does it, the model starting
 * as the base model, disabled adapters, merge / unmerge, mergeAndUnload, several adapters,
 * trainable counts, adapter state-dict names, and the errors. Gradients and optimizer steps
 * against PyTorch: test/torch/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, ShapeError } from '../../src/gpu/errors.js';
import { backward, grad, noGrad, zeroGrad } from '../../src/autograd/tape.js';
import { AdamW } from '../../src/kernels/optim.js';
import { GPT2ForSequenceClassification, GPT2LMHeadModel, gpt2Config } from '../../src/nn/gpt2.js';
import { adapterConfigJson, loraConfig } from '../../src/peft/config.js';
import { getPeftModel, LoraWrapper, planLora } from '../../src/peft/lora.js';
import { interpolate, snapshot } from '../../src/peft/interpolate.js';
import { expectClose, testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

const TINY = { vocab_size: 23, n_positions: 16, n_embd: 16, n_layer: 3, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
const ids = (B: number, T: number, seed = 1) => ({ ids: Array.from({ length: B * T }, (_, i) => (i * 7 + seed * 5 + ((i * i) % 3)) % 23), shape: [B, T] as const });
const model = (seed = 0) => GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed });
const quiet = { warn: () => {} };
const targets = (m: GPT2LMHeadModel, c: Parameters<typeof loraConfig>[0]) => planLora(m, loraConfig(c, quiet)).targets.map((t) => t.path);

async function train(peft: { namedTrainable(): [string, import('../../src/gpu/tensor.js').Tensor][] }, m: GPT2LMHeadModel, steps: number, lr = 5e-2) {
  const params = peft.namedTrainable().map(([, t]) => t);
  const opt = new AdamW(ctx, params.map((p) => ({ params: p })), { lr, weightDecay: 0 });
  for (let s = 0; s < steps; s++) {
    ctx.scope(() => {
      const loss = m.loss(ids(2, 8, s));
      backward(ctx, loss);
      opt.step(1, params.map(grad));
      zeroGrad(params);
    });
  }
  await ctx.sync();
  opt.dispose();
}

describe('LoRA target matching (PEFT rules)', () => {
  it('list entries match a name or its dotted suffix; a string is a full regex match', () => {
    const m = model();
    expect(targets(m, { target_modules: ['c_attn'] })).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn', 'transformer.h.2.attn.c_attn']);
    // 'c_proj' is both attn.c_proj and mlp.c_proj; 'attn.c_proj' only the first.
    expect(targets(m, { target_modules: ['c_proj'] })).toHaveLength(6);
    expect(targets(m, { target_modules: ['attn.c_proj'] })).toEqual(['transformer.h.0.attn.c_proj', 'transformer.h.1.attn.c_proj', 'transformer.h.2.attn.c_proj']);
    // 'proj' is no dotted suffix of 'c_proj': nothing.
    expect(() => targets(m, { target_modules: ['proj'] })).toThrow(/'proj' not found.*close to 'proj': .*c_proj/);
    expect(targets(m, { target_modules: String.raw`.*\.h\.1\..*c_fc` })).toEqual(['transformer.h.1.mlp.c_fc']);
    // A regex that only matches a substring matches nothing (full match).
    expect(() => targets(m, { target_modules: 'c_fc' })).toThrow(/matches no module/);
    // 'all-linear' excludes the output head.
    const all = targets(m, { target_modules: 'all-linear' });
    expect(all).toHaveLength(12);
    expect(all).not.toContain('lm_head');
    // exclude_modules and layers_to_transform.
    expect(targets(m, { target_modules: ['c_attn', 'c_fc'], exclude_modules: ['c_fc'] })).toHaveLength(3);
    expect(targets(m, { target_modules: ['c_attn'], layers_to_transform: [0, 2] })).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.2.attn.c_attn']);
    expect(targets(m, { target_modules: ['c_attn'], layers_to_transform: 1 })).toEqual(['transformer.h.1.attn.c_attn']);
    // null: PEFT's default for GPT-2.
    expect(targets(m, {})).toHaveLength(3);
    // Targets must be Linear / Conv1D.
    expect(() => targets(m, { target_modules: ['ln_1'] })).toThrow(/LayerNorm; LoRA adapts Linear and Conv1D layers only/);
    m.dispose();
  });

  it('rank_pattern / alpha_pattern match by (.*\\.)?key$; rsLoRA scales by α/√r; Conv1D sets fan_in_fan_out', () => {
    const m = model();
    const plan = planLora(m, loraConfig({ r: 4, lora_alpha: 8, target_modules: ['c_attn', 'c_fc'], rank_pattern: { 'h.1.attn.c_attn': 2 }, alpha_pattern: { c_fc: 32 }, use_rslora: true }, quiet));
    const by = new Map(plan.targets.map((t) => [t.path, t]));
    expect(by.get('transformer.h.1.attn.c_attn')!.r).toBe(2);
    expect(by.get('transformer.h.1.attn.c_attn')!.scale).toBeCloseTo(8 / Math.sqrt(2), 12);
    expect(by.get('transformer.h.0.attn.c_attn')!.r).toBe(4);
    expect(by.get('transformer.h.2.mlp.c_fc')!.scale).toBeCloseTo(32 / 2, 12);
    expect(by.get('transformer.h.0.attn.c_attn')!.aShape).toEqual([4, 16]); // [r, in] for Conv1D too
    expect(by.get('transformer.h.0.attn.c_attn')!.bShape).toEqual([48, 4]); // [out, r]
    expect(plan.config.fan_in_fan_out).toBe(true);
    expect(plan.warnings[0]).toMatch(/Conv1D/);
    m.dispose();
  });

  it('refuses what it does not implement, naming it', () => {
    expect(() => loraConfig({ use_dora: true })).toThrow(/use_dora = true is not supported.*DoRA/);
    expect(() => loraConfig({ init_lora_weights: 'pissa' as never })).toThrow(/init_lora_weights = "pissa" is not supported/);
    expect(() => loraConfig({ r: 0 })).toThrow(/r = 0, expected a positive integer/);
    expect(() => loraConfig({ bias: 'some' as never })).toThrow(/bias = "some"/);
    expect(() => loraConfig({ peft_type: 'IA3' as never })).toThrow(/peft_type 'IA3'/);
    const warnings: string[] = [];
    const c = loraConfig({ peft_type: 'LORA', r: 2, some_future_key: 1 }, { warn: (w) => warnings.push(w) });
    expect(warnings).toEqual(["LoraConfig: unknown key 'some_future_key' ignored"]);
    expect(c.r).toBe(2);
    expect(c.lora_alpha).toBe(8);
  });
});

describe('getPeftModel', () => {
  it('starts as the base model exactly (B = 0); disabled adapters give the base output exactly; only A and B train', async () => {
    const m = model(1);
    const b = ids(2, 8);
    const base = await noGrad(ctx, () => m.forward(b)).read();
    const peft = getPeftModel(m, { r: 4, lora_alpha: 8, target_modules: ['c_attn', 'c_proj'] }, 'default', { seed: 2, ...quiet });
    expect(await noGrad(ctx, () => m.forward(b)).read()).toEqual(base);
    const names = peft.namedTrainable().map(([n]) => n);
    expect(names).toHaveLength(2 * 9);
    expect(names.every((n) => /\.lora_[AB]\.default\.weight$/.test(n))).toBe(true);
    const rep = peft.trainableParameters();
    // c_attn 16→48, attn.c_proj 16→16 and mlp.c_proj 64→16 ('c_proj' matches both): (in + out)·r each.
    const perLayer = (16 + 48) * 4 + (16 + 16) * 4 + (64 + 16) * 4;
    expect(rep.trainable).toBe(3 * perLayer);
    expect(rep.total).toBe(m.numParameters());
    expect(rep.percent).toBeCloseTo((100 * rep.trainable) / rep.total, 12);
    expect(rep.optimizerStateBytes).toBe(8 * rep.trainable);
    await train(peft, m, 4);
    const tuned = await noGrad(ctx, () => m.forward(b)).read();
    expect(tuned).not.toEqual(base);
    expect(await noGrad(ctx, () => peft.withAdaptersDisabled(() => m.forward(b))).read()).toEqual(base);
    expect(peft.adaptersDisabled).toBe(false);
    peft.dispose();
    m.dispose();
  });

  it('merge / unmerge: merged forward equals the adapter forward; unmerge restores W; mergeAndUnload leaves a plain model', async () => {
    const m = model(3);
    const b = ids(2, 8, 3);
    const w0 = await m.getSubmodule('transformer.h.0.attn.c_attn').namedParameters()[0]![1].read();
    const peft = getPeftModel(m, { r: 4, lora_alpha: 16, target_modules: 'all-linear', init_lora_weights: false }, 'default', { seed: 4, ...quiet });
    const withAdapter = await noGrad(ctx, () => m.forward(b)).read();
    peft.mergeAdapter();
    const merged = await noGrad(ctx, () => m.forward(b)).read();
    expectClose(merged, withAdapter, { atol: 2e-5, rtol: 1e-4 }, 'merged vs adapter forward');
    expect(() => peft.mergeAdapter()).toThrow(/already merged/);
    expect(() => peft.withAdaptersDisabled(() => m.forward(b))).toThrow(/merged into the base weight; unmerge first/);
    peft.unmerge();
    const w1 = await (m.getSubmodule('transformer.h.0.attn.c_attn') as LoraWrapper).weight.read();
    expectClose(w1, w0, { atol: 1e-6, rtol: 0 }, 'W after merge + unmerge');
    const plain = peft.mergeAndUnload();
    expect(plain.namedModules().some(([, x]) => x instanceof LoraWrapper)).toBe(false);
    expect(plain.namedParameters().map(([n]) => n)).toEqual(model(3).namedParameters().map(([n]) => n));
    expectClose(await noGrad(ctx, () => plain.forward(b)).read(), withAdapter, { atol: 2e-5, rtol: 1e-4 }, 'unloaded');
    expect(plain.arenas).toHaveLength(1);
    m.dispose();
  });

  it('several named adapters: set, disable, delete; each saved under PEFT names', async () => {
    const m = model(5);
    const b = ids(1, 6, 5);
    const base = await noGrad(ctx, () => m.forward(b)).read();
    const peft = getPeftModel(m, { r: 2, target_modules: ['c_attn'], init_lora_weights: false }, 'one', { seed: 1, ...quiet });
    const one = await noGrad(ctx, () => m.forward(b)).read();
    peft.addAdapter('two', loraConfig({ r: 3, target_modules: ['c_fc'], init_lora_weights: false }, quiet), { seed: 2, ...quiet });
    expect(peft.activeAdapter).toBe('two');
    const two = await noGrad(ctx, () => m.forward(b)).read();
    expect(two).not.toEqual(one);
    expect(peft.namedTrainable().every(([n]) => n.includes('.two.'))).toBe(true);
    expect([...peft.adapterStateDict('two').keys()]).toEqual([0, 1, 2].flatMap((i) => [`base_model.model.transformer.h.${i}.mlp.c_fc.lora_A.weight`, `base_model.model.transformer.h.${i}.mlp.c_fc.lora_B.weight`]));
    peft.setAdapter('one');
    expect(await noGrad(ctx, () => m.forward(b)).read()).toEqual(one);
    peft.deleteAdapter('one');
    expect(peft.activeAdapter).toBe('two');
    expect(await noGrad(ctx, () => m.forward(b)).read()).toEqual(two);
    expect(m.namedParameters().some(([n]) => n.includes('.one.'))).toBe(false);
    expect(() => peft.setAdapter('one')).toThrow(/no adapter 'one' \(have: two\)/);
    peft.deleteAdapter('two');
    expect(await noGrad(ctx, () => m.forward(b)).read()).toEqual(base);
    expect(m.arenas).toHaveLength(1);
    m.dispose();
  });

  it('bias modes and modules_to_save: what trains and the names PEFT saves', async () => {
    const cfg = gpt2Config({ ...TINY, num_labels: 3 });
    const m = GPT2ForSequenceClassification.create(ctx, cfg, { seed: 6 });
    const peft = getPeftModel(m, { r: 2, target_modules: ['c_attn'], bias: 'lora_only', task_type: 'SEQ_CLS' }, 'default', quiet);
    const trainable = peft.namedTrainable().map(([n]) => n);
    expect(trainable).toContain('transformer.h.0.attn.c_attn.base_layer.bias');
    expect(trainable).toContain('score.modules_to_save.default.weight'); // SEQ_CLS saves the head
    expect(trainable).not.toContain('score.original_module.weight');
    expect(trainable).not.toContain('transformer.h.0.ln_1.bias');
    const params = new Map(m.namedParameters());
    // The trainable copy starts as the original head (PEFT deep-copies it).
    expect(await params.get('score.modules_to_save.default.weight')!.read()).toEqual(await params.get('score.original_module.weight')!.read());
    const keys = [...peft.adapterStateDict().keys()];
    expect(keys).toContain('base_model.model.transformer.h.0.attn.c_attn.base_layer.bias');
    expect(keys).toContain('base_model.model.score.weight');
    peft.dispose();
    m.dispose();
    const m2 = model(7);
    const p2 = getPeftModel(m2, { r: 2, target_modules: ['c_attn'], bias: 'all' }, 'default', quiet);
    expect(p2.namedTrainable().map(([n]) => n)).toContain('transformer.h.0.ln_1.bias');
    expect([...p2.adapterStateDict().keys()]).toContain('base_model.model.transformer.ln_f.bias');
    p2.dispose();
    m2.dispose();
  });

  it('adapter_config.json as PEFT writes it: sorted keys, indent 2, inference_mode true', () => {
    const m = model();
    const peft = getPeftModel(m, { r: 4, lora_alpha: 8, target_modules: ['c_attn'], task_type: 'CAUSAL_LM', base_model_name_or_path: 'brown-gpt2' }, 'default', quiet);
    const text = adapterConfigJson(peft.peftConfig.get('default')!);
    const obj = JSON.parse(text);
    expect(Object.keys(obj)).toEqual(Object.keys(obj).sort());
    expect(obj).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, inference_mode: true, fan_in_fan_out: true, target_modules: ['c_attn'], bias: 'none', use_dora: false, base_model_name_or_path: 'brown-gpt2' });
    expect(text).toMatch(/^\{\n {2}"alora_invocation_tokens": null,\n/);
    peft.dispose();
    m.dispose();
  });

  it('merge and unmerge are weight edits: an adapter merged, snapshotted, unmerged and interpolated back (WiSE-FT) trains on; a merged one refuses to train', async () => {
    const m = model(12);
    const peft = getPeftModel(m, { r: 2, target_modules: ['c_attn', 'c_proj'], init_lora_weights: false }, 'default', { seed: 2, ...quiet });
    const params = peft.namedTrainable().map(([, t]) => t);
    const gradients = async () => {
      const loss = m.loss(ids(2, 6));
      backward(ctx, loss);
      const g = await Promise.all(params.map((p) => grad(p)!.read()));
      loss.dispose();
      zeroGrad(params);
      return g;
    };
    const before = await gradients();
    // What the browser page does for its WiSE-FT slider: θ_ft = W + s·B·A snapshotted, W back, then lerp to α = 0.
    const pre = snapshot(m);
    peft.mergeAdapter();
    // A recording forward through a merged adapter would leave A and B without a gradient: refused, naming the adapter.
    expect(() => m.loss(ids(2, 6))).toThrow(ArgumentError);
    expect(() => m.loss(ids(2, 6))).toThrow(/adapter 'default' is merged into the base weight.*unmerge\(\) before training/);
    expect(() => noGrad(ctx, () => m.forward(ids(2, 6))).dispose()).not.toThrow();
    const ft = snapshot(m);
    peft.unmerge();
    peft.disableAdapters();
    interpolate(m, pre, ft, 0.5);
    interpolate(m, pre, ft, 0);
    peft.enableAdapters();
    const after = await gradients();
    after.forEach((g, i) => expect(g).toEqual(before[i]));
    // The page's upload: a new adapter on other modules replaces this one. c_proj's W now runs bare
    // (conv1d); before merge / unmerge ran without recording, it still carried the mark "lost lora_A's
    // gradient through lora_merge", and backward refused with an ArgumentError naming the deleted adapter.
    peft.addAdapter('second', loraConfig({ r: 2, target_modules: ['c_attn'], init_lora_weights: false }, quiet), { seed: 5 });
    peft.setAdapter('second');
    peft.deleteAdapter('default');
    const second = peft.namedTrainable().map(([, t]) => t);
    const loss = m.loss(ids(2, 6));
    backward(ctx, loss);
    for (const p of second) expect((await grad(p)!.read()).some((v) => v !== 0)).toBe(true);
    loss.dispose();
    zeroGrad(second);
    pre.dispose();
    ft.dispose();
    peft.dispose();
    m.dispose();
  });

  it('the loss computed in a scope that closes before backward gives the same gradients', async () => {
    const m = model(9);
    const peft = getPeftModel(m, { r: 2, target_modules: ['c_attn'], init_lora_weights: false }, 'default', quiet);
    const params = peft.namedTrainable().map(([, t]) => t);
    const inside = await ctx.scopeAsync(async () => {
      const loss = m.loss(ids(2, 6));
      backward(ctx, loss);
      const g = await Promise.all(params.map((p) => grad(p)!.read()));
      zeroGrad(params);
      return g;
    });
    // The frozen body's activations (ln_1's output, which the LoRA op's backward reads) were made in the scope.
    const loss = ctx.scope(() => m.loss(ids(2, 6)));
    backward(ctx, loss);
    const after = await Promise.all(params.map((p) => grad(p)!.read()));
    after.forEach((g, i) => expect(g).toEqual(inside[i]));
    loss.dispose();
    zeroGrad(params);
    peft.dispose();
    m.dispose();
  });

  it('bad input: a second getPeftModel, unknown adapter names, shapes that do not fit', () => {
    const m = model();
    const peft = getPeftModel(m, { r: 2, target_modules: ['c_attn'] }, 'default', quiet);
    expect(() => getPeftModel(m, { r: 2 })).toThrow(/already has LoRA adapters/);
    expect(() => peft.addAdapter('default', loraConfig({ r: 2 }, quiet))).toThrow(/already exists/);
    expect(() => peft.addAdapter('a.b', loraConfig({ r: 2 }, quiet))).toThrow(ArgumentError);
    const sd = new Map([...peft.adapterStateDict()].map(([k, t]) => [k, { shape: [...t.shape], data: new Float32Array(t.size) }]));
    const k0 = 'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight';
    sd.set(k0, { shape: [3, 16], data: new Float32Array(48) });
    expect(() => peft.loadAdapterWeights('default', sd)).toThrow(ShapeError);
    expect(() => peft.loadAdapterWeights('default', sd)).toThrow(/c_attn\.lora_A\.weight': expected \[2,16\], found \[3,16\]/);
    peft.dispose();
    m.dispose();
  });
});
