/**
 * webgpu-lora: hand-written WebGPU kernels for fine-tuning with LoRA and adapters.
 * This entry is portable (browser and Node); `webgpu-lora/node` adds Dawn.
 */
export { createContext, GpuContext } from './gpu/context.js';
export type { Caps, ContextOptions, ContextStats, CopyOptions, DispatchOptions, DispatchProfile, BindingResource, MemoryStats, SubgroupMatrixConfig } from './gpu/context.js';
export * from './gpu/errors.js';
export { KernelModule } from './gpu/kernel.js';
export type { DType, EntryInfo, BindingInfo } from './gpu/kernel.js';
export { Tensor } from './gpu/tensor.js';
export type { PoolStats } from './gpu/pool.js';
export * from './kernels/matmul.js';
export * from './kernels/elementwise.js';
export * from './kernels/reduce.js';
export * from './kernels/lerp.js';
export { maxChunkBytes, rowBlocks } from './kernels/chunks.js';
export * from './kernels/lora.js';
export * from './kernels/maskedGrad.js';
export * from './kernels/random.js';
export * from './kernels/optim.js';
export { ParamArena, type ParamArenaOptions } from './optim/arena.js';
export * as autograd from './autograd/ops.js';
export { backward, clearTape, findNonFinite, grad, noGrad, requiresGrad, setGradMask, zeroGrad } from './autograd/tape.js';
export type { BackwardOptions } from './autograd/tape.js';
export * from './kernels/softmax.js';
export * from './kernels/norm.js';
export * from './kernels/embedding.js';
export * from './io/safetensors.js';
export { SafetensorsError, type SafetensorsErrorSite } from './io/errors.js';
export { readSafetensorsBlob, readSafetensorsBuffer, safetensorsBlob } from './io/browser.js';
export { formatJson, type FormatJsonOptions } from './io/json.js';
export * from './nn/module.js';
export * from './nn/layers.js';
export * from './nn/gpt2.js';
export * from './nn/generate.js';
export * from './nn/checkpoint.js';
export * from './peft/config.js';
export * from './peft/lora.js';
export * from './peft/bottleneck.js';
export * from './peft/freeze.js';
export * from './peft/interpolate.js';
export * from './peft/files.js';
