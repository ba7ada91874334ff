/**
 * The runtime's parts behind the GpuContext façade: checked copies, accounted raw buffers,
 * workgroup sizes read from the WGSL, and Dawn's unsafe APIs only on demand.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../../src/gpu/context.js';
import { ArgumentError, BindingError, DisposedError, ShapeError } from '../../src/gpu/errors.js';
import { KernelModule } from '../../src/gpu/kernel.js';
import { dawnFlagsFor, DAWN_FLAGS } from '../../src/gpu/node.js';
import { windowAlignment } from '../../src/gpu/tensor.js';
import { crossEntropy } from '../../src/kernels/softmax.js';
import { uploadU32 } from '../../src/kernels/util.js';
import { ParamArena } from '../../src/optim/arena.js';
import { AdamW } from '../../src/kernels/optim.js';
import { wgsl } from '../../src/wgsl/sources.js';
import { testContext } from '../helpers.js';

let ctx: GpuContext;
beforeAll(async () => {
  ctx = await testContext();
});
afterAll(() => ctx.destroy());

describe('ctx.copy', () => {
  it('copies words between tensors at byte offsets, inside each one', async () => {
    await ctx.scopeAsync(async () => {
      const src = ctx.tensor([1, 2, 3, 4, 5, 6], [6], 'f32', 'src');
      const dst = ctx.tensor([0, 0, 0, 0, 0], [5], 'f32', 'dst');
      ctx.copy(src, dst, { srcOffset: 8, dstOffset: 4, bytes: 12 });
      expect(await dst.toArray()).toEqual([0, 3, 4, 5, 0]);
      const align = windowAlignment(ctx);
      const whole = ctx.tensor(new Array(2 * align).fill(9), [2 * align], 'f32', 'whole');
      ctx.copy(src, whole.window(0, [5], 'w'), { bytes: 20 });
      const all = await whole.toArray();
      expect(all.slice(0, 6)).toEqual([1, 2, 3, 4, 5, 9]);
    });
  });

  it('refuses what WebGPU would reject or what would touch other bytes, naming the op', () => {
    ctx.scope(() => {
      const a = ctx.tensor([1, 2, 3, 4], [4], 'f32', 'a');
      const b = ctx.tensor([0, 0, 0], [3], 'f32', 'b');
      expect(() => ctx.copy(a, b, { bytes: 6, op: 'flatten' })).toThrow(ArgumentError);
      expect(() => ctx.copy(a, b, { bytes: 6, op: 'flatten' })).toThrow('flatten: bytes = 6, expected a non-negative multiple of 4 (WebGPU copies whole 4-byte words)');
      expect(() => ctx.copy(a, b)).toThrow(ShapeError); // 16 bytes into 12
      expect(() => ctx.copy(a, b)).toThrow(/copy: dst bytes \[0, 16\) run past 'b' \[3\] f32 \(12 bytes\)/);
      expect(() => ctx.copy(a, b, { srcOffset: 8, bytes: 12 })).toThrow(/copy: src bytes \[8, 20\) run past 'a'/);
      // WebGPU copies only between two buffers, even when the ranges are apart.
      const whole = ctx.tensor(new Array(64).fill(0), [64], 'f32', 'whole');
      const align = windowAlignment(ctx);
      const apart = () => ctx.copy(whole.window(0, [8], 'w0'), whole.window(align * Math.ceil(32 / align), [8], 'w1'), { op: 'unflatten' });
      expect(apart).toThrow(BindingError);
      expect(apart).toThrow("unflatten: src 'w0' and dst 'w1' share one buffer; WebGPU copies only between two buffers");
      const gone = ctx.tensor([1], [1], 'f32', 'gone');
      gone.dispose();
      expect(() => ctx.copy(gone, b, { bytes: 4, op: 'ParamArena' })).toThrow(DisposedError);
      expect(() => ctx.copy(gone, b, { bytes: 4, op: 'ParamArena' })).toThrow("ParamArena: src: tensor 'gone' [1] f32 was disposed");
      if (ctx.caps.f16) {
        // An odd f16 window's last word is half its neighbour's: refused as a copy target.
        const h = ctx.tensor(new Array(64).fill(1), [64], 'f16', 'h');
        const w = h.window(0, [5], 'hw');
        expect(() => ctx.copy(ctx.tensor([1, 2, 3, 4, 5, 6], [6], 'f16'), w, { bytes: 12 })).toThrow(BindingError);
        expect(() => ctx.copy(ctx.tensor([1, 2, 3, 4, 5, 6], [6], 'f16'), w, { bytes: 12 })).toThrow(/copy: dst bytes \[0, 12\) of 'hw' .* shared with its neighbour/);
        expect(() => ctx.copy(ctx.tensor([1, 2, 3, 4, 5, 6], [6], 'f16'), h.window(0, [6]), { bytes: 12 })).not.toThrow();
      }
    });
  });
});

describe('raw buffers are accounted', () => {
  it('uploadU32 tables, staging buffers and the optimizer group table count in rawBytes until freed', async () => {
    ctx.scope(() => crossEntropy(ctx, ctx.tensor([1, 2], [1, 2]), { labels: ctx.tensor([0], [1]) })); // the uniform ring and check slots exist
    await ctx.sync();
    const before = ctx.memory();
    const table = uploadU32(ctx, new Uint32Array([1, 2, 3, 4, 5]), 'table');
    expect(ctx.memory().rawBytes - before.rawBytes).toBe(32); // 20 bytes, rounded up to 16
    expect(ctx.memory().rawBuffers - before.rawBuffers).toBe(1);
    ctx.destroyAfterSubmit(table);
    expect(ctx.memory().rawBytes).toBe(before.rawBytes);
    // An arena optimizer's group table is one, freed by dispose (after the pending submit).
    const arena = new ParamArena(ctx, [[3], [5, 2]]);
    const opt = new AdamW(ctx, arena.params.map((p) => ({ params: p, grads: ctx.keep(ctx.empty(p.shape)) })), { lr: 0.1 });
    expect(ctx.memory().rawBuffers).toBeGreaterThan(before.rawBuffers);
    opt.step();
    const pending = ctx.memory().rawBytes;
    await arena.params[0]!.read(); // read's staging buffer comes and goes
    expect(ctx.memory().rawBytes).toBe(pending);
    opt.dispose();
    arena.dispose();
    await ctx.sync();
    expect(ctx.memory().rawBytes).toBe(before.rawBytes);
  });

  it('a training-like loop with device checks keeps raw and live bytes flat', async () => {
    const logits = ctx.tensor(new Array(12).fill(0.5), [3, 4]);
    const labels = ctx.tensor([0, 3, 1], [3]);
    const raw: number[] = [];
    const live: number[] = [];
    for (let i = 0; i < 6; i++) {
      const loss = ctx.scope(() => crossEntropy(ctx, logits, { labels }).loss);
      await loss.read();
      loss.dispose();
      raw.push(ctx.memory().rawBytes);
      live.push(ctx.memory().liveBytes);
    }
    expect(new Set(raw.slice(1)).size).toBe(1);
    expect(new Set(live.slice(1)).size).toBe(1);
    logits.dispose();
    labels.dispose();
  });
});

describe('workgroup sizes come from the WGSL', () => {
  it('a const or literal is a number; an override-sized dimension is its name, resolved per dispatch', () => {
    const lerpWG = Number(/const WG = (\d+)u;/.exec(wgsl.lerp)![1]);
    const lerpM = KernelModule.get('lerp.wgsl', wgsl.lerp);
    expect(lerpM.entry('lerp').workgroupSize).toEqual([lerpWG, 1, 1]);
    expect(lerpM.workgroupSize('lerp_inplace')).toEqual([lerpWG, 1, 1]);
    const mm = KernelModule.get('matmul.wgsl', wgsl.matmul);
    expect(mm.entry('matmul_regblock').workgroupSize).toEqual(['RB_LANES', 1, 1]);
    expect(mm.workgroupSize('matmul_regblock', { RB_LANES: 32 })).toEqual([32, 1, 1]);
    const rbDefault = Number(/override RB_LANES: u32 = (\d+)u;/.exec(wgsl.matmul)![1]);
    expect(mm.workgroupSize('matmul_regblock')).toEqual([rbDefault, 1, 1]);
    const custom = KernelModule.get(
      'wg.wgsl',
      'override L: u32 = 16u;\nconst H = 2u;\n@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(L, H)\nfn a() { o[0] = 1.0; }\n@compute @workgroup_size(4, 4, 2)\nfn b() { o[0] = 2.0; }\n',
    );
    expect(custom.entry('a').workgroupSize).toEqual(['L', 2, 1]);
    expect(custom.workgroupSize('a', { L: 8 })).toEqual([8, 2, 1]);
    expect(custom.workgroupSize('b')).toEqual([4, 4, 2]);
    expect(() => custom.workgroupSize('a', { L: 0 })).toThrow("wg.wgsl:a: workgroup size override 'L' = 0, expected an integer >= 1");
    // An override whose default is computed from another: no default is right once L is set.
    const derived = KernelModule.get(
      'wgd.wgsl',
      'override L: u32 = 16u;\noverride M = L * 2u;\n@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(M)\nfn a() { o[0] = 1.0; }\n',
    );
    expect(derived.entry('a').workgroupSize).toEqual(['M', 1, 1]);
    expect(derived.workgroupSize('a', { M: 64 })).toEqual([64, 1, 1]);
    expect(() => derived.workgroupSize('a', { L: 8 })).toThrow("wgd.wgsl:a: workgroup size override 'M' has no literal default; give it in the constants");
  });
});

describe('Dawn toggles', () => {
  it('allow_unsafe_apis only when subgroup-matrix is requested', () => {
    expect(DAWN_FLAGS.join(',')).not.toMatch(/allow_unsafe_apis/);
    expect(dawnFlagsFor({}).join(',')).not.toMatch(/allow_unsafe_apis/);
    expect(dawnFlagsFor({ subgroupMatrix: true }).join(',')).toMatch(/allow_unsafe_apis/);
    expect(dawnFlagsFor({ subgroupMatrix: true }).join(',')).toMatch(/vulkan_enable_f16_on_nvidia/);
    expect(ctx.caps.subgroupMatrix).toBe(false); // not requested by the test context
  });
});
