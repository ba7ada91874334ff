/**
 * Partial fine-tuning: freeze parameters by name, regex or "the first k blocks", or freeze part
 * of a weight (rows, columns, blocks, elements) through the masked-gradient kernels; linear
 * probing (everything frozen but a new head) and full fine-tuning are the two ends.
 *
 * A frozen parameter (`requiresGrad` false) gets no gradient kernel at all: the autograd tape
 * skips it. A partly frozen Linear / Conv1D weight gets `maskedGrad`, which skips frozen tiles
 * and writes exactly 0 for frozen entries; give such weights no weight decay (see
 * {@link optimizerGroups}), so their frozen entries stay bit-identical.
 *
 * ```ts
 * freeze(model, { firstBlocks: 2 });                                    // blocks h.0 and h.1
 * freeze(model, { trainableParts: { 'transformer.h.3.mlp.c_fc.weight': { cols: [[0, 256]] } } });
 * linearProbe(model, ['score']);                                        // only the head trains
 * ```
 */
import { ArgumentError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import { gradInfo, requiresGrad, setGradMask } from '../autograd/tape.js';
import { type FreezeSpec, GradMask } from '../kernels/maskedGrad.js';
import type { ParamGroup } from '../kernels/optim.js';
import { LinearLike } from '../nn/layers.js';
import type { Module } from '../nn/module.js';

export type FreezeTarget =
  /** Parameters by exact name, or every parameter under a module path (`transformer.h.0`). */
  | { names: string[] }
  /** Parameters whose name matches (a string is compiled as a regex, searched anywhere). */
  | { regex: RegExp | string }
  /** The first k transformer blocks (`<...>.h.0` … `<...>.h.{k−1}`, or another `layersPattern`), and with `embeddings` the token and position embeddings too. */
  | { firstBlocks: number; layersPattern?: string; embeddings?: boolean }
  /** Partly frozen 2-D weights of Linear / Conv1D layers: each spec names the part that still TRAINS (GradMask's FreezeSpec). */
  | { trainableParts: Record<string, FreezeSpec> };

export interface FreezeReport {
  /** Parameters now frozen entirely. */
  frozen: string[];
  /** Parameters now partly frozen, with their trainable fraction. */
  partial: { name: string; trainableFraction: number }[];
}

/** Masks made by `freeze`, per model, so `unfreeze` can free them. */
const masks = new WeakMap<Module, Map<string, GradMask>>();

function selectNames(model: Module, t: Exclude<FreezeTarget, { trainableParts: unknown }>): string[] {
  const names = model.namedParameters().map(([n]) => n);
  if ('names' in t) {
    const out: string[] = [];
    for (const want of t.names) {
      const hit = names.filter((n) => n === want || n.startsWith(`${want}.`));
      if (!hit.length) throw new ArgumentError(`freeze: '${want}' is neither a parameter nor a module of ${model.constructor.name}`);
      out.push(...hit);
    }
    return [...new Set(out)];
  }
  if ('regex' in t) {
    const re = typeof t.regex === 'string' ? new RegExp(t.regex) : t.regex;
    const hit = names.filter((n) => re.test(n));
    if (!hit.length) throw new ArgumentError(`freeze: regex ${re} matches no parameter of ${model.constructor.name}`);
    return hit;
  }
  const k = t.firstBlocks;
  const pattern = t.layersPattern ?? 'h';
  const blockRe = new RegExp(`(^|\\.)${pattern}\\.(\\d+)\\.`);
  const indices = new Set(names.map((n) => blockRe.exec(n)?.[2]).filter((x): x is string => x !== undefined).map(Number));
  if (!indices.size) throw new ArgumentError(`freeze: no blocks named '${pattern}.<i>' in ${model.constructor.name}`);
  if (!Number.isInteger(k) || k < 0 || k > indices.size) throw new ArgumentError(`freeze: firstBlocks = ${k}, expected an integer in [0, ${indices.size}]`);
  const out = names.filter((n) => {
    const m = blockRe.exec(n);
    return m !== null && Number(m[2]) < k;
  });
  if (t.embeddings) out.push(...names.filter((n) => /(^|\.)(wte|wpe)\.weight$/.test(n)));
  return out;
}

/** Freeze parameters (or parts of weights); returns what changed. */
export function freeze(model: Module, target: FreezeTarget): FreezeReport {
  const report: FreezeReport = { frozen: [], partial: [] };
  if ('trainableParts' in target) {
    const params = new Map(model.namedParameters());
    const owners = new Map<string, LinearLike>();
    for (const [p, m] of model.namedModules()) if (m instanceof LinearLike) owners.set(p ? `${p}.weight` : 'weight', m);
    // Check every entry (and build every mask) before changing anything.
    const made: [string, Tensor, GradMask][] = [];
    try {
      for (const [name, spec] of Object.entries(target.trainableParts)) {
        const t = params.get(name);
        if (!t) throw new ArgumentError(`freeze: no parameter '${name}' in ${model.constructor.name}`);
        if (!owners.has(name) || t.shape.length !== 2) {
          throw new ArgumentError(`freeze: '${name}' ${JSON.stringify(t.shape)} is not the weight of a Linear / Conv1D layer; partial freezing works through the masked-gradient kernel of linear layers (freeze it whole instead)`);
        }
        made.push([name, t, new GradMask(model.ctx, t.shape, spec)]);
      }
    } catch (e) {
      for (const [, , m] of made) m.dispose();
      throw e;
    }
    let own = masks.get(model);
    if (!own) masks.set(model, (own = new Map()));
    for (const [name, t, mask] of made) {
      own.get(name)?.dispose();
      own.set(name, mask);
      setGradMask(t, mask);
      report.partial.push({ name, trainableFraction: mask.trainableFraction });
    }
    return report;
  }
  const params = new Map(model.namedParameters());
  for (const n of selectNames(model, target)) {
    const t = params.get(n)!;
    requiresGrad(t, false);
    const m = masks.get(model)?.get(n);
    if (m) {
      setGradMask(t, null);
      requiresGrad(t, false);
      m.dispose();
      masks.get(model)!.delete(n);
    }
    report.frozen.push(n);
  }
  return report;
}

/** Undo `freeze` for the selected parameters (whole and partial): they train again in full. */
export function unfreeze(model: Module, target: Exclude<FreezeTarget, { trainableParts: unknown }> | 'all'): string[] {
  const params = new Map(model.namedParameters());
  const names = target === 'all' ? [...params.keys()] : selectNames(model, target);
  for (const n of names) {
    const t = params.get(n)!;
    const m = masks.get(model)?.get(n);
    if (m) {
      setGradMask(t, null);
      m.dispose();
      masks.get(model)!.delete(n);
    }
    requiresGrad(t, true);
  }
  return names;
}

/**
 * Linear probing: freeze every parameter except those under the head modules (`score` for
 * classification). Give a freshly initialised head to train a new task on a frozen body.
 */
export function linearProbe(model: Module, heads: string[]): FreezeReport {
  const names = model.namedParameters().map(([n]) => n);
  const isHead = (n: string) => heads.some((h) => n === h || n.startsWith(`${h}.`));
  for (const h of heads) if (!names.some((n) => n === h || n.startsWith(`${h}.`))) throw new ArgumentError(`linearProbe: no parameters under '${h}'`);
  unfreeze(model, 'all');
  return freeze(model, { names: names.filter((n) => !isHead(n)) });
}

/**
 * Optimizer groups for the trainable parameters of `model`: partly frozen weights get weight
 * decay 0, so their frozen entries (gradient exactly 0, AdamW update exactly 0) never move.
 */
export function optimizerGroups(model: Module, o: { lr?: number; weightDecay?: number } = {}): ParamGroup[] {
  return model
    .namedTrainable()
    .map(([, t]) => {
      const g: ParamGroup = { params: t };
      if (o.lr !== undefined) g.lr = o.lr;
      if (gradInfo(t).mask) g.weightDecay = 0;
      else if (o.weightDecay !== undefined) g.weightDecay = o.weightDecay;
      return g;
    });
}
