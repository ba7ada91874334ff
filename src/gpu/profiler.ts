/**
 * The profiler: GPU time from timestamp queries, for a block of work (`timeGpu`) or for each
 * dispatch in it (`profile`, which gives every dispatch a compute pass of its own).
 */
import type { Caps } from './caps.js';
import type { DeviceErrors } from './deviceErrors.js';
import { ArgumentError } from './errors.js';
import type { Memory } from './memory.js';
import type { CommandStream } from './stream.js';

const MAP_READ_USAGE = 0x0001 | 0x0008; // MAP_READ | COPY_DST
const COPY_SRC = 0x0004;
const QUERY_RESOLVE = 0x0200;
const MAP_MODE_READ = 0x0001;

/** One dispatch's GPU time from {@link GpuContext.profile}. */
export interface DispatchProfile {
  kernel: string;
  workgroups: [number, number, number];
  ns: number;
}

interface Profiling {
  querySet: GPUQuerySet;
  capacity: number;
  records: { kernel: string; workgroups: [number, number, number] }[];
}

export class Profiler {
  private profiling: Profiling | null = null;

  constructor(
    private readonly device: GPUDevice,
    private readonly caps: Caps,
    private readonly memory: Memory,
    private readonly stream: CommandStream,
    private readonly errors: DeviceErrors,
    /** Submit and wait (the context's sync: also throws what the device reported). */
    private readonly sync: () => Promise<void>,
  ) {}

  /** Called by the dispatcher before each dispatch: while profiling, the dispatch gets a timed pass of its own. */
  beforeDispatch(kernel: string, wg: readonly [number, number, number]): void {
    const prof = this.profiling;
    if (!prof) return;
    // Untimed past the query set's capacity, but still in a pass of its own.
    this.stream.endPass();
    if (prof.records.length < prof.capacity) {
      const i = prof.records.length;
      this.stream.nextPassTimestamps = { querySet: prof.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
      prof.records.push({ kernel, workgroups: [wg[0], wg[1], wg[2]] });
    }
  }

  async timeGpu(fn: () => void): Promise<number | null> {
    if (!this.caps.timestampQuery) {
      fn();
      await this.sync();
      return null;
    }
    this.errors.checkAlive('timeGpu');
    const qs = this.device.createQuerySet({ type: 'timestamp', count: 2 });
    this.stream.flush();
    this.stream.endPass();
    this.stream.nextPassTimestamps = { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 };
    fn();
    if (this.stream.nextPassTimestamps) {
      // fn encoded no dispatch: nothing to time.
      this.stream.nextPassTimestamps = undefined;
      qs.destroy();
      return 0;
    }
    const t = await this.readTimestamps(qs, 2, 'timeGpu');
    return Number(t[1]! - t[0]!);
  }

  async profile(fn: () => void, maxDispatches: number): Promise<DispatchProfile[] | null> {
    if (!this.caps.timestampQuery) {
      fn();
      await this.sync();
      return null;
    }
    if (this.profiling) throw new ArgumentError('profile: already profiling (profile calls do not nest)');
    this.errors.checkAlive('profile');
    const capacity = Math.max(1, Math.min(maxDispatches, 2048));
    this.stream.flush();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 * capacity });
    this.profiling = { querySet, capacity, records: [] };
    let records: Profiling['records'];
    try {
      fn();
    } finally {
      records = this.profiling.records;
      this.profiling = null;
      this.stream.nextPassTimestamps = undefined;
    }
    const n = records.length;
    if (n === 0) {
      await this.sync();
      querySet.destroy();
      return [];
    }
    const t = await this.readTimestamps(querySet, 2 * n, 'profile');
    return records.map((r, i) => ({ ...r, ns: Number(t[2 * i + 1]! - t[2 * i]!) }));
  }

  /**
   * Resolve the first `count` timestamps of `querySet`, submit, and read them back; destroys
   * the query set and its buffers, and throws any error the device reported.
   */
  private async readTimestamps(querySet: GPUQuerySet, count: number, op: string): Promise<BigInt64Array> {
    const bytes = 8 * count;
    const resolve = this.memory.rawBuffer({ size: bytes, usage: QUERY_RESOLVE | COPY_SRC, label: `${op} timestamps` });
    const out = this.memory.rawBuffer({ size: bytes, usage: MAP_READ_USAGE, label: `${op} timestamps (read)` });
    const enc = this.stream.encoder();
    enc.resolveQuerySet(querySet, 0, count, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, out, 0, bytes);
    this.stream.flush();
    try {
      await this.stream.wait(() => out.mapAsync(MAP_MODE_READ));
      return new BigInt64Array(out.getMappedRange().slice(0));
    } finally {
      this.memory.destroyRaw(out);
      this.memory.destroyRaw(resolve);
      querySet.destroy();
      this.errors.throwPending(op);
    }
  }
}
