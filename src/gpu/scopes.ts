/**
 * Scopes: who owns a tensor made inside `ctx.scope(fn)` / `ctx.scopeAsync(fn)`. Every tensor
 * the context makes joins the innermost open scope; a scope disposes what joined it when it
 * closes, except what `fn` returns (moved to the enclosing scope) and what `keep()` took out.
 *
 * Scopes form a stack, so they must close in the reverse order they opened. Synchronous
 * scopes always do. Async ones do when each `scopeAsync` is awaited before a sibling starts;
 * two that interleave (e.g. `Promise.all` of two) would file each other's tensors, so the first
 * that closes out of order throws an ArgumentError, and so does every scope opened after it
 * that is still open (each frees what joined it).
 */
import { ArgumentError } from './errors.js';
import { Tensor } from './tensor.js';

interface Frame {
  made: Set<Tensor>;
  /** Why this scope must fail when it closes (it was open while another closed out of order). */
  broken: string | null;
}

const INTERLEAVED =
  'two scopeAsync calls were interleaved on one context (e.g. by Promise.all), so tensors made while both were open may have joined the wrong scope; ' +
  'await each scopeAsync before starting the next (nesting is fine) or give concurrent tasks a context each';

export class Scopes {
  private readonly stack: Frame[] = [];
  /**
   * Asked, for each tensor a closing scope would dispose, whether someone still needs it (the
   * autograd tape: an op input its backward reads). An adopted tensor is not disposed here; the
   * adopter disposes it when it is done with it.
   */
  adopter: ((t: Tensor) => boolean) | null = null;

  /** `t` joins the innermost open scope, if any. */
  add(t: Tensor): void {
    this.stack[this.stack.length - 1]?.made.add(t);
  }

  /** `next` takes `prev`'s place in whatever scope holds it (reshape). */
  replace(prev: Tensor, next: Tensor): void {
    for (const f of this.stack) if (f.made.delete(prev)) f.made.add(next);
  }

  /** Take tensors out of every open scope (the caller, or the tape, owns them now). */
  keep(ts: readonly Tensor[]): void {
    for (const x of ts) for (const f of this.stack) f.made.delete(x);
  }

  run<T>(fn: () => T): T {
    const frame = this.open();
    let result: T;
    try {
      result = fn();
    } catch (e) {
      // A failed scope frees what it made, so an error does not leak GPU memory.
      this.unwind(frame, 'scope');
      throw e;
    }
    if (result instanceof Promise) {
      this.unwind(frame, 'scope');
      throw new ArgumentError('scope: fn returned a Promise; use scopeAsync for async work');
    }
    this.close(frame, result, 'scope');
    return result;
  }

  async runAsync<T>(fn: () => Promise<T>): Promise<T> {
    const frame = this.open();
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      this.unwind(frame, 'scopeAsync');
      throw e;
    }
    this.close(frame, result, 'scopeAsync');
    return result;
  }

  private open(): Frame {
    const frame: Frame = { made: new Set(), broken: null };
    this.stack.push(frame);
    return frame;
  }

  /**
   * Take `frame` off the stack. If scopes opened after it are still open, the scopes were
   * interleaved: those are marked to fail when they close, and this one fails now.
   */
  private pop(frame: Frame, op: string): string | null {
    const i = this.stack.lastIndexOf(frame);
    const above = this.stack.slice(i + 1);
    this.stack.splice(i, 1);
    if (above.length) {
      for (const f of above) f.broken ??= `${op}: a scope opened before this one closed while this one was open: ${INTERLEAVED}`;
      return `${op}: this scope closed while ${above.length} scope(s) opened after it were still open: ${INTERLEAVED}`;
    }
    return frame.broken;
  }

  /** Close after an error: free everything made inside, then report an interleaving if there was one. */
  private unwind(frame: Frame, op: string): void {
    this.pop(frame, op);
    for (const t of frame.made) t.dispose();
  }

  private close(frame: Frame, result: unknown, op: string): void {
    const broken = this.pop(frame, op);
    if (broken) {
      for (const t of frame.made) t.dispose();
      throw new ArgumentError(broken);
    }
    const kept = new Set<Tensor>();
    const visit = (v: unknown, depth: number) => {
      if (v instanceof Tensor) kept.add(v);
      else if (depth < 3 && Array.isArray(v)) v.forEach((x) => visit(x, depth + 1));
      else if (depth < 3 && v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
        for (const x of Object.values(v)) visit(x, depth + 1);
      }
    };
    visit(result, 0);
    const parent = this.stack[this.stack.length - 1];
    for (const t of frame.made) {
      if (kept.has(t)) parent?.made.add(t);
      else if (!this.adopter?.(t)) t.dispose();
    }
  }
}
