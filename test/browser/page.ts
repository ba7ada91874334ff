/**
 * Runs inside a browser page (bundled by browser.test.ts): the library on the page's own
 * navigator.gpu, checked against the f64 CPU references. Nothing here imports Node or `webgpu`.
 */
import { createContext, DTypeError, initLora, LoraLayer, loraBackward, loraForward, loraScale, matmul, pickMatmulVersion, AdamW } from '../../src/index.js';
import { autograd, backward, grad, requiresGrad, zeroGrad } from '../../src/index.js';
import { type LoraRefProblem, loraForwardRef, loraGradsRef } from '../../src/kernels/lora.ref.js';
import { matmulRef } from '../../src/kernels/matmul.ref.js';
import { expectClose, randomArray, rng } from '../check.js';
import { trainLora } from '../loraTraining.js';

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

const rand = (n: number, r: () => number, scale = 1) => Array.from(randomArray(n, r, -scale, scale));

async function runChecks(): Promise<{ adapter: string; software: boolean; f16: boolean; matmul: string; checks: Check[] }> {
  const ctx = await createContext({ gpu: navigator.gpu });
  const checks: Check[] = [];
  // Within atol + 1e-4·|want| everywhere (expectClose), else the mismatches it reports.
  const close = (name: string, got: ArrayLike<number>, want: ArrayLike<number>, atol: number) => {
    try {
      expectClose(got, want, { atol, rtol: 1e-4 }, name);
      checks.push({ name, ok: true, detail: `within atol ${atol.toPrecision(3)}, rtol 1e-4` });
    } catch (e) {
      checks.push({ name, ok: false, detail: (e as Error).message });
    }
  };

  // matmul, default version, over edge shapes and all four op(A)/op(B) combinations (on a CPU
  // adapter, 64x256 with B transposed runs as (B·Aᵀ)ᵀ and 40x64 transposes B first).
  const shapes: [number, number, number][] = [[1, 1, 1], [7, 13, 31], [65, 63, 129], [40, 64, 100], [64, 256, 36], [3, 5, 1031]];
  for (const [M, N, K] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const r = rng(M * 1000 + N * 10 + K);
        const a = rand(M * K, r);
        const b = rand(K * N, r);
        const got = await ctx.scopeAsync(() =>
          matmul(ctx, ctx.tensor(a, transA ? [K, M] : [M, K]), ctx.tensor(b, transB ? [N, K] : [K, N]), { transA, transB }).read(),
        );
        close(`matmul ${M}x${N}x${K} transA=${transA} transB=${transB}`, got, matmulRef({ a, b, M, N, K, transA, transB }), 2e-5 * Math.sqrt(K));
      }
    }
  }

  // LoRA forward and backward against the reference.
  {
    const [M, N, K, rank] = [12, 40, 36, 8];
    const r = rng(7);
    const alpha = 16;
    const q: LoraRefProblem = { M, N, K, r: rank, s: loraScale(alpha, rank), x: rand(M * K, r), W: rand(N * K, r, 0.5), A: rand(rank * K, r, 0.5), B: rand(N * rank, r, 0.5) };
    const dy = rand(M * N, r);
    const want = loraForwardRef(q);
    const grads = loraGradsRef(q, dy);
    await ctx.scopeAsync(async () => {
      const layer = new LoraLayer(ctx, { W: ctx.tensor(q.W, [N, K]), A: ctx.tensor(q.A, [rank, K]), B: ctx.tensor(q.B, [N, rank]), rank, alpha });
      const { y, saved } = loraForward(ctx, layer, ctx.tensor(q.x, [M, K]));
      close('lora forward', await y.read(), want.y, 2e-5 * Math.sqrt(K));
      const g = loraBackward(ctx, layer, saved!, ctx.tensor(dy, [M, N]), { needDx: true });
      close('lora dA', await g.dA.read(), grads.dA, 2e-5 * Math.sqrt(M * N));
      close('lora dB', await g.dB.read(), grads.dB, 2e-5 * Math.sqrt(M));
      close('lora dx', await g.dx!.read(), grads.dx, 2e-5 * Math.sqrt(N));
    });
  }

  // A LoRA training step (autograd + AdamW) is one submit, and the loss falls.
  {
    const [M, N, K, rank] = [32, 48, 64, 4];
    const r = rng(11);
    const W = ctx.tensor(rand(N * K, r, 0.2), [N, K]);
    const layer = new LoraLayer(ctx, { W, rank, alpha: 8 });
    initLora(ctx, layer, { seed: 1 });
    requiresGrad(layer.A);
    requiresGrad(layer.B);
    const x = ctx.tensor(rand(M * K, r), [M, K]);
    const target = ctx.tensor(rand(M * N, r), [M, N]);
    const opt = new AdamW(ctx, [{ params: layer.A }, { params: layer.B }], { lr: 2e-2 });
    const losses: number[] = [];
    let submits = -1;
    for (let t = 0; t < 40; t++) {
      const before = ctx.stats.submits;
      const loss = ctx.scope(() => {
        const l = autograd.mse(ctx, autograd.loraLinear(ctx, x, layer), target);
        backward(ctx, l);
        opt.step(1, [grad(layer.A), grad(layer.B)]);
        zeroGrad([layer.A, layer.B]);
        return l;
      });
      losses.push((await loss.read())[0]!);
      loss.dispose();
      submits = ctx.stats.submits - before;
    }
    checks.push({ name: 'lora training step: one submit', ok: submits === 1, detail: `${submits} submits in the last step` });
    checks.push({ name: 'lora training step: the loss falls', ok: losses[39]! < 0.9 * losses[0]!, detail: `loss ${losses[0]!.toFixed(4)} -> ${losses[39]!.toFixed(4)}` });
  }

  // LoRA factors in a ParamArena (windows at this adapter's offset alignment): the same
  // training as separate tensors, with one AdamW dispatch.
  {
    const c = { M: 8, N: 24, K: 20, rank: 4, seed: 13, steps: 5 };
    const sep = await trainLora(ctx, c, false);
    const packed = await trainLora(ctx, c, true);
    close(`ParamArena LoRA training (B at byte ${packed.bOffset}) equals separate tensors`, packed.out, sep.out, 1e-6);
    checks.push({
      name: 'ParamArena: one AdamW dispatch for both factors',
      ok: packed.optimizerDispatches === 1 && sep.optimizerDispatches === 2,
      detail: `${packed.optimizerDispatches} in an arena, ${sep.optimizerDispatches} separate`,
    });
  }

  // f16 without shader-f16 is refused with a typed error (the fallback path); with it, f16 storage works.
  if (ctx.caps.f16) {
    const got = await ctx.scopeAsync(() => matmul(ctx, ctx.tensor([1, 2, 3, 4], [2, 2], 'f16'), ctx.tensor([1, 0, 0, 1], [2, 2], 'f16')).read());
    close('f16 storage', got, [1, 2, 3, 4], 1e-3);
  } else {
    let message = '';
    try {
      ctx.empty([4], 'f16', 'h');
    } catch (e) {
      message = e instanceof DTypeError ? e.message : `not a DTypeError: ${String(e)}`;
    }
    checks.push({ name: 'f16 refused without shader-f16', ok: /h: dtype f16 needs the shader-f16 feature/.test(message), detail: message });
  }

  const adapter = `${ctx.caps.adapter.vendor} ${ctx.caps.adapter.architecture} ${ctx.caps.adapter.description}`.trim();
  // Which matmul version the default path ran (regblock4sg needs subgroups of >= 8 lanes).
  const sg = ctx.caps.subgroups ? `subgroups ${ctx.caps.subgroupMinSize}..${ctx.caps.subgroupMaxSize}` : 'no subgroups';
  const mm = `${pickMatmulVersion(ctx, 64, false)} (${sg})`;
  const out = { adapter, software: ctx.caps.software, f16: ctx.caps.f16, matmul: mm, checks };
  ctx.destroy();
  return out;
}

(globalThis as { runChecks?: typeof runChecks }).runChecks = runChecks;
