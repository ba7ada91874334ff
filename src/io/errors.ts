/**
 * The typed error of the file readers and writers in `src/io`.
 *
 * A message names the file (when it has a name), the tensor (when one is at fault) and the
 * problem with the expected and the found value, e.g.
 * `safetensors "adapter_model.safetensors": tensor "lm_head.weight": data_offsets [0, 12] hold 12 bytes, expected 16 (F32 × shape [2, 2])`.
 */
import { WebGpuLoraError } from '../gpu/errors.js';

/** Where a {@link SafetensorsError} happened: the file and the tensor, when they are known. */
export interface SafetensorsErrorSite {
  /** The file's path or name. */
  source?: string | undefined;
  /** The tensor the problem belongs to. */
  tensor?: string | undefined;
}

/**
 * A safetensors file (or a set of tensors to write as one) that breaks the format: a short or
 * oversized header, a header that is not UTF-8 JSON of the right form, an unknown dtype,
 * offsets that leave holes, overlap or disagree with shape × dtype, bytes past the end, and
 * so on. Raised before any view into the data is made.
 */
export class SafetensorsError extends WebGpuLoraError {
  override readonly name: string = 'SafetensorsError';
  /** The file's path or name, when known. */
  readonly source: string | undefined;
  /** The tensor at fault, when one is. */
  readonly tensor: string | undefined;

  constructor(problem: string, site: SafetensorsErrorSite = {}, options: { cause?: unknown } = {}) {
    super(
      'safetensors' +
        (site.source !== undefined ? ` ${quoteName(site.source)}` : '') +
        ': ' +
        (site.tensor !== undefined ? `tensor ${quoteName(site.tensor)}: ` : '') +
        problem,
    );
    this.source = site.source;
    this.tensor = site.tensor;
    if (options.cause !== undefined) {
      Object.defineProperty(this, 'cause', { value: options.cause, writable: true, configurable: true });
    }
  }
}

/**
 * A name as JSON writes it (quotes, escapes), cut to 200 characters: names come from files,
 * and a crafted 50 MB name should not become a 50 MB message.
 */
export function quoteName(name: string): string {
  const q = JSON.stringify(name.length > 200 ? name.slice(0, 200) : name);
  return name.length > 200 ? `${q.slice(0, -1)}…" (${name.length} characters)` : q;
}
