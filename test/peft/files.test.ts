/**
 * Files: GPT-2 checkpoints with HF names and PEFT adapter directories, written and read back
 * bit-identical; what PEFT writes loads; what does not fit is refused before anything changes.
 */
import { mkdtemp, readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, ShapeError } from '../../src/gpu/errors.js';
import { noGrad } from '../../src/autograd/tape.js';
import { parseSafetensors, serializeSafetensors } from '../../src/io/safetensors.js';
import { readSafetensorsFile } from '../../src/io/node.js';
import { GPT2LMHeadModel, gpt2Config } from '../../src/nn/gpt2.js';
import type { Module } from '../../src/nn/module.js';
import { addBottleneckAdapters } from '../../src/peft/bottleneck.js';
import { getPeftModel, LoraWrapper } from '../../src/peft/lora.js';
import { loadBottleneck, loadGPT2, loadPeftAdapter, saveBottleneck, saveGPT2, savePeftAdapter } from '../../src/node.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
let dir: string;
beforeAll(async () => {
  ctx = await testContext();
  dir = await mkdtemp(join(tmpdir(), 'webgpu-lora-files-'));
});
afterAll(() => ctx.destroy());

const TINY = { vocab_size: 23, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
const quiet = { warn: () => {} };
const b = { ids: [1, 5, 9, 2, 7, 3, 3, 8, 0, 22], shape: [2, 5] as const };

async function host(m: Module): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [n, t] of m.namedParameters()) out.set(n, await t.read());
  return out;
}

describe('GPT-2 checkpoints', () => {
  it('save and load: HF names, no tied duplicate, bit-identical, config.json as HF writes it', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 1 });
    const d = join(dir, 'gpt2');
    await saveGPT2(m, d);
    expect((await readdir(d)).sort()).toEqual(['config.json', 'model.safetensors']);
    const file = await readSafetensorsFile(join(d, 'model.safetensors'));
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.names()).toContain('transformer.h.1.attn.c_attn.weight');
    expect(file.names()).not.toContain('lm_head.weight');
    expect(file.get('transformer.h.0.mlp.c_fc.weight')!.shape).toEqual([16, 64]); // Conv1D [in, out]
    const cfg = JSON.parse(await readFile(join(d, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], n_embd: 16, vocab_size: 23, activation_function: 'gelu_new' });
    const { model: m2, missing, unexpected } = await loadGPT2(ctx, d);
    expect([missing, unexpected]).toEqual([[], []]);
    const [h1, h2] = [await host(m), await host(m2)];
    for (const [n, v] of h1) expect(h2.get(n), n).toEqual(v);
    expect(await noGrad(ctx, () => m2.forward(b)).read()).toEqual(await noGrad(ctx, () => m.forward(b)).read());
    m.dispose();
    m2.dispose();
  });

  it('reads the original GPT-2 layout: no transformer. prefix, attn.bias buffers, a tied lm_head', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 2 });
    const tensors = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
    for (const [n, t] of m.namedParameters()) tensors.set(n.replace(/^transformer\./, ''), { dtype: 'F32', shape: [...t.shape], data: await t.read() });
    tensors.set('h.0.attn.bias', { dtype: 'F32', shape: [1, 1, 16, 16], data: new Float32Array(256).fill(1) });
    tensors.set('h.1.attn.masked_bias', { dtype: 'F32', shape: [], data: new Float32Array([-1e4]) });
    tensors.set('lm_head.weight', tensors.get('wte.weight')!);
    const d = join(dir, 'gpt2-old');
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'model.safetensors'), serializeSafetensors(tensors));
    await writeFile(join(d, 'config.json'), JSON.stringify(TINY));
    const { model: m2 } = await loadGPT2(ctx, d);
    expect(await noGrad(ctx, () => m2.forward(b)).read()).toEqual(await noGrad(ctx, () => m.forward(b)).read());
    // The body of an LM checkpoint under a new classification head: score is new.
    const { model: cls, missing } = await loadGPT2(ctx, d, { task: 'seq_cls', numLabels: 3 });
    expect(missing).toEqual(['score.weight']);
    expect(await cls.transformer.wte.weight.read()).toEqual(await m.transformer.wte.weight.read());
    // A shape that does not fit: refused, naming the tensor.
    tensors.set('h.1.ln_2.weight', { dtype: 'F32', shape: [17], data: new Float32Array(17) });
    await writeFile(join(d, 'model.safetensors'), serializeSafetensors(tensors));
    await expect(loadGPT2(ctx, d)).rejects.toThrow(/'transformer\.h\.1\.ln_2\.weight': checkpoint \[17\], model \[16\]/);
    for (const x of [m, m2, cls]) x.dispose();
  });
});

describe('PEFT adapter directories', () => {
  it('save writes what PEFT writes; load gives the adapter back bit-identical', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 3 });
    const peft = getPeftModel(m, { r: 4, lora_alpha: 16, target_modules: ['c_attn', 'c_fc'], init_lora_weights: false, task_type: 'CAUSAL_LM' }, 'default', { seed: 4, ...quiet });
    const d = join(dir, 'adapter');
    expect(await savePeftAdapter(peft, d)).toBe(d);
    expect((await readdir(d)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const file = await readSafetensorsFile(join(d, 'adapter_model.safetensors'));
    expect(file.metadata).toEqual({ format: 'pt' });
    expect(file.names().sort()).toEqual(
      [0, 1].flatMap((i) => ['attn.c_attn', 'mlp.c_fc'].flatMap((mod) => ['lora_A', 'lora_B'].map((f) => `base_model.model.transformer.h.${i}.${mod}.${f}.weight`))).sort(),
    );
    expect(file.get('base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight')!.shape).toEqual([64, 4]);
    expect(file.tensors.every((t) => t.dtype === 'F32')).toBe(true);
    const cfgText = await readFile(join(d, 'adapter_config.json'), 'utf8');
    expect(JSON.parse(cfgText)).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 16, fan_in_fan_out: true, inference_mode: true, task_type: 'CAUSAL_LM' });
    const tuned = await noGrad(ctx, () => m.forward(b)).read();
    const saved = await host(m);
    // Into a fresh copy of the base model.
    const base = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 3 });
    const p2 = await loadPeftAdapter(base, d);
    const loaded = await host(base);
    for (const [n, v] of saved) expect(loaded.get(n), n).toEqual(v);
    expect(await noGrad(ctx, () => base.forward(b)).read()).toEqual(tuned);
    expect(p2.namedTrainable()).toEqual([]); // loaded for inference
    // A second adapter not named "default" goes in a subfolder, as PEFT does.
    p2.addAdapter('other', { ...p2.peftConfig.get('default')!, r: 2 }, { seed: 9, ...quiet });
    expect(await savePeftAdapter(p2, d, 'other')).toBe(join(d, 'other'));
    const p3 = await loadPeftAdapter(p2, join(d, 'other'), { adapterName: 'again', isTrainable: true });
    expect(p3).toBe(p2);
    expect(p2.namedTrainable().every(([n]) => n.includes('.again.'))).toBe(true);
    for (const x of [m, base]) x.dispose();
  });

  it('loads what PEFT writes: only peft_type required, unknown keys warned, GPT-2 default targets', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 5 });
    const d = join(dir, 'peft-minimal');
    await mkdir(d, { recursive: true });
    const tensors = new Map<string, { dtype: 'F32'; shape: number[]; data: Float32Array }>();
    for (const i of [0, 1]) {
      tensors.set(`base_model.model.transformer.h.${i}.attn.c_attn.lora_A.weight`, { dtype: 'F32', shape: [8, 16], data: new Float32Array(128).fill(0.01 * (i + 1)) });
      tensors.set(`base_model.model.transformer.h.${i}.attn.c_attn.lora_B.weight`, { dtype: 'F32', shape: [48, 8], data: new Float32Array(384).fill(0.02) });
    }
    await writeFile(join(d, 'adapter_model.safetensors'), serializeSafetensors(tensors, { format: 'pt' }));
    await writeFile(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', peft_version: '0.18.1', some_new_option: 3 }));
    const warnings: string[] = [];
    const peft = await loadPeftAdapter(m, d, { warn: (w) => warnings.push(w) });
    expect(warnings).toContain("LoraConfig: unknown key 'some_new_option' ignored");
    expect(warnings.some((w) => /Conv1D.*fan_in_fan_out to True/.test(w))).toBe(true); // as PEFT warns
    expect(peft.wrappers().map(([p]) => p)).toEqual(['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn']);
    const { A } = (m.getSubmodule('transformer.h.1.attn.c_attn') as LoraWrapper).factors('default');
    expect((await A.read())[0]).toBeCloseTo(0.02, 7);
    m.dispose();
  });

  it('an adapter that does not fit is refused before anything changes', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 6 });
    const before = await host(m);
    const names = [...before.keys()];
    const d = join(dir, 'bad');
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 8, target_modules: ['c_attn'] }));
    const t = new Map([
      ['base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', { dtype: 'F32' as const, shape: [8, 16], data: new Float32Array(128) }],
      ['base_model.model.transformer.h.0.attn.c_attn.lora_B.weight', { dtype: 'F32' as const, shape: [40, 8], data: new Float32Array(320) }],
    ]);
    await writeFile(join(d, 'adapter_model.safetensors'), serializeSafetensors(t));
    const err = await loadPeftAdapter(m, d).catch((e) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect(err.message).toMatch(/c_attn\.lora_B\.weight': expected \[48,8\], found \[40,8\]/);
    expect(err.message).toMatch(/missing 'base_model\.model\.transformer\.h\.1\.attn\.c_attn\.lora_A\.weight' \(expected \[8,16\]\)/);
    expect(m.namedParameters().map(([n]) => n)).toEqual(names); // no wrapper injected
    expect(m.arenas).toHaveLength(1);
    await writeFile(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', use_dora: true }));
    await expect(loadPeftAdapter(m, d)).rejects.toThrow(/DoRA/);
    await writeFile(join(d, 'adapter_config.json'), JSON.stringify({ r: 8 }));
    await expect(loadPeftAdapter(m, d)).rejects.toThrow(ArgumentError);
    await writeFile(join(d, 'adapter_config.json'), '{"peft_type": "LORA", ');
    await expect(loadPeftAdapter(m, d)).rejects.toThrow(/not valid JSON/);
    const after = await host(m);
    for (const [n, v] of before) expect(after.get(n), n).toEqual(v);
    m.dispose();
  });

  it('bottleneck adapters save and load with their own files', async () => {
    const m = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 7 });
    const ad = addBottleneckAdapters(m, { adapter_type: 'pfeiffer', bottleneck_size: 3 }, 'default', { seed: 8 });
    for (const [, t] of ad.adapterStateDict()) t.write(Array.from({ length: t.size }, (_, i) => Math.sin(i + t.size)));
    const out = await noGrad(ctx, () => m.forward(b)).read();
    const d = join(dir, 'bottleneck');
    await saveBottleneck(ad, d);
    expect((await readdir(d)).sort()).toEqual(['bottleneck_config.json', 'bottleneck_model.safetensors']);
    const m2 = GPT2LMHeadModel.create(ctx, gpt2Config(TINY), { seed: 7 });
    await loadBottleneck(m2, d);
    expect(await noGrad(ctx, () => m2.forward(b)).read()).toEqual(out);
    const bytes = await readFile(join(d, 'bottleneck_model.safetensors'));
    expect(parseSafetensors(new Uint8Array(bytes)).names()).toContain('base_model.model.transformer.h.1.mlp.adapter_up.weight');
    m.dispose();
    m2.dispose();
  });
});
