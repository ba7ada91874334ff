/**
 * Bench helpers: benchmark.js for wall time (medians of its samples), GPU timestamp
 * queries for kernel time, and a results table.
 */
import Benchmark from 'benchmark';

export interface Row {
  suite: string;
  name: string;
  /** What one run computes, for the rate column. */
  work?: { flops?: number; bytes?: number };
  /** Median wall time of one run, ms (submit + wait, or the peer's equivalent). */
  wallMs: number;
  /** Median GPU time from timestamp queries, ms (null where unavailable). */
  gpuMs: number | null;
  note?: string;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * Median wall time (ms) of the async `fn`, measured with benchmark.js (deferred): at least
 * `minSamples` runs (fewer for steps of seconds, timed in interleaved rounds), and more until
 * `maxTime` seconds have passed.
 */
export function wallTime(name: string, fn: () => Promise<unknown>, maxTime = 1.5, minSamples = 5): Promise<number> {
  return new Promise((resolve, reject) => {
    const b = new Benchmark(name, {
      defer: true,
      minSamples,
      maxTime,
      initCount: 1,
      fn: (deferred: { resolve(): void }) => {
        fn().then(
          () => deferred.resolve(),
          (e) => reject(e),
        );
      },
      onError: (e: unknown) => reject(e),
      onComplete: () => resolve(median(b.stats.sample) * 1000),
    });
    b.run({ async: true });
  });
}

/** Rate of a row: GFLOP/s or GB/s from the GPU time where there is one, else wall time. */
export function rate(r: Row): string {
  const ms = r.gpuMs ?? r.wallMs;
  if (r.work?.flops) return `${(r.work.flops / ms / 1e6).toFixed(2)} GFLOP/s`;
  if (r.work?.bytes) return `${(r.work.bytes / ms / 1e6).toFixed(2)} GB/s`;
  return '';
}

export function printTable(rows: Row[]): void {
  const lines = rows.map((r) => [
    r.suite,
    r.name,
    r.wallMs.toFixed(3),
    r.gpuMs === null ? '-' : r.gpuMs.toFixed(3),
    rate(r),
    r.note ?? '',
  ]);
  const head = ['suite', 'case', 'wall ms', 'gpu ms', 'rate', 'note'];
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => l.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  console.log(fmt(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const l of lines) console.log(fmt(l));
}
