/**
 * Dawn's Node bindings resolve GPU promises (`onSubmittedWorkDone`, `mapAsync`, ...) by calling
 * `ProcessEvents` from a `setImmediate` loop that runs for as long as any such promise is
 * pending, so a process that awaits the GPU keeps one CPU core busy. On a software adapter
 * (lavapipe) that core is one the adapter's worker threads need: on the 2-core CI machine a
 * 1024³ matmul ran at 12.4 GFLOP/s while Node spun and at 15–16 GFLOP/s with this backoff.
 *
 * The backoff replaces `globalThis.setImmediate` (the binding looks it up on every tick) with a
 * wrapper that passes every call through unchanged except Dawn's own tick: that runs
 * immediately during the first `spinMs` of a wait, so short waits keep their latency, and after
 * that the thread first sleeps `sleepMs` (`Atomics.wait`, which uses no CPU; `setTimeout` cannot
 * sleep less than 1 ms, which would add up to a millisecond to every wait). The event loop still
 * turns between ticks, so other callbacks run, at most `sleepMs` late. Installed by
 * `webgpu-lora/node`'s `createContext` while a context lives; `pollBackoff: false` opts out.
 */

export interface PollBackoffOptions {
  /** Poll at full speed for this long after a wait starts (ms). Default 0.5. */
  spinMs?: number;
  /** Then sleep this long before each poll (ms). Default 0.1. */
  sleepMs?: number;
}

export interface PollStats {
  /** Dawn ticks run at once (the spin phase). */
  immediate: number;
  /** Dawn ticks run after a `sleepMs` sleep. */
  deferred: number;
}

type Scheduler = (fn: (...args: unknown[]) => void, ...args: unknown[]) => unknown;

export interface BackoffDeps {
  now: () => number;
  /** Block the thread for `ms` without using the CPU. */
  sleep: (ms: number) => void;
  /** Whether a callback is Dawn's poll tick. */
  isDawnTick: (fn: unknown) => boolean;
}

/**
 * Dawn's tick is a native N-API function without a name (`Napi::Function::New` with no
 * name); functions written in JavaScript, bound functions and Node's own callbacks all differ.
 */
export function isDawnTick(fn: unknown): boolean {
  return typeof fn === 'function' && fn.name === '' && Function.prototype.toString.call(fn).includes('[native code]');
}

/**
 * A `setImmediate` that defers Dawn's tick once a wait has spun for `spinMs`. A wait is a run
 * of ticks less than `2·sleepMs + 1` ms apart; a longer gap, or `waitStarts()`, starts a new one.
 */
export function backoffScheduler(
  original: Scheduler,
  options: PollBackoffOptions,
  stats: PollStats,
  deps: BackoffDeps,
): Scheduler & { waitStarts: () => void } {
  const spinMs = options.spinMs ?? 0.5;
  const sleepMs = options.sleepMs ?? 0.1;
  if (!(spinMs >= 0) || !(sleepMs >= 0)) {
    throw new RangeError(`pollBackoff: spinMs = ${spinMs} and sleepMs = ${sleepMs} must be numbers >= 0`);
  }
  const gap = 2 * sleepMs + 1;
  let waitStart = -Infinity;
  let lastTick = -Infinity;
  const schedule = (fn: (...args: unknown[]) => void, ...args: unknown[]) => {
    if (!deps.isDawnTick(fn)) return original(fn, ...args);
    const t = deps.now();
    if (t - lastTick > gap) waitStart = t;
    lastTick = t;
    if (t - waitStart < spinMs) {
      stats.immediate++;
      return original(fn, ...args);
    }
    stats.deferred++;
    deps.sleep(sleepMs);
    return original(fn, ...args);
  };
  // A caller that knows a new wait begins (the context, before it awaits the GPU) says so,
  // so a wait that starts right after another one still spins first.
  return Object.assign(schedule, { waitStarts: () => void (lastTick = -Infinity) });
}

const stats: PollStats = { immediate: 0, deferred: 0 };
let installed: { original: typeof setImmediate; wrapper: typeof setImmediate; waitStarts: () => void; users: number } | null = null;

/** Tell the backoff (if installed) that a new GPU wait begins now: it spins first again. */
export function pollWaitStarts(): void {
  installed?.waitStarts();
}

/** Counters of Dawn ticks seen since the process started (for tests and diagnostics). */
export function pollStats(): Readonly<PollStats> {
  return { ...stats };
}

/**
 * Install the backoff on `globalThis.setImmediate` (reference-counted); the returned function
 * releases this user's hold, and the last release restores the original.
 */
export function installPollBackoff(options: PollBackoffOptions = {}): () => void {
  if (!installed) {
    const original = globalThis.setImmediate;
    const cell = new Int32Array(new SharedArrayBuffer(4));
    const schedule = backoffScheduler(original as unknown as Scheduler, options, stats, {
      now: () => performance.now(),
      sleep: (ms) => void Atomics.wait(cell, 0, 0, ms),
      isDawnTick,
    });
    const wrapper = function setImmediate(this: unknown, fn: (...a: unknown[]) => void, ...args: unknown[]) {
      return schedule(fn, ...args);
    } as unknown as typeof setImmediate;
    // Keep what hangs off the original (util.promisify's custom symbol, __promisify__).
    for (const key of Reflect.ownKeys(original)) {
      if (key === 'name' || key === 'length' || key === 'prototype') continue;
      const d = Object.getOwnPropertyDescriptor(original, key);
      if (d) Object.defineProperty(wrapper, key, d);
    }
    globalThis.setImmediate = wrapper;
    installed = { original, wrapper, waitStarts: schedule.waitStarts, users: 0 };
  }
  installed.users++;
  let released = false;
  return () => {
    if (released || !installed) return;
    released = true;
    if (--installed.users > 0) return;
    // Restore only if nobody replaced our wrapper since; otherwise it stays, harmless.
    if (globalThis.setImmediate === installed.wrapper) globalThis.setImmediate = installed.original;
    installed = null;
  };
}
