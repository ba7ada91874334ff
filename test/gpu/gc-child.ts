// Run by gc.test.ts under `node --expose-gc`: work on a device while forcing garbage
// collection. If the Dawn instance returned by create() were collected while the device
// lives, Dawn would crash in InstanceBase::ProcessEvents (futex error, mutex assertion or
// segfault) and this process would not print its last line.
import { createContext } from '../../src/gpu/node.js';
import { matmul } from '../../src/kernels/matmul.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('gc-child: run with --expose-gc');
const ctx = await createContext();
let checksum = 0;
for (let i = 0; i < 40; i++) {
  // Garbage that makes a full collection do real work.
  const junk = Array.from({ length: 2000 }, (_, j) => ({ j, s: `x${j}` }));
  const y = ctx.scope(() => matmul(ctx, ctx.tensor(new Array(64).fill(1), [8, 8]), ctx.tensor(new Array(64).fill(i), [8, 8])));
  gc();
  const v = await y.read(); // mapAsync: Dawn processes events while collections run
  checksum += v[0]! + junk.length * 0;
  y.dispose();
  gc();
  await new Promise((r) => setTimeout(r, 1));
}
ctx.destroy();
gc();
console.log(`gc-child: ok ${checksum}`);
