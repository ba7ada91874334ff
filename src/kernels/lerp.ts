/**
 * Launchers for src/wgsl/lerp.wgsl: WiSE-FT weight interpolation over flat parameter
 * arenas, plus `flatten`/`unflatten` to pack a list of tensors into one arena (so a whole
 * model interpolates in one dispatch) and back.
 *
 * A model whose parameters are windows of a ParamArena needs no flatten: interpolate the
 * arenas' storage (same layout) directly, `lerpInPlace(ctx, model.storage, tuned.storage, α)`.
 * A set larger than one storage binding is a list of chunks (`flattenChunks`, or a ParamArena's
 * `chunks`): lerp, lerpInPlace and unflatten take the lists and work chunk by chunk, a dispatch
 * or copy per chunk, all in the same submit: `lerpInPlace(ctx, model.chunks, tuned.chunks, α)`.
 *
 * ```ts
 * const pre = flatten(ctx, preTrained);  const ft = flatten(ctx, fineTuned);   // once
 * for (const alpha of [0, 0.25, 0.5, 0.75, 1]) {                               // no re-upload
 *   lerp(ctx, pre, ft, alpha, theta);  unflatten(ctx, theta, modelParams);  evaluate();
 * }
 * ```
 */
import type { GpuContext } from '../gpu/context.js';
import { ArgumentError, DTypeError, ShapeError, SizeLimitError } from '../gpu/errors.js';
import { KernelModule, type DType } from '../gpu/kernel.js';
import { bytesPerElement, type Tensor } from '../gpu/tensor.js';
import { maxChunkBytes, placeInChunks } from './chunks.js';
import { wgsl } from '../wgsl/sources.js';
import { checkTensor, fmtShape, grid2d, outputTensor, sameShape } from './util.js';

/** vec4s per lane (a runtime param: see lerp.wgsl); the lanes per workgroup come from the WGSL. */
const PER = 16;

export function lerpModule(dtype: DType): KernelModule {
  return KernelModule.get('lerp.wgsl', wgsl.lerp, dtype);
}

function dispatch(ctx: GpuContext, entry: string, dtype: DType, n: number, bindings: Record<string, Tensor>, alpha: number): void {
  const n4 = Math.ceil(n / 4);
  const m = lerpModule(dtype);
  const [lanes] = m.workgroupSize(entry);
  ctx.dispatch(m, entry, {
    bindings,
    params: { n4, alpha, per: PER },
    workgroups: grid2d(ctx, Math.ceil(n4 / (lanes * PER)), entry),
  });
}

function check(op: string, theta0: Tensor, theta1: Tensor, alpha: number, at = ''): DType {
  const dt = checkTensor(op, `theta0${at}`, theta0);
  checkTensor(op, `theta1${at}`, theta1);
  if (theta1.dtype !== dt) throw new DTypeError(`${op}: theta0${at} is ${dt} and theta1${at} is ${theta1.dtype}; they must match`);
  if (!sameShape(theta0.shape, theta1.shape)) throw new ShapeError(`${op}: theta0${at} ${fmtShape(theta0.shape)} and theta1${at} ${fmtShape(theta1.shape)} differ`);
  if (!Number.isFinite(alpha)) throw new ArgumentError(`${op}: alpha = ${alpha}, expected a finite number`);
  return dt;
}

/**
 * A flat parameter arena: one tensor, or chunks (a ParamArena's `chunks`, `flattenChunks`'s
 * result) for a set larger than one storage binding, interpolated chunk by chunk.
 */
export type FlatArena = Tensor | readonly Tensor[];

function isChunks(x: FlatArena | undefined): x is readonly Tensor[] {
  return Array.isArray(x);
}

/** Check two chunk lists (and `out`, if given) pair up chunk by chunk; every check before any dispatch. */
function checkChunks(op: string, theta0: FlatArena, theta1: FlatArena, alpha: number, out?: FlatArena): DType[] {
  if (!isChunks(theta0) || !isChunks(theta1) || (out !== undefined && !isChunks(out))) {
    const kind = (x: FlatArena) => (isChunks(x) ? `a list of ${x.length} chunks` : 'one tensor');
    throw new ArgumentError(`${op}: theta0 is ${kind(theta0)}, theta1 ${kind(theta1)}${out === undefined ? '' : `, out ${kind(out)}`}; give all tensors or all chunk lists`);
  }
  if (!theta0.length) throw new ArgumentError(`${op}: theta0 is an empty list of chunks`);
  for (const [name, list] of [['theta1', theta1], ['out', out]] as const) {
    if (list && list.length !== theta0.length) throw new ShapeError(`${op}: theta0 has ${theta0.length} chunks and ${name} has ${list.length}; they must match`);
  }
  return theta0.map((t0, k) => {
    const dt = check(op, t0, theta1[k]!, alpha, `[${k}]`);
    const o = (out as readonly Tensor[] | undefined)?.[k];
    if (o) {
      checkTensor(op, `out[${k}]`, o, dt);
      if (!sameShape(o.shape, t0.shape)) throw new ShapeError(`${op}: out[${k}] has shape ${fmtShape(o.shape)}, expected ${fmtShape(t0.shape)}`);
    }
    return dt;
  });
}

/**
 * θ = (1 − α)·θ0 + α·θ1 into `out` (a new tensor if not given). α outside [0, 1] extrapolates.
 * Given chunk lists (a set larger than one binding, e.g. `model.chunks` of two ParamArenas of
 * the same specs), each chunk pairs with its counterpart: a dispatch per chunk, a list back.
 */
export function lerp(ctx: GpuContext, theta0: Tensor, theta1: Tensor, alpha: number, out?: Tensor): Tensor;
export function lerp(ctx: GpuContext, theta0: readonly Tensor[], theta1: readonly Tensor[], alpha: number, out?: readonly Tensor[]): Tensor[];
export function lerp(ctx: GpuContext, theta0: FlatArena, theta1: FlatArena, alpha: number, out?: FlatArena): Tensor | Tensor[] {
  if (!isChunks(theta0) && !isChunks(theta1) && !isChunks(out)) {
    const dt = check('lerp', theta0, theta1, alpha);
    const o = outputTensor(ctx, 'lerp', out, theta0.shape, dt);
    dispatch(ctx, 'lerp', dt, theta0.size, { theta0, theta1, out: o }, alpha);
    return o;
  }
  const dts = checkChunks('lerp', theta0, theta1, alpha, out);
  const t0 = theta0 as readonly Tensor[];
  const t1 = theta1 as readonly Tensor[];
  return t0.map((a, k) => {
    const o = (out as readonly Tensor[] | undefined)?.[k] ?? ctx.empty(a.shape, dts[k]!, 'lerp.out');
    dispatch(ctx, 'lerp', dts[k]!, a.size, { theta0: a, theta1: t1[k]!, out: o }, alpha);
    return o;
  });
}

/** θ0 ← (1 − α)·θ0 + α·θ1, in place; returns θ0. Chunk lists pair up chunk by chunk. */
export function lerpInPlace(ctx: GpuContext, theta0: Tensor, theta1: Tensor, alpha: number): Tensor;
export function lerpInPlace(ctx: GpuContext, theta0: readonly Tensor[], theta1: readonly Tensor[], alpha: number): readonly Tensor[];
export function lerpInPlace(ctx: GpuContext, theta0: FlatArena, theta1: FlatArena, alpha: number): FlatArena {
  if (!isChunks(theta0) && !isChunks(theta1)) {
    const dt = check('lerpInPlace', theta0, theta1, alpha);
    dispatch(ctx, 'lerp_inplace', dt, theta0.size, { acc: theta0, theta1 }, alpha);
    return theta0;
  }
  const dts = checkChunks('lerpInPlace', theta0, theta1, alpha);
  const t1 = theta1 as readonly Tensor[];
  (theta0 as readonly Tensor[]).forEach((a, k) => dispatch(ctx, 'lerp_inplace', dts[k]!, a.size, { acc: a, theta1: t1[k]! }, alpha));
  return theta0;
}

/** A vec4 copy kernel with lerp's chunking: the shader bandwidth baseline (benchmarks). */
export function copy4(ctx: GpuContext, x: Tensor, out: Tensor): Tensor {
  const dt = checkTensor('copy4', 'x', x);
  outputTensor(ctx, 'copy4', out, x.shape, dt);
  dispatch(ctx, 'copy4', dt, x.size, { theta0: x, out }, 0);
  return out;
}

/** Copy `bytes` from byte `srcByte` of `src` to byte `dstByte` of `dst` (checked by ctx.copy, encoded in order with the kernels). */
function copyBytes(ctx: GpuContext, src: Tensor, srcByte: number, dst: Tensor, dstByte: number, bytes: number, op: string): void {
  ctx.copy(src, dst, { srcOffset: srcByte, dstOffset: dstByte, bytes, op });
}

/** The tensors' common dtype (checking each), and each one's byte length. */
function listOf(tensors: readonly Tensor[], op: string): { dtype: DType; bytes: number[] } {
  if (!tensors.length) throw new ArgumentError(`${op}: no tensors`);
  const dtype = tensors[0]!.dtype;
  tensors.forEach((t, i) => checkTensor(op, `tensors[${i}]`, t, dtype));
  return { dtype, bytes: tensors.map((t) => t.byteLength) };
}

/** Byte offsets of each tensor in a flat arena: 16-byte aligned, so every copy is legal. */
function arenaLayout(tensors: readonly Tensor[], op: string): { offsets: number[]; elements: number; dtype: DType } {
  const { dtype, bytes } = listOf(tensors, op);
  const offsets: number[] = [];
  let at = 0;
  for (const b of bytes) {
    offsets.push(at);
    at += Math.ceil(b / 16) * 16;
  }
  return { offsets, elements: at / bytesPerElement(dtype), dtype };
}

/**
 * Pack tensors (same dtype) into one flat arena tensor, each at a 16-byte-aligned offset.
 * A set larger than one storage binding is refused: use {@link flattenChunks}.
 */
export function flatten(ctx: GpuContext, tensors: readonly Tensor[]): Tensor {
  const { offsets, elements, dtype } = arenaLayout(tensors, 'flatten');
  const bytes = elements * bytesPerElement(dtype);
  const max = ctx.caps.limits.maxStorageBufferBindingSize ?? Infinity;
  if (bytes > max) {
    throw new SizeLimitError(`flatten: the ${tensors.length} tensors take ${bytes} bytes flat, over maxStorageBufferBindingSize ${max}; use flattenChunks (a list of chunks, each within a binding)`);
  }
  const flat = ctx.empty([elements], dtype, 'arena');
  tensors.forEach((t, i) => copyBytes(ctx, t, 0, flat, offsets[i]!, Math.ceil(t.byteLength / 4) * 4, 'flatten'));
  return flat;
}

export interface FlattenChunksOptions {
  /** The most bytes a chunk holds: a multiple of 16, at most (and by default) {@link maxChunkBytes}. */
  chunkBytes?: number;
}

/**
 * Pack tensors (same dtype) into flat chunks, for sets larger than one storage binding: the
 * tensors in order, each at a 16-byte-aligned offset, a new chunk wherever the next tensor
 * would not fit, so no tensor straddles two. One chunk when they fit in one (then the same
 * layout as {@link flatten}). Interpolate with `lerp` on the lists, copy back with `unflatten`.
 */
export function flattenChunks(ctx: GpuContext, tensors: readonly Tensor[], o: FlattenChunksOptions = {}): Tensor[] {
  const op = 'flattenChunks';
  const { dtype, bytes } = listOf(tensors, op);
  const limit = maxChunkBytes(ctx);
  const chunkBytes = o.chunkBytes ?? limit;
  if (!Number.isInteger(chunkBytes) || chunkBytes < 16 || chunkBytes % 16 !== 0 || chunkBytes > limit) {
    throw new ArgumentError(`${op}: chunkBytes = ${chunkBytes}, expected a multiple of 16 in [16, ${limit}] (the binding limit)`);
  }
  const place = placeInChunks(bytes, 16, chunkBytes);
  if (place.misfit >= 0) {
    const t = tensors[place.misfit]!;
    throw new SizeLimitError(`${op}: tensors[${place.misfit}] '${t.label}' ${fmtShape(t.shape)} ${dtype} is ${t.byteLength} bytes, over the ${chunkBytes}-byte chunk limit`);
  }
  const per = bytesPerElement(dtype);
  const chunks = place.used.map((b, k) => ctx.empty([b / per], dtype, place.used.length > 1 ? `arena.chunk${k}` : 'arena'));
  tensors.forEach((t, i) => copyBytes(ctx, t, 0, chunks[place.chunk[i]!]!, place.offset[i]!, Math.ceil(t.byteLength / 4) * 4, 'flattenChunks'));
  return chunks;
}

/** Copy an arena made by `flatten` (one tensor) or `flattenChunks` (its chunks) back into tensors of the same shapes. */
export function unflatten(ctx: GpuContext, flat: FlatArena, tensors: readonly Tensor[]): void {
  if (!isChunks(flat)) {
    const { offsets, elements } = arenaLayout(tensors, 'unflatten');
    checkTensor('unflatten', 'flat', flat, tensors[0]!.dtype);
    if (flat.size !== elements) throw new ShapeError(`unflatten: flat has ${flat.size} elements, the tensors' arena needs ${elements}`);
    tensors.forEach((t, i) => copyBytes(ctx, flat, offsets[i]!, t, 0, Math.ceil(t.byteLength / 4) * 4, 'unflatten'));
    return;
  }
  const { dtype, bytes } = listOf(tensors, 'unflatten');
  flat.forEach((c, k) => checkTensor('unflatten', `flat[${k}]`, c, dtype));
  // Replaying the placement with each chunk's own size as its capacity gives back flattenChunks'
  // layout (see placeInChunks); anything else is not these tensors' chunks.
  const sizes = flat.map((c) => c.byteLength);
  const place = placeInChunks(bytes, 16, sizes);
  if (place.misfit >= 0 || place.used.length !== flat.length || place.used.some((u, k) => u !== sizes[k])) {
    throw new ShapeError(`unflatten: chunks of ${fmtShape(sizes.map((b) => b / bytesPerElement(dtype)))} elements are not the layout flattenChunks gives these ${tensors.length} tensors`);
  }
  tensors.forEach((t, i) => copyBytes(ctx, flat[place.chunk[i]!]!, place.offset[i]!, t, 0, Math.ceil(t.byteLength / 4) * 4, 'unflatten'));
}
