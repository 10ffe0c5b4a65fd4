/**
 * An in-memory LeaseStore for unit tests and the deterministic simulation. It honours the
 * same contract as the SQLite store (tests/store/contract.ts), including rollback.
 */
import { StoreError } from "../errors.ts";
import { toHex } from "../wire/ip.ts";
import {
  byEndsDesc,
  bytesEqual,
  checkLease,
  type Lease,
  type LeaseFilter,
  type LeaseState,
  type LeaseStore,
  type MetaStore,
  shiftTime,
  zeroCounts,
} from "./store.ts";

/** Copies a lease so that callers never share arrays with the store. */
function copyLease(l: Lease): Lease {
  return {
    ...l,
    hwAddress: new Uint8Array(l.hwAddress),
    clientId: l.clientId === null ? null : new Uint8Array(l.clientId),
    relayInfo: l.relayInfo === null ? null : new Uint8Array(l.relayInfo),
  };
}

function hwKey(htype: number, hwAddress: Uint8Array): string {
  return `${htype}/${toHex(hwAddress)}`;
}

function addToIndex(index: Map<string, Set<number>>, key: string, address: number): void {
  let set = index.get(key);
  if (!set) {
    set = new Set();
    index.set(key, set);
  }
  set.add(address);
}

function removeFromIndex(index: Map<string, Set<number>>, key: string, address: number): void {
  const set = index.get(key);
  if (!set) return;
  set.delete(address);
  if (set.size === 0) index.delete(key);
}

/** Leases in Maps with hardware-address and client-id indexes; `commit` only ends the batch. */
export class MemoryLeaseStore implements LeaseStore, MetaStore {
  #leases = new Map<number, Lease>();
  #byHw = new Map<string, Set<number>>();
  #byClientId = new Map<string, Set<number>>();
  #meta = new Map<string, string>();
  /** Values before the batch touched them, for rollback (first touch wins). */
  #undo = new Map<number, Lease | undefined>();
  #metaUndo = new Map<string, string | undefined>();
  #pending = 0;
  #closed = false;
  #discardedBatches = 0;
  #discardedAddresses: number[] = [];

  get pending(): number {
    return this.#pending;
  }

  get(address: number): Lease | undefined {
    this.#checkOpen();
    const l = this.#leases.get(address);
    return l && copyLease(l);
  }

  findByHw(htype: number, hwAddress: Uint8Array): Lease[] {
    this.#checkOpen();
    return this.#collect(this.#byHw.get(hwKey(htype, hwAddress)));
  }

  findByClientId(clientId: Uint8Array): Lease[] {
    this.#checkOpen();
    return this.#collect(this.#byClientId.get(toHex(clientId)));
  }

  *iterate(filter: LeaseFilter = {}): IterableIterator<Lease> {
    this.#checkOpen();
    const addresses = filter.address !== undefined
      ? [filter.address]
      : [...this.#leases.keys()].sort((a, b) => a - b);
    for (const address of addresses) {
      const l = this.#leases.get(address);
      if (!l) continue;
      if (filter.state !== undefined && l.state !== filter.state) continue;
      if (filter.hwAddress !== undefined && !bytesEqual(l.hwAddress, filter.hwAddress)) continue;
      yield copyLease(l);
    }
  }

  countByState(): Record<LeaseState, number> {
    this.#checkOpen();
    const counts = zeroCounts();
    for (const l of this.#leases.values()) counts[l.state]++;
    return counts;
  }

  put(lease: Lease): void {
    this.#checkOpen();
    checkLease(lease);
    this.#remember(lease.address);
    this.#unlink(lease.address);
    const l = copyLease(lease);
    this.#leases.set(l.address, l);
    addToIndex(this.#byHw, hwKey(l.htype, l.hwAddress), l.address);
    if (l.clientId !== null) addToIndex(this.#byClientId, toHex(l.clientId), l.address);
    this.#pending++;
  }

  recordAck(sent: Lease, tsfp: number): boolean {
    this.#checkOpen();
    checkLease(sent);
    if (!Number.isSafeInteger(tsfp) || tsfp < 0) {
      throw new RangeError(`Cannot record tsfp ${tsfp}: not a time`);
    }
    this.#pending++;
    const l = this.#leases.get(sent.address);
    if (l === undefined || l.state !== sent.state || l.tsfp === tsfp) return false;
    const same = sent.clientId !== null || l.clientId !== null
      ? sent.clientId !== null && l.clientId !== null && bytesEqual(sent.clientId, l.clientId)
      : l.htype === sent.htype && bytesEqual(l.hwAddress, sent.hwAddress);
    if (!same) return false;
    this.#remember(sent.address);
    this.#leases.set(sent.address, { ...l, tsfp });
    return true;
  }

  delete(address: number): void {
    this.#checkOpen();
    this.#remember(address);
    this.#unlink(address);
    this.#pending++;
  }

  getMeta(key: string): string | undefined {
    this.#checkOpen();
    return this.#meta.get(key);
  }

  setMeta(key: string, value: string): void {
    this.#checkOpen();
    if (!this.#metaUndo.has(key)) this.#metaUndo.set(key, this.#meta.get(key));
    this.#meta.set(key, value);
    this.#pending++;
  }

  commit(): number {
    this.#checkOpen();
    const n = this.#pending;
    this.#undo.clear();
    this.#metaUndo.clear();
    this.#pending = 0;
    return n;
  }

  /** Nothing to make durable: resolves at once. */
  sync(): Promise<void> {
    this.#checkOpen();
    return Promise.resolve();
  }

  takeDiscarded(): { batches: number; addresses: number[] } {
    const out = { batches: this.#discardedBatches, addresses: this.#discardedAddresses };
    this.#discardedBatches = 0;
    this.#discardedAddresses = [];
    return out;
  }

  /** Joins the batch without changing anything (memory never refuses writes). */
  probe(): void {
    this.#checkOpen();
    this.#pending++;
  }

  shiftTimes(delta: number): number {
    this.#checkOpen();
    if (!Number.isSafeInteger(delta)) throw new RangeError(`Cannot shift times by ${delta}`);
    let n = 0;
    for (const [address, l] of this.#leases) {
      this.#remember(address);
      this.#leases.set(address, {
        ...l,
        starts: shiftTime(l.starts, delta),
        ends: shiftTime(l.ends, delta),
        cltt: shiftTime(l.cltt, delta),
        tstp: shiftTime(l.tstp, delta),
        tsfp: shiftTime(l.tsfp, delta),
        atsfp: shiftTime(l.atsfp, delta),
      });
      n++;
    }
    this.#pending++;
    return n;
  }

  rollback(): void {
    this.#checkOpen();
    if (this.#pending > 0 || this.#undo.size > 0 || this.#metaUndo.size > 0) {
      this.#discardedBatches++;
      for (const address of this.#undo.keys()) this.#discardedAddresses.push(address);
    }
    for (const [address, before] of this.#undo) {
      this.#unlink(address);
      if (before) {
        this.#leases.set(address, before);
        addToIndex(this.#byHw, hwKey(before.htype, before.hwAddress), address);
        if (before.clientId !== null) {
          addToIndex(this.#byClientId, toHex(before.clientId), address);
        }
      }
    }
    for (const [key, before] of this.#metaUndo) {
      if (before === undefined) this.#meta.delete(key);
      else this.#meta.set(key, before);
    }
    this.#undo.clear();
    this.#metaUndo.clear();
    this.#pending = 0;
  }

  /** Discards an uncommitted batch, like closing an SQLite connection. */
  close(): void {
    if (this.#closed) return;
    this.rollback();
    this.#closed = true;
  }

  #checkOpen(): void {
    if (this.#closed) throw new StoreError("Cannot use the lease store: it is closed");
  }

  #remember(address: number): void {
    if (!this.#undo.has(address)) this.#undo.set(address, this.#leases.get(address));
  }

  /** Removes an address's row and its index entries; the row object itself is kept for undo. */
  #unlink(address: number): void {
    const old = this.#leases.get(address);
    if (!old) return;
    this.#leases.delete(address);
    removeFromIndex(this.#byHw, hwKey(old.htype, old.hwAddress), address);
    if (old.clientId !== null) removeFromIndex(this.#byClientId, toHex(old.clientId), address);
  }

  #collect(addresses: Set<number> | undefined): Lease[] {
    if (!addresses) return [];
    const out: Lease[] = [];
    for (const a of addresses) {
      const l = this.#leases.get(a);
      if (l) out.push(copyLease(l));
    }
    return out.sort(byEndsDesc);
  }
}
