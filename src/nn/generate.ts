/**
 * Sampling from a language model: greedy (temperature 0) or temperature / top-k sampling with
 * a seeded RNG, one forward per new token over the last n_positions tokens (no KV cache: the
 * models here are small), reading back only the last position's logits.
 *
 * ```ts
 * const ids = await generate(model, vocab.encode('The '), { maxNewTokens: 80, temperature: 0.8, seed: 1 });
 * ```
 */
import { ArgumentError } from '../gpu/errors.js';
import { noGrad } from '../autograd/tape.js';
import { slice } from '../kernels/elementwise.js';
import type { GPT2LMHeadModel } from './gpt2.js';

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0: greedy (argmax). Default 1. */
  temperature?: number;
  /** Sample among the k most likely tokens only. */
  topK?: number;
  seed?: number;
  /** Stop after producing this token. */
  stopToken?: number;
}

/**
 * mulberry32 (Tommy Ettinger, public domain): a seeded stream of 32-bit unsigned integers, the
 * same on every platform (integer arithmetic only). Sampling draws from it; the examples build
 * their RNG (examples/lib/rng.ts) on it.
 */
export function mulberry32Uint32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Pick a token from logits: argmax at temperature 0, else a softmax sample (top-k optional). */
export function sampleToken(logits: ArrayLike<number>, temperature: number, rand: () => number, topK?: number): number {
  const V = logits.length;
  if (temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  let idx = Array.from({ length: V }, (_, i) => i);
  if (topK !== undefined && topK < V) idx = idx.sort((a, b) => logits[b]! - logits[a]!).slice(0, topK);
  const m = Math.max(...idx.map((i) => logits[i]!));
  const w = idx.map((i) => Math.exp((logits[i]! - m) / temperature));
  const total = w.reduce((a, b) => a + b, 0);
  let r = rand() * total;
  for (let k = 0; k < idx.length; k++) {
    r -= w[k]!;
    if (r <= 0) return idx[k]!;
  }
  return idx[idx.length - 1]!;
}

/** `prompt` followed by up to `maxNewTokens` generated ids. The model runs in eval mode (no dropout). */
export async function generate(model: GPT2LMHeadModel, prompt: readonly number[], o: GenerateOptions): Promise<number[]> {
  const t = o.temperature ?? 1;
  if (!(t >= 0) || !Number.isFinite(t)) throw new ArgumentError(`generate: temperature = ${t}, expected a finite number >= 0`);
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new ArgumentError(`generate: maxNewTokens = ${o.maxNewTokens}, expected an integer >= 0`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 1)) throw new ArgumentError(`generate: topK = ${o.topK}, expected an integer >= 1`);
  if (!prompt.length) throw new ArgumentError('generate: empty prompt');
  const ctx = model.ctx;
  const next = mulberry32Uint32(o.seed ?? 0);
  const rand = () => next() / 2 ** 32;
  const out = [...prompt];
  const wasTraining = model.training;
  model.eval();
  try {
    for (let i = 0; i < o.maxNewTokens; i++) {
      const window = out.slice(-model.config.n_positions);
      const T = window.length;
      const last = ctx.scope(() => noGrad(ctx, () => slice(ctx, model.forward({ ids: window, shape: [1, T] }), 1, T - 1, 1)));
      const logits = await last.read();
      last.dispose();
      const next = sampleToken(logits, t, rand, o.topK);
      out.push(next);
      if (next === o.stopToken) break;
    }
  } finally {
    model.train(wasTraining);
  }
  return out;
}
