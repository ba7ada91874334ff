/**
 * Typed errors. Every message names the op or kernel, the argument, what was
 * expected and what was found, e.g.
 * `matmul: A has shape [3,4], expected [M,K] with K = 5 (from B [5,6])`.
 */
export class WebGpuLoraError extends Error {
  // Each class names itself with a string literal, not `new.target.name`: a minifying bundler
  // renames classes, and `err.name` must still say what went wrong.
  override readonly name: string = 'WebGpuLoraError';
}

/** Shapes, ranks or element counts that do not fit together. */
export class ShapeError extends WebGpuLoraError {
  override readonly name: string = 'ShapeError';
}

/** A dtype the op does not take, or a feature (shader-f16) the device lacks for it. */
export class DTypeError extends WebGpuLoraError {
  override readonly name: string = 'DTypeError';
}

/** A buffer or binding over a device limit (maxStorageBufferBindingSize, workgroups per dimension). */
export class SizeLimitError extends WebGpuLoraError {
  override readonly name: string = 'SizeLimitError';
}

/** A buffer that does not match the kernel's reflected binding (size, usage, kind). */
export class BindingError extends WebGpuLoraError {
  override readonly name: string = 'BindingError';
}

/** An argument with an invalid value (a non-finite scalar, an unknown option or constant). */
export class ArgumentError extends WebGpuLoraError {
  override readonly name: string = 'ArgumentError';
}

/** Use of a tensor after `dispose()` or a buffer after `destroy()`. */
export class DisposedError extends WebGpuLoraError {
  override readonly name: string = 'DisposedError';
}

/** WGSL that does not compile; the message carries `file:line:col` for each diagnostic. */
export class KernelCompileError extends WebGpuLoraError {
  override readonly name: string = 'KernelCompileError';
}

/** An error reported by the WebGPU implementation (validation, out of memory, device lost). */
export class DeviceError extends WebGpuLoraError {
  override readonly name: string = 'DeviceError';
}
