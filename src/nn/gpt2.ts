/**
 * GPT-2 with Hugging Face's module names, built from an HF `config.json`, so that
 * `transformer.h.0.attn.c_attn.weight` here is that tensor in an HF checkpoint and in a PEFT
 * adapter's keys (`base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`).
 *
 * - `GPT2Model` (`transformer`): wte, wpe, h.{i} (ln_1, attn.c_attn, attn.c_proj, ln_2,
 *   mlp.c_fc, mlp.c_proj), ln_f. Conv1D weights are [in, out], as HF stores them.
 * - `GPT2LMHeadModel`: `lm_head` tied to `transformer.wte` (HF's default), the LM loss with HF's
 *   shift (position t predicts token t + 1).
 * - `GPT2ForSequenceClassification`: `score` [num_labels, n_embd] without bias, on the hidden
 *   state of the last non-pad token of each sequence.
 *
 * Any vocabulary size works (the demo uses characters). Dropout follows the config's
 * probabilities in training mode.
 *
 * ```ts
 * const model = GPT2LMHeadModel.create(ctx, gpt2Config({ vocab_size: 96, n_embd: 128, n_layer: 4, n_head: 4, n_positions: 256 }), { seed: 0 });
 * const loss = model.loss({ ids, shape: [8, 128] });     // mean next-token cross-entropy, on the tape
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, ShapeError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import * as ops from '../autograd/ops.js';
import { TokenIds } from '../kernels/embedding.js';
import type { ParamArena } from '../optim/arena.js';
import { Conv1D, Dropout, Embedding, GELU, Layer, LayerNorm, Linear, ModuleList, ReLU } from './layers.js';
import { Module, type ParamSlot } from './module.js';

/** The fields of HF's GPT2Config that this model reads (any others are kept for saving). */
export interface GPT2Config {
  model_type: 'gpt2';
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  /** MLP width; null means 4·n_embd. */
  n_inner: number | null;
  activation_function: string;
  resid_pdrop: number;
  embd_pdrop: number;
  attn_pdrop: number;
  layer_norm_epsilon: number;
  initializer_range: number;
  tie_word_embeddings: boolean;
  /** Sequence classification: the number of classes (or id2label's size). */
  num_labels?: number;
  id2label?: Record<string, string>;
  label2id?: Record<string, number>;
  pad_token_id?: number | null;
  bos_token_id?: number | null;
  eos_token_id?: number | null;
  architectures?: string[];
  [key: string]: unknown;
}

/** HF GPT2Config's defaults (GPT-2 small). */
const DEFAULTS: GPT2Config = {
  model_type: 'gpt2',
  vocab_size: 50257,
  n_positions: 1024,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  n_inner: null,
  activation_function: 'gelu_new',
  resid_pdrop: 0.1,
  embd_pdrop: 0.1,
  attn_pdrop: 0.1,
  layer_norm_epsilon: 1e-5,
  initializer_range: 0.02,
  tie_word_embeddings: true,
  bos_token_id: 50256,
  eos_token_id: 50256,
};

/** Activations this model runs; GELU is the tanh approximation, which is HF's 'gelu_new'. */
const ACTIVATIONS: Record<string, 'gelu' | 'relu'> = { gelu_new: 'gelu', gelu_pytorch_tanh: 'gelu', gelu_fast: 'gelu', relu: 'relu' };

/**
 * A full GPT2Config from a (partial) HF config.json object: HF's defaults filled in, then
 * checked. Unsupported options are refused with an ArgumentError naming them.
 */
export function gpt2Config(json: Partial<GPT2Config> & Record<string, unknown> = {}): GPT2Config {
  if (json.model_type !== undefined && json.model_type !== 'gpt2') {
    throw new ArgumentError(`gpt2Config: model_type '${String(json.model_type)}', expected 'gpt2'`);
  }
  const c = { ...DEFAULTS, ...json } as GPT2Config;
  const posInt = (k: keyof GPT2Config) => {
    const v = c[k];
    if (!Number.isInteger(v) || (v as number) < 1) throw new ArgumentError(`gpt2Config: ${String(k)} = ${String(v)}, expected a positive integer`);
  };
  (['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'] as const).forEach(posInt);
  if (c.n_inner !== null && c.n_inner !== undefined) posInt('n_inner');
  if (c.n_embd % c.n_head !== 0) throw new ArgumentError(`gpt2Config: n_embd = ${c.n_embd} is not divisible by n_head = ${c.n_head}`);
  if (!(c.activation_function in ACTIVATIONS)) {
    throw new ArgumentError(
      `gpt2Config: activation_function '${c.activation_function}' is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')}; ` +
        `'gelu' is the exact erf form, which this library does not implement)`,
    );
  }
  for (const k of ['resid_pdrop', 'embd_pdrop', 'attn_pdrop'] as const) {
    if (!(c[k] >= 0 && c[k] < 1)) throw new ArgumentError(`gpt2Config: ${k} = ${c[k]}, expected 0 <= p < 1`);
  }
  if (!(c.layer_norm_epsilon > 0)) throw new ArgumentError(`gpt2Config: layer_norm_epsilon = ${c.layer_norm_epsilon}, expected > 0`);
  for (const k of ['add_cross_attention', 'scale_attn_by_inverse_layer_idx', 'reorder_and_upcast_attn'] as const) {
    if (c[k] === true) throw new ArgumentError(`gpt2Config: ${k} = true is not supported`);
  }
  if (c.scale_attn_weights === false) throw new ArgumentError('gpt2Config: scale_attn_weights = false is not supported');
  if (c.pad_token_id !== undefined && c.pad_token_id !== null && !(Number.isInteger(c.pad_token_id) && c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size)) {
    throw new ArgumentError(`gpt2Config: pad_token_id = ${c.pad_token_id}, expected null or an id below vocab_size ${c.vocab_size}`);
  }
  return c;
}

/** Token ids of a batch: a flat array with its shape [batch, T], or rows of equal length. */
export type InputIds = { ids: ArrayLike<number>; shape: readonly [number, number] } | readonly (readonly number[])[];

/** The ids flattened, with [batch, T]; checks the shape and that every row has the same length. */
export function flatIds(input: InputIds, op: string): { ids: ArrayLike<number>; B: number; T: number } {
  if (Array.isArray(input)) {
    const rows = input as readonly (readonly number[])[];
    if (!rows.length || !rows[0]!.length) throw new ShapeError(`${op}: input ids are empty`);
    const T = rows[0]!.length;
    rows.forEach((r, i) => {
      if (r.length !== T) throw new ShapeError(`${op}: input row ${i} has ${r.length} ids, row 0 has ${T} (rows must have equal length; pad them)`);
    });
    return { ids: rows.flat(), B: rows.length, T };
  }
  const { ids, shape } = input as { ids: ArrayLike<number>; shape: readonly [number, number] };
  const [B, T] = shape;
  if (!Number.isInteger(B) || !Number.isInteger(T) || B < 1 || T < 1 || B * T !== ids.length) {
    throw new ShapeError(`${op}: ${ids.length} ids for shape [${shape.join(',')}]`);
  }
  return { ids, B, T };
}

/** A module whose named children are looked up at call time, so adapters that replace them take effect. */
function layerAt(m: Module, name: string): Layer {
  return m.child(name) as Layer;
}

/** Multi-head causal self-attention (HF GPT2Attention): c_attn [D, 3D], c_proj [D, D]. */
export class GPT2Attention extends Layer {
  readonly heads: number;
  private readonly attnDropout: Dropout;
  private readonly residDropout: Dropout;

  constructor(ctx: GpuContext, readonly config: GPT2Config) {
    super(ctx);
    const D = config.n_embd;
    this.heads = config.n_head;
    const std = config.initializer_range;
    this.add('c_attn', new Conv1D(ctx, 3 * D, D, { init: { kind: 'normal', std } }));
    // HF scales the residual projections' init by 1/√(2·n_layer).
    this.add('c_proj', new Conv1D(ctx, D, D, { init: { kind: 'normal', std: std / Math.sqrt(2 * config.n_layer) } }));
    this.attnDropout = this.add('attn_dropout', new Dropout(ctx, config.attn_pdrop));
    this.residDropout = this.add('resid_dropout', new Dropout(ctx, config.resid_pdrop));
  }

  /** x [B, T, D] -> [B, T, D]. */
  forward(x: Tensor): Tensor {
    const ctx = this.ctx;
    const D = this.config.n_embd;
    const H = this.heads;
    const qkv = layerAt(this, 'c_attn').forward(x); // [B, T, 3D]
    const q = ops.splitHeads(ctx, ops.slice(ctx, qkv, 2, 0, D), H);
    const k = ops.splitHeads(ctx, ops.slice(ctx, qkv, 2, D, D), H);
    const v = ops.splitHeads(ctx, ops.slice(ctx, qkv, 2, 2 * D, D), H);
    const scores = ops.scale(ctx, ops.matmul(ctx, q, k, { transB: true }), 1 / Math.sqrt(D / H));
    const probs = this.attnDropout.forward(ops.softmax(ctx, scores, { causal: true }));
    const merged = ops.mergeHeads(ctx, ops.matmul(ctx, probs, v), H);
    return this.residDropout.forward(layerAt(this, 'c_proj').forward(merged));
  }
}

/** HF GPT2MLP: c_fc [D, inner], activation, c_proj [inner, D], dropout. */
export class GPT2MLP extends Layer {
  private readonly dropout: Dropout;

  constructor(ctx: GpuContext, readonly config: GPT2Config) {
    super(ctx);
    const D = config.n_embd;
    const inner = config.n_inner ?? 4 * D;
    const std = config.initializer_range;
    this.add('c_fc', new Conv1D(ctx, inner, D, { init: { kind: 'normal', std } }));
    this.add('c_proj', new Conv1D(ctx, D, inner, { init: { kind: 'normal', std: std / Math.sqrt(2 * config.n_layer) } }));
    this.add('act', ACTIVATIONS[config.activation_function] === 'relu' ? new ReLU(ctx) : new GELU(ctx));
    this.dropout = this.add('dropout', new Dropout(ctx, config.resid_pdrop));
  }

  forward(x: Tensor): Tensor {
    const h = layerAt(this, 'act').forward(layerAt(this, 'c_fc').forward(x));
    return this.dropout.forward(layerAt(this, 'c_proj').forward(h));
  }
}

/** HF GPT2Block: x + attn(ln_1(x)), then h + mlp(ln_2(h)). Adapters may wrap `attn` and `mlp`. */
export class GPT2Block extends Layer {
  constructor(ctx: GpuContext, readonly config: GPT2Config) {
    super(ctx);
    const D = config.n_embd;
    this.add('ln_1', new LayerNorm(ctx, D, config.layer_norm_epsilon));
    this.add('attn', new GPT2Attention(ctx, config));
    this.add('ln_2', new LayerNorm(ctx, D, config.layer_norm_epsilon));
    this.add('mlp', new GPT2MLP(ctx, config));
  }

  forward(x: Tensor): Tensor {
    const ctx = this.ctx;
    const h = ops.add(ctx, x, layerAt(this, 'attn').forward(layerAt(this, 'ln_1').forward(x)));
    return ops.add(ctx, h, layerAt(this, 'mlp').forward(layerAt(this, 'ln_2').forward(h)));
  }
}

/** HF GPT2Model (`transformer`): embeddings, blocks, final LayerNorm. */
export class GPT2Model extends Module {
  readonly wte: Embedding;
  readonly wpe: Embedding;
  readonly h: ModuleList<Layer>;
  private readonly drop: Dropout;
  /** Position ids 0..T−1 per sequence length, made once. */
  private readonly positions = new Map<number, TokenIds>();

  constructor(ctx: GpuContext, readonly config: GPT2Config) {
    super(ctx);
    const std = config.initializer_range;
    this.wte = this.add('wte', new Embedding(ctx, config.vocab_size, config.n_embd, { init: { kind: 'normal', std } }));
    this.wpe = this.add('wpe', new Embedding(ctx, config.n_positions, config.n_embd, { init: { kind: 'normal', std } }));
    this.drop = this.add('drop', new Dropout(ctx, config.embd_pdrop));
    this.h = this.add('h', new ModuleList(ctx, Array.from({ length: config.n_layer }, () => new GPT2Block(ctx, config))));
    this.add('ln_f', new LayerNorm(ctx, config.n_embd, config.layer_norm_epsilon));
  }

  /** Hidden states [B, T, n_embd] of the last block, after ln_f. */
  forward(input: InputIds): Tensor {
    const { ids, B, T } = flatIds(input, 'GPT2Model.forward');
    if (T > this.config.n_positions) throw new ShapeError(`GPT2Model.forward: sequence length ${T} exceeds n_positions = ${this.config.n_positions}`);
    const ctx = this.ctx;
    // Token ids are checked against the vocabulary by TokenIds; the embedding op owns them.
    const tokens = new TokenIds(ctx, ids, this.config.vocab_size, [B, T]);
    let pos = this.positions.get(T);
    if (!pos) {
      pos = new TokenIds(ctx, Array.from({ length: T }, (_, t) => t), this.config.n_positions, [T]);
      this.positions.set(T, pos);
    }
    let x = ops.add(ctx, this.wte.forward(tokens, { disposeIds: true }), this.wpe.forward(pos));
    x = this.drop.forward(x);
    for (const block of this.h.items) x = block.forward(x);
    return layerAt(this, 'ln_f').forward(x);
  }

  /** Free the cached position ids (the parameters belong to the arena's owner). */
  releaseCaches(): void {
    for (const p of this.positions.values()) p.dispose();
    this.positions.clear();
  }
}

/** Each Dropout in the tree gets its own stream: seed + its index in namedModules order. */
function seedDropouts(root: Module, seed: number): void {
  let i = 0;
  for (const [, m] of root.namedModules()) if (m instanceof Dropout) m.seed = seed + 7919 * ++i;
}

/** What the GPT-2 models share: config, transformer, the parameter arena, disposal. */
abstract class GPT2PreTrained extends Module {
  readonly transformer: GPT2Model;
  /** The arenas holding this model's parameters (the base model's first; adapters add theirs). */
  readonly arenas: ParamArena[] = [];

  constructor(ctx: GpuContext, readonly config: GPT2Config) {
    super(ctx);
    this.transformer = this.add('transformer', new GPT2Model(ctx, config));
  }

  /** Allocate and initialise (HF's init, seeded on the GPU) every parameter not yet allocated. */
  override allocate(o: { seed?: number; chunkBytes?: number } = {}): ParamArena | null {
    const a = super.allocate(o);
    if (a) this.arenas.push(a);
    seedDropouts(this, (o.seed ?? 0) + 1);
    return a;
  }

  /** The base model's arena (every parameter declared at construction). */
  get baseArena(): ParamArena {
    const a = this.arenas[0];
    if (!a) throw new ArgumentError(`${this.constructor.name}: not allocated yet`);
    return a;
  }

  /** Free the parameters (every arena) and caches. */
  dispose(): void {
    this.transformer.releaseCaches();
    for (const a of this.arenas) a.dispose();
    this.arenas.length = 0;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** GPT-2 with a language-model head tied to the token embedding (unless tie_word_embeddings is false). */
export class GPT2LMHeadModel extends GPT2PreTrained {
  readonly lmHead: Linear;

  constructor(ctx: GpuContext, config: GPT2Config) {
    super(ctx, config);
    const tied: ParamSlot | undefined = config.tie_word_embeddings ? this.transformer.wte.weightSlot : undefined;
    this.lmHead = this.add(
      'lm_head',
      new Linear(ctx, config.n_embd, config.vocab_size, { bias: false, init: { kind: 'normal', std: config.initializer_range }, tiedWeight: tied }),
    );
  }

  /** Build and allocate a randomly initialised model (HF's initialisation). */
  static create(ctx: GpuContext, config: GPT2Config, o: { seed?: number; chunkBytes?: number } = {}): GPT2LMHeadModel {
    const m = new GPT2LMHeadModel(ctx, config);
    m.allocate(o);
    return m;
  }

  /** Logits [B, T, vocab_size]. */
  forward(input: InputIds): Tensor {
    return layerAt(this, 'lm_head').forward(this.transformer.forward(input));
  }

  /**
   * Mean next-token cross-entropy (HF's loss: logits at t against labels at t + 1; label −100 is
   * ignored). `labels` defaults to the input ids; give it (same shape) to mask prompt tokens.
   */
  loss(input: InputIds, labels?: ArrayLike<number>): Tensor {
    const { ids, B, T } = flatIds(input, 'GPT2LMHeadModel.loss');
    const lab = labels ?? ids;
    if (lab.length !== B * T) throw new ShapeError(`GPT2LMHeadModel.loss: ${lab.length} labels for input [${B},${T}]`);
    const shifted = new Float32Array(B * T).fill(-100);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t + 1 < T; t++) {
        const l = lab[b * T + t + 1]!;
        if (l !== -100 && !(Number.isInteger(l) && l >= 0 && l < this.config.vocab_size)) {
          throw new ArgumentError(`GPT2LMHeadModel.loss: labels[${b * T + t + 1}] = ${l}, expected -100 or an id in [0, ${this.config.vocab_size})`);
        }
        shifted[b * T + t] = l;
      }
    }
    const logits = this.forward({ ids, shape: [B, T] });
    const target = this.ctx.tensor(shifted, [B * T], 'f32', 'lm.labels');
    return ops.crossEntropy(this.ctx, logits, { labels: target }, { ignoreIndex: -100, ownTarget: true });
  }
}

/** GPT-2 with a classification head `score` on the last non-pad token (HF GPT2ForSequenceClassification). */
export class GPT2ForSequenceClassification extends GPT2PreTrained {
  readonly numLabels: number;

  constructor(ctx: GpuContext, config: GPT2Config) {
    super(ctx, config);
    const n = config.num_labels ?? (config.id2label ? Object.keys(config.id2label).length : 2);
    if (!Number.isInteger(n) || n < 1) throw new ArgumentError(`GPT2ForSequenceClassification: num_labels = ${n}, expected a positive integer`);
    this.numLabels = n;
    this.add('score', new Linear(ctx, config.n_embd, n, { bias: false, init: { kind: 'normal', std: config.initializer_range } }));
  }

  static create(ctx: GpuContext, config: GPT2Config, o: { seed?: number; chunkBytes?: number } = {}): GPT2ForSequenceClassification {
    const m = new GPT2ForSequenceClassification(ctx, config);
    m.allocate(o);
    return m;
  }

  /**
   * Position pooled for each row: the last token that is not `pad_token_id` (HF), or the last
   * position when the config has no pad token.
   */
  poolPositions(ids: ArrayLike<number>, B: number, T: number): number[] {
    const pad = this.config.pad_token_id;
    return Array.from({ length: B }, (_, b) => {
      if (pad === null || pad === undefined) return T - 1;
      let last = 0;
      for (let t = 0; t < T; t++) if (ids[b * T + t] !== pad) last = t;
      return last;
    });
  }

  /** Class logits [B, num_labels]. */
  forward(input: InputIds): Tensor {
    const { ids, B, T } = flatIds(input, 'GPT2ForSequenceClassification.forward');
    const D = this.config.n_embd;
    const hidden = ops.reshape(this.ctx, this.transformer.forward({ ids, shape: [B, T] }), [B * T, D]);
    const rows = this.poolPositions(ids, B, T).map((p, b) => b * T + p);
    // A gather of one hidden row per sequence: the embedding op over the hidden states.
    const pooled = ops.embedding(this.ctx, hidden, new TokenIds(this.ctx, rows, B * T, [B]), { disposeIds: true });
    return layerAt(this, 'score').forward(pooled);
  }

  /** Mean cross-entropy of the class logits against `labels` (one class index per row). */
  loss(input: InputIds, labels: ArrayLike<number>): Tensor {
    const { B } = flatIds(input, 'GPT2ForSequenceClassification.loss');
    if (labels.length !== B) throw new ShapeError(`GPT2ForSequenceClassification.loss: ${labels.length} labels for ${B} sequences`);
    for (let i = 0; i < B; i++) {
      const l = labels[i]!;
      if (!(Number.isInteger(l) && l >= 0 && l < this.numLabels)) {
        throw new ArgumentError(`GPT2ForSequenceClassification.loss: labels[${i}] = ${l}, expected an integer in [0, ${this.numLabels})`);
      }
    }
    const logits = this.forward(input);
    const target = this.ctx.tensor(Float32Array.from(labels), [B], 'f32', 'cls.labels');
    return ops.crossEntropy(this.ctx, logits, { labels: target }, { ownTarget: true });
  }
}

export type GPT2 = GPT2LMHeadModel | GPT2ForSequenceClassification;
