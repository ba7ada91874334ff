/**
 * Node.js entry: a context on Dawn (npm `webgpu`). The only file that imports `webgpu`.
 *
 * ```ts
 * import { createContext } from 'webgpu-lora/node';
 * const ctx = await createContext();
 * console.log(ctx.caps.adapter.description, ctx.caps.f16);
 * ctx.destroy(); // lets the process exit
 * ```
 */
import { create, globals } from 'webgpu';
import { createContext as createFromGpu, type ContextOptions, type GpuContext } from './context.js';
import { installPollBackoff, pollWaitStarts, type PollBackoffOptions } from './pollBackoff.js';

export { pollStats, type PollBackoffOptions, type PollStats } from './pollBackoff.js';

/** Dawn instance flags: the toggle un-hides shader-f16 on NVIDIA's Vulkan driver. */
export const DAWN_FLAGS = ['enable-dawn-features=vulkan_enable_f16_on_nvidia'];

/**
 * The Dawn instance flags for these options: {@link DAWN_FLAGS}, plus `allow_unsafe_apis` only
 * when a feature that needs it is requested (`subgroupMatrix: true`; Dawn lists the
 * experimental subgroup-matrix feature only with it). Nothing else needs unsafe APIs.
 */
export function dawnFlagsFor(o: { subgroupMatrix?: boolean }): string[] {
  return o.subgroupMatrix ? ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'] : DAWN_FLAGS;
}

let globalsInstalled = false;

/** Install WebGPU's globals (GPUBufferUsage, GPUShaderStage, ...) on `globalThis`, as browsers have them. */
export function installGlobals(): void {
  if (globalsInstalled) return;
  Object.assign(globalThis, globals);
  globalsInstalled = true;
}

/**
 * Create a context on Dawn. Options are those of the portable `createContext`
 * (pass `device` to wrap one you made yourself). The Dawn instance stays
 * referenced by the context: if it were garbage-collected while a device is
 * in use, Dawn would crash in `InstanceBase::ProcessEvents`.
 *
 * While the context lives, Dawn's promise polling backs off after half a millisecond of
 * waiting instead of spinning a CPU core (see `pollBackoff.ts`; a software adapter runs
 * ~25 % faster for it on two cores); `pollBackoff: false` keeps Dawn's own loop, and an
 * object sets the spin and sleep times (the first context to install it sets them).
 * `subgroupMatrix: true` requests tensor cores where the adapter has them (and only then
 * turns on Dawn's `allow_unsafe_apis`; see {@link dawnFlagsFor}).
 */
export async function createContext(
  options: Omit<ContextOptions, 'gpu' | 'keepAlive' | 'onDestroy' | 'onWait'> & { dawnFlags?: string[]; pollBackoff?: false | PollBackoffOptions } = {},
): Promise<GpuContext> {
  installGlobals();
  const { dawnFlags, pollBackoff, ...rest } = options;
  const gpu = create(dawnFlags ?? dawnFlagsFor(rest));
  const release = pollBackoff === false ? undefined : installPollBackoff(pollBackoff ?? {});
  try {
    return await createFromGpu({ ...rest, gpu, keepAlive: gpu, onDestroy: release, onWait: release && pollWaitStarts });
  } catch (e) {
    release?.();
    throw e;
  }
}
