/**
 * Free-address bookkeeping for the dynamic pools of one subnet, in O(1) per allocation.
 *
 * Addresses that were never leased are handed out in ascending order by a cursor that
 * only moves forward (a fresh address never becomes fresh again). Addresses that come
 * back (expired, released, offer timed out) go to a FIFO queue, so the address a client
 * just gave up is the last to be reused and a returning client is likely to get it back
 * (RFC 2131 §4.3.1). Queue entries are validated lazily on pop.
 */

/** One inclusive range of addresses. */
export interface AddressRange {
  start: number;
  end: number;
}

/** Never leased since start-up: handed out by the cursor. */
const FRESH = 0;
const USED = 1;
const EXCLUDED = 2;
/** Free again after use: handed out from the queue, oldest first. */
const FREED = 3;

/** Tracks which pool addresses may be handed out. Pure in-memory state, no I/O. */
export class Allocator {
  readonly ranges: readonly AddressRange[];
  /** Per address (by offset): FRESH, USED, EXCLUDED or FREED. */
  #state: Uint8Array;
  /** Offset of the first address of each range in #state. */
  #base: number[];
  /** Offsets below this have been passed by the fresh cursor. */
  #cursor = 0;
  /** Offsets of addresses freed after use, oldest first; may hold stale entries. */
  #queue: number[] = [];
  #head = 0;
  #free: number;

  /**
   * With `empty`, every address starts taken and only release() makes one available (no fresh
   * cursor): the failover secondary's BACKUP addresses, which the primary hands over one by one
   * (draft-12 §5.4).
   */
  constructor(ranges: readonly AddressRange[], options: { empty?: boolean } = {}) {
    this.ranges = [...ranges].sort((a, b) => a.start - b.start);
    this.#base = [];
    let size = 0;
    for (const r of this.ranges) {
      if (r.end < r.start) throw new RangeError(`Range end is before its start: ${r.start}`);
      this.#base.push(size);
      size += r.end - r.start + 1;
    }
    this.#state = new Uint8Array(size);
    this.#free = size;
    if (options.empty === true) {
      this.#state.fill(USED);
      this.#cursor = size;
      this.#free = 0;
    }
  }

  /** Number of addresses in all ranges. */
  get size(): number {
    return this.#state.length;
  }

  /** Number of addresses that may be handed out now. */
  get freeCount(): number {
    return this.#free;
  }

  /** Number of addresses in [start, end] that may be handed out now (status per pool). */
  freeIn(start: number, end: number): number {
    let n = 0;
    for (let i = 0; i < this.ranges.length; i++) {
      const r = this.ranges[i] as AddressRange;
      const lo = Math.max(start, r.start);
      const hi = Math.min(end, r.end);
      const base = (this.#base[i] as number) - r.start;
      for (let a = lo; a <= hi; a++) {
        const s = this.#state[base + a];
        if (s === FRESH || s === FREED) n++;
      }
    }
    return n;
  }

  /** Offset of an address in #state, or -1 when it is in no range. */
  #offset(address: number): number {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.ranges[mid] as AddressRange;
      if (address < r.start) hi = mid - 1;
      else if (address > r.end) lo = mid + 1;
      else return (this.#base[mid] as number) + (address - r.start);
    }
    return -1;
  }

  #address(offset: number): number {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#base[mid] as number) <= offset) lo = mid;
      else hi = mid - 1;
    }
    const r = this.ranges[lo] as AddressRange;
    return r.start + (offset - (this.#base[lo] as number));
  }

  /** True when the address lies in one of the ranges. */
  contains(address: number): boolean {
    return this.#offset(address) >= 0;
  }

  /** True when the address is in a range and may be handed out. */
  isFree(address: number): boolean {
    const o = this.#offset(address);
    if (o < 0) return false;
    const s = this.#state[o];
    return s === FRESH || s === FREED;
  }

  /** Marks an address as taken (leased, offered, declined). No-op outside the ranges. */
  markUsed(address: number): void {
    const o = this.#offset(address);
    if (o < 0) return;
    const s = this.#state[o];
    if (s !== FRESH && s !== FREED) return;
    this.#state[o] = USED;
    this.#free--;
  }

  /**
   * Marks an address as never to be handed out (reserved for one client, or the
   * server's own address). No-op outside the ranges.
   */
  exclude(address: number): void {
    const o = this.#offset(address);
    if (o < 0 || this.#state[o] === EXCLUDED) return;
    const s = this.#state[o];
    if (s === FRESH || s === FREED) this.#free--;
    this.#state[o] = EXCLUDED;
  }

  /**
   * Returns an address to the pool after use (or marks a never-seen address as used
   * before, at start-up): it is handed out after every fresh one, oldest release first.
   */
  release(address: number): void {
    const o = this.#offset(address);
    if (o < 0) return;
    const s = this.#state[o];
    if (s === EXCLUDED || s === FREED) return;
    if (s === USED) this.#free++;
    this.#state[o] = FREED;
    this.#queue.push(o);
  }

  /** Takes the next free address (fresh ones first), or undefined when the pool is exhausted. */
  take(): number | undefined {
    const state = this.#state;
    while (this.#cursor < state.length) {
      const o = this.#cursor++;
      if (state[o] === FRESH) {
        state[o] = USED;
        this.#free--;
        return this.#address(o);
      }
    }
    while (this.#head < this.#queue.length) {
      const o = this.#queue[this.#head++] as number;
      if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
        this.#queue = this.#queue.slice(this.#head);
        this.#head = 0;
      }
      if (state[o] === FREED) {
        state[o] = USED;
        this.#free--;
        return this.#address(o);
      }
    }
    return undefined;
  }

  /** Takes a specific address if it is free; returns whether it was. */
  takeAddress(address: number): boolean {
    const o = this.#offset(address);
    if (o < 0) return false;
    const s = this.#state[o];
    if (s !== FRESH && s !== FREED) return false;
    this.#state[o] = USED;
    this.#free--;
    return true;
  }
}
