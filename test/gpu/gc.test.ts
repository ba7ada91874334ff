import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

describe('Dawn instance lifetime', () => {
  it('survives forced garbage collection while a device is in use', () => {
    const child = fileURLToPath(new URL('./gc-child.ts', import.meta.url));
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', child], { encoding: 'utf8', timeout: 120_000 });
    // sum over i of 8·i (a row of ones times a matrix of i's), i < 40
    const expected = 8 * ((39 * 40) / 2);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`gc-child: ok ${expected}`);
  });
});
