/**
 * What the fine-tuning page does on the GPU, without the DOM: load the pre-trained checkpoint
 * from the page's origin, train a LoRA adapter on some text, sample, interpolate between the
 * pre-trained and the fine-tuned (merged) weights (WiSE-FT), and move the adapter in and out as
 * a zipped PEFT adapter directory. Everything here runs in the browser on `navigator.gpu`;
 * nothing imports Node or the `webgpu` package (test/browser/page.test.ts checks the bundle).
 *
 * The weights are in one of two states:
 * - `adapter`: the base weights are exactly the pre-trained ones and the LoRA adapter is on
 *   (training, the "after" sample, downloads);
 * - `wise`: the adapter is off and the base weights are (1 − α)·θ_pre + α·θ_ft, where θ_ft is
 *   the base with the adapter merged in (W + s·B·A), interpolated by one lerp dispatch per arena
 *   chunk. Back to `adapter` is the same lerp at α = 0, which gives θ_pre bit for bit.
 *
 * GPU work is serialised by the caller (one action at a time: the page disables the other
 * buttons while one runs).
 */
import {
  AdamW,
  ADAPTER_CONFIG_NAME,
  ADAPTER_WEIGHTS_NAME,
  adapterToFiles,
  ArgumentError,
  backward,
  generate,
  getPeftModel,
  gpt2FromFiles,
  grad,
  interpolate,
  loadAdapterFromFiles,
  loraConfig,
  noGrad,
  parseSafetensors,
  readSafetensorsBuffer,
  snapshot,
  zeroGrad,
  type GpuContext,
  type GPT2LMHeadModel,
  type PeftModel,
  type Snapshot,
  type Tensor,
} from '../../src/index.js';
import { strFromU8, strToU8, unzipSync, zipSync } from 'fflate';
import { mulberry32 } from '../lib/rng.js';
import { CharVocab, normalizeText } from '../lib/vocab.js';

/** Which layers get LoRA factors. `c_proj` names both attn.c_proj and mlp.c_proj. */
export const TARGETS = {
  attention: ['c_attn'],
  'attention+mlp': ['c_attn', 'c_proj', 'c_fc'],
} as const;
export type TargetChoice = keyof typeof TARGETS;

export interface AdapterSettings {
  rank: number;
  targets: TargetChoice;
  seed: number;
}

export interface TrainSettings {
  steps: number;
  batch: number;
  seqLen: number;
  lr: number;
  /** Seed of the window sampler. */
  seed: number;
  /** Score the held-out text before the first step, every this many steps, and at the end (0: never). */
  heldOutEvery?: number;
}

/** One report from the training loop (losses arrive in groups, read back together). */
export interface TrainProgress {
  /** Steps done in this run. */
  step: number;
  /** Losses of the steps read back since the last report, in step order. */
  losses: number[];
  /** Training throughput, held-out scoring not counted. */
  stepsPerSecond: number;
  tokensPerSecond: number;
  /** The held-out loss after `step` steps of this run, when it was scored with this report. */
  heldOut?: number;
}

/** Text cut into a training part and a held-out tail, encoded. */
export interface TextSplit {
  train: Uint16Array;
  heldOut: Uint16Array;
}

/** A string that every sample and the logits probe start from when nothing else is given. */
export const PROBE_TEXT = 'The old man looked at the door and said, "';

/** Yield to the event loop (a macrotask), so clicks and painting get their turn between steps. */
export function nextTask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

export class Session {
  readonly vocab = new CharVocab();
  peft: PeftModel<GPT2LMHeadModel>;
  /** Steps trained into the current adapter in this page (null: uploaded, history unknown). */
  adapterSteps: number | null = 0;
  adapterSettings: AdapterSettings;
  /** Base-model logits of PROBE_TEXT, read at load (the reference for α = 0). */
  readonly baseProbe: Float32Array;
  private mode: 'adapter' | 'wise' = 'adapter';
  private alpha = 1;
  private readonly pre: Snapshot;
  private ft: Snapshot | null = null;
  private opt: AdamW | null = null;
  private adapterCount = 0;

  private constructor(
    readonly ctx: GpuContext,
    readonly model: GPT2LMHeadModel,
    /** The checkpoint's name (its folder), written as base_model_name_or_path. */
    readonly checkpointName: string,
    baseProbe: Float32Array,
    adapter: AdapterSettings,
  ) {
    this.baseProbe = baseProbe;
    this.pre = snapshot(model);
    this.adapterSettings = adapter;
    this.peft = this.makeAdapter(adapter, null);
  }

  /**
   * Load config.json and model.safetensors from `base` (a URL ending in '/'), check that the
   * vocabulary is the character vocabulary, read the base model's probe logits, and add a
   * fresh LoRA adapter (B = 0: the model starts as the base model).
   */
  static async load(ctx: GpuContext, base: string, adapter: AdapterSettings, checkpointName = 'brown-gpt2'): Promise<Session> {
    const [configText, weights] = await Promise.all([fetchOk(`${base}config.json`).then((r) => r.text()), fetchOk(`${base}model.safetensors`).then((r) => r.arrayBuffer())]);
    const file = readSafetensorsBuffer(weights, 'model.safetensors');
    const { model } = gpt2FromFiles(ctx, configText, file);
    const vocab = new CharVocab();
    if (model.config.vocab_size !== vocab.size) {
      model.dispose();
      throw new ArgumentError(`checkpoint: vocab_size = ${model.config.vocab_size}, expected ${vocab.size} (the examples' character vocabulary)`);
    }
    const probe = await probeLogits(model, vocab);
    return new Session(ctx, model, checkpointName, probe, adapter);
  }

  get config() {
    return this.model.config;
  }

  /** Parameters of the base model and of the adapter. */
  counts(): { base: number; trainable: number } {
    const base = this.model.baseArena.chunks.reduce((a, c) => a + c.size, 0);
    return { base, trainable: this.peft.trainableParameters().trainable };
  }

  /** The text on the vocabulary: the first 90 % to train on, the last 10 % held out. */
  split(text: string): TextSplit {
    const ids = this.vocab.encode(normalizeText(text));
    const cut = Math.floor(ids.length * 0.9);
    return { train: ids.subarray(0, cut), heldOut: ids.subarray(cut) };
  }

  /** The longest sequence the model takes. */
  get maxSeqLen(): number {
    return this.model.config.n_positions;
  }

  // ------------------------------------------------------------------ adapters

  private makeAdapter(s: AdapterSettings, existing: PeftModel<GPT2LMHeadModel> | null): PeftModel<GPT2LMHeadModel> {
    const config = {
      task_type: 'CAUSAL_LM' as const,
      base_model_name_or_path: this.checkpointName,
      r: s.rank,
      lora_alpha: 2 * s.rank,
      target_modules: [...TARGETS[s.targets]],
      fan_in_fan_out: true,
      lora_dropout: 0,
    };
    const name = `lora${++this.adapterCount}`;
    const quiet = { warn: () => {} };
    if (!existing) return getPeftModel(this.model, config, name, { seed: s.seed, ...quiet });
    existing.addAdapter(name, loraConfig(config, quiet), { seed: s.seed, ...quiet });
    return existing;
  }

  /** Replace the adapter with a fresh one (B = 0) with these settings. */
  resetAdapter(s: AdapterSettings): void {
    this.toAdapterMode();
    const old = this.peft.activeAdapter;
    this.makeAdapter(s, this.peft);
    this.peft.deleteAdapter(old);
    this.adapterSettings = s;
    this.adapterChanged(0);
  }

  private adapterChanged(steps: number | null): void {
    this.opt?.dispose();
    this.opt = null;
    this.ft?.dispose();
    this.ft = null;
    this.adapterSteps = steps;
  }

  /** The adapter as a zipped PEFT directory `<folder>/adapter_config.json` + `adapter_model.safetensors`. */
  async adapterZip(folder = `${this.checkpointName}-lora`): Promise<Uint8Array> {
    const { config, weights } = await adapterToFiles(this.peft);
    return zipSync({ [folder]: { [ADAPTER_CONFIG_NAME]: strToU8(config), [ADAPTER_WEIGHTS_NAME]: weights } }, { level: 6 });
  }

  /**
   * Load a zipped PEFT adapter directory (the two files in one folder, or at the top) in place of
   * the current adapter. It is checked against the model in full before anything changes; on an
   * error the current adapter stays.
   */
  loadAdapterZip(zip: Uint8Array, source = 'adapter.zip'): { files: string[]; rank: number; targets: string } {
    let entries: Record<string, Uint8Array>;
    try {
      entries = unzipSync(zip);
    } catch (e) {
      throw new ArgumentError(`${source}: not a zip file (${(e as Error).message})`);
    }
    const names = Object.keys(entries).filter((n) => !n.endsWith('/'));
    const configs = names.filter((n) => n === ADAPTER_CONFIG_NAME || n.endsWith(`/${ADAPTER_CONFIG_NAME}`));
    if (configs.length !== 1) {
      throw new ArgumentError(`${source}: expected one ${ADAPTER_CONFIG_NAME}, found ${configs.length} (entries: ${names.join(', ') || 'none'})`);
    }
    const dir = configs[0]!.slice(0, configs[0]!.length - ADAPTER_CONFIG_NAME.length);
    const weights = entries[`${dir}${ADAPTER_WEIGHTS_NAME}`];
    if (!weights) throw new ArgumentError(`${source}: ${dir}${ADAPTER_CONFIG_NAME} has no ${ADAPTER_WEIGHTS_NAME} beside it (entries: ${names.join(', ')})`);
    // Injection needs the adapter state (wrappers on, θ_pre); a file that does not fit changes nothing, so go back.
    const was = this.state;
    this.toAdapterMode();
    const old = this.peft.activeAdapter;
    const name = `upload${++this.adapterCount}`;
    try {
      loadAdapterFromFiles(this.peft, strFromU8(entries[configs[0]!]!), parseSafetensors(weights, `${dir}${ADAPTER_WEIGHTS_NAME}`), { adapterName: name, warn: () => {} });
    } catch (e) {
      if (was.mode === 'wise') this.setAlpha(was.alpha);
      throw e;
    }
    // Trainable again: the visitor may go on training the uploaded adapter.
    this.peft.setAdapter(name);
    this.peft.deleteAdapter(old);
    const c = this.peft.peftConfig.get(name)!;
    const same = (a: readonly string[], b: unknown) => Array.isArray(b) && [...a].sort().join() === [...b].sort().join();
    const choice = (Object.keys(TARGETS) as TargetChoice[]).find((k) => same(TARGETS[k], c.target_modules));
    this.adapterSettings = { rank: c.r, targets: choice ?? this.adapterSettings.targets, seed: this.adapterSettings.seed };
    this.adapterChanged(null);
    return { files: [configs[0]!, `${dir}${ADAPTER_WEIGHTS_NAME}`], rank: c.r, targets: JSON.stringify(c.target_modules) };
  }

  /** The adapter's tensors (PEFT names) read back as f32. */
  async adapterTensors(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [k, t] of this.peft.adapterStateDict()) out.set(k, { shape: [...t.shape], data: await t.read() });
    return out;
  }

  // ------------------------------------------------------------------ weights: adapter or WiSE-FT

  /** Base weights back to θ_pre exactly (lerp at α = 0) and the adapter on. */
  toAdapterMode(): void {
    if (this.mode === 'adapter') return;
    interpolate(this.model, this.pre, this.ft!, 0);
    this.peft.enableAdapters();
    this.mode = 'adapter';
  }

  /**
   * The base weights as (1 − α)·θ_pre + α·θ_ft with the adapter off. θ_ft is made once per
   * adapter state: merge (W += s·B·A), snapshot, unmerge, then the lerp sets the weights.
   */
  setAlpha(alpha: number): void {
    if (!(alpha >= 0 && alpha <= 1)) throw new ArgumentError(`setAlpha: alpha = ${alpha}, expected 0 <= alpha <= 1`);
    if (!this.ft) {
      this.toAdapterMode();
      this.peft.mergeAdapter();
      this.ft = snapshot(this.model);
      this.peft.unmerge();
    }
    this.peft.disableAdapters();
    interpolate(this.model, this.pre, this.ft, alpha);
    this.mode = 'wise';
    this.alpha = alpha;
  }

  /** The weights the model runs with now. */
  get state(): { mode: 'adapter' | 'wise'; alpha: number } {
    return { mode: this.mode, alpha: this.mode === 'wise' ? this.alpha : 1 };
  }

  // ------------------------------------------------------------------ training

  /**
   * Train the adapter for `s.steps` steps (AdamW, clipped at norm 1, no weight decay), each step
   * one submit. Losses are read back in groups (every 4 steps or 250 ms, whichever comes first),
   * which also keeps the queue from running far ahead of the GPU; the loop yields to the event
   * loop after every step, and `stop()` is checked before each. The held-out loss (every
   * `heldOutEvery` steps) is a forward over fixed windows: a smoother curve than the batches'.
   */
  async train(data: TextSplit, s: TrainSettings, onProgress: (p: TrainProgress) => void, stop: () => boolean): Promise<number> {
    const { batch: B, seqLen: T } = s;
    if (T > this.maxSeqLen) throw new ArgumentError(`train: seqLen = ${T} exceeds the model's n_positions = ${this.maxSeqLen}`);
    if (data.train.length < T + 1) throw new ArgumentError(`train: the text has ${data.train.length} characters to train on, expected at least seqLen + 1 = ${T + 1}`);
    this.toAdapterMode();
    const ctx = this.ctx;
    const params = this.peft.namedTrainable().map(([, t]) => t);
    // lr 1 with the visitor's lr as the step's scale: a changed lr keeps AdamW's moments.
    if (!this.opt) this.opt = new AdamW(ctx, params.map((p) => ({ params: p })), { lr: 1, maxGradNorm: 1, weightDecay: 0 });
    const opt = this.opt;
    this.ft?.dispose();
    this.ft = null;
    const rng = mulberry32(s.seed + (this.adapterSteps ?? 0));
    const ids = new Int32Array(B * T);
    const pending: Tensor[] = [];
    const t0 = performance.now();
    let lastRead = t0;
    let done = 0;
    let scoringMs = 0;
    const every = s.heldOutEvery ?? 0;
    const readBack = async () => {
      const losses: number[] = [];
      for (const l of pending) {
        losses.push((await l.read())[0]!);
        l.dispose();
      }
      pending.length = 0;
      let heldOut: number | undefined;
      if (every > 0 && (done % every === 0 || done === s.steps || stop())) {
        const e0 = performance.now();
        heldOut = (await this.heldOutLoss(data, T)) ?? undefined;
        this.model.train();
        scoringMs += performance.now() - e0;
      }
      lastRead = performance.now();
      const secs = (lastRead - t0 - scoringMs) / 1000;
      onProgress({ step: done, losses, stepsPerSecond: done / secs, tokensPerSecond: (done * B * T) / secs, heldOut });
    };
    if (every > 0) {
      // Where this run starts from: the first point of the held-out curve.
      const e0 = performance.now();
      const heldOut = (await this.heldOutLoss(data, T)) ?? undefined;
      scoringMs += performance.now() - e0;
      onProgress({ step: 0, losses: [], stepsPerSecond: 0, tokensPerSecond: 0, heldOut });
    }
    this.model.train();
    try {
      while (done < s.steps && !stop()) {
        for (let b = 0; b < B; b++) {
          const o = rng.int(data.train.length - T);
          for (let t = 0; t < T; t++) ids[b * T + t] = data.train[o + t]!;
        }
        const loss = ctx.scope(() => {
          const l = this.model.loss({ ids, shape: [B, T] });
          backward(ctx, l);
          opt.step(s.lr, params.map((p) => grad(p)));
          zeroGrad(params);
          return l;
        });
        ctx.flush();
        pending.push(loss);
        done++;
        if (this.adapterSteps !== null) this.adapterSteps++;
        const scoreNow = every > 0 && done % every === 0;
        if (pending.length >= 4 || performance.now() - lastRead > 250 || done === s.steps || scoreNow) await readBack();
        await nextTask();
      }
      if (pending.length) await readBack();
    } finally {
      for (const l of pending) l.dispose();
      this.model.eval();
    }
    return done;
  }

  /** Mean next-character loss on up to 16 evenly spaced windows of the held-out text (nats per character). */
  async heldOutLoss(data: TextSplit, seqLen: number): Promise<number | null> {
    const T = Math.min(seqLen, this.maxSeqLen, data.heldOut.length);
    if (T < 2) return null;
    const count = Math.min(16, Math.floor(data.heldOut.length / T));
    const ids = new Int32Array(count * T);
    for (let i = 0; i < count; i++) {
      const o = count === 1 ? 0 : Math.floor((i * (data.heldOut.length - T)) / (count - 1));
      ids.set(data.heldOut.subarray(o, o + T), i * T);
    }
    this.model.eval();
    const loss = this.ctx.scope(() => noGrad(this.ctx, () => this.model.loss({ ids, shape: [count, T] })));
    const v = (await loss.read())[0]!;
    loss.dispose();
    return v;
  }

  // ------------------------------------------------------------------ sampling

  /** A continuation of `prompt` with the weights as they are now (seeded: the same weights give the same text). */
  async sample(prompt: string, o: { maxNewTokens: number; temperature: number; seed: number }): Promise<string> {
    const ids = Array.from(this.vocab.encode(normalizeText(prompt || PROBE_TEXT))).slice(-this.maxSeqLen);
    const out = await generate(this.model, ids, { maxNewTokens: o.maxNewTokens, temperature: o.temperature, seed: o.seed });
    return this.vocab.decode(out.slice(ids.length));
  }

  /** Run `fn` on the pre-trained model (adapter off, base weights θ_pre); the weights are as they were afterwards. */
  async withBase<T>(fn: () => Promise<T>): Promise<T> {
    const wise = this.mode === 'wise' ? this.alpha : null;
    this.toAdapterMode();
    this.peft.disableAdapters();
    try {
      return await fn();
    } finally {
      this.peft.enableAdapters();
      if (wise !== null) this.setAlpha(wise);
    }
  }

  /** Logits [T, vocab] of PROBE_TEXT with the weights as they are now. */
  probe(): Promise<Float32Array> {
    return probeLogits(this.model, this.vocab);
  }
}

async function probeLogits(model: GPT2LMHeadModel, vocab: CharVocab): Promise<Float32Array> {
  const ctx = model.ctx;
  const ids = Array.from(vocab.encode(PROBE_TEXT)).slice(0, model.config.n_positions);
  model.eval();
  const logits = ctx.scope(() => noGrad(ctx, () => model.forward({ ids, shape: [1, ids.length] })));
  const v = await logits.read();
  logits.dispose();
  return v;
}

async function fetchOk(url: string): Promise<Response> {
  const r = await fetch(url);
  if (!r.ok) throw new ArgumentError(`fetch ${url}: HTTP ${r.status} ${r.statusText}`);
  return r;
}
