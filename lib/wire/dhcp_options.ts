/**
 * The options of a decoded DHCP message (RFC 2132 §2): a Map from option code to value that
 * reads each value out of the datagram only when asked for it.
 *
 * Why not a Map: every server of a failover pair decodes every broadcast on its segment and
 * answers about half of them, and for the other half it reads two or three options. A Map and
 * a view per option made decoding about a third of the garbage a server produced (heap
 * profile of the pair benchmark, 2026-12-03). Here a decode allocates one array of spans;
 * views are made on first get() and kept, so a value read twice is the same object.
 *
 * It is a Map<number, Uint8Array> in every other respect: iteration in order of first
 * appearance, and set/delete/clear, after which it holds its values in a real Map.
 */

/** code, offset, length of each option, in order of first appearance. */
type Spans = number[];

export class DhcpOptions implements Map<number, Uint8Array> {
  #bytes: Uint8Array;
  #spans: Spans;
  /** The views made so far, by span index. */
  #views: (Uint8Array | undefined)[] | null = null;
  /** Set once the options were changed, or when they were built from entries. */
  #map: Map<number, Uint8Array> | null = null;

  private constructor(bytes: Uint8Array, spans: Spans, map: Map<number, Uint8Array> | null) {
    this.#bytes = bytes;
    this.#spans = spans;
    this.#map = map;
  }

  /**
   * Options whose values are bytes[offset, offset + length) for each (code, offset, length)
   * triple of `spans`: the decoder's result. Codes MUST be distinct and in 0..255.
   */
  static ofSpans(bytes: Uint8Array, spans: Spans): DhcpOptions {
    return new DhcpOptions(bytes, spans, null);
  }

  /** Options holding these values (a copy of the entries, not of the bytes). */
  static of(entries: Iterable<readonly [number, Uint8Array]>): DhcpOptions {
    return new DhcpOptions(EMPTY, [], new Map(entries));
  }

  get size(): number {
    return this.#map !== null ? this.#map.size : this.#spans.length / 3;
  }

  /** Span index of `code`, or -1. */
  #find(code: number): number {
    const s = this.#spans;
    for (let i = 0; i < s.length; i += 3) if (s[i] === code) return i;
    return -1;
  }

  #view(i: number): Uint8Array {
    const views = this.#views ??= [];
    const k = i / 3;
    let v = views[k];
    if (v === undefined) {
      const at = this.#spans[i + 1] as number;
      v = this.#bytes.subarray(at, at + (this.#spans[i + 2] as number));
      views[k] = v;
    }
    return v;
  }

  get(code: number): Uint8Array | undefined {
    if (this.#map !== null) return this.#map.get(code);
    const i = this.#find(code);
    return i < 0 ? undefined : this.#view(i);
  }

  has(code: number): boolean {
    return this.#map !== null ? this.#map.has(code) : this.#find(code) >= 0;
  }

  /** The value's length, or -1 when absent (no view is made). */
  lengthOf(code: number): number {
    if (this.#map !== null) return this.#map.get(code)?.length ?? -1;
    const i = this.#find(code);
    return i < 0 ? -1 : this.#spans[i + 2] as number;
  }

  /** The one-octet value of `code`, or undefined when absent or of another length. */
  u8(code: number): number | undefined {
    if (this.#map !== null) {
      const v = this.#map.get(code);
      return v !== undefined && v.length === 1 ? v[0] : undefined;
    }
    const i = this.#find(code);
    if (i < 0 || this.#spans[i + 2] !== 1) return undefined;
    return this.#bytes[this.#spans[i + 1] as number];
  }

  /** The four-octet big-endian value of `code`, or undefined when absent or of another length. */
  u32(code: number): number | undefined {
    if (this.#map !== null) {
      const v = this.#map.get(code);
      return v !== undefined && v.length === 4 ? readU32(v, 0) : undefined;
    }
    const i = this.#find(code);
    if (i < 0 || this.#spans[i + 2] !== 4) return undefined;
    return readU32(this.#bytes, this.#spans[i + 1] as number);
  }

  /** From here on the values live in a Map (any change, and only then). */
  #materialise(): Map<number, Uint8Array> {
    if (this.#map !== null) return this.#map;
    const map = new Map<number, Uint8Array>();
    for (let i = 0; i < this.#spans.length; i += 3) {
      map.set(this.#spans[i] as number, this.#view(i));
    }
    this.#map = map;
    this.#spans = [];
    this.#views = null;
    this.#bytes = EMPTY;
    return map;
  }

  set(code: number, value: Uint8Array): this {
    this.#materialise().set(code, value);
    return this;
  }

  getOrInsert(code: number, value: Uint8Array): Uint8Array {
    const map = this.#materialise();
    const v = map.get(code);
    if (v !== undefined) return v;
    map.set(code, value);
    return value;
  }

  getOrInsertComputed(code: number, make: (code: number) => Uint8Array): Uint8Array {
    const map = this.#materialise();
    const v = map.get(code);
    if (v !== undefined) return v;
    const value = make(code);
    map.set(code, value);
    return value;
  }

  delete(code: number): boolean {
    return this.#materialise().delete(code);
  }

  clear(): void {
    this.#materialise().clear();
  }

  forEach(
    fn: (value: Uint8Array, code: number, map: Map<number, Uint8Array>) => void,
    thisArg?: unknown,
  ): void {
    if (this.#map !== null) {
      this.#map.forEach((v, k) => fn.call(thisArg, v, k, this));
      return;
    }
    const s = this.#spans;
    for (let i = 0; i < s.length; i += 3) fn.call(thisArg, this.#view(i), s[i] as number, this);
  }

  *entries(): MapIterator<[number, Uint8Array]> {
    if (this.#map !== null) {
      yield* this.#map.entries();
      return;
    }
    const s = this.#spans;
    for (let i = 0; i < s.length; i += 3) yield [s[i] as number, this.#view(i)];
  }

  *keys(): MapIterator<number> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<Uint8Array> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[number, Uint8Array]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "DhcpOptions";
  }
}

const EMPTY = new Uint8Array(0);

function readU32(v: Uint8Array, at: number): number {
  return (((v[at] as number) << 24) | ((v[at + 1] as number) << 16) |
    ((v[at + 2] as number) << 8) | (v[at + 3] as number)) >>> 0;
}
