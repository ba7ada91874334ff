/**
 * The runtime's parts, built and wired together for one device. The façade (context.ts) holds
 * them and forwards each call to the one part that does it:
 * - caps.ts: adapter, device, features and limits (read once)
 * - memory.ts + pool.ts: tensor allocation, the buffer pool, raw buffers, `ctx.memory()`
 * - transfer.ts: write, read, sync, checked copies
 * - scopes.ts: which scope owns a new tensor, and what a closing scope frees
 * - pipelines.ts: shader module, layout, pipeline and bind group caches
 * - dispatch.ts: binding checks (windows' room, aliasing, limits) and encoding a dispatch
 * - uniforms.ts: the uniform ring and params packing
 * - stream.ts: the command encoder, submit, destroy-after-submit
 * - profiler.ts: timeGpu and per-dispatch profiles
 * - deviceErrors.ts: errors the device reports asynchronously, and destroy/loss
 * - deviceChecks.ts: GPU-side input checks reported at the next sync/read
 */
import type { Caps } from './caps.js';
import { DeviceChecks } from './deviceChecks.js';
import { DeviceErrors } from './deviceErrors.js';
import { Dispatcher } from './dispatch.js';
import { Memory } from './memory.js';
import { Pipelines } from './pipelines.js';
import { Profiler } from './profiler.js';
import { Scopes } from './scopes.js';
import { CommandStream } from './stream.js';
import { Transfer } from './transfer.js';
import { UniformRing } from './uniforms.js';

export interface Parts {
  errors: DeviceErrors;
  memory: Memory;
  scopes: Scopes;
  stream: CommandStream;
  pipelines: Pipelines;
  dispatcher: Dispatcher;
  profiler: Profiler;
  checks: DeviceChecks;
  transfer: Transfer;
}

export interface ContextStats {
  submits: number;
  dispatches: number;
  pipelines: number;
}

export function buildParts(device: GPUDevice, caps: Caps, stats: ContextStats, onWait?: () => void): Parts {
  const errors = new DeviceErrors(device);
  // The pool holds back buffers released while work is being encoded (until it is submitted).
  const memory: Memory = new Memory(device, caps, () => stream.pending);
  const stream = new CommandStream(device, memory, stats, onWait);
  const ring = new UniformRing(memory, caps.limits.minUniformBufferOffsetAlignment);
  stream.beforeSubmit.push(() => ring.upload(device.queue));
  stream.afterSubmit.push(() => memory.pool.afterSubmit());
  const pipelines = new Pipelines(device, caps, errors, stats);
  const checks = new DeviceChecks(memory, stream);
  const transfer = new Transfer(device, memory, stream, errors, checks);
  const profiler = new Profiler(device, caps, memory, stream, errors, () => transfer.sync());
  const dispatcher = new Dispatcher(caps, errors, ring, pipelines, stream, profiler, stats);
  return { errors, memory, scopes: new Scopes(), stream, pipelines, dispatcher, profiler, checks, transfer };
}
