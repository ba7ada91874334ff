/**
 * PEFT adapter files in memory (Node and browser alike; Node's directory helpers are in
 * src/node.ts): `adapter_config.json` + `adapter_model.safetensors` exactly as PEFT's
 * `save_pretrained` writes them, and loading what PEFT wrote.
 *
 * Loading accepts what PEFT writes: only `peft_type` is required, unknown keys are ignored with a
 * warning, a missing target_modules is PEFT's default for the model (GPT-2: `c_attn`). Every
 * tensor's name and shape is checked against the model before anything is injected or written
 * to the GPU, so on an error the model is unchanged.
 *
 * ```ts
 * const { config, weights } = await adapterToFiles(peft);               // strings and bytes to save or zip
 * const peft2 = loadAdapterFromFiles(model, config, parseSafetensors(weights));
 * ```
 */
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import { requiresGrad } from '../autograd/tape.js';
import { serializeSafetensors, type SafetensorsFile, type SafetensorsTensorInput } from '../io/safetensors.js';
import { hostTensors, parseJsonObject } from '../nn/checkpoint.js';
import { type BottleneckConfig, BottleneckModel, bottleneckConfig } from './bottleneck.js';
import { adapterConfigJson, type LoraConfig, loraConfig, type ParseOptions } from './config.js';
import { type AdaptableModel, PeftModel, planLora, plannedAdapterShapes } from './lora.js';

/** PEFT's file names. */
export const ADAPTER_CONFIG_NAME = 'adapter_config.json';
export const ADAPTER_WEIGHTS_NAME = 'adapter_model.safetensors';
/** The bottleneck adapters' own file names (not a PEFT adapter type). */
export const BOTTLENECK_CONFIG_NAME = 'bottleneck_config.json';
export const BOTTLENECK_WEIGHTS_NAME = 'bottleneck_model.safetensors';

async function readBack(tensors: Map<string, import('../gpu/tensor.js').Tensor>): Promise<Map<string, SafetensorsTensorInput>> {
  const names = [...tensors.keys()];
  const data = await Promise.all(names.map((n) => tensors.get(n)!.read()));
  return new Map(names.map((n, i) => [n, { dtype: 'F32' as const, shape: [...tensors.get(n)!.shape], data: data[i]! }]));
}

/** adapter_config.json text and adapter_model.safetensors bytes of adapter `name` (F32, metadata {"format": "pt"}). */
export async function adapterToFiles(peft: PeftModel, name = peft.activeAdapter): Promise<{ config: string; weights: Uint8Array }> {
  const c = peft.peftConfig.get(name);
  if (!c) throw new ArgumentError(`adapterToFiles: no adapter '${name}'`);
  return { config: adapterConfigJson(c), weights: serializeSafetensors(await readBack(peft.adapterStateDict(name)), { format: 'pt' }) };
}

/** Parse adapter_config.json text (errors name the file). */
export function parseAdapterConfig(text: string, o: ParseOptions & { source?: string } = {}): LoraConfig {
  const source = o.source ?? ADAPTER_CONFIG_NAME;
  const json = parseJsonObject(text, source);
  if (!('peft_type' in json)) throw new ArgumentError(`${source}: no peft_type (is this a PEFT adapter config?)`);
  return loraConfig(json, o);
}

/**
 * Load a PEFT LoRA adapter into `target` (a plain model, which gets wrapped, or a PeftModel,
 * which gets another adapter) as `adapterName`. Checked in full first: names, shapes, options.
 * Unless `isTrainable`, the adapter is loaded for inference (nothing requires gradients), as
 * PEFT's `from_pretrained` does.
 */
export function loadAdapterFromFiles<M extends AdaptableModel>(
  target: M | PeftModel<M>,
  configText: string,
  weights: SafetensorsFile,
  o: { adapterName?: string; isTrainable?: boolean } & ParseOptions = {},
): PeftModel<M> {
  const name = o.adapterName ?? 'default';
  const config = parseAdapterConfig(configText, o);
  const peft = target instanceof PeftModel ? target : null;
  const model = (peft ? peft.model : target) as M;
  if (peft?.peftConfig.has(name)) throw new ArgumentError(`loadAdapter: the model already has an adapter '${name}'`);
  const plan = planLora(model, config);
  const expected = plannedAdapterShapes(model, plan);
  const tensors = hostTensors(weights);
  const problems: string[] = [];
  for (const [k, shape] of expected) {
    const t = tensors.get(k);
    if (!t) problems.push(`missing '${k}' (expected [${shape.join(',')}])`);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) problems.push(`'${k}': expected [${shape.join(',')}], found [${t.shape.join(',')}]`);
  }
  for (const k of tensors.keys()) if (!expected.has(k)) problems.push(`unexpected '${k}'`);
  if (problems.length) throw new ShapeError(`loadAdapter '${name}': the adapter does not fit ${model.constructor.name}: ${problems.join('; ')}`);
  const p = peft ?? new PeftModel(model, name);
  p.addAdapter(name, config, { init: false, warn: o.warn ?? (() => {}) });
  p.loadAdapterWeights(name, tensors);
  if (!o.isTrainable) for (const [, t] of model.namedParameters()) requiresGrad(t, false);
  return p;
}

/** bottleneck_config.json text and bottleneck_model.safetensors bytes of adapter `name`. */
export async function bottleneckToFiles(b: BottleneckModel, name = b.activeAdapter): Promise<{ config: string; weights: Uint8Array }> {
  const c = b.configs.get(name);
  if (!c) throw new ArgumentError(`bottleneckToFiles: no adapter '${name}'`);
  const sorted = Object.fromEntries(Object.keys(c).sort().map((k) => [k, c[k as keyof BottleneckConfig]]));
  return { config: JSON.stringify(sorted, null, 2), weights: serializeSafetensors(await readBack(b.adapterStateDict(name)), { format: 'pt' }) };
}

/** Load bottleneck adapter files into `target` as `adapterName` (checked before anything changes). */
export function loadBottleneckFromFiles<M extends AdaptableModel>(
  target: M | BottleneckModel<M>,
  configText: string,
  weights: SafetensorsFile,
  o: { adapterName?: string; isTrainable?: boolean } = {},
): BottleneckModel<M> {
  const name = o.adapterName ?? 'default';
  const config = bottleneckConfig(parseJsonObject(configText, BOTTLENECK_CONFIG_NAME) as Partial<BottleneckConfig>);
  const tensors = hostTensors(weights);
  const existing = target instanceof BottleneckModel ? target : null;
  const model = (existing ? existing.model : target) as M;
  // Inject, check, and take it out again on a mismatch: the shapes come from the injected modules.
  const b = existing ?? new BottleneckModel(model, name);
  const restore = existing ? null : () => b.unload();
  b.addAdapter(name, config);
  try {
    b.loadAdapterWeights(name, tensors);
  } catch (e) {
    if (restore) restore();
    else b.deleteAdapter(name);
    throw e;
  }
  if (!o.isTrainable) for (const [, t] of model.namedParameters()) requiresGrad(t, false);
  return b;
}

