/**
 * Lease counts by binding state, kept up to date as leases are written, so that `GET /status`
 * and `GET /metrics` answer without scanning the lease table. A scan of 127,000 rows takes
 * 40-80 ms of the event loop, during which no DHCP packet is served; a monitoring poll every
 * few seconds would cost a server a large share of its CPU.
 *
 * Counts are kept per block of 256 addresses, so that a pool's count is the sum of its whole
 * blocks plus an exact count (by the caller) of the partial blocks at its two ends. Pure: the
 * SQLite store feeds it the state before and after every write, and undoes a discarded batch.
 */

/** Binding status codes are 1..7 (draft §12.3); 0 means "no row". */
const CODES = 8;

/** log2 of the addresses per block. */
export const BLOCK_BITS = 8;

/** One write of the open batch: the address and its state code before and after. */
interface Change {
  address: number;
  before: number;
  after: number;
}

export class StateTally {
  readonly #blocks = new Map<number, Int32Array>();
  readonly #total = new Int32Array(CODES);
  /** Writes of the open batch, undone in reverse by rollback(). */
  #batch: Change[] = [];

  /** Adds `n` rows of state `code` in block `block` (the initial count, from one scan). */
  seed(block: number, code: number, n: number): void {
    this.#bump(block, code, n);
  }

  /** Records one write of the open batch: `before`/`after` are state codes, 0 for no row. */
  change(address: number, before: number, after: number): void {
    if (before === after) return;
    const block = address >>> BLOCK_BITS;
    if (before !== 0) this.#bump(block, before, -1);
    if (after !== 0) this.#bump(block, after, 1);
    this.#batch.push({ address, before, after });
  }

  /** The open batch was committed: its changes stay. */
  commit(): void {
    this.#batch = [];
  }

  /** The open batch was rolled back: its changes are undone. */
  rollback(): void {
    for (let i = this.#batch.length - 1; i >= 0; i--) {
      const c = this.#batch[i] as Change;
      const block = c.address >>> BLOCK_BITS;
      if (c.after !== 0) this.#bump(block, c.after, -1);
      if (c.before !== 0) this.#bump(block, c.before, 1);
    }
    this.#batch = [];
  }

  /** Rows per state code (index 1..7) in the whole table. */
  total(): Int32Array {
    return this.#total.slice();
  }

  /**
   * Adds to `into` the rows per state code of the whole blocks `firstBlock`..`lastBlock`
   * (inclusive). Walks whichever is smaller: the block numbers or the blocks in use.
   */
  addBlocks(firstBlock: number, lastBlock: number, into: Int32Array): void {
    if (lastBlock < firstBlock) return;
    const add = (counts: Int32Array) => {
      for (let c = 1; c < CODES; c++) into[c] = (into[c] as number) + (counts[c] as number);
    };
    if (lastBlock - firstBlock + 1 <= this.#blocks.size) {
      for (let b = firstBlock; b <= lastBlock; b++) {
        const counts = this.#blocks.get(b);
        if (counts !== undefined) add(counts);
      }
    } else {
      for (const [b, counts] of this.#blocks) if (b >= firstBlock && b <= lastBlock) add(counts);
    }
  }

  #bump(block: number, code: number, n: number): void {
    let counts = this.#blocks.get(block);
    if (counts === undefined) {
      counts = new Int32Array(CODES);
      this.#blocks.set(block, counts);
    }
    counts[code] = (counts[code] as number) + n;
    this.#total[code] = (this.#total[code] as number) + n;
  }
}
