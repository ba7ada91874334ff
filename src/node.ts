/**
 * webgpu-lora/node: everything in the portable entry plus what needs Node — Dawn
 * (`createContext`), and files: GPT-2 checkpoints and PEFT / bottleneck adapter directories,
 * written atomically (a temporary file in the same folder, then a rename).
 *
 * ```ts
 * import { createContext, loadGPT2, savePeftAdapter } from 'webgpu-lora/node';
 * const ctx = await createContext();
 * const { model } = await loadGPT2(ctx, 'examples/checkpoints/brown-gpt2');
 * ```
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { GpuContext } from './gpu/context.js';
import { readSafetensorsFile, writeFileAtomic } from './io/node.js';
import { gpt2FromFiles, gpt2ToFiles, type LoadedGPT2 } from './nn/checkpoint.js';
import type { GPT2ForSequenceClassification, GPT2LMHeadModel } from './nn/gpt2.js';
import type { BottleneckModel } from './peft/bottleneck.js';
import type { ParseOptions } from './peft/config.js';
import {
  ADAPTER_CONFIG_NAME,
  ADAPTER_WEIGHTS_NAME,
  adapterToFiles,
  BOTTLENECK_CONFIG_NAME,
  BOTTLENECK_WEIGHTS_NAME,
  bottleneckToFiles,
  loadAdapterFromFiles,
  loadBottleneckFromFiles,
} from './peft/files.js';
import type { AdaptableModel, PeftModel } from './peft/lora.js';

export * from './index.js';
export { createContext, DAWN_FLAGS, installGlobals, pollStats, type PollBackoffOptions, type PollStats } from './gpu/node.js';
export * from './io/node.js';

/** Write `config.json` and `model.safetensors` (HF's names) into `dir`, creating it. */
export async function saveGPT2(model: GPT2LMHeadModel | GPT2ForSequenceClassification, dir: string): Promise<void> {
  const { config, weights } = await gpt2ToFiles(model);
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, 'model.safetensors'), weights);
  await writeFileAtomic(join(dir, 'config.json'), config);
}

/** Load a GPT-2 checkpoint directory (config.json + model.safetensors); see `gpt2FromFiles`. */
export async function loadGPT2(ctx: GpuContext, dir: string, o: { task: 'seq_cls'; seed?: number; numLabels?: number; padTokenId?: number | null }): Promise<LoadedGPT2<GPT2ForSequenceClassification>>;
export async function loadGPT2(ctx: GpuContext, dir: string, o?: { task?: 'lm'; seed?: number }): Promise<LoadedGPT2<GPT2LMHeadModel>>;
export async function loadGPT2(
  ctx: GpuContext,
  dir: string,
  o: { task?: 'lm' | 'seq_cls'; seed?: number; numLabels?: number; padTokenId?: number | null } = {},
): Promise<LoadedGPT2<GPT2LMHeadModel | GPT2ForSequenceClassification>> {
  const config = await readFile(join(dir, 'config.json'), 'utf8');
  const weights = await readSafetensorsFile(join(dir, 'model.safetensors'));
  return o.task === 'seq_cls' ? gpt2FromFiles(ctx, config, weights, { ...o, task: 'seq_cls' }) : gpt2FromFiles(ctx, config, weights, { seed: o.seed });
}

/** PEFT's layout: the default adapter in `dir`, any other in `dir/<name>`. */
function adapterDir(dir: string, name: string): string {
  return name === 'default' ? dir : join(dir, name);
}

/** Write an adapter's two files (weights first, each atomically) into its folder under `dir`; returns the folder. */
async function writeAdapterDir(dir: string, name: string, files: { config: string; weights: Uint8Array }, weightsName: string, configName: string): Promise<string> {
  const out = adapterDir(dir, name);
  await mkdir(out, { recursive: true });
  await writeFileAtomic(join(out, weightsName), files.weights);
  await writeFileAtomic(join(out, configName), files.config);
  return out;
}

/**
 * Save adapter `name` (default: the active one) as PEFT does: adapter_config.json +
 * adapter_model.safetensors in `dir`, or in `dir/<name>` for an adapter not named "default".
 * Returns the folder written.
 */
export async function savePeftAdapter(peft: PeftModel, dir: string, name = peft.activeAdapter): Promise<string> {
  return writeAdapterDir(dir, name, await adapterToFiles(peft, name), ADAPTER_WEIGHTS_NAME, ADAPTER_CONFIG_NAME);
}

/** Load a PEFT adapter directory into a model (or another adapter into a PeftModel); see `loadAdapterFromFiles`. */
export async function loadPeftAdapter<M extends AdaptableModel>(
  target: M | PeftModel<M>,
  dir: string,
  o: { adapterName?: string; isTrainable?: boolean } & ParseOptions = {},
): Promise<PeftModel<M>> {
  const config = await readFile(join(dir, ADAPTER_CONFIG_NAME), 'utf8');
  const weights = await readSafetensorsFile(join(dir, ADAPTER_WEIGHTS_NAME));
  return loadAdapterFromFiles(target, config, weights, o);
}

/** Save bottleneck adapter `name` as bottleneck_config.json + bottleneck_model.safetensors. */
export async function saveBottleneck(b: BottleneckModel, dir: string, name = b.activeAdapter): Promise<string> {
  return writeAdapterDir(dir, name, await bottleneckToFiles(b, name), BOTTLENECK_WEIGHTS_NAME, BOTTLENECK_CONFIG_NAME);
}

export async function loadBottleneck<M extends AdaptableModel>(target: M | BottleneckModel<M>, dir: string, o: { adapterName?: string; isTrainable?: boolean } = {}): Promise<BottleneckModel<M>> {
  const config = await readFile(join(dir, BOTTLENECK_CONFIG_NAME), 'utf8');
  const weights = await readSafetensorsFile(join(dir, BOTTLENECK_WEIGHTS_NAME));
  return loadBottleneckFromFiles(target, config, weights, o);
}
