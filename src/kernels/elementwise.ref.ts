/** CPU references for elementwise.wgsl, in f64. */
import { geluTanhRef } from './matmul.ref.js';

export { geluTanhRef };

export function geluTanhGradRef(x: number): number {
  const c = Math.sqrt(2 / Math.PI);
  const t = Math.tanh(c * (x + 0.044715 * x ** 3));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
}

export type BinaryOp = 'add' | 'sub' | 'mul';

/** x op y with y repeated over x (y.length divides x.length). */
export function binaryRef(op: BinaryOp, x: ArrayLike<number>, y: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const a = x[i]!;
    const b = y[i % y.length]!;
    out[i] = op === 'add' ? a + b : op === 'sub' ? a - b : a * b;
  }
  return out;
}

export function mapRef(x: ArrayLike<number>, f: (v: number, i: number) => number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f(x[i]!, i);
  return out;
}
