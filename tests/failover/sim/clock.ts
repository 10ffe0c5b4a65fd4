/**
 * Simulated time for the failover simulation: one event queue in integer milliseconds, ordered
 * by (time, insertion), so that a seed always replays the same way. Nothing here reads a real
 * clock or starts a real timer.
 */

/** One queued event. */
interface Entry {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A handle returned by schedule(), for cancel(). */
export type TimerHandle = Entry;

/** Epoch seconds at which every simulation starts (2027-01-15). */
export const T0 = 1_800_000_000;

/** A binary min-heap of events by (at, seq). */
export class Scheduler {
  /** The simulated time, epoch milliseconds. */
  nowMs = T0 * 1000;
  #heap: Entry[] = [];
  #seq = 0;

  /** The simulated time in epoch seconds, with fractions. */
  get now(): number {
    return this.nowMs / 1000;
  }

  /** Runs `fn` `ms` milliseconds from now (rounded up to a whole millisecond, at least 0). */
  after(ms: number, fn: () => void): TimerHandle {
    return this.at(this.nowMs + Math.max(0, Math.ceil(ms)), fn);
  }

  /** Runs `fn` at epoch millisecond `at` (never in the past). */
  at(at: number, fn: () => void): TimerHandle {
    const e: Entry = { at: Math.max(at, this.nowMs), seq: this.#seq++, fn, cancelled: false };
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p] as Entry)) break;
      h[i] = h[p] as Entry;
      i = p;
    }
    h[i] = e;
    return e;
  }

  cancel(handle: TimerHandle | undefined): void {
    if (handle !== undefined) handle.cancelled = true;
  }

  /** Takes the next live event due at or before `until`, and moves the clock to it. */
  next(until: number): (() => void) | undefined {
    for (;;) {
      const top = this.#heap[0];
      if (top === undefined || top.at > until) return undefined;
      this.#pop();
      if (top.cancelled) continue;
      this.nowMs = top.at;
      return top.fn;
    }
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop() as Entry;
    if (h.length === 0) return;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= h.length) break;
      const r = l + 1;
      const c = r < h.length && before(h[r] as Entry, h[l] as Entry) ? r : l;
      if (!before(h[c] as Entry, last)) break;
      h[i] = h[c] as Entry;
      i = c;
    }
    h[i] = last;
  }
}

function before(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** mulberry32: a small, fast, seeded PRNG in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
