/** Bounds-checked big-endian reading and writing of network bytes. */
import { WireError } from "../errors.ts";

/** Reads big-endian integers and slices; any short read throws WireError with the offset. */
export class ByteReader {
  readonly bytes: Uint8Array;
  readonly protocol: string;
  #view: DataView;
  #pos: number;
  #end: number;

  constructor(bytes: Uint8Array, protocol: string, start = 0, end = bytes.length) {
    this.bytes = bytes;
    this.protocol = protocol;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#pos = start;
    this.#end = end;
  }

  /** Current offset into the underlying bytes. */
  get offset(): number {
    return this.#pos;
  }

  /** Bytes left before the end. */
  get remaining(): number {
    return this.#end - this.#pos;
  }

  #need(n: number, what: string): void {
    if (this.#pos + n > this.#end) {
      throw new WireError(
        this.protocol,
        this.#pos,
        `Cannot read ${what}: need ${n} bytes, ${this.#end - this.#pos} left`,
      );
    }
  }

  u8(what = "u8"): number {
    this.#need(1, what);
    return this.#view.getUint8(this.#pos++);
  }

  u16(what = "u16"): number {
    this.#need(2, what);
    const v = this.#view.getUint16(this.#pos);
    this.#pos += 2;
    return v;
  }

  u32(what = "u32"): number {
    this.#need(4, what);
    const v = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }

  /** A copy of the next n bytes. */
  bytesCopy(n: number, what = "bytes"): Uint8Array {
    this.#need(n, what);
    const out = this.bytes.slice(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** A view (no copy) of the next n bytes. */
  bytesView(n: number, what = "bytes"): Uint8Array {
    this.#need(n, what);
    const out = this.bytes.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  skip(n: number, what = "bytes"): void {
    this.#need(n, what);
    this.#pos += n;
  }
}

/** Appends big-endian integers and bytes to a growable buffer. */
export class ByteWriter {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;

  /**
   * Starts with a fresh buffer of `initial` bytes, or writes into the given buffer (which
   * is replaced by a larger copy only if it overflows); `view()` then avoids any copy.
   */
  constructor(initial: number | Uint8Array = 576) {
    this.#buf = typeof initial === "number" ? new Uint8Array(initial) : initial;
    this.#view = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
  }

  get length(): number {
    return this.#len;
  }

  #grow(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#len));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  u8(v: number): this {
    this.#grow(1);
    this.#view.setUint8(this.#len++, v);
    return this;
  }

  u16(v: number): this {
    this.#grow(2);
    this.#view.setUint16(this.#len, v);
    this.#len += 2;
    return this;
  }

  u32(v: number): this {
    this.#grow(4);
    this.#view.setUint32(this.#len, v >>> 0);
    this.#len += 4;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.#grow(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
    return this;
  }

  /** Writes n zero bytes. */
  zeros(n: number): this {
    this.#grow(n);
    this.#buf.fill(0, this.#len, this.#len + n);
    this.#len += n;
    return this;
  }

  /** Overwrites a u16 at an earlier offset (for length fields). */
  patchU16(offset: number, v: number): void {
    this.#view.setUint16(offset, v);
  }

  /** A copy of what was written. */
  finish(): Uint8Array {
    return this.#buf.slice(0, this.#len);
  }

  /** What was written, without a copy: valid until the buffer is written again. */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** One new array holding the parts in order. */
export function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Largest array smallBytes() carves from a shared chunk; longer ones get their own. */
export const SMALL_BYTES_MAX = 64;
const SMALL_CHUNK = 8192;
let smallChunk = new Uint8Array(0);
let smallUsed = 0;

/**
 * A zeroed array of n bytes for a value that lives about as long as one message (an option
 * being encoded). In Deno every `new Uint8Array` gets its own off-heap backing store (a calloc
 * and three mallocs, freed again by the garbage collector: about 0.8 µs here), so arrays of up
 * to SMALL_BYTES_MAX bytes are views into a shared 8 KiB chunk that is never reused: a view
 * keeps its chunk alive, which is why long-lived values are better copied.
 */
export function smallBytes(n: number): Uint8Array {
  if (n > SMALL_BYTES_MAX) return new Uint8Array(n);
  if (smallUsed + n > smallChunk.length) {
    smallChunk = new Uint8Array(SMALL_CHUNK);
    smallUsed = 0;
  }
  const out = smallChunk.subarray(smallUsed, smallUsed + n);
  smallUsed += n;
  return out;
}

/** A uint32, big-endian, in smallBytes(4) (same lifetime rule). */
export function smallU32(v: number): Uint8Array {
  const out = smallBytes(4);
  out[0] = v >>> 24;
  out[1] = v >>> 16;
  out[2] = v >>> 8;
  out[3] = v;
  return out;
}
