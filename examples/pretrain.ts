/**
 * `npm run pretrain`: train a small character-level GPT-2 on the Brown corpus's non-fiction
 * (press, religion, skills and hobbies, popular lore, belles-lettres, government, learned) and
 * write a Hugging Face checkpoint the demo starts from:
 *
 *   examples/checkpoints/brown-gpt2/config.json        HF GPT2Config (vocab: brown.ts's CharVocab)
 *   examples/checkpoints/brown-gpt2/model.safetensors  HF tensor names, F32
 *   examples/checkpoints/brown-gpt2/pretrain.json      what made it: flags, seed, time, losses, adapter
 *
 * AdamW (weight decay on matrices only), linear warmup then cosine decay, global-norm clipping.
 * Everything is seeded (weights on the GPU from `--seed`, batches from `--data-seed`), so the
 * same flags on the same adapter write the same bytes. `--scale k` makes the model k× wider and
 * deeper for a real GPU (explicit `--n-embd` / `--n-layer` / `--n-head` win).
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { createContext, saveGPT2, writeFileAtomic } from '../src/node.js';
import type { GpuContext } from '../src/gpu/context.js';
import { GPT2LMHeadModel, gpt2Config, type GPT2Config } from '../src/nn/gpt2.js';
import { AdamW, schedules } from '../src/kernels/optim.js';
import { CharVocab, evalWindows, lmBatches, loadBrown, PRETRAIN_GENRES, splitTokens } from './lib/brown.js';
import type { ProgressStream } from './lib/progress.js';
import { formatSeconds } from './lib/table.js';
import { decayGroups, evalLoss, isMain, lmLoss, nonNeg, nonNegInt, posInt, ROOT, type RunInfo, runInfo, tailMean, train } from './common.js';

export interface PretrainOptions {
  out: string;
  steps: number;
  batch: number;
  seq: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nPositions: number;
  lr: number;
  warmup: number;
  /** The cosine schedule ends at lr · minLrScale. */
  minLrScale: number;
  weightDecay: number;
  clip: number;
  seed: number;
  dataSeed: number;
  /** Evaluation windows (validation and train), and how often to evaluate validation. */
  evalWindows: number;
  evalEvery: number;
  evalBatch: number;
}

export const PRETRAIN_DEFAULTS: PretrainOptions = {
  out: join(ROOT, 'examples/checkpoints/brown-gpt2'),
  steps: 1500,
  batch: 8,
  seq: 128,
  nEmbd: 128,
  nLayer: 4,
  nHead: 4,
  nPositions: 128,
  lr: 3e-3,
  warmup: 100,
  minLrScale: 0.1,
  weightDecay: 0.1,
  clip: 1,
  seed: 0,
  dataSeed: 1,
  evalWindows: 64,
  evalEvery: 250,
  evalBatch: 16,
};

/** The record written beside the checkpoint. */
export interface PretrainRecord {
  config: GPT2Config;
  options: Omit<PretrainOptions, 'out'>;
  data: { genres: readonly string[]; trainCharacters: number; validationCharacters: number; tokensSeen: number; epochs: number };
  parameters: number;
  steps: number;
  seed: number;
  dataSeed: number;
  wallSeconds: number;
  trainSeconds: number;
  stepsPerSec: number;
  /** Mean training-batch loss over the last 50 steps. */
  finalBatchLoss: number;
  /** Loss on fixed windows of the training and validation streams (nats per character). */
  finalTrainLoss: number;
  finalValidationLoss: number;
  curve: { step: number; trainBatchLoss: number; validationLoss?: number }[];
  run: RunInfo & { loadAverageEnd: number[] };
  command: string;
}

/** The model config for these options: characters, no dropout (the runs are short; it costs time and gains nothing here). */
export function pretrainConfig(o: PretrainOptions, vocab: CharVocab): GPT2Config {
  return gpt2Config({
    vocab_size: vocab.size,
    n_positions: o.nPositions,
    n_embd: o.nEmbd,
    n_layer: o.nLayer,
    n_head: o.nHead,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    pad_token_id: vocab.pad,
    // HF's defaults (50256) are GPT-2's BPE ids; this vocabulary has no such tokens.
    bos_token_id: null,
    eos_token_id: null,
    vocabulary: 'webgpu-lora examples/lib/brown.ts CharVocab: 0 pad, 1 unknown, 2 newline, 3-97 ASCII 32-126',
  });
}

/** Pre-train and write the checkpoint; returns the record (also written as pretrain.json). */
export async function pretrain(o: PretrainOptions, x: { ctx?: GpuContext; stream?: ProgressStream | null; log?: (line: string) => void; command?: string } = {}): Promise<PretrainRecord> {
  const t0 = performance.now();
  const log = x.log ?? ((l: string) => console.log(l));
  if (o.seq > o.nPositions) throw new Error(`pretrain: --seq ${o.seq} exceeds --n-positions ${o.nPositions}`);
  const ctx = x.ctx ?? (await createContext());
  const info = runInfo(ctx);
  const vocab = new CharVocab();
  const corpus = loadBrown();
  const trainTokens = splitTokens(corpus, vocab, { genres: PRETRAIN_GENRES, split: 'train' });
  const valTokens = splitTokens(corpus, vocab, { genres: PRETRAIN_GENRES, split: 'validation' });
  const config = pretrainConfig(o, vocab);
  log(`pretrain: ${info.adapter}; webgpu-lora ${info.version}; load average ${info.loadAverage.join(' ')}`);
  log(`pretrain: GPT-2 n_embd ${o.nEmbd}, ${o.nLayer} layers, ${o.nHead} heads, n_positions ${o.nPositions}, vocab ${vocab.size}; ` +
    `${o.steps} steps of ${o.batch} × ${o.seq} characters; seed ${o.seed}, data seed ${o.dataSeed}`);
  const model = GPT2LMHeadModel.create(ctx, config, { seed: o.seed });
  const groups = decayGroups(model, o.weightDecay);
  const params = groups.map((g) => g.params);
  const opt = new AdamW(ctx, groups, { lr: o.lr, maxGradNorm: o.clip, weightDecay: o.weightDecay });
  const schedule = schedules.cosine(o.steps, o.warmup, o.minLrScale);
  const batches = lmBatches(trainTokens, { batch: o.batch, seqLen: o.seq, seed: o.dataSeed });
  const valSet = evalWindows(valTokens, { seqLen: o.seq, count: o.evalWindows });
  const trainSet = evalWindows(trainTokens, { seqLen: o.seq, count: o.evalWindows });
  const curve: PretrainRecord['curve'] = [];
  let evalSeconds = 0;
  let lastRead = 0;
  try {
    const result = await train({
      ctx,
      label: 'pretrain',
      steps: o.steps,
      opt,
      params,
      schedule,
      lossAt: () => lmLoss(ctx, model, batches.next().value!),
      readEvery: 10,
      stream: x.stream,
      everyPercent: 5,
      onRead: async (step, losses) => {
        const point: PretrainRecord['curve'][number] = { step, trainBatchLoss: tailMean(losses, 10) };
        // Losses are read every 10 steps: evaluate at the first read at or after each multiple of evalEvery.
        const due = Math.floor(step / o.evalEvery) > Math.floor(lastRead / o.evalEvery);
        lastRead = step;
        if (due || step === o.steps) {
          const e0 = performance.now();
          point.validationLoss = await evalLoss(ctx, model, valSet, o.evalBatch);
          evalSeconds += (performance.now() - e0) / 1000;
        }
        if (step % 50 === 0 || step === o.steps || point.validationLoss !== undefined) curve.push(point);
      },
    });
    const finalTrainLoss = await evalLoss(ctx, model, trainSet, o.evalBatch);
    const finalValidationLoss = curve[curve.length - 1]!.validationLoss!;
    await mkdir(o.out, { recursive: true });
    await saveGPT2(model, o.out);
    const { out: _out, ...options } = o;
    const tokensSeen = o.steps * o.batch * o.seq;
    const record: PretrainRecord = {
      config,
      options,
      data: { genres: PRETRAIN_GENRES, trainCharacters: trainTokens.length, validationCharacters: valTokens.length, tokensSeen, epochs: tokensSeen / trainTokens.length },
      parameters: model.numParameters(),
      steps: o.steps,
      seed: o.seed,
      dataSeed: o.dataSeed,
      wallSeconds: (performance.now() - t0) / 1000,
      trainSeconds: result.seconds - evalSeconds,
      stepsPerSec: o.steps / (result.seconds - evalSeconds),
      finalBatchLoss: tailMean(result.losses, 50),
      finalTrainLoss,
      finalValidationLoss,
      curve,
      run: { ...info, loadAverageEnd: runInfo(ctx).loadAverage },
      command: x.command ?? 'pretrain()',
    };
    await writeFileAtomic(join(o.out, 'pretrain.json'), `${JSON.stringify(record, null, 2)}\n`);
    log(`pretrain: ${model.numParameters().toLocaleString('en-US')} parameters; train loss ${finalTrainLoss.toFixed(4)}, validation loss ${finalValidationLoss.toFixed(4)} nats/char; ` +
      `${formatSeconds(record.wallSeconds)} (${record.stepsPerSec.toFixed(2)} steps/s); wrote ${o.out}`);
    return record;
  } finally {
    opt.dispose();
    model.dispose();
    if (!x.ctx) ctx.destroy();
  }
}

/** The command line: flags over PRETRAIN_DEFAULTS, `--scale` for bigger models. */
export function parsePretrainArgs(argv: string[]): PretrainOptions {
  const d = PRETRAIN_DEFAULTS;
  const p = new Command('pretrain')
    .description('Pre-train a character-level GPT-2 on the Brown corpus non-fiction and write an HF checkpoint')
    .option('--out <dir>', 'checkpoint folder', d.out)
    .option('--steps <n>', 'training steps', posInt('steps'), d.steps)
    .option('--batch <n>', 'sequences per step', posInt('batch'), d.batch)
    .option('--seq <n>', 'characters per sequence', posInt('seq'))
    .option('--scale <k>', 'k× width (n_embd, n_head) and depth (n_layer) for a real GPU', posInt('scale'), 1)
    .option('--n-embd <n>', 'model width', posInt('n-embd'))
    .option('--n-layer <n>', 'blocks', posInt('n-layer'))
    .option('--n-head <n>', 'attention heads', posInt('n-head'))
    .option('--n-positions <n>', 'context length', posInt('n-positions'), d.nPositions)
    .option('--lr <x>', 'peak learning rate', nonNeg('lr'), d.lr)
    .option('--warmup <n>', 'warmup steps', nonNegInt('warmup'), d.warmup)
    .option('--weight-decay <x>', 'AdamW weight decay (matrices only)', nonNeg('weight-decay'), d.weightDecay)
    .option('--seed <n>', 'weight initialisation seed', nonNegInt('seed'), d.seed)
    .option('--data-seed <n>', 'batch sampling seed', nonNegInt('data-seed'), d.dataSeed)
    .option('--eval-windows <n>', 'fixed evaluation windows', posInt('eval-windows'), d.evalWindows)
    .option('--eval-every <n>', 'validation every n steps', posInt('eval-every'), d.evalEvery)
    .parse(argv, { from: 'user' });
  const f = p.opts<Record<string, number | string | undefined>>();
  const k = f.scale as number;
  const nPositions = f.nPositions as number;
  return {
    ...d,
    out: resolve(f.out as string),
    steps: f.steps as number,
    batch: f.batch as number,
    seq: (f.seq as number | undefined) ?? nPositions,
    nEmbd: (f.nEmbd as number | undefined) ?? d.nEmbd * k,
    nLayer: (f.nLayer as number | undefined) ?? d.nLayer * k,
    nHead: (f.nHead as number | undefined) ?? d.nHead * k,
    nPositions,
    lr: f.lr as number,
    warmup: f.warmup as number,
    weightDecay: f.weightDecay as number,
    seed: f.seed as number,
    dataSeed: f.dataSeed as number,
    evalWindows: f.evalWindows as number,
    evalEvery: f.evalEvery as number,
  };
}

if (isMain(import.meta.url)) {
  const argv = process.argv.slice(2);
  await pretrain(parsePretrainArgs(argv), { command: ['npm run pretrain', ...(argv.length ? ['--', ...argv] : [])].join(' ') });
}
