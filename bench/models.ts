/**
 * The model-level suite (issue 11): training steps/s of a small GPT-2 — 4 blocks, 256 wide,
 * 4 heads, 128 tokens, batch 8, a byte vocabulary (256) — for full fine-tuning, the first half
 * of the blocks frozen, LoRA r = 8 on every linear layer, and Houlsby bottleneck adapters; and
 * the same model written with tfjs ops on tfjs-webgpu (same Dawn adapter, same process), with
 * frozen weights as untrainable variables, one counterpart per row.
 *
 * A step is the forward, the LM loss (HF's shift), backward, AdamW over the trainable
 * parameters, one submit, and the loss read back; the `loss every 10 steps` rows (ours, LoRA and
 * full) read it every ten steps instead, each step submitted as it is encoded (not tfjs's: its
 * step takes tens of seconds on lavapipe). Before anything is timed, each pair is checked
 * to compute the same thing: tfjs is given our weights (adapters made non-zero first, so their
 * path counts), and the two losses of the first step must agree to 1e-4, those of the second
 * (after one AdamW update of the same parameters) to 1e-3.
 *
 * Timing is interleaved: every round times each configuration, ours and tfjs's, in a rotating
 * order (benchmark.js, one sample or more per round: a step takes seconds), and ratios are
 * taken within a round (the machine's speed drifts by tens of percent between runs, and
 * within one). GPU time (the `gpu ms` column) is robust to that: for ours the sum over one
 * step's dispatches of each one's fastest time in 8 profiled steps (`--profile` prints where it
 * goes, by phase and kernel); for tfjs, `tf.time`'s kernelMs of one step. Dropout is off (all pdrop 0), so both sides run the same
 * arithmetic; AdamW has weight decay 0 (tfjs's Adam has none) and eps 1e-8 on both.
 */
import { backward, grad, zeroGrad } from '../src/autograd/tape.js';
import type { GpuContext } from '../src/gpu/context.js';
import type { Tensor } from '../src/gpu/tensor.js';
import { uniform } from '../src/kernels/random.js';
import { GPT2LMHeadModel, gpt2Config } from '../src/nn/gpt2.js';
import type { HostTensor } from '../src/nn/module.js';
import { addBottleneckAdapters } from '../src/peft/bottleneck.js';
import { freeze, optimizerGroups } from '../src/peft/freeze.js';
import { getPeftModel } from '../src/peft/lora.js';
import { AdamW } from '../src/kernels/optim.js';
import { median, type Row, wallTime } from './lib.js';
import { loadTfjs } from './peers.js';

type Tf = Awaited<ReturnType<typeof loadTfjs>>;
type TfTensor = ReturnType<Tf['tensor']>;

/** The benchmark model: a small GPT-2 with a byte vocabulary, dropout off. */
export const MODEL = { vocab_size: 256, n_positions: 128, n_embd: 256, n_layer: 4, n_head: 4, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0 };
export const BATCH = 8;
export const SEQ = 128;
const LORA = { r: 8, lora_alpha: 16, target_modules: 'all-linear' as const };
const BOTTLENECK = { adapter_type: 'houlsby' as const, reduction_factor: 16 };
const LR = 1e-3;
/** Profiled steps per variant for the GPU-time column (each dispatch's fastest is kept). */
const PROFILE_REPS = 8;

export type Variant = 'full' | 'frozen' | 'lora' | 'bottleneck';
export const VARIANTS: Variant[] = ['full', 'frozen', 'lora', 'bottleneck'];
const TITLE: Record<Variant, string> = {
  full: 'full fine-tuning',
  frozen: `first ${MODEL.n_layer / 2} of ${MODEL.n_layer} blocks frozen`,
  lora: `LoRA r=${LORA.r}, all-linear`,
  bottleneck: `bottleneck adapters (Houlsby, ${MODEL.n_embd / BOTTLENECK.reduction_factor} wide)`,
};

/** A fixed batch of token ids (a seeded LCG over the vocabulary). */
function batchIds(seed: number): Int32Array {
  const ids = new Int32Array(BATCH * SEQ);
  let s = seed >>> 0;
  for (let i = 0; i < ids.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    ids[i] = s % MODEL.vocab_size;
  }
  return ids;
}

export interface Runner {
  /** One step with the loss read back; resolves to the loss. */
  step(): Promise<number>;
  /** GPU ms of one step where the library can time it (tfjs: tf.time's kernelMs), else null. */
  gpuMs?(): Promise<number | null>;
  /** Ten steps, the loss read after the last only. */
  tenSteps(): Promise<number>;
  dispose(): void;
}

export interface OurRunner extends Runner {
  /** Encode one step (not submitted); returns the loss tensor (the caller disposes it). */
  encodeStep(): Tensor;
  /** The same step in three parts, for a profile by phase; call them inside one scope. */
  phases: { forward(): Tensor; backward(loss: Tensor): void; optimizer(): void };
  /** Every parameter (base and adapters) as host tensors, by name, for the tfjs copy. */
  weights(): Promise<Map<string, HostTensor>>;
  trainable: number;
  total: number;
  /** Parameter tensors the optimizer updates (its groups). */
  groups: number;
}

/** Our model for `variant`; adapters' zero-initialised halves made non-zero (`nonZeroAdapters`) for the equality check. */
export function ourRunner(ctx: GpuContext, variant: Variant, o: { nonZeroAdapters?: boolean } = {}): OurRunner {
  const model = GPT2LMHeadModel.create(ctx, gpt2Config(MODEL), { seed: 1 });
  let release = () => {};
  if (variant === 'frozen') freeze(model, { firstBlocks: MODEL.n_layer / 2 });
  if (variant === 'lora') {
    const peft = getPeftModel(model, LORA, 'default', { seed: 2 });
    if (o.nonZeroAdapters) for (const [, w] of peft.wrappers()) uniform(ctx, w.factors('default').B, { seed: 3, lo: -0.02, hi: 0.02 });
    release = () => peft.dispose();
  }
  if (variant === 'bottleneck') {
    const bn = addBottleneckAdapters(model, BOTTLENECK, 'default', { seed: 2 });
    if (o.nonZeroAdapters) for (const [, w] of bn.wrappers()) uniform(ctx, w.up.get('default')!.weight, { seed: 4, lo: -0.05, hi: 0.05 });
    release = () => bn.dispose();
  }
  const groups = optimizerGroups(model);
  const params = groups.map((g) => g.params);
  const opt = new AdamW(ctx, groups, { lr: LR, weightDecay: 0, eps: 1e-8 });
  const batch = { ids: batchIds(7), shape: [BATCH, SEQ] as const };
  // Encoded inside one scope (encodeStep, profileStep): backward reads forward tensors that
  // the tape does not hold (a frozen LayerNorm's output feeding a LoRA layer).
  const phases = {
    forward: () => model.loss(batch),
    backward: (loss: Tensor) => backward(ctx, loss),
    optimizer: () => {
      opt.step(1, params.map((p) => grad(p)));
      zeroGrad(params);
    },
  };
  const encodeStep = () =>
    ctx.scope(() => {
      const loss = phases.forward();
      phases.backward(loss);
      phases.optimizer();
      return loss;
    });
  const step = async () => {
    const loss = encodeStep();
    const v = (await loss.read())[0]!;
    loss.dispose();
    return v;
  };
  const tenSteps = async () => {
    for (let i = 0; i < 9; i++) {
      encodeStep().dispose();
      ctx.flush();
    }
    return step();
  };
  const total = model.numParameters();
  const trainable = model.numParameters({ trainable: true });
  return {
    step,
    tenSteps,
    encodeStep,
    phases,
    weights: () => model.stateDictHost({ withTied: false }),
    trainable,
    total,
    groups: groups.length,
    dispose: () => {
      opt.dispose();
      release();
      model.dispose();
    },
  };
}

/**
 * The same model in tfjs ops, from our weights (`w`: our parameter names; `.base_layer` of
 * wrapped modules stripped). Frozen weights are `tf.variable(…, trainable = false)`; the
 * optimizer's list is exactly the trainable variables.
 */
export function tfjsRunner(tf: Tf, variant: Variant, w: Map<string, HostTensor>): Runner {
  const { n_embd: D, n_layer: L, n_head: H, vocab_size: V } = MODEL;
  const dh = D / H;
  const M = BATCH * SEQ;
  const byName = new Map<string, HostTensor>();
  for (const [k, v] of w) byName.set(k.replace(/\.base_layer/g, ''), v);
  const frozenBlock = (n: string) => {
    if (variant === 'lora' || variant === 'bottleneck') return !/\.(lora_A|lora_B|adapter_down|adapter_up)\./.test(n);
    if (variant === 'frozen') {
      const m = /^transformer\.h\.(\d+)\./.exec(n);
      return m !== null && Number(m[1]) < L / 2;
    }
    return false;
  };
  const vars = new Map<string, ReturnType<Tf['variable']>>();
  for (const [n, h] of byName) vars.set(n, tf.variable(tf.tensor(h.data, [...h.shape]), !frozenBlock(n), `${variant}/${n}`));
  const P = (n: string) => {
    const v = vars.get(n);
    if (!v) throw new Error(`tfjs ${variant}: no weight '${n}' (have ${[...vars.keys()].slice(0, 6).join(', ')}, …)`);
    return v;
  };
  const trainable = [...vars.values()].filter((v) => v.trainable);

  const ids = batchIds(7);
  const idsT = tf.tensor1d(ids, 'int32');
  // HF's shift: position t predicts token t + 1; each sequence's last position counts for nothing.
  const oneHot = new Float32Array(M * V);
  for (let b = 0; b < BATCH; b++) for (let t = 0; t + 1 < SEQ; t++) oneHot[(b * SEQ + t) * V + ids[b * SEQ + t + 1]!] = 1;
  const target = tf.tensor2d(oneHot, [M, V]);
  const count = BATCH * (SEQ - 1);
  const maskData = new Float32Array(SEQ * SEQ);
  for (let i = 0; i < SEQ; i++) for (let j = i + 1; j < SEQ; j++) maskData[i * SEQ + j] = -1e9;
  const causal = tf.tensor2d(maskData, [SEQ, SEQ]);
  const c = Math.sqrt(2 / Math.PI);
  const gelu = (x: TfTensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(c, tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))));
  const layerNorm = (x: TfTensor, n: string) => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), P(`${n}.weight`)), P(`${n}.bias`));
  };
  const scale = LORA.lora_alpha / LORA.r;
  // A Conv1D (x·W + b), with its LoRA delta s·(x·Aᵀ)·Bᵀ in the LoRA row.
  const conv1d = (x: TfTensor, n: string) => {
    const y = tf.add(tf.matMul(x, P(`${n}.weight`)), P(`${n}.bias`));
    if (variant !== 'lora') return y;
    const low = tf.matMul(tf.matMul(x, P(`${n}.lora_A.default.weight`), false, true), P(`${n}.lora_B.default.weight`), false, true);
    return tf.add(y, tf.mul(low, scale));
  };
  // Houlsby: y + up(relu(down(y))) on the output of attention and of the MLP.
  const adapter = (y: TfTensor, n: string) => {
    if (variant !== 'bottleneck') return y;
    const lin = (x: TfTensor, m: string) => tf.add(tf.matMul(x, P(`${n}.${m}.default.weight`), false, true), P(`${n}.${m}.default.bias`));
    return tf.add(y, lin(tf.relu(lin(y, 'adapter_down')), 'adapter_up'));
  };
  const heads = (x: TfTensor) => tf.transpose(tf.reshape(x, [BATCH, SEQ, H, dh]), [0, 2, 1, 3]);
  const loss = () => {
    const wte = P('transformer.wte.weight');
    const wpe = tf.slice(P('transformer.wpe.weight'), [0, 0], [SEQ, D]);
    let x: TfTensor = tf.add(tf.reshape(tf.gather(wte, idsT), [BATCH, SEQ, D]), wpe);
    x = tf.reshape(x, [M, D]);
    for (let i = 0; i < L; i++) {
      const b = `transformer.h.${i}`;
      const qkv = conv1d(layerNorm(x, `${b}.ln_1`), `${b}.attn.c_attn`);
      const [q, k, v] = tf.split(qkv, 3, 1);
      const scores = tf.add(tf.mul(tf.matMul(heads(q!), heads(k!), false, true), 1 / Math.sqrt(dh)), causal);
      const o = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), heads(v!)), [0, 2, 1, 3]), [M, D]);
      x = tf.add(x, adapter(conv1d(o, `${b}.attn.c_proj`), `${b}.attn`));
      const h = conv1d(gelu(conv1d(layerNorm(x, `${b}.ln_2`), `${b}.mlp.c_fc`)), `${b}.mlp.c_proj`);
      x = tf.add(x, adapter(h, `${b}.mlp`));
    }
    const logits = tf.matMul(layerNorm(x, 'transformer.ln_f'), wte, false, true);
    return tf.div(tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(logits)))), count) as ReturnType<Tf['scalar']>;
  };
  const opt = tf.train.adam(LR, 0.9, 0.999, 1e-8);
  const encodeStep = () => opt.minimize(loss, true, trainable)!;
  const step = async () => {
    const cost = encodeStep();
    const v = (await cost.data())[0]!;
    cost.dispose();
    return v;
  };
  const tenSteps = async () => {
    for (let i = 0; i < 9; i++) encodeStep().dispose();
    return step();
  };
  const gpuMs = async () => {
    const info = await tf.time(() => void encodeStep().dispose());
    return typeof info.kernelMs === 'number' ? info.kernelMs : null;
  };
  return {
    step,
    tenSteps,
    gpuMs,
    dispose: () => {
      for (const v of vars.values()) v.dispose();
      for (const t of [idsT, target, causal]) t.dispose();
      opt.dispose();
    },
  };
}

/**
 * Check that ours and tfjs's compute the same thing: the losses of their first two steps (the
 * second after one AdamW update of the same parameters) must agree to 1e-4 and 1e-3. Throws if
 * they do not; returns the losses. Both runners are two steps on afterwards.
 */
export async function checkSame(ours: Runner, peer: Runner, variant: Variant): Promise<{ ours: number[]; tfjs: number[] }> {
  const o = [await ours.step(), await ours.step()];
  const p = [await peer.step(), await peer.step()];
  const d0 = Math.abs(o[0]! - p[0]!);
  const d1 = Math.abs(o[1]! - p[1]!);
  if (!(d0 <= 1e-4) || !(d1 <= 1e-3)) {
    throw new Error(`models ${variant}: ours and tfjs differ: losses ${o.join(', ')} vs ${p.join(', ')} (|Δ| ${d0.toExponential(2)}, ${d1.toExponential(2)})`);
  }
  return { ours: o, tfjs: p };
}

export interface ModelSuiteOptions {
  /** Rounds timing every configuration once. */
  rounds: number;
  /** Seconds each configuration is timed per round (at least one step). */
  roundTime: number;
  /** Rounds of the loss-every-10-steps rows (ours, LoRA and full; 0: none). */
  tensRounds: number;
  /** Print each of our steps' GPU profile (by phase and kernel). */
  profile: boolean;
}

/** FLOPs of one step: the matmuls the variant runs (forward, dx where needed, dW of what trains; adapters' own small products left out). */
export function stepFlops(variant: Variant): number {
  const { n_embd: D, n_layer: L, vocab_size: V, n_head: H } = MODEL;
  const M = BATCH * SEQ;
  const block = 2 * M * D * 12 * D; // c_attn 3D, c_proj D, c_fc 4D, mlp.c_proj 4D: forward of one block's weights
  const attn = 2 * 2 * BATCH * H * SEQ * SEQ * (D / H); // q·kᵀ and p·v, whole T×T (no causal skipping)
  const head = 2 * M * D * V;
  const cAttn0 = 2 * M * D * 3 * D; // block 0's c_attn needs no dx when nothing below it trains
  switch (variant) {
    case 'full':
      return 3 * (L * block + L * attn + head);
    case 'frozen': // dW skipped for the frozen blocks; everything below still needs dx (wte trains)
      return L * block * 3 - (L / 2) * block + 3 * L * attn + 3 * head;
    default: // LoRA / bottleneck: no base dW; the tied head and embeddings are frozen
      return 2 * L * block - cAttn0 + 3 * L * attn + 2 * head;
  }
}

/**
 * The suite: build and check every pair (ours, tfjs given our weights), then `rounds` rounds
 * timing every configuration, ours and tfjs's for each variant, in an order rotated each round;
 * ratios are taken within a round. Then the loss-every-10-steps rounds (ours only: a tfjs step
 * takes tens of seconds on lavapipe).
 */
export async function modelSuite(ctx: GpuContext, rows: Row[], o: ModelSuiteOptions): Promise<void> {
  const tf = await loadTfjs();
  console.error(`  models: GPT-2 ${MODEL.n_layer} blocks × ${MODEL.n_embd}, ${MODEL.n_head} heads, vocab ${MODEL.vocab_size}, batch ${BATCH} × ${SEQ} tokens, dropout off`);
  const ours = new Map<Variant, OurRunner>();
  const peers = new Map<Variant, Runner>();
  const stats = new Map<Variant, { dispatches: number; submits: number; encodeMs: number }>();
  for (const v of VARIANTS) {
    const t0 = performance.now();
    // Adapters made non-zero so the check covers their path; their cost is the same either way.
    const r = ourRunner(ctx, v, { nonZeroAdapters: true });
    const p = tfjsRunner(tf, v, await r.weights());
    ours.set(v, r);
    peers.set(v, p);
    const { ours: lo, tfjs: lp } = await checkSame(r, p, v);
    // Dispatches, submits and JS encode time of one of our steps (pipelines compiled by now).
    const [s0, d0] = [ctx.stats.submits, ctx.stats.dispatches];
    const enc: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t1 = performance.now();
      const loss = r.encodeStep();
      enc.push(performance.now() - t1);
      await loss.read();
      loss.dispose();
    }
    stats.set(v, { submits: (ctx.stats.submits - s0) / 3, dispatches: (ctx.stats.dispatches - d0) / 3, encodeMs: median(enc) });
    console.error(
      `  models ${v}: same losses (ours ${lo.map((x) => x.toFixed(6)).join(', ')}; tfjs ${lp.map((x) => x.toFixed(6)).join(', ')}); ` +
        `${stats.get(v)!.dispatches} dispatches, JS encode ${median(enc).toFixed(1)} ms; built and checked in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
  }
  type Config = { name: string; run: () => Promise<unknown>; per: number };
  const timeRounds = async (configs: Config[], rounds: number) => {
    const ms = new Map<string, number[]>(configs.map((c) => [c.name, []]));
    for (let r = 0; r < rounds; r++) {
      // Rotate the order each round, so no configuration always follows the same one.
      for (let i = 0; i < configs.length; i++) {
        const c = configs[(i + r) % configs.length]!;
        ms.get(c.name)!.push((await wallTime(`models ${c.name} ${r}`, c.run, o.roundTime, 1)) / c.per);
      }
      console.error(`  models round ${r + 1}/${rounds}: ${configs.map((c) => `${c.name} ${(1000 / ms.get(c.name)![r]!).toFixed(2)}`).join(', ')} steps/s`);
    }
    return ms;
  };
  const ratio = (num: number[], den: number[]) => {
    const q = num.map((x, i) => x / den[i]!);
    const s = [...q].sort((a, b) => a - b);
    return `${median(q).toFixed(2)}× (rounds ${s[0]!.toFixed(2)}–${s[s.length - 1]!.toFixed(2)}, ${q.length})`;
  };
  const ms = await timeRounds(
    VARIANTS.flatMap((v) => [
      { name: `ours ${v}`, run: ours.get(v)!.step, per: 1 },
      { name: `tfjs ${v}`, run: peers.get(v)!.step, per: 1 },
    ]),
    o.rounds,
  );
  // GPU time of our steps, robust to a shared machine: the sum of each dispatch's fastest time.
  // Interleaved too (a step of each variant per pass), so their fastest times come from the same minutes.
  const profiles = new Map<Variant, ProfiledDispatch[] | null>();
  for (let i = 0; i < PROFILE_REPS; i++) for (const v of VARIANTS) profiles.set(v, await profileStep(ctx, ours.get(v)!, 1, profiles.get(v) ?? null));
  const gpu = new Map<string, number | null>();
  for (const v of VARIANTS) {
    const p = profiles.get(v)!;
    gpu.set(v, p ? p.reduce((s, d) => s + d.ms, 0) : null);
    if (p && o.profile) printProfile(TITLE[v], p);
    gpu.set(`tfjs ${v}`, (await peers.get(v)!.gpuMs?.()) ?? null);
  }
  const suite = 'model step';
  for (const v of VARIANTS) {
    const [a, b] = [ms.get(`ours ${v}`)!, ms.get(`tfjs ${v}`)!];
    const r = ours.get(v)!;
    const st = stats.get(v)!;
    const pct = ((100 * r.trainable) / r.total).toFixed(r.trainable / r.total < 0.1 ? 2 : 0);
    rows.push({
      suite,
      name: `webgpu-lora, ${TITLE[v]}`,
      work: { flops: stepFlops(v) },
      wallMs: median(a),
      gpuMs: gpu.get(v) ?? null,
      note: `${(1000 / median(a)).toFixed(2)} steps/s (fastest step ${Math.min(...a).toFixed(0)} ms), ${ratio(b, a)} tfjs-webgpu; ${pct} % trainable; ${st.dispatches} dispatches, ${st.submits} submit, JS encode ${st.encodeMs.toFixed(1)} ms`,
    });
    rows.push({ suite, name: `tfjs-webgpu, ${TITLE[v]}`, work: { flops: stepFlops(v) }, wallMs: median(b), gpuMs: gpu.get(`tfjs ${v}`) ?? null, note: `${(1000 / median(b)).toFixed(2)} steps/s (fastest step ${Math.min(...b).toFixed(0)} ms; peer)` });
  }
  for (const v of ['lora', 'frozen', 'bottleneck'] as Variant[]) {
    const [gf, gv] = [gpu.get('full'), gpu.get(v)];
    const g = gf && gv ? `; GPU time ${(gf / gv).toFixed(2)}× less` : '';
    rows.push({ suite, name: `webgpu-lora, ${v} against full fine-tuning`, wallMs: median(ms.get(`ours ${v}`)!), gpuMs: gv ?? null, note: `${ratio(ms.get('ours full')!, ms.get(`ours ${v}`)!)} faster${g}` });
  }
  rows.push({ suite, name: 'tfjs-webgpu, lora against full fine-tuning', wallMs: median(ms.get('tfjs lora')!), gpuMs: null, note: `${ratio(ms.get('tfjs full')!, ms.get('tfjs lora')!)} faster` });
  for (const p of peers.values()) p.dispose();
  if (o.tensRounds > 0) {
    const tens = await timeRounds(
      (['lora', 'full'] as Variant[]).flatMap((v) => [
        { name: `ours ${v}`, run: ours.get(v)!.step, per: 1 },
        { name: `ours ${v} ×10`, run: ours.get(v)!.tenSteps, per: 10 },
      ]),
      o.tensRounds,
    );
    for (const v of ['lora', 'full'] as Variant[]) {
      const [one, ten] = [tens.get(`ours ${v}`)!, tens.get(`ours ${v} ×10`)!];
      rows.push({
        suite: 'model step, loss every 10 steps',
        name: `webgpu-lora, ${TITLE[v]}`,
        work: { flops: stepFlops(v) },
        wallMs: median(ten),
        gpuMs: null,
        note: `${(1000 / median(ten)).toFixed(2)} steps/s, ${ratio(one, ten)} the loss read every step`,
      });
    }
  }
  for (const r of ours.values()) r.dispose();
}

type Phase = 'forward' | 'backward' | 'optimizer';
/** One dispatch of a profiled step: its phase, kernel, workgroups and GPU ms. */
export interface ProfiledDispatch {
  phase: Phase;
  kernel: string;
  workgroups: number[];
  ms: number;
}

/**
 * Where one of our steps' GPU time goes: the forward, backward and optimizer each profiled on
 * their own (ctx.profile: every dispatch in a pass of its own, timestamps around it), `reps`
 * steps, each dispatch's fastest time kept (a shared machine only ever adds time), merged into
 * `from` (the same step's earlier profile) if given. Null without timestamp queries.
 */
export async function profileStep(ctx: GpuContext, r: OurRunner, reps = 5, from: ProfiledDispatch[] | null = null): Promise<ProfiledDispatch[] | null> {
  let best = from;
  for (let i = 0; i < reps; i++) {
    const [f, b, o] = await ctx.scopeAsync(async () => {
      let loss: Tensor | undefined;
      const f = await ctx.profile(() => void (loss = r.phases.forward()), 2048);
      const b = await ctx.profile(() => r.phases.backward(loss!), 2048);
      const o = await ctx.profile(() => r.phases.optimizer(), 2048);
      // The tape holds the loss outside any scope; it is ours to dispose.
      loss!.dispose();
      return [f, b, o];
    });
    if (!f || !b || !o) return null;
    const run = [...f.map((d) => ({ ...d, phase: 'forward' as Phase })), ...b.map((d) => ({ ...d, phase: 'backward' as Phase })), ...o.map((d) => ({ ...d, phase: 'optimizer' as Phase }))];
    const now = run.map((d) => ({ phase: d.phase, kernel: d.kernel, workgroups: d.workgroups, ms: d.ns / 1e6 }));
    best = best ? best.map((d, k) => ({ ...d, ms: Math.min(d.ms, now[k]!.ms) })) : now;
  }
  return best;
}

/** The profile of one step grouped by phase and kernel, longest first, and the longest dispatches. */
function printProfile(title: string, p: ProfiledDispatch[]): void {
  const total = p.reduce((s, d) => s + d.ms, 0);
  const groups = new Map<string, { ms: number; count: number }>();
  for (const d of p) {
    const k = `${d.phase.padEnd(9)} ${d.kernel.replace('matmul.wgsl+matmul_subgroup.wgsl', 'matmul')}`;
    const g = groups.get(k) ?? { ms: 0, count: 0 };
    g.ms += d.ms;
    g.count++;
    groups.set(k, g);
  }
  const phase = (ph: Phase) => p.filter((d) => d.phase === ph);
  const sum = (ds: ProfiledDispatch[]) => ds.reduce((s, d) => s + d.ms, 0);
  console.error(
    `  one step, ${title}: ${p.length} dispatches, GPU ${total.toFixed(1)} ms (forward ${sum(phase('forward')).toFixed(1)} in ${phase('forward').length}, ` +
      `backward ${sum(phase('backward')).toFixed(1)} in ${phase('backward').length}, optimizer ${sum(phase('optimizer')).toFixed(1)} in ${phase('optimizer').length}; ` +
      `each dispatch in a pass of its own, its fastest of ${PROFILE_REPS} steps)`,
  );
  for (const [k, g] of [...groups].sort((a, b) => b[1].ms - a[1].ms)) {
    console.error(`    ${k.padEnd(48)} ${String(g.count).padStart(4)}×  ${g.ms.toFixed(2).padStart(8)} ms  ${((100 * g.ms) / total).toFixed(1).padStart(5)} %`);
  }
  console.error('    the 12 longest dispatches:');
  for (const d of [...p].sort((a, b) => b.ms - a.ms).slice(0, 12)) {
    console.error(`      #${String(p.indexOf(d)).padEnd(4)} ${d.phase.padEnd(9)} ${d.kernel.replace('matmul.wgsl+matmul_subgroup.wgsl', 'matmul').padEnd(36)} ${JSON.stringify(d.workgroups).padEnd(16)} ${d.ms.toFixed(3)} ms`);
  }
}
