/**
 * Device-side input checks: data that lives on the GPU (cross-entropy labels) is validated by
 * the kernel that reads it, without a readback in the step. A kernel given a check slot records
 * the first bad element there (word 0: 0xffffffff − index by atomicMax, so the smallest index
 * wins and 0 means none; word 1: the bad value's bits). The next `sync()` / `read()` copies
 * the slots out in its own submit, clears them, and throws the first failed check as a typed
 * error (each slot's `describe` builds it, naming the op, the index and the value).
 */
import type { Memory } from './memory.js';
import type { CommandStream } from './stream.js';

/** Slots per collection; checks armed past this share the last slot (its message says so). */
const SLOTS = 256;
const WORDS = 2;
const MAP_READ_USAGE = 0x0001 | 0x0008; // MAP_READ | COPY_DST
const MAP_MODE_READ = 0x0001;

/** Builds the error for a failed check from the first bad index and the bits of its value. */
export type CheckDescriber = (index: number, valueBits: number) => Error;

/** What a sync/read collects: the staging copy of the slots and who armed them. */
export interface CheckCollection {
  staging: GPUBuffer;
  describers: CheckDescriber[];
  /** Checks armed past the slots, which shared the last one. */
  shared: number;
}

export class DeviceChecks {
  private buffer: GPUBuffer | null = null;
  private armed: CheckDescriber[] = [];
  private shared = 0;

  constructor(
    private readonly memory: Memory,
    private readonly stream: CommandStream,
  ) {}

  /**
   * A slot for one kernel's check: bind `buffer` (an array<atomic<u32>>) and pass `slot` to the
   * kernel. `null` arms nothing (a configuration of the kernel that checks nothing but still
   * declares the binding); nothing is read back for it.
   */
  slot(describe: CheckDescriber | null): { buffer: GPUBuffer; slot: number } {
    this.buffer ??= this.memory.rawBuffer({ size: SLOTS * WORDS * 4, label: 'device checks' });
    if (!describe) return { buffer: this.buffer, slot: 0 };
    if (this.armed.length < SLOTS) {
      this.armed.push(describe);
      return { buffer: this.buffer, slot: this.armed.length - 1 };
    }
    this.shared++;
    return { buffer: this.buffer, slot: SLOTS - 1 };
  }

  /** Encode the copy-out and clear of armed slots before the submit a sync/read waits on; null if none is armed. */
  collect(): CheckCollection | null {
    if (!this.armed.length || !this.buffer) return null;
    const bytes = this.armed.length * WORDS * 4;
    const staging = this.memory.rawBuffer({ size: bytes, usage: MAP_READ_USAGE, label: 'device checks (read)' });
    const enc = this.stream.encoder();
    enc.copyBufferToBuffer(this.buffer, 0, staging, 0, bytes);
    enc.clearBuffer(this.buffer, 0, bytes);
    const c = { staging, describers: this.armed, shared: this.shared };
    this.armed = [];
    this.shared = 0;
    return c;
  }

  /** After the submit: map the copy and throw the first failed check (in arming order). Always frees the copy. */
  async report(c: CheckCollection | null, wait: (start: () => Promise<void>) => Promise<void>): Promise<void> {
    if (!c) return;
    let words: Uint32Array;
    try {
      await wait(() => c.staging.mapAsync(MAP_MODE_READ));
      words = new Uint32Array(c.staging.getMappedRange().slice(0));
    } finally {
      this.memory.destroyRaw(c.staging);
    }
    for (let s = 0; s < c.describers.length; s++) {
      const code = words[WORDS * s]!;
      if (code === 0) continue;
      const e = c.describers[s]!(0xffffffff - code, words[WORDS * s + 1]!);
      if (s === SLOTS - 1 && c.shared) e.message += ` (in one of the ${c.shared + 1} checked calls from the ${SLOTS}th on since the last sync)`;
      throw e;
    }
  }

  /** Free a collection that will not be reported (its submit failed). */
  discard(c: CheckCollection | null): void {
    if (c) this.memory.destroyRaw(c.staging);
  }
}
