/**
 * A small stand-in for the pre-trained checkpoint, so that `npm run page` works before
 * `npm run pretrain` has written examples/checkpoints/brown-gpt2: a character-level GPT-2 of the
 * same form (HF config, the examples' CharVocab, no dropout), a quarter of its width, pre-trained
 * for a few hundred steps on the same Brown non-fiction. Its samples are rough; the page says so.
 * Node only (Dawn); build.ts calls it when no checkpoint is there.
 */
import { createContext, saveGPT2 } from '../../src/node.js';
import { backward, grad, zeroGrad } from '../../src/autograd/tape.js';
import { GPT2LMHeadModel, gpt2Config } from '../../src/nn/gpt2.js';
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
  const config = gpt2Config({
    vocab_size: vocab.size,
    n_positions: 128,
    n_embd: 64,
    n_layer: 2,
    n_head: 4,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    pad_token_id: vocab.pad,
    bos_token_id: null,
    eos_token_id: null,
    vocabulary: 'webgpu-lora examples/lib/vocab.ts CharVocab: 0 pad, 1 unknown, 2 newline, 3-97 ASCII 32-126',
  });
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
