/**
 * PEFT's LoraConfig: the same field names and defaults as Python PEFT (`peft.LoraConfig`), so an
 * `adapter_config.json` moves between this library and PEFT unchanged. Options this library
 * does not implement are refused with an ArgumentError naming them (DoRA, LoftQ, PiSSA, …).
 */
import { ArgumentError } from '../gpu/errors.js';

export type TaskType = 'CAUSAL_LM' | 'SEQ_CLS' | 'SEQ_2_SEQ_LM' | 'TOKEN_CLS' | 'QUESTION_ANS' | 'FEATURE_EXTRACTION';

export interface LoraConfig {
  peft_type: 'LORA';
  task_type: TaskType | null;
  base_model_name_or_path: string | null;
  revision: string | null;
  inference_mode: boolean;
  /** Rank (PEFT default 8). */
  r: number;
  /** Scale numerator: s = lora_alpha / r, or lora_alpha / √r with use_rslora (default 8). */
  lora_alpha: number;
  /** A list (name equal to an entry or ending in `.entry`), a regex string (full match), 'all-linear', or null (model default). */
  target_modules: string[] | string | null;
  exclude_modules: string[] | string | null;
  lora_dropout: number;
  /** True when the base weight is stored [in, out] (GPT-2's Conv1D; PEFT sets it for Conv1D targets). */
  fan_in_fan_out: boolean;
  bias: 'none' | 'all' | 'lora_only';
  use_rslora: boolean;
  /** true: A Kaiming-uniform, B = 0 (a no-op at start); 'gaussian': A ~ N(0, 1/r²)… as PEFT; false: B random too. */
  init_lora_weights: boolean | 'gaussian';
  /** Modules trained in full and saved with the adapter (a new head: 'score'). */
  modules_to_save: string[] | null;
  /** Per-module rank / alpha, keys matched against module names by `(.*\.)?key$`. */
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  layers_to_transform: number[] | number | null;
  layers_pattern: string[] | string | null;
  use_dora: boolean;
  [key: string]: unknown;
}

/** PEFT's defaults for a LoraConfig. */
export const LORA_DEFAULTS: LoraConfig = {
  peft_type: 'LORA',
  task_type: null,
  base_model_name_or_path: null,
  revision: null,
  inference_mode: false,
  r: 8,
  lora_alpha: 8,
  target_modules: null,
  exclude_modules: null,
  lora_dropout: 0,
  fan_in_fan_out: false,
  bias: 'none',
  use_rslora: false,
  init_lora_weights: true,
  modules_to_save: null,
  rank_pattern: {},
  alpha_pattern: {},
  layers_to_transform: null,
  layers_pattern: null,
  use_dora: false,
};

/**
 * The fields PEFT (0.20.0, the latest release) writes in adapter_config.json for a LoRA adapter
 * beyond LoraConfig's own, with the values it writes for options this library does not have, so
 * PEFT sees the file it would have written. `peft_version` stays null (the dataclass default):
 * the file is not written by PEFT.
 */
const PEFT_WRITTEN_EXTRAS: Record<string, unknown> = {
  alora_invocation_tokens: null,
  arrow_config: null,
  auto_mapping: null,
  corda_config: null,
  ensure_weight_tying: false,
  eva_config: null,
  layer_replication: null,
  loftq_config: {},
  lora_bias: false,
  lora_ga_config: null,
  megatron_config: null,
  megatron_core: 'megatron.core',
  monteclora_config: null,
  peft_version: null,
  qalora_group_size: 16,
  target_parameters: null,
  trainable_token_indices: null,
  use_bdlora: null,
  use_qalora: false,
  velora_config: null,
};

/** Keys that, when set to anything but their "off" value, ask for a feature this library lacks. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  use_dora: (v) => v === true,
  use_qalora: (v) => v === true,
  lora_bias: (v) => v === true,
  layer_replication: (v) => v !== null && v !== undefined,
  trainable_token_indices: (v) => v !== null && v !== undefined,
  target_parameters: (v) => v !== null && v !== undefined && !(Array.isArray(v) && v.length === 0),
  alora_invocation_tokens: (v) => v !== null && v !== undefined,
  loftq_config: (v) => v !== null && v !== undefined && !(typeof v === 'object' && Object.keys(v as object).length === 0),
  megatron_config: (v) => v !== null && v !== undefined,
  use_bdlora: (v) => v !== null && v !== undefined && v !== false,
  ensure_weight_tying: (v) => v === true,
  eva_config: (v) => v !== null && v !== undefined,
  corda_config: (v) => v !== null && v !== undefined,
  lora_ga_config: (v) => v !== null && v !== undefined,
  velora_config: (v) => v !== null && v !== undefined,
  monteclora_config: (v) => v !== null && v !== undefined,
  arrow_config: (v) => v !== null && v !== undefined,
};

/** Every key PEFT's LoraConfig knows (so the rest can be reported as unknown). */
const KNOWN = new Set([...Object.keys(LORA_DEFAULTS), ...Object.keys(PEFT_WRITTEN_EXTRAS), 'kasa_config', 'runtime_config']);

export interface ParseOptions {
  /** Called with a message for each unknown key (default: console.warn). */
  warn?: (message: string) => void;
}

/**
 * A checked LoraConfig from a partial one (code) or a parsed adapter_config.json. Only
 * `peft_type` is required in a file; unknown keys are ignored with a warning; unsupported
 * options are refused with an ArgumentError naming them.
 */
export function loraConfig(input: Partial<LoraConfig> & Record<string, unknown>, o: ParseOptions = {}): LoraConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new ArgumentError('LoraConfig: expected an object');
  const peftType = input.peft_type ?? 'LORA';
  if (peftType !== 'LORA') throw new ArgumentError(`LoraConfig: peft_type '${String(peftType)}', expected 'LORA' (bottleneck adapters have their own config)`);
  const warn = o.warn ?? ((m: string) => console.warn(m));
  for (const k of Object.keys(input)) if (!KNOWN.has(k)) warn(`LoraConfig: unknown key '${k}' ignored`);
  for (const [k, bad] of Object.entries(UNSUPPORTED)) {
    if (k in input && bad(input[k])) {
      throw new ArgumentError(`LoraConfig: ${k} = ${JSON.stringify(input[k])} is not supported by webgpu-lora${k === 'use_dora' ? ' (DoRA is not implemented yet)' : ''}`);
    }
  }
  const c: LoraConfig = { ...LORA_DEFAULTS };
  for (const k of Object.keys(LORA_DEFAULTS)) if (input[k] !== undefined) (c as Record<string, unknown>)[k] = input[k];
  c.peft_type = 'LORA';
  const posInt = (v: unknown, what: string) => {
    if (!Number.isInteger(v) || (v as number) < 1) throw new ArgumentError(`LoraConfig: ${what} = ${JSON.stringify(v)}, expected a positive integer`);
  };
  const finite = (v: unknown, what: string) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ArgumentError(`LoraConfig: ${what} = ${JSON.stringify(v)}, expected a finite number`);
  };
  posInt(c.r, 'r');
  finite(c.lora_alpha, 'lora_alpha');
  if (typeof c.lora_dropout !== 'number' || !(c.lora_dropout >= 0 && c.lora_dropout < 1)) throw new ArgumentError(`LoraConfig: lora_dropout = ${JSON.stringify(c.lora_dropout)}, expected 0 <= p < 1`);
  if (!['none', 'all', 'lora_only'].includes(c.bias)) throw new ArgumentError(`LoraConfig: bias = ${JSON.stringify(c.bias)}, expected 'none', 'all' or 'lora_only'`);
  if (c.init_lora_weights !== true && c.init_lora_weights !== false && c.init_lora_weights !== 'gaussian') {
    throw new ArgumentError(`LoraConfig: init_lora_weights = ${JSON.stringify(c.init_lora_weights)} is not supported (true, false or 'gaussian'; PiSSA, OLoRA, LoftQ… are not implemented)`);
  }
  for (const k of ['target_modules', 'exclude_modules'] as const) {
    const v = c[k];
    if (v !== null && typeof v !== 'string' && !(Array.isArray(v) && v.every((x) => typeof x === 'string'))) {
      throw new ArgumentError(`LoraConfig: ${k} = ${JSON.stringify(v)}, expected a list of names, a regex string or null`);
    }
    if (typeof v === 'string' && v !== 'all-linear') {
      try {
        new RegExp(v);
      } catch (e) {
        throw new ArgumentError(`LoraConfig: ${k} regex ${JSON.stringify(v)} does not compile: ${(e as Error).message}`);
      }
    }
  }
  if (c.modules_to_save !== null && !(Array.isArray(c.modules_to_save) && c.modules_to_save.every((x) => typeof x === 'string'))) {
    throw new ArgumentError(`LoraConfig: modules_to_save = ${JSON.stringify(c.modules_to_save)}, expected a list of names or null`);
  }
  for (const [k, v] of Object.entries(c.rank_pattern ?? {})) posInt(v, `rank_pattern['${k}']`);
  for (const [k, v] of Object.entries(c.alpha_pattern ?? {})) finite(v, `alpha_pattern['${k}']`);
  const ltt = c.layers_to_transform;
  if (ltt !== null && !(Number.isInteger(ltt) || (Array.isArray(ltt) && ltt.every((x) => Number.isInteger(x))))) {
    throw new ArgumentError(`LoraConfig: layers_to_transform = ${JSON.stringify(ltt)}, expected an integer, a list of integers or null`);
  }
  return c;
}

/**
 * adapter_config.json text as PEFT's `save_pretrained` writes it: every LoraConfig field plus
 * the fields of PEFT's own options this library leaves off, keys sorted, indent 2,
 * `inference_mode: true`.
 */
export function adapterConfigJson(c: LoraConfig): string {
  const out: Record<string, unknown> = { ...PEFT_WRITTEN_EXTRAS };
  for (const k of Object.keys(LORA_DEFAULTS)) out[k] = c[k];
  out.inference_mode = true;
  // PEFT stores target_modules as a set in memory and writes it as a list.
  const sorted = Object.fromEntries(Object.keys(out).sort().map((k) => [k, out[k]]));
  return JSON.stringify(sorted, null, 2); // json.dumps(indent=2, sort_keys=True), no trailing newline
}
