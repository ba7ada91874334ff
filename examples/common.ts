/**
 * What `npm run pretrain` and `npm run demo` share: the language-model loss on the data layer's
 * batches, evaluation on fixed windows, one training loop (one submit per step, losses read back
 * in batches so the CPU never waits on the GPU inside a step), optimizer groups, phase timing,
 * and the record of where a run happened (adapter, library version, date, load).
 *
 * Everything here runs on the library's source (`src/`), through tsx: no build step.
 */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { GpuContext } from '../src/gpu/context.js';
import type { Tensor } from '../src/gpu/tensor.js';
import * as ops from '../src/autograd/ops.js';
import { backward, grad, noGrad, zeroGrad } from '../src/autograd/tape.js';
import type { Module } from '../src/nn/module.js';
import type { GPT2LMHeadModel } from '../src/nn/gpt2.js';
import { optimizerGroups } from '../src/peft/freeze.js';
import type { AdamW, ParamGroup } from '../src/kernels/optim.js';
import { batchesOf, type LmBatch } from './lib/brown.js';
import { createProgress, type ProgressStream } from './lib/progress.js';

/** The repository's root folder (examples/ is one level down). */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The library's version, from package.json. */
export function libraryVersion(): string {
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

/** Where and when a run happened: what the committed numbers depend on. */
export interface RunInfo {
  adapter: string;
  library: string;
  version: string;
  node: string;
  cpus: number;
  date: string;
  /** 1, 5 and 15-minute load averages when the run started (the machine may be shared). */
  loadAverage: number[];
}

export function runInfo(ctx: GpuContext): RunInfo {
  const a = ctx.caps.adapter;
  return {
    adapter: a.description || [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || 'unknown',
    library: 'webgpu-lora',
    version: libraryVersion(),
    node: process.version,
    cpus: cpus().length,
    date: new Date().toISOString(),
    loadAverage: loadavg().map((x) => Number(x.toFixed(2))),
  };
}

/**
 * Mean next-character cross-entropy of a batch: every position t of `inputs` predicts
 * `targets[t]` (the data layer's windows are seqLen + 1 characters, so no position is lost to
 * the shift, unlike HF's `labels = input_ids`). On the tape unless called under `noGrad`.
 */
export function lmLoss(ctx: GpuContext, model: GPT2LMHeadModel, b: LmBatch): Tensor {
  const logits = model.forward({ ids: b.inputs, shape: [b.batch, b.seqLen] });
  const labels = ctx.tensor(Float32Array.from(b.targets), [b.batch * b.seqLen], 'f32', 'lm.targets');
  return ops.crossEntropy(ctx, logits, { labels }, { ownTarget: true });
}

/**
 * Mean loss over fixed evaluation windows (nats per character), in pieces of `batch` rows,
 * without gradients and in eval mode; every piece is encoded first, then all are read back.
 * Deterministic: the same weights give the same number bit for bit.
 */
export async function evalLoss(ctx: GpuContext, model: GPT2LMHeadModel, set: LmBatch, batch: number): Promise<number> {
  const was = model.training;
  model.eval();
  try {
    const parts: { rows: number; loss: Tensor }[] = [];
    for (const b of batchesOf(set, batch)) parts.push({ rows: b.batch, loss: ctx.scope(() => noGrad(ctx, () => lmLoss(ctx, model, b))) });
    const values = await Promise.all(parts.map((p) => p.loss.read()));
    parts.forEach((p) => p.loss.dispose());
    let sum = 0;
    parts.forEach((p, i) => (sum += p.rows * values[i]![0]!));
    return sum / set.batch;
  } finally {
    model.train(was);
  }
}

/**
 * AdamW groups for the trainable parameters of `model` (`optimizerGroups`, so partly frozen
 * weights get no weight decay), with weight decay only on matrices (GPT-2 practice: no decay on
 * biases and LayerNorm gains).
 */
export function decayGroups(model: Module, weightDecay: number): ParamGroup[] {
  const groups = optimizerGroups(model, { weightDecay });
  for (const g of groups) if (g.params.shape.length < 2) g.weightDecay = 0;
  return groups;
}

/** What one training run did. */
export interface TrainResult {
  /** The training loss of every step (1-based step s is losses[s − 1]). */
  losses: number[];
  seconds: number;
  /**
   * Steps per second after the first read-back (the first `readEvery` steps, which compile
   * every pipeline the run is the first to use: 1–5 s each on lavapipe); the whole run's rate
   * when it is no longer than that.
   */
  stepsPerSec: number;
  /** The steps left out of `stepsPerSec`. */
  warmupSteps: number;
}

export interface TrainOptions {
  ctx: GpuContext;
  label: string;
  steps: number;
  opt: AdamW;
  /** The tensors the optimizer's groups update, in group order. */
  params: Tensor[];
  /** lr multiplier for step s (1-based). */
  schedule: (step: number) => number;
  /** The loss of step s, recorded on the tape. */
  lossAt: (step: number) => Tensor;
  /** Read the losses back every this many steps (default 10): fewer round trips, still a live bar. */
  readEvery?: number;
  /** Called after the losses of steps up to `step` are read (periodic evaluation, say). */
  onRead?: (step: number, losses: number[]) => Promise<void> | void;
  /** Progress output (default stderr); `null` for none. */
  stream?: ProgressStream | null;
  /** Where the output is not a terminal: a line every this many percent (default 25). */
  everyPercent?: number;
}

/**
 * The training loop: each step is one scope and one submit (forward, backward, clipped AdamW
 * update); the loss tensors are read back every `readEvery` steps. A non-finite loss stops the
 * run with an error naming the step.
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const { ctx, steps, opt, params } = o;
  const readEvery = o.readEvery ?? 10;
  const bar = o.stream === null ? null : createProgress({ label: o.label, total: steps, everyPercent: o.everyPercent ?? 25, ...(o.stream ? { stream: o.stream } : {}) });
  const losses: number[] = [];
  let pending: Tensor[] = [];
  const t0 = performance.now();
  let warm: { t: number; steps: number } | null = null;
  try {
    for (let s = 1; s <= steps; s++) {
      const loss = ctx.scope(() => {
        const l = o.lossAt(s);
        backward(ctx, l);
        opt.step(o.schedule(s), params.map(grad));
        zeroGrad(params);
        return l;
      });
      ctx.flush();
      pending.push(loss);
      if (pending.length >= readEvery || s === steps) {
        const values = await Promise.all(pending.map((t) => t.read()));
        pending.forEach((t) => t.dispose());
        pending = [];
        for (const v of values) {
          const x = v[0]!;
          if (!Number.isFinite(x)) throw new Error(`${o.label}: the training loss is ${x} at step ${losses.length + 1}`);
          losses.push(x);
        }
        if (!warm) warm = { t: performance.now(), steps: s };
        bar?.update(s, { loss: losses[losses.length - 1]! });
        await o.onRead?.(s, losses);
      }
    }
  } finally {
    pending.forEach((t) => t.dispose());
    bar?.stop();
  }
  const t1 = performance.now();
  const seconds = (t1 - t0) / 1000;
  if (warm && warm.steps < steps) return { losses, seconds, stepsPerSec: ((steps - warm.steps) * 1000) / (t1 - warm.t), warmupSteps: warm.steps };
  return { losses, seconds, stepsPerSec: steps / seconds, warmupSteps: 0 };
}

/** Mean of the last `n` values (all of them if fewer). */
export function tailMean(xs: readonly number[], n: number): number {
  const t = xs.slice(-n);
  return t.reduce((a, b) => a + b, 0) / t.length;
}

/**
 * Wall and CPU time per named phase, in the order they first ran. CPU time is this process's
 * (user + system, every thread: lavapipe's workers too), so on a shared machine it says how much
 * work a phase was, where the wall time also says how busy the machine was.
 */
export class PhaseTimer {
  readonly phases: { name: string; seconds: number; cpuSeconds: number }[] = [];
  private readonly start = performance.now();
  private readonly cpu0 = process.cpuUsage();

  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    try {
      return await fn();
    } finally {
      const s = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      const cpu = (c.user + c.system) / 1e6;
      const p = this.phases.find((x) => x.name === name);
      if (p) {
        p.seconds += s;
        p.cpuSeconds += cpu;
      } else this.phases.push({ name, seconds: s, cpuSeconds: cpu });
    }
  }

  /** Wall seconds since the timer was made. */
  get total(): number {
    return (performance.now() - this.start) / 1000;
  }

  /** CPU seconds of this process since the timer was made. */
  get cpuTotal(): number {
    const c = process.cpuUsage(this.cpu0);
    return (c.user + c.system) / 1e6;
  }
}

/** A positive integer option (commander parser). */
export function posInt(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} ${v}: expected a positive integer`);
    return n;
  };
}

/** A non-negative integer option, such as a seed (commander parser). */
export function nonNegInt(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} ${v}: expected an integer >= 0`);
    return n;
  };
}

/** A non-negative number option (commander parser). */
export function nonNeg(name: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} ${v}: expected a number >= 0`);
    return n;
  };
}

/** True when this module is the script node / tsx was started with (not imported by a test). */
export function isMain(metaUrl: string): boolean {
  return process.argv[1] !== undefined && fileURLToPath(metaUrl) === process.argv[1];
}
