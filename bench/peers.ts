/**
 * Peer libraries running the same matmul on the same Dawn adapter, for comparison rows.
 * Each peer creates its own device from the `navigator.gpu` we install; their imports are
 * dynamic because both read the WebGPU globals when they load.
 */
import { create, globals } from 'webgpu';
import { DAWN_FLAGS } from '../src/gpu/node.js';
import { median, type Row, wallTime } from './lib.js';

let installed = false;
function installNavigator(): void {
  if (installed) return;
  Object.assign(globalThis, globals);
  const gpu = create(DAWN_FLAGS);
  // A plain object: Node 21+ defines a read-only navigator getter, so define the property.
  Object.defineProperty(globalThis, 'navigator', {
    value: { gpu, userAgent: 'node', hardwareConcurrency: 2, language: 'en' },
    configurable: true,
    writable: true,
  });
  installed = true;
}

function fillRandom(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}

/**
 * tfjs on its WebGPU backend (our Dawn adapter; the backend reads navigator.gpu as it loads),
 * or on its Wasm backend (a CPU backend, for scale). tfjs has one global backend: each call
 * switches it.
 */
export async function loadTfjs(backend: 'webgpu' | 'wasm' = 'webgpu'): Promise<typeof import('@tensorflow/tfjs')> {
  if (backend === 'webgpu') installNavigator();
  const tf = await import('@tensorflow/tfjs');
  await (backend === 'webgpu' ? import('@tensorflow/tfjs-backend-webgpu') : import('@tensorflow/tfjs-backend-wasm'));
  await tf.setBackend(backend);
  await tf.ready();
  return tf;
}

/** tfjs-webgpu: wall time includes reading C back (as ours does); GPU time from tf.time's kernelMs. */
export async function tfjsMatmul(sizes: number[], maxTime: number): Promise<Row[]> {
  const tf = await loadTfjs();
  const rows: Row[] = [];
  for (const S of sizes) {
    const a = tf.tensor2d(fillRandom(S * S), [S, S]);
    const b = tf.tensor2d(fillRandom(S * S), [S, S]);
    const run = async () => {
      const c = tf.matMul(a, b);
      await c.data();
      c.dispose();
    };
    await run();
    const wall = await wallTime(`tfjs-webgpu ${S}`, run, maxTime);
    const kernel: number[] = [];
    for (let i = 0; i < 5; i++) {
      const info = await tf.time(() => {
        tf.matMul(a, b).dispose();
      });
      if (typeof info.kernelMs === 'number') kernel.push(info.kernelMs);
    }
    rows.push({
      suite: 'matmul f32',
      name: `tfjs-webgpu ${S}^3`,
      work: { flops: 2 * S ** 3 },
      wallMs: wall,
      gpuMs: kernel.length ? median(kernel) : null,
      note: 'peer, @tensorflow/tfjs-backend-webgpu',
    });
    a.dispose();
    b.dispose();
  }
  return rows;
}

/** jax-js with the WebGPU device as its default, on our Dawn adapter. */
export async function loadJaxWebgpu(): Promise<typeof import('@jax-js/jax')> {
  installNavigator();
  const jax = await import('@jax-js/jax');
  const devices = await jax.init();
  if (!devices.includes('webgpu')) throw new Error(`jax-js: no webgpu backend (has ${devices.join(', ')})`);
  jax.defaultDevice('webgpu');
  return jax;
}

/** jax-js on its WebGPU backend: wall time includes reading C back. */
export async function jaxMatmul(sizes: number[], maxTime: number): Promise<Row[]> {
  const jax = await loadJaxWebgpu();
  const np = jax.numpy;
  const rows: Row[] = [];
  for (const S of sizes) {
    const a = np.array(fillRandom(S * S)).reshape([S, S]);
    const b = np.array(fillRandom(S * S)).reshape([S, S]);
    const run = async () => {
      const c = np.matmul(a.ref, b.ref);
      await c.data();
    };
    await run();
    const wall = await wallTime(`jax-js ${S}`, run, maxTime);
    rows.push({
      suite: 'matmul f32',
      name: `jax-js webgpu ${S}^3`,
      work: { flops: 2 * S ** 3 },
      wallMs: wall,
      gpuMs: null,
      note: 'peer, @jax-js/jax (rate from wall time)',
    });
    a.dispose();
    b.dispose();
  }
  return rows;
}
