/**
 * Dispatch validation and bind groups: `ctx.dispatch(module, entry, { bindings, params,
 * constants, workgroups })` matches bindings by their WGSL names, checks each one (given,
 * dtype, disposal, usage, size limits, a window's room, aliasing of written buffers), packs
 * `params` into the uniform ring, and encodes the dispatch into the open compute pass.
 *
 * Binding ranges: a tensor is bound from its first byte, rounded up to 16 bytes where that
 * padding is its own (a pooled buffer's, a ParamArena slot's), so kernels may view any tensor
 * as vec4s. A window whose rounding would reach a neighbour's bytes is bound at its exact
 * length rounded up to the binding's element (4-byte words; 16-byte vec4s), and a written
 * binding that would still reach past the window is refused: a kernel can never write a
 * neighbour, whatever it does with its array.
 */
import type { Caps } from './caps.js';
import type { DeviceErrors } from './deviceErrors.js';
import { ArgumentError, BindingError, DTypeError, SizeLimitError } from './errors.js';
import type { BindingInfo, KernelModule } from './kernel.js';
import type { Pipelines } from './pipelines.js';
import type { Profiler } from './profiler.js';
import type { CommandStream } from './stream.js';
import { Tensor } from './tensor.js';
import type { UniformRing } from './uniforms.js';

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

/** Sees every encoded dispatch's tensors (autograd uses it to find gradients a kernel would lose). */
export type DispatchObserver = (kernel: string, read: readonly Tensor[], written: readonly Tensor[]) => void;

const STORAGE_USAGE = 0x0080;

let nextBufferId = 1;
const bufferIds = new WeakMap<GPUBuffer, number>();
function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = nextBufferId++));
  return id;
}

/** The dtype a binding's element type stores (f32 / f16 scalars and vectors), or null (u32 tables, structs). */
function bindingDType(elementType: string): 'f32' | 'f16' | null {
  if (/^(f16|vec[234]h|vec[234]<f16>)$/.test(elementType)) return 'f16';
  if (/^(f32|vec[234]f|vec[234]<f32>)$/.test(elementType)) return 'f32';
  return null;
}

/** Bytes between array elements of this element type (16 for anything unrecognised: conservative). */
function elementStride(elementType: string): number {
  if (/^(f32|u32|i32|atomic<[ui]32>)$/.test(elementType)) return 4;
  if (elementType === 'f16') return 2;
  const v = /^vec([234])(?:([fhiu])|<(f32|f16|i32|u32)>)$/.exec(elementType);
  if (v) {
    const lanes = v[1] === '3' ? 4 : Number(v[1]);
    return lanes * (v[2] === 'h' || v[3] === 'f16' ? 2 : 4);
  }
  return 16;
}

export class Dispatcher {
  observer: DispatchObserver | null = null;

  constructor(
    private readonly caps: Caps,
    private readonly errors: DeviceErrors,
    private readonly ring: UniformRing,
    private readonly pipelines: Pipelines,
    private readonly stream: CommandStream,
    private readonly profiler: Profiler,
    private readonly stats: { dispatches: number },
  ) {}

  dispatch(m: KernelModule, entry: string, opts: DispatchOptions): void {
    const where = `${m.file}:${entry}`;
    this.errors.checkAlive(where);
    const e = m.entry(entry);
    const constants = m.checkConstants(entry, opts.constants);
    const maxWg = this.caps.limits.maxComputeWorkgroupsPerDimension ?? 65535;
    const wg = [opts.workgroups[0], opts.workgroups[1] ?? 1, opts.workgroups[2] ?? 1] as const;
    for (let i = 0; i < 3; i++) {
      const n = wg[i]!;
      if (!Number.isInteger(n) || n < 0) throw new ArgumentError(`${where}: workgroups[${i}] = ${n}, expected an integer >= 0`);
      if (n > maxWg) throw new SizeLimitError(`${where}: workgroups[${i}] = ${n}, over maxComputeWorkgroupsPerDimension ${maxWg}`);
    }
    const entries: GPUBindGroupEntry[] = [];
    const keyParts: string[] = [];
    const written = new Map<GPUBuffer, string>();
    const read = new Map<GPUBuffer, string>();
    const given = new Set(Object.keys(opts.bindings));
    const maxBinding = this.caps.limits.maxStorageBufferBindingSize ?? Infinity;
    const observed = this.observer ? { read: [] as Tensor[], written: [] as Tensor[] } : null;
    let dynamicOffset = -1;
    for (const b of e.bindings) {
      given.delete(b.name);
      if (b.kind === 'uniform') {
        if (!e.uniform) continue;
        const slot = this.ring.pack(where, e, opts.params ?? {});
        dynamicOffset = slot.offset;
        entries.push({ binding: b.binding, resource: { buffer: slot.buffer, offset: 0, size: slot.size } });
        keyParts.push(`u${bufferId(slot.buffer)}`);
        continue;
      }
      const r = opts.bindings[b.name];
      if (r === undefined) throw new BindingError(`${where}: binding '${b.name}' (@binding(${b.binding}), ${b.kind} ${b.elementType}) was not given`);
      const { buffer, offset, size } = r instanceof Tensor ? tensorRange(where, b, r) : rawRange(r);
      if (observed && r instanceof Tensor) (b.kind === 'storage' ? observed.written : observed.read).push(r);
      if (!(buffer.usage & STORAGE_USAGE)) {
        throw new BindingError(`${where}: binding '${b.name}' needs a buffer with STORAGE usage, got usage 0x${buffer.usage.toString(16)}`);
      }
      if (offset + size > buffer.size) {
        throw new BindingError(`${where}: binding '${b.name}' window [${offset}, ${offset + size}) exceeds the buffer's ${buffer.size} bytes`);
      }
      if (size > maxBinding) throw new SizeLimitError(`${where}: binding '${b.name}' is ${size} bytes, over maxStorageBufferBindingSize ${maxBinding}`);
      // A buffer written by a dispatch may not be bound anywhere else in it (WebGPU usage rules).
      const other = written.get(buffer) ?? (b.kind === 'storage' ? read.get(buffer) : undefined);
      if (other !== undefined) throw new BindingError(`${where}: binding '${b.name}' uses the same buffer as '${other}', and one of them is written`);
      (b.kind === 'storage' ? written : read).set(buffer, b.name);
      entries.push({ binding: b.binding, resource: { buffer, offset, size } });
      keyParts.push(`${bufferId(buffer)}@${offset}+${size}`);
    }
    if (given.size) {
      throw new BindingError(`${where}: unknown binding(s) ${[...given].map((g) => `'${g}'`).join(', ')} (has ${e.bindings.map((b) => b.name).join(', ')})`);
    }
    const p = this.pipelines.pipeline(m, e, constants);
    const bg = this.pipelines.bindGroup(p, entries, keyParts.join('|'));
    if (wg[0] === 0 || wg[1] === 0 || wg[2] === 0) return;
    if (observed) this.observer!(where, observed.read, observed.written);
    this.profiler.beforeDispatch(where, wg);
    const pass = this.stream.computePass();
    pass.setPipeline(p.pipeline);
    if (dynamicOffset >= 0) pass.setBindGroup(0, bg, [dynamicOffset]);
    else pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    this.stats.dispatches++;
  }
}

/** A raw buffer, or a range of one, as given. */
function rawRange(r: GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number }): { buffer: GPUBuffer; offset: number; size: number } {
  if ('buffer' in r && !('usage' in r)) {
    const offset = r.offset ?? 0;
    return { buffer: r.buffer, offset, size: r.size ?? r.buffer.size - offset };
  }
  const buffer = r as GPUBuffer;
  return { buffer, offset: 0, size: buffer.size };
}

/** The range a tensor binds (see the header): its own bytes, padded only into room that is its own. */
function tensorRange(where: string, b: BindingInfo, t: Tensor): { buffer: GPUBuffer; offset: number; size: number } {
  const buffer = t.buffer(`${where} binding '${b.name}'`);
  const want = bindingDType(b.elementType);
  if (want && want !== t.dtype) throw new DTypeError(`${where}: binding '${b.name}' is array<${b.elementType}>, got tensor '${t.label}' of dtype ${t.dtype}`);
  const offset = t.byteOffset;
  const padded = Math.ceil(t.byteLength / 16) * 16;
  const room = t.limit - offset;
  // Read-only bindings may see past the window (nothing is written there).
  if (b.kind !== 'storage') return { buffer, offset, size: Math.min(buffer.size - offset, padded) };
  if (padded <= room) return { buffer, offset, size: padded };
  const unit = Math.max(4, elementStride(b.elementType));
  const size = Math.ceil(t.byteLength / unit) * unit;
  if (size > room) {
    const owner = t.parent ? ` of '${t.parent.label}'` : '';
    throw new BindingError(
      `${where}: binding '${b.name}' is written as array<${b.elementType}> (${unit}-byte units), so '${t.label}' [${t.shape.join(',')}] ${t.dtype} ` +
        `(${t.byteLength} bytes at byte ${offset}${owner}) would be written up to byte ${offset + size}, past its own ${room} bytes into its neighbours'; ` +
        `use a tensor of its own, or a window whose byte length is a multiple of ${unit}`,
    );
  }
  return { buffer, offset, size };
}
