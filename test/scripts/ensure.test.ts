import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../../scripts/ensure-adapter.mjs', import.meta.url));
const run = (env: Record<string, string>) => spawnSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });

describe('scripts/ensure-adapter.mjs', () => {
  it('finds the adapter this suite runs on', () => {
    const r = run({});
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/ensure-adapter: adapter found: \{"vendor"/);
  });

  it('with no Vulkan driver visible and installing disabled, prints the exact commands and fails', () => {
    const r = run({ VK_DRIVER_FILES: '/nonexistent.json', VK_ICD_FILENAMES: '/nonexistent.json', WEBGPU_LORA_NO_INSTALL: '1' });
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('ensure-adapter: no WebGPU adapter found by Dawn');
    expect(r.stdout).toMatch(/apt-get install -y .*mesa-vulkan-drivers/);
  });
});

const browserScript = fileURLToPath(new URL('../../scripts/ensure-browser.mjs', import.meta.url));
const runBrowser = (env: Record<string, string>) =>
  spawnSync(process.execPath, [browserScript], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });

describe('scripts/ensure-browser.mjs', () => {
  it('finds the Chromium the browser test runs in', () => {
    const r = runBrowser({});
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/ensure-browser: (found|installed) \S+: Chromium \d+/);
  });

  it('with no Chromium at the given path and installing disabled, prints the exact command and fails', () => {
    const r = runBrowser({ WEBGPU_LORA_CHROMIUM: '/nonexistent/chromium', WEBGPU_LORA_NO_INSTALL: '1' });
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('ensure-browser: no Chromium at /nonexistent/chromium');
    expect(r.stdout).toContain('apt-get update && apt-get install -y chromium');
  });
});

const torchScript = fileURLToPath(new URL('../../scripts/ensure-torch.mjs', import.meta.url));
const runTorchCheck = (env: Record<string, string>) =>
  spawnSync(process.execPath, [torchScript], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 180_000 });

describe('scripts/ensure-torch.mjs', () => {
  it('finds the torch the reference tests (test/torch) run on', () => {
    const r = runTorchCheck({});
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/ensure-torch: (found|installed) torch \d+\.\d+\S* for \S+/);
  });

  it('with an interpreter that cannot import torch and installing disabled, prints the exact command and fails', () => {
    const r = runTorchCheck({ WEBGPU_LORA_PYTHON: '/nonexistent/python3', WEBGPU_LORA_NO_INSTALL: '1' });
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('ensure-torch: /nonexistent/python3 cannot import torch');
    expect(r.stdout).toContain('apt-get update && apt-get install -y python3-torch');
  });
});
