/**
 * Hand-assembled safetensors bytes for the io tests, written from the format's definition
 * and independent of src/io: 8 bytes of little-endian u64 length, the header text as UTF-8
 * (or raw bytes), then the data section.
 */

/** A file of `header` (a string, encoded as UTF-8, or raw bytes) and `data` (bytes, or a count of zero bytes). */
export function assemble(header: string | Uint8Array, data: Uint8Array | number = 0, headerLength?: bigint): Uint8Array<ArrayBuffer> {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header;
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  let n = headerLength ?? BigInt(h.length);
  for (let i = 0; i < 8; i++) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

/** Only the 8-byte length prefix, for files cut short. */
export function prefix(n: bigint): Uint8Array<ArrayBuffer> {
  return assemble(new Uint8Array(0), 0, n);
}

/** One tensor entry of a header, as JSON text. */
export function entry(name: string, dtype: string, shape: ReadonlyArray<number | string>, begin: number | string, end: number | string): string {
  return `${JSON.stringify(name)}:{"dtype":"${dtype}","shape":[${shape.join(',')}],"data_offsets":[${begin},${end}]}`;
}

/** A header object from entries. */
export function header(...entries: string[]): string {
  return `{${entries.join(',')}}`;
}
