/**
 * `npm run demo`: start from the committed pre-trained character-level GPT-2
 * (examples/checkpoints/brown-gpt2, trained on the Brown corpus's non-fiction by `npm run
 * pretrain`) and fine-tune it on fiction in every way the library supports, with one fixed step
 * budget and one set of batches per method:
 *
 * 1. Language modelling on fiction (general, mystery, adventure, romance): full fine-tuning, the
 *    lower half of the blocks frozen, LoRA r = 4 and 8 on attention only and on attention + MLP,
 *    bottleneck adapters; each scored in distribution (held-out fiction documents), out of
 *    distribution (science fiction and humour, which neither stage trains on) and on the
 *    pre-training genres (forgetting), on fixed windows.
 * 2. A new task head: 3-way genre classification of snippets (press / other non-fiction /
 *    fiction) with GPT2ForSequenceClassification on the pre-trained body: linear probing, LoRA +
 *    trained head (modules_to_save), full fine-tuning; accuracy on held-out documents.
 * 3. DPO through LoRA on preference pairs (a fiction prompt; chosen = its real continuation,
 *    rejected = text from another document), the reference policy being the same model with its
 *    adapters disabled.
 * 4. WiSE-FT: for full fine-tuning and for the merged LoRA model, θ(α) = (1 − α)·θ_pre + α·θ_ft
 *    for α = 0, 0.1, …, 1 (one lerp dispatch each), losses at each α.
 *
 * Output (examples/results/ by default): results.md (the tables, also printed on stdout),
 * results.json (every number), wise-ft.svg / .png (the interpolation curves), lora-adapter/ (the
 * trained LoRA adapter as a PEFT adapter directory). Progress and logs go to stderr.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { Command } from 'commander';
import { createContext, loadGPT2, savePeftAdapter, writeFileAtomic } from '../src/node.js';
import type { GpuContext } from '../src/gpu/context.js';
import type { Tensor } from '../src/gpu/tensor.js';
import * as ops from '../src/autograd/ops.js';
import { noGrad } from '../src/autograd/tape.js';
import { generate } from '../src/nn/generate.js';
import type { GPT2ForSequenceClassification, GPT2LMHeadModel } from '../src/nn/gpt2.js';
import { AdamW, schedules } from '../src/kernels/optim.js';
import { addBottleneckAdapters } from '../src/peft/bottleneck.js';
import { freeze, linearProbe } from '../src/peft/freeze.js';
import { interpolationSweep, snapshot } from '../src/peft/interpolate.js';
import { getPeftModel, type PeftModel } from '../src/peft/lora.js';
import {
  CharVocab,
  classificationSet,
  evalWindows,
  FINETUNE_GENRES,
  GENRE_CLASSES,
  lmBatches,
  loadBrown,
  OOD_GENRES,
  preferencePairs,
  PRETRAIN_GENRES,
  splitTokens,
  type ClassificationSet,
  type LmBatch,
  type PreferencePairs,
} from './lib/brown.js';
import { renderLineChart, textRenders } from './lib/plot.js';
import type { ProgressStream } from './lib/progress.js';
import { formatBytes, formatCount, formatPercent, formatSeconds, markdownTable } from './lib/table.js';
import { decayGroups, evalLoss, isMain, lmLoss, nonNeg, nonNegInt, PhaseTimer, posInt, ROOT, type RunInfo, runInfo, tailMean, train, type TrainResult } from './common.js';

// ---------------------------------------------------------------------------------------------
// Options

export interface DemoOptions {
  /** The pre-trained checkpoint folder (config.json + model.safetensors). */
  checkpoint: string;
  /** Where results go; null writes nothing (the tests read the returned object). */
  out: string | null;
  /** Seeds: new parameters (adapters, heads) and the data (batches, snippets, pairs). */
  seed: number;
  dataSeed: number;
  /** Language-model fine-tuning: steps per method, rows × characters per step. */
  steps: number;
  batch: number;
  seq: number;
  /**
   * Peak learning rates (warmup, then cosine to 10 %). Full fine-tuning starts where pre-training
   * ended (its last lr was 3e-4): at 1e-3 the first steps undo more than 40 steps can relearn, and
   * the in-distribution loss rises.
   */
  lrFull: number;
  lrAdapter: number;
  /** Fixed evaluation windows per set (in distribution, out of distribution, pre-training genres), scored `evalBatch` at a time. */
  evalWindows: number;
  evalBatch: number;
  /** Genre classification. */
  clsSteps: number;
  clsBatch: number;
  clsSeq: number;
  clsTrainPerClass: number;
  clsValPerClass: number;
  /** Peak lr of the new classification head (all three methods; the probe trains nothing else). */
  lrHead: number;
  /** DPO. */
  dpoSteps: number;
  /** Pairs per step. */
  dpoBatch: number;
  dpoPromptLen: number;
  dpoContinuationLen: number;
  dpoBeta: number;
  lrDpo: number;
  dpoValPairs: number;
  /** WiSE-FT mixing coefficients. */
  alphas: number[];
  /** Sample generations before / after fine-tuning. */
  samplePrompts: string[];
  sampleChars: number;
  sampleTemperature: number;
  /** Which parts to run (default all): 'lm' (with the WiSE-FT sweeps and samples), 'cls', 'dpo'. */
  parts: ('lm' | 'cls' | 'dpo')[];
}

export const DEMO_DEFAULTS: DemoOptions = {
  checkpoint: join(ROOT, 'examples/checkpoints/brown-gpt2'),
  out: join(ROOT, 'examples/results'),
  seed: 0,
  dataSeed: 42,
  steps: 40,
  batch: 8,
  seq: 64,
  lrFull: 3e-4,
  lrAdapter: 5e-3,
  evalWindows: 24,
  evalBatch: 16,
  clsSteps: 32,
  clsBatch: 8,
  clsSeq: 128,
  clsTrainPerClass: 200,
  clsValPerClass: 40,
  lrHead: 1e-2,
  dpoSteps: 12,
  dpoBatch: 8,
  dpoPromptLen: 32,
  dpoContinuationLen: 32,
  dpoBeta: 0.1,
  lrDpo: 2e-3,
  dpoValPairs: 64,
  alphas: [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1],
  samplePrompts: ['"I don\'t know," she said', 'The committee reported that'],
  sampleChars: 40,
  sampleTemperature: 0.7,
  parts: ['lm', 'cls', 'dpo'],
};

/** A small configuration of the whole pipeline, for a smoke run (`--quick`) and the CI test. */
export const QUICK: Partial<DemoOptions> = {
  steps: 6,
  evalWindows: 8,
  evalBatch: 8,
  clsSteps: 4,
  clsBatch: 8,
  clsTrainPerClass: 16,
  clsValPerClass: 8,
  dpoSteps: 4,
  dpoBatch: 4,
  dpoValPairs: 8,
  alphas: [0, 0.5, 1],
  samplePrompts: ['"I don\'t know," she said'],
  sampleChars: 16,
};

// ---------------------------------------------------------------------------------------------
// Results

export interface EvalLosses {
  /** Held-out documents of the fine-tuning genres. */
  id: number;
  /** Science fiction and humour (neither stage trains on them). */
  ood: number;
  /** Held-out documents of the pre-training genres. */
  pt: number;
}

export interface Cost {
  trainable: number;
  total: number;
  percent: number;
  /** AdamW's m and v for the trainable parameters: 8 bytes each. */
  optimizerStateBytes: number;
  /** GPU memory the optimizer allocated (measured: state, a gradient arena, the norm). */
  optimizerAllocatedBytes: number;
  steps: number;
  trainSeconds: number;
  stepsPerSec: number;
}

/** A training run's cost and the mean training loss of its first and last 10 steps. */
function trainingCost(counts: { trainable: number; total: number }, allocatedBytes: number, r: TrainResult): Cost & { trainLossStart: number; trainLossEnd: number } {
  return {
    trainable: counts.trainable,
    total: counts.total,
    percent: (100 * counts.trainable) / counts.total,
    optimizerStateBytes: 8 * counts.trainable,
    optimizerAllocatedBytes: allocatedBytes,
    steps: r.losses.length,
    trainSeconds: r.seconds,
    stepsPerSec: r.stepsPerSec,
    trainLossStart: r.losses.slice(0, 10).reduce((a, b) => a + b, 0) / Math.min(10, r.losses.length),
    trainLossEnd: tailMean(r.losses, 10),
  };
}

export interface LmMethodResult extends Cost {
  key: string;
  name: string;
  lr: number;
  /** Mean training loss of the first and last 10 steps. */
  trainLossStart: number;
  trainLossEnd: number;
  eval: EvalLosses;
  losses: number[];
}

export interface ClsMethodResult extends Cost {
  key: string;
  name: string;
  /** Peak lr of the body (the probe's body is frozen) and of the new head. */
  lr: number;
  headLr: number;
  trainLossStart: number;
  trainLossEnd: number;
  accuracy: number;
  validationLoss: number;
}

/** DPO's numbers on one set of pairs. */
export interface PreferenceMetrics {
  pairs: number;
  /** Pairs whose implicit reward difference β·[(log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)] is > 0. */
  rewardAccuracy: number;
  /** Mean of that reward difference. */
  rewardMargin: number;
  /** Pairs where the model itself gives the chosen continuation the higher log-likelihood. */
  likelihoodAccuracy: number;
  /** Mean log π(chosen) − log π(rejected), nats per continuation. */
  logLikelihoodMargin: number;
}

export interface DpoMetrics {
  /** Pairs from held-out documents. */
  heldOut: PreferenceMetrics;
  /** The first training pairs (those of the first steps): what DPO optimised. */
  train: PreferenceMetrics;
  lm: EvalLosses;
}

export interface DpoResult extends Cost {
  beta: number;
  lr: number;
  rank: number;
  before: DpoMetrics;
  after: DpoMetrics;
  losses: number[];
}

export interface SweepPoint extends EvalLosses {
  alpha: number;
}

export interface DemoResult {
  run: RunInfo & { loadAverageEnd: number[] };
  options: DemoOptions;
  checkpoint: { dir: string; parameters: number; config: Record<string, unknown>; pretrain?: unknown };
  data: { idTrainCharacters: number; evalCharacters: EvalLosses };
  base: EvalLosses;
  lm: LmMethodResult[];
  classification: ClsMethodResult[];
  dpo: DpoResult | null;
  wiseft: { method: string; points: SweepPoint[] }[];
  samples: { prompt: string; model: string; text: string }[];
  adapterDir: string | null;
  /** Wall and CPU seconds per phase (first use of each kernel compiles its pipeline inside the phase that needs it). */
  phases: { name: string; seconds: number; cpuSeconds: number }[];
  totalSeconds: number;
  totalCpuSeconds: number;
  /** Compute pipelines the run created (each compiled once). */
  pipelines: number;
}

/** What the demo returns besides the JSON: the saved adapter's tensors as they were in memory. */
export interface DemoReturn {
  result: DemoResult;
  adapterTensors: Map<string, Float32Array>;
  markdown: string;
}

// ---------------------------------------------------------------------------------------------
// The pieces

const ATTN = ['c_attn', 'attn.c_proj'];
/** The phases "where the time goes" reports. */
const PHASE = {
  data: 'data (corpus, windows, snippets, pairs)',
  load: 'loading the checkpoint (once per method)',
  lm: 'training: language model, 7 methods',
  cls: 'training: classification, 3 methods',
  dpo: 'training: DPO',
  eval: 'evaluation: language model (3 sets of fixed windows)',
  evalCls: 'evaluation: classification (held-out snippets)',
  evalDpo: 'evaluation: DPO (preference pairs)',
  sweep: 'WiSE-FT sweeps',
  samples: 'sample generation',
  write: 'writing results (adapter, plot, tables)',
};
const ATTN_MLP = ['c_attn', 'attn.c_proj', 'c_fc', 'mlp.c_proj'];

/** Fine-tuning schedule: 10 % warmup, cosine to 10 % of the peak. */
function fineTuneSchedule(steps: number): (t: number) => number {
  return schedules.cosine(steps, Math.max(1, Math.round(steps / 10)), 0.1);
}

/** Live GPU bytes taken by `make()` (what an optimizer allocates). */
function allocatedBy<T>(ctx: GpuContext, make: () => T): { value: T; bytes: number } {
  const before = ctx.memory().liveBytes;
  const value = make();
  return { value, bytes: ctx.memory().liveBytes - before };
}

/** The losses on the three evaluation sets. */
async function evalAll(ctx: GpuContext, model: GPT2LMHeadModel, sets: { id: LmBatch; ood: LmBatch; pt: LmBatch }, batch: number): Promise<EvalLosses> {
  return { id: await evalLoss(ctx, model, sets.id, batch), ood: await evalLoss(ctx, model, sets.ood, batch), pt: await evalLoss(ctx, model, sets.pt, batch) };
}

/** Accuracy and mean cross-entropy of a classifier on a labelled set, `batch` snippets at a time. */
async function classify(ctx: GpuContext, model: GPT2ForSequenceClassification, set: ClassificationSet, batch: number): Promise<{ accuracy: number; loss: number }> {
  const was = model.training;
  model.eval();
  try {
    const parts: { start: number; rows: number; logits: Tensor; loss: Tensor }[] = [];
    for (let start = 0; start < set.count; start += batch) {
      const rows = Math.min(batch, set.count - start);
      const input = { ids: set.ids.subarray(start * set.seqLen, (start + rows) * set.seqLen), shape: [rows, set.seqLen] as const };
      const labels = set.labels.subarray(start, start + rows);
      const [logits, loss] = ctx.scope(() =>
        noGrad(ctx, () => {
          const lg = model.forward(input);
          const target = ctx.tensor(Float32Array.from(labels), [rows], 'f32', 'cls.labels');
          return [lg, ops.crossEntropy(ctx, lg, { labels: target }, { ownTarget: true })];
        }),
      );
      parts.push({ start, rows, logits: logits!, loss: loss! });
    }
    const logits = await Promise.all(parts.map((p) => p.logits.read()));
    const losses = await Promise.all(parts.map((p) => p.loss.read()));
    parts.forEach((p) => (p.logits.dispose(), p.loss.dispose()));
    const C = model.numLabels;
    let correct = 0;
    let lossSum = 0;
    parts.forEach((p, k) => {
      lossSum += p.rows * losses[k]![0]!;
      for (let r = 0; r < p.rows; r++) {
        let best = 0;
        for (let c = 1; c < C; c++) if (logits[k]![r * C + c]! > logits[k]![r * C + best]!) best = c;
        if (best === set.labels[p.start + r]) correct++;
      }
    });
    return { accuracy: correct / set.count, loss: lossSum / set.count };
  } finally {
    model.train(was);
  }
}

/**
 * DPO's tensors for a batch of pairs: rows 0…B−1 are prompt + chosen, rows B…2B−1 prompt +
 * rejected, and a constant one-hot mask [2B, T, V] that picks log p(next character) at the
 * continuation's positions, so Σ mask ⊙ log_softmax(logits) per row is the continuation's
 * log-likelihood.
 */
function pairBatch(pairs: PreferencePairs, start: number, B: number, V: number): { ids: Int32Array; mask: Float32Array; T: number } {
  const P = pairs.promptLen;
  const C = pairs.continuationLen;
  const T = P + C;
  const ids = new Int32Array(2 * B * T);
  const mask = new Float32Array(2 * B * T * V);
  for (let b = 0; b < B; b++) {
    const i = (start + b) % pairs.count;
    for (const [row, cont] of [[b, pairs.chosen], [B + b, pairs.rejected]] as const) {
      ids.set(pairs.prompt.subarray(i * P, (i + 1) * P), row * T);
      ids.set(cont.subarray(i * C, (i + 1) * C), row * T + P);
      // Position t predicts ids[t + 1]: the continuation is predicted from positions P−1 … T−2.
      for (let t = P - 1; t < T - 1; t++) mask[(row * T + t) * V + ids[row * T + t + 1]!] = 1;
    }
  }
  return { ids, mask, T };
}

/** The first `n` pairs of a set. */
function headPairs(p: PreferencePairs, n: number): PreferencePairs {
  const { promptLen: P, continuationLen: C } = p;
  return { ...p, count: n, prompt: p.prompt.subarray(0, n * P), chosen: p.chosen.subarray(0, n * C), rejected: p.rejected.subarray(0, n * C), sources: p.sources.slice(0, n) };
}

/** Σ over each row of mask ⊙ log_softmax(logits): the continuation log-likelihoods, [rows, 1]. */
function sequenceLogProbs(ctx: GpuContext, model: GPT2LMHeadModel, ids: Int32Array, rows: number, T: number, mask: Tensor, ones: Tensor): Tensor {
  const V = model.config.vocab_size;
  const lp = ops.logSoftmax(ctx, model.forward({ ids, shape: [rows, T] }));
  const picked = ops.reshape(ctx, ops.mul(ctx, lp, mask), [rows, T * V]);
  return ops.matmul(ctx, picked, ones);
}

/**
 * DPO metrics on a set of pairs: policy = the model as it is, reference = adapters disabled.
 * Without `reference` (before training, when the policy is the reference) the reference pass is
 * skipped and the rewards are 0 by definition.
 */
async function dpoMetrics(ctx: GpuContext, peft: PeftModel<GPT2LMHeadModel>, pairs: PreferencePairs, batch: number, beta: number, reference: boolean): Promise<PreferenceMetrics> {
  const model = peft.model;
  const V = model.config.vocab_size;
  const was = model.training;
  model.eval();
  try {
    const parts: { rows: number; pol: Tensor; ref: Tensor }[] = [];
    for (let start = 0; start < pairs.count; start += batch) {
      const B = Math.min(batch, pairs.count - start);
      const { ids, mask, T } = pairBatch(pairs, start, B, V);
      const [pol, ref] = ctx.scope(() =>
        noGrad(ctx, () => {
          const m = ctx.tensor(mask, [2 * B, T, V], 'f32', 'dpo.mask');
          const ones = ctx.tensor(new Float32Array(T * V).fill(1), [T * V, 1], 'f32', 'dpo.ones');
          const p = sequenceLogProbs(ctx, model, ids, 2 * B, T, m, ones);
          return [p, reference ? peft.withAdaptersDisabled(() => sequenceLogProbs(ctx, model, ids, 2 * B, T, m, ones)) : p];
        }),
      );
      parts.push({ rows: B, pol: pol!, ref: ref! });
    }
    const pol = await Promise.all(parts.map((p) => p.pol.read()));
    const ref = reference ? await Promise.all(parts.map((p) => p.ref.read())) : pol;
    parts.forEach((p) => (p.pol.dispose(), p.ref.dispose()));
    let rewardWins = 0;
    let margin = 0;
    let likeWins = 0;
    let likeMargin = 0;
    parts.forEach((p, k) => {
      const B = p.rows;
      for (let b = 0; b < B; b++) {
        const pc = pol[k]![b]!;
        const pr = pol[k]![B + b]!;
        const z = beta * (pc - ref[k]![b]! - (pr - ref[k]![B + b]!));
        if (z > 0) rewardWins++;
        margin += z;
        if (pc > pr) likeWins++;
        likeMargin += pc - pr;
      }
    });
    const n = pairs.count;
    return { pairs: n, rewardAccuracy: rewardWins / n, rewardMargin: margin / n, likelihoodAccuracy: likeWins / n, logLikelihoodMargin: likeMargin / n };
  } finally {
    model.train(was);
  }
}

/** Read every tensor of a map back (for the adapter round trip). */
async function readAll(m: Map<string, Tensor>): Promise<Map<string, Float32Array>> {
  const keys = [...m.keys()];
  const data = await Promise.all(keys.map((k) => m.get(k)!.read()));
  return new Map(keys.map((k, i) => [k, data[i]!]));
}

// ---------------------------------------------------------------------------------------------
// The demo

export interface DemoIo {
  ctx?: GpuContext;
  /** Progress bars (default stderr); null for none. */
  stream?: ProgressStream | null;
  /** Log lines (default stderr). */
  log?: (line: string) => void;
}

export async function runDemo(o: DemoOptions, io: DemoIo = {}): Promise<DemoReturn> {
  const log = io.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  if (!existsSync(join(o.checkpoint, 'model.safetensors'))) {
    throw new Error(`demo: no checkpoint in ${o.checkpoint} (expected config.json and model.safetensors); run \`npm run pretrain\` to make one`);
  }
  const timer = new PhaseTimer();
  const ctx = io.ctx ?? (await createContext());
  const info = runInfo(ctx);
  log(`demo: ${info.adapter}; webgpu-lora ${info.version}; ${info.cpus} CPUs, load average ${info.loadAverage.join(' ')}`);
  log(`demo: seeds: parameters ${o.seed}, data ${o.dataSeed}; ${o.steps} steps × ${o.batch} × ${o.seq} characters per fine-tuning method`);
  const stream = io.stream;
  try {
    // ---- data
    const vocab = new CharVocab();
    const { sets, idTrain, cls, pairs } = await timer.time(PHASE.data, async () => {
      const corpus = loadBrown();
      const idTrain = splitTokens(corpus, vocab, { genres: FINETUNE_GENRES, split: 'train' });
      const tok = {
        id: splitTokens(corpus, vocab, { genres: FINETUNE_GENRES, split: 'validation' }),
        ood: splitTokens(corpus, vocab, { genres: OOD_GENRES, split: 'all' }),
        pt: splitTokens(corpus, vocab, { genres: PRETRAIN_GENRES, split: 'validation' }),
      };
      const sets = {
        id: evalWindows(tok.id, { seqLen: o.seq, count: o.evalWindows }),
        ood: evalWindows(tok.ood, { seqLen: o.seq, count: o.evalWindows }),
        pt: evalWindows(tok.pt, { seqLen: o.seq, count: o.evalWindows }),
      };
      const cls = {
        train: classificationSet(corpus, vocab, { split: 'train', seqLen: o.clsSeq, perClass: o.clsTrainPerClass, seed: o.dataSeed + 1 }),
        val: classificationSet(corpus, vocab, { split: 'validation', seqLen: o.clsSeq, perClass: o.clsValPerClass, seed: o.dataSeed + 2 }),
      };
      const pairs = {
        train: preferencePairs(corpus, vocab, { split: 'train', promptLen: o.dpoPromptLen, continuationLen: o.dpoContinuationLen, count: o.dpoSteps * o.dpoBatch, seed: o.dataSeed + 3 }),
        val: preferencePairs(corpus, vocab, { split: 'validation', promptLen: o.dpoPromptLen, continuationLen: o.dpoContinuationLen, count: o.dpoValPairs, seed: o.dataSeed + 4 }),
      };
      return { sets, idTrain, cls, pairs };
    });
    const batchesFor = () => lmBatches(idTrain, { batch: o.batch, seqLen: o.seq, seed: o.dataSeed });
    const load = () => timer.time(PHASE.load, async () => (await loadGPT2(ctx, o.checkpoint)).model);

    // ---- the pre-trained model
    const base = await load();
    const checkpointInfo = { dir: o.checkpoint, parameters: base.numParameters(), config: { ...base.config } as Record<string, unknown> };
    const baseEval = await timer.time(PHASE.eval, () => evalAll(ctx, base, sets, o.evalBatch));
    log(`demo: pre-trained: ${formatCount(checkpointInfo.parameters)} parameters; loss in distribution ${baseEval.id.toFixed(4)}, out of distribution ${baseEval.ood.toFixed(4)}, pre-training genres ${baseEval.pt.toFixed(4)}`);
    const samples: DemoResult['samples'] = [];
    const sample = (model: GPT2LMHeadModel, name: string) =>
      timer.time(PHASE.samples, async () => {
        for (const [i, prompt] of o.samplePrompts.entries()) {
          const ids = await generate(model, [...vocab.encode(prompt)], { maxNewTokens: o.sampleChars, temperature: o.sampleTemperature, seed: o.seed + i });
          samples.push({ prompt, model: name, text: vocab.decode(ids) });
        }
      });
    await sample(base, 'pre-trained');
    base.dispose();

    // ---- language-model fine-tuning
    const lm: LmMethodResult[] = [];
    const wiseft: DemoResult['wiseft'] = [];
    let adapterTensors = new Map<string, Float32Array>();
    let adapterDir: string | null = null;
    const methods: { key: string; name: string; kind: 'full' | 'frozen' | 'lora' | 'bottleneck'; r?: number; targets?: string[] }[] = [
      { key: 'full', name: 'full fine-tuning', kind: 'full' },
      { key: 'frozen-half', name: 'lower half of the blocks frozen', kind: 'frozen' },
      { key: 'lora-attn-r4', name: 'LoRA r=4, attention', kind: 'lora', r: 4, targets: ATTN },
      { key: 'lora-attn-r8', name: 'LoRA r=8, attention', kind: 'lora', r: 8, targets: ATTN },
      { key: 'lora-all-r4', name: 'LoRA r=4, attention + MLP', kind: 'lora', r: 4, targets: ATTN_MLP },
      { key: 'lora-all-r8', name: 'LoRA r=8, attention + MLP', kind: 'lora', r: 8, targets: ATTN_MLP },
      { key: 'bottleneck', name: 'bottleneck adapters (Houlsby, 8 wide)', kind: 'bottleneck' },
    ];
    for (const m of o.parts.includes('lm') ? methods : []) {
      const model = await load();
      const pre = m.kind === 'full' || m.key === 'lora-all-r8' ? snapshot(model) : null;
      let peft: PeftModel<GPT2LMHeadModel> | null = null;
      let counts: { trainable: number; total: number };
      let bottleneck: { dispose(): void } | null = null;
      const lr = m.kind === 'full' || m.kind === 'frozen' ? o.lrFull : o.lrAdapter;
      if (m.kind === 'frozen') freeze(model, { firstBlocks: Math.floor(model.config.n_layer / 2) });
      if (m.kind === 'lora') {
        peft = getPeftModel(model, { task_type: 'CAUSAL_LM', r: m.r!, lora_alpha: 2 * m.r!, target_modules: m.targets! }, 'default', { seed: o.seed, warn: () => {} });
        counts = peft.trainableParameters();
      } else if (m.kind === 'bottleneck') {
        const b = addBottleneckAdapters(model, { adapter_type: 'houlsby', reduction_factor: 16 }, 'default', { seed: o.seed });
        bottleneck = b;
        counts = b.trainableParameters();
      } else {
        counts = { trainable: model.numParameters({ trainable: true }), total: model.numParameters() };
      }
      // Fine-tuning uses no weight decay (Hugging Face Trainer's default).
      const groups = decayGroups(model, 0);
      const params = groups.map((g) => g.params);
      const { value: opt, bytes } = allocatedBy(ctx, () => new AdamW(ctx, groups, { lr, maxGradNorm: 1, weightDecay: 0 }));
      const batches = batchesFor();
      const r = await timer.time(PHASE.lm, () =>
        train({ ctx, label: m.name, steps: o.steps, opt, params, schedule: fineTuneSchedule(o.steps), lossAt: () => lmLoss(ctx, model, batches.next().value!), stream }),
      );
      opt.dispose();
      const ev = await timer.time(PHASE.eval, () => evalAll(ctx, model, sets, o.evalBatch));
      lm.push({
        key: m.key,
        name: m.name,
        lr,
        ...trainingCost(counts, bytes, r),
        eval: ev,
        losses: r.losses,
      });
      log(`demo: ${m.name}: loss in distribution ${ev.id.toFixed(4)}, out of distribution ${ev.ood.toFixed(4)}, pre-training genres ${ev.pt.toFixed(4)}; ${r.stepsPerSec.toFixed(2)} steps/s`);
      const sweepEval = async () => evalAll(ctx, model, sets, o.evalBatch);
      if (m.kind === 'full') {
        await sample(model, m.name);
        const ft = snapshot(model);
        const points = await timer.time(PHASE.sweep, () => interpolationSweep(model, pre!, ft, o.alphas, sweepEval));
        wiseft.push({ method: m.name, points: points.map((p) => ({ alpha: p.alpha, ...p.value })) });
        ft.dispose();
      }
      if (m.key === 'lora-all-r8') {
        await sample(model, m.name);
        adapterTensors = await readAll(peft!.adapterStateDict());
        if (o.out) adapterDir = await timer.time(PHASE.write, () => savePeftAdapter(peft!, join(o.out!, 'lora-adapter')));
        peft!.mergeAndUnload();
        const ft = snapshot(model);
        const points = await timer.time(PHASE.sweep, () => interpolationSweep(model, pre!, ft, o.alphas, sweepEval));
        wiseft.push({ method: `${m.name} (merged)`, points: points.map((p) => ({ alpha: p.alpha, ...p.value })) });
        ft.dispose();
      }
      pre?.dispose();
      peft?.dispose();
      bottleneck?.dispose();
      model.dispose();
    }

    // ---- a new task head: genre classification
    const classification: ClsMethodResult[] = [];
    const loadCls = () => timer.time(PHASE.load, async () => (await loadGPT2(ctx, o.checkpoint, { task: 'seq_cls', numLabels: GENRE_CLASSES.length, padTokenId: vocab.pad, seed: o.seed })).model);
    for (const m of !o.parts.includes('cls') ? [] : [
      { key: 'probe', name: 'linear probe (body frozen, new head)', lr: o.lrHead },
      { key: 'lora-head', name: 'LoRA r=8 (attention + MLP) + trained head', lr: o.lrAdapter },
      { key: 'full', name: 'full fine-tuning', lr: o.lrFull },
    ]) {
      const model = await loadCls();
      let peft: PeftModel<GPT2ForSequenceClassification> | null = null;
      if (m.key === 'probe') linearProbe(model, ['score']);
      if (m.key === 'lora-head') peft = getPeftModel(model, { task_type: 'SEQ_CLS', r: 8, lora_alpha: 16, target_modules: ATTN_MLP, modules_to_save: ['score'] }, 'default', { seed: o.seed, warn: () => {} });
      const counts = peft ? peft.trainableParameters() : { trainable: model.numParameters({ trainable: true }), total: model.numParameters() };
      const groups = decayGroups(model, 0);
      // The new head starts from N(0, 0.02²): it gets its own (higher) lr in every method, the body the method's.
      const head = new Set(model.namedTrainable().filter(([n]) => n.startsWith('score.')).map(([, t]) => t));
      for (const g of groups) if (head.has(g.params)) g.lr = o.lrHead;
      const params = groups.map((g) => g.params);
      const { value: opt, bytes } = allocatedBy(ctx, () => new AdamW(ctx, groups, { lr: m.lr, maxGradNorm: 1, weightDecay: 0 }));
      const B = o.clsBatch;
      const T = cls.train.seqLen;
      const r = await timer.time(PHASE.cls, () =>
        train({
          ctx,
          label: `classification: ${m.name}`,
          steps: o.clsSteps,
          opt,
          params,
          schedule: fineTuneSchedule(o.clsSteps),
          lossAt: (s) => {
            // Consecutive slices of the shuffled training snippets, wrapping around.
            const ids = new Int32Array(B * T);
            const labels = new Int32Array(B);
            for (let b = 0; b < B; b++) {
              const i = ((s - 1) * B + b) % cls.train.count;
              ids.set(cls.train.ids.subarray(i * T, (i + 1) * T), b * T);
              labels[b] = cls.train.labels[i]!;
            }
            return model.loss({ ids, shape: [B, T] }, labels);
          },
          stream,
        }),
      );
      opt.dispose();
      const acc = await timer.time(PHASE.evalCls, () => classify(ctx, model, cls.val, 48));
      classification.push({
        key: m.key,
        name: m.name,
        lr: m.lr,
        headLr: o.lrHead,
        ...trainingCost(counts, bytes, r),
        accuracy: acc.accuracy,
        validationLoss: acc.loss,
      });
      log(`demo: classification, ${m.name}: accuracy ${(100 * acc.accuracy).toFixed(1)}% on ${cls.val.count} held-out snippets`);
      peft?.dispose();
      model.dispose();
    }

    // ---- DPO through LoRA
    const dpo = !o.parts.includes('dpo') ? null : await (async (): Promise<DpoResult> => {
      const model = await load();
      const rank = 8;
      const peft = getPeftModel(model, { task_type: 'CAUSAL_LM', r: rank, lora_alpha: 2 * rank, target_modules: ATTN_MLP }, 'default', { seed: o.seed, warn: () => {} });
      const counts = peft.trainableParameters();
      const trainSeen = headPairs(pairs.train, Math.min(Math.ceil(o.dpoValPairs / 2), pairs.train.count));
      const prefs = (reference: boolean) =>
        timer.time(PHASE.evalDpo, async () => ({
          heldOut: await dpoMetrics(ctx, peft, pairs.val, 16, o.dpoBeta, reference),
          train: await dpoMetrics(ctx, peft, trainSeen, 16, o.dpoBeta, reference),
        }));
      const before: DpoMetrics = { ...(await prefs(false)), lm: baseEval };
      const groups = decayGroups(model, 0);
      const params = groups.map((g) => g.params);
      const { value: opt, bytes } = allocatedBy(ctx, () => new AdamW(ctx, groups, { lr: o.lrDpo, maxGradNorm: 1, weightDecay: 0 }));
      const B = o.dpoBatch;
      const V = model.config.vocab_size;
      const T = o.dpoPromptLen + o.dpoContinuationLen;
      const ones = ctx.keep(ctx.tensor(new Float32Array(T * V).fill(1), [T * V, 1], 'f32', 'dpo.ones'));
      const zeros = ctx.keep(ctx.tensor(new Float32Array(B), [B, 1], 'f32', 'dpo.zero'));
      const r = await timer.time(PHASE.dpo, () =>
        train({
          ctx,
          label: 'DPO (LoRA r=8)',
          steps: o.dpoSteps,
          opt,
          params,
          schedule: fineTuneSchedule(o.dpoSteps),
          lossAt: (s) => {
            const { ids, mask } = pairBatch(pairs.train, (s - 1) * B, B, V);
            const m = ctx.tensor(mask, [2 * B, T, V], 'f32', 'dpo.mask');
            // The reference policy: the same weights with the adapters switched off, no gradient.
            const ref = noGrad(ctx, () => peft.withAdaptersDisabled(() => sequenceLogProbs(ctx, model, ids, 2 * B, T, m, ones)));
            const d = ops.sub(ctx, sequenceLogProbs(ctx, model, ids, 2 * B, T, m, ones), ref);
            const z = ops.scale(ctx, ops.sub(ctx, ops.slice(ctx, d, 0, 0, B), ops.slice(ctx, d, 0, B, B)), o.dpoBeta);
            // −log σ(z) is the cross-entropy of the two logits [z, 0] against class 0.
            const labels = ctx.tensor(new Float32Array(B), [B], 'f32', 'dpo.labels');
            return ops.crossEntropy(ctx, ops.concat(ctx, [z, zeros], 1), { labels }, { ownTarget: true });
          },
          stream,
        }),
      );
      opt.dispose();
      ones.dispose();
      zeros.dispose();
      const after: DpoMetrics = { ...(await prefs(true)), lm: await timer.time(PHASE.eval, () => evalAll(ctx, model, sets, o.evalBatch)) };
      log(
        `demo: DPO: reward accuracy ${pct(after.train.rewardAccuracy)} on training pairs, ${pct(after.heldOut.rewardAccuracy)} on held-out pairs; ` +
          `likelihood prefers chosen (held-out) ${pct(before.heldOut.likelihoodAccuracy)} -> ${pct(after.heldOut.likelihoodAccuracy)}`,
      );
      peft.dispose();
      model.dispose();
      return {
        beta: o.dpoBeta,
        lr: o.lrDpo,
        rank,
        trainable: counts.trainable,
        total: counts.total,
        percent: counts.percent,
        optimizerStateBytes: counts.optimizerStateBytes,
        optimizerAllocatedBytes: bytes,
        steps: o.dpoSteps,
        trainSeconds: r.seconds,
        stepsPerSec: r.stepsPerSec,
        before,
        after,
        losses: r.losses,
      };
    })();

    // ---- output
    // The checkpoint's own record (steps, losses, time), when it has one.
    const recordPath = join(o.checkpoint, 'pretrain.json');
    const pretrainRecord: unknown = existsSync(recordPath) ? JSON.parse(readFileSync(recordPath, 'utf8')) : undefined;
    // Paths inside the repository are recorded relative to it, so the committed JSON names no machine.
    const rel = (p: string | null) => (p && !relative(ROOT, p).startsWith('..') ? relative(ROOT, p) : p);
    const result: DemoResult = {
      run: { ...info, loadAverageEnd: runInfo(ctx).loadAverage },
      options: { ...o, checkpoint: rel(o.checkpoint)!, out: rel(o.out) },
      checkpoint: { ...checkpointInfo, dir: rel(checkpointInfo.dir)!, pretrain: pretrainRecord },
      data: { idTrainCharacters: idTrain.length, evalCharacters: { id: o.evalWindows * o.seq, ood: o.evalWindows * o.seq, pt: o.evalWindows * o.seq } },
      base: baseEval,
      lm,
      classification,
      dpo,
      wiseft,
      samples,
      adapterDir: rel(adapterDir),
      phases: [],
      totalSeconds: 0,
      totalCpuSeconds: 0,
      pipelines: 0,
    };
    const chart = !wiseft.length ? null : await timer.time(PHASE.write, async () => {
      const rows = wiseft.flatMap((s) =>
        s.points.flatMap((p) => [
          { series: s.method, panel: 'in distribution (held-out fiction)', x: p.alpha, y: p.id },
          { series: s.method, panel: 'out of distribution (sci-fi, humour)', x: p.alpha, y: p.ood },
          { series: s.method, panel: 'pre-training genres (forgetting)', x: p.alpha, y: p.pt },
        ]),
      );
      return renderLineChart({
        rows,
        title: 'WiSE-FT: interpolating pre-trained and fine-tuned weights',
        subtitle: `θ(α) = (1 − α)·θ_pre + α·θ_ft; loss in nats per character on fixed held-out windows; ${info.adapter}`,
        xTitle: 'α (0 = pre-trained, 1 = fine-tuned)',
        yTitle: 'loss (nats/char)',
        xTicks: o.alphas,
        width: 300,
        height: 220,
      });
    });
    result.phases = timer.phases;
    result.totalSeconds = timer.total;
    result.totalCpuSeconds = timer.cpuTotal;
    result.pipelines = ctx.stats.pipelines;
    const markdown = renderMarkdown(result);
    if (o.out) {
      await mkdir(o.out, { recursive: true });
      if (chart) {
        await writeFileAtomic(join(o.out, 'wise-ft.svg'), chart.svg);
        await writeFileAtomic(join(o.out, 'wise-ft.png'), chart.png);
      }
      await writeFileAtomic(join(o.out, 'results.md'), markdown);
      await writeFileAtomic(join(o.out, 'results.json'), `${JSON.stringify(result, null, 2)}\n`);
      if (!textRenders()) log('demo: warning: no font for the PNG labels (install fonts-dejavu-core); the SVG is fine');
      log(`demo: wrote ${o.out}/{results.md, results.json, wise-ft.svg, wise-ft.png, lora-adapter/}`);
    }
    return { result, adapterTensors, markdown };
  } finally {
    if (!io.ctx) ctx.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// The report

const f4 = (x: number) => x.toFixed(4);
const delta = (x: number, ref: number) => `${f4(x)} (${x - ref >= 0 ? '+' : '−'}${Math.abs(x - ref).toFixed(3)})`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** results.md: the run, the tables, the plot, the samples, the time per phase. */
/** The cost columns of a method's row: trainable, %, AdamW state, optimizer memory, steps/s. */
function costCells(m: Cost): string[] {
  return [formatCount(m.trainable), formatPercent(m.trainable / m.total), formatBytes(m.optimizerStateBytes), formatBytes(m.optimizerAllocatedBytes), m.stepsPerSec.toFixed(2)];
}

export function renderMarkdown(r: DemoResult): string {
  const o = r.options;
  const out: string[] = [];
  out.push('# webgpu-lora demo results', '');
  out.push(
    `Adapter: **${r.run.adapter}**; webgpu-lora ${r.run.version}; Node ${r.run.node}; ${r.run.cpus} CPUs; ${r.run.date}; ` +
      `load average at start ${r.run.loadAverage.join(' / ')} (1/5/15 min), at end ${r.run.loadAverageEnd.join(' / ')}.`,
    '',
    `Pre-trained model: \`${r.checkpoint.dir}\` (${formatCount(r.checkpoint.parameters)} parameters, character vocabulary${pretrainSummary(r.checkpoint.pretrain)}). ` +
      `Seeds: parameters ${o.seed}, data ${o.dataSeed}. Total time **${formatSeconds(r.totalSeconds)}** (CPU ${formatSeconds(r.totalCpuSeconds)}).`,
    '',
  );
  out.push('## Language modelling on fiction', '');
  out.push(
    `Each method: ${o.steps} AdamW steps of ${o.batch} × ${o.seq} characters (the same batches for all), 10 % warmup then cosine, clipping at 1, ` +
      `peak lr ${o.lrFull} (full, frozen half) or ${o.lrAdapter} (LoRA, bottleneck). Loss = nats per character on ${o.evalWindows} fixed windows of ${o.seq} characters per set; ` +
      `in brackets the change from the pre-trained model. ID: held-out documents of the fine-tuning genres (general fiction, mystery, adventure, romance); ` +
      `OOD: science fiction and humour (trained on by neither language-model stage); PT: held-out documents of the pre-training genres. ` +
      `Steps/s leave out each run's first 10 steps, which compile the pipelines it is the first to use (1–5 s each on lavapipe; the phase table below has the whole time).`,
    '',
  );
  out.push(
    markdownTable(
      ['method', 'trainable', '%', 'm, v of trainable', 'optimizer memory', 'steps/s', 'loss ID', 'loss OOD', 'loss PT'].map((h, i) => ({ header: h, align: i === 0 ? ('left' as const) : ('right' as const) })),
      [
        ['pre-trained (no fine-tuning)', '', '', '', '', '', f4(r.base.id), f4(r.base.ood), f4(r.base.pt)],
        ...r.lm.map((m) => [
          m.name,
          ...costCells(m),
          delta(m.eval.id, r.base.id),
          delta(m.eval.ood, r.base.ood),
          delta(m.eval.pt, r.base.pt),
        ]),
      ],
    ),
  );
  out.push(
    '`m, v of trainable` is what AdamW\'s two moments take for the trainable parameters (8 bytes each); `optimizer memory` is what the optimizer allocated on the GPU (measured). ' +
      'The optimizer works on whole chunks of the parameter arena its groups live in: where trainable and frozen parameters share an arena (the frozen half, the linear probe) its m, v and gradient buffers cover the whole arena, ' +
      'which is why those rows allocate as much as full fine-tuning; adapters live in an arena of their own.',
    '',
  );
  if (r.classification.length) {
    out.push('## A new task head: genre classification', '');
    out.push(
      `3 classes (${GENRE_CLASSES.map((c) => `${c.name}: ${c.genres.join('')}`).join('; ')}), snippets of ${o.clsSeq} characters; ${o.clsSteps} steps of ${o.clsBatch} snippets taken in order from a shuffled, balanced pool of ` +
        `${GENRE_CLASSES.length * o.clsTrainPerClass} training snippets; accuracy on ${GENRE_CLASSES.length * o.clsValPerClass} snippets of held-out documents (balanced: chance is 33.3 %).`,
      '',
    );
    out.push(
      markdownTable(
        ['method', 'trainable', '%', 'm, v of trainable', 'optimizer memory', 'steps/s', 'lr body / head', 'accuracy', 'val. loss'].map((h, i) => ({ header: h, align: i === 0 ? ('left' as const) : ('right' as const) })),
        r.classification.map((m) => [
          m.name,
          ...costCells(m),
          `${m.key === 'probe' ? '–' : m.lr} / ${m.headLr}`,
          pct(m.accuracy),
          f4(m.validationLoss),
        ]),
      ),
    );
  }
  const d = r.dpo;
  if (d) {
    out.push('## DPO through LoRA', '');
    out.push(
      `LoRA r=${d.rank} on attention + MLP (${formatCount(d.trainable)} trainable, ${formatPercent(d.trainable / d.total)}), β = ${d.beta}, lr ${d.lr}, ${d.steps} steps of ${o.dpoBatch} pairs ` +
        `(${d.stepsPerSec.toFixed(2)} steps/s). A pair: a ${o.dpoPromptLen}-character fiction prompt; chosen = its real ${o.dpoContinuationLen}-character continuation, rejected = ` +
        `${o.dpoContinuationLen} characters from another document. The reference policy is the same model with its adapters disabled. ` +
        `Before training the policy is the reference, so every implicit reward is 0 by definition (reward accuracy 0 %, margin 0; not computed); the likelihood columns are the model's own preference.`,
      '',
    );
    out.push(
      markdownTable(
        ['', 'pairs', 'reward accuracy', 'reward margin', 'likelihood prefers chosen', 'log-likelihood margin'].map((h, i) => ({ header: h, align: i < 2 ? ('left' as const) : ('right' as const) })),
        (['heldOut', 'train'] as const).flatMap((set) =>
          (['before', 'after'] as const).map((when) => {
            const m = d[when][set];
            const what = set === 'heldOut' ? `${m.pairs} from held-out documents` : `the first ${m.pairs} training pairs`;
            return [when === 'before' ? 'before (pre-trained)' : 'after DPO', what, pct(m.rewardAccuracy), f4(m.rewardMargin), pct(m.likelihoodAccuracy), f4(m.logLikelihoodMargin)];
          }),
        ),
      ),
    );
    out.push('What DPO does to the language model (loss in nats per character, as in the first table):', '');
    out.push(
      markdownTable(
        ['', 'loss ID', 'loss OOD', 'loss PT'].map((h, i) => ({ header: h, align: i === 0 ? ('left' as const) : ('right' as const) })),
        [
          ['before (pre-trained)', f4(d.before.lm.id), f4(d.before.lm.ood), f4(d.before.lm.pt)],
          ['after DPO', delta(d.after.lm.id, d.before.lm.id), delta(d.after.lm.ood, d.before.lm.ood), delta(d.after.lm.pt, d.before.lm.pt)],
        ],
      ),
    );
  }
  if (r.wiseft.length) {
    out.push('## WiSE-FT: weight interpolation', '');
    out.push(
      'θ(α) = (1 − α)·θ_pre + α·θ_ft, one lerp dispatch over the whole parameter arena per α; the merged LoRA model is the LoRA r=8 (attention + MLP) adapter folded into the weights (`mergeAndUnload`). Loss in nats per character.',
      '',
      '![WiSE-FT curves](wise-ft.png)',
      '',
    );
    for (const s of r.wiseft) {
      const bestOod = s.points.reduce((a, b) => (b.ood < a.ood ? b : a));
      out.push(`**${s.method}** (lowest OOD loss at α = ${bestOod.alpha}):`, '');
      out.push(
        markdownTable(
          ['α', 'loss ID', 'loss OOD', 'loss PT'].map((h) => ({ header: h, align: 'right' as const })),
          s.points.map((p) => [p.alpha.toFixed(1), f4(p.id), f4(p.ood), f4(p.pt)]),
        ),
      );
    }
  }
  out.push('## Samples', '');
  out.push(`Temperature ${o.sampleTemperature}, ${o.sampleChars} new characters, seeds ${o.seed}…; the prompt is in bold.`, '');
  for (const s of r.samples) out.push(`- *${s.model}*: **${escapeMd(s.prompt)}**${escapeMd(s.text.slice(s.prompt.length))}`);
  out.push('');
  out.push('## Where the time goes', '');
  out.push(
    `Wall time and this process's CPU time (all threads, lavapipe's workers included) per phase. ${r.pipelines} compute pipelines were compiled, each on first use, inside the phase that first needed it. ` +
      `On a shared machine the wall time grows with the load; the CPU time is the work.`,
    '',
  );
  out.push(
    markdownTable(
      [{ header: 'phase' }, { header: 'wall s', align: 'right' }, { header: 'share', align: 'right' }, { header: 'CPU s', align: 'right' }],
      [
        ...r.phases.map((p) => [p.name, p.seconds.toFixed(1), formatPercent(p.seconds / r.totalSeconds), p.cpuSeconds.toFixed(1)]),
        ['total', r.totalSeconds.toFixed(1), '100%', r.totalCpuSeconds.toFixed(1)],
      ],
    ),
  );
  return out.join('\n');
}

/** One clause about how the checkpoint was made, from its pretrain.json. */
function pretrainSummary(rec: unknown): string {
  const p = rec as Partial<{ steps: number; options: { batch: number; seq: number }; finalValidationLoss: number; wallSeconds: number; data: { genres: string[] } }> | undefined;
  if (!p?.steps || !p.options || p.finalValidationLoss === undefined || p.wallSeconds === undefined) return '';
  return `; \`npm run pretrain\`: ${p.steps} steps of ${p.options.batch} × ${p.options.seq} characters of non-fiction, validation loss ${p.finalValidationLoss.toFixed(4)}, ${formatSeconds(p.wallSeconds)}`;
}

function escapeMd(s: string): string {
  return s.replace(/\n/g, ' ⏎ ').replace(/([*_`\\[\]<>|])/g, '\\$1');
}

// ---------------------------------------------------------------------------------------------
// Command line

export function parseDemoArgs(argv: string[]): DemoOptions {
  const d = DEMO_DEFAULTS;
  const p = new Command('demo')
    .description('Fine-tune the pre-trained Brown-corpus GPT-2 in every way the library supports; tables, WiSE-FT plot, PEFT adapter')
    .option('--checkpoint <dir>', 'pre-trained checkpoint folder', d.checkpoint)
    .option('--out <dir>', 'results folder', d.out!)
    .option('--quick', 'a tiny configuration of the whole pipeline (smoke run)')
    .option('--steps <n>', 'fine-tuning steps per language-model method', posInt('steps'))
    .option('--batch <n>', 'sequences per fine-tuning step', posInt('batch'))
    .option('--seq <n>', 'characters per sequence (fine-tuning and evaluation)', posInt('seq'))
    .option('--scale <k>', 'k× steps of every method and k× evaluation windows (a real GPU)', posInt('scale'), 1)
    .option('--eval-windows <n>', 'evaluation windows per set', posInt('eval-windows'))
    .option('--cls-steps <n>', 'classification steps per method', posInt('cls-steps'))
    .option('--cls-batch <n>', 'snippets per classification step', posInt('cls-batch'))
    .option('--cls-seq <n>', 'characters per snippet', posInt('cls-seq'))
    .option('--dpo-steps <n>', 'DPO steps', posInt('dpo-steps'))
    .option('--lr-full <x>', 'peak lr of full fine-tuning and the frozen half', nonNeg('lr-full'))
    .option('--lr-adapter <x>', 'peak lr of LoRA and bottleneck adapters', nonNeg('lr-adapter'))
    .option('--lr-head <x>', 'peak lr of the new classification head', nonNeg('lr-head'))
    .option('--lr-dpo <x>', 'peak lr of DPO', nonNeg('lr-dpo'))
    .option('--dpo-beta <x>', 'DPO β', nonNeg('dpo-beta'))
    .option('--dpo-prompt <n>', 'DPO prompt characters', posInt('dpo-prompt'))
    .option('--dpo-continuation <n>', 'DPO continuation characters', posInt('dpo-continuation'))
    .option('--only <parts>', 'run only these parts: lm, cls, dpo (comma-separated)')
    .option('--seed <n>', 'seed of new parameters (adapters, heads)', nonNegInt('seed'))
    .option('--data-seed <n>', 'seed of batches, snippets and pairs', nonNegInt('data-seed'))
    .parse(argv, { from: 'user' });
  const f = p.opts<Record<string, number | string | boolean | undefined>>();
  // A quick run must not overwrite the committed results: it writes to a temporary folder unless --out says otherwise.
  const out = p.getOptionValueSource('out') === 'default' && f.quick ? join(tmpdir(), 'webgpu-lora-demo-quick') : (f.out as string);
  const o: DemoOptions = { ...d, ...(f.quick ? QUICK : {}), checkpoint: resolve(f.checkpoint as string), out: resolve(out) };
  const k = f.scale as number;
  o.steps *= k;
  o.clsSteps *= k;
  o.dpoSteps *= k;
  o.evalWindows *= k;
  o.clsTrainPerClass *= k;
  o.clsValPerClass *= k;
  o.dpoValPairs *= k;
  const set = <K extends keyof DemoOptions>(key: K, v: unknown) => {
    if (v !== undefined) (o as unknown as Record<string, unknown>)[key] = v;
  };
  set('steps', f.steps);
  set('batch', f.batch);
  set('seq', f.seq);
  set('evalWindows', f.evalWindows);
  set('clsSteps', f.clsSteps);
  set('clsBatch', f.clsBatch);
  set('clsSeq', f.clsSeq);
  set('dpoSteps', f.dpoSteps);
  set('lrFull', f.lrFull);
  set('lrAdapter', f.lrAdapter);
  set('lrHead', f.lrHead);
  set('lrDpo', f.lrDpo);
  set('dpoBeta', f.dpoBeta);
  set('dpoPromptLen', f.dpoPrompt);
  set('dpoContinuationLen', f.dpoContinuation);
  if (f.only !== undefined) {
    const parts = String(f.only).split(',').map((x) => x.trim());
    for (const x of parts) if (!['lm', 'cls', 'dpo'].includes(x)) throw new Error(`--only ${f.only}: '${x}' is not one of lm, cls, dpo`);
    o.parts = parts as DemoOptions['parts'];
  }
  set('seed', f.seed);
  set('dataSeed', f.dataSeed);
  return o;
}

if (isMain(import.meta.url)) {
  const { markdown } = await runDemo(parseDemoArgs(process.argv.slice(2)));
  process.stdout.write(markdown);
}
