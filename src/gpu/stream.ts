/**
 * The command stream: one open command encoder and compute pass that every dispatch and copy
 * goes into, submitted as one command buffer by `flush()` (which `sync()` and `read()` call),
 * so a training step is one submit. Buffers that encoded work may still use are destroyed
 * only after that work is submitted.
 */
import type { Memory } from './memory.js';

export class CommandStream {
  private encoder_: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  /** Timestamp writes for the next compute pass to open (timeGpu, profile). */
  nextPassTimestamps: GPUComputePassTimestampWrites | undefined;
  private readonly afterSubmitDestroy: GPUBuffer[] = [];
  /** Run just before each submit (the uniform ring's upload). */
  readonly beforeSubmit: (() => void)[] = [];
  /** Run just after each submit (the pool's pending buffers become reusable). */
  readonly afterSubmit: (() => void)[] = [];

  constructor(
    private readonly device: GPUDevice,
    private readonly memory: Memory,
    private readonly stats: { submits: number },
    private readonly onWait?: () => void,
  ) {}

  /** True while work is encoded and not yet submitted. */
  get pending(): boolean {
    return this.encoder_ !== null;
  }

  /** The open command encoder, with the compute pass ended (for copies and queries). */
  encoder(): GPUCommandEncoder {
    this.endPass();
    if (!this.encoder_) this.encoder_ = this.device.createCommandEncoder({ label: 'webgpu-lora step' });
    return this.encoder_;
  }

  /** The open compute pass (opened with {@link nextPassTimestamps} if set). */
  computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      const enc = this.encoder();
      this.pass = enc.beginComputePass(this.nextPassTimestamps ? { timestampWrites: this.nextPassTimestamps } : {});
      this.nextPassTimestamps = undefined;
    }
    return this.pass;
  }

  endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /** Destroy `buf` once nothing encoded can use it: now if nothing is pending, else after the next submit. */
  destroyAfterSubmit(buf: GPUBuffer): void {
    if (this.encoder_) this.afterSubmitDestroy.push(buf);
    else this.memory.destroyRaw(buf);
  }

  /** Submit everything encoded so far as one command buffer. */
  flush(): void {
    if (!this.encoder_) return;
    this.endPass();
    for (const f of this.beforeSubmit) f();
    const cb = this.encoder_.finish();
    this.encoder_ = null;
    this.device.queue.submit([cb]);
    this.stats.submits++;
    for (const f of this.afterSubmit) f();
    for (const b of this.afterSubmitDestroy) this.memory.destroyRaw(b);
    this.afterSubmitDestroy.length = 0;
  }

  /** Start a GPU wait (the hook first: Dawn schedules its first poll inside the call). */
  wait<T>(start: () => Promise<T>): Promise<T> {
    this.onWait?.();
    return start();
  }

  /** Drop the open encoder without submitting (context teardown). */
  abandon(): void {
    this.pass = null;
    this.encoder_ = null;
    this.afterSubmitDestroy.length = 0;
  }
}
