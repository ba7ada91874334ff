/**
 * Launchers for src/wgsl/embedding.wgsl: token embedding lookup and its deterministic
 * gradient. Ids come from the CPU; `TokenIds` uploads them with the positions of each
 * distinct id, once per batch.
 *
 * ```ts
 * const ids = new TokenIds(ctx, [5, 17, 5, 2], vocabSize);
 * const h = embedding(ctx, table, ids);            // [4, D]
 * const dTable = embeddingBackward(ctx, table, ids, dh);
 * ids.dispose();
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DisposedError, ShapeError } from '../gpu/errors.js';
import { KernelModule } from '../gpu/kernel.js';
import type { Tensor } from '../gpu/tensor.js';
import { wgsl } from '../wgsl/sources.js';
import { full } from './elementwise.js';
import { checkTensor, fmtShape, grid2d, uploadU32 } from './util.js';

function mod(): KernelModule {
  return KernelModule.get('embedding.wgsl', wgsl.embedding);
}

/**
 * A batch of token ids on the GPU, with the positions of each distinct id (for backward). Its
 * buffer is a raw buffer of the context (counted in `ctx.memory().rawBytes`) until `dispose()`.
 */
export class TokenIds {
  readonly count: number;
  readonly unique: number;
  private readonly aux_: GPUBuffer;
  readonly offsets: { uniq: number; starts: number; pos: number };
  private disposed_ = false;

  constructor(
    readonly ctx: GpuContext,
    ids: ArrayLike<number>,
    readonly vocab: number,
    /** Shape of the ids (e.g. [batch, T]); the embedding output is [...shape, D]. */
    readonly shape: readonly number[] = [ids.length],
  ) {
    if (!ids.length) throw new ArgumentError('TokenIds: no ids');
    if (shape.reduce((a, b) => a * b, 1) !== ids.length) throw new ShapeError(`TokenIds: shape ${fmtShape(shape)} does not hold ${ids.length} ids`);
    const byId = new Map<number, number[]>();
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new ArgumentError(`TokenIds: ids[${t}] = ${id}, expected an integer in [0, ${vocab})`);
      const list = byId.get(id);
      if (list) list.push(t);
      else byId.set(id, [t]);
    }
    const T = ids.length;
    const U = byId.size;
    const data = new Uint32Array(T + U + U + 1 + T);
    data.set(Array.from(ids), 0);
    const uniq = T;
    const starts = uniq + U;
    const pos = starts + U + 1;
    let k = 0;
    let s = 0;
    for (const [id, list] of byId) {
      data[uniq + k] = id;
      data[starts + k] = s;
      for (const t of list) data[pos + s++] = t;
      k++;
    }
    data[starts + U] = s;
    this.aux_ = uploadU32(ctx, data, 'token ids');
    this.count = T;
    this.unique = U;
    this.offsets = { uniq, starts, pos };
  }

  get disposed(): boolean {
    return this.disposed_;
  }

  /** The ids' buffer (ids, distinct ids, their starts and positions); DisposedError naming `op` after dispose(). */
  buffer(op = 'TokenIds'): GPUBuffer {
    if (this.disposed_) throw new DisposedError(`${op}: ids (TokenIds of ${this.count} tokens, vocabulary ${this.vocab}) were disposed`);
    return this.aux_;
  }

  /** The ids' buffer, as `buffer()`. */
  get aux(): GPUBuffer {
    return this.buffer();
  }

  /** Free the buffer once work already encoded with it is submitted. Idempotent. */
  dispose(): void {
    if (this.disposed_) return;
    this.disposed_ = true;
    this.ctx.destroyAfterSubmit(this.aux_);
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}

function checkTable(op: string, table: Tensor, ids: TokenIds): number {
  checkTensor(op, 'table', table, 'f32');
  if (table.shape.length !== 2 || table.shape[0] !== ids.vocab) {
    throw new ShapeError(`${op}: table has shape ${fmtShape(table.shape)}, expected [V,D] with V = ${ids.vocab} (the ids' vocabulary)`);
  }
  return table.shape[1]!;
}

/** table[ids] -> [...ids.shape, D]. */
export function embedding(ctx: GpuContext, table: Tensor, ids: TokenIds): Tensor {
  const D = checkTable('embedding', table, ids);
  const aux = ids.buffer('embedding');
  const out = ctx.empty([...ids.shape, D], 'f32', 'embedding.out');
  ctx.dispatch(mod(), 'embedding_gather', {
    bindings: { table, aux, out },
    params: { tokens: ids.count, dim: D, unique: ids.unique, ...ids.offsets },
    workgroups: grid2d(ctx, ids.count, 'embedding'),
  });
  return out;
}

/** d table [V,D] from dy [...ids.shape, D]: rows of ids that occur get Σ of their dy rows, others 0. */
export function embeddingBackward(ctx: GpuContext, table: Tensor, ids: TokenIds, dy: Tensor): Tensor {
  const D = checkTable('embeddingBackward', table, ids);
  const aux = ids.buffer('embeddingBackward');
  checkTensor('embeddingBackward', 'dy', dy, 'f32');
  if (dy.size !== ids.count * D) throw new ShapeError(`embeddingBackward: dy has shape ${fmtShape(dy.shape)}, expected [${[...ids.shape, D].join(',')}]`);
  const out = full(ctx, table.shape, 0, 'f32', 'embedding.dtable');
  ctx.dispatch(mod(), 'embedding_backward', {
    bindings: { dy, aux, out },
    params: { tokens: ids.count, dim: D, unique: ids.unique, ...ids.offsets },
    workgroups: grid2d(ctx, ids.unique, 'embeddingBackward'),
  });
  return out;
}
