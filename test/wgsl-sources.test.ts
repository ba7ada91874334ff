import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { wgsl } from '../src/wgsl/sources.js';

const dir = fileURLToPath(new URL('../src/wgsl/', import.meta.url));

describe('embedded WGSL', () => {
  it('src/wgsl/sources.ts matches the .wgsl files', () => {
    const r = spawnSync(process.execPath, [fileURLToPath(new URL('../scripts/gen-wgsl.mjs', import.meta.url)), '--check'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.wgsl'))) {
      expect(wgsl[f.slice(0, -5) as keyof typeof wgsl]).toBe(readFileSync(dir + f, 'utf8'));
    }
  });
});
