import { describe, expect, it } from 'vitest';
import { createContext, pollStats } from '../../src/gpu/node.js';
import { backoffScheduler, installPollBackoff, isDawnTick, type PollStats } from '../../src/gpu/pollBackoff.js';
import { matmul } from '../../src/kernels/matmul.js';
import { uniform } from '../../src/kernels/random.js';

/** A fake clock and timer queue: the scheduler's decisions, with no real time involved. */
function harness(spinMs = 0.5, sleepMs = 1) {
  let t = 0;
  const immediate: string[] = [];
  const sleeps: number[] = [];
  const stats: PollStats = { immediate: 0, deferred: 0 };
  const dawn = Symbol('dawn');
  const sched = backoffScheduler(
    (fn, ...args) => {
      immediate.push(String(args[0] ?? ''));
      fn(...args);
    },
    { spinMs, sleepMs },
    stats,
    { now: () => t, sleep: (ms) => sleeps.push(ms), isDawnTick: (fn) => (fn as { [dawn]?: boolean })[dawn] === true },
  );
  const tick = Object.assign((..._a: unknown[]) => {}, { [dawn]: true });
  return { sched, tick, stats, immediate, sleeps, advance: (ms: number) => (t += ms) };
}

describe('Dawn poll backoff', () => {
  it('runs Dawn ticks at once for spinMs of a wait, then sleeps sleepMs before each', () => {
    const h = harness(0.5, 1);
    for (let i = 0; i < 5; i++) {
      h.sched(h.tick);
      h.advance(0.1);
    }
    expect(h.stats).toEqual({ immediate: 5, deferred: 0 });
    h.sched(h.tick); // 0.5 ms into the wait
    expect(h.stats).toEqual({ immediate: 5, deferred: 1 });
    expect(h.sleeps).toEqual([1]);
    expect(h.immediate).toHaveLength(6); // a deferred tick is still scheduled, after the sleep
    // Ticks 1 ms apart (the deferred rhythm) are the same wait: still deferred.
    h.advance(1);
    h.sched(h.tick);
    expect(h.stats.deferred).toBe(2);
    // A gap longer than 2·sleepMs + 1 ends the wait: the next one spins again.
    h.advance(3.5);
    h.sched(h.tick);
    expect(h.stats).toEqual({ immediate: 6, deferred: 2 });
    // So does waitStarts(), with no gap at all (a read right after a sync).
    h.advance(1);
    h.sched(h.tick);
    expect(h.stats.deferred).toBe(3);
    h.sched.waitStarts();
    h.sched(h.tick);
    expect(h.stats).toEqual({ immediate: 7, deferred: 3 });
  });

  it('passes every other callback straight through, with its arguments', () => {
    const h = harness(0, 1);
    let got: unknown[] = [];
    h.sched((...a: unknown[]) => (got = a), 'x', 2);
    expect(got).toEqual(['x', 2]);
    expect(h.stats).toEqual({ immediate: 0, deferred: 0 });
    expect(h.sleeps).toHaveLength(0);
  });

  it('spinMs = 0 defers from the first tick; bad options are refused', () => {
    const h = harness(0, 1);
    h.sched(h.tick);
    expect(h.stats).toEqual({ immediate: 0, deferred: 1 });
    expect(() => backoffScheduler(setImmediate as never, { spinMs: -1 }, { immediate: 0, deferred: 0 }, {} as never)).toThrow(
      /pollBackoff: spinMs = -1/,
    );
  });

  it('recognises only native unnamed functions as Dawn ticks', () => {
    expect(isDawnTick(() => {})).toBe(false);
    expect(isDawnTick(function named() {})).toBe(false);
    expect(isDawnTick(Math.max)).toBe(false); // native, but named
    expect(isDawnTick(undefined)).toBe(false);
  });

  it('install is reference-counted, keeps setImmediate working and restores the original', async () => {
    const original = globalThis.setImmediate;
    const release1 = installPollBackoff();
    const release2 = installPollBackoff();
    const wrapped = globalThis.setImmediate;
    expect(wrapped).not.toBe(original);
    expect(await new Promise((r) => setImmediate(r, 'ok'))).toBe('ok');
    const id = setImmediate(() => {
      throw new Error('cleared immediates must not run');
    });
    clearImmediate(id);
    release1();
    release1(); // a second release of the same hold is a no-op
    expect(globalThis.setImmediate).toBe(wrapped);
    release2();
    expect(globalThis.setImmediate).toBe(original);
  });

  it('engages during a real GPU wait on Dawn, and pollBackoff: false leaves setImmediate alone', async () => {
    const original = globalThis.setImmediate;
    const off = await createContext({ pollBackoff: false });
    expect(globalThis.setImmediate).toBe(original);
    off.destroy();

    const ctx = await createContext({ pollBackoff: { spinMs: 0, sleepMs: 0.1 } });
    try {
      expect(globalThis.setImmediate).not.toBe(original);
      const a = uniform(ctx, ctx.empty([256, 256]), { seed: 1, lo: -1, hi: 1 });
      await ctx.sync();
      const before = pollStats();
      const c = matmul(ctx, a, a);
      await c.read(); // Dawn polls until the map completes; with spinMs 0 every tick is deferred
      const after = pollStats();
      expect(after.deferred).toBeGreaterThan(before.deferred);
      expect(after.immediate).toBe(before.immediate);
    } finally {
      ctx.destroy();
    }
    expect(globalThis.setImmediate).toBe(original);
  });
});
