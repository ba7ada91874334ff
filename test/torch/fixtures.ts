/**
 * Tiny GPT-2 checkpoints and LoRA init files for the PyTorch reference tests, written from
 * TypeScript with seeded random values (random initialisations always come from the TS side).
 * Parameter names and shapes are written out here from Hugging Face's GPT-2, independently of
 * the reference script.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from '../check.js';
import { writeSafetensorsFile, type StDtype, type StInput } from './safetensors.js';

/** The config.json fields the tests set (any other HF field may be added). */
export interface Gpt2Config {
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_inner?: number | null;
  layer_norm_epsilon?: number;
  activation_function?: string;
  tie_word_embeddings?: boolean;
  pad_token_id?: number | null;
  num_labels?: number;
  [key: string]: unknown;
}

/** A small config: 8 wide, 2 blocks of 2 heads, 20 tokens. */
export const TINY: Gpt2Config = { model_type: 'gpt2', vocab_size: 20, n_positions: 16, n_embd: 8, n_layer: 2, n_head: 2 };

/** HF's parameter names and shapes for GPT2LMHeadModel ('lm') or GPT2ForSequenceClassification. */
export function gpt2Shapes(c: Gpt2Config, task: 'lm' | 'seq_cls' = 'lm'): Record<string, number[]> {
  const E = c.n_embd;
  const I = c.n_inner ?? 4 * E;
  const s: Record<string, number[]> = { 'transformer.wte.weight': [c.vocab_size, E], 'transformer.wpe.weight': [c.n_positions, E] };
  for (let i = 0; i < c.n_layer; i++) {
    const p = `transformer.h.${i}.`;
    Object.assign(s, {
      [`${p}ln_1.weight`]: [E],
      [`${p}ln_1.bias`]: [E],
      [`${p}attn.c_attn.weight`]: [E, 3 * E],
      [`${p}attn.c_attn.bias`]: [3 * E],
      [`${p}attn.c_proj.weight`]: [E, E],
      [`${p}attn.c_proj.bias`]: [E],
      [`${p}ln_2.weight`]: [E],
      [`${p}ln_2.bias`]: [E],
      [`${p}mlp.c_fc.weight`]: [E, I],
      [`${p}mlp.c_fc.bias`]: [I],
      [`${p}mlp.c_proj.weight`]: [I, E],
      [`${p}mlp.c_proj.bias`]: [E],
    });
  }
  s['transformer.ln_f.weight'] = [E];
  s['transformer.ln_f.bias'] = [E];
  if (task === 'seq_cls') s['score.weight'] = [c.num_labels ?? 2, E];
  else if (c.tie_word_embeddings === false) s['lm_head.weight'] = [c.vocab_size, E];
  return s;
}

export type Tensors = Record<string, { shape: number[]; data: Float64Array }>;

/**
 * Seeded values in [-scale, scale] for each shape, rounded to f32 (so an F32 file holds them
 * exactly); LayerNorm weights around 1 so the model is not degenerate.
 */
export function randomTensors(shapes: Record<string, number[]>, seed: number, scale = 0.5): Tensors {
  const R = rng(seed);
  const out: Tensors = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float64Array(n);
    const around = /\.ln_(1|2|f)\.weight$/.test(name) ? 1 : 0;
    for (let i = 0; i < n; i++) data[i] = Math.fround(around + scale * (2 * R() - 1));
    out[name] = { shape, data };
  }
  return out;
}

/** Write config.json and model.safetensors (F32 unless `dtype` says otherwise). */
export function writeModelDir(dir: string, config: Gpt2Config, params: Record<string, StInput>, dtype: StDtype = 'F32'): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensorsFile(join(dir, 'model.safetensors'), params, { dtype, metadata: { format: 'pt' } });
  return dir;
}

/** PEFT's on-disk names of a module's LoRA factors. */
export function loraKeys(module: string): { A: string; B: string } {
  return { A: `base_model.model.${module}.lora_A.weight`, B: `base_model.model.${module}.lora_B.weight` };
}

/**
 * Random lora_A [r, in] and lora_B [out, r] for Conv1D modules given as [name, in, out, r]
 * (B left out when `zeroB`, which the reference then starts at zero as PEFT does).
 */
export function randomLora(modules: [string, number, number, number][], seed: number, opts: { zeroB?: boolean; scale?: number } = {}): Tensors {
  const shapes: Record<string, number[]> = {};
  for (const [m, nIn, nOut, r] of modules) {
    const k = loraKeys(m);
    shapes[k.A] = [r, nIn];
    if (!opts.zeroB) shapes[k.B] = [nOut, r];
  }
  return randomTensors(shapes, seed, opts.scale ?? 0.5);
}

/** The Conv1D modules of GPT-2 named by suffix ('c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj') with their in/out sizes. */
export function conv1dModules(c: Gpt2Config, suffixes: string[], r: number): [string, number, number, number][] {
  const E = c.n_embd;
  const I = c.n_inner ?? 4 * E;
  const io: Record<string, [number, number]> = { 'attn.c_attn': [E, 3 * E], 'attn.c_proj': [E, E], 'mlp.c_fc': [E, I], 'mlp.c_proj': [I, E] };
  const out: [string, number, number, number][] = [];
  for (let i = 0; i < c.n_layer; i++) {
    for (const [name, [nIn, nOut]] of Object.entries(io)) {
      if (suffixes.some((s) => name === s || name.endsWith(`.${s}`))) out.push([`transformer.h.${i}.${name}`, nIn, nOut, r]);
    }
  }
  return out;
}
