/**
 * BNDUPD -> BNDACK round trips (draft-12 §7.1, §7.2): the time from handing a BNDUPD to the
 * partner link until the BNDACK with the same xid (§6.1: a BNDACK copies the xid) arrives,
 * which includes the partner's commit to stable storage (§7.1.1). Pure: the shell passes the
 * times in milliseconds.
 */

/** The round trips seen so far; quantiles over the most recent `samples` of them. */
export interface AckLatencySummary {
  /** BNDACKs matched to a BNDUPD since start. */
  count: number;
  /** BNDUPDs sent on the current connection and not acknowledged yet. */
  pending: number;
  /** Round trips the quantiles are taken over (the most recent, at most the capacity). */
  samples: number;
  meanMs: number | null;
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
}

/** Most round trips kept for the quantiles. */
export const ACK_LATENCY_CAPACITY = 65_536;

/** Matches BNDACKs to the BNDUPDs they answer and keeps their round-trip times. */
export class AckLatency {
  readonly #pending = new Map<number, number>();
  readonly #samples: Float64Array;
  #next = 0;
  #filled = 0;
  #count = 0;
  #sumMs = 0;
  #maxMs = 0;

  constructor(capacity = ACK_LATENCY_CAPACITY) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Cannot keep ${capacity} round trips: expected a positive integer`);
    }
    this.#samples = new Float64Array(capacity);
  }

  /** A BNDUPD with this xid left at `atMs`. */
  sent(xid: number, atMs: number): void {
    // Bounded by the partner's max-unacked-bndupd (§8.4); a partner that never answers cannot
    // grow it past the capacity.
    if (this.#pending.size >= this.#samples.length) this.#pending.clear();
    this.#pending.set(xid, atMs);
  }

  /** A BNDACK with this xid arrived at `atMs`; returns its round trip, or null if unmatched. */
  acked(xid: number, atMs: number): number | null {
    const sent = this.#pending.get(xid);
    if (sent === undefined) return null;
    this.#pending.delete(xid);
    const ms = Math.max(0, atMs - sent);
    this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % this.#samples.length;
    this.#filled = Math.min(this.#filled + 1, this.#samples.length);
    this.#count++;
    this.#sumMs += ms;
    if (ms > this.#maxMs) this.#maxMs = ms;
    return ms;
  }

  /** The connection went away: its BNDUPDs will be sent again on the next (§8.6). */
  connectionLost(): void {
    this.#pending.clear();
  }

  /** Count, mean and nearest-rank median and 99th percentile. */
  summary(): AckLatencySummary {
    const n = this.#filled;
    if (n === 0) {
      return {
        count: this.#count,
        pending: this.#pending.size,
        samples: 0,
        meanMs: null,
        p50Ms: null,
        p99Ms: null,
        maxMs: null,
      };
    }
    const sorted = this.#samples.slice(0, n).sort();
    const rank = (q: number) => sorted[Math.max(0, Math.ceil(q * n) - 1)] as number;
    const round = (ms: number) => Math.round(ms * 1000) / 1000;
    return {
      count: this.#count,
      pending: this.#pending.size,
      samples: n,
      meanMs: round(this.#sumMs / this.#count),
      p50Ms: round(rank(0.5)),
      p99Ms: round(rank(0.99)),
      maxMs: round(this.#maxMs),
    };
  }
}
