/**
 * A small stand-in for the pre-trained checkpoint, so that `npm run page` works before
 * `npm run pretrain` has written examples/checkpoints/brown-gpt2: a character-level GPT-2 of the
 * same form (HF config, the examples' CharVocab, no dropout), a quarter of its width, pre-trained
 * for a few hundred steps on the same Brown non-fiction. Its samples are rough; the page says so.
 * Node only (Dawn); build.ts calls it when no checkpoint is there.
 */
import { createContext, saveGPT2 } from '../../src/node.js';
import { backward, grad, zeroGrad } from '../../src/autograd/tape.js';
import { GPT2LMHeadModel } from '../../src/nn/gpt2.js';
import { PRETRAIN_DEFAULTS, pretrainConfig } from '../pretrain.js';
import { AdamW, schedules } from '../../src/kernels/optim.js';
import { CharVocab, PRETRAIN_GENRES, loadBrown, lmBatches, splitTokens } from '../lib/brown.js';

export interface FallbackOptions {
  steps?: number;
  seed?: number;
  log?: (message: string) => void;
}

/** Write config.json + model.safetensors of a briefly pre-trained small model into `dir`. */
export async function makeFallbackCheckpoint(dir: string, o: FallbackOptions = {}): Promise<void> {
  const steps = o.steps ?? 300;
  const log = o.log ?? ((m: string) => console.log(m));
  const vocab = new CharVocab();
  // The pre-training script's config (characters, no dropout), a quarter of its width and half its depth.
  const config = pretrainConfig({ ...PRETRAIN_DEFAULTS, nEmbd: 64, nLayer: 2, nHead: 4, nPositions: 128 }, vocab);
  const ctx = await createContext();
  try {
    const model = GPT2LMHeadModel.create(ctx, config, { seed: o.seed ?? 0 });
    const tokens = splitTokens(loadBrown(), vocab, { genres: PRETRAIN_GENRES, split: 'train' });
    const params = model.parameters();
    const opt = new AdamW(ctx, params.map((p) => ({ params: p })), { lr: 3e-3, maxGradNorm: 1, weightDecay: 0 });
    const lr = schedules.cosine(steps, 30, 0.1);
    const t0 = performance.now();
    let s = 0;
    let last = 0;
    for (const b of lmBatches(tokens, { batch: 8, seqLen: 64, seed: 1, steps })) {
      s++;
      const loss = ctx.scope(() => {
        const l = model.loss({ ids: b.inputs, shape: [b.batch, b.seqLen] });
        backward(ctx, l);
        opt.step(lr(s), params.map((p) => grad(p)));
        zeroGrad(params);
        return l;
      });
      ctx.flush();
      if (s % 50 === 0 || s === steps) {
        last = (await loss.read())[0]!;
        log(`page: fallback model, step ${s}/${steps}: loss ${last.toFixed(3)} nats/char`);
      }
      loss.dispose();
    }
    await saveGPT2(model, dir);
    log(`page: fallback model written (${((performance.now() - t0) / 1000).toFixed(1)} s, final batch loss ${last.toFixed(3)})`);
    opt.dispose();
    model.dispose();
  } finally {
    ctx.destroy();
  }
}
