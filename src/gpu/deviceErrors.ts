/**
 * Device errors: what the device reports asynchronously (uncaptured validation errors, device
 * loss, shader compile diagnostics) is collected here and thrown, typed, by the next
 * `sync()` / `read()`; and whether the context may still be used at all.
 */
import { DeviceError, DisposedError } from './errors.js';

export class DeviceErrors {
  /** Set by `GpuContext.destroy()`; every later use throws a DisposedError. */
  destroyed = false;
  private readonly errors: string[] = [];
  private lostMessage: string | null = null;
  private readonly compileChecks: Promise<void>[] = [];

  constructor(device: GPUDevice) {
    device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      if (this.errors.length < 16) this.errors.push(`${e.constructor?.name ?? 'GPUError'}: ${e.message}`);
    });
    void device.lost.then((info) => {
      if (!this.destroyed) this.lostMessage = `device lost (${info.reason}): ${info.message}`;
    });
  }

  /** Throw unless the context is usable: DisposedError after destroy(), DeviceError after device loss. */
  checkAlive(op: string): void {
    if (this.destroyed) throw new DisposedError(`${op}: the context was destroyed`);
    if (this.lostMessage) throw new DeviceError(`${op}: ${this.lostMessage}`);
  }

  /** A shader module's compile check (rejects with a KernelCompileError), awaited by {@link awaitCompileChecks}. */
  addCompileCheck(check: Promise<void>): void {
    this.compileChecks.push(check);
  }

  /** Await pending compile checks; throws the first KernelCompileError. */
  async awaitCompileChecks(): Promise<void> {
    if (!this.compileChecks.length) return;
    const checks = this.compileChecks.splice(0);
    const results = await Promise.allSettled(checks);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      this.errors.length = 0; // the compile error explains the validation errors that follow it
      throw failed.reason;
    }
  }

  /** Throw what the device reported since the last call (device loss first). */
  throwPending(op: string): void {
    if (this.lostMessage) throw new DeviceError(`${op}: ${this.lostMessage}`);
    if (this.errors.length) {
      const msgs = this.errors.splice(0);
      const text = msgs.join('\n');
      if (/destroyed/i.test(text)) throw new DisposedError(`${op}: the device reported use of a destroyed buffer:\n${text}`);
      throw new DeviceError(`${op}: the device reported ${msgs.length} error(s):\n${text}`);
    }
  }
}
