/**
 * Tests of the PyTorch reference itself (test/torch/gpt2_ref.py), so that the model and PEFT
 * tests can trust it: autograd against finite differences, merging against a merge computed
 * here, B = 0, adapter and model directories both ways, the LM loss and the classification
 * pooling against hand computations, AdamW and SGD against torch's update written out here,
 * PEFT's target matching, and bad jobs. Tiny models (8 wide, 2 blocks, 20 tokens) keep it fast;
 * most tests run all their jobs in one Python process.
 */
import { readFileSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conv1dModules, gpt2Shapes, loraKeys, randomLora, randomTensors, TINY, writeModelDir, type Gpt2Config, type Tensors } from './fixtures.js';
import { closeTorch, runTorch, runTorchJobs, TorchRefError, type TorchJob } from './run.js';
import { readSafetensorsFile, writeSafetensorsFile, type StTensor } from './safetensors.js';

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'torch-ref-test-'));
});
afterAll(async () => {
  await closeTorch();
  rmSync(root, { recursive: true, force: true });
});

let dirCount = 0;
const fresh = (name: string) => join(root, `${name}-${dirCount++}`);

/** Equal element by element (the same numbers, not merely close). */
function expectIdentical(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  expect(a.length, `${what}: length`).toBe(b.length);
  let diff = 0;
  let first = -1;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) {
      diff++;
      if (first < 0) first = i;
    }
  }
  expect(diff, `${what}: ${diff} elements differ, first [${first}] ${a[first]} vs ${b[first]}`).toBe(0);
}

/** max |a - b|. */
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function get(r: Record<string, StTensor>, name: string): StTensor {
  const t = r[name];
  if (!t) throw new Error(`no ${name} in the results (have ${Object.keys(r).sort().join(', ')})`);
  return t;
}

const BATCH = { input_ids: [[1, 5, 9, 3, 7, 11], [2, 4, 6, 8, 10, 12]] };

/**
 * GPT-2's forward written out as plain f64 loops from HF's modeling_gpt2.py, independently of
 * the script: the final hidden states [B, T, E] (before the head). Supports gelu_new and relu.
 */
function naiveHidden(c: Gpt2Config, P: Tensors, ids: number[][], mask?: number[][]): Float64Array[][] {
  const E = c.n_embd;
  const H = c.n_head;
  const hd = E / H;
  const I = c.n_inner ?? 4 * E;
  const eps = c.layer_norm_epsilon ?? 1e-5;
  const p = (n: string) => P[n]!.data;
  const ln = (x: Float64Array, w: Float64Array, b: Float64Array) => {
    let mean = 0;
    for (const v of x) mean += v / x.length;
    let vr = 0;
    for (const v of x) vr += (v - mean) ** 2 / x.length;
    return x.map((v, i) => ((v - mean) / Math.sqrt(vr + eps)) * w[i]! + b[i]!);
  };
  // Conv1D: y[o] = b[o] + sum_i x[i] W[i, o]
  const conv = (x: Float64Array, w: Float64Array, b: Float64Array, nOut: number) => {
    const y = Float64Array.from(b);
    for (let i = 0; i < x.length; i++) for (let o = 0; o < nOut; o++) y[o]! += x[i]! * w[i * nOut + o]!;
    return y;
  };
  const act = (v: number) =>
    c.activation_function === 'relu' ? Math.max(0, v) : 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
  return ids.map((row, b) => {
    const T = row.length;
    let x = row.map((tok, t) => {
      const v = new Float64Array(E);
      for (let e = 0; e < E; e++) v[e] = p('transformer.wte.weight')[tok * E + e]! + p('transformer.wpe.weight')[t * E + e]!;
      return v;
    });
    for (let l = 0; l < c.n_layer; l++) {
      const q = `transformer.h.${l}.`;
      const qkv = x.map((v) => conv(ln(v, p(q + 'ln_1.weight'), p(q + 'ln_1.bias')), p(q + 'attn.c_attn.weight'), p(q + 'attn.c_attn.bias'), 3 * E));
      const att = x.map(() => new Float64Array(E));
      for (let h = 0; h < H; h++) {
        for (let t = 0; t < T; t++) {
          const keys = [...Array(t + 1).keys()].filter((s) => !mask || mask[b]![s] === 1);
          const sc = keys.map((s) => {
            let d = 0;
            for (let j = 0; j < hd; j++) d += qkv[t]![h * hd + j]! * qkv[s]![E + h * hd + j]!;
            return (c.scale_attn_weights === false ? d : d / Math.sqrt(hd)) / (c.scale_attn_by_inverse_layer_idx ? l + 1 : 1);
          });
          const mx = Math.max(...sc);
          const w = sc.map((v) => Math.exp(v - mx));
          const z = w.reduce((a, v) => a + v, 0);
          keys.forEach((s, k) => {
            for (let j = 0; j < hd; j++) att[t]![h * hd + j]! += (w[k]! / z) * qkv[s]![2 * E + h * hd + j]!;
          });
        }
      }
      x = x.map((v, t) => {
        const a = conv(att[t]!, p(q + 'attn.c_proj.weight'), p(q + 'attn.c_proj.bias'), E);
        const r = v.map((u, e) => u + a[e]!);
        const m = conv(conv(ln(r, p(q + 'ln_2.weight'), p(q + 'ln_2.bias')), p(q + 'mlp.c_fc.weight'), p(q + 'mlp.c_fc.bias'), I).map(act), p(q + 'mlp.c_proj.weight'), p(q + 'mlp.c_proj.bias'), E);
        return r.map((u, e) => u + m[e]!);
      });
    }
    return x.map((v) => ln(v, p('transformer.ln_f.weight'), p('transformer.ln_f.bias')));
  });
}

/** Linear head (no bias) on one hidden vector: W [out, E]. */
function head(w: Float64Array, h: Float64Array): Float64Array {
  const n = w.length / h.length;
  const y = new Float64Array(n);
  for (let o = 0; o < n; o++) for (let e = 0; e < h.length; e++) y[o]! += w[o * h.length + e]! * h[e]!;
  return y;
}

describe('gpt2_ref.py: the GPT-2 forward', () => {
  it('equals GPT-2 written out here as f64 loops (gelu_new, tied head; relu, n_inner, untied head, eps, layer-idx scaling, attention_mask; classification)', async () => {
    const dir = fresh('naive');
    const a: Gpt2Config = { ...TINY };
    const b: Gpt2Config = { ...TINY, activation_function: 'relu', n_inner: 12, tie_word_embeddings: false, layer_norm_epsilon: 1e-3, scale_attn_by_inverse_layer_idx: true };
    const c: Gpt2Config = { ...TINY, n_head: 4, num_labels: 3, pad_token_id: 0 };
    const pa = randomTensors(gpt2Shapes(a, 'lm'), 1);
    const pb = randomTensors(gpt2Shapes(b, 'lm'), 2);
    const pc = randomTensors(gpt2Shapes(c, 'seq_cls'), 3);
    const mask = [[0, 0, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1]]; // left padding, and a hole
    const clsIds = [[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 1, 2]];
    const [ra, rb, rc] = await runTorchJobs([
      { model_dir: writeModelDir(join(dir, 'a'), a, pa), batches: [BATCH] },
      { model_dir: writeModelDir(join(dir, 'b'), b, pb), batches: [{ ...BATCH, attention_mask: mask }] },
      { model_dir: writeModelDir(join(dir, 'c'), c, pc), task: 'seq_cls', batches: [{ input_ids: clsIds }] },
    ]);
    const check = (got: StTensor, cfg: Gpt2Config, P: Tensors, m?: number[][]) => {
      const hs = naiveHidden(cfg, P, BATCH.input_ids, m);
      const w = (P['lm_head.weight'] ?? P['transformer.wte.weight'])!.data;
      const want = new Float64Array(got.data.length);
      hs.forEach((row, bi) => row.forEach((h, t) => want.set(head(w, h), (bi * 6 + t) * 20)));
      // only positions that are not padding when a mask is given
      const keep = (i: number) => !m || m[Math.floor(i / 120)]![Math.floor(i / 20) % 6] === 1;
      let worst = 0;
      for (let i = 0; i < want.length; i++) if (keep(i)) worst = Math.max(worst, Math.abs(got.data[i]! - want[i]!));
      expect(worst).toBeLessThan(1e-12);
    };
    check(get(ra!, 'logits.0'), a, pa);
    check(get(rb!, 'logits.0'), b, pb, mask);
    const hs = naiveHidden(c, pc, clsIds);
    const want = [...head(pc['score.weight']!.data, hs[0]![2]!), ...head(pc['score.weight']!.data, hs[1]![5]!)];
    expect(maxAbsDiff(get(rc!, 'logits.0').data, want)).toBeLessThan(1e-12);
  });
});

describe('gpt2_ref.py: gradients', () => {
  it('torch autograd gradients equal central finite differences (float64, LoRA A/B and base weights, LM and classification)', async () => {
    const base = randomTensors(gpt2Shapes(TINY, 'lm'), 11);
    const loraCfg = { r: 4, lora_alpha: 8, target_modules: ['c_attn', 'c_proj'] }; // c_proj: attn.c_proj and mlp.c_proj
    const init = randomLora(conv1dModules(TINY, ['attn.c_attn', 'attn.c_proj', 'mlp.c_proj'], 4), 12);
    const clsCfg: Gpt2Config = { ...TINY, num_labels: 3, pad_token_id: 0 };
    const clsBase = randomTensors(gpt2Shapes(clsCfg, 'seq_cls'), 13);
    const clsInit = randomLora(conv1dModules(clsCfg, ['attn.c_attn'], 2), 14);
    const labels = [[-100, 5, 9, 3, -100, 11], [2, 4, 6, 8, 10, 12]];
    const clsBatch = { input_ids: [[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 1, 2]], labels: [2, 0] };

    // (task, file kind, tensor, flat index): LoRA factors of three module kinds; wte both as the
    // embedding of an input token and as the tied LM head only (token 17 is not in the batch).
    const probes: ['lm' | 'cls', 'model' | 'init', string, number][] = [
      ['lm', 'init', loraKeys('transformer.h.0.attn.c_attn').A, 9],
      ['lm', 'init', loraKeys('transformer.h.0.attn.c_attn').B, 70],
      ['lm', 'init', loraKeys('transformer.h.1.attn.c_proj').A, 30],
      ['lm', 'init', loraKeys('transformer.h.1.mlp.c_proj').B, 5],
      ['lm', 'model', 'transformer.wte.weight', 5 * 8 + 3],
      ['lm', 'model', 'transformer.wte.weight', 17 * 8 + 6],
      ['lm', 'model', 'transformer.wpe.weight', 2 * 8 + 1],
      ['lm', 'model', 'transformer.h.0.ln_1.weight', 3],
      ['lm', 'model', 'transformer.h.1.attn.c_attn.weight', 2 * 24 + 17],
      ['lm', 'model', 'transformer.h.0.mlp.c_fc.bias', 7],
      ['lm', 'model', 'transformer.ln_f.bias', 0],
      ['cls', 'model', 'score.weight', 2 * 8 + 5],
      ['cls', 'init', loraKeys('transformer.h.1.attn.c_attn').A, 3],
      ['cls', 'model', 'transformer.h.0.attn.c_proj.weight', 12],
    ];
    const dir = fresh('fd');
    const job = (task: 'lm' | 'cls', modelDir: string, initFile: string, mode: 'grad' | 'forward'): TorchJob =>
      task === 'lm'
        ? { model_dir: modelDir, task: 'lm', lora: { config: loraCfg, init_file: initFile }, batches: [{ ...BATCH, labels }], mode, trainable: 'all' }
        : { model_dir: modelDir, task: 'seq_cls', lora: { config: { r: 2, lora_alpha: 4, target_modules: ['c_attn'], task_type: 'SEQ_CLS' }, init_file: initFile }, batches: [clsBatch], mode, trainable: 'all' };
    const lmModel = writeModelDir(join(dir, 'lm'), TINY, base, 'F64');
    const clsModel = writeModelDir(join(dir, 'cls'), clsCfg, clsBase, 'F64');
    writeSafetensorsFile(join(dir, 'lm-init.safetensors'), init, { dtype: 'F64' });
    writeSafetensorsFile(join(dir, 'cls-init.safetensors'), clsInit, { dtype: 'F64' });
    const jobs: TorchJob[] = [job('lm', lmModel, join(dir, 'lm-init.safetensors'), 'grad'), job('cls', clsModel, join(dir, 'cls-init.safetensors'), 'grad')];
    const h = 1e-5;
    const steps: number[] = []; // (w + h) - (w - h) as doubles: the step actually taken
    probes.forEach(([task, kind, name, index], p) => {
      const src: Tensors = kind === 'model' ? (task === 'lm' ? base : clsBase) : task === 'lm' ? init : clsInit;
      const w = src[name]!.data[index]!;
      steps.push(w + h - (w - h));
      for (const sign of [1, -1]) {
        const copy: Tensors = { ...src, [name]: { shape: src[name]!.shape, data: Float64Array.from(src[name]!.data) } };
        copy[name]!.data[index] = w + sign * h;
        const tag = `${p}${sign > 0 ? 'p' : 'm'}`;
        const modelDir = kind === 'model' ? writeModelDir(join(dir, tag), task === 'lm' ? TINY : clsCfg, copy, 'F64') : task === 'lm' ? lmModel : clsModel;
        const initFile = kind === 'init' ? join(dir, `${tag}.safetensors`) : join(dir, `${task}-init.safetensors`);
        if (kind === 'init') writeSafetensorsFile(initFile, copy, { dtype: 'F64' });
        jobs.push(job(task, modelDir, initFile, 'forward'));
      }
    });
    const [lmGrad, clsGrad, ...fwd] = await runTorchJobs(jobs);
    probes.forEach(([task, , name, index], p) => {
      const g = get(task === 'lm' ? lmGrad! : clsGrad!, `grad.${name}`).data[index]!;
      const fd = (get(fwd[2 * p]!, 'loss.0').data[0]! - get(fwd[2 * p + 1]!, 'loss.0').data[0]!) / steps[p]!;
      expect(Math.abs(g), `${task} ${name}[${index}] has a gradient to check`).toBeGreaterThan(1e-4);
      // central differences with h = 1e-5 in f64: truncation ~h^2 ~ 1e-10, rounding ~1e-16 / h ~ 1e-11
      // (observed at most 5e-11); a gradient off by a relative 1e-6 fails
      expect(Math.abs(fd - g), `${task} ${name}[${index}]: autograd ${g}, finite difference ${fd}`).toBeLessThanOrEqual(5e-10);
    });
  });
});

describe('gpt2_ref.py: LoRA forward and merge', () => {
  it('the unmerged and the merged forward equal a base model whose weights are merged here (rsLoRA, rank_pattern, alpha_pattern)', async () => {
    const dir = fresh('merge');
    const base = randomTensors(gpt2Shapes(TINY, 'lm'), 21);
    const config = { r: 4, lora_alpha: 16, use_rslora: true, target_modules: ['c_attn', 'mlp.c_fc'], rank_pattern: { 'h.1.attn.c_attn': 2 }, alpha_pattern: { 'mlp.c_fc': 3 } };
    const modules: [string, number, number, number][] = [
      ['transformer.h.0.attn.c_attn', 8, 24, 4],
      ['transformer.h.1.attn.c_attn', 8, 24, 2],
      ['transformer.h.0.mlp.c_fc', 8, 32, 4],
      ['transformer.h.1.mlp.c_fc', 8, 32, 4],
    ];
    // scaling = alpha / sqrt(r) with use_rslora; alpha 3 for c_fc, r 2 for h.1's c_attn
    const scales = [16 / 2, 16 / Math.SQRT2, 3 / 2, 3 / 2];
    const init = randomLora(modules, 22, { scale: 0.3 });
    // W [in, out] += s * (B A)^T for GPT-2's Conv1D
    const merged: Tensors = { ...base };
    modules.forEach(([m, nIn, nOut, r], j) => {
      const A = init[loraKeys(m).A]!.data;
      const B = init[loraKeys(m).B]!.data;
      const W = Float64Array.from(base[`${m}.weight`]!.data);
      for (let i = 0; i < nIn; i++) {
        for (let o = 0; o < nOut; o++) {
          let d = 0;
          for (let k = 0; k < r; k++) d += B[o * r + k]! * A[k * nIn + i]!;
          W[i * nOut + o]! += scales[j]! * d;
        }
      }
      merged[`${m}.weight`] = { shape: [nIn, nOut], data: W };
    });
    const baseDir = writeModelDir(join(dir, 'base'), TINY, base);
    const mergedDir = writeModelDir(join(dir, 'merged-here'), TINY, merged, 'F64');
    writeSafetensorsFile(join(dir, 'init.safetensors'), init);
    const lora = { config, init_file: join(dir, 'init.safetensors') };
    // jobs run in order, so the last one reads the directory the second one writes
    const [unmergedR, mergedR, hereR, baseR, savedR] = await runTorchJobs([
      { model_dir: baseDir, lora, batches: [BATCH] },
      { model_dir: baseDir, lora, batches: [BATCH], merge: true, save_model_dir: join(dir, 'merged-by-torch') },
      { model_dir: mergedDir, batches: [BATCH] },
      { model_dir: baseDir, batches: [BATCH] },
      { model_dir: join(dir, 'merged-by-torch'), batches: [BATCH] },
    ]);
    const expected = get(hereR!, 'logits.0').data;
    expect(maxAbsDiff(get(unmergedR!, 'logits.0').data, expected)).toBeLessThan(1e-12);
    expect(maxAbsDiff(get(mergedR!, 'logits.0').data, expected)).toBeLessThan(1e-12);
    // LoRA changes the logits by far more than the tolerance above
    expect(maxAbsDiff(get(baseR!, 'logits.0').data, expected)).toBeGreaterThan(1e-2);
    expect(maxAbsDiff(get(savedR!, 'logits.0').data, expected)).toBeLessThan(1e-4); // saved as F32
    // the merged model directory torch wrote holds W + s (B A)^T (in F32) and no LoRA
    const saved = readSafetensorsFile(join(dir, 'merged-by-torch', 'model.safetensors')).tensors;
    for (const [m] of modules) {
      const w = saved[`${m}.weight`]!.data;
      const want = merged[`${m}.weight`]!.data;
      for (let i = 0; i < w.length; i++) expect(w[i]).toBe(Math.fround(want[i]!));
    }
    expect(Object.keys(saved).sort()).toEqual(Object.keys(gpt2Shapes(TINY, 'lm')).sort());
  });

  it('B = 0 gives the base logits exactly (float64 and float32)', async () => {
    const dir = fresh('b0');
    const baseDir = writeModelDir(join(dir, 'base'), TINY, randomTensors(gpt2Shapes(TINY, 'lm'), 31));
    writeSafetensorsFile(join(dir, 'init.safetensors'), randomLora(conv1dModules(TINY, ['c_attn', 'c_proj', 'c_fc'], 4), 32, { zeroB: true }));
    const lora = { config: { r: 4, lora_alpha: 32, target_modules: ['c_attn', 'c_proj', 'c_fc'] }, init_file: join(dir, 'init.safetensors') };
    const rs = await runTorchJobs([
      { model_dir: baseDir, batches: [BATCH] },
      { model_dir: baseDir, lora, batches: [BATCH] },
      { model_dir: baseDir, batches: [BATCH], dtype: 'float32' },
      { model_dir: baseDir, lora, batches: [BATCH], dtype: 'float32' },
    ]);
    expect(get(rs[0]!, 'logits.0').data).toBeInstanceOf(Float64Array);
    expect(get(rs[2]!, 'logits.0').data).toBeInstanceOf(Float32Array);
    expectIdentical(get(rs[1]!, 'logits.0').data, get(rs[0]!, 'logits.0').data, 'float64 logits');
    expectIdentical(get(rs[3]!, 'logits.0').data, get(rs[2]!, 'logits.0').data, 'float32 logits');
    // float32 is a different computation: close to, not equal to, float64
    const d = maxAbsDiff(get(rs[2]!, 'logits.0').data, get(rs[0]!, 'logits.0').data);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(1e-5);
  });
});

/** PEFT 0.20.0's adapter_config.json keys (PeftConfigMixin, PeftConfig, LoraConfig; runtime_config dropped). */
const PEFT_KEYS = [
  'alora_invocation_tokens', 'alpha_pattern', 'arrow_config', 'auto_mapping', 'base_model_name_or_path', 'bias', 'corda_config',
  'ensure_weight_tying', 'eva_config', 'exclude_modules', 'fan_in_fan_out', 'inference_mode', 'init_lora_weights', 'layer_replication',
  'layers_pattern', 'layers_to_transform', 'loftq_config', 'lora_alpha', 'lora_bias', 'lora_dropout', 'lora_ga_config', 'megatron_config',
  'megatron_core', 'modules_to_save', 'monteclora_config', 'peft_type', 'peft_version', 'qalora_group_size', 'r', 'rank_pattern', 'revision',
  'target_modules', 'target_parameters', 'task_type', 'trainable_token_indices', 'use_bdlora', 'use_dora', 'use_qalora', 'use_rslora', 'velora_config',
];

describe('gpt2_ref.py: files both ways', () => {
  it('writes a PEFT adapter directory as PEFT does, and reads it back to the same tensors, logits and bytes', async () => {
    const dir = fresh('adapter');
    const baseDir = writeModelDir(join(dir, 'base'), TINY, randomTensors(gpt2Shapes(TINY, 'lm'), 41));
    const targets = conv1dModules(TINY, ['c_attn', 'c_proj'], 4);
    writeSafetensorsFile(join(dir, 'init.safetensors'), randomLora(targets, 42));
    const config = { r: 4, lora_alpha: 8, target_modules: ['c_proj', 'c_attn'], task_type: 'CAUSAL_LM', base_model_name_or_path: 'tiny-gpt2', bias: 'all' };
    const a1 = join(dir, 'a1');
    const a2 = join(dir, 'a2');
    // float32 throughout, so that what is saved (F32) is exactly what was computed with
    const [trained, loaded] = await runTorchJobs([
      {
        model_dir: baseDir, dtype: 'float32', lora: { config, init_file: join(dir, 'init.safetensors') }, batches: [BATCH],
        mode: 'train', optimizer: { type: 'sgd', lr: 0.1 }, steps: 2, final_logits: true, save_adapter_dir: a1,
      },
      { model_dir: baseDir, dtype: 'float32', adapter_dir: a1, batches: [BATCH], save_adapter_dir: a2 },
    ]);
    // names: lora_A/lora_B per target; with bias "all" every bias, targeted ones at base_layer.bias
    const expectedNames: string[] = [];
    for (const [m] of targets) expectedNames.push(loraKeys(m).A, loraKeys(m).B);
    for (const name of Object.keys(gpt2Shapes(TINY, 'lm')).filter((n) => n.endsWith('.bias'))) {
      const mod = name.slice(0, -'.bias'.length);
      expectedNames.push(targets.some(([m]) => m === mod) ? `base_model.model.${mod}.base_layer.bias` : `base_model.model.${name}`);
    }
    const file = readSafetensorsFile(join(a1, 'adapter_model.safetensors'));
    expect(Object.keys(file.tensors).sort()).toEqual(expectedNames.sort());
    expect(file.metadata).toEqual({ format: 'pt' });
    for (const [m, nIn, nOut, r] of targets) {
      expect(file.tensors[loraKeys(m).A]!.shape).toEqual([r, nIn]);
      expect(file.tensors[loraKeys(m).B]!.shape).toEqual([nOut, r]);
      for (const k of [loraKeys(m).A, loraKeys(m).B]) {
        expectIdentical(file.tensors[k]!.data, get(trained!, `param.${k}`).data, k);
      }
    }
    expectIdentical(file.tensors['base_model.model.transformer.h.0.attn.c_attn.base_layer.bias']!.data, get(trained!, 'param.transformer.h.0.attn.c_attn.bias').data, 'c_attn bias');
    expectIdentical(file.tensors['base_model.model.transformer.ln_f.bias']!.data, get(trained!, 'param.transformer.ln_f.bias').data, 'ln_f bias');
    // the safetensors layout: 8-byte length, compact header with __metadata__ first, padded to 8
    const bytes = readFileSync(join(a1, 'adapter_model.safetensors'));
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const headerText = bytes.subarray(8, 8 + n).toString('utf8');
    expect(headerText.startsWith('{"__metadata__":{"format":"pt"},"base_model.model.transformer.h.0.attn.c_attn.base_layer.bias":{"dtype":"F32","shape":[24],"data_offsets":[0,96]},')).toBe(true);
    expect(headerText).toMatch(/\} *$/);
    // adapter_config.json: sorted keys, indent 2, PEFT's field set and values
    const text = readFileSync(join(a1, 'adapter_config.json'), 'utf8');
    const conf = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(conf)).toEqual([...PEFT_KEYS].sort());
    expect(text).toMatch(/^\{\n {2}"alora_invocation_tokens": null,\n/);
    expect(conf).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', inference_mode: true, base_model_name_or_path: 'tiny-gpt2', r: 4, lora_alpha: 8,
      target_modules: ['c_attn', 'c_proj'], fan_in_fan_out: true, bias: 'all', auto_mapping: null, peft_version: '0.20.0',
      modules_to_save: null, rank_pattern: {}, alpha_pattern: {}, loftq_config: {}, megatron_core: 'megatron.core', lora_dropout: 0,
    });
    expect(text).toContain('"lora_dropout": 0.0,');
    // read back: same logits as the trained model, and re-saving gives the same bytes
    expectIdentical(get(loaded!, 'logits.0').data, get(trained!, 'final.logits.0').data, 'logits of the loaded adapter');
    expect(readFileSync(join(a2, 'adapter_model.safetensors')).equals(bytes)).toBe(true);
    expect(readFileSync(join(a2, 'adapter_config.json'), 'utf8')).toBe(text);
  });

  it('writes a model directory as HF does and reads HF checkpoints with or without the transformer. prefix and the old mask buffers', async () => {
    const dir = fresh('model');
    const params = randomTensors(gpt2Shapes(TINY, 'lm'), 51);
    const orig = writeModelDir(join(dir, 'orig'), TINY, params);
    // GPT2Model's own layout (gpt2's files): no prefix, plus the causal-mask buffers
    const bare: Record<string, { shape: number[]; data: ArrayLike<number> }> = {};
    for (const [k, v] of Object.entries(params)) bare[k.replace(/^transformer\./, '')] = v;
    for (let i = 0; i < TINY.n_layer; i++) {
      bare[`h.${i}.attn.bias`] = { shape: [1, 1, 16, 16], data: new Float64Array(256).map((_, j) => (j % 16 <= Math.floor(j / 16) ? 1 : 0)) };
      bare[`h.${i}.attn.masked_bias`] = { shape: [], data: [-1e4] };
    }
    const bareDir = writeModelDir(join(dir, 'bare'), TINY, bare);
    const untied: Gpt2Config = { ...TINY, tie_word_embeddings: false };
    const untiedDir = writeModelDir(join(dir, 'untied'), untied, randomTensors(gpt2Shapes(untied, 'lm'), 52));
    // values k/64, |k| < 64, which F16 and BF16 hold exactly: the same model in four dtypes
    const coarse: Tensors = {};
    for (const [k, v] of Object.entries(params)) coarse[k] = { shape: v.shape, data: v.data.map((x) => Math.round(x * 63) / 64) };
    const byDtype = (['F32', 'F64', 'F16', 'BF16'] as const).map((dt) => writeModelDir(join(dir, `coarse-${dt}`), TINY, coarse, dt));
    const [a, b, c, d, ...coarseR] = await runTorchJobs([
      { model_dir: orig, batches: [BATCH], save_model_dir: join(dir, 'saved') },
      { model_dir: bareDir, batches: [BATCH] },
      { model_dir: join(dir, 'saved'), batches: [BATCH] },
      { model_dir: untiedDir, batches: [BATCH], save_model_dir: join(dir, 'saved-untied') },
      ...byDtype.map((m) => ({ model_dir: m, batches: [BATCH] })),
    ]);
    for (const [i, dt] of ['F64', 'F16', 'BF16'].entries()) {
      expectIdentical(get(coarseR[i + 1]!, 'logits.0').data, get(coarseR[0]!, 'logits.0').data, `${dt} checkpoint`);
    }
    expectIdentical(get(b!, 'logits.0').data, get(a!, 'logits.0').data, 'unprefixed checkpoint');
    expectIdentical(get(c!, 'logits.0').data, get(a!, 'logits.0').data, 'saved checkpoint');
    const saved = readSafetensorsFile(join(dir, 'saved', 'model.safetensors'));
    expect(saved.metadata).toEqual({ format: 'pt' });
    expect(Object.keys(saved.tensors).sort()).toEqual(Object.keys(params).sort()); // lm_head.weight left out: tied
    for (const [k, v] of Object.entries(params)) expectIdentical(saved.tensors[k]!.data, v.data, k);
    expect(JSON.parse(readFileSync(join(dir, 'saved', 'config.json'), 'utf8'))).toEqual(TINY);
    const savedUntied = readSafetensorsFile(join(dir, 'saved-untied', 'model.safetensors')).tensors;
    expect(savedUntied['lm_head.weight']?.shape).toEqual([20, 8]);
    expect(get(d!, 'logits.0').shape).toEqual([2, 6, 20]);
  });
});

describe('gpt2_ref.py: losses and pooling', () => {
  it('the LM loss is the mean cross-entropy of logits[:, :-1] against labels[:, 1:], -100 ignored, labels defaulting to input_ids', async () => {
    const dir = fresh('ce');
    const modelDir = writeModelDir(join(dir, 'm'), TINY, randomTensors(gpt2Shapes(TINY, 'lm'), 61));
    const labels = [[7, -100, 9, 3, -100, 1], [-100, 4, 6, -100, 10, 12]];
    const r = await runTorch({ model_dir: modelDir, batches: [{ ...BATCH, labels }, BATCH] });
    const V = 20;
    for (const [i, lab] of [labels, BATCH.input_ids].entries()) {
      const logits = get(r, `logits.${i}`);
      expect(logits.shape).toEqual([2, 6, V]);
      let sum = 0;
      let count = 0;
      for (let b = 0; b < 2; b++) {
        for (let t = 0; t < 5; t++) {
          const y = lab[b]![t + 1]!;
          if (y === -100) continue;
          const row = logits.data.subarray((b * 6 + t) * V, (b * 6 + t + 1) * V);
          const max = Math.max(...row);
          let z = 0;
          for (const v of row) z += Math.exp(v - max);
          sum += max + Math.log(z) - row[y]!;
          count++;
        }
      }
      const loss = get(r, `loss.${i}`).data[0]!;
      expect(Math.abs(loss - sum / count), `batch ${i}: loss ${loss}, by hand ${sum / count}`).toBeLessThan(1e-12);
    }
  });

  it('classification pools the last non-pad token (or the legacy first-pad rule), the last position without a pad id, and takes the mean cross-entropy', async () => {
    const dir = fresh('pool');
    const cfg: Gpt2Config = { ...TINY, num_labels: 3, pad_token_id: 0 };
    const params = randomTensors(gpt2Shapes(cfg, 'seq_cls'), 71);
    const withPad = writeModelDir(join(dir, 'pad'), cfg, params);
    const noPad = writeModelDir(join(dir, 'nopad'), { ...cfg, pad_token_id: null }, params);
    const rows = [[4, 5, 6, 0, 0], [4, 5, 6, 7, 8], [4, 0, 6, 7, 0], [0, 0, 4, 5, 6]];
    const batch = { input_ids: rows, labels: [2, 0, 1, 2] };
    const [pad, legacy, none, alone] = await runTorchJobs([
      { model_dir: withPad, task: 'seq_cls', batches: [batch] },
      { model_dir: withPad, task: 'seq_cls', batches: [batch], pooling: 'first_pad' },
      { model_dir: noPad, task: 'seq_cls', batches: [batch] },
      { model_dir: withPad, task: 'seq_cls', batches: [{ input_ids: [[4, 5, 6]] }, { input_ids: [[4, 5, 6, 7, 8]] }, { input_ids: [[4, 0, 6, 7]] }] },
    ]);
    expect(Array.from(get(pad!, 'pool_index.0').data)).toEqual([2, 4, 3, 4]);
    expect(Array.from(get(legacy!, 'pool_index.0').data)).toEqual([2, 4, 0, 4]);
    expect(Array.from(get(none!, 'pool_index.0').data)).toEqual([4, 4, 4, 4]);
    // causal attention: the pooled row equals the same prefix run alone (last token pooled)
    const pooled = get(pad!, 'logits.0');
    expect(pooled.shape).toEqual([4, 3]);
    for (const [row, j] of [[0, 0], [1, 1], [2, 2]] as const) {
      expect(maxAbsDiff(pooled.data.subarray(row * 3, row * 3 + 3), get(alone!, `logits.${j}`).data)).toBeLessThan(1e-12);
    }
    // the rows with a pad between tokens differ from the first-pad rule's choice
    expect(maxAbsDiff(pooled.data.subarray(6, 9), get(legacy!, 'logits.0').data.subarray(6, 9))).toBeGreaterThan(1e-6);
    let ce = 0;
    batch.labels.forEach((y, b) => {
      const row = pooled.data.subarray(b * 3, b * 3 + 3);
      let z = 0;
      for (const v of row) z += Math.exp(v);
      ce += Math.log(z) - row[y]!;
    });
    expect(Math.abs(get(pad!, 'loss.0').data[0]! - ce / 4)).toBeLessThan(1e-12);
  });
});

describe('gpt2_ref.py: optimizers and trainable sets', () => {
  it('AdamW (decoupled decay, a no_decay group) and SGD (momentum, dampening, decay) steps equal torch\'s update written out here', async () => {
    const dir = fresh('optim');
    const modelDir = writeModelDir(join(dir, 'm'), TINY, randomTensors(gpt2Shapes(TINY, 'lm'), 81));
    const init = randomLora(conv1dModules(TINY, ['c_attn'], 4), 82);
    writeSafetensorsFile(join(dir, 'init.safetensors'), init);
    const lora = { config: { r: 4, lora_alpha: 8, target_modules: ['c_attn'] }, init_file: join(dir, 'init.safetensors') };
    const batches = [BATCH, { input_ids: [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]] }];
    const adam = { type: 'adamw' as const, lr: 0.01, betas: [0.9, 0.99] as [number, number], eps: 1e-6, weight_decay: 0.1, no_decay: ['lora_B'] };
    const sgd = { type: 'sgd' as const, lr: 0.05, momentum: 0.9, dampening: 0.1, weight_decay: 0.05 };
    const [fwd, adamR, sgdR] = await runTorchJobs([
      { model_dir: modelDir, lora, batches },
      { model_dir: modelDir, lora, batches, mode: 'train', optimizer: adam, steps: 3, record: true },
      { model_dir: modelDir, lora, batches, mode: 'train', optimizer: sgd, steps: 3, record: true },
    ]);
    expect(get(adamR!, 'loss.0').data[0]).toBe(get(fwd!, 'loss.0').data[0]);
    expect(get(sgdR!, 'loss.1').data[0]).not.toBe(get(fwd!, 'loss.1').data[0]); // step 1 runs on updated weights
    const names = [loraKeys('transformer.h.0.attn.c_attn').A, loraKeys('transformer.h.1.attn.c_attn').B];
    for (const name of names) {
      // torch 1.13 AdamW (single-tensor path), step t = 1, 2, 3
      const p = Float64Array.from(init[name]!.data);
      const m = new Float64Array(p.length);
      const v = new Float64Array(p.length);
      const wd = name.includes('lora_B') ? 0 : adam.weight_decay;
      const [b1, b2] = adam.betas;
      for (let t = 1; t <= 3; t++) {
        const g = get(adamR!, `trace.${t - 1}.grad.${name}`).data;
        const bc1 = 1 - b1 ** t;
        const bc2 = 1 - b2 ** t;
        for (let i = 0; i < p.length; i++) {
          p[i] = p[i]! * (1 - adam.lr * wd);
          m[i] = m[i]! * b1 + g[i]! * (1 - b1);
          v[i] = v[i]! * b2 + g[i]! * g[i]! * (1 - b2);
          const denom = Math.sqrt(v[i]!) / Math.sqrt(bc2) + adam.eps;
          p[i] = p[i]! - (adam.lr / bc1) * (m[i]! / denom);
        }
        const got = get(adamR!, `trace.${t - 1}.param.${name}`).data;
        expect(maxAbsDiff(got, p), `AdamW ${name} step ${t}`).toBeLessThan(1e-15);
      }
      expectIdentical(get(adamR!, `param.${name}`).data, get(adamR!, `trace.2.param.${name}`).data, `final ${name}`);
      // torch 1.13 SGD: d = g + wd p; buf = d (first step) else momentum buf + (1 - dampening) d; p -= lr buf
      const q = Float64Array.from(init[name]!.data);
      const buf = new Float64Array(q.length);
      for (let t = 1; t <= 3; t++) {
        const g = get(sgdR!, `trace.${t - 1}.grad.${name}`).data;
        for (let i = 0; i < q.length; i++) {
          const d = g[i]! + sgd.weight_decay * q[i]!;
          buf[i] = t === 1 ? d : sgd.momentum * buf[i]! + (1 - sgd.dampening) * d;
          q[i] = q[i]! - sgd.lr * buf[i]!;
        }
        expect(maxAbsDiff(get(sgdR!, `trace.${t - 1}.param.${name}`).data, q), `SGD ${name} step ${t}`).toBeLessThan(1e-15);
      }
    }
  });

  it('trainable selects LoRA with PEFT\'s bias modes and modules_to_save, all, the head, frozen blocks and frozen names; frozen weights stay bit-identical', async () => {
    const dir = fresh('trainable');
    const cfg: Gpt2Config = { ...TINY, num_labels: 3, pad_token_id: 0 };
    const params = randomTensors(gpt2Shapes(cfg, 'seq_cls'), 91);
    const cls = writeModelDir(join(dir, 'cls'), cfg, params);
    const lm = writeModelDir(join(dir, 'lm'), TINY, randomTensors(gpt2Shapes(TINY, 'lm'), 92));
    writeSafetensorsFile(join(dir, 'init.safetensors'), randomLora(conv1dModules(cfg, ['c_attn'], 2), 93));
    const clsBatch = { input_ids: [[1, 2, 3, 0], [4, 5, 6, 7]], labels: [1, 2] };
    const lora = (bias: string) => ({ config: { r: 2, target_modules: ['c_attn'], task_type: 'SEQ_CLS', bias }, init_file: join(dir, 'init.safetensors') });
    const rs = await runTorchJobs([
      { model_dir: cls, task: 'seq_cls', lora: lora('lora_only'), batches: [clsBatch], mode: 'grad' },
      { model_dir: cls, task: 'seq_cls', lora: lora('none'), batches: [clsBatch], mode: 'grad', trainable: 'head' },
      { model_dir: cls, task: 'seq_cls', batches: [clsBatch], mode: 'grad', trainable: 'head' },
      { model_dir: lm, batches: [BATCH], mode: 'grad' },
      { model_dir: lm, batches: [BATCH], mode: 'grad', trainable: { freeze: ['^transformer\\.wte\\.', 'ln_'] } },
      { model_dir: lm, batches: [BATCH], mode: 'train', trainable: { freeze_first_blocks: 1 }, optimizer: { lr: 0.01 }, steps: 2, save_model_dir: join(dir, 'half') },
    ]);
    const grads = (r: Record<string, StTensor>) => Object.keys(r).filter((k) => k.startsWith('grad.')).map((k) => k.slice(5)).sort();
    const lmNames = Object.keys(gpt2Shapes(TINY, 'lm'));
    const loraNames = [0, 1].flatMap((i) => [loraKeys(`transformer.h.${i}.attn.c_attn`).A, loraKeys(`transformer.h.${i}.attn.c_attn`).B]);
    expect(grads(rs[0]!)).toEqual([...loraNames, 'score.weight', 'transformer.h.0.attn.c_attn.bias', 'transformer.h.1.attn.c_attn.bias'].sort());
    expect(grads(rs[1]!)).toEqual(['score.weight']);
    expect(grads(rs[2]!)).toEqual(['score.weight']);
    expect(grads(rs[3]!)).toEqual([...lmNames].sort());
    expect(grads(rs[4]!)).toEqual(lmNames.filter((n) => n !== 'transformer.wte.weight' && !n.includes('ln_')).sort());
    const trained = Object.keys(rs[5]!).filter((k) => k.startsWith('param.')).map((k) => k.slice(6)).sort();
    expect(trained).toEqual(lmNames.filter((n) => !n.startsWith('transformer.h.0.')).sort());
    const before = readSafetensorsFile(join(lm, 'model.safetensors')).tensors;
    const after = readSafetensorsFile(join(dir, 'half', 'model.safetensors')).tensors;
    for (const n of lmNames) {
      if (n.startsWith('transformer.h.0.')) expectIdentical(after[n]!.data, before[n]!.data, `frozen ${n}`);
      else expect(maxAbsDiff(after[n]!.data, before[n]!.data), `trained ${n}`).toBeGreaterThan(0);
    }
  });
});

describe('gpt2_ref.py: PEFT target matching', () => {
  type Modules = [string, number, number, number][];
  interface Case {
    model: string;
    config: Record<string, unknown>;
    /** The modules PEFT targets, worked out here; the init file holds exactly their factors. */
    modules: Modules;
    task?: 'lm' | 'seq_cls';
  }
  /** Inject each case's LoRA (one process) and return its saved adapter's {name: shape} and config. */
  async function inject(cases: Case[]) {
    const dirs = cases.map(() => fresh('target'));
    cases.forEach((c, i) => writeSafetensorsFile(join(dirs[i]!, 'init.safetensors'), randomLora(c.modules, 101 + i)));
    await runTorchJobs(
      cases.map((c, i) => ({
        model_dir: c.model, task: c.task ?? 'lm', lora: { config: c.config, init_file: join(dirs[i]!, 'init.safetensors') },
        batches: [{ input_ids: [[1, 2]] }], save_adapter_dir: join(dirs[i]!, 'a'),
      })),
    );
    return dirs.map((d) => ({
      shapes: Object.fromEntries(Object.entries(readSafetensorsFile(join(d, 'a', 'adapter_model.safetensors')).tensors).map(([k, v]) => [k, v.shape])),
      conf: JSON.parse(readFileSync(join(d, 'a', 'adapter_config.json'), 'utf8')) as Record<string, unknown>,
    }));
  }
  const loraShapes = (modules: Modules) => Object.fromEntries(modules.flatMap(([m, nIn, nOut, r]) => [[loraKeys(m).A, [r, nIn]], [loraKeys(m).B, [nOut, r]]]));

  it('matches as PEFT does: list entries by name or .suffix, strings as full regexes, layers_to_transform, exclude_modules, rank_pattern, all-linear, condensing, defaults, SEQ_CLS', async () => {
    const BIG: Gpt2Config = { ...TINY, n_layer: 5 };
    const cfg: Gpt2Config = { ...TINY, num_labels: 3, pad_token_id: 0 };
    const lm = writeModelDir(fresh('tm-lm'), TINY, randomTensors(gpt2Shapes(TINY, 'lm'), 111));
    const big = writeModelDir(fresh('tm-big'), BIG, randomTensors(gpt2Shapes(BIG, 'lm'), 112));
    const cls = writeModelDir(fresh('tm-cls'), cfg, randomTensors(gpt2Shapes(cfg, 'seq_cls'), 113));
    const attn1: Modules = [['transformer.h.1.attn.c_attn', 8, 24, 3]];
    const all = conv1dModules(TINY, ['c_attn', 'c_proj', 'c_fc'], 8);
    const cases: Case[] = [
      { model: lm, config: { target_modules: ['c_proj'] }, modules: conv1dModules(TINY, ['c_proj'], 8) }, // attn.c_proj and mlp.c_proj
      { model: lm, config: { target_modules: '.*\\.1\\.mlp\\.c_fc' }, modules: [['transformer.h.1.mlp.c_fc', 8, 32, 8]] },
      { model: lm, config: { r: 3, target_modules: ['c_attn'], layers_to_transform: [1] }, modules: attn1 },
      { model: lm, config: { r: 3, target_modules: ['c_attn'], exclude_modules: ['h.0.attn.c_attn'] }, modules: attn1 },
      { model: lm, config: { target_modules: ['c_attn'], rank_pattern: { 'h.0.attn.c_attn': 2 } }, modules: [['transformer.h.0.attn.c_attn', 8, 24, 2], ['transformer.h.1.attn.c_attn', 8, 24, 8]] },
      { model: lm, config: { target_modules: 'all-linear' }, modules: all }, // lm_head left out
      { model: big, config: { target_modules: 'all-linear' }, modules: conv1dModules(BIG, ['c_attn', 'c_proj', 'c_fc'], 8) }, // 5 blocks x 4 = 20 names
      { model: lm, config: {}, modules: conv1dModules(TINY, ['c_attn'], 8) },
      { model: cls, config: { target_modules: 'all-linear', task_type: 'SEQ_CLS' }, modules: all, task: 'seq_cls' },
      { model: lm, config: { target_modules: ['c_attn'], bias: 'lora_only' }, modules: conv1dModules(TINY, ['c_attn'], 8) },
    ];
    const got = await inject(cases);
    cases.forEach((c, i) => {
      const extra: Record<string, number[]> = c.task === 'seq_cls' ? { 'base_model.model.score.weight': [3, 8] } : {};
      // bias "lora_only": the targeted modules' biases, at <module>.base_layer.bias
      if (c.config.bias === 'lora_only') for (const [m, , nOut] of c.modules) extra[`base_model.model.${m}.base_layer.bias`] = [nOut];
      expect(got[i]!.shapes, `case ${i}: ${JSON.stringify(c.config)}`).toEqual({ ...loraShapes(c.modules), ...extra });
    });
    expect(got[1]!.conf.target_modules).toBe('.*\\.1\\.mlp\\.c_fc');
    expect(got[4]!.conf).toMatchObject({ rank_pattern: { 'h.0.attn.c_attn': 2 }, r: 8, task_type: null });
    expect(got[4]!.conf.auto_mapping).toEqual({ base_model_class: 'GPT2LMHeadModel', parent_library: 'transformers.models.gpt2.modeling_gpt2' });
    expect(got[5]!.conf.target_modules).toEqual(all.map(([m]) => m).sort());
    expect(got[6]!.conf.target_modules).toEqual(['c_attn', 'c_fc', 'c_proj']); // condensed to suffixes
    expect(got[7]!.conf.target_modules).toEqual(['c_attn']); // PEFT's default for gpt2
    expect(got[8]!.conf).toMatchObject({ modules_to_save: ['classifier', 'score'], auto_mapping: null, task_type: 'SEQ_CLS' });
  });
});

describe('gpt2_ref.py: bad jobs', () => {
  let modelDir: string;
  let dir: string;
  beforeAll(() => {
    dir = fresh('bad');
    modelDir = writeModelDir(join(dir, 'm'), TINY, randomTensors(gpt2Shapes(TINY, 'lm'), 121));
    writeSafetensorsFile(join(dir, 'init.safetensors'), randomLora(conv1dModules(TINY, ['c_attn'], 4), 122));
  });
  const fails = async (job: TorchJob, message: RegExp) => {
    const err = await runTorch(job).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TorchRefError);
    expect((err as TorchRefError).status).toBe(2);
    expect((err as TorchRefError).stderr).toMatch(message);
  };

  it('exits with status 2 and one clear line for unknown keys, unknown targets, unfit init files, out-of-range tokens and malformed files', async () => {
    await fails({ model_dir: modelDir, batches: [BATCH], mode: 'forward', learning_rate: 1 } as TorchJob, /unknown keys \['learning_rate'\]/);
    await fails({ model_dir: modelDir, batches: [BATCH], lora: { config: { target_modules: ['q_proj'] }, init_file: join(dir, 'init.safetensors') } }, /Target modules \['q_proj'\] not found in the base model/);
    await fails({ model_dir: modelDir, batches: [BATCH], lora: { config: { target_modules: ['ln_1'] }, init_file: join(dir, 'init.safetensors') } }, /target module transformer\.h\.0\.ln_1 is a LayerNorm/);
    await fails({ model_dir: modelDir, batches: [BATCH], lora: { config: { r: 2, target_modules: ['c_attn'] }, init_file: join(dir, 'init.safetensors') } }, /shape mismatches \['base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight: expected \[2, 8\], found \[4, 8\]'/);
    await fails({ model_dir: modelDir, batches: [{ input_ids: [[1, 20]] }] }, /token ids must be in \[0, 20\)/);
    const broken = join(dir, 'broken');
    mkdirSync(broken);
    writeFileSync(join(broken, 'config.json'), JSON.stringify(TINY));
    writeFileSync(join(broken, 'model.safetensors'), readFileSync(join(modelDir, 'model.safetensors')).subarray(0, 500));
    await fails({ model_dir: broken, batches: [BATCH] }, /model\.safetensors: safetensors header length \d+ runs past the end of the file \(500 bytes\)/);
  });
});
