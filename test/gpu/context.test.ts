import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { create } from 'webgpu';
import { createContext as createPortable, type GpuContext } from '../../src/gpu/context.js';
import { DeviceError, DisposedError, KernelCompileError } from '../../src/gpu/errors.js';
import { KernelModule } from '../../src/gpu/kernel.js';
import { createContext, DAWN_FLAGS } from '../../src/gpu/node.js';
import { add, copy, full, ones, zeros } from '../../src/kernels/elementwise.js';
import { type Tensor, windowAlignment } from '../../src/gpu/tensor.js';
import { matmul } from '../../src/kernels/matmul.js';
import { uniform } from '../../src/kernels/random.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('context', () => {
  it('reports capabilities: features, raised limits, adapter info, subgroup sizes', () => {
    const c = ctx.caps;
    expect(c.adapter.description.length + c.adapter.vendor.length).toBeGreaterThan(0);
    expect(c.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(c.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    expect(c.f16).toBe(c.features.has('shader-f16'));
    if (c.subgroups) expect(c.subgroupMinSize).toBeGreaterThan(0);
    expect(Array.isArray(c.subgroupMatrixConfigs)).toBe(true);
    console.log(`adapter: ${c.adapter.description || c.adapter.device} (software: ${c.software}); features: ${[...c.features].filter((f) => /f16|subgroup|timestamp/.test(f)).join(', ')}`);
  });

  it('leaves optional features off when asked, and f16 is then refused (the fallback path)', async () => {
    const plain = await createContext({ disableFeatures: ['shader-f16'] });
    try {
      expect(plain.caps.f16).toBe(false);
      expect(() => plain.empty([4], 'f16', 'h')).toThrow(/h: dtype f16 needs the shader-f16 feature/);
      const x = plain.tensor([1, 2, 3], [3]);
      expect(Array.from(await copy(plain, x).read())).toEqual([1, 2, 3]);
    } finally {
      plain.destroy();
    }
  });

  it('wraps a device it did not create (createContext({ device }), as in a browser)', async () => {
    const gpu = create(DAWN_FLAGS);
    const adapter = await gpu.requestAdapter();
    const device = await adapter!.requestDevice();
    const c = await createPortable({ device, keepAlive: gpu });
    try {
      expect(c.device).toBe(device);
      const y = add(c, c.tensor([1, 2], [2]), c.tensor([10, 20], [2]));
      expect(Array.from(await y.read())).toEqual([11, 22]);
    } finally {
      c.destroy();
    }
  });

  it('encodes many dispatches into one submit; read() submits once', async () => {
    const before = { ...ctx.stats };
    const out = ctx.scope(() => {
      let x = ctx.tensor(new Array(64).fill(0.5), [8, 8]);
      for (let i = 0; i < 10; i++) x = matmul(ctx, x, x);
      return x;
    });
    expect(ctx.stats.submits).toBe(before.submits); // nothing submitted while encoding
    await out.read();
    expect(ctx.stats.submits).toBe(before.submits + 1);
    expect(ctx.stats.dispatches).toBe(before.dispatches + 10);
    out.dispose();
  });

  it('creates zeros, ones and full tensors, reads back plain arrays, and disposes with `using`', async () => {
    await ctx.scopeAsync(async () => {
      expect(await zeros(ctx, [2, 3]).toArray()).toEqual([0, 0, 0, 0, 0, 0]);
      expect(await ones(ctx, [5]).toArray()).toEqual([1, 1, 1, 1, 1]);
      const f = full(ctx, [3], -2.5, ctx.caps.f16 ? 'f16' : 'f32');
      expect(f.dtype).toBe(ctx.caps.f16 ? 'f16' : 'f32');
      expect(await f.toArray()).toEqual([-2.5, -2.5, -2.5]);
      expect(() => full(ctx, [3], NaN)).toThrow('full: value = NaN, expected a finite number');
    });
    const live = ctx.memory().liveTensors;
    let inner: Tensor;
    {
      using t = ctx.tensor([1, 2], [2]);
      inner = t;
      expect(ctx.memory().liveTensors).toBe(live + 1);
    }
    expect(inner.disposed).toBe(true);
    expect(ctx.memory().liveTensors).toBe(live);
    expect(() => inner.buffer('use after using')).toThrow(DisposedError);
  });

  it('windows of a tensor read, write and bind at their offset; neighbours are untouched', async () => {
    await ctx.scopeAsync(async () => {
      const align = windowAlignment(ctx);
      const slot = Math.ceil(32 / align) * align; // bytes per window here, room for 8 floats
      const per = slot / 4;
      const whole = zeros(ctx, [3 * per]);
      const a = whole.window(0, [5]);
      const b = whole.window(slot, [2, 3]);
      const c = whole.window(2 * slot, [7]);
      b.write([1, 2, 3, 4, 5, 6]);
      expect(await b.toArray()).toEqual([1, 2, 3, 4, 5, 6]);
      copy(ctx, ones(ctx, [7]), c); // a kernel writing a window
      const sum = add(ctx, b.view([6]), full(ctx, [6], 10)); // a kernel reading one
      expect(await sum.toArray()).toEqual([11, 12, 13, 14, 15, 16]);
      expect(await a.toArray()).toEqual([0, 0, 0, 0, 0]);
      const all = await whole.toArray();
      expect(all.slice(per, per + 6)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(all.slice(2 * per, 2 * per + 7)).toEqual([1, 1, 1, 1, 1, 1, 1]);
      expect(all.filter((v) => v !== 0).length).toBe(13); // nothing else written
      expect(b.view([3, 2]).byteOffset).toBe(slot);
      expect(() => whole.window(4, [1])).toThrow(`window: byteOffset 4 into 'zeros', expected a multiple of ${align} (minStorageBufferOffsetAlignment, at least 16)`);
      expect(() => whole.window(2 * slot, [per + 1])).toThrow(/ends at byte .*, past the .* bytes of 'zeros'/);
      // WebGPU forbids binding one buffer twice in a dispatch when either binding is written.
      expect(() => copy(ctx, a, whole.window(2 * slot, [5]))).toThrow(/uses the same buffer as/);
    });
  });

  it('times work on the GPU: timeGpu brackets it, profile gives each dispatch with its kernel', async () => {
    await ctx.scopeAsync(async () => {
      // Big enough that its GPU time exceeds the timestamp granularity (lavapipe's is ~65 µs).
      const big = uniform(ctx, ctx.empty([256, 256]), { seed: 1, lo: -1, hi: 1 });
      const a = ctx.tensor([1, 2, 3, 4], [2, 2]);
      const total = await ctx.timeGpu(() => void matmul(ctx, big, big));
      let c: ReturnType<typeof add> | undefined;
      const prof = await ctx.profile(() => {
        matmul(ctx, big, big);
        c = add(ctx, matmul(ctx, a, a), a);
      });
      expect(Array.from(await c!.read())).toEqual([8, 12, 18, 26]); // profiled work still computes
      if (!ctx.caps.timestampQuery) {
        console.log('profile: no timestamp-query on this adapter; checked the null path');
        expect(total).toBeNull();
        expect(prof).toBeNull();
        return;
      }
      expect(total).toBeGreaterThan(0);
      expect(prof!.map((p) => p.kernel)).toEqual([
        expect.stringMatching(/^matmul\.wgsl(\+matmul_subgroup\.wgsl)?:matmul_/),
        expect.stringMatching(/^matmul\.wgsl(\+matmul_subgroup\.wgsl)?:matmul_/),
        'elementwise.wgsl:add',
      ]);
      expect(prof![0]!.ns).toBeGreaterThan(0);
      for (const p of prof!) {
        expect(p.ns).toBeGreaterThanOrEqual(0); // a tiny dispatch may fall within one timestamp tick
        expect(p.workgroups.every((w) => w >= 1)).toBe(true);
      }
      // Past maxDispatches the rest run untimed (and still run).
      let d: ReturnType<typeof add> | undefined;
      const one = await ctx.profile(() => {
        d = add(ctx, a, a);
        d = add(ctx, d, a);
      }, 1);
      expect(one).toHaveLength(1);
      expect(Array.from(await d!.read())).toEqual([3, 6, 9, 12]);
      let inner: Promise<unknown> | undefined;
      await ctx.profile(() => {
        inner = ctx.profile(() => {}).catch((e: unknown) => e);
      });
      expect(String(await inner)).toMatch(/profile: already profiling/);
    });
  });

  it('orders a write after work already encoded that reads the old contents', async () => {
    await ctx.scopeAsync(async () => {
      const x = ctx.tensor([1, 2, 3], [3]);
      const before = copy(ctx, x);
      x.write([7, 8, 9]);
      const after = copy(ctx, x);
      expect(Array.from(await before.read())).toEqual([1, 2, 3]);
      expect(Array.from(await after.read())).toEqual([7, 8, 9]);
    });
  });

  it('does not hand out a buffer released mid-step before the step is submitted', async () => {
    await ctx.scopeAsync(async () => {
      const a = ctx.tensor([1, 2, 3, 4], [4]);
      const b = copy(ctx, a); // encoded, not submitted
      a.dispose();
      const c = ctx.tensor([9, 9, 9, 9], [4]); // same size class: must not reuse a's buffer yet
      expect(Array.from(await b.read())).toEqual([1, 2, 3, 4]);
      expect(Array.from(await c.read())).toEqual([9, 9, 9, 9]);
    });
  });

  it('scopes dispose what they made and keep what they return; live bytes stay flat over a loop', async () => {
    const w = ctx.tensor(new Array(32 * 32).fill(0.01), [32, 32]);
    const start = ctx.memory();
    let x = ctx.tensor(new Array(32 * 32).fill(1), [32, 32]);
    const created: number[] = [];
    const live: number[] = [];
    for (let step = 0; step < 200; step++) {
      const prev = x;
      x = ctx.scope(() => add(ctx, matmul(ctx, prev, w), prev));
      prev.dispose();
      if (step % 20 === 19) {
        await ctx.sync();
        live.push(ctx.memory().liveBytes);
        created.push(ctx.memory().created);
      }
    }
    expect(new Set(live).size).toBe(1); // the same live bytes after every checked step
    expect(ctx.memory().liveBytes - start.liveBytes).toBe(4096); // only x ([32,32] f32) outlives the loop
    expect(created[created.length - 1]).toBe(created[0]); // buffers are reused, not created
    x.dispose();
    w.dispose();
    expect(ctx.memory().liveBytes).toBe(start.liveBytes - 4096);
  });

  it('a scope that throws frees what it made', () => {
    const before = ctx.memory().liveBytes;
    let made!: ReturnType<GpuContext['empty']>;
    expect(() =>
      ctx.scope(() => {
        made = ctx.empty([1000]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(made.disposed).toBe(true);
    expect(ctx.memory().liveBytes).toBe(before);
  });

  it('keep() moves a tensor out of its scope', () => {
    let kept!: ReturnType<GpuContext['empty']>;
    let dropped!: ReturnType<GpuContext['empty']>;
    ctx.scope(() => {
      kept = ctx.keep(ctx.empty([4]));
      dropped = ctx.empty([4]);
    });
    expect(kept.disposed).toBe(false);
    expect(dropped.disposed).toBe(true);
    kept.dispose();
  });

  it('throws a KernelCompileError with file:line:col for WGSL that does not compile', async () => {
    const bad = KernelModule.get(
      'bad.wgsl',
      '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1)\nfn main() { let x: u32 = 1.5; out[0] = f32(x); }\n',
    );
    await expect(ctx.compile(bad)).rejects.toThrow(KernelCompileError);
    await expect(ctx.compile(bad)).resolves.toBeUndefined(); // reported once, then cached
    const again = KernelModule.get('bad2.wgsl', bad.code.replace('main', 'main2'));
    ctx.dispatch(again, 'main2', { bindings: { out: ctx.empty([1]) }, workgroups: [1] });
    await expect(ctx.sync()).rejects.toThrow(/bad2\.wgsl:3:\d+: .*abstract-float/);
  });

  it('turns an error the device reports (validation) into a thrown DeviceError at the next sync', async () => {
    const tooWide = KernelModule.get(
      'wide.wgsl',
      '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(4096)\nfn main() { out[0] = 1.0; }\n',
    );
    const t = ctx.empty([1]);
    ctx.dispatch(tooWide, 'main', { bindings: { out: t }, workgroups: [1] });
    await expect(ctx.sync()).rejects.toThrow(DeviceError);
    await ctx.sync(); // the error was reported once; the context goes on
    t.dispose();
  });

  it('refuses work after destroy()', async () => {
    const c = await createContext();
    const t = c.tensor([1], [1]);
    c.destroy();
    expect(() => c.empty([1])).toThrow(DisposedError);
    expect(() => copy(c, t)).toThrow(/context was destroyed|disposed/);
  });
});
