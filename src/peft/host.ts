/**
 * What LoRA's PeftModel and the bottleneck adapters share: the model they live in, the active
 * adapter's name, each adapter's parameter arena (kept in the model's `arenas` too, so the
 * model's dispose frees it), and switching every adapter off and on.
 */
import type { GpuContext } from '../gpu/context.js';
import { ShapeError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import { fmtShape } from '../kernels/util.js';
import type { ParamArena } from '../optim/arena.js';
import type { HostTensor, Module } from '../nn/module.js';

/** A model that can host adapters: a Module with a config and a list of parameter arenas (GPT-2). */
export interface AdaptableModel extends Module {
  readonly config: { model_type?: string; [k: string]: unknown };
  readonly arenas: ParamArena[];
}

/** A module an adapter host can switch off (its forward then is the base layer's). */
export interface Switchable {
  disabled: boolean;
}

export abstract class AdapterHost<M extends AdaptableModel> {
  activeAdapter: string;
  private readonly adapterArenas = new Map<string, ParamArena>();
  private disabled_ = false;

  constructor(
    readonly model: M,
    adapterName: string,
  ) {
    this.activeAdapter = adapterName;
  }

  get ctx(): GpuContext {
    return this.model.ctx;
  }

  /** The modules that `disableAdapters` switches. */
  protected abstract switchables(): Switchable[];

  /** What `loadAdapterWeights` calls itself in its errors ('loadAdapter', 'loadBottleneck'). */
  protected abstract readonly loadOp: string;

  /** Adapter `name`'s tensors under their on-disk names. */
  abstract adapterStateDict(name?: string): Map<string, Tensor>;

  /**
   * Load saved tensors (on-disk names) into adapter `name`, which must exist. Every key and
   * shape is checked first; on an error nothing is written.
   */
  loadAdapterWeights(name: string, tensors: ReadonlyMap<string, HostTensor>): void {
    const expected = this.adapterStateDict(name);
    const problems: string[] = [];
    for (const [k, t] of expected) {
      const h = tensors.get(k);
      if (!h) problems.push(`missing '${k}' (expected ${fmtShape(t.shape)})`);
      else if (h.shape.length !== t.shape.length || h.shape.some((d, i) => d !== t.shape[i])) problems.push(`'${k}': expected ${fmtShape(t.shape)}, found ${fmtShape(h.shape)}`);
      else if (h.data.length !== t.size) problems.push(`'${k}': ${h.data.length} values for ${fmtShape(t.shape)}`);
    }
    for (const k of tensors.keys()) if (!expected.has(k)) problems.push(`unexpected '${k}' (no such adapter tensor in this model)`);
    if (problems.length) throw new ShapeError(`${this.loadOp} '${name}': the adapter does not fit the model: ${problems.join('; ')}`);
    for (const [k, t] of expected) t.write(tensors.get(k)!.data);
  }

  /** Allocate the parameters declared for adapter `name` in an arena of their own. */
  protected allocateAdapter(name: string, seed: number): void {
    const arena = this.model.allocate({ seed });
    if (!arena) return;
    if (!this.model.arenas.includes(arena)) this.model.arenas.push(arena);
    this.adapterArenas.set(name, arena);
  }

  /** Free adapter `name`'s arena. */
  protected releaseAdapter(name: string): void {
    const a = this.adapterArenas.get(name);
    if (!a) return;
    a.dispose();
    const i = this.model.arenas.indexOf(a);
    if (i >= 0) this.model.arenas.splice(i, 1);
    this.adapterArenas.delete(name);
  }

  /** The arena of adapter `name` (its every parameter). */
  adapterArena(name = this.activeAdapter): ParamArena | undefined {
    return this.adapterArenas.get(name);
  }

  /** The forward runs the base model alone (the reference policy of DPO, say) until `enableAdapters`. */
  disableAdapters(): void {
    this.disabled_ = true;
    for (const w of this.switchables()) w.disabled = true;
  }

  enableAdapters(): void {
    this.disabled_ = false;
    for (const w of this.switchables()) w.disabled = false;
  }

  get adaptersDisabled(): boolean {
    return this.disabled_;
  }

  /** Run `fn` with adapters disabled (PEFT's `with model.disable_adapter():`). */
  withAdaptersDisabled<T>(fn: () => T): T {
    const was = this.disabled_;
    this.disableAdapters();
    try {
      return fn();
    } finally {
      if (!was) this.enableAdapters();
    }
  }

  /** Free every adapter arena (the base model stays the caller's). */
  dispose(): void {
    for (const name of [...this.adapterArenas.keys()]) this.releaseAdapter(name);
  }
}
