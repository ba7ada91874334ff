/**
 * The uniform ring: each dispatch's `params` struct is packed at its reflected offsets into a
 * CPU copy of a 64 KiB chunk and bound with a dynamic offset; the chunks used are written to
 * the GPU once, just before the submit. So a step's thousand dispatches cost one writeBuffer
 * per chunk, not one each, and nothing is hand-packed.
 */
import { ArgumentError } from './errors.js';
import type { EntryInfo } from './kernel.js';
import type { Memory } from './memory.js';

const RING_CHUNK = 64 * 1024;
const UNIFORM_USAGE = 0x0040 | 0x0008; // UNIFORM | COPY_DST

interface RingChunk {
  buffer: GPUBuffer;
  data: ArrayBuffer;
  used: number;
}

/** Where one dispatch's params went: the chunk's buffer and the dynamic offset in it. */
export interface UniformSlot {
  buffer: GPUBuffer;
  offset: number;
  /** The binding size: the struct rounded up to 16 bytes. */
  size: number;
}

export class UniformRing {
  private readonly ring: RingChunk[] = [];
  private index = 0;
  private readonly align: number;

  constructor(
    private readonly memory: Memory,
    minUniformBufferOffsetAlignment: number | undefined,
  ) {
    this.align = Math.max(256, minUniformBufferOffsetAlignment ?? 256);
  }

  /** Pack `params` for entry `e` (named `where` in errors) into the next slot of the ring. */
  pack(where: string, e: EntryInfo, params: Record<string, number | readonly number[]>): UniformSlot {
    const u = e.uniform!;
    const need = Math.ceil(u.size / this.align) * this.align;
    let chunk = this.ring[this.index];
    if (chunk && chunk.used + need > RING_CHUNK) chunk = this.ring[++this.index];
    if (!chunk) {
      chunk = { buffer: this.memory.rawBuffer({ size: RING_CHUNK, usage: UNIFORM_USAGE, label: `uniform ring ${this.ring.length}` }), data: new ArrayBuffer(RING_CHUNK), used: 0 };
      this.ring.push(chunk);
    }
    const offset = chunk.used;
    chunk.used += need;
    new Uint8Array(chunk.data, offset, need).fill(0);
    packParams(where, e, params, new DataView(chunk.data, offset, u.size));
    return { buffer: chunk.buffer, offset, size: Math.ceil(u.size / 16) * 16 };
  }

  /** Write the chunks used since the last submit to the GPU and start over (called just before a submit). */
  upload(queue: GPUQueue): void {
    for (let i = 0; i <= this.index && i < this.ring.length; i++) {
      const c = this.ring[i]!;
      if (c.used) queue.writeBuffer(c.buffer, 0, c.data, 0, c.used);
      c.used = 0;
    }
    this.index = 0;
  }
}

/** Fill the uniform struct of `e` from `params` by field name; every field but `_pad…` is required. */
function packParams(where: string, e: EntryInfo, params: Record<string, number | readonly number[]>, view: DataView): void {
  const u = e.uniform!;
  for (const [name, f] of u.fields) {
    const v = params[name];
    if (v === undefined) {
      if (name.startsWith('_pad')) continue;
      throw new ArgumentError(`${where}: params.${name} (${f.scalar}${f.components > 1 ? `x${f.components}` : ''}) was not given`);
    }
    const vals = typeof v === 'number' ? [v] : v;
    if (vals.length !== f.components) {
      throw new ArgumentError(`${where}: params.${name} has ${vals.length} components, expected ${f.components}`);
    }
    vals.forEach((x, i) => {
      const off = f.offset + 4 * i;
      if (f.scalar === 'f32') {
        if (!Number.isFinite(x)) throw new ArgumentError(`${where}: params.${name} = ${x}, expected a finite number`);
        view.setFloat32(off, x, true);
      } else if (f.scalar === 'u32') {
        if (!Number.isInteger(x) || x < 0 || x > 0xffffffff) {
          throw new ArgumentError(`${where}: params.${name} = ${x}, expected an integer in [0, 2^32)`);
        }
        view.setUint32(off, x, true);
      } else {
        if (!Number.isInteger(x) || x < -(2 ** 31) || x >= 2 ** 31) {
          throw new ArgumentError(`${where}: params.${name} = ${x}, expected an i32`);
        }
        view.setInt32(off, x, true);
      }
    });
  }
  for (const k of Object.keys(params)) {
    if (!u.fields.has(k)) throw new ArgumentError(`${where}: unknown params.${k} (has ${[...u.fields.keys()].join(', ')})`);
  }
}
