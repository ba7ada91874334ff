/**
 * Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2020): a small down-projection,
 * a nonlinearity and an up-projection added to a sub-layer's output, h = y + up(act(down(y))),
 * inserted into a frozen model. Houlsby puts one after the attention and one after the MLP of
 * every block, Pfeiffer one after the MLP only. The up-projection starts at zero, so training
 * starts from the base model exactly.
 *
 * The API mirrors the LoRA one: add / set / disable / enable / delete adapters by name, save and
 * load (their own config and safetensors file: this is not a PEFT adapter type, so the files are
 * named `bottleneck_config.json` and `bottleneck_model.safetensors`, not PEFT's).
 *
 * ```ts
 * const ad = addBottleneckAdapters(model, bottleneckConfig({ adapter_type: 'houlsby', reduction_factor: 16 }));
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { gradInfo, requiresGrad } from '../autograd/tape.js';
import { Layer, Linear, ModuleDict } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { type AdaptableModel, AdapterHost, type Switchable } from './host.js';

export interface BottleneckConfig {
  peft_type: 'BOTTLENECK';
  /** 'houlsby': after attention and MLP; 'pfeiffer': after the MLP only. */
  adapter_type: 'houlsby' | 'pfeiffer';
  /** Hidden width of the adapter; default n_embd / reduction_factor. */
  bottleneck_size: number | null;
  reduction_factor: number;
  non_linearity: 'relu' | 'gelu';
  /** Std of the down-projection's normal init (the up-projection starts at 0). */
  init_std: number;
  layers_to_transform: number[] | null;
  base_model_name_or_path: string | null;
  task_type: string | null;
}

export const BOTTLENECK_DEFAULTS: BottleneckConfig = {
  peft_type: 'BOTTLENECK',
  adapter_type: 'pfeiffer',
  bottleneck_size: null,
  reduction_factor: 16,
  non_linearity: 'relu',
  init_std: 0.02,
  layers_to_transform: null,
  base_model_name_or_path: null,
  task_type: null,
};

/** A checked BottleneckConfig; unknown keys are refused (this format is the library's own). */
export function bottleneckConfig(input: Partial<BottleneckConfig> = {}): BottleneckConfig {
  for (const k of Object.keys(input)) if (!(k in BOTTLENECK_DEFAULTS)) throw new ArgumentError(`BottleneckConfig: unknown key '${k}'`);
  const c = { ...BOTTLENECK_DEFAULTS, ...input };
  if (c.peft_type !== 'BOTTLENECK') throw new ArgumentError(`BottleneckConfig: peft_type '${String(c.peft_type)}', expected 'BOTTLENECK'`);
  if (c.adapter_type !== 'houlsby' && c.adapter_type !== 'pfeiffer') throw new ArgumentError(`BottleneckConfig: adapter_type '${String(c.adapter_type)}', expected 'houlsby' or 'pfeiffer'`);
  if (c.non_linearity !== 'relu' && c.non_linearity !== 'gelu') throw new ArgumentError(`BottleneckConfig: non_linearity '${String(c.non_linearity)}', expected 'relu' or 'gelu'`);
  if (c.bottleneck_size !== null && !(Number.isInteger(c.bottleneck_size) && c.bottleneck_size >= 1)) throw new ArgumentError(`BottleneckConfig: bottleneck_size = ${c.bottleneck_size}, expected a positive integer or null`);
  if (!(c.reduction_factor > 0)) throw new ArgumentError(`BottleneckConfig: reduction_factor = ${c.reduction_factor}, expected > 0`);
  if (!(c.init_std >= 0)) throw new ArgumentError(`BottleneckConfig: init_std = ${c.init_std}, expected >= 0`);
  if (c.layers_to_transform !== null && !(Array.isArray(c.layers_to_transform) && c.layers_to_transform.every((x) => Number.isInteger(x) && x >= 0))) {
    throw new ArgumentError(`BottleneckConfig: layers_to_transform = ${JSON.stringify(c.layers_to_transform)}, expected a list of block indices or null`);
  }
  return c;
}

/** A sub-layer (attention or MLP) with bottleneck adapters on its output. */
export class BottleneckWrapper extends Layer {
  activeAdapter: string | null = null;
  disabled = false;
  readonly down: ModuleDict<Linear>;
  readonly up: ModuleDict<Linear>;
  private readonly act = new Map<string, 'relu' | 'gelu'>();

  constructor(ctx: GpuContext, base: Layer) {
    super(ctx);
    this.add('base_layer', base);
    this.down = this.add('adapter_down', new ModuleDict<Linear>(ctx));
    this.up = this.add('adapter_up', new ModuleDict<Linear>(ctx));
  }

  get base(): Layer {
    return this.child('base_layer') as Layer;
  }

  addAdapter(name: string, dim: number, size: number, act: 'relu' | 'gelu', initStd: number): void {
    this.down.set(name, new Linear(this.ctx, dim, size, { init: { kind: 'normal', std: initStd }, biasInit: { kind: 'constant', value: 0 } }));
    this.up.set(name, new Linear(this.ctx, size, dim, { init: { kind: 'constant', value: 0 }, biasInit: { kind: 'constant', value: 0 } }));
    this.act.set(name, act);
  }

  deleteAdapter(name: string): void {
    this.down.delete(name);
    this.up.delete(name);
    this.act.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = null;
  }

  forward(x: Tensor): Tensor {
    const y = this.base.forward(x);
    const name = this.activeAdapter;
    if (this.disabled || name === null) return y;
    const ctx = this.ctx;
    const h = this.down.get(name)!.forward(y);
    const a = this.act.get(name) === 'gelu' ? ops.gelu(ctx, h) : ops.relu(ctx, h);
    return ops.add(ctx, y, this.up.get(name)!.forward(a));
  }
}

/** The attention / MLP modules of each block that a config adapts, by path. */
function sites(model: Module, c: BottleneckConfig): string[] {
  const out: string[] = [];
  const kinds = c.adapter_type === 'houlsby' ? ['attn', 'mlp'] : ['mlp'];
  const blockRe = /(^|\.)h\.(\d+)$/;
  const blocks = model.namedModules().filter(([p]) => blockRe.test(p));
  if (!blocks.length) throw new ArgumentError(`bottleneck adapters: ${model.constructor.name} has no transformer blocks named 'h.<i>'`);
  for (const [p, b] of blocks) {
    const idx = Number(blockRe.exec(p)![2]);
    if (c.layers_to_transform && !c.layers_to_transform.includes(idx)) continue;
    for (const k of kinds) {
      if (!b.child(k)) throw new ArgumentError(`bottleneck adapters: block '${p}' has no '${k}'`);
      out.push(`${p}.${k}`);
    }
  }
  if (c.layers_to_transform) {
    const have = new Set(blocks.map(([p]) => Number(blockRe.exec(p)![2])));
    const bad = c.layers_to_transform.filter((i) => !have.has(i));
    if (bad.length) throw new ArgumentError(`bottleneck adapters: layers_to_transform ${JSON.stringify(bad)} are not blocks of the model (it has ${have.size})`);
  }
  return out;
}

/** Bottleneck adapters on a model: the same add / set / disable / delete / save / load API as PeftModel. */
export class BottleneckModel<M extends AdaptableModel = AdaptableModel> extends AdapterHost<M> {
  readonly configs = new Map<string, BottleneckConfig>();

  protected readonly loadOp = 'loadBottleneck';

  protected switchables(): Switchable[] {
    return this.wrappers().map(([, w]) => w);
  }

  wrappers(): [string, BottleneckWrapper][] {
    return this.model.namedModules().filter((e): e is [string, BottleneckWrapper] => e[1] instanceof BottleneckWrapper);
  }

  addAdapter(name: string, config: BottleneckConfig, o: { seed?: number } = {}): void {
    if (!name || name.includes('.')) throw new ArgumentError(`addAdapter: adapter name '${name}', expected a non-empty name without '.'`);
    if (this.configs.has(name)) throw new ArgumentError(`addAdapter: adapter '${name}' already exists`);
    const c = bottleneckConfig(config);
    const dim = Number(this.model.config.n_embd);
    const size = c.bottleneck_size ?? Math.max(1, Math.round(dim / c.reduction_factor));
    const paths = sites(this.model, c);
    for (const path of paths) {
      const parentPath = path.slice(0, path.lastIndexOf('.'));
      const leaf = path.slice(path.lastIndexOf('.') + 1);
      const parent = this.model.getSubmodule(parentPath);
      let w = parent.child(leaf);
      if (!(w instanceof BottleneckWrapper)) {
        w = new BottleneckWrapper(this.model.ctx, w as Layer);
        parent.replaceChild(leaf, w);
      }
      (w as BottleneckWrapper).addAdapter(name, dim, size, c.non_linearity, c.init_std);
    }
    this.allocateAdapter(name, o.seed ?? 0);
    this.configs.set(name, c);
    this.setAdapter(name);
  }

  /** Make `name` active; only its parameters require gradients. */
  setAdapter(name: string): void {
    if (!this.configs.has(name)) throw new ArgumentError(`setAdapter: no adapter '${name}' (have: ${[...this.configs.keys()].join(', ') || 'none'})`);
    this.activeAdapter = name;
    for (const [, t] of this.model.namedParameters()) requiresGrad(t, false);
    for (const [, w] of this.wrappers()) {
      const d = w.down.get(name);
      w.activeAdapter = d ? name : null;
      if (d) {
        d.requiresGrad(true);
        w.up.get(name)!.requiresGrad(true);
      }
    }
  }

  deleteAdapter(name: string): void {
    if (!this.configs.has(name)) throw new ArgumentError(`deleteAdapter: no adapter '${name}'`);
    for (const [, w] of this.wrappers()) if (w.down.get(name)) w.deleteAdapter(name);
    this.releaseAdapter(name);
    this.configs.delete(name);
    const rest = [...this.configs.keys()];
    if (this.activeAdapter === name && rest.length) this.setAdapter(rest[0]!);
  }

  /** Remove every adapter and put the base sub-layers back. */
  unload(): M {
    for (const name of [...this.configs.keys()]) this.deleteAdapter(name);
    for (const [path, w] of this.wrappers()) {
      const parentPath = path.slice(0, path.lastIndexOf('.'));
      this.model.getSubmodule(parentPath).replaceChild(path.slice(path.lastIndexOf('.') + 1), w.base);
    }
    for (const [, t] of this.model.namedParameters()) requiresGrad(t, true);
    return this.model;
  }

  /** Parameter counts and the AdamW state of the trainable ones. */
  trainableParameters(): { trainable: number; total: number; percent: number; optimizerStateBytes: number } {
    let trainable = 0;
    let total = 0;
    for (const [, t] of this.model.namedParameters()) {
      total += t.size;
      if (gradInfo(t).requiresGrad) trainable += t.size;
    }
    return { trainable, total, percent: (100 * trainable) / total, optimizerStateBytes: 8 * trainable };
  }

  /** Tensors under their saved names: `base_model.model.<path>.adapter_down.weight`, … (the adapter name removed). */
  adapterStateDict(name = this.activeAdapter): Map<string, Tensor> {
    if (!this.configs.has(name)) throw new ArgumentError(`adapterStateDict: no adapter '${name}'`);
    const out = new Map<string, Tensor>();
    for (const [path, w] of this.wrappers()) {
      const d = w.down.get(name);
      if (!d) continue;
      const u = w.up.get(name)!;
      out.set(`base_model.model.${path}.adapter_down.weight`, d.weight);
      out.set(`base_model.model.${path}.adapter_down.bias`, d.bias!);
      out.set(`base_model.model.${path}.adapter_up.weight`, u.weight);
      out.set(`base_model.model.${path}.adapter_up.bias`, u.bias!);
    }
    return out;
  }

}

/** Insert bottleneck adapter `adapterName` into every block of `model` and freeze the rest. */
export function addBottleneckAdapters<M extends AdaptableModel>(model: M, config: Partial<BottleneckConfig>, adapterName = 'default', o: { seed?: number } = {}): BottleneckModel<M> {
  const b = new BottleneckModel(model, adapterName);
  b.addAdapter(adapterName, bottleneckConfig(config), o);
  return b;
}
