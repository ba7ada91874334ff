/**
 * The whole demo pipeline at a tiny size: pre-train a few steps into a temporary folder (twice:
 * the checkpoint must be the same bytes), then every fine-tuning method a few steps, the WiSE-FT
 * sweep at three α, and the LoRA adapter written and read back as a PEFT adapter directory.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { loadGPT2, loadPeftAdapter } from '../../src/node.js';
import { DEMO_DEFAULTS, type DemoReturn, QUICK, runDemo } from '../../examples/demo.js';
import { PRETRAIN_DEFAULTS, type PretrainRecord, pretrain } from '../../examples/pretrain.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
let dir: string;
let record: PretrainRecord;
let demo: DemoReturn;

const TINY_PRETRAIN = {
  ...PRETRAIN_DEFAULTS,
  steps: 60,
  batch: 8,
  seq: 32,
  nEmbd: 32,
  nLayer: 2,
  nHead: 2,
  nPositions: 32,
  lr: 1e-2,
  warmup: 5,
  evalWindows: 8,
  evalEvery: 30,
  evalBatch: 8,
};

beforeAll(async () => {
  ctx = await testContext();
  dir = mkdtempSync(join(tmpdir(), 'webgpu-lora-demo-'));
  const quiet = { ctx, stream: null, log: () => {} };
  record = await pretrain({ ...TINY_PRETRAIN, out: join(dir, 'ckpt') }, quiet);
  await pretrain({ ...TINY_PRETRAIN, out: join(dir, 'ckpt2') }, quiet);
  demo = await runDemo(
    {
      ...DEMO_DEFAULTS,
      ...QUICK,
      checkpoint: join(dir, 'ckpt'),
      out: join(dir, 'results'),
      steps: 12,
      batch: 16,
      seq: 16,
      lrFull: 5e-3,
      lrAdapter: 1e-2,
      clsSeq: 16,
      dpoPromptLen: 16,
      dpoContinuationLen: 8,
      lrDpo: 1e-2,
      sampleChars: 8,
    },
    quiet,
  );
}, 600_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('npm run pretrain (tiny)', () => {
  it('trains: the loss falls from ln(vocab) and the record says what ran', () => {
    const { curve, finalValidationLoss, finalTrainLoss } = record;
    expect(record.steps).toBe(60);
    expect(curve.map((p) => p.step)).toEqual([30, 50, 60]);
    expect(record.parameters).toBeGreaterThan(0);
    expect(Number.isFinite(finalValidationLoss) && Number.isFinite(finalTrainLoss)).toBe(true);
    // A uniform guess over 98 characters is ln 98 = 4.585 nats; 60 steps must do better.
    expect(finalValidationLoss).toBeLessThan(Math.log(98) - 0.5);
    expect(curve[curve.length - 1]!.trainBatchLoss).toBeLessThan(curve[0]!.trainBatchLoss);
    expect(record.run.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('is reproducible: the same flags write the same checkpoint bytes', () => {
    const a = readFileSync(join(dir, 'ckpt', 'model.safetensors'));
    const b = readFileSync(join(dir, 'ckpt2', 'model.safetensors'));
    expect(a.equals(b)).toBe(true);
    expect(readFileSync(join(dir, 'ckpt', 'config.json'), 'utf8')).toBe(readFileSync(join(dir, 'ckpt2', 'config.json'), 'utf8'));
  });
});

describe('npm run demo (tiny)', () => {
  it('fine-tunes every language-model method; full fine-tuning lowers the in-distribution loss', () => {
    const { lm, base } = demo.result;
    expect(lm.map((m) => m.key)).toEqual(['full', 'frozen-half', 'lora-attn-r4', 'lora-attn-r8', 'lora-all-r4', 'lora-all-r8', 'bottleneck']);
    for (const m of lm) {
      expect(m.losses).toHaveLength(12);
      for (const x of [...m.losses, m.eval.id, m.eval.ood, m.eval.pt]) expect(Number.isFinite(x), m.name).toBe(true);
      expect(m.trainable).toBeGreaterThan(0);
      expect(m.trainable).toBeLessThanOrEqual(m.total);
    }
    const by = new Map(lm.map((m) => [m.key, m]));
    expect(by.get('full')!.eval.id).toBeLessThan(base.id);
    expect(by.get('frozen-half')!.eval.id).toBeLessThan(base.id);
    expect(by.get('lora-all-r8')!.eval.id).toBeLessThan(base.id);
    // Parameter counts follow from the shapes: n_embd 32, 2 blocks, MLP 128.
    expect(by.get('full')!.trainable).toBe(record.parameters);
    const perBlock = (r: number, attnOnly: boolean) => r * ((32 + 96) + (32 + 32) + (attnOnly ? 0 : (32 + 128) + (128 + 32)));
    expect(by.get('lora-attn-r4')!.trainable).toBe(2 * perBlock(4, true));
    expect(by.get('lora-all-r8')!.trainable).toBe(2 * perBlock(8, false));
    expect(by.get('lora-all-r8')!.optimizerStateBytes).toBe(8 * 2 * perBlock(8, false));
  });

  it('WiSE-FT: α = 0 is the pre-trained model exactly, α = 1 the fine-tuned one', () => {
    const { wiseft, base, lm } = demo.result;
    expect(wiseft).toHaveLength(2);
    for (const s of wiseft) {
      expect(s.points.map((p) => p.alpha)).toEqual([0, 0.5, 1]);
      const p0 = s.points[0]!;
      expect([p0.id, p0.ood, p0.pt]).toEqual([base.id, base.ood, base.pt]);
    }
    const full = lm.find((m) => m.key === 'full')!;
    const p1 = wiseft[0]!.points[2]!;
    expect([p1.id, p1.ood, p1.pt]).toEqual([full.eval.id, full.eval.ood, full.eval.pt]);
    // The merged LoRA model computes W + s·B·A where training ran the factors beside W: equal up to rounding.
    const lora = lm.find((m) => m.key === 'lora-all-r8')!;
    const m1 = wiseft[1]!.points[2]!;
    expect(Math.abs(m1.id - lora.eval.id)).toBeLessThan(1e-3);
  });

  it('the LoRA adapter is a PEFT adapter directory that reads back bit for bit', async () => {
    expect(demo.result.adapterDir).toBe(join(dir, 'results', 'lora-adapter'));
    const config = JSON.parse(readFileSync(join(demo.result.adapterDir!, 'adapter_config.json'), 'utf8'));
    expect(config.peft_type).toBe('LORA');
    expect(config.r).toBe(8);
    expect([...config.target_modules].sort()).toEqual(['attn.c_proj', 'c_attn', 'c_fc', 'mlp.c_proj']);
    const { model } = await loadGPT2(ctx, join(dir, 'ckpt'));
    const peft = await loadPeftAdapter(model, demo.result.adapterDir!);
    const loaded = peft.adapterStateDict();
    expect([...loaded.keys()].sort()).toEqual([...demo.adapterTensors.keys()].sort());
    expect(loaded.size).toBe(2 * 4 * 2);
    let nonZeroB = 0;
    for (const [k, t] of loaded) {
      const want = demo.adapterTensors.get(k)!;
      const got = await t.read();
      expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(want.buffer, want.byteOffset, want.byteLength)), k).toBe(true);
      if (k.endsWith('lora_B.weight') && want.some((x) => x !== 0)) nonZeroB++;
    }
    // B starts at zero: trained factors prove the saved adapter is the trained one.
    expect(nonZeroB).toBe(8);
    peft.dispose();
    model.dispose();
  });

  it('classification: three methods, accuracies on held-out snippets, the probe trains the head only', () => {
    const { classification } = demo.result;
    expect(classification.map((m) => m.key)).toEqual(['probe', 'lora-head', 'full']);
    for (const m of classification) {
      expect(m.accuracy).toBeGreaterThanOrEqual(0);
      expect(m.accuracy).toBeLessThanOrEqual(1);
      expect(Number.isFinite(m.validationLoss)).toBe(true);
    }
    expect(classification[0]!.trainable).toBe(3 * 32);
    // LoRA on attention + MLP plus the trained copy of the head (modules_to_save).
    expect(classification[1]!.trainable).toBe(2 * 8 * (128 + 64 + 160 + 160) + 3 * 32);
  });

  it('DPO: the reference is the model with adapters disabled, so the first loss is ln 2; the reward margin on the training pairs grows', () => {
    const dpo = demo.result.dpo!;
    expect(dpo.losses).toHaveLength(QUICK.dpoSteps!);
    // z = 0 at the first step (B = 0: policy = reference), −log σ(0) = ln 2, up to the fused LoRA kernel's rounding.
    expect(Math.abs(dpo.losses[0]! - Math.LN2)).toBeLessThan(1e-4);
    // The reference is fixed (adapters disabled): once the adapters move, z ≠ 0 and the loss leaves ln 2. A reference
    // that followed the policy (the adapters left on) would keep z = 0 and every loss at ln 2.
    expect(Math.max(...dpo.losses.slice(1).map((l) => Math.abs(l - Math.LN2)))).toBeGreaterThan(1e-3);
    // What DPO optimises: on the pairs it trained on, the chosen continuation's reward rises above the rejected one's.
    expect(dpo.after.train.rewardMargin).toBeGreaterThan(0);
    expect(dpo.after.train.pairs).toBe(Math.ceil(QUICK.dpoValPairs! / 2));
    for (const x of [dpo.after.heldOut.rewardMargin, dpo.after.lm.id, dpo.after.lm.ood, dpo.after.lm.pt]) expect(Number.isFinite(x)).toBe(true);
  });

  it('writes the report: table, plot, samples, timing', () => {
    const md = demo.markdown;
    expect(md).toMatch(/\| method +\| trainable \|/);
    expect(md).toContain('![WiSE-FT curves](wise-ft.png)');
    expect(md).toContain('## Where the time goes');
    const png = readFileSync(join(dir, 'results', 'wise-ft.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(readFileSync(join(dir, 'results', 'wise-ft.svg'), 'utf8')).toContain('<svg');
    const json = JSON.parse(readFileSync(join(dir, 'results', 'results.json'), 'utf8'));
    expect(json.lm).toHaveLength(7);
    expect(demo.result.samples.length).toBe(3);
  });
});
