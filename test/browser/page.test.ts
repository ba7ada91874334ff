/**
 * The fine-tuning page (examples/browser) in headless Chromium, on the page's own navigator.gpu
 * (SwiftShader on a machine without a GPU), served as `npm run page` serves it:
 *
 * - the bundle holds nothing Node-only (esbuild's metafile), and its size;
 * - the page loads a checkpoint from its origin, trains a LoRA adapter and the loss falls;
 * - the WiSE-FT slider: α = 0 gives the base model's logits bit for bit (and its sample), α = 1
 *   the adapter's logits, and the output changes in between;
 * - the downloaded zip is a PEFT adapter directory that the library's own reader loads in Node
 *   into the same checkpoint, with the page's tensors bit for bit, and that the PyTorch
 *   reference (test/torch, PEFT's loading rules) runs with the page's logits;
 * - an adapter made in Node, zipped and uploaded, is what the page then runs;
 * - without WebGPU the page says so.
 *
 * The checkpoint is a tiny random GPT-2 made here (the page's own checkpoint is the demo's, far
 * slower to train on SwiftShader); kernels compile once per page, which is most of the time.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { strFromU8, strToU8, unzipSync, zipSync } from 'fflate';
import { chromium, type Browser, type Page } from 'playwright-core';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { noGrad } from '../../src/autograd/tape.js';
import { parseSafetensors } from '../../src/io/safetensors.js';
import { GPT2LMHeadModel, gpt2Config } from '../../src/nn/gpt2.js';
import { loadGPT2, saveGPT2 } from '../../src/node.js';
import { adapterToFiles, loadAdapterFromFiles } from '../../src/peft/files.js';
import { getPeftModel } from '../../src/peft/lora.js';
import { buildPage, type PageBuild } from '../../examples/browser/build.js';
import { servePage, type PageServer } from '../../examples/browser/serve.js';
import { PROBE_TEXT } from '../../examples/browser/session.js';
import { CharVocab } from '../../examples/lib/vocab.js';
import { expectClose, testContext } from '../helpers.js';
import { closeTorch, runTorch } from '../torch/run.js';

const CHROMIUM = process.env.WEBGPU_LORA_CHROMIUM || '/usr/bin/chromium';
/** Small enough for SwiftShader: 8 steps of 8 × 16 characters. */
const QUERY = '?steps=8&batch=8&seq=16&lr=0.05&sampleLen=6&genre=l';

interface Hook {
  ready: boolean;
  webgpu: boolean | null;
  error: string | null;
  idle(): Promise<void>;
  losses(): number[];
  state(): { mode: string; alpha: number };
  baseProbe(): string;
  probe(): Promise<string>;
  adapterProbe(): Promise<string>;
  adapterTensors(): Promise<Record<string, { shape: number[]; data: string }>>;
}
declare global {
  interface Window {
    __webgpuLora: Hook;
  }
}

const f32 = (b64: string) => {
  const b = Buffer.from(b64, 'base64');
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const bytesOf = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** A Node model's logits of PROBE_TEXT (the page's probe). */
async function probeInNode(model: GPT2LMHeadModel): Promise<Float32Array> {
  const ids = Array.from(new CharVocab().encode(PROBE_TEXT));
  const t = ctx.scope(() => noGrad(ctx, () => model.forward({ ids, shape: [1, ids.length] })));
  const v = await t.read();
  t.dispose();
  return v;
}

let ctx: GpuContext;
let tmp: string;
let ckpt: string;
let page: Page;
let built: PageBuild;
let served: PageServer;
let browser: Browser;
const pageErrors: string[] = [];

beforeAll(async () => {
  ctx = await testContext();
  tmp = await mkdtemp(join(tmpdir(), 'webgpu-lora-page-'));
  ckpt = join(tmp, 'tiny-gpt2');
  const vocab = new CharVocab();
  const model = GPT2LMHeadModel.create(
    ctx,
    gpt2Config({ vocab_size: vocab.size, n_positions: 64, n_embd: 16, n_layer: 1, n_head: 2, initializer_range: 0.2, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0, bos_token_id: null, eos_token_id: null }),
    { seed: 3 },
  );
  await saveGPT2(model, ckpt);
  model.dispose();
  built = await buildPage({ outDir: join(tmp, 'site'), checkpoint: ckpt, log: () => {} });
  served = await servePage({ dir: built.outDir, checkpointDir: built.checkpointDir });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--enable-unsafe-webgpu', '--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  page.on('pageerror', (e) => pageErrors.push(e.message));
}, 300_000);

afterAll(async () => {
  await closeTorch();
  await browser?.close();
  await served?.close();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Set the α slider as a visitor does (input, then change) and wait until the page has regenerated. */
async function slide(alpha: number): Promise<void> {
  await page.evaluate((a) => {
    const el = document.getElementById('alpha') as HTMLInputElement;
    el.value = String(a);
    el.dispatchEvent(new Event('input', { bubbles: true }));
    el.dispatchEvent(new Event('change', { bubbles: true }));
  }, alpha);
  await page.evaluate(() => window.__webgpuLora.idle());
}

describe('the page bundle', () => {
  it('holds no Node-only module: no node: builtins, no fs/path, no `webgpu` package, no external imports', async () => {
    const inputs = Object.keys(built.metafile.inputs);
    const output = Object.values(built.metafile.outputs).find((o) => o.entryPoint)!;
    console.log(`page bundle: app.js ${(built.bundleBytes / 1024).toFixed(1)} KiB minified, ${(built.bundleGzipBytes / 1024).toFixed(1)} KiB gzip; ${inputs.length} inputs`);
    expect(inputs.filter((i) => /^node:|(^|\/)node_modules\/webgpu\//.test(i))).toEqual([]);
    // The Node entries of the library and the examples' corpus reader must not be reached.
    expect(inputs.filter((i) => /(^|\/)src\/(node|gpu\/node|gpu\/pollBackoff|io\/node)\.ts$|examples\/lib\/brown\.ts$|examples\/browser\/(build|serve|fallback)\.ts$/.test(i))).toEqual([]);
    expect(inputs).toContain('src/index.ts');
    expect(output.imports).toEqual([]);
    const js = await readFile(join(built.outDir, 'app.js'), 'utf8');
    expect(js).not.toMatch(/\brequire\(\s*["'](node:|fs|path|os|module|child_process)/);
    expect(js).not.toMatch(/\bfrom\s*["'](node:|fs["']|path["'])/);
  });
});

describe('the fine-tuning page in headless Chromium', () => {
  let base: Float32Array;

  it('loads the checkpoint from its origin, shows the adapter and its features, trains a LoRA adapter, and the loss falls', async () => {
    await page.goto(served.url + QUERY);
    await page.waitForFunction(() => window.__webgpuLora?.ready, undefined, { timeout: 120_000 });
    expect(await page.evaluate(() => window.__webgpuLora.error)).toBeNull();
    expect(await page.evaluate(() => window.__webgpuLora.webgpu)).toBe(true);
    await page.evaluate(() => window.__webgpuLora.idle());
    const device = await page.textContent('#device');
    expect(device).toMatch(/GPU .+features in use.*f16.*subgroups.*model tiny-gpt2: GPT-2, 1 layer, 16 wide/);
    expect((await page.textContent('#before'))!.startsWith(PROBE_TEXT)).toBe(true);
    base = f32(await page.evaluate(() => window.__webgpuLora.baseProbe()));
    expect(base.length).toBe(PROBE_TEXT.length * 98);

    await page.click('#trainBtn');
    await page.waitForFunction(() => window.__webgpuLora.losses().length > 0, undefined, { timeout: 200_000 });
    await page.evaluate(() => window.__webgpuLora.idle());
    const losses = await page.evaluate(() => window.__webgpuLora.losses());
    console.log(`page: losses ${losses.map((l) => l.toFixed(4)).join(' ')}; ${await page.textContent('#s-sps')} steps/s, ${await page.textContent('#s-tps')} tokens/s`);
    expect(losses).toHaveLength(8);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(mean(losses.slice(-3))).toBeLessThan(mean(losses.slice(0, 3)));
    // On the same held-out windows (deterministic): the adapter's loss is below the base model's.
    const heldOut = async (id: string) => Number(/held-out loss (\d+\.\d+)/.exec((await page.textContent(id))!)![1]);
    console.log(`page: held-out loss ${await heldOut('#before-loss')} before, ${await heldOut('#after-loss')} after`);
    expect(await heldOut('#after-loss')).toBeLessThan(await heldOut('#before-loss'));
    expect(await page.textContent('#status')).toMatch(/^trained after 8 steps/);
    expect(await page.textContent('#s-step')).toBe('8');
    expect(Number(await page.textContent('#s-sps'))).toBeGreaterThan(0);
    const shot = join(tmp, 'page.png');
    await page.screenshot({ path: shot, fullPage: true });
    if (process.env.WEBGPU_LORA_PAGE_SCREENSHOT) await writeFile(process.env.WEBGPU_LORA_PAGE_SCREENSHOT, await readFile(shot));
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it('WiSE-FT slider: α = 0 is the base model bit for bit, α = 1 the adapter, and the output changes between them', async () => {
    expect(await page.evaluate(() => window.__webgpuLora.state())).toEqual({ mode: 'wise', alpha: 1 });
    const one = f32(await page.evaluate(() => window.__webgpuLora.probe()));
    const adapter = f32(await page.evaluate(() => window.__webgpuLora.adapterProbe()));
    // θ_pre + s·B·A (merged) against the fused LoRA forward: equal up to rounding.
    expectClose(one, adapter, { atol: 1e-5, rtol: 1e-4 }, 'α = 1 against the adapter');
    expect(bytesOf(one).equals(bytesOf(base))).toBe(false);
    const wiseAtOne = await page.textContent('#wise');

    await slide(0);
    expect(await page.evaluate(() => window.__webgpuLora.state())).toEqual({ mode: 'wise', alpha: 0 });
    expect(await page.textContent('#alphaLabel')).toBe('α = 0.00');
    const zero = f32(await page.evaluate(() => window.__webgpuLora.probe()));
    expect(bytesOf(zero).equals(bytesOf(base)), 'α = 0 reproduces the base logits bit for bit').toBe(true);
    // The same weights and seed as the "before" column: the same text.
    expect(await page.textContent('#wise')).toBe(await page.textContent('#before'));
    expect(await page.textContent('#wise')).not.toBe(wiseAtOne);

    await slide(0.5);
    const half = f32(await page.evaluate(() => window.__webgpuLora.probe()));
    expect(bytesOf(half).equals(bytesOf(base))).toBe(false);
    expect(bytesOf(half).equals(bytesOf(one))).toBe(false);
    expect(await page.textContent('#wise-loss')).toMatch(/held-out loss \d+\.\d{3} nats\/char at α = 0\.50/);
    // Back to the adapter (training, downloads) restores θ_pre exactly: its logits are unchanged.
    expect(bytesOf(f32(await page.evaluate(() => window.__webgpuLora.adapterProbe()))).equals(bytesOf(adapter))).toBe(true);
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it('downloads a PEFT adapter zip that loads in Node into the same checkpoint with the same tensors', async () => {
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 120_000 }), page.click('#downloadBtn')]);
    expect(download.suggestedFilename()).toBe('tiny-gpt2-lora.zip');
    const files = unzipSync(new Uint8Array(await readFile((await download.path())!)));
    expect(Object.keys(files).filter((f) => !f.endsWith('/')).sort()).toEqual(['tiny-gpt2-lora/adapter_config.json', 'tiny-gpt2-lora/adapter_model.safetensors']);
    const configText = strFromU8(files['tiny-gpt2-lora/adapter_config.json']!);
    const config = JSON.parse(configText);
    expect(config).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 16, base_model_name_or_path: 'tiny-gpt2', fan_in_fan_out: true, inference_mode: true });
    expect([...config.target_modules].sort()).toEqual(['c_attn', 'c_fc', 'c_proj']);
    const file = parseSafetensors(files['tiny-gpt2-lora/adapter_model.safetensors']!);
    expect(file.metadata).toEqual({ format: 'pt' });

    const inPage = await page.evaluate(() => window.__webgpuLora.adapterTensors());
    const names = file.tensors.map((t) => t.name).sort();
    expect(names).toEqual(Object.keys(inPage).sort());
    expect(names).toContain('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight');
    for (const t of file.tensors) {
      expect(t.dtype).toBe('F32');
      expect(t.shape, t.name).toEqual(inPage[t.name]!.shape);
      expect(Buffer.from(t.bytes()).equals(Buffer.from(inPage[t.name]!.data, 'base64')), `${t.name}: file = page, bit for bit`).toBe(true);
    }
    // Trained: B is no longer zero.
    expect(f32(inPage['base_model.model.transformer.h.0.attn.c_attn.lora_B.weight']!.data).some((v) => v !== 0)).toBe(true);

    // The library's own reader in Node, into the same checkpoint.
    const { model } = await loadGPT2(ctx, ckpt);
    const peft = loadAdapterFromFiles(model, configText, file);
    for (const [name, t] of peft.adapterStateDict()) {
      expect(bytesOf(await t.read()).equals(Buffer.from(inPage[name]!.data, 'base64')), `${name}: Node = page, bit for bit`).toBe(true);
    }
    const logits = await probeInNode(model);
    // Another adapter (lavapipe in Node, SwiftShader in the page): equal up to rounding.
    expectClose(logits, f32(await page.evaluate(() => window.__webgpuLora.adapterProbe())), { atol: 1e-5, rtol: 1e-4 }, 'Node logits with the downloaded adapter against the page');
    model.dispose();

    // Unzipped, the folder is a PEFT adapter directory: the PyTorch reference (test/torch, PEFT's loading rules) runs it.
    const dir = join(tmp, 'unzipped');
    await mkdir(join(dir, 'tiny-gpt2-lora'), { recursive: true });
    for (const [name, bytes] of Object.entries(files)) if (!name.endsWith('/')) await writeFile(join(dir, name), bytes);
    const ids = Array.from(new CharVocab().encode(PROBE_TEXT));
    const ref = await runTorch({ model_dir: ckpt, adapter_dir: join(dir, 'tiny-gpt2-lora'), batches: [{ input_ids: [ids] }] });
    expectClose(f32(await page.evaluate(() => window.__webgpuLora.adapterProbe())), ref['logits.0']!.data, { atol: 2e-5, rtol: 1e-4 }, 'the page against the PyTorch reference with the downloaded adapter');
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it('uploads a PEFT adapter zip made in Node and runs it; a zip without an adapter is refused and changes nothing', async () => {
    const { model } = await loadGPT2(ctx, ckpt);
    // r = 4 on attention only, B random too (init_lora_weights false), so it differs from the page's in every way.
    const peft = getPeftModel(model, { r: 4, lora_alpha: 8, target_modules: ['c_attn'], init_lora_weights: false, task_type: 'CAUSAL_LM' }, 'default', { seed: 11, warn: () => {} });
    const { config, weights } = await adapterToFiles(peft);
    const zipPath = join(tmp, 'node-adapter.zip');
    await writeFile(zipPath, zipSync({ 'node-adapter': { 'adapter_config.json': strToU8(config), 'adapter_model.safetensors': weights } }));
    await page.setInputFiles('#upload', zipPath);
    await page.waitForFunction(() => /^loaded node-adapter\.zip/.test(document.getElementById('status')!.textContent ?? ''), undefined, { timeout: 120_000 });
    await page.evaluate(() => window.__webgpuLora.idle());
    expect(await page.textContent('#fileinfo')).toBe('loaded node-adapter.zip: r = 4, targets ["c_attn"]');
    expect(await page.textContent('#adapterinfo')).toMatch(/^adapter: r = 4, α = 8, \["c_attn"\]/);

    const inPage = await page.evaluate(() => window.__webgpuLora.adapterTensors());
    const file = parseSafetensors(weights);
    expect(Object.keys(inPage).sort()).toEqual(file.tensors.map((t) => t.name).sort());
    for (const t of file.tensors) expect(Buffer.from(t.bytes()).equals(Buffer.from(inPage[t.name]!.data, 'base64')), `${t.name}: page = uploaded, bit for bit`).toBe(true);
    const logits = await probeInNode(model);
    expectClose(f32(await page.evaluate(() => window.__webgpuLora.adapterProbe())), logits, { atol: 1e-5, rtol: 1e-4 }, 'the page with the uploaded adapter against Node');
    model.dispose();

    // An adapter for another model (n_embd 32): refused with the mismatch named; the page keeps its adapter and weights.
    const stateBefore = await page.evaluate(() => window.__webgpuLora.state());
    const probeBefore = await page.evaluate(() => window.__webgpuLora.probe());
    const other = GPT2LMHeadModel.create(ctx, gpt2Config({ vocab_size: 98, n_positions: 64, n_embd: 32, n_layer: 1, n_head: 2 }), { seed: 5 });
    const otherFiles = await adapterToFiles(getPeftModel(other, { r: 4, lora_alpha: 8, target_modules: ['c_attn'] }, 'default', { warn: () => {} }));
    other.dispose();
    const wrongPath = join(tmp, 'wrong-model.zip');
    await writeFile(wrongPath, zipSync({ 'adapter_config.json': strToU8(otherFiles.config), 'adapter_model.safetensors': otherFiles.weights }));
    await page.setInputFiles('#upload', wrongPath);
    await page.waitForFunction(() => document.getElementById('status')!.classList.contains('error'), undefined, { timeout: 60_000 });
    await page.evaluate(() => window.__webgpuLora.idle());
    expect(await page.textContent('#status')).toMatch(
      /^upload: loadAdapter 'upload\d+': the adapter does not fit GPT2LMHeadModel: 'base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight': expected \[4,16\], found \[4,32\]/,
    );
    expect(await page.evaluate(() => window.__webgpuLora.state())).toEqual(stateBefore);
    expect(await page.evaluate(() => window.__webgpuLora.probe())).toBe(probeBefore);
    await page.click('#sampleBtn'); // clears the error line
    await page.evaluate(() => window.__webgpuLora.idle());

    const badPath = join(tmp, 'not-an-adapter.zip');
    await writeFile(badPath, zipSync({ 'README.txt': strToU8('no adapter here') }));
    await page.setInputFiles('#upload', badPath);
    await page.waitForFunction(() => document.getElementById('status')!.classList.contains('error'), undefined, { timeout: 60_000 });
    await page.evaluate(() => window.__webgpuLora.idle());
    expect(await page.textContent('#status')).toBe('upload: not-an-adapter.zip: expected one adapter_config.json, found 0 (entries: README.txt)');
    const after = await page.evaluate(() => window.__webgpuLora.adapterTensors());
    for (const t of file.tensors) expect(after[t.name]!.data).toBe(inPage[t.name]!.data);
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it('Stop ends a long run after the step in flight: the page stays responsive while it trains', async () => {
    const before = (await page.evaluate(() => window.__webgpuLora.losses())).length;
    await page.fill('#steps', '400');
    await page.click('#trainBtn');
    await page.waitForFunction((n) => window.__webgpuLora.losses().length >= n + 2, before, { timeout: 200_000, polling: 50 });
    await page.click('#stopBtn');
    await page.evaluate(() => window.__webgpuLora.idle());
    const done = (await page.evaluate(() => window.__webgpuLora.losses())).length - before;
    expect(done).toBeGreaterThanOrEqual(2);
    expect(done).toBeLessThan(400);
    expect(await page.textContent('#status')).toMatch(new RegExp(`^stopped after ${done} steps`));
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it('the server answers a request target that is not a URL path with 400 and goes on serving', async () => {
    const { port } = new URL(served.url);
    const raw = await new Promise<string>((resolveRaw, reject) => {
      const sock = connect(Number(port), '127.0.0.1', () => sock.end('GET //[ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('end', () => resolveRaw(got));
      sock.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect((await fetch(`${served.url}page.json`)).status).toBe(200);
    expect((await fetch(`${served.url}../package.json`)).status).toBe(404);
  });

  it('without WebGPU says so plainly', async () => {
    const p = await browser.newPage();
    await p.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }));
    await p.goto(served.url);
    await p.waitForFunction(() => window.__webgpuLora?.ready, undefined, { timeout: 60_000 });
    expect(await p.evaluate(() => window.__webgpuLora.webgpu)).toBe(false);
    expect(await p.isVisible('#nogpu')).toBe(true);
    expect(await p.textContent('#nogpu h2')).toBe('WebGPU is not available');
    expect(await p.textContent('#nogpu-why')).toBe('This browser has no navigator.gpu (WebGPU is missing or switched off).');
    expect(await p.isDisabled('#trainBtn')).toBe(true);
    await p.close();
  }, 120_000);
});
