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

/** Dawn instance flags: unsafe APIs expose subgroup-matrix; the toggle un-hides shader-f16 on NVIDIA's Vulkan driver. */
export const DAWN_FLAGS = ['enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia'];

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
 */
export async function createContext(options: Omit<ContextOptions, 'gpu' | 'keepAlive'> & { dawnFlags?: string[] } = {}): Promise<GpuContext> {
  installGlobals();
  const gpu = create(options.dawnFlags ?? DAWN_FLAGS);
  return createFromGpu({ ...options, gpu, keepAlive: gpu });
}
