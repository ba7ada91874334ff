/**
 * Hugging Face checkpoints for the GPT-2 models, in memory (Node and browser alike; the Node
 * file helpers are in src/node.ts): `config.json` text and a `model.safetensors` file, read
 * and written with the names `transformers` uses, so a checkpoint made here is a GPT-2
 * checkpoint and an HF one loads here.
 *
 * Reading accepts tensor names with or without the `transformer.` prefix (GPT-2's original
 * checkpoints have none), skips the causal-mask buffers `attn.bias` / `attn.masked_bias` of older
 * checkpoints, and ignores `lm_head.weight` when it is tied to `wte`. Writing drops tied
 * duplicates (as `save_pretrained` does: safetensors cannot hold shared tensors) and writes
 * F32 with metadata `{"format": "pt"}`.
 *
 * ```ts
 * const { model } = gpt2FromFiles(ctx, configText, parseSafetensors(bytes));
 * const { config, weights } = await gpt2ToFiles(model);     // config.json text, safetensors bytes
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import type { SafetensorsFile, SafetensorsTensorInput } from '../io/safetensors.js';
import { serializeSafetensors } from '../io/safetensors.js';
import { GPT2ForSequenceClassification, type GPT2Config, GPT2LMHeadModel, gpt2Config } from './gpt2.js';
import type { HostTensor } from './module.js';

/** Every tensor of a safetensors file as f32 on the CPU (F32, F16, BF16; other dtypes refused). */
export function hostTensors(file: SafetensorsFile): Map<string, HostTensor> {
  return new Map(file.tensors.map((t) => [t.name, { shape: [...t.shape], data: t.toFloat32() }]));
}

/** A JSON object from a config file's text; an ArgumentError names the file otherwise. */
export function parseJsonObject(text: string, source: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ArgumentError(`${source}: not valid JSON (${(e as Error).message})`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ArgumentError(`${source}: expected a JSON object`);
  return json as Record<string, unknown>;
}

/** Parse config.json text into a checked GPT2Config (errors name the file). */
export function parseGPT2Config(text: string, source = 'config.json'): GPT2Config {
  return gpt2Config(parseJsonObject(text, source));
}

export type GPT2Task = 'lm' | 'seq_cls';

/** HF's tensor names for a GPT-2 checkpoint, mapped to this model's state-dict keys. */
export function normaliseGPT2Names(tensors: ReadonlyMap<string, HostTensor>, tied: boolean): { tensors: Map<string, HostTensor>; skipped: string[] } {
  const out = new Map<string, HostTensor>();
  const skipped: string[] = [];
  for (const [name, t] of tensors) {
    // Causal-mask buffers of older checkpoints: not parameters.
    if (/(^|\.)attn\.(bias|masked_bias)$/.test(name)) {
      skipped.push(name);
      continue;
    }
    if (tied && name === 'lm_head.weight') {
      skipped.push(name);
      continue;
    }
    const key = /^(wte|wpe|h|ln_f)\./.test(name) ? `transformer.${name}` : name;
    if (out.has(key)) throw new ShapeError(`GPT-2 checkpoint: '${name}' and '${key}' name the same tensor`);
    out.set(key, t);
  }
  return { tensors: out, skipped };
}

export interface LoadedGPT2<M> {
  model: M;
  /** Model parameters the checkpoint did not have (a new head, for instance), left at their init. */
  missing: string[];
  /** Checkpoint tensors the model has no use for (an LM head for a classifier, say). */
  unexpected: string[];
}

/**
 * A GPT-2 model from an HF config and checkpoint. `task` 'lm' (GPT2LMHeadModel) loads strictly;
 * 'seq_cls' (GPT2ForSequenceClassification) accepts an LM checkpoint: the body loads, `score` is
 * new (missing) and `lm_head` is unexpected, as HF reports them. Every tensor is checked before
 * any is written: on an error no model is returned.
 */
export function gpt2FromFiles(ctx: GpuContext, configText: string, weights: SafetensorsFile, o: { task: 'seq_cls'; seed?: number; numLabels?: number; padTokenId?: number | null }): LoadedGPT2<GPT2ForSequenceClassification>;
export function gpt2FromFiles(ctx: GpuContext, configText: string, weights: SafetensorsFile, o?: { task?: 'lm'; seed?: number }): LoadedGPT2<GPT2LMHeadModel>;
export function gpt2FromFiles(
  ctx: GpuContext,
  configText: string,
  weights: SafetensorsFile,
  o: { task?: GPT2Task; seed?: number; numLabels?: number; padTokenId?: number | null } = {},
): LoadedGPT2<GPT2LMHeadModel | GPT2ForSequenceClassification> {
  const config = parseGPT2Config(configText);
  const task = o.task ?? 'lm';
  if (task === 'seq_cls') {
    if (o.numLabels !== undefined) config.num_labels = o.numLabels;
    if (o.padTokenId !== undefined) config.pad_token_id = o.padTokenId;
  }
  const { tensors } = normaliseGPT2Names(hostTensors(weights), config.tie_word_embeddings);
  const model = task === 'lm' ? new GPT2LMHeadModel(ctx, config) : new GPT2ForSequenceClassification(ctx, config);
  // Check names and shapes on the CPU before allocating anything on the GPU.
  const expected = new Map(model.namedSlots({ withTied: true, buffers: true }).map(([n, s]) => [n, s.shape]));
  const problems: string[] = [];
  for (const [k, t] of tensors) {
    const want = expected.get(k);
    if (want && (want.length !== t.shape.length || want.some((d, i) => d !== t.shape[i]))) problems.push(`'${k}': checkpoint [${t.shape.join(',')}], model [${want.join(',')}]`);
  }
  const missing = [...expected.keys()].filter((k) => !tensors.has(k) && !(config.tie_word_embeddings && k === 'lm_head.weight'));
  const unexpected = [...tensors.keys()].filter((k) => !expected.has(k));
  if (task === 'lm' && (missing.length || unexpected.length)) {
    if (missing.length) problems.push(`missing: ${missing.join(', ')}`);
    if (unexpected.length) problems.push(`unexpected: ${unexpected.join(', ')}`);
  }
  if (task === 'seq_cls') {
    const body = missing.filter((k) => !k.startsWith('score.'));
    if (body.length) problems.push(`missing: ${body.join(', ')}`);
  }
  if (problems.length) throw new ShapeError(`GPT-2 checkpoint does not fit the config: ${problems.join('; ')}`);
  model.allocate({ seed: o.seed ?? 0 });
  model.loadStateDict(new Map([...tensors].filter(([k]) => expected.has(k))), { strict: false });
  return { model, missing, unexpected };
}

/** config.json text as `save_pretrained` writes it: sorted keys, indent 2, architectures named. */
export function gpt2ConfigJson(model: GPT2LMHeadModel | GPT2ForSequenceClassification): string {
  const c: Record<string, unknown> = { ...model.config, architectures: [model.constructor.name], model_type: 'gpt2' };
  if (model instanceof GPT2ForSequenceClassification) c.num_labels = model.numLabels;
  const sorted = Object.fromEntries(Object.keys(c).sort().map((k) => [k, c[k]]));
  return `${JSON.stringify(sorted, null, 2)}\n`;
}

/** The model's tensors under HF names (tied duplicates dropped), read back from the GPU as F32. */
export async function gpt2Tensors(model: GPT2LMHeadModel | GPT2ForSequenceClassification): Promise<Map<string, SafetensorsTensorInput>> {
  const host = await model.stateDictHost({ withTied: false });
  return new Map([...host].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data }]));
}

/** config.json text and model.safetensors bytes of a GPT-2 model. */
export async function gpt2ToFiles(model: GPT2LMHeadModel | GPT2ForSequenceClassification): Promise<{ config: string; weights: Uint8Array }> {
  return { config: gpt2ConfigJson(model), weights: serializeSafetensors(await gpt2Tensors(model), { format: 'pt' }) };
}
