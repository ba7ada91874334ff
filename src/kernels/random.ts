/**
 * Launchers for src/wgsl/random.wgsl: seeded uniform and normal initialisation on the
 * GPU, and dropout whose mask is regenerated from (seed, offset) rather than stored.
 *
 * ```ts
 * uniform(ctx, A, { seed: 42, lo: -bound, hi: bound });   // Kaiming-uniform init of a LoRA A
 * const xd = dropout(ctx, x, { p: 0.1, seed: 42, offset: step });
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError } from '../gpu/errors.js';
import { KernelModule, type DType } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { checkTensor, grid2d, outputTensor } from './util.js';

export function randomModule(dtype: DType): KernelModule {
  return KernelModule.get('random.wgsl', wgsl.random, dtype);
}

export interface RandomOptions {
  /** Non-negative integer below 2^53. */
  seed: number;
  /** Selects an independent stream for the same seed (e.g. the training step), < 2^32. */
  offset?: number;
}

function run(ctx: GpuContext, op: string, entry: string, out: Tensor, x: Tensor | null, o: RandomOptions, a: number, b: number): void {
  const seed = o.seed;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new ArgumentError(`${op}: seed = ${seed}, expected a non-negative integer below 2^53`);
  // Philox's 64-bit key: the seed's low and high 32 bits.
  const seedLo = seed % 2 ** 32;
  const seedHi = Math.floor(seed / 2 ** 32);
  const offset = o.offset ?? 0;
  if (!Number.isInteger(offset) || offset < 0 || offset >= 2 ** 32) throw new ArgumentError(`${op}: offset = ${offset}, expected an integer in [0, 2^32)`);
  for (const [k, v] of [['a', a], ['b', b]] as const) if (!Number.isFinite(v)) throw new ArgumentError(`${op}: ${k === 'a' ? 'first' : 'second'} parameter = ${v}, expected a finite number`);
  ctx.dispatch(randomModule(out.dtype), entry, {
    bindings: x ? { x, out } : { out },
    params: { n: out.size, seedLo, seedHi, offset, a, b },
    workgroups: grid2d(ctx, Math.ceil(out.size / randomModule(out.dtype).workgroupSize(entry)[0]), op),
  });
}

/** Fill `t` with uniforms in (lo, hi). */
export function uniform(ctx: GpuContext, t: Tensor, o: RandomOptions & { lo: number; hi: number }): Tensor {
  checkTensor('uniform', 't', t);
  if (!(o.hi > o.lo)) throw new ArgumentError(`uniform: hi = ${o.hi} must exceed lo = ${o.lo}`);
  run(ctx, 'uniform', 'rand_uniform', t, null, o, o.lo, o.hi);
  return t;
}

/** Fill `t` with normals of the given mean and std. */
export function normal(ctx: GpuContext, t: Tensor, o: RandomOptions & { mean?: number; std: number }): Tensor {
  checkTensor('normal', 't', t);
  if (!(o.std >= 0)) throw new ArgumentError(`normal: std = ${o.std}, expected >= 0`);
  run(ctx, 'normal', 'rand_normal', t, null, o, o.mean ?? 0, o.std);
  return t;
}

/** Inverted dropout: each element kept with probability 1 − p and scaled by 1/(1 − p). */
export function dropout(ctx: GpuContext, x: Tensor, o: RandomOptions & { p: number }, out?: Tensor): Tensor {
  const dt = checkTensor('dropout', 'x', x);
  if (!(o.p >= 0 && o.p < 1)) throw new ArgumentError(`dropout: p = ${o.p}, expected 0 <= p < 1`);
  const y = outputTensor(ctx, 'dropout', out, x.shape, dt);
  run(ctx, 'dropout', 'dropout', y, x, o, o.p, 0);
  return y;
}
