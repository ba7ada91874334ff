/**
 * The README's picture of the page: build and serve it (as `npm run page` does), open it in
 * headless Chromium (its own WebGPU; SwiftShader on a machine without a GPU), train, move the
 * WiSE-FT slider, and save a screenshot.
 *
 *   npx tsx examples/browser/screenshot.ts [--checkpoint <dir>] [--steps 40] [--alpha 0.5]
 *
 * Writes examples/browser/screenshot.png unless --out says otherwise. Chromium:
 * WEBGPU_LORA_CHROMIUM or /usr/bin/chromium (scripts/ensure-browser.mjs installs it).
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { chromium } from 'playwright-core';
import { buildPage } from './build.js';
import { servePage } from './serve.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));

interface Options {
  checkpoint?: string;
  out: string;
  steps: number;
  batch: number;
  seq: number;
  lr: number;
  genre: string;
  sampleLen: number;
  alpha: number;
}

async function main(argv: string[]): Promise<void> {
  const int = (v: string) => Number.parseInt(v, 10);
  const o = new Command('screenshot')
    .option('--checkpoint <dir>', 'checkpoint folder (default as npm run page)')
    .option('--out <file>', 'PNG to write', resolve(HERE, 'screenshot.png'))
    .option('--steps <n>', 'training steps', int, 40)
    .option('--batch <n>', 'rows per step', int, 4)
    .option('--seq <n>', 'characters per row', int, 64)
    .option('--lr <x>', 'learning rate', Number, 0.005)
    .option('--genre <letter>', 'Brown genre', 'l')
    .option('--sample-len <n>', 'characters per sample', int, 120)
    .option('--alpha <x>', 'WiSE-FT slider position for the picture', Number, 0.5)
    .parse(argv)
    .opts<Options>();
  const b = await buildPage({ checkpoint: o.checkpoint });
  const s = await servePage({ dir: b.outDir, checkpointDir: b.checkpointDir });
  const browser = await chromium.launch({ executablePath: process.env.WEBGPU_LORA_CHROMIUM || '/usr/bin/chromium', args: ['--enable-unsafe-webgpu', '--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
    const q = new URLSearchParams({ steps: String(o.steps), batch: String(o.batch), seq: String(o.seq), lr: String(o.lr), genre: o.genre, sampleLen: String(o.sampleLen) });
    await page.goto(`${s.url}?${q}`);
    await page.waitForFunction(() => (window as unknown as { __webgpuLora?: { ready: boolean } }).__webgpuLora?.ready, undefined, { timeout: 300_000 });
    const idle = () => page.evaluate(() => (window as unknown as { __webgpuLora: { idle(): Promise<void> } }).__webgpuLora.idle());
    await idle();
    const t0 = Date.now();
    await page.click('#trainBtn');
    await page.waitForTimeout(500);
    await idle();
    console.log(`screenshot: trained ${o.steps} steps in ${((Date.now() - t0) / 1000).toFixed(0)} s (with sampling); ${await page.textContent('#status')}`);
    await page.evaluate((a) => {
      const el = document.getElementById('alpha') as HTMLInputElement;
      el.value = String(a);
      el.dispatchEvent(new Event('input', { bubbles: true }));
      el.dispatchEvent(new Event('change', { bubbles: true }));
    }, o.alpha);
    await idle();
    await page.screenshot({ path: o.out, fullPage: true });
    console.log(`screenshot: wrote ${o.out}`);
  } finally {
    await browser.close();
    await s.close();
  }
}

main(process.argv).catch((e) => {
  console.error(e);
  process.exit(1);
});
