/**
 * The library unchanged in a browser: test/browser/page.ts is bundled (esbuild) and run in
 * headless Chromium on the page's navigator.gpu (on a machine without a GPU, Chromium's own
 * software adapter, SwiftShader), where it checks kernels against the f64 references and a
 * LoRA training step. scripts/ensure-browser.mjs (pretest) provides Chromium.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Check } from './page.js';

const CHROMIUM = process.env.WEBGPU_LORA_CHROMIUM || '/usr/bin/chromium';

let server: Server;
let browser: Browser;
let url: string;

beforeAll(async () => {
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('./page.ts', import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'chrome120',
    write: false,
  });
  const js = bundle.outputFiles[0]!.text;
  server = createServer((req, res) => {
    if (req.url === '/page.js') {
      res.setHeader('content-type', 'text/javascript');
      res.end(js);
    } else {
      res.setHeader('content-type', 'text/html');
      res.end('<!doctype html><meta charset="utf-8"><title>webgpu-lora</title><script type="module" src="/page.js"></script>');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  // 127.0.0.1 is a secure context, which navigator.gpu requires.
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--enable-unsafe-webgpu', '--no-sandbox'] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  server?.close();
});

describe('in a browser (headless Chromium, navigator.gpu)', () => {
  it('runs matmul, LoRA forward/backward and a LoRA training step against the references', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForFunction(() => 'runChecks' in globalThis, undefined, { timeout: 60_000 });
    const r = (await page.evaluate(() => (globalThis as unknown as { runChecks: () => Promise<unknown> }).runChecks())) as {
      adapter: string;
      software: boolean;
      f16: boolean;
      matmul: string;
      checks: Check[];
    };
    console.log(`browser adapter: ${r.adapter} (software: ${r.software}, f16: ${r.f16}, default matmul: ${r.matmul}); ${r.checks.length} checks`);
    for (const c of r.checks.filter((c) => c.name.startsWith('ParamArena'))) console.log(`  ${c.name}: ${c.detail}`);
    expect(errors).toEqual([]);
    const failed = r.checks.filter((c) => !c.ok);
    expect(failed, JSON.stringify(failed, null, 1)).toEqual([]);
    expect(r.checks.length).toBeGreaterThanOrEqual(33);
    await page.close();
  }, 300_000);
});
