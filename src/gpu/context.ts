/**
 * The GPU context: the one object users hold, a façade that forwards each call to one of the
 * runtime's parts (wired in parts.ts; see there for which file does what). Launchers only
 * *encode*; `flush()` (which `sync()` and `read()` call) submits it all at once, so a training
 * step is one submit. Never imports `webgpu`: give it a GPUDevice, or a GPU to request one from.
 */
import { readCaps, requestDevice, type Caps, type ContextOptions } from './caps.js';
import type { CheckDescriber } from './deviceChecks.js';
import type { DispatchObserver, DispatchOptions } from './dispatch.js';
import { DeviceError, ShapeError } from './errors.js';
import type { DType, KernelModule } from './kernel.js';
import type { MemoryStats } from './memory.js';
import { buildParts, type ContextStats, type Parts } from './parts.js';
import type { DispatchProfile } from './profiler.js';
import { shapeSize, Tensor } from './tensor.js';
import type { CopyOptions } from './transfer.js';

export type { Caps, ContextOptions, SubgroupMatrixConfig } from './caps.js';
export type { BindingResource, DispatchOptions } from './dispatch.js';
export type { DispatchProfile } from './profiler.js';
export type { CopyOptions } from './transfer.js';
export type { MemoryStats } from './memory.js';

export type { ContextStats } from './parts.js';

/**
 * Create a context from a device you already have (`{ device }`, e.g. a browser's), or request
 * the best adapter's (`{ gpu }`, default `navigator.gpu`). In Node, `webgpu-lora/node` supplies Dawn.
 */
export async function createContext(options: ContextOptions = {}): Promise<GpuContext> {
  if (options.device) return new GpuContext(options.device, null, options);
  const gpu = options.gpu ?? (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new DeviceError('createContext: no GPU given and navigator.gpu is undefined (WebGPU unavailable here)');
  const { adapter, device } = await requestDevice(gpu, options);
  return new GpuContext(device, adapter, options);
}

export class GpuContext {
  readonly caps: Caps;
  readonly queue: GPUQueue;
  readonly stats: ContextStats = { submits: 0, dispatches: 0, pipelines: 0 };
  private readonly p: Parts;
  private keepAlive: unknown;

  /** @internal use {@link createContext} */
  constructor(readonly device: GPUDevice, adapter: GPUAdapter | null, private readonly o: ContextOptions = {}) {
    this.keepAlive = o.keepAlive;
    this.caps = readCaps(adapter, device);
    this.queue = device.queue;
    this.p = buildParts(device, this.caps, this.stats, o.onWait);
  }

  /** An uninitialised tensor (contents undefined), owned by the innermost open scope. */
  empty(shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    this.p.errors.checkAlive(label);
    const t = this.p.memory.tensor(this, shape, dtype, label);
    this.p.scopes.add(t);
    return t;
  }

  /** A tensor holding `data` (converted to `dtype`). */
  tensor(data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    const n = shapeSize(shape, label);
    if (data.length !== n) throw new ShapeError(`${label}: data has ${data.length} elements, shape [${shape.join(',')}] needs ${n}`);
    const t = this.empty(shape, dtype, label);
    this.write(t, data);
    return t;
  }

  /** `t` under a new shape of the same size, no copy: the result takes `t`'s storage and scope; `t` reads as disposed. */
  reshape(t: Tensor, shape: readonly number[]): Tensor {
    const n = shapeSize(shape, `${t.label}.reshape`);
    if (n !== t.size) throw new ShapeError(`reshape: [${shape.join(',')}] has ${n} elements, tensor '${t.label}' [${t.shape.join(',')}] has ${t.size}`);
    const r = new Tensor(this, t.takeBuffer(), [...shape], t.dtype, t.label);
    this.p.memory.replace(t, r);
    this.p.scopes.replace(t, r);
    return r;
  }

  /** Write `data` into `t`. Ordered after any work already encoded (a staged copy while encoding). */
  write(t: Tensor, data: ArrayLike<number>): void {
    this.p.transfer.write(t, data);
  }

  /** Read a tensor back as f32. Submits pending work, then waits for it. */
  read(t: Tensor): Promise<Float32Array> {
    return this.p.transfer.read(t);
  }

  /** Encode a copy from `src` to `dst` (byte offsets from each one's start): 4-byte words, inside both, never a neighbour's. */
  copy(src: Tensor, dst: Tensor, o: CopyOptions = {}): void {
    this.p.transfer.copy(src, dst, o);
  }

  /** A buffer outside the pool (a table, a mask), counted in `memory().rawBytes` until `destroyAfterSubmit(buf)`. */
  rawBuffer(o: { size: number; label: string; usage?: number; data?: ArrayBufferView }): GPUBuffer {
    this.p.errors.checkAlive(o.label);
    return this.p.memory.rawBuffer(o);
  }

  /** @internal tensors give their buffers back here */
  releaseBuffer(buf: GPUBuffer): void {
    this.p.memory.release(buf);
  }

  /** Live memory: pooled bytes held by tensors and by the pool for reuse, live tensors, raw buffers. */
  memory(): MemoryStats {
    return this.p.memory.stats();
  }

  /** Destroy the pool's idle buffers. */
  trimPool(): void {
    this.p.memory.pool.trim();
  }

  /** Run `fn`, then dispose every tensor made inside except those it returns (also in an array or plain object) or `keep`s. */
  scope<T>(fn: () => T): T {
    return this.p.scopes.run(fn);
  }

  /** Like `scope`, for an async `fn`. Async scopes on one context must nest; interleaved ones throw an ArgumentError. */
  scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
    return this.p.scopes.runAsync(fn);
  }

  /** Exempt tensors from the scope they were made in (they move out of every open scope). */
  keep<T extends Tensor | Tensor[]>(t: T): T {
    this.p.scopes.keep(Array.isArray(t) ? t : [t]);
    return t;
  }

  /** Compile a module now; throws a KernelCompileError with `file:line:col` (dispatch compiles lazily). */
  async compile(m: KernelModule): Promise<void> {
    this.p.pipelines.shaderModule(m);
    await this.p.errors.awaitCompileChecks();
  }

  /** Encode one dispatch of `entry` of `m`: bindings by WGSL name, checked (dispatch.ts); `params` at reflected offsets. */
  dispatch(m: KernelModule, entry: string, opts: DispatchOptions): void {
    this.p.dispatcher.dispatch(m, entry, opts);
  }

  /** @internal A device-check slot for a kernel that validates GPU-resident input (deviceChecks.ts). */
  deviceCheck(describe: CheckDescriber | null): { buffer: GPUBuffer; slot: number } {
    return this.p.checks.slot(describe);
  }

  /** @internal Watch every dispatch's tensors (autograd: parameters consumed outside the tape). */
  observeDispatches(observer: DispatchObserver | null): void {
    this.p.dispatcher.observer = observer;
  }

  /** @internal Let `adopter` keep tensors a closing scope would dispose (autograd: inputs backward still reads). */
  adoptOnScopeExit(adopter: ((t: Tensor) => boolean) | null): void {
    this.p.scopes.adopter = adopter;
  }

  /** The open command encoder (ends the compute pass), for copies and queries of your own. */
  encoder(): GPUCommandEncoder {
    this.p.errors.checkAlive('encoder');
    return this.p.stream.encoder();
  }

  /** True while work is encoded and not yet submitted. */
  get pending(): boolean {
    return this.p.stream.pending;
  }

  /** Destroy a raw buffer once nothing encoded can use it: now, or right after the pending work is submitted. */
  destroyAfterSubmit(buf: GPUBuffer): void {
    this.p.stream.destroyAfterSubmit(buf);
  }

  /** Submit everything encoded so far as one command buffer (uniform ring written first). */
  flush(): void {
    this.p.errors.checkAlive('flush');
    this.p.stream.flush();
  }

  /** Submit pending work and wait for the GPU; throws any error the device reported meanwhile. */
  sync(): Promise<void> {
    return this.p.transfer.sync();
  }

  /** GPU time (ns, timestamp queries) of the compute pass `fn`'s first dispatch opens; null without timestamp-query. */
  timeGpu(fn: () => void): Promise<number | null> {
    return this.p.profiler.timeGpu(fn);
  }

  /** GPU time of each dispatch `fn` encodes (each in a pass of its own, up to `maxDispatches`); null without timestamp-query. */
  profile(fn: () => void, maxDispatches = 1024): Promise<DispatchProfile[] | null> {
    return this.p.profiler.profile(fn, maxDispatches);
  }

  /** Release every buffer and destroy the device (lets Node exit). Later use throws a DisposedError. */
  destroy(): void {
    if (this.p.errors.destroyed) return;
    this.p.errors.destroyed = true;
    this.p.stream.abandon();
    this.p.memory.destroyAll();
    this.p.pipelines.clear();
    this.device.destroy();
    // Dawn's instance must outlive the device's teardown; drop it one turn later.
    const keep = this.keepAlive;
    setTimeout(() => void keep, 0);
    this.keepAlive = null;
    this.o.onDestroy?.();
  }
}
