/**
 * Modules with torch's names: a tree of named children and parameters, so a parameter's path
 * (`transformer.h.0.attn.c_attn.weight`) is its name in a PyTorch / Hugging Face state dict and
 * a checkpoint loads without a translation table.
 *
 * A module declares its parameters (shape and initialiser) when it is built; `allocate()` then
 * places every parameter of the tree that has no storage yet into **one ParamArena**, so a fused
 * optimizer updates the whole model in one dispatch and WiSE-FT interpolates it in one. Adapters
 * added later (LoRA factors, bottleneck adapters) get an arena of their own the same way.
 *
 * ```ts
 * const mlp = new Sequential(ctx, [new Linear(ctx, 4, 16), new GELU(ctx), new Linear(ctx, 16, 2)]);
 * mlp.allocate({ seed: 0 });               // one arena, torch's default initialisation
 * mlp.namedParameters();                    // [['0.weight', W0], ['0.bias', b0], ['2.weight', ...], ...]
 * const y = mlp.forward(x);                 // records on the autograd tape
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DisposedError, ShapeError, SizeLimitError } from '../gpu/errors.js';
import { shapeSize, type Tensor } from '../gpu/tensor.js';
import { requiresGrad, gradInfo } from '../autograd/tape.js';
import { fill } from '../kernels/elementwise.js';
import { normal, uniform } from '../kernels/random.js';
import { fmtShape, sameShape } from '../kernels/util.js';
import { ParamArena } from '../optim/arena.js';

/** How a parameter starts: N(mean, std²), U(−bound, bound), or a constant. */
export type Init =
  | { kind: 'normal'; std: number; mean?: number }
  | { kind: 'uniform'; bound: number }
  | { kind: 'constant'; value: number };

/** One declared parameter: its shape, its initialiser, and (once allocated) its tensor. */
export class ParamSlot {
  tensor: Tensor | null = null;
  constructor(
    readonly shape: readonly number[],
    public init: Init,
    /** A buffer (torch's register_buffer): in the state dict, never a parameter, never trained. */
    readonly buffer = false,
  ) {}
}

/** A CPU copy of a tensor: what state dicts and checkpoint files hold. */
export interface HostTensor {
  shape: readonly number[];
  data: Float32Array;
}

export interface LoadStateDictOptions {
  /** Every key of the model must be given and no other (default true). */
  strict?: boolean;
}

/** What `loadStateDict` did, as torch's `_IncompatibleKeys`. */
export interface LoadResult {
  missing: string[];
  unexpected: string[];
}

export abstract class Module {
  /** Dropout and other training-only behaviour are on (torch's `module.training`). */
  training = true;
  private readonly params_ = new Map<string, ParamSlot>();
  private readonly modules_ = new Map<string, Module>();

  constructor(readonly ctx: GpuContext) {}

  // ------------------------------------------------------------ declaring

  /** Declare a parameter; its tensor exists after `allocate()`. */
  protected declare(name: string, shape: readonly number[], init: Init): ParamSlot {
    this.checkName(name);
    shapeSize(shape, `${this.constructor.name}.${name}`);
    const slot = new ParamSlot([...shape], init);
    this.params_.set(name, slot);
    return slot;
  }

  /** Declare a buffer: state (running statistics, masks) saved in the state dict but not trained. */
  protected declareBuffer(name: string, shape: readonly number[], init: Init): ParamSlot {
    this.checkName(name);
    shapeSize(shape, `${this.constructor.name}.${name}`);
    const slot = new ParamSlot([...shape], init, true);
    this.params_.set(name, slot);
    return slot;
  }

  /** Register `slot` (another module's parameter) under `name` too: tied weights (lm_head = wte). */
  protected tie(name: string, slot: ParamSlot): ParamSlot {
    this.checkName(name);
    this.params_.set(name, slot);
    return slot;
  }

  /** Register a child module under `name`. */
  protected add<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    this.modules_.set(name, m);
    return m;
  }

  private checkName(name: string): void {
    if (!name || name.includes('.')) throw new ArgumentError(`${this.constructor.name}: name '${name}', expected a non-empty name without '.'`);
    if (this.params_.has(name) || this.modules_.has(name)) throw new ArgumentError(`${this.constructor.name}: '${name}' is already registered`);
  }

  /** The tensor of a declared parameter; throws until `allocate()` (or after disposal). */
  protected tensorOf(slot: ParamSlot, name: string): Tensor {
    if (!slot.tensor) throw new ArgumentError(`${this.constructor.name}.${name}: not allocated yet; call allocate() on the model first`);
    if (slot.tensor.disposed) throw new DisposedError(`${this.constructor.name}.${name}: the model's parameters were disposed`);
    return slot.tensor;
  }

  // ------------------------------------------------------------ the tree

  /** Direct children by name, in registration order. */
  namedChildren(): [string, Module][] {
    return [...this.modules_];
  }

  /** The child called `name`, or undefined. */
  child(name: string): Module | undefined {
    return this.modules_.get(name);
  }

  /** Remove the child `name` (deleting an adapter). */
  protected removeChild(name: string): void {
    if (!this.modules_.delete(name)) throw new ArgumentError(`${this.constructor.name}: no child '${name}' to remove`);
  }

  /** Replace the child `name` (LoRA injection swaps a Linear for its wrapper). */
  replaceChild(name: string, m: Module): void {
    if (!this.modules_.has(name)) throw new ArgumentError(`${this.constructor.name}: no child '${name}' to replace`);
    this.modules_.set(name, m);
  }

  /** This module and every descendant with its dotted path ('' for this one), depth first. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this.modules_) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }

  /** The module at a dotted path ('' is this one); throws naming the path if there is none. */
  getSubmodule(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    for (const part of path.split('.')) {
      const c = m.modules_.get(part);
      if (!c) throw new ArgumentError(`getSubmodule: no module '${path}' (no child '${part}' in ${m.constructor.name})`);
      m = c;
    }
    return m;
  }

  /**
   * Every parameter slot with its path, tied slots listed once (torch's named_parameters), or
   * every name with `withTied`; buffers too with `buffers`.
   */
  namedSlots(o: { withTied?: boolean; buffers?: boolean } = {}): [string, ParamSlot][] {
    const seen = new Set<ParamSlot>();
    const out: [string, ParamSlot][] = [];
    const walk = (m: Module, prefix: string) => {
      for (const [n, s] of m.params_) {
        if (s.buffer && !o.buffers) continue;
        if (!o.withTied && seen.has(s)) continue;
        seen.add(s);
        out.push([prefix + n, s]);
      }
      for (const [n, c] of m.modules_) walk(c, `${prefix}${n}.`);
    };
    walk(this, '');
    return out;
  }

  /** Parameters with their paths, tied ones once (as torch). Needs `allocate()`. */
  namedParameters(): [string, Tensor][] {
    return this.namedSlots().map(([n, s]) => [n, this.tensorOf(s, n)]);
  }

  /** Buffers with their paths (torch's named_buffers). */
  namedBuffers(): [string, Tensor][] {
    return this.namedSlots({ buffers: true })
      .filter(([, s]) => s.buffer)
      .map(([n, s]) => [n, this.tensorOf(s, n)]);
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }

  /** Parameters that require a gradient (torch: `p.requires_grad`), with their paths. */
  namedTrainable(): [string, Tensor][] {
    return this.namedParameters().filter(([, t]) => gradInfo(t).requiresGrad);
  }

  /** Number of parameter elements (tied counted once); only those requiring a gradient with `trainable`. */
  numParameters(o: { trainable?: boolean } = {}): number {
    let n = 0;
    for (const [, s] of this.namedSlots()) {
      if (o.trainable && (!s.tensor || !gradInfo(s.tensor).requiresGrad)) continue;
      n += shapeSize(s.shape, 'numParameters');
    }
    return n;
  }

  /** Turn gradients on or off for every parameter of this module (torch's `requires_grad_`). */
  requiresGrad(on = true): this {
    for (const [, t] of this.namedParameters()) requiresGrad(t, on);
    return this;
  }

  /** Training mode on or off for the whole subtree. */
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  // ------------------------------------------------------------ storage

  /**
   * Give every declared, not yet allocated parameter of the subtree storage in one new
   * ParamArena (in namedParameters order; chunks of at most `chunkBytes`, by default one storage
   * binding) and initialise it on the GPU from `seed` (each
   * parameter its own stream). Parameters require a gradient afterwards (as in torch).
   * Returns the arena (the caller, or the model that owns the subtree, disposes it).
   */
  allocate(o: { seed?: number; chunkBytes?: number } = {}): ParamArena | null {
    const pending = this.namedSlots({ buffers: true }).filter(([, s]) => !s.tensor);
    if (!pending.length) return null;
    const max = this.ctx.caps.limits.maxStorageBufferBindingSize ?? Infinity;
    for (const [n, s] of pending) {
      const bytes = 4 * shapeSize(s.shape, n);
      if (bytes > max) {
        throw new SizeLimitError(`allocate: parameter '${n}' ${fmtShape(s.shape)} is ${bytes} bytes, over this device's maxStorageBufferBindingSize ${max}`);
      }
    }
    // A model larger than one storage binding gets an arena of several chunks (each parameter whole in one).
    const arena = new ParamArena(this.ctx, pending.map(([, s]) => s.shape), pending.map(([n]) => n), o.chunkBytes !== undefined ? { chunkBytes: o.chunkBytes } : {});
    const seed = o.seed ?? 0;
    pending.forEach(([, s], i) => {
      const t = arena.params[i]!;
      s.tensor = t;
      initTensor(this.ctx, t, s.init, seed, i);
      if (!s.buffer) requiresGrad(t, true);
    });
    return arena;
  }

  /** Tensors by state-dict key: every parameter and buffer name, tied names included (as torch). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedSlots({ withTied: true, buffers: true }).map(([n, s]) => [n, this.tensorOf(s, n)]));
  }

  /** The state dict read back to the CPU (one submit, then the reads). */
  async stateDictHost(o: { withTied?: boolean } = {}): Promise<Map<string, HostTensor>> {
    const entries = this.namedSlots({ withTied: o.withTied ?? true, buffers: true }).map(([n, s]) => [n, this.tensorOf(s, n)] as const);
    const data = await Promise.all(entries.map(([, t]) => t.read()));
    return new Map(entries.map(([n, t], i) => [n, { shape: [...t.shape], data: data[i]! }]));
  }

  /**
   * Copy `sd` into the parameters. Every key and shape is checked before anything is written, so
   * on an error the model is unchanged: the error lists missing keys (strict only), unexpected
   * keys (strict only) and shape mismatches (always). Tied parameters may be given under any of
   * their names (once is enough).
   */
  loadStateDict(sd: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>, o: LoadStateDictOptions = {}): LoadResult {
    const strict = o.strict ?? true;
    const given = sd instanceof Map ? new Map(sd) : new Map(Object.entries(sd));
    const named = this.namedSlots({ withTied: true, buffers: true });
    const byName = new Map(named);
    const missing: string[] = [];
    const mismatched: string[] = [];
    const covered = new Set<ParamSlot>();
    for (const [n, s] of named) {
      const h = given.get(n);
      if (!h) continue;
      if (!sameShape(h.shape, s.shape)) mismatched.push(`${n}: checkpoint ${fmtShape(h.shape)}, model ${fmtShape(s.shape)}`);
      else if (h.data.length !== shapeSize(s.shape, n)) mismatched.push(`${n}: ${h.data.length} values for shape ${fmtShape(s.shape)}`);
      covered.add(s);
    }
    for (const [n, s] of named) if (!covered.has(s) && !missing.includes(n)) missing.push(n);
    // A tied parameter counts as given if any of its names is.
    const unexpected = [...given.keys()].filter((k) => !byName.has(k));
    const problems: string[] = [];
    if (mismatched.length) problems.push(`shape mismatches: ${mismatched.join('; ')}`);
    if (strict && missing.length) problems.push(`missing keys: ${missing.join(', ')}`);
    if (strict && unexpected.length) problems.push(`unexpected keys: ${unexpected.join(', ')}`);
    if (problems.length) throw new ShapeError(`loadStateDict (${this.constructor.name}): ${problems.join('. ')}`);
    const written = new Set<ParamSlot>();
    for (const [n, s] of named) {
      const h = given.get(n);
      if (!h || written.has(s)) continue;
      this.tensorOf(s, n).write(h.data);
      written.add(s);
    }
    return { missing, unexpected };
  }

  /** One line per module with its parameter count (a summary like torch's repr, shorter). */
  summary(): string {
    return this.namedModules()
      .map(([n, m]) => {
        const own = [...m.params_].map(([pn, s]) => `${pn} ${fmtShape(s.shape)}`).join(', ');
        return `${n || '(root)'}: ${m.constructor.name}${own ? ` — ${own}` : ''}`;
      })
      .join('\n');
  }
}

/** Initialise `t` in place: seeded on the GPU, stream `index` of `seed`. */
export function initTensor(ctx: GpuContext, t: Tensor, init: Init, seed: number, index: number): void {
  switch (init.kind) {
    case 'normal':
      normal(ctx, t, { seed, offset: index, std: init.std, mean: init.mean ?? 0 });
      break;
    case 'uniform':
      if (init.bound > 0) uniform(ctx, t, { seed, offset: index, lo: -init.bound, hi: init.bound });
      else fill(ctx, t, 0);
      break;
    case 'constant':
      fill(ctx, t, init.value);
      break;
    default:
      throw new ArgumentError(`initTensor: unknown init ${JSON.stringify(init)}`);
  }
}
