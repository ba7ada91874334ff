/**
 * LoRA injection as PEFT does it: `getPeftModel(model, config)` wraps each targeted Linear /
 * Conv1D in a `LoraWrapper` (children `base_layer`, `lora_A.<adapter>`, `lora_B.<adapter>`, the
 * names PEFT uses in memory), freezes the base model, and runs the fused LoRA kernels
 * (src/kernels/lora.ts: y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ without materialising B·A; backward gives
 * dA, dB and dx, never dW). Several named adapters per model; `setAdapter`, disable / enable,
 * delete, merge / unmerge (W ± s·B·A in one kernel), `mergeAndUnload`.
 *
 * The adapter's parameters (every A and B, and copies of `modules_to_save`) live in one
 * ParamArena of their own, so AdamW updates them in one dispatch.
 *
 * ```ts
 * const peft = getPeftModel(model, loraConfig({ r: 8, lora_alpha: 16, target_modules: ['c_attn', 'c_proj'] }), 'default', { seed: 0 });
 * console.log(peft.trainableParameters());   // { trainable, total, percent, optimizerStateBytes }
 * const loss = peft.model.loss(batch);          // the wrapped model trains only A and B
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { gradEnabled, gradInfo, noGrad, requiresGrad } from '../autograd/tape.js';
import { LoraLayer, loraMerge, loraUnmerge } from '../kernels/lora.js';
import { Conv1D, Layer, LayerNorm, Linear, LinearLike, ModuleDict } from '../nn/layers.js';
import { type Init, Module, type ParamSlot } from '../nn/module.js';
import { type LoraConfig, loraConfig } from './config.js';
import { type AdaptableModel, AdapterHost, type Switchable } from './host.js';

export type { AdaptableModel } from './host.js';

/** One LoRA factor (PEFT: an nn.Linear without bias; only its weight matters). */
export class LoraFactor extends Module {
  readonly slot: ParamSlot;
  constructor(ctx: GpuContext, shape: [number, number], init: Init) {
    super(ctx);
    this.slot = this.declare('weight', shape, init);
  }

  get weight(): Tensor {
    return this.tensorOf(this.slot, 'weight');
  }
}

/** What one adapter of a wrapper is: rank, scaling, dropout, and its dropout stream. */
export interface LoraAdapterInfo {
  r: number;
  alpha: number;
  rsLora: boolean;
  scale: number;
  dropout: number;
  /** Forward calls with dropout so far: the dropout stream's offset (a fresh mask each step). */
  calls: number;
  seed: number;
}

/**
 * A Linear / Conv1D with LoRA adapters (PEFT's lora.Linear): `base_layer` is the frozen layer,
 * `lora_A.<name>.weight` [r, in] and `lora_B.<name>.weight` [out, r] the factors, for both
 * layouts (PEFT reads in/out from the base weight; Conv1D's [in, out] layout only transposes the
 * delta at merge).
 */
export class LoraWrapper extends LinearLike {
  readonly adapters = new Map<string, LoraAdapterInfo>();
  /** The adapter the forward adds (null: none). */
  activeAdapter: string | null = null;
  /** Adapters off: the forward is the base layer's. */
  disabled = false;
  /** Adapters whose delta is folded into the base weight. */
  readonly merged = new Set<string>();
  readonly loraA: ModuleDict<LoraFactor>;
  readonly loraB: ModuleDict<LoraFactor>;

  constructor(ctx: GpuContext, base: LinearLike) {
    super(ctx);
    this.add('base_layer', base);
    this.loraA = this.add('lora_A', new ModuleDict<LoraFactor>(ctx));
    this.loraB = this.add('lora_B', new ModuleDict<LoraFactor>(ctx));
  }

  get base(): LinearLike {
    return this.child('base_layer') as LinearLike;
  }
  get inFeatures(): number {
    return this.base.inFeatures;
  }
  get outFeatures(): number {
    return this.base.outFeatures;
  }
  get weightLayout(): 'NK' | 'KN' {
    return this.base.weightLayout;
  }
  get weight(): Tensor {
    return this.base.weight;
  }
  get bias(): Tensor | undefined {
    return this.base.bias;
  }
  get weightSlot(): ParamSlot {
    return this.base.weightSlot;
  }
  get biasSlot(): ParamSlot | null {
    return this.base.biasSlot;
  }

  /** Declare adapter `name`'s factors (allocated by the caller): A [r, in], B [out, r]. */
  addAdapter(name: string, info: Omit<LoraAdapterInfo, 'calls'>, init: { A: Init; B: Init }): void {
    if (this.adapters.has(name)) throw new ArgumentError(`LoraWrapper: adapter '${name}' already exists`);
    this.loraA.set(name, new LoraFactor(this.ctx, [info.r, this.inFeatures], init.A));
    this.loraB.set(name, new LoraFactor(this.ctx, [this.outFeatures, info.r], init.B));
    this.adapters.set(name, { ...info, calls: 0 });
  }

  deleteAdapter(name: string): void {
    if (this.merged.has(name)) throw new ArgumentError(`LoraWrapper: adapter '${name}' is merged; unmerge it before deleting`);
    this.loraA.delete(name);
    this.loraB.delete(name);
    this.adapters.delete(name);
    if (this.activeAdapter === name) this.activeAdapter = null;
  }

  factors(name: string): { A: Tensor; B: Tensor } {
    const a = this.loraA.get(name);
    const b = this.loraB.get(name);
    if (!a || !b) throw new ArgumentError(`LoraWrapper: no adapter '${name}'`);
    return { A: a.weight, B: b.weight };
  }

  /** The kernel-level layer for adapter `name` (no copies: W, A and B are the module's tensors). */
  private kernelLayer(name: string, withBias: boolean, dropout = 0): LoraLayer {
    const info = this.adapters.get(name)!;
    const { A, B } = this.factors(name);
    return new LoraLayer(this.ctx, {
      W: this.base.weight,
      wLayout: this.weightLayout,
      bias: withBias ? this.base.bias : undefined,
      A,
      B,
      rank: info.r,
      alpha: info.alpha,
      rsLora: info.rsLora,
      dropout,
    });
  }

  forward(x: Tensor): Tensor {
    const name = this.activeAdapter;
    if (this.disabled || name === null || this.merged.size > 0) {
      if (this.disabled && this.merged.size > 0) {
        throw new ArgumentError(`LoraWrapper: adapters are disabled but [${[...this.merged].join(', ')}] is merged into the base weight; unmerge first`);
      }
      // A merged adapter runs inside W: a forward that records would give its A and B no gradient.
      for (const m of this.merged) {
        const { A, B } = this.factors(m);
        if (gradEnabled(this.ctx) && (gradInfo(A).requiresGrad || gradInfo(B).requiresGrad)) {
          throw new ArgumentError(
            `LoraWrapper: adapter '${m}' is merged into the base weight, so its trainable lora_A / lora_B would get no gradient from this forward; unmerge() before training, or run the forward under noGrad`,
          );
        }
      }
      return this.base.forward(x);
    }
    const ctx = this.ctx;
    const info = this.adapters.get(name)!;
    const drop = this.training && info.dropout > 0;
    const stream = drop ? { seed: info.seed, offset: info.calls++ % 2 ** 32 } : { seed: info.seed, offset: 0 };
    const bias = this.base.bias;
    const biasTrains = bias !== undefined && gradInfo(bias).requiresGrad;
    if (gradInfo(this.base.weight).requiresGrad) {
      // The fused op never computes dW; a trainable base weight takes the unfused path so it gets its gradient.
      const { A, B } = this.factors(name);
      const xd = drop ? ops.dropout(ctx, x, { p: info.dropout, ...stream }) : x;
      const delta = ops.scale(ctx, ops.linear(ctx, ops.linear(ctx, xd, A), B), info.scale);
      return ops.add(ctx, this.base.forward(x), delta);
    }
    const y = ops.loraLinear(ctx, x, this.kernelLayer(name, !biasTrains, drop ? info.dropout : 0), stream);
    return biasTrains ? ops.add(ctx, y, bias!) : y;
  }

  /** W ← W + s·B·A for adapter `name` (one kernel). */
  merge(name: string): void {
    if (this.merged.has(name)) throw new ArgumentError(`LoraWrapper: adapter '${name}' is already merged`);
    if (!this.adapters.has(name)) throw new ArgumentError(`LoraWrapper: no adapter '${name}'`);
    // A weight edit, not a computation to differentiate: W is not a function of A and B on the tape.
    noGrad(this.ctx, () => loraMerge(this.ctx, this.kernelLayer(name, false)));
    this.merged.add(name);
  }

  /** W ← W − s·B·A for adapter `name`. */
  unmerge(name: string): void {
    if (!this.merged.has(name)) throw new ArgumentError(`LoraWrapper: adapter '${name}' is not merged`);
    const l = this.kernelLayer(name, false);
    l.merged = true;
    noGrad(this.ctx, () => loraUnmerge(this.ctx, l));
    this.merged.delete(name);
  }
}

/**
 * PEFT's ModulesToSaveWrapper: `original_module` stays as it was, `modules_to_save.<adapter>` is
 * a trainable copy used while that adapter is active (a new classification head, say).
 */
export class ModulesToSaveWrapper extends Layer {
  activeAdapter: string | null = null;
  disabled = false;
  readonly copies: ModuleDict<Layer>;

  constructor(ctx: GpuContext, original: Layer) {
    super(ctx);
    this.add('original_module', original);
    this.copies = this.add('modules_to_save', new ModuleDict<Layer>(ctx));
  }

  get original(): Layer {
    return this.child('original_module') as Layer;
  }

  forward(x: Tensor): Tensor {
    const copy = !this.disabled && this.activeAdapter !== null ? this.copies.get(this.activeAdapter) : undefined;
    return (copy ?? this.original).forward(x);
  }
}

/** A new module with the same structure as `m` (parameters unallocated), for modules_to_save. */
function cloneStructure(ctx: GpuContext, m: Module, path: string): Layer {
  if (m instanceof Linear) return new Linear(ctx, m.inFeatures, m.outFeatures, { bias: m.biasSlot !== null });
  if (m instanceof Conv1D) return new Conv1D(ctx, m.outFeatures, m.inFeatures);
  if (m instanceof LayerNorm) return new LayerNorm(ctx, m.dim, m.eps, { bias: m.biasSlot !== null });
  throw new ArgumentError(`modules_to_save: '${path}' is a ${m.constructor.name}; only Linear, Conv1D and LayerNorm can be saved with an adapter`);
}

// ------------------------------------------------------------------ matching

/** Index of the transformer block a module path is in (PEFT's COMMON_LAYERS_PATTERN), or null. */
function layerIndex(path: string, patterns: string[]): number | null {
  for (const p of patterns) {
    const m = new RegExp(`.*\\.${escapeRe(p)}\\.(\\d+)\\.`).exec(path);
    if (m) return Number(m[1]);
  }
  return null;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** PEFT's rule: a regex string must match the whole name; a list entry equals the name or is its last dotted part(s). */
function matches(path: string, spec: string[] | string): boolean {
  if (typeof spec === 'string') return new RegExp(`^(?:${spec})$`).test(path);
  return spec.some((t) => path === t || path.endsWith(`.${t}`));
}

/** The value of the first pattern key that matches `path` by `(.*\.)?key$`, or undefined. */
function patternValue(pattern: Record<string, number>, path: string): number | undefined {
  for (const [k, v] of Object.entries(pattern)) if (new RegExp(`^(.*\\.)?(?:${k})$`).test(path)) return v;
  return undefined;
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = t;
    }
  }
  return d[b.length]!;
}

/** Module names of `model` closest to `name` (leaf names and full paths). */
function closeMatches(name: string, paths: string[]): string[] {
  const leaves = [...new Set(paths.map((p) => p.split('.').pop()!))];
  return [...leaves, ...paths]
    .map((p) => ({ p, d: levenshtein(name, p) - (p.includes(name) || name.includes(p) ? 2 : 0) }))
    .sort((x, y) => x.d - y.d)
    .slice(0, 5)
    .map((x) => x.p);
}

/** Default targets by model, as PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING. */
function defaultTargets(model: Module): string[] {
  const type = (model as { config?: { model_type?: string } }).config?.model_type;
  if (type === 'gpt2') return ['c_attn'];
  throw new ArgumentError(`LoraConfig: target_modules is null and there is no default for ${type ? `model_type '${type}'` : model.constructor.name}; name the modules to adapt`);
}

/** Paths of modules that adapters should look at: not inside a wrapper's internals. */
function candidateModules(model: Module): [string, Module][] {
  const out: [string, Module][] = [];
  const walk = (m: Module, path: string) => {
    out.push([path, m]);
    if (m instanceof LoraWrapper || m instanceof ModulesToSaveWrapper) return;
    for (const [n, c] of m.namedChildren()) walk(c, path ? `${path}.${n}` : n);
  };
  walk(model, '');
  return out;
}

/** One module LoRA will wrap. */
export interface LoraTarget {
  path: string;
  module: LinearLike;
  r: number;
  alpha: number;
  scale: number;
  /** Expected factor shapes. */
  aShape: [number, number];
  bShape: [number, number];
}

/** What `addAdapter` will do, computed (and checked) before anything changes. */
export interface LoraPlan {
  config: LoraConfig;
  targets: LoraTarget[];
  /** Paths of modules trained in full and saved with the adapter. */
  modulesToSave: string[];
  warnings: string[];
}

/**
 * Which modules a config adapts, with their ranks and scales, checked against the model:
 * unknown targets (with close matches), layers_to_transform without block indices, modules that
 * are not Linear / Conv1D.
 */
export function planLora(model: Module, config: LoraConfig): LoraPlan {
  const c = { ...config };
  const warnings: string[] = [];
  const mods = candidateModules(model).filter(([p]) => p !== '');
  const paths = mods.map(([p]) => p);
  const outputHead = mods.find(([p]) => p === 'lm_head')?.[0];
  const isSeqCls = c.task_type === 'SEQ_CLS';
  // PEFT adds the classification heads to modules_to_save for SEQ_CLS.
  const requested = [...(c.modules_to_save ?? [])];
  const auto = isSeqCls ? ['classifier', 'score'].filter((h) => !requested.includes(h)) : [];
  const saveSpec = [...requested, ...auto];
  const modulesToSave = mods.filter(([p]) => matches(p, saveSpec)).map(([p]) => p);
  for (const r of requested) {
    if (!mods.some(([p]) => matches(p, [r]))) {
      throw new ArgumentError(`LoraConfig: modules_to_save entry '${r}' matches no module (close: ${closeMatches(r, paths).join(', ')})`);
    }
  }
  let targetSpec: string[] | string = c.target_modules ?? defaultTargets(model);
  if (targetSpec === 'all-linear') {
    // Every Linear / Conv1D but the output head (and modules trained in full), by leaf name, as PEFT.
    targetSpec = [...new Set(mods.filter(([p, m]) => m instanceof LinearLike && p !== outputHead && !modulesToSave.some((s) => p === s || p.startsWith(`${s}.`))).map(([p]) => p.split('.').pop()!))];
  }
  const patterns = c.layers_pattern === null ? ['layers', 'h', 'block', 'blocks', 'layer'] : typeof c.layers_pattern === 'string' ? [c.layers_pattern] : c.layers_pattern;
  const ltt = c.layers_to_transform;
  const targets: LoraTarget[] = [];
  const hitEntries = new Set<string>();
  for (const [path, m] of mods) {
    if (modulesToSave.some((s) => path === s || path.startsWith(`${s}.`))) continue;
    if (!matches(path, targetSpec)) continue;
    if (Array.isArray(targetSpec)) for (const t of targetSpec) if (path === t || path.endsWith(`.${t}`)) hitEntries.add(t);
    if (c.exclude_modules !== null && matches(path, c.exclude_modules)) continue;
    if (ltt !== null) {
      const idx = layerIndex(path, patterns);
      if (idx === null || !(typeof ltt === 'number' ? idx === ltt : ltt.includes(idx))) continue;
    }
    if (!(m instanceof LinearLike)) {
      throw new ArgumentError(`LoraConfig: target '${path}' is a ${m.constructor.name}; LoRA adapts Linear and Conv1D layers only`);
    }
    const r = patternValue(c.rank_pattern, path) ?? c.r;
    const alpha = patternValue(c.alpha_pattern, path) ?? c.lora_alpha;
    targets.push({
      path,
      module: m,
      r,
      alpha,
      scale: c.use_rslora ? alpha / Math.sqrt(r) : alpha / r,
      aShape: [r, m.inFeatures],
      bShape: [m.outFeatures, r],
    });
  }
  if (Array.isArray(targetSpec)) {
    const missing = targetSpec.filter((t) => !hitEntries.has(t));
    if (missing.length) {
      throw new ArgumentError(
        `LoraConfig: target module(s) ${missing.map((t) => `'${t}'`).join(', ')} not found in ${model.constructor.name}; ` +
          missing.map((t) => `close to '${t}': ${closeMatches(t, paths).join(', ')}`).join('; '),
      );
    }
  } else if (!targets.length && !mods.some(([p]) => matches(p, targetSpec))) {
    throw new ArgumentError(`LoraConfig: target_modules regex ${JSON.stringify(targetSpec)} matches no module of ${model.constructor.name} (module names look like: ${paths.slice(0, 8).join(', ')}, …)`);
  }
  if (!targets.length) throw new ArgumentError('LoraConfig: no module left to adapt after exclude_modules / layers_to_transform');
  const conv = targets.some((t) => t.module.weightLayout === 'KN');
  const lin = targets.some((t) => t.module.weightLayout === 'NK');
  if (conv && !c.fan_in_fan_out) {
    warnings.push('fan_in_fan_out is set to False but the target module is `Conv1D`. Setting fan_in_fan_out to True.');
    c.fan_in_fan_out = true;
  } else if (lin && !conv && c.fan_in_fan_out) {
    warnings.push('fan_in_fan_out is set to True but the target module is `torch.nn.Linear`. Setting fan_in_fan_out to False.');
    c.fan_in_fan_out = false;
  }
  return { config: c, targets, modulesToSave, warnings };
}

// ------------------------------------------------------------------ the PEFT model

/** Parameter counts as PEFT's print_trainable_parameters, plus the optimizer state they need. */
export interface TrainableReport {
  trainable: number;
  total: number;
  /** 100 · trainable / total. */
  percent: number;
  /** AdamW's m and v for the trainable parameters (f32): 8 bytes each. */
  optimizerStateBytes: number;
}

/** Count parameters as PEFT does: adapters included, a module saved in full counted in both copies. */
function countParams(model: Module): { trainable: number; total: number } {
  let trainable = 0;
  let total = 0;
  for (const [, t] of model.namedParameters()) {
    total += t.size;
    if (gradInfo(t).requiresGrad) trainable += t.size;
  }
  return { trainable, total };
}

export class PeftModel<M extends AdaptableModel = AdaptableModel> extends AdapterHost<M> {
  readonly peftConfig = new Map<string, LoraConfig>();
  private readonly plans = new Map<string, LoraPlan>();

  protected readonly loadOp = 'loadAdapter';

  protected switchables(): Switchable[] {
    return [...this.wrappers(), ...this.saveWrappers()].map(([, w]) => w);
  }

  /** Every LoRA wrapper with its path. */
  wrappers(): [string, LoraWrapper][] {
    return this.model.namedModules().filter((e): e is [string, LoraWrapper] => e[1] instanceof LoraWrapper);
  }

  /** Every modules_to_save wrapper with its path. */
  saveWrappers(): [string, ModulesToSaveWrapper][] {
    return this.model.namedModules().filter((e): e is [string, ModulesToSaveWrapper] => e[1] instanceof ModulesToSaveWrapper);
  }

  /**
   * Inject adapter `name` per `config` (a plan is made and checked first: on any error the
   * model is unchanged). Its parameters get an arena of their own, initialised from `seed`.
   */
  addAdapter(name: string, config: LoraConfig, o: { seed?: number; init?: boolean; warn?: (message: string) => void } = {}): LoraPlan {
    if (!name || name.includes('.')) throw new ArgumentError(`addAdapter: adapter name '${name}', expected a non-empty name without '.'`);
    if (this.peftConfig.has(name)) throw new ArgumentError(`addAdapter: adapter '${name}' already exists (have: ${[...this.peftConfig.keys()].join(', ')})`);
    const plan = planLora(this.model, config);
    for (const w of plan.warnings) (o.warn ?? ((m: string) => console.warn(`webgpu-lora: ${m}`)))(w);
    const c = plan.config;
    const seed = o.seed ?? 0;
    const ctx = this.ctx;
    let k = 0;
    for (const t of plan.targets) {
      const parentPath = t.path.includes('.') ? t.path.slice(0, t.path.lastIndexOf('.')) : '';
      const leaf = t.path.slice(t.path.lastIndexOf('.') + 1);
      const parent = this.model.getSubmodule(parentPath);
      let w = parent.child(leaf);
      if (!(w instanceof LoraWrapper)) {
        w = new LoraWrapper(ctx, t.module);
        parent.replaceChild(leaf, w);
      }
      const A: Init = c.init_lora_weights === 'gaussian' ? { kind: 'normal', std: 1 / t.r } : { kind: 'uniform', bound: 1 / Math.sqrt(t.module.inFeatures) };
      // init_lora_weights = false: B keeps nn.Linear's default init (PEFT: for debugging; not a no-op at start).
      const B: Init = c.init_lora_weights === false ? { kind: 'uniform', bound: 1 / Math.sqrt(t.r) } : { kind: 'constant', value: 0 };
      (w as LoraWrapper).addAdapter(name, { r: t.r, alpha: t.alpha, rsLora: c.use_rslora, scale: t.scale, dropout: c.lora_dropout, seed: seed * 1000 + 17 + k++ }, { A, B });
    }
    const copies: [ModulesToSaveWrapper, Layer][] = [];
    for (const path of plan.modulesToSave) {
      const parentPath = path.includes('.') ? path.slice(0, path.lastIndexOf('.')) : '';
      const leaf = path.slice(path.lastIndexOf('.') + 1);
      const parent = this.model.getSubmodule(parentPath);
      let w = parent.child(leaf);
      if (!(w instanceof ModulesToSaveWrapper)) {
        w = new ModulesToSaveWrapper(ctx, w as Layer);
        parent.replaceChild(leaf, w);
      }
      const msw = w as ModulesToSaveWrapper;
      const copy = cloneStructure(ctx, msw.original, path);
      msw.copies.set(name, copy);
      copies.push([msw, copy]);
    }
    this.allocateAdapter(name, seed);
    // The copies start as the originals (PEFT deep-copies them).
    if (o.init !== false) {
      for (const [msw, copy] of copies) {
        const src = msw.original.namedParameters();
        const dst = copy.namedParameters();
        src.forEach(([, t], i) => ctx.copy(t, dst[i]![1], { op: 'modules_to_save' }));
      }
    }
    this.peftConfig.set(name, c);
    this.plans.set(name, plan);
    this.setAdapter(name);
    return plan;
  }

  /** Make `name` the active adapter: the forward adds it, and only its parameters (and the biases its config trains) require gradients. */
  setAdapter(name: string): void {
    const c = this.peftConfig.get(name);
    if (!c) throw new ArgumentError(`setAdapter: no adapter '${name}' (have: ${[...this.peftConfig.keys()].join(', ') || 'none'})`);
    this.activeAdapter = name;
    for (const [, w] of this.wrappers()) w.activeAdapter = w.adapters.has(name) ? name : null;
    for (const [, w] of this.saveWrappers()) w.activeAdapter = w.copies.get(name) ? name : null;
    this.markTrainable();
  }

  /** PEFT's _mark_only_adapters_as_trainable for the active adapter. */
  private markTrainable(): void {
    const name = this.activeAdapter;
    const c = this.peftConfig.get(name)!;
    for (const [, t] of this.model.namedParameters()) requiresGrad(t, false);
    for (const [, w] of this.wrappers()) {
      if (!w.adapters.has(name)) continue;
      const { A, B } = w.factors(name);
      requiresGrad(A, true);
      requiresGrad(B, true);
      if (c.bias === 'lora_only' && w.bias) requiresGrad(w.bias, true);
    }
    if (c.bias === 'all') for (const [n, t] of this.model.namedParameters()) if (n.includes('bias') && !n.includes('.original_module.')) requiresGrad(t, true);
    for (const [, w] of this.saveWrappers()) {
      const copy = w.copies.get(name);
      if (copy) copy.requiresGrad(true);
    }
  }

  /** Remove adapter `name`: its factors, copies and arena. Another adapter must stay active, or none remain. */
  deleteAdapter(name: string): void {
    if (!this.peftConfig.has(name)) throw new ArgumentError(`deleteAdapter: no adapter '${name}'`);
    for (const [, w] of this.wrappers()) if (w.merged.has(name)) throw new ArgumentError(`deleteAdapter: '${name}' is merged; unmerge it first`);
    for (const [, w] of this.wrappers()) if (w.adapters.has(name)) w.deleteAdapter(name);
    for (const [, w] of this.saveWrappers()) if (w.copies.get(name)) w.copies.delete(name);
    this.releaseAdapter(name);
    this.peftConfig.delete(name);
    this.plans.delete(name);
    const rest = [...this.peftConfig.keys()];
    if (this.activeAdapter === name) {
      if (rest.length) this.setAdapter(rest[0]!);
      else for (const [, w] of this.wrappers()) w.activeAdapter = null;
    }
  }

  /** Fold adapter `name` (default: the active one) into the base weights: W += s·B·A, one kernel per layer. */
  mergeAdapter(name = this.activeAdapter): void {
    if (!this.peftConfig.has(name)) throw new ArgumentError(`mergeAdapter: no adapter '${name}'`);
    for (const [, w] of this.wrappers()) if (w.adapters.has(name)) w.merge(name);
  }

  /** Undo every merge (W −= s·B·A). */
  unmerge(): void {
    for (const [, w] of this.wrappers()) for (const n of [...w.merged]) w.unmerge(n);
  }

  /**
   * Merge the active adapter into the base weights and remove every adapter: the wrappers give
   * way to their base layers (modules_to_save to the active copy's values), and the model is a
   * plain model again (zero inference cost). Returns the model.
   */
  mergeAndUnload(o: { merge?: boolean } = {}): M {
    const name = this.activeAdapter;
    this.enableAdapters();
    if (o.merge ?? true) {
      for (const [, w] of this.wrappers()) if (w.adapters.has(name) && !w.merged.has(name)) w.merge(name);
      for (const [, w] of this.saveWrappers()) {
        const copy = w.copies.get(name);
        if (!copy) continue;
        const src = copy.namedParameters();
        const dst = w.original.namedParameters();
        src.forEach(([, t], i) => this.ctx.copy(t, dst[i]![1], { op: 'mergeAndUnload' }));
      }
    }
    for (const [path, w] of [...this.wrappers(), ...this.saveWrappers()]) {
      const parentPath = path.includes('.') ? path.slice(0, path.lastIndexOf('.')) : '';
      const leaf = path.slice(path.lastIndexOf('.') + 1);
      const base = w instanceof LoraWrapper ? w.base : w.original;
      this.model.getSubmodule(parentPath).replaceChild(leaf, base);
    }
    this.dispose();
    this.peftConfig.clear();
    this.plans.clear();
    for (const [, t] of this.model.namedParameters()) requiresGrad(t, true);
    return this.model;
  }

  /** PEFT's get_nb_trainable_parameters, with the AdamW state the trainable ones need. */
  trainableParameters(): TrainableReport {
    const { trainable, total } = countParams(this.model);
    return { trainable, total, percent: (100 * trainable) / total, optimizerStateBytes: 8 * trainable };
  }

  /** The trainable parameters with their in-memory names (the optimizer's groups). */
  namedTrainable(): [string, Tensor][] {
    return this.model.namedTrainable();
  }

  /**
   * The adapter's tensors under the names PEFT saves them (adapter_model.safetensors):
   * `base_model.model.<path>.lora_A.weight` / `.lora_B.weight`, modules_to_save copies under the
   * module's own name, biases per the config's `bias`.
   */
  adapterStateDict(name = this.activeAdapter): Map<string, Tensor> {
    const c = this.peftConfig.get(name);
    if (!c) throw new ArgumentError(`adapterStateDict: no adapter '${name}'`);
    const out = new Map<string, Tensor>();
    const P = 'base_model.model.';
    for (const [path, w] of this.wrappers()) {
      if (!w.adapters.has(name)) continue;
      const { A, B } = w.factors(name);
      out.set(`${P}${path}.lora_A.weight`, A);
      out.set(`${P}${path}.lora_B.weight`, B);
      if (c.bias === 'lora_only' && w.bias) out.set(`${P}${path}.base_layer.bias`, w.bias);
    }
    if (c.bias === 'all') {
      for (const [n, t] of this.model.namedParameters()) {
        if (n.includes('bias') && !n.includes('.original_module.') && !n.includes('.modules_to_save.')) out.set(`${P}${n}`, t);
      }
    }
    for (const [path, w] of this.saveWrappers()) {
      const copy = w.copies.get(name);
      if (!copy) continue;
      for (const [n, t] of copy.namedParameters()) out.set(`${P}${path}.${n}`, t);
    }
    return out;
  }

}

/**
 * Wrap `model`'s targeted layers with LoRA adapter `adapterName` (PEFT's get_peft_model): the
 * base model is frozen; A is Kaiming-uniform and B zero (per `init_lora_weights`), so the model
 * starts as the base model.
 */
export function getPeftModel<M extends AdaptableModel>(
  model: M,
  config: Partial<LoraConfig> & Record<string, unknown>,
  adapterName = 'default',
  o: { seed?: number; warn?: (message: string) => void } = {},
): PeftModel<M> {
  for (const [p, m] of model.namedModules()) {
    if (m instanceof LoraWrapper) throw new ArgumentError(`getPeftModel: '${p}' already has LoRA adapters; use addAdapter on its PeftModel`);
  }
  const peft = new PeftModel(model, adapterName);
  peft.addAdapter(adapterName, loraConfig(config, o), o);
  return peft;
}


/**
 * The tensors (PEFT's on-disk names, with shapes) that adapter files for `plan` must hold, computed
 * from the model as it is now (before or after injection), so a file can be checked before
 * anything changes.
 */
export function plannedAdapterShapes(model: Module, plan: LoraPlan): Map<string, number[]> {
  const P = 'base_model.model.';
  const out = new Map<string, number[]>();
  const targets = new Map(plan.targets.map((t) => [t.path, t]));
  for (const t of plan.targets) {
    out.set(`${P}${t.path}.lora_A.weight`, [...t.aShape]);
    out.set(`${P}${t.path}.lora_B.weight`, [...t.bShape]);
    if (plan.config.bias === 'lora_only' && t.module.biasSlot) out.set(`${P}${t.path}.base_layer.bias`, [...t.module.biasSlot.shape]);
  }
  const saved = (n: string) => plan.modulesToSave.some((s) => n.startsWith(`${s}.`));
  if (plan.config.bias === 'all') {
    for (const [n, s] of model.namedSlots()) {
      if (!n.includes('bias') || n.includes('.original_module.') || n.includes('.modules_to_save.') || saved(n)) continue;
      // A target's own bias sits under base_layer once it is wrapped.
      const owner = n.slice(0, n.lastIndexOf('.'));
      const key = targets.has(owner) ? `${owner}.base_layer.bias` : n;
      out.set(`${P}${key}`, [...s.shape]);
    }
  }
  for (const path of plan.modulesToSave) {
    const m = model.getSubmodule(path);
    const source = m instanceof ModulesToSaveWrapper ? m.original : m;
    for (const [n, s] of source.namedSlots()) out.set(`${P}${path}.${n}`, [...s.shape]);
  }
  return out;
}
