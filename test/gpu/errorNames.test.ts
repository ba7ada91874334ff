/**
 * Error names survive minification: a bundler that renames classes (esbuild --minify, as a page
 * ships the library) must not turn `ShapeError` into `o` in messages and `err.name`.
 */
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';
import * as errors from '../../src/gpu/errors.js';

describe('error names', () => {
  it('every typed error keeps its name in a minified bundle', async () => {
    const names = Object.keys(errors).filter((k) => /Error$/.test(k));
    expect(names.length).toBeGreaterThanOrEqual(9);
    const out = await build({
      stdin: {
        contents:
          `import * as e from './src/gpu/errors.ts'; import { SafetensorsError } from './src/io/errors.ts';\n` +
          `globalThis.__names = [...${JSON.stringify(names)}.map((n) => new e[n]('m').name), new SafetensorsError('m').name];`,
        resolveDir: process.cwd(),
        loader: 'ts',
      },
      bundle: true,
      minify: true,
      write: false,
      format: 'iife',
    });
    const g = globalThis as { __names?: string[] };
    new Function(out.outputFiles[0]!.text)();
    expect(g.__names).toEqual([...names, 'SafetensorsError']);
    // And unminified, in place.
    expect(new errors.ShapeError('x').name).toBe('ShapeError');
    expect(String(new errors.DisposedError('gone'))).toBe('DisposedError: gone');
  });
});
