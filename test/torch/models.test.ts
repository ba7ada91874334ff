/**
 * The library's GPT-2, LoRA, freezing and AdamW against the PyTorch reference
 * (test/torch/gpt2_ref.py, float64) over the same safetensors files: logits, every LoRA
 * gradient, ten AdamW steps of LoRA training, a full fine-tuning step, a step with the first
 * half of the blocks frozen, merged and unmerged forwards, a classification head trained with
 * LoRA, and files both ways (torch reads what the library wrote, the library reads what torch
 * wrote).
 *
 * Tolerances: the GPU computes in f32 (f32 storage, f32 accumulation over K ≤ 64 terms per
 * product, a few products deep); the reference in f64. The errors seen are ~1e-6 of the values'
 * scale; the bounds below are 10–50× that, far below what a wrong formula gives (a dropped term,
 * a missing scale, a transposed factor all move values by O(scale)).
 */
import { mkdtempSync, readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import type { Tensor } from '../../src/gpu/tensor.js';
import { backward, grad, noGrad, zeroGrad } from '../../src/autograd/tape.js';
import { AdamW } from '../../src/kernels/optim.js';
import type { GPT2ForSequenceClassification, GPT2LMHeadModel } from '../../src/nn/gpt2.js';
import { freeze, optimizerGroups } from '../../src/peft/freeze.js';
import type { PeftModel } from '../../src/peft/lora.js';
import { loadGPT2, loadPeftAdapter, saveGPT2, savePeftAdapter } from '../../src/node.js';
import { testContext } from '../helpers.js';
import { CharVocab } from '../../examples/lib/vocab.js';
import { conv1dModules, gpt2Shapes, randomLora, randomTensors, writeModelDir, type Gpt2Config } from './fixtures.js';
import { closeTorch, runTorch, type TorchResult } from './run.js';
import { writeSafetensorsFile, type StTensor } from './safetensors.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
let ctx: GpuContext;
let root: string;
beforeAll(async () => {
  ctx = await testContext();
  root = mkdtempSync(join(tmpdir(), 'torch-models-'));
});
afterAll(async () => {
  await closeTorch();
  rmSync(root, { recursive: true, force: true });
  ctx.destroy();
});

let n = 0;
const fresh = (name: string) => join(root, `${name}-${n++}`);

const CFG: Gpt2Config = { model_type: 'gpt2', vocab_size: 29, n_positions: 16, n_embd: 16, n_layer: 2, n_head: 2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
const BATCHES = [
  { input_ids: [[1, 5, 9, 3, 7, 11, 2, 8], [2, 4, 6, 8, 10, 12, 14, 16]] },
  { input_ids: [[3, 1, 4, 1, 5, 9, 2, 6], [28, 27, 1, 0, 13, 17, 19, 23]] },
];
const flat = (b: { input_ids: number[][] }) => ({ ids: b.input_ids.flat(), shape: [b.input_ids.length, b.input_ids[0]!.length] as const });

function get(r: TorchResult, name: string): StTensor {
  const t = r[name];
  if (!t) throw new Error(`no ${name} in the reference's results (have ${Object.keys(r).sort().join(', ')})`);
  return t;
}

/** |got − ref| ≤ tol · max|ref| everywhere; the message names the worst element. */
function expectNear(got: ArrayLike<number>, ref: StTensor | ArrayLike<number>, tol: number, what: string): number {
  const r = 'data' in ref && 'shape' in ref ? (ref as StTensor).data : (ref as ArrayLike<number>);
  expect(got.length, `${what}: length`).toBe(r.length);
  let scale = 0;
  for (let i = 0; i < r.length; i++) scale = Math.max(scale, Math.abs(r[i]!));
  let worst = 0;
  let at = 0;
  for (let i = 0; i < r.length; i++) {
    const e = Math.abs(got[i]! - r[i]!);
    if (!(e <= worst)) {
      worst = e;
      at = i;
    }
  }
  const rel = worst / Math.max(scale, 1e-30);
  expect(rel, `${what}: max error ${worst.toExponential(2)} at [${at}] (got ${got[at]}, ref ${r[at]}), ${rel.toExponential(2)} of max|ref| ${scale.toExponential(2)}`).toBeLessThanOrEqual(tol);
  return rel;
}

/**
 * `values` with the elements zeroed whose reference gradient is 0 in exact arithmetic but not in
 * floating point (0 < |g| < 1e-7 at some step: the key bias of attention, to which softmax is
 * invariant; exact zeros, such as unused positions, are still compared). Adam
 * turns such a gradient's rounding noise into an update of up to ±lr (g/(|g| + ε) with
 * |g| ≈ ε), whose sign no two implementations share; every other element is compared.
 */
function maskNoise(values: ArrayLike<number>, ref: StTensor, grads: StTensor[]): Float64Array {
  const out = Float64Array.from(values);
  let masked = 0;
  for (let i = 0; i < out.length; i++) {
    if (grads.some((g) => g.data[i] !== 0 && Math.abs(g.data[i]!) < 1e-7)) {
      out[i] = 0;
      masked++;
    }
  }
  // Only a few elements per tensor may be noise-driven (a bias's key third at most).
  expect(masked, `masked elements of a tensor of ${ref.data.length}`).toBeLessThanOrEqual(Math.max(16, ref.data.length / 3));
  return out;
}

/** A model directory with seeded weights (written from TS; both sides read it). */
function modelDir(seed: number, cfg: Gpt2Config = CFG, task: 'lm' | 'seq_cls' = 'lm'): string {
  const d = fresh('model');
  writeModelDir(d, cfg, randomTensors(gpt2Shapes(cfg, task), seed));
  return d;
}

/** A PEFT adapter directory with random A and B (B nonzero, so every gradient is nonzero). */
function adapterDir(config: Record<string, unknown>, modules: [string, number, number, number][], seed: number, extra: Record<string, { shape: number[]; data: Float64Array }> = {}): string {
  const d = fresh('adapter');
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', ...config }));
  writeSafetensorsFile(join(d, 'adapter_model.safetensors'), { ...randomLora(modules, seed, { scale: 0.3 }), ...extra }, { metadata: { format: 'pt' } });
  return d;
}

/** One training step of `model` on batch `b` (LM loss), returning the loss and the gradients of `params` (before the update). */
function lmLoss(model: GPT2LMHeadModel, b: { input_ids: number[][] }): Tensor {
  return model.loss(flat(b));
}

async function trainSteps(
  params: [string, Tensor][],
  loss: (step: number) => Tensor,
  steps: number,
  opt: { lr: number; weightDecay: number },
  groups?: import('../../src/kernels/optim.js').ParamGroup[],
): Promise<{ losses: number[]; grads0: Map<string, Float32Array> }> {
  const tensors = params.map(([, t]) => t);
  const adam = new AdamW(ctx, groups ?? tensors.map((p) => ({ params: p })), { lr: opt.lr, weightDecay: opt.weightDecay, betas: [0.9, 0.999], eps: 1e-8 });
  const losses: number[] = [];
  const grads0 = new Map<string, Float32Array>();
  for (let s = 0; s < steps; s++) {
    const l = await ctx.scopeAsync(async () => {
      const x = loss(s);
      backward(ctx, x);
      if (s === 0) for (const [name, t] of params) grads0.set(name, await grad(t)!.read());
      adam.step(1, tensors.map(grad));
      zeroGrad(tensors);
      return x;
    });
    losses.push((await l.read())[0]!);
    l.dispose();
  }
  adam.dispose();
  return { losses, grads0 };
}

/** PEFT's on-disk name of an in-memory LoRA parameter name. */
const diskName = (n: string) => `base_model.model.${n.replace(/\.default\.weight$/, '.weight')}`;

describe('GPT-2 against PyTorch', () => {
  it('logits of an HF checkpoint agree', async () => {
    const d = modelDir(11);
    const { model } = await loadGPT2(ctx, d);
    const ref = await runTorch({ model_dir: d, batches: BATCHES });
    for (const [i, b] of BATCHES.entries()) {
      const got = await noGrad(ctx, () => model.forward(flat(b))).read();
      expectNear(got, get(ref, `logits.${i}`), 2e-5, `logits.${i}`);
      const loss = (await noGrad(ctx, () => lmLoss(model, b)).read())[0]!;
      expect(Math.abs(loss - get(ref, `loss.${i}`).data[0]!)).toBeLessThan(2e-5 * Math.abs(loss) + 1e-6);
    }
    model.dispose();
  });

  it('LoRA (r = 4 on c_attn and c_proj): the loss and every gradient of A and B agree', async () => {
    const d = modelDir(12);
    const config = { r: 4, lora_alpha: 8, target_modules: ['c_attn', 'c_proj'] };
    const a = adapterDir(config, conv1dModules(CFG, ['attn.c_attn', 'attn.c_proj', 'mlp.c_proj'], 4), 13);
    const { model } = await loadGPT2(ctx, d);
    const peft = await loadPeftAdapter(model, a, { isTrainable: true, warn: () => {} });
    const ref = await runTorch({ model_dir: d, adapter_dir: a, batches: BATCHES, mode: 'grad', trainable: 'lora' });
    const params = peft.namedTrainable();
    expect(params).toHaveLength(12); // A and B of 3 modules × 2 blocks
    const { losses, grads0 } = await trainSteps(params, () => lmLoss(model, BATCHES[0]!), 1, { lr: 0, weightDecay: 0 });
    expect(Math.abs(losses[0]! - get(ref, 'loss.0').data[0]!)).toBeLessThan(1e-5);
    for (const [name] of params) expectNear(grads0.get(name)!, get(ref, `grad.${diskName(name)}`), 2e-4, `d ${name}`);
    model.dispose();
  });

  it('ten AdamW steps of LoRA training give the same losses and weights', async () => {
    const d = modelDir(14);
    const config = { r: 4, lora_alpha: 16, target_modules: ['c_attn', 'c_fc'], use_rslora: true };
    const a = adapterDir(config, conv1dModules(CFG, ['attn.c_attn', 'mlp.c_fc'], 4), 15);
    const { model } = await loadGPT2(ctx, d);
    const peft = await loadPeftAdapter(model, a, { isTrainable: true, warn: () => {} });
    const opt = { lr: 1e-2, weightDecay: 0.01 };
    const ref = await runTorch({ model_dir: d, adapter_dir: a, batches: BATCHES, mode: 'train', steps: 10, trainable: 'lora', optimizer: { type: 'adamw', lr: opt.lr, weight_decay: opt.weightDecay } });
    const params = peft.namedTrainable();
    const { losses } = await trainSteps(params, (s) => lmLoss(model, BATCHES[s % 2]!), 10, opt);
    for (let s = 0; s < 10; s++) expect(Math.abs(losses[s]! - get(ref, `loss.${s}`).data[0]!), `loss at step ${s}`).toBeLessThan(5e-5);
    expect(losses[9]!).toBeLessThan(losses[0]!);
    for (const [name, t] of params) expectNear(await t.read(), get(ref, `param.${diskName(name)}`), 2e-4, `${name} after 10 steps`);
    model.dispose();
  });

  it('a full fine-tuning step and a step with the first half of the blocks frozen agree', async () => {
    const cfg = { ...CFG, n_layer: 4 };
    const d = modelDir(16, cfg);
    const opt = { lr: 3e-3, weightDecay: 0.01 };
    for (const frozen of [0, 2]) {
      const { model } = await loadGPT2(ctx, d);
      if (frozen) freeze(model, { firstBlocks: frozen });
      const ref = await runTorch({
        model_dir: d,
        batches: BATCHES,
        mode: 'train',
        steps: 2,
        record: true,
        trainable: frozen ? { freeze_first_blocks: frozen } : 'all',
        optimizer: { type: 'adamw', lr: opt.lr, weight_decay: opt.weightDecay },
      });
      const params = model.namedTrainable();
      expect(params.some(([nm]) => nm.startsWith('transformer.h.0.'))).toBe(frozen === 0);
      const { losses, grads0 } = await trainSteps(params, (s) => lmLoss(model, BATCHES[s % 2]!), 2, opt, optimizerGroups(model, opt));
      for (let s = 0; s < 2; s++) expect(Math.abs(losses[s]! - get(ref, `loss.${s}`).data[0]!)).toBeLessThan(2e-5);
      for (const [name, t] of params) {
        expectNear(grads0.get(name)!, get(ref, `trace.0.grad.${name}`), 5e-4, `${frozen ? 'half frozen' : 'full'}: d ${name}`);
        expectNear(
          maskNoise(await t.read(), get(ref, `param.${name}`), [get(ref, `trace.0.grad.${name}`), get(ref, `trace.1.grad.${name}`)]),
          maskNoise(get(ref, `param.${name}`).data, get(ref, `param.${name}`), [get(ref, `trace.0.grad.${name}`), get(ref, `trace.1.grad.${name}`)]),
          5e-6,
          `${frozen ? 'half frozen' : 'full'}: ${name} after 2 steps`,
        );
      }
      // Frozen blocks: no gradient in the reference either, and the reference kept them.
      if (frozen) expect(Object.keys(ref).some((k) => k.startsWith('trace.0.grad.transformer.h.0.'))).toBe(false);
      model.dispose();
    }
  });

  it('merged and unmerged forwards agree with the reference merge', async () => {
    const d = modelDir(17);
    const config = { r: 2, lora_alpha: 4, target_modules: ['c_attn', 'c_fc', 'c_proj'], rank_pattern: { 'h.1.mlp.c_fc': 3 }, alpha_pattern: { c_proj: 8 } };
    const mods = conv1dModules(CFG, ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'], 2).map(([m, i, o, r]) => [m, i, o, m === 'transformer.h.1.mlp.c_fc' ? 3 : r] as [string, number, number, number]);
    const a = adapterDir(config, mods, 18);
    const { model } = await loadGPT2(ctx, d);
    const peft = await loadPeftAdapter(model, a, { warn: () => {} });
    const [unmergedRef, mergedRef] = await Promise.all([runTorch({ model_dir: d, adapter_dir: a, batches: BATCHES }), runTorch({ model_dir: d, adapter_dir: a, batches: BATCHES, merge: true })]);
    const unmerged = await noGrad(ctx, () => model.forward(flat(BATCHES[0]!))).read();
    expectNear(unmerged, get(unmergedRef, 'logits.0'), 2e-5, 'unmerged');
    const plain = (peft as PeftModel<GPT2LMHeadModel>).mergeAndUnload();
    const merged = await noGrad(ctx, () => plain.forward(flat(BATCHES[0]!))).read();
    expectNear(merged, get(mergedRef, 'logits.0'), 2e-5, 'merged');
    plain.dispose();
  });

  it('classification: LoRA with a trained score head (modules_to_save) matches in loss, gradients and pooling', async () => {
    const cfg = { ...CFG, num_labels: 3, pad_token_id: 0 };
    const d = modelDir(19, cfg, 'seq_cls');
    const config = { r: 4, lora_alpha: 8, target_modules: ['c_attn'], task_type: 'SEQ_CLS' };
    const a = adapterDir(config, conv1dModules(cfg, ['attn.c_attn'], 4), 20, randomTensors({ 'base_model.model.score.weight': [3, 16] }, 21));
    const { model } = await loadGPT2(ctx, d, { task: 'seq_cls' });
    const peft = await loadPeftAdapter(model, a, { isTrainable: true, warn: () => {} });
    const batch = { input_ids: [[5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 9, 8], [8, 0, 0, 0, 0, 0]], labels: [0, 2, 1] };
    const ref = await runTorch({ model_dir: d, task: 'seq_cls', adapter_dir: a, batches: [batch], mode: 'grad', trainable: 'lora' });
    const params = peft.namedTrainable();
    expect(params.map(([nm]) => nm)).toContain('score.modules_to_save.default.weight');
    const cls = model as GPT2ForSequenceClassification;
    const { losses, grads0 } = await trainSteps(params, () => cls.loss(batch.input_ids, batch.labels), 1, { lr: 0, weightDecay: 0 });
    expect(Math.abs(losses[0]! - get(ref, 'loss.0').data[0]!)).toBeLessThan(1e-5);
    for (const [name] of params) {
      const disk = name === 'score.modules_to_save.default.weight' ? 'score.weight' : diskName(name);
      expectNear(grads0.get(name)!, get(ref, `grad.${disk}`), 2e-4, `d ${name}`);
    }
    model.dispose();
  });
});

describe('files both ways', () => {
  it('the committed demo files: the pre-trained checkpoint and the demo PEFT adapter give the same logits in torch, unmerged and merged', async () => {
    // What a user moving to PyTorch would load: examples/checkpoints/brown-gpt2 and examples/results/lora-adapter (npm run demo).
    const d = join(REPO, 'examples/checkpoints/brown-gpt2');
    const a = join(REPO, 'examples/results/lora-adapter');
    const vocab = new CharVocab();
    const ids = Array.from(vocab.encode('"I don\'t know," she said. He looked at the door and waited for an answer.'));
    const batch = { input_ids: [ids] };
    const { model } = await loadGPT2(ctx, d);
    const peft = await loadPeftAdapter(model, a, { warn: () => {} });
    const [unmergedRef, mergedRef] = await Promise.all([runTorch({ model_dir: d, adapter_dir: a, batches: [batch] }), runTorch({ model_dir: d, adapter_dir: a, batches: [batch], merge: true })]);
    const base = await runTorch({ model_dir: d, batches: [batch] });
    const unmerged = await noGrad(ctx, () => model.forward(flat(batch))).read();
    expectNear(unmerged, get(unmergedRef, 'logits.0'), 2e-5, 'demo adapter, unmerged');
    // The adapter is not a no-op: it moves the logits by far more than the tolerance.
    expect(Math.max(...get(unmergedRef, 'logits.0').data.map((v, i) => Math.abs(v - get(base, 'logits.0').data[i]!)))).toBeGreaterThan(1e-2);
    const plain = (peft as PeftModel<GPT2LMHeadModel>).mergeAndUnload();
    expectNear(await noGrad(ctx, () => plain.forward(flat(batch))).read(), get(mergedRef, 'logits.0'), 2e-5, 'demo adapter, merged');
    plain.dispose();
  });

  it('torch reads the checkpoint and adapter the library wrote; the library reads what torch wrote', async () => {
    const d = modelDir(22);
    const { model } = await loadGPT2(ctx, d);
    const peft = (await import('../../src/peft/lora.js')).getPeftModel(model, { r: 4, lora_alpha: 8, target_modules: ['c_attn', 'c_proj'], init_lora_weights: false, task_type: 'CAUSAL_LM' }, 'default', { seed: 5, warn: () => {} });
    const ours = await noGrad(ctx, () => model.forward(flat(BATCHES[1]!))).read();
    // Ours → torch: a model directory (after unloading: HF names) and a PEFT adapter directory.
    const ad = await savePeftAdapter(peft, fresh('ours-adapter'));
    const base = fresh('ours-model');
    const baseModel = (await loadGPT2(ctx, d)).model;
    await saveGPT2(baseModel, base);
    const fromOurs = await runTorch({ model_dir: base, adapter_dir: ad, batches: BATCHES, save_adapter_dir: fresh('torch-adapter') });
    expectNear(ours, get(fromOurs, 'logits.1'), 2e-5, 'torch on our files');
    // Torch → ours: train a little in torch, save adapter and merged model, load both here.
    const tAdapter = fresh('torch-trained-adapter');
    const tModel = fresh('torch-merged-model');
    const trained = await runTorch({ model_dir: d, adapter_dir: ad, batches: BATCHES, mode: 'train', steps: 2, final_logits: true, optimizer: { type: 'adamw', lr: 1e-2 }, save_adapter_dir: tAdapter });
    const merged = await runTorch({ model_dir: d, adapter_dir: tAdapter, batches: BATCHES, merge: true, save_model_dir: tModel });
    const { model: m2 } = await loadGPT2(ctx, d);
    await loadPeftAdapter(m2, tAdapter, { warn: () => {} });
    expectNear(await noGrad(ctx, () => m2.forward(flat(BATCHES[0]!))).read(), get(trained, 'final.logits.0'), 2e-5, "our forward with torch's adapter");
    const { model: m3 } = await loadGPT2(ctx, tModel);
    expectNear(await noGrad(ctx, () => m3.forward(flat(BATCHES[0]!))).read(), get(merged, 'logits.0'), 2e-5, "our forward of torch's merged checkpoint");
    // The adapter_config.json the library writes has the keys PEFT (the reference) writes.
    const ourKeys = Object.keys(JSON.parse(readFileSync(join(ad, 'adapter_config.json'), 'utf8')));
    const theirKeys = Object.keys(JSON.parse(readFileSync(join(tAdapter, 'adapter_config.json'), 'utf8')));
    expect(ourKeys).toEqual(theirKeys);
    for (const m of [model, baseModel, m2, m3]) m.dispose();
  });
});

