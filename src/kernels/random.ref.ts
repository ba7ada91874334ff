/**
 * CPU reference for random.wgsl: Philox4x32-10 with BigInt arithmetic (independent of the
 * WGSL's 16-bit-split multiply), and the same mapping to uniforms, normals and dropout.
 */
const M0 = 0xd2511f53n;
const M1 = 0xcd9e8d57n;
const W0 = 0x9e3779b9n;
const W1 = 0xbb67ae85n;
const MASK = 0xffffffffn;

export function philoxRef(counter: [number, number, number, number], key: [number, number]): [number, number, number, number] {
  let [c0, c1, c2, c3] = counter.map(BigInt) as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key.map(BigInt) as [bigint, bigint];
  for (let r = 0; r < 10; r++) {
    const p0 = M0 * c0;
    const p1 = M1 * c2;
    const hi0 = p0 >> 32n;
    const lo0 = p0 & MASK;
    const hi1 = p1 >> 32n;
    const lo1 = p1 & MASK;
    [c0, c1, c2, c3] = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0];
    k0 = (k0 + W0) & MASK;
    k1 = (k1 + W1) & MASK;
  }
  return [Number(c0), Number(c1), Number(c2), Number(c3)];
}

export function splitSeed(seed: number): [number, number] {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed ${seed}: expected a non-negative safe integer`);
  return [seed % 2 ** 32, Math.floor(seed / 2 ** 32)];
}

function unit(w: number): number {
  return (Math.floor(w / 256) + 0.5) / 16777216;
}

function words(i: number, seed: number, offset: number) {
  return philoxRef([i, offset, 0, 0], splitSeed(seed));
}

/** The uniform draw of element i alone. */
export function uniformAtRef(i: number, seed: number, offset: number, lo: number, hi: number): number {
  return lo + (hi - lo) * unit(words(i, seed, offset)[0]);
}

export function uniformRef(n: number, seed: number, offset: number, lo: number, hi: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = uniformAtRef(i, seed, offset, lo, hi);
  return out;
}

export function normalRef(n: number, seed: number, offset: number, mean: number, std: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const w = words(i, seed, offset);
    out[i] = mean + std * Math.sqrt(-2 * Math.log(unit(w[0]))) * Math.cos(2 * Math.PI * unit(w[1]));
  }
  return out;
}

/** The dropout keep-mask (1 = kept) of n elements. */
export function dropoutMaskRef(n: number, seed: number, offset: number, p: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = unit(words(i, seed, offset)[0]) >= Math.fround(p) ? 1 : 0;
  return out;
}
