/**
 * Bad input: each case is a typed error whose message names the op, the argument,
 * what was expected and what was found.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, BindingError, DisposedError, DTypeError, ShapeError, SizeLimitError } from '../../src/gpu/errors.js';
import { add, copy } from '../../src/kernels/elementwise.js';
import { elementwiseModule } from '../../src/kernels/elementwise.js';
import { matmul } from '../../src/kernels/matmul.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('bad input', () => {
  it('shape mismatch names both operands and the dimensions', () => {
    const e = ctx.scope(() => thrown(() => matmul(ctx, ctx.empty([3, 4], 'f32', 'x'), ctx.empty([5, 6], 'f32', 'w'))));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toBe('matmul: inner dimensions differ: op(A) is [M=3,K=4] (A [3,4]), op(B) is [K=5,N=6] (B [5,6])');
    const e2 = ctx.scope(() => thrown(() => add(ctx, ctx.empty([3, 4]), ctx.empty([3]))));
    expect(e2).toBeInstanceOf(ShapeError);
    expect(e2.message).toMatch(/add: y \[3\] does not broadcast to x \[3,4\]/);
  });

  it('wrong rank, bias shape, out shape', () => {
    ctx.scope(() => {
      const a = ctx.empty([2, 3]);
      const b = ctx.empty([3, 4]);
      expect(() => matmul(ctx, ctx.empty([2]), b)).toThrow(/matmul: A has shape \[2\], expected rank 2 or 3/);
      expect(() => matmul(ctx, a, b, { bias: ctx.empty([3]) })).toThrow(/matmul: bias has shape \[3\], expected \[N\] = \[4\]/);
      expect(() => matmul(ctx, a, b, { out: ctx.empty([4, 2]) })).toThrow(/matmul: out has shape \[4,2\], expected \[2,4\]/);
    });
  });

  it('wrong dtype: operands that differ, a binding of the wrong element type', () => {
    ctx.scope(() => {
      if (ctx.caps.f16) {
        const e = thrown(() => matmul(ctx, ctx.empty([2, 2]), ctx.empty([2, 2], 'f16')));
        expect(e).toBeInstanceOf(DTypeError);
        expect(e.message).toBe('matmul: A is f32 and B is f16; they must match');
        const e2 = thrown(() =>
          ctx.dispatch(elementwiseModule('f32'), 'copy', { bindings: { x: ctx.empty([4], 'f16', 'h'), out: ctx.empty([4]) }, params: { n: 4, ny: 1, alpha: 0, per: 1 }, workgroups: [1] }),
        );
        expect(e2).toBeInstanceOf(DTypeError);
        expect(e2.message).toMatch(/elementwise\.wgsl:copy: binding 'x' is array<f32>, got tensor 'h' of dtype f16/);
      }
      expect(() => ctx.empty([2], 'f64' as never)).toThrow(DTypeError);
    });
  });

  it('zero-size and non-integer dimensions', () => {
    const e = thrown(() => ctx.empty([3, 0], 'f32', 'x'));
    expect(e).toBeInstanceOf(ShapeError);
    expect(e.message).toBe('x: shape [3,0] has dimension 0, expected integers >= 1');
    expect(() => ctx.empty([2.5])).toThrow(ShapeError);
    expect(() => ctx.tensor([1, 2, 3], [2, 2], 'f32', 'w')).toThrow('w: data has 3 elements, shape [2,2] needs 4');
  });

  it('a tensor over maxStorageBufferBindingSize', () => {
    const max = ctx.caps.limits.maxStorageBufferBindingSize!;
    const n = max / 4 + 1;
    const e = thrown(() => ctx.empty([n], 'f32', 'huge'));
    expect(e).toBeInstanceOf(SizeLimitError);
    expect(e.message).toBe(`huge: [${n}] f32 is ${n * 4} bytes, over this device's maxStorageBufferBindingSize ${max}`);
  });

  it('a raw buffer binding over maxStorageBufferBindingSize', () => {
    const max = ctx.caps.limits.maxStorageBufferBindingSize!;
    const big = ctx.device.createBuffer({ size: max + 256, usage: GPUBufferUsage_STORAGE });
    try {
      const e = thrown(() =>
        ctx.dispatch(elementwiseModule('f32'), 'copy', { bindings: { x: big, out: ctx.keep(ctx.empty([4])) }, params: { n: 4, ny: 1, alpha: 0, per: 1 }, workgroups: [1] }),
      );
      expect(e).toBeInstanceOf(SizeLimitError);
      expect(e.message).toBe(`elementwise.wgsl:copy: binding 'x' is ${max + 256} bytes, over maxStorageBufferBindingSize ${max}`);
    } finally {
      big.destroy();
    }
  });

  it('a disposed tensor', async () => {
    const x = ctx.tensor([1, 2], [2], 'f32', 'weights');
    x.dispose();
    const e = thrown(() => copy(ctx, x));
    expect(e).toBeInstanceOf(DisposedError);
    expect(e.message).toBe("copy: x: tensor 'weights' [2] f32 was disposed");
    await expect(x.read()).rejects.toThrow(DisposedError);
  });

  it('a destroyed buffer is reported as DisposedError at the next sync', async () => {
    const raw = ctx.device.createBuffer({ size: 16, usage: GPUBufferUsage_STORAGE, label: 'rawbuf' });
    raw.destroy();
    const out = ctx.empty([4]);
    ctx.dispatch(elementwiseModule('f32'), 'copy', { bindings: { x: raw, out }, params: { n: 4, ny: 1, alpha: 0, per: 1 }, workgroups: [1] });
    await expect(ctx.sync()).rejects.toThrow(DisposedError);
    out.dispose();
  });

  it('unknown override constant, unknown or missing binding, unknown or missing param, bad scalar', () => {
    const m = elementwiseModule('f32');
    ctx.scope(() => {
      const x = ctx.empty([4]);
      const out = ctx.empty([4]);
      const p = { n: 4, ny: 1, alpha: 0, per: 1 };
      let e = thrown(() => ctx.dispatch(m, 'copy', { bindings: { x, out }, params: p, constants: { TILE: 4 }, workgroups: [1] }));
      expect(e).toBeInstanceOf(ArgumentError);
      expect(e.message).toBe("elementwise.wgsl:copy: unknown override constant 'TILE' (declared: none)");
      e = thrown(() => ctx.dispatch(m, 'copy', { bindings: { out }, params: p, workgroups: [1] }));
      expect(e).toBeInstanceOf(BindingError);
      expect(e.message).toBe("elementwise.wgsl:copy: binding 'x' (@binding(0), read-only-storage f32) was not given");
      e = thrown(() => ctx.dispatch(m, 'copy', { bindings: { x, out, z: x }, params: p, workgroups: [1] }));
      expect(e.message).toBe("elementwise.wgsl:copy: unknown binding(s) 'z' (has x, out, params)");
      e = thrown(() => ctx.dispatch(m, 'copy', { bindings: { x, out }, params: { n: 4, ny: 1, per: 1 }, workgroups: [1] }));
      expect(e.message).toBe('elementwise.wgsl:copy: params.alpha (f32) was not given');
      e = thrown(() => ctx.dispatch(m, 'copy', { bindings: { x, out }, params: { ...p, beta: 1 }, workgroups: [1] }));
      expect(e.message).toBe('elementwise.wgsl:copy: unknown params.beta (has n, ny, alpha, per)');
      e = thrown(() => ctx.dispatch(m, 'copy', { bindings: { x, out }, params: { ...p, n: -1 }, workgroups: [1] }));
      expect(e.message).toBe('elementwise.wgsl:copy: params.n = -1, expected an integer in [0, 2^32)');
      e = thrown(() => ctx.dispatch(m, 'copy', { bindings: { x, out }, params: p, workgroups: [70000] }));
      expect(e).toBeInstanceOf(SizeLimitError);
      expect(e.message).toBe('elementwise.wgsl:copy: workgroups[0] = 70000, over maxComputeWorkgroupsPerDimension 65535');
      e = thrown(() => ctx.dispatch(m, 'nope', { bindings: {}, workgroups: [1] }));
      expect(e.message).toMatch(/elementwise\.wgsl: no compute entry point 'nope' \(has fill, fill_scalar, scaled_diff, copy/);
    });
  });

  it('a written buffer bound twice in one dispatch', () => {
    ctx.scope(() => {
      const x = ctx.empty([4]);
      const e = thrown(() => copy(ctx, x, x));
      expect(e).toBeInstanceOf(BindingError);
      expect(e.message).toBe("elementwise.wgsl:copy: binding 'out' uses the same buffer as 'x', and one of them is written");
    });
  });

  it('non-finite scalars and unknown options', () => {
    ctx.scope(() => {
      const a = ctx.empty([2, 2]);
      expect(() => matmul(ctx, a, a, { alpha: NaN })).toThrow('matmul: alpha = NaN, expected a finite number');
      expect(() => matmul(ctx, a, a, { beta: 1 })).toThrow('matmul: beta = 1 reads C, so it needs opts.out');
      expect(() => matmul(ctx, a, a, { activation: 'tanh' as never })).toThrow("matmul: activation 'tanh', expected none, relu or gelu");
      expect(() => matmul(ctx, a, a, { version: 'fast' as never })).toThrow(/matmul: version 'fast', expected one of naive, regblock/);
      expect(() => matmul(ctx, ctx.empty([2, 3]), ctx.empty([3, 3]), { version: 'regblock4', transB: true })).toThrow(
        /regblock4 needs N % 4 == 0 and B not transposed/,
      );
    });
  });
});

// GPUBufferUsage.STORAGE; spelled out so the test does not depend on installed globals.
const GPUBufferUsage_STORAGE = 0x0080;
