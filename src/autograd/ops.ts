/**
 * Differentiable ops: each primitive's forward and backward are defined together in one
 * table, typed so that an op without a rule fails to compile. Composites (attention) are
 * built from primitives. Every op takes the context first, like the kernels.
 *
 * ```ts
 * requiresGrad(W); requiresGrad(b);
 * const loss = mse(ctx, relu(ctx, linear(ctx, x, W, b)), target);
 * backward(ctx, loss);          // grad(W), grad(b); x gets none (it does not require one)
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ShapeError } from '../gpu/errors.js';
import type { Tensor } from '../gpu/tensor.js';
import {
  add as addK,
  copy as copyK,
  full,
  fillScalar,
  gelu as geluK,
  geluBackward,
  mul as mulK,
  relu as reluK,
  reluBackward,
  scale as scaleK,
  scaledDiff,
  silu as siluK,
  siluBackward,
  concat as concatK,
  slice as sliceK,
  sliceBackward,
  swapAxes12,
  sub as subK,
  transpose as transposeK,
} from '../kernels/elementwise.js';
import { dropout as dropoutK } from '../kernels/random.js';
import { type LoraLayer, loraBackward, loraForward } from '../kernels/lora.js';
import { embedding as embeddingK, embeddingBackward, type TokenIds } from '../kernels/embedding.js';
import { maskedGrad } from '../kernels/maskedGrad.js';
import { matmul as matmulK } from '../kernels/matmul.js';
import { layerNorm as layerNormK, normBackward, rmsNorm as rmsNormK } from '../kernels/norm.js';
import { mean as meanK, sum as sumK, sumSquaredDiff } from '../kernels/reduce.js';
import {
  crossEntropy as crossEntropyK,
  crossEntropyBackward,
  logSoftmax as logSoftmaxK,
  logSoftmaxBackward,
  softmax as softmaxK,
  softmaxBackward,
  type XentOptions,
  type XentTarget,
} from '../kernels/softmax.js';
import { fmtShape, sameShape } from '../kernels/util.js';
import { gradInfo, noGrad, record, withinOp } from './tape.js';

type Grads = (Tensor | null)[];

interface OpRule<A extends unknown[]> {
  forward: (ctx: GpuContext, ...args: A) => {
    out: Tensor;
    inputs: Tensor[];
    saved?: Tensor[];
    backward: (gy: Tensor, needs: boolean[]) => Grads;
    /** Frees non-tensor resources backward needs (token ids), once the record is dropped. */
    release?: () => void;
    /** Tensors backward reads that are not inputs (a target), so a closing scope leaves them to the tape. */
    reads?: Tensor[];
  };
}

function defineOp<A extends unknown[]>(name: string, rule: OpRule<A>): (ctx: GpuContext, ...args: A) => Tensor {
  return (ctx, ...args) => {
    const r = withinOp(ctx, () => rule.forward(ctx, ...args));
    record(ctx, { name, inputs: r.inputs, output: r.out, backward: r.backward, saved: r.saved ?? [], release: r.release, reads: r.reads });
    return r.out;
  };
}

/** Σ over the leading rows of g viewed as [rows, cols]: onesᵀ·g, shaped `shape`. */
function sumRows(ctx: GpuContext, g: Tensor, cols: number, shape: readonly number[]): Tensor {
  const rows = g.size / cols;
  const ones = full(ctx, [1, rows], 1, g.dtype, 'ones');
  return ctx.reshape(matmulK(ctx, ones, g.view([rows, cols])), shape);
}

export type OpName =
  | 'matmul' | 'linear' | 'conv1d' | 'add' | 'sub' | 'mul' | 'scale' | 'relu' | 'gelu' | 'sum' | 'mean' | 'mse' | 'loraLinear'
  | 'softmax' | 'logSoftmax' | 'crossEntropy' | 'reshape' | 'layerNorm' | 'rmsNorm'
  | 'silu' | 'transpose' | 'dropout' | 'embedding' | 'slice' | 'concat' | 'splitHeads' | 'mergeHeads';

const rules = {
  /**
   * op(A)·op(B), rank 2 or 3 (batched); a rank-2 operand shared over the other's batch gets
   * its gradient summed over the batch.
   */
  matmul: defineOp('matmul', {
    forward: (ctx, a: Tensor, b: Tensor, o: { transA?: boolean; transB?: boolean } = {}) => {
      const tA = o.transA ?? false;
      const tB = o.transB ?? false;
      const out = matmulK(ctx, a, b, { transA: tA, transB: tB });
      // A gradient computed per batch item, reduced to the input's shape if it was shared.
      const fit = (g: Tensor, x: Tensor) => (g.shape.length === x.shape.length ? g : sumRows(ctx, g, x.size, x.shape));
      return {
        out,
        inputs: [a, b],
        backward: (gy, [na, nb]) => [
          na ? fit(tA ? matmulK(ctx, b, gy, { transA: tB, transB: true }) : matmulK(ctx, gy, b, { transB: !tB }), a) : null,
          nb ? fit(tB ? matmulK(ctx, gy, a, { transA: true, transB: tA }) : matmulK(ctx, a, gy, { transA: !tA }), b) : null,
        ],
      };
    },
  }),

  /** x·Wᵀ + b with W [N,K] (torch layout) and x [..., K]. */
  linear: defineOp('linear', {
    forward: (ctx, x: Tensor, W: Tensor, b?: Tensor) => {
      const K = W.shape[1]!;
      const N = W.shape[0]!;
      const out = matmulK(ctx, x, W, { transB: true, bias: b });
      const M = x.size / K;
      return {
        out,
        inputs: b ? [x, W, b] : [x, W],
        backward: (gy, [nx, nW, nb]) => {
          const g2 = gy.view([M, N]);
          return [
            nx ? ctx.reshape(matmulK(ctx, g2, W), x.shape) : null,
            nW ? weightGrad(ctx, g2, x.view([M, K]), W) : null,
            ...(b ? [nb ? sumRows(ctx, gy, N, [N]) : null] : []),
          ];
        },
      };
    },
  }),

  /**
   * x·W + b with W [K,N] (in × out: GPT-2's Conv1D layout) and x [..., K]. A partly frozen W
   * (setGradMask with a [K,N] mask) gets the masked-gradient kernel: dW = M ⊙ xᵀ·dy.
   */
  conv1d: defineOp('conv1d', {
    forward: (ctx, x: Tensor, W: Tensor, b?: Tensor) => {
      const [K, N] = W.shape as [number, number];
      if (W.shape.length !== 2 || x.shape[x.shape.length - 1] !== K) {
        throw new ShapeError(`conv1d: x ${fmtShape(x.shape)} and W ${fmtShape(W.shape)}, expected x [..., K] and W [K,N] (in × out)`);
      }
      const M = x.size / K;
      const out = ctx.reshape(matmulK(ctx, x.view([M, K]), W, { bias: b }), [...x.shape.slice(0, -1), N]);
      return {
        out,
        inputs: b ? [x, W, b] : [x, W],
        backward: (gy, [nx, nW, nb]) => {
          const g2 = gy.view([M, N]);
          const x2 = x.view([M, K]);
          const mask = nW ? gradInfo(W).mask : null;
          return [
            nx ? ctx.reshape(matmulK(ctx, g2, W, { transB: true }), x.shape) : null,
            nW ? (mask ? maskedGrad(ctx, x2, g2, mask) : matmulK(ctx, x2, g2, { transA: true })) : null,
            ...(b ? [nb ? sumRows(ctx, gy, N, [N]) : null] : []),
          ];
        },
      };
    },
  }),

  /** x + y, y's shape a suffix of x's (broadcast over leading dimensions). */
  add: defineOp('add', {
    forward: (ctx, x: Tensor, y: Tensor) => ({
      out: addK(ctx, x, y),
      inputs: [x, y],
      backward: (gy, [nx, ny]) => [nx ? copyOf(ctx, gy) : null, ny ? (sameShape(x.shape, y.shape) ? copyOf(ctx, gy) : sumRows(ctx, gy, y.size, y.shape)) : null],
    }),
  }),

  sub: defineOp('sub', {
    forward: (ctx, x: Tensor, y: Tensor) => ({
      out: subK(ctx, x, y),
      inputs: [x, y],
      backward: (gy, [nx, ny]) => [
        nx ? copyOf(ctx, gy) : null,
        ny ? (sameShape(x.shape, y.shape) ? scaleK(ctx, gy, -1) : scaleK(ctx, sumRows(ctx, gy, y.size, y.shape), -1)) : null,
      ],
    }),
  }),

  /** x ⊙ y, y's shape a suffix of x's (broadcast over leading dimensions). */
  mul: defineOp('mul', {
    forward: (ctx, x: Tensor, y: Tensor) => ({
      out: mulK(ctx, x, y),
      inputs: [x, y],
      backward: (gy, [nx, ny]) => [
        nx ? mulK(ctx, gy, y) : null,
        ny ? (sameShape(x.shape, y.shape) ? mulK(ctx, gy, x) : sumRows(ctx, mulK(ctx, gy, x), y.size, y.shape)) : null,
      ],
    }),
  }),

  scale: defineOp('scale', {
    forward: (ctx, x: Tensor, alpha: number) => ({ out: scaleK(ctx, x, alpha), inputs: [x], backward: (gy) => [scaleK(ctx, gy, alpha)] }),
  }),

  relu: defineOp('relu', {
    forward: (ctx, x: Tensor) => ({ out: reluK(ctx, x), inputs: [x], backward: (gy) => [reluBackward(ctx, x, gy)] }),
  }),

  gelu: defineOp('gelu', {
    forward: (ctx, x: Tensor) => ({ out: geluK(ctx, x), inputs: [x], backward: (gy) => [geluBackward(ctx, x, gy)] }),
  }),

  /** Σ of all elements -> [1]. */
  sum: defineOp('sum', {
    forward: (ctx, x: Tensor) => ({ out: sumK(ctx, x, 'all'), inputs: [x], backward: (gy) => [fillScalar(ctx, gy, x.shape)] }),
  }),

  /** Mean of all elements -> [1]. */
  mean: defineOp('mean', {
    forward: (ctx, x: Tensor) => ({
      out: meanK(ctx, x, 'all'),
      inputs: [x],
      backward: (gy) => [fillScalar(ctx, gy, x.shape, 1 / x.size)],
    }),
  }),

  /**
   * mean((pred − target)²) -> [1] in one reduction pass; the backward is one dispatch per
   * input that needs a gradient (2/n · g · (pred − target), and its negative for target).
   */
  mse: defineOp('mse', {
    forward: (ctx, pred: Tensor, target: Tensor) => {
      if (!sameShape(pred.shape, target.shape)) {
        throw new ShapeError(`mse: target ${fmtShape(target.shape)} must match pred ${fmtShape(pred.shape)}`);
      }
      const k = 2 / pred.size;
      return {
        out: sumSquaredDiff(ctx, pred, target, { mean: true }),
        inputs: [pred, target],
        backward: (gy, [np, nt]) => [np ? scaledDiff(ctx, pred, target, gy, k) : null, nt ? scaledDiff(ctx, target, pred, gy, k) : null],
      };
    },
  }),

  /**
   * A LoRA layer on the fused kernels: inputs x, A, B (W is frozen and never gets a
   * gradient); dx is computed only when x carries a gradient.
   */
  loraLinear: defineOp('loraLinear', {
    forward: (ctx, x: Tensor, layer: LoraLayer, o: { seed?: number; offset?: number } = {}) => {
      const { y, saved } = loraForward(ctx, layer, x, o);
      return {
        out: y,
        inputs: [x, layer.A, layer.B],
        saved: saved ? [saved.u] : [],
        backward: (gy, [nx, nA, nB]) => {
          const g = loraBackward(ctx, layer, saved!, gy, { needDx: nx });
          if (!nA) g.dA.dispose();
          if (!nB) g.dB.dispose();
          return [g.dx ?? null, nA ? g.dA : null, nB ? g.dB : null];
        },
      };
    },
  }),

  /** softmax over the last axis; `causal` masks future positions of [..., T, T] scores. */
  softmax: defineOp('softmax', {
    forward: (ctx, x: Tensor, o: { causal?: boolean } = {}) => {
      const y = softmaxK(ctx, x, undefined, o);
      return { out: y, inputs: [x], backward: (gy) => [softmaxBackward(ctx, y, gy)] };
    },
  }),

  logSoftmax: defineOp('logSoftmax', {
    forward: (ctx, x: Tensor) => {
      const y = logSoftmaxK(ctx, x);
      return { out: y, inputs: [x], backward: (gy) => [logSoftmaxBackward(ctx, y, gy)] };
    },
  }),

  /**
   * Mean softmax cross-entropy over counted rows -> [1]: class-index labels (ignore-index) or
   * soft targets, with label smoothing. Only the logits get a gradient.
   */
  crossEntropy: defineOp('crossEntropy', {
    forward: (ctx, logits: Tensor, target: XentTarget, o: XentOptions & { ownTarget?: boolean } = {}) => {
      const { ownTarget, ...xo } = o;
      const { loss, saved } = crossEntropyK(ctx, logits, target, xo);
      // ownTarget: the op disposes the target tensor with its other saved tensors.
      const t = 'labels' in target ? target.labels : target.soft;
      return {
        out: loss,
        inputs: [logits],
        saved: ownTarget ? [saved.lse, saved.stats, t] : [saved.lse, saved.stats],
        reads: ownTarget ? [] : [t],
        backward: (gy) => [crossEntropyBackward(ctx, logits, saved, gy)],
      };
    },
  }),

  /** The same values under another shape (a copy, so the tape can own it). */
  reshape: defineOp('reshape', {
    forward: (ctx, x: Tensor, shape: readonly number[]) => ({
      out: ctx.reshape(copyOf(ctx, x), shape),
      inputs: [x],
      backward: (gy) => [ctx.reshape(copyOf(ctx, gy), x.shape)],
    }),
  }),

  /** LayerNorm over the last axis with γ (and β). */
  layerNorm: defineOp('layerNorm', {
    forward: (ctx, x: Tensor, gamma: Tensor, beta?: Tensor, eps = 1e-5) => {
      const { y, stats } = layerNormK(ctx, x, gamma, beta, eps);
      return {
        out: y,
        inputs: beta ? [x, gamma, beta] : [x, gamma],
        saved: [stats],
        backward: (gy, [nx, ng, nb]) => {
          const g = normBackward(ctx, 'layer', x, gamma, stats, gy, { beta: beta !== undefined, needDx: nx, needParams: ng || nb });
          return [g.dx ?? null, ng ? g.dgamma! : null, ...(beta ? [nb ? g.dbeta! : null] : [])];
        },
      };
    },
  }),

  /** RMSNorm over the last axis with γ. */
  rmsNorm: defineOp('rmsNorm', {
    forward: (ctx, x: Tensor, gamma: Tensor, eps = 1e-6) => {
      const { y, stats } = rmsNormK(ctx, x, gamma, eps);
      return {
        out: y,
        inputs: [x, gamma],
        saved: [stats],
        backward: (gy, [nx, ng]) => {
          const g = normBackward(ctx, 'rms', x, gamma, stats, gy, { needDx: nx, needParams: ng });
          return [g.dx ?? null, g.dgamma ?? null];
        },
      };
    },
  }),

  silu: defineOp('silu', {
    forward: (ctx, x: Tensor) => ({ out: siluK(ctx, x), inputs: [x], backward: (gy) => [siluBackward(ctx, x, gy)] }),
  }),

  /** The transpose of a 2-D tensor. */
  transpose: defineOp('transpose', {
    forward: (ctx, x: Tensor) => ({ out: transposeK(ctx, x), inputs: [x], backward: (gy) => [transposeK(ctx, gy)] }),
  }),

  /** Inverted dropout, seeded; backward regenerates the same mask from (seed, offset). */
  dropout: defineOp('dropout', {
    forward: (ctx, x: Tensor, o: { p: number; seed: number; offset?: number }) => ({
      out: dropoutK(ctx, x, o),
      inputs: [x],
      backward: (gy) => [dropoutK(ctx, gy, o)],
    }),
  }),

  /**
   * table[ids] (gather); the table's gradient is a deterministic per-id sum (embedding.wgsl).
   * With `disposeIds` the op owns `ids` and disposes them once backward no longer needs them
   * (at once when nothing is recorded).
   */
  embedding: defineOp('embedding', {
    forward: (ctx, table: Tensor, ids: TokenIds, o: { disposeIds?: boolean } = {}) => ({
      out: embeddingK(ctx, table, ids),
      inputs: [table],
      backward: (gy) => [embeddingBackward(ctx, table, ids, gy)],
      release: o.disposeIds ? () => ids.dispose() : undefined,
    }),
  }),

  /** x[..., start:start+length, ...] along `axis`. */
  slice: defineOp('slice', {
    forward: (ctx, x: Tensor, axis: number, start: number, length: number) => ({
      out: sliceK(ctx, x, axis, start, length),
      inputs: [x],
      backward: (gy) => [sliceBackward(ctx, gy, x.shape, axis, start)],
    }),
  }),

  /** Concatenation along `axis`; each input's gradient is its slice of gy. */
  concat: defineOp('concat', {
    forward: (ctx, xs: Tensor[], axis: number) => {
      const a = axis < 0 ? xs[0]!.shape.length + axis : axis;
      return {
        out: concatK(ctx, xs, axis),
        inputs: xs,
        backward: (gy, needs) => {
          let off = 0;
          return xs.map((x, i) => {
            const start = off;
            off += x.shape[a]!;
            return needs[i] ? sliceK(ctx, gy, a, start, x.shape[a]!) : null;
          });
        },
      };
    },
  }),

  /** [B, T, H·dh] -> [B·H, T, dh]: one attention head per batch item. */
  splitHeads: defineOp('splitHeads', {
    forward: (ctx, x: Tensor, heads: number) => {
      const [B, T, D] = x.shape as [number, number, number];
      if (x.shape.length !== 3 || D % heads !== 0) throw new ShapeError(`splitHeads: x ${fmtShape(x.shape)}, expected [B,T,H·dh] with H = ${heads} dividing the last dimension`);
      const dh = D / heads;
      return {
        out: ctx.reshape(swapAxes12(ctx, x, [B, T, heads, dh]), [B * heads, T, dh]),
        inputs: [x],
        backward: (gy) => [ctx.reshape(swapAxes12(ctx, gy, [B, heads, T, dh]), [B, T, D])],
      };
    },
  }),

  /** [B·H, T, dh] -> [B, T, H·dh], the inverse of splitHeads. */
  mergeHeads: defineOp('mergeHeads', {
    forward: (ctx, x: Tensor, heads: number) => {
      const [BH, T, dh] = x.shape as [number, number, number];
      if (x.shape.length !== 3 || BH % heads !== 0) throw new ShapeError(`mergeHeads: x ${fmtShape(x.shape)}, expected [B·H,T,dh] with H = ${heads} dividing the first dimension`);
      const B = BH / heads;
      return {
        out: ctx.reshape(swapAxes12(ctx, x, [B, heads, T, dh]), [B, T, heads * dh]),
        inputs: [x],
        backward: (gy) => [ctx.reshape(swapAxes12(ctx, gy, [B, T, heads, dh]), [BH, T, dh])],
      };
    },
  }),
} satisfies Record<OpName, (ctx: GpuContext, ...args: never[]) => Tensor>;

/** dW = dyᵀ·x, masked (frozen tiles skipped, frozen entries 0) when W is partly frozen. */
function weightGrad(ctx: GpuContext, dy: Tensor, x: Tensor, W: Tensor): Tensor {
  const mask = gradInfo(W).mask;
  return mask ? maskedGrad(ctx, dy, x, mask) : matmulK(ctx, dy, x, { transA: true });
}

function copyOf(ctx: GpuContext, t: Tensor): Tensor {
  return copyK(ctx, t);
}

export const {
  matmul, linear, conv1d, add, sub, mul, scale, relu, gelu, silu, sum, mean, mse, loraLinear, softmax, logSoftmax, crossEntropy, reshape, transpose, dropout, layerNorm, rmsNorm, embedding, slice, concat, splitHeads, mergeHeads,
} = rules;

/**
 * Scaled dot-product attention composed from primitives: softmax(q·kᵀ/√dh [causal])·v, with
 * q, k, v [B·H, T, dh] (see splitHeads). Every piece has its own backward on the tape.
 */
export function attention(ctx: GpuContext, q: Tensor, k: Tensor, v: Tensor, o: { causal?: boolean } = {}): Tensor {
  const dh = q.shape[q.shape.length - 1]!;
  const scores = scale(ctx, matmul(ctx, q, k, { transB: true }), 1 / Math.sqrt(dh));
  return matmul(ctx, softmax(ctx, scores, o), v);
}

/**
 * Causal multi-head self-attention on x [B, T, D]: q, k, v and output projections
 * (torch-layout [D, D] weights, optional biases), heads split and merged on the GPU.
 */
export function causalSelfAttention(
  ctx: GpuContext,
  x: Tensor,
  w: { q: Tensor; k: Tensor; v: Tensor; o: Tensor; bq?: Tensor; bk?: Tensor; bv?: Tensor; bo?: Tensor },
  heads: number,
): Tensor {
  const q = splitHeads(ctx, linear(ctx, x, w.q, w.bq), heads);
  const k = splitHeads(ctx, linear(ctx, x, w.k, w.bk), heads);
  const v = splitHeads(ctx, linear(ctx, x, w.v, w.bv), heads);
  return linear(ctx, mergeHeads(ctx, attention(ctx, q, k, v, { causal: true }), heads), w.o, w.bo);
}

/** The same values with no gradient history (a copy that is not on the tape, and carries no gradient on purpose). */
export function detach(ctx: GpuContext, x: Tensor): Tensor {
  return noGrad(ctx, () => copyOf(ctx, x));
}
