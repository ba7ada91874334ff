/**
 * The GPU context: device and capabilities, pipeline cache, buffer pool,
 * tensors and scopes, and the command stream.
 *
 * Launchers only *encode*: every dispatch goes into the context's open compute
 * pass, and per-dispatch parameters go into a uniform ring bound with dynamic
 * offsets. Nothing reaches the GPU until `flush()` (one `submit`), which
 * `sync()` and `read()` call. A training step is therefore one submit.
 *
 * This file never imports `webgpu`: give it any GPUDevice (a browser's), or a
 * GPU to request one from. `src/gpu/node.ts` supplies Dawn in Node.
 */
import {
  ArgumentError,
  BindingError,
  DeviceError,
  DisposedError,
  DTypeError,
  KernelCompileError,
  ShapeError,
  SizeLimitError,
} from './errors.js';
import { decodeHalf, encodeHalf } from './half.js';
import { type DType, type EntryInfo, KernelModule } from './kernel.js';
import { BufferPool, type PoolStats } from './pool.js';
import { bytesPerElement, shapeSize, Tensor } from './tensor.js';

/** A subgroup-matrix (tensor-core) configuration reported by the adapter. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

export interface Caps {
  features: ReadonlySet<string>;
  limits: Readonly<Record<string, number>>;
  adapter: { vendor: string; architecture: string; device: string; description: string };
  /** shader-f16 is enabled: f16 storage and arithmetic in WGSL. */
  f16: boolean;
  /** subgroups is enabled. */
  subgroups: boolean;
  subgroupMinSize: number;
  subgroupMaxSize: number;
  timestampQuery: boolean;
  subgroupMatrix: boolean;
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
  /** A CPU (software) adapter such as lavapipe/llvmpipe or SwiftShader. */
  software: boolean;
}

export interface ContextOptions {
  /** Use this device as is (a browser's, or one you configured). */
  device?: GPUDevice;
  /** Request an adapter and device from this GPU (default: `navigator.gpu`). */
  gpu?: GPU;
  powerPreference?: GPUPowerPreference;
  /** Kept referenced for the context's lifetime (Dawn's `create()` result must outlive its devices). */
  keepAlive?: unknown;
  /** Called once when the context is destroyed (after the device). */
  onDestroy?: () => void;
  /** Called each time the context starts awaiting the GPU (Node: restarts the poll backoff's spin). */
  onWait?: () => void;
  /** Optional features to leave off even where available (e.g. to test a fallback path). */
  disableFeatures?: string[];
}

/** Something a kernel binding accepts: a tensor, a raw buffer, or a window of a buffer. */
export type BindingResource = Tensor | GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

export interface DispatchOptions {
  /** Buffers by the WGSL variable name of each binding (the `params` uniform excluded). */
  bindings: Record<string, BindingResource>;
  /** Fields of the entry's uniform struct, by name. Fields named `_pad…` may be left out. */
  params?: Record<string, number | readonly number[]>;
  /** Override constants; pipelines are cached per distinct set. */
  constants?: Record<string, number | boolean>;
  workgroups: readonly [number, number?, number?];
}

export interface ContextStats {
  submits: number;
  dispatches: number;
  pipelines: number;
}

const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'];
const RING_CHUNK = 64 * 1024;
const UNIFORM_USAGE = 0x0040 | 0x0008; // UNIFORM | COPY_DST
const MAP_READ_USAGE = 0x0001 | 0x0008; // MAP_READ | COPY_DST
const COPY_SRC_ONLY = 0x0004;
const MAP_MODE_READ = 0x0001;
const STORAGE_USAGE = 0x0080;
const QUERY_RESOLVE = 0x0200;

interface RingChunk {
  buffer: GPUBuffer;
  data: ArrayBuffer;
  used: number;
}

let nextBufferId = 1;
const bufferIds = new WeakMap<GPUBuffer, number>();
function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = nextBufferId++));
  return id;
}

function readCaps(adapter: GPUAdapter | null, device: GPUDevice): Caps {
  const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? adapter?.info;
  const features = new Set<string>();
  for (const f of device.features as unknown as Iterable<string>) features.add(f);
  const limits: Record<string, number> = {};
  for (const k in device.limits) {
    const v = (device.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const anyInfo = (info ?? {}) as unknown as Record<string, unknown>;
  const configs: SubgroupMatrixConfig[] = [];
  // Config fields are getters on Dawn's objects: copy them one by one (spreading gives {}).
  for (const c of (anyInfo.subgroupMatrixConfigs as Iterable<Record<string, unknown>> | undefined) ?? []) {
    configs.push({
      componentType: String(c.componentType),
      resultComponentType: String(c.resultComponentType),
      M: Number(c.M),
      N: Number(c.N),
      K: Number(c.K),
    });
  }
  const adapterDesc = {
    vendor: String(anyInfo.vendor ?? ''),
    architecture: String(anyInfo.architecture ?? ''),
    device: String(anyInfo.device ?? ''),
    description: String(anyInfo.description ?? ''),
  };
  const text = `${adapterDesc.vendor} ${adapterDesc.architecture} ${adapterDesc.device} ${adapterDesc.description}`.toLowerCase();
  return {
    features,
    limits,
    adapter: adapterDesc,
    f16: features.has('shader-f16'),
    subgroups: features.has('subgroups'),
    subgroupMinSize: Number(anyInfo.subgroupMinSize ?? 0),
    subgroupMaxSize: Number(anyInfo.subgroupMaxSize ?? 0),
    timestampQuery: features.has('timestamp-query'),
    subgroupMatrix: features.has('chromium-experimental-subgroup-matrix'),
    subgroupMatrixConfigs: configs,
    software:
      anyInfo.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|software|cpu/.test(text),
  };
}

/**
 * Create a context from a device you already have, or by requesting one.
 *
 * ```ts
 * const ctx = await createContext({ device });            // browser or custom device
 * const ctx2 = await createContext({ gpu: navigator.gpu }); // request the best adapter
 * ```
 * In Node, use `createContext` from `webgpu-lora/node`, which supplies Dawn.
 */
export async function createContext(options: ContextOptions = {}): Promise<GpuContext> {
  if (options.device) return new GpuContext(options.device, null, options.keepAlive, options.onDestroy, options.onWait);
  const gpu = options.gpu ?? (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) throw new DeviceError('createContext: no GPU given and navigator.gpu is undefined (WebGPU unavailable here)');
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new DeviceError(
      'createContext: no WebGPU adapter found. On Linux without a GPU, run `node scripts/ensure-adapter.mjs` (installs Mesa lavapipe as root)',
    );
  }
  const disabled = new Set(options.disableFeatures ?? []);
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f) && !disabled.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') requiredLimits[k] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'webgpu-lora' });
  return new GpuContext(device, adapter, options.keepAlive, options.onDestroy, options.onWait);
}

interface PipelineEntry {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  layoutId: number;
}

/** One dispatch's GPU time from {@link GpuContext.profile}. */
export interface DispatchProfile {
  kernel: string;
  workgroups: [number, number, number];
  ns: number;
}

export class GpuContext {
  readonly caps: Caps;
  readonly queue: GPUQueue;
  readonly stats: ContextStats = { submits: 0, dispatches: 0, pipelines: 0 };
  private readonly pool: BufferPool;
  private readonly shaderModules = new Map<number, GPUShaderModule>();
  private readonly layouts = new Map<string, { layout: GPUBindGroupLayout; pipelineLayout: GPUPipelineLayout; id: number }>();
  private readonly pipelines = new Map<string, PipelineEntry>();
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly compileChecks: Promise<void>[] = [];
  private readonly errors: string[] = [];
  private lostMessage: string | null = null;
  private destroyed = false;
  private encoder_: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private passTimestamps: GPUComputePassTimestampWrites | undefined;
  private profiling: { querySet: GPUQuerySet; capacity: number; records: { kernel: string; workgroups: [number, number, number] }[] } | null = null;
  private readonly ring: RingChunk[] = [];
  private ringIndex = 0;
  private readonly uniformAlign: number;
  private readonly afterSubmitDestroy: GPUBuffer[] = [];
  private readonly scopes: Set<Tensor>[] = [];
  private readonly liveTensors = new Set<Tensor>();
  private keepAlive: unknown;

  /** @internal use {@link createContext} */
  constructor(
    readonly device: GPUDevice,
    adapter: GPUAdapter | null,
    keepAlive?: unknown,
    private readonly onDestroy?: () => void,
    private readonly onWait?: () => void,
  ) {
    this.keepAlive = keepAlive;
    this.caps = readCaps(adapter, device);
    this.queue = device.queue;
    this.pool = new BufferPool(device, this.caps.limits.maxBufferSize ?? 256 * 1024 * 1024);
    this.uniformAlign = Math.max(256, this.caps.limits.minUniformBufferOffsetAlignment ?? 256);
    device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      if (this.errors.length < 16) this.errors.push(`${e.constructor?.name ?? 'GPUError'}: ${e.message}`);
    });
    void device.lost.then((info) => {
      if (!this.destroyed) this.lostMessage = `device lost (${info.reason}): ${info.message}`;
    });
  }

  // ---------------------------------------------------------------- tensors

  /** An uninitialised tensor (contents undefined). */
  empty(shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    this.checkAlive(label);
    this.checkDType(dtype, label);
    const n = shapeSize(shape, label);
    const bytes = n * bytesPerElement(dtype);
    const max = this.caps.limits.maxStorageBufferBindingSize ?? Infinity;
    if (bytes > max) {
      throw new SizeLimitError(
        `${label}: [${shape.join(',')}] ${dtype} is ${bytes} bytes, over this device's maxStorageBufferBindingSize ${max}`,
      );
    }
    const t = new Tensor(this, this.pool.acquire(bytes, label), [...shape], dtype, label);
    this.liveTensors.add(t);
    this.scopes[this.scopes.length - 1]?.add(t);
    return t;
  }

  /**
   * `t` under a new shape of the same size, without a copy: the result owns the storage and
   * takes `t`'s place in its scope; `t` reads as disposed afterwards.
   */
  reshape(t: Tensor, shape: readonly number[]): Tensor {
    const n = shapeSize(shape, `${t.label}.reshape`);
    if (n !== t.size) throw new ShapeError(`reshape: [${shape.join(',')}] has ${n} elements, tensor '${t.label}' [${t.shape.join(',')}] has ${t.size}`);
    const r = new Tensor(this, t.takeBuffer(), [...shape], t.dtype, t.label);
    this.liveTensors.delete(t);
    this.liveTensors.add(r);
    for (const s of this.scopes) if (s.delete(t)) s.add(r);
    return r;
  }

  /** A tensor holding `data` (converted to `dtype`). */
  tensor(data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32', label = 'tensor'): Tensor {
    const n = shapeSize(shape, label);
    if (data.length !== n) {
      throw new ShapeError(`${label}: data has ${data.length} elements, shape [${shape.join(',')}] needs ${n}`);
    }
    const t = this.empty(shape, dtype, label);
    this.write(t, data);
    return t;
  }

  /** Write `data` into `t`. Ordered after any work already encoded (a staged copy while encoding). */
  write(t: Tensor, data: ArrayLike<number>): void {
    const buf = t.buffer('write');
    if (data.length !== t.size) {
      throw new ShapeError(`write: data has ${data.length} elements, tensor '${t.label}' [${t.shape.join(',')}] has ${t.size}`);
    }
    let bytes: Uint8Array<ArrayBuffer>;
    if (t.dtype === 'f16') {
      const h = encodeHalf(data);
      // writeBuffer sizes must be multiples of 4: pad an odd f16 count.
      const padded = new Uint16Array(h.length + (h.length & 1));
      padded.set(h);
      bytes = new Uint8Array(padded.buffer);
    } else {
      const f: Float32Array<ArrayBuffer> =
        data instanceof Float32Array && data.buffer instanceof ArrayBuffer ? (data as Float32Array<ArrayBuffer>) : Float32Array.from(data);
      bytes = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    }
    if (this.encoder_) {
      // A queue write would run before the encoded commands that may still read the old contents.
      const staging = this.device.createBuffer({ size: bytes.byteLength, usage: COPY_SRC_ONLY, mappedAtCreation: true });
      new Uint8Array(staging.getMappedRange()).set(bytes);
      staging.unmap();
      this.endPass();
      this.encoder_.copyBufferToBuffer(staging, 0, buf, t.byteOffset, bytes.byteLength);
      this.afterSubmitDestroy.push(staging);
    } else {
      this.queue.writeBuffer(buf, t.byteOffset, bytes);
    }
  }

  /** Read a tensor back as f32. Submits pending work, then waits for it. */
  async read(t: Tensor): Promise<Float32Array> {
    const buf = t.buffer('read');
    const size = Math.ceil(t.byteLength / 4) * 4;
    const staging = this.device.createBuffer({ size, usage: MAP_READ_USAGE, label: `read ${t.label}` });
    this.encoder().copyBufferToBuffer(buf, t.byteOffset, staging, 0, size);
    this.flush();
    try {
      await this.gpuWait(() => staging.mapAsync(MAP_MODE_READ));
    } catch (e) {
      this.throwPending('read');
      throw new DeviceError(`read: mapping '${t.label}' failed: ${(e as Error).message}`);
    }
    const raw = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    await this.awaitCompileChecks();
    this.throwPending('read');
    if (t.dtype === 'f16') return decodeHalf(new Uint16Array(raw, 0, t.size));
    return new Float32Array(raw, 0, t.size);
  }

  /** @internal tensors give their buffers back here */
  releaseBuffer(buf: GPUBuffer): void {
    this.pool.release(buf, this.encoder_ !== null);
  }

  /**
   * Run `fn`, then dispose every tensor created inside it except those returned
   * (a tensor, or tensors in a returned array or plain object) and those passed
   * to `keep`. Scopes nest.
   *
   * ```ts
   * const y = ctx.scope(() => matmul(ctx, matmul(ctx, a, b), c)); // the inner product is freed
   * ```
   */
  scope<T>(fn: () => T): T {
    const created = new Set<Tensor>();
    this.scopes.push(created);
    let result: T;
    try {
      result = fn();
    } catch (e) {
      // A failed scope frees what it made, so an error does not leak GPU memory.
      for (const t of created) t.dispose();
      throw e;
    } finally {
      this.scopes.pop();
    }
    if (result instanceof Promise) throw new ArgumentError('scope: fn returned a Promise; use scopeAsync for async work');
    this.closeScope(created, result);
    return result;
  }

  /** Like `scope`, for an async `fn`. Do not interleave two async scopes on one context. */
  async scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
    const created = new Set<Tensor>();
    this.scopes.push(created);
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      for (const t of created) t.dispose();
      throw e;
    } finally {
      const i = this.scopes.lastIndexOf(created);
      if (i >= 0) this.scopes.splice(i, 1);
    }
    this.closeScope(created, result);
    return result;
  }

  /** Exempt tensors from the scope they were made in (they move to the enclosing scope, if any). */
  keep<T extends Tensor | Tensor[]>(t: T): T {
    for (const x of Array.isArray(t) ? t : [t]) {
      for (const s of this.scopes) s.delete(x);
    }
    return t;
  }

  private closeScope(created: Set<Tensor>, result: unknown): void {
    const kept = new Set<Tensor>();
    const visit = (v: unknown, depth: number) => {
      if (v instanceof Tensor) kept.add(v);
      else if (depth < 3 && Array.isArray(v)) v.forEach((x) => visit(x, depth + 1));
      else if (depth < 3 && v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
        for (const x of Object.values(v)) visit(x, depth + 1);
      }
    };
    visit(result, 0);
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of created) {
      if (kept.has(t)) parent?.add(t);
      else t.dispose();
    }
  }

  /** Live memory: pooled-buffer bytes held by tensors, and by the pool for reuse. */
  memory(): PoolStats & { liveTensors: number } {
    for (const t of this.liveTensors) if (t.disposed) this.liveTensors.delete(t);
    return { ...this.pool.stats, liveTensors: this.liveTensors.size };
  }

  /** Destroy the pool's idle buffers. */
  trimPool(): void {
    this.pool.trim();
  }

  // ---------------------------------------------------------------- kernels

  private shaderModule(m: KernelModule): GPUShaderModule {
    let sm = this.shaderModules.get(m.id);
    if (!sm) {
      if (m.dtype === 'f16' && !this.caps.f16) {
        throw new DTypeError(`${m.file}: the device has no shader-f16 feature; use f32`);
      }
      sm = this.device.createShaderModule({ code: m.code, label: m.file });
      this.shaderModules.set(m.id, sm);
      const mod = sm;
      this.compileChecks.push(
        mod.getCompilationInfo().then((info) => {
          const errs = info.messages.filter((x) => x.type === 'error');
          if (errs.length) {
            const lines = errs.map((x) => `${m.file}:${x.lineNum}:${x.linePos}: ${x.message}`);
            throw new KernelCompileError(`${m.file} does not compile:\n${lines.join('\n')}`);
          }
        }),
      );
    }
    return sm;
  }

  /**
   * Compile a kernel module now and throw a KernelCompileError with
   * `file:line:col` diagnostics if it does not compile. (Dispatch compiles
   * lazily; its compile errors are thrown at the next `sync()`/`read()`.)
   */
  async compile(m: KernelModule): Promise<void> {
    this.shaderModule(m);
    await this.awaitCompileChecks();
  }

  private bindGroupLayout(m: KernelModule, e: EntryInfo) {
    const key = e.bindings.map((b) => `${b.binding}:${b.kind}`).join(',');
    let l = this.layouts.get(key);
    if (!l) {
      const layout = this.device.createBindGroupLayout({
        label: `${m.file}:${e.name}`,
        entries: e.bindings.map((b) => ({
          binding: b.binding,
          visibility: 4, // GPUShaderStage.COMPUTE
          buffer: { type: b.kind, hasDynamicOffset: b.kind === 'uniform' },
        })),
      });
      const pipelineLayout = this.device.createPipelineLayout({ bindGroupLayouts: [layout] });
      l = { layout, pipelineLayout, id: this.layouts.size };
      this.layouts.set(key, l);
    }
    return l;
  }

  private pipeline(m: KernelModule, e: EntryInfo, constants: Record<string, number>): PipelineEntry {
    const ckeys = Object.keys(constants).sort();
    const key = `${m.id}|${e.name}|${ckeys.map((k) => `${k}=${constants[k]}`).join(',')}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const l = this.bindGroupLayout(m, e);
      const pipeline = this.device.createComputePipeline({
        label: `${m.file}:${e.name}`,
        layout: l.pipelineLayout,
        compute: { module: this.shaderModule(m), entryPoint: e.name, constants },
      });
      p = { pipeline, layout: l.layout, layoutId: l.id };
      this.pipelines.set(key, p);
      this.stats.pipelines++;
    }
    return p;
  }

  /**
   * Encode one dispatch of `entry` from module `m`. Bindings are matched by
   * name against the reflected WGSL and checked (presence, dtype, disposal,
   * size limit, aliasing of written buffers); `params` fill the entry's uniform
   * struct at its reflected offsets.
   */
  dispatch(m: KernelModule, entry: string, opts: DispatchOptions): void {
    const where = `${m.file}:${entry}`;
    this.checkAlive(where);
    const e = m.entry(entry);
    const constants = m.checkConstants(entry, opts.constants);
    const maxWg = this.caps.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    const wg = [opts.workgroups[0], opts.workgroups[1] ?? 1, opts.workgroups[2] ?? 1] as const;
    for (let i = 0; i < 3; i++) {
      const n = wg[i]!;
      if (!Number.isInteger(n) || n < 0) throw new ArgumentError(`${where}: workgroups[${i}] = ${n}, expected an integer >= 0`);
      if (n > maxWg) {
        throw new SizeLimitError(`${where}: workgroups[${i}] = ${n}, over maxComputeWorkgroupsPerDimension ${maxWg}`);
      }
    }
    const entries: GPUBindGroupEntry[] = [];
    const keyParts: string[] = [];
    const written = new Map<GPUBuffer, string>();
    const read = new Map<GPUBuffer, string>();
    const given = new Set(Object.keys(opts.bindings));
    const maxBinding = this.caps.limits.maxStorageBufferBindingSize ?? Infinity;
    let dynamicOffset = -1;
    for (const b of e.bindings) {
      if (b.kind === 'uniform') {
        if (!e.uniform) continue;
        const slot = this.ringSlot(e.uniform.size);
        this.packParams(where, e, opts.params ?? {}, slot.chunk.data, slot.offset);
        dynamicOffset = slot.offset;
        const size = Math.ceil(e.uniform.size / 16) * 16;
        entries.push({ binding: b.binding, resource: { buffer: slot.chunk.buffer, offset: 0, size } });
        keyParts.push(`u${bufferId(slot.chunk.buffer)}`);
        given.delete(b.name);
        continue;
      }
      const r = opts.bindings[b.name];
      given.delete(b.name);
      if (r === undefined) {
        throw new BindingError(`${where}: binding '${b.name}' (@binding(${b.binding}), ${b.kind} ${b.elementType}) was not given`);
      }
      let buffer: GPUBuffer;
      let offset = 0;
      let size: number;
      if (r instanceof Tensor) {
        buffer = r.buffer(`${where} binding '${b.name}'`);
        const want = /f16/.test(b.elementType) ? 'f16' : /f32/.test(b.elementType) ? 'f32' : null;
        if (want && want !== r.dtype) {
          throw new DTypeError(`${where}: binding '${b.name}' is array<${b.elementType}>, got tensor '${r.label}' of dtype ${r.dtype}`);
        }
        // Rounded up to 16 bytes (inside the pooled buffer, whose size classes are multiples of 16,
        // or the window's slot, which ParamArena pads to the offset alignment), so kernels may view
        // any tensor as vec4s; the padding past `size` is scratch.
        offset = r.byteOffset;
        size = Math.min(buffer.size - offset, Math.ceil(r.byteLength / 16) * 16);
      } else if ('buffer' in r && !('usage' in r)) {
        buffer = r.buffer;
        offset = r.offset ?? 0;
        size = r.size ?? buffer.size - offset;
      } else {
        buffer = r as GPUBuffer;
        size = buffer.size;
      }
      if (!(buffer.usage & STORAGE_USAGE)) {
        throw new BindingError(`${where}: binding '${b.name}' needs a buffer with STORAGE usage, got usage 0x${buffer.usage.toString(16)}`);
      }
      if (offset + size > buffer.size) {
        throw new BindingError(`${where}: binding '${b.name}' window [${offset}, ${offset + size}) exceeds the buffer's ${buffer.size} bytes`);
      }
      if (size > maxBinding) {
        throw new SizeLimitError(`${where}: binding '${b.name}' is ${size} bytes, over maxStorageBufferBindingSize ${maxBinding}`);
      }
      // A buffer written by a dispatch may not be bound anywhere else in it (WebGPU usage rules).
      const other = written.get(buffer) ?? (b.kind === 'storage' ? read.get(buffer) : undefined);
      if (other !== undefined) {
        throw new BindingError(`${where}: binding '${b.name}' uses the same buffer as '${other}', and one of them is written`);
      }
      (b.kind === 'storage' ? written : read).set(buffer, b.name);
      entries.push({ binding: b.binding, resource: { buffer, offset, size } });
      keyParts.push(`${bufferId(buffer)}@${offset}+${size}`);
    }
    if (given.size) {
      throw new BindingError(`${where}: unknown binding(s) ${[...given].map((g) => `'${g}'`).join(', ')} (has ${e.bindings.map((b) => b.name).join(', ')})`);
    }
    const p = this.pipeline(m, e, constants);
    const bgKey = `${p.layoutId}|${keyParts.join('|')}`;
    let bg = this.bindGroups.get(bgKey);
    if (!bg) {
      if (this.bindGroups.size > 4096) this.bindGroups.clear();
      bg = this.device.createBindGroup({ layout: p.layout, entries });
      this.bindGroups.set(bgKey, bg);
    }
    if (wg[0] === 0 || wg[1] === 0 || wg[2] === 0) return;
    const prof = this.profiling;
    if (prof) {
      // Profiling: every dispatch gets a pass of its own, bracketed by two timestamps
      // (untimed past the query set's capacity).
      this.endPass();
    }
    if (prof && prof.records.length < prof.capacity) {
      const i = prof.records.length;
      this.passTimestamps = { querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
      prof.records.push({ kernel: where, workgroups: [wg[0], wg[1], wg[2]] });
    }
    const pass = this.computePass();
    pass.setPipeline(p.pipeline);
    if (dynamicOffset >= 0) pass.setBindGroup(0, bg, [dynamicOffset]);
    else pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    this.stats.dispatches++;
  }

  private packParams(
    where: string,
    e: EntryInfo,
    params: Record<string, number | readonly number[]>,
    data: ArrayBuffer,
    base: number,
  ): void {
    const u = e.uniform!;
    const view = new DataView(data, base, u.size);
    for (const [name, f] of u.fields) {
      const v = params[name];
      if (v === undefined) {
        if (name.startsWith('_pad')) continue;
        throw new ArgumentError(`${where}: params.${name} (${f.scalar}${f.components > 1 ? `x${f.components}` : ''}) was not given`);
      }
      const vals = typeof v === 'number' ? [v] : v;
      if (vals.length !== f.components) {
        throw new ArgumentError(`${where}: params.${name} has ${vals.length} components, expected ${f.components}`);
      }
      vals.forEach((x, i) => {
        const off = f.offset + 4 * i;
        if (f.scalar === 'f32') {
          if (!Number.isFinite(x)) throw new ArgumentError(`${where}: params.${name} = ${x}, expected a finite number`);
          view.setFloat32(off, x, true);
        } else if (f.scalar === 'u32') {
          if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) {
            throw new ArgumentError(`${where}: params.${name} = ${x}, expected an integer in [0, 2^32)`);
          }
          view.setUint32(off, x, true);
        } else {
          if (!Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) {
            throw new ArgumentError(`${where}: params.${name} = ${x}, expected an i32`);
          }
          view.setInt32(off, x, true);
        }
      });
    }
    for (const k of Object.keys(params)) {
      if (!u.fields.has(k)) throw new ArgumentError(`${where}: unknown params.${k} (has ${[...u.fields.keys()].join(', ')})`);
    }
  }

  private ringSlot(size: number): { chunk: RingChunk; offset: number } {
    const need = Math.ceil(size / this.uniformAlign) * this.uniformAlign;
    let chunk = this.ring[this.ringIndex];
    if (chunk && chunk.used + need > RING_CHUNK) {
      this.ringIndex++;
      chunk = this.ring[this.ringIndex];
    }
    if (!chunk) {
      chunk = {
        buffer: this.device.createBuffer({ size: RING_CHUNK, usage: UNIFORM_USAGE, label: `uniform ring ${this.ring.length}` }),
        data: new ArrayBuffer(RING_CHUNK),
        used: 0,
      };
      this.ring.push(chunk);
    }
    const offset = chunk.used;
    chunk.used += need;
    new Uint8Array(chunk.data, offset, need).fill(0);
    return { chunk, offset };
  }

  // ---------------------------------------------------------------- command stream

  /** The open command encoder (ends the compute pass, for copies and queries). */
  encoder(): GPUCommandEncoder {
    this.checkAlive('encoder');
    this.endPass();
    if (!this.encoder_) this.encoder_ = this.device.createCommandEncoder({ label: 'webgpu-lora step' });
    return this.encoder_;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      const enc = this.encoder();
      this.pass = enc.beginComputePass(this.passTimestamps ? { timestampWrites: this.passTimestamps } : {});
      this.passTimestamps = undefined;
    }
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** True while work is encoded and not yet submitted. */
  get pending(): boolean {
    return this.encoder_ !== null;
  }

  /**
   * Destroy a raw buffer (a kernel's index list, mask, table) once nothing encoded can still
   * use it: now if no work is pending, else right after the pending work is submitted.
   */
  destroyAfterSubmit(buf: GPUBuffer): void {
    if (this.encoder_) this.afterSubmitDestroy.push(buf);
    else buf.destroy();
  }

  /** Submit everything encoded so far as one command buffer (uniform ring written first). */
  flush(): void {
    if (!this.encoder_) return;
    this.endPass();
    for (let i = 0; i <= this.ringIndex && i < this.ring.length; i++) {
      const c = this.ring[i]!;
      if (c.used) this.queue.writeBuffer(c.buffer, 0, c.data, 0, c.used);
      c.used = 0;
    }
    this.ringIndex = 0;
    const cb = this.encoder_.finish();
    this.encoder_ = null;
    this.queue.submit([cb]);
    this.stats.submits++;
    this.pool.afterSubmit();
    for (const b of this.afterSubmitDestroy) b.destroy();
    this.afterSubmitDestroy.length = 0;
  }

  /** Start a GPU wait (the hook first: Dawn schedules its first poll inside the call). */
  private gpuWait<T>(start: () => Promise<T>): Promise<T> {
    this.onWait?.();
    return start();
  }

  /** Submit pending work and wait for the GPU; throws any error the device reported meanwhile. */
  async sync(): Promise<void> {
    this.flush();
    await this.gpuWait(() => this.queue.onSubmittedWorkDone());
    await this.awaitCompileChecks();
    this.throwPending('sync');
  }

  /**
   * GPU time of the dispatches `fn` encodes, in nanoseconds, from timestamp
   * queries (null where the device has no timestamp-query). Submits and waits.
   * The timestamps bracket the compute pass that `fn`'s first dispatch opens, so
   * work after a copy (which ends the pass) in the same `fn` is not counted.
   */
  async timeGpu(fn: () => void): Promise<number | null> {
    if (!this.caps.timestampQuery) {
      fn();
      await this.sync();
      return null;
    }
    const qs = this.device.createQuerySet({ type: 'timestamp', count: 2 });
    this.flush();
    this.endPass();
    this.passTimestamps = { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 };
    fn();
    if (this.passTimestamps) {
      // fn encoded no dispatch: nothing to time.
      this.passTimestamps = undefined;
      qs.destroy();
      return 0;
    }
    const t = await this.readTimestamps(qs, 2, 'timeGpu');
    return Number(t[1]! - t[0]!);
  }

  /**
   * GPU time of each dispatch `fn` encodes (nanoseconds, from timestamp queries), in
   * encoding order, with the kernel (`file:entry`) and workgroup counts; submits and waits.
   * Each dispatch runs in a compute pass of its own, so the total is a little above the
   * time of the same work in one pass. Returns null where the device has no timestamp-query
   * (`fn` still runs). Up to `maxDispatches` are timed; later ones run untimed.
   */
  async profile(fn: () => void, maxDispatches = 1024): Promise<DispatchProfile[] | null> {
    if (!this.caps.timestampQuery) {
      fn();
      await this.sync();
      return null;
    }
    if (this.profiling) throw new ArgumentError('profile: already profiling (profile calls do not nest)');
    const capacity = Math.max(1, Math.min(maxDispatches, 2048));
    this.flush();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 * capacity });
    this.profiling = { querySet, capacity, records: [] };
    let records: { kernel: string; workgroups: [number, number, number] }[];
    try {
      fn();
    } finally {
      records = this.profiling.records;
      this.profiling = null;
      this.passTimestamps = undefined;
    }
    const n = records.length;
    if (n === 0) {
      await this.sync();
      querySet.destroy();
      return [];
    }
    const t = await this.readTimestamps(querySet, 2 * n, 'profile');
    return records.map((r, i) => ({ ...r, ns: Number(t[2 * i + 1]! - t[2 * i]!) }));
  }

  /**
   * Resolve the first `count` timestamps of `querySet`, submit, and read them back; destroys
   * the query set and its staging buffers, and throws any error the device reported.
   */
  private async readTimestamps(querySet: GPUQuerySet, count: number, op: string): Promise<BigInt64Array> {
    const bytes = 8 * count;
    const resolve = this.device.createBuffer({ size: bytes, usage: QUERY_RESOLVE | COPY_SRC_ONLY });
    const out = this.device.createBuffer({ size: bytes, usage: MAP_READ_USAGE });
    const enc = this.encoder();
    enc.resolveQuerySet(querySet, 0, count, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, out, 0, bytes);
    this.flush();
    await this.gpuWait(() => out.mapAsync(MAP_MODE_READ));
    const t = new BigInt64Array(out.getMappedRange().slice(0));
    out.unmap();
    out.destroy();
    resolve.destroy();
    querySet.destroy();
    this.throwPending(op);
    return t;
  }

  private async awaitCompileChecks(): Promise<void> {
    if (!this.compileChecks.length) return;
    const checks = this.compileChecks.splice(0);
    const results = await Promise.allSettled(checks);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.errors.length = 0; // the compile error explains the validation errors that follow it
      throw failed.reason;
    }
  }

  private throwPending(op: string): void {
    if (this.lostMessage) throw new DeviceError(`${op}: ${this.lostMessage}`);
    if (this.errors.length) {
      const msgs = this.errors.splice(0);
      const text = msgs.join('\n');
      if (/destroyed/i.test(text)) throw new DisposedError(`${op}: the device reported use of a destroyed buffer:\n${text}`);
      throw new DeviceError(`${op}: the device reported ${msgs.length} error(s):\n${text}`);
    }
  }

  private checkAlive(op: string): void {
    if (this.destroyed) throw new DisposedError(`${op}: the context was destroyed`);
    if (this.lostMessage) throw new DeviceError(`${op}: ${this.lostMessage}`);
  }

  private checkDType(dtype: DType, what: string): void {
    if (dtype !== 'f32' && dtype !== 'f16') throw new DTypeError(`${what}: dtype '${dtype}', expected 'f32' or 'f16'`);
    if (dtype === 'f16' && !this.caps.f16) throw new DTypeError(`${what}: dtype f16 needs the shader-f16 feature, which this device lacks`);
  }

  /** Release every buffer and destroy the device (lets Node exit). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.pass = null;
    this.encoder_ = null;
    this.pool.destroyAll();
    for (const c of this.ring) c.buffer.destroy();
    this.bindGroups.clear();
    this.device.destroy();
    // Dawn's instance must outlive the device's teardown; drop it one turn later.
    const keep = this.keepAlive;
    setTimeout(() => void keep, 0);
    this.keepAlive = null;
    this.onDestroy?.();
  }
}
