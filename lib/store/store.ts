/**
 * The lease model and the store interfaces. Binding states are those of
 * draft-ietf-dhc-failover-12 §5.11 / §12.3 so failover can build on them.
 */

/** Lower-case binding state as stored and printed (`duet leases --json`). */
export type LeaseState =
  | "free"
  | "active"
  | "expired"
  | "released"
  | "abandoned"
  | "reset"
  | "backup";

/** Every state, in draft §12.3 order: the binding-status code of LEASE_STATES[i] is i + 1. */
export const LEASE_STATES: readonly LeaseState[] = [
  "free",
  "active",
  "expired",
  "released",
  "abandoned",
  "reset",
  "backup",
];

/** The draft §12.3 binding-status code of a state (FREE 1 ... BACKUP 7). */
export function bindingStatusOf(state: LeaseState): number {
  return LEASE_STATES.indexOf(state) + 1;
}

/** The state of a draft §12.3 binding-status code, or undefined for other numbers. */
export function leaseStateOf(code: number): LeaseState | undefined {
  return Number.isInteger(code) ? LEASE_STATES[code - 1] : undefined;
}

/** A count of zero for every state (countByState's starting point). */
export function zeroCounts(): Record<LeaseState, number> {
  return { free: 0, active: 0, expired: 0, released: 0, abandoned: 0, reset: 0, backup: 0 };
}

/** One address binding. Times are epoch seconds (UTC); absent times are 0. */
export interface Lease {
  /** The leased IPv4 address as uint32; the key. */
  address: number;
  state: LeaseState;
  /** Hardware type (RFC 1700; 1 = Ethernet). */
  htype: number;
  /** chaddr[0..hlen), or empty when unknown (e.g. ABANDONED). */
  hwAddress: Uint8Array;
  /** Option 61 bytes, or null. */
  clientId: Uint8Array | null;
  /** Option 12 as sent by the client, or null. */
  hostname: string | null;
  /** When the binding started. */
  starts: number;
  /** When the binding ends (lease expiry). */
  ends: number;
  /** Client last transaction time (draft §12.8). */
  cltt: number;
  /** Potential expiration time this server has told the partner (draft §12.28, "tstp"). */
  tstp: number;
  /** Potential expiration time the partner has acknowledged ("tsfp"). */
  tsfp: number;
  /** The latest potential expiration time received from the partner (ISC's "atsfp"). */
  atsfp: number;
  /** Relay agent information (option 82) seen with the last request, or null. */
  relayInfo: Uint8Array | null;
}

/** Filters for listing leases; all given fields must match. */
export interface LeaseFilter {
  state?: LeaseState;
  hwAddress?: Uint8Array;
  address?: number;
}

/** Read access to leases, used by the pure core. */
export interface LeaseView {
  /** The lease on an address, if any. */
  get(address: number): Lease | undefined;
  /** Every lease whose hardware address (with htype) matches, newest `ends` first. */
  findByHw(htype: number, hwAddress: Uint8Array): Lease[];
  /** Every lease with this client identifier, newest `ends` first. */
  findByClientId(clientId: Uint8Array): Lease[];
  /** Streams leases in address order. */
  iterate(filter?: LeaseFilter): IterableIterator<Lease>;
  /** Number of leases per state. */
  countByState(): Record<LeaseState, number>;
}

/**
 * Write access. `put` joins the current write batch and is visible to reads at once;
 * `commit` makes the batch durable (with SQLite: one transaction, synchronous=FULL).
 * A reply that acknowledges a lease MUST wait for the commit that holds it.
 */
export interface LeaseStore extends LeaseView {
  put(lease: Lease): void;
  /**
   * Records the partner's acknowledgement of a binding this server sent (draft-12 §7.2.2)
   * without reading the row out: sets its tsfp when the row still has `sent`'s binding status
   * and client (by client identifier when either has one, else htype and chaddr) and another
   * tsfp. Joins the batch like put(); returns whether the row changed.
   */
  recordAck(sent: Lease, tsfp: number): boolean;
  /** Removes an address's row (used when an address leaves every pool). */
  delete(address: number): void;
  /** Commits the batch; returns the number of rows written in it. */
  commit(): number;
  /** Rolls back the batch (a failed commit); the store reloads nothing. */
  rollback(): void;
  /**
   * Resolves once every commit so far is on stable storage (a store may make COMMIT cheap
   * and do its fsync here, off the event loop). Rejects with StoreError when it cannot.
   */
  sync(): Promise<void>;
  /** Number of puts not yet committed. */
  readonly pending: number;
  /**
   * What was lost since the last call: how many write batches ended without a commit (a
   * rollback, a failed commit, or a failed write, which discards its whole batch and counts
   * as one lost batch even when it was the first write of one) and the addresses they wrote. Whoever shares the batch (the DHCP shell, the failover endpoint)
   * MUST NOT acknowledge anything that waited for a lost batch, and MUST re-read those
   * addresses: what it derived from the writes is gone with them.
   */
  takeDiscarded(): { batches: number; addresses: number[] };
  /**
   * Adds a write that changes no lease to the batch, so that committing it shows whether the
   * database accepts writes again after a failure (the shell probes while it is failing).
   */
  probe(): void;
  /**
   * Adds `delta` seconds to every non-zero time (starts, ends, cltt, tstp, tsfp, atsfp) of
   * every lease, in the current batch; times stay at least 1 (0 means unset). Used when the
   * system clock steps, so that every lease keeps the time it has left (lib/server/clock.ts).
   * Returns the number of rows changed.
   */
  shiftTimes(delta: number): number;
  close(): void;
}

/** The smallest value a shifted time may take: 0 means "unset" (Lease). */
export const MIN_SHIFTED_TIME = 1;

/** A time moved by `delta` seconds, as shiftTimes() moves it: 0 stays 0, others stay >= 1. */
export function shiftTime(t: number, delta: number): number {
  return t === 0 ? 0 : Math.max(MIN_SHIFTED_TIME, t + delta);
}

/** A fresh lease row with zero times. */
export function emptyLease(address: number, state: LeaseState = "free"): Lease {
  return {
    address,
    state,
    htype: 1,
    hwAddress: new Uint8Array(0),
    clientId: null,
    hostname: null,
    starts: 0,
    ends: 0,
    cltt: 0,
    tstp: 0,
    tsfp: 0,
    atsfp: 0,
    relayInfo: null,
  };
}

/**
 * Small persistent key/value settings beside the leases (the failover endpoint's own state,
 * draft §9). `setMeta` joins the current write batch like `put`.
 */
export interface MetaStore {
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
}

/** Largest IPv4 address as a uint32. */
const UINT32_MAX = 0xffffffff;

/**
 * Throws TypeError/RangeError when a lease is not well-formed (a caller bug, STYLE.md §5).
 * Both store implementations call it in `put` so they accept exactly the same rows.
 */
export function checkLease(lease: Lease): void {
  const a = lease.address;
  if (!Number.isInteger(a) || a < 0 || a > UINT32_MAX) {
    throw new RangeError(`Lease address must be a uint32, got ${a}`);
  }
  if (!LEASE_STATES.includes(lease.state)) {
    throw new TypeError(`Lease state must be one of ${LEASE_STATES.join(", ")}: "${lease.state}"`);
  }
  if (!Number.isInteger(lease.htype) || lease.htype < 0 || lease.htype > 255) {
    throw new RangeError(`Lease htype must be 0..255, got ${lease.htype}`);
  }
  if (!(lease.hwAddress instanceof Uint8Array) || lease.hwAddress.length > 16) {
    // RFC 2131 §2: chaddr is 16 octets.
    throw new RangeError("Lease hwAddress must be a Uint8Array of at most 16 bytes");
  }
  if (lease.clientId !== null && !(lease.clientId instanceof Uint8Array)) {
    throw new TypeError("Lease clientId must be a Uint8Array or null");
  }
  if (lease.relayInfo !== null && !(lease.relayInfo instanceof Uint8Array)) {
    throw new TypeError("Lease relayInfo must be a Uint8Array or null");
  }
  if (lease.hostname !== null && typeof lease.hostname !== "string") {
    throw new TypeError("Lease hostname must be a string or null");
  }
  for (const key of ["starts", "ends", "cltt", "tstp", "tsfp", "atsfp"] as const) {
    const t = lease[key];
    if (!Number.isSafeInteger(t) || t < 0) {
      throw new RangeError(`Lease ${key} must be a non-negative integer of seconds, got ${t}`);
    }
  }
}

/** Newest `ends` first, then by address: the order of findByHw()/findByClientId(). */
export function byEndsDesc(a: Lease, b: Lease): number {
  return b.ends - a.ends || a.address - b.address;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
