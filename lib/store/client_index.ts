/**
 * The SQLite store's lookups by client, kept in memory instead of as SQLite indexes. Pure.
 *
 * An SQLite index on (htype, hw_address) or client_id is a second B-tree keyed by a random
 * value: every lease that changes hands writes a random page of each, and every such page goes
 * to the WAL, to the fdatasync and to the checkpoint. Measured here with 127,000 rows: an
 * upsert that changes the client took 80-110 µs with the two indexes and 13-18 µs without in a
 * loop of its own (pwrite calls per write: 5.5 against 0.4), and in the benchmark's failover
 * pair a put went from 33-39 µs to 25 µs and a commit from 360-440 µs to 220-260 µs. So the table keeps
 * only its primary key (the address), and this index maps a hash of the client's key to the
 * addresses whose row has it. A hash is only a candidate: the store reads each row and compares
 * the bytes, so a collision costs a read, never a wrong answer.
 *
 * It also remembers each row's binding status code, which the store's per-state counts need
 * before every write (one read per write fewer).
 */

/** FNV-1a (32 bit) offset basis and prime. */
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** Hashes are folded to 30 bits: V8 keeps such numbers unboxed, as Map keys and values. */
const HASH_MASK = 0x3fffffff;
/** Seed of client identifier hashes; htype (0..255) seeds hardware-address hashes. */
const CLIENT_ID_SEED = 0x100;

function start(seed: number): number {
  return Math.imul(FNV_OFFSET ^ seed, FNV_PRIME);
}

function fold(h: number): number {
  return (h ^ (h >>> 30)) & HASH_MASK;
}

function hashBytes(seed: number, bytes: Uint8Array): number {
  let h = start(seed);
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ (bytes[i] as number), FNV_PRIME);
  return fold(h);
}

/** Value of one hex digit (0-9, A-F, a-f) by its char code. */
function nibble(c: number): number {
  return c <= 57 ? c - 48 : (c | 32) - 87;
}

/** The same hash over the bytes that SQLite's hex() spelled (no arrays for a start-up scan). */
function hashHex(seed: number, hex: string): number {
  let h = start(seed);
  for (let i = 0; i + 1 < hex.length; i += 2) {
    const b = (nibble(hex.charCodeAt(i)) << 4) | nibble(hex.charCodeAt(i + 1));
    h = Math.imul(h ^ b, FNV_PRIME);
  }
  return fold(h);
}

/** No key: a row without a hardware address (a pool address) or without a client id. */
export const NO_KEY = -1;

/** Key of a hardware address; NO_KEY for an empty one (free and backup rows have none). */
export function hwKey(htype: number, hwAddress: Uint8Array): number {
  return hwAddress.length === 0 ? NO_KEY : hashBytes(htype & 0xff, hwAddress);
}

/** hwKey() of a hardware address as SQLite's hex() writes it. */
export function hwKeyOfHex(htype: number, hex: string): number {
  return hex.length === 0 ? NO_KEY : hashHex(htype & 0xff, hex);
}

/** Key of a client identifier; NO_KEY for none. */
export function clientIdKey(clientId: Uint8Array | null): number {
  return clientId === null ? NO_KEY : hashBytes(CLIENT_ID_SEED, clientId);
}

/** clientIdKey() of a client identifier as SQLite's hex() writes it (null: none). */
export function clientIdKeyOfHex(hex: string | null): number {
  return hex === null ? NO_KEY : hashHex(CLIENT_ID_SEED, hex);
}

/** Addresses per page of an AddressTable. */
const PAGE_BITS = 12;
const PAGE_SIZE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_SIZE - 1;

/**
 * An int32 per IPv4 address, in pages of 4,096 addresses. A Map keyed by address hashes a
 * heap-allocated number for every address from 64.0.0.0 up (V8 keeps only 31-bit integers
 * unboxed); page numbers are below 2^20, and a page is one typed array.
 */
export class AddressTable {
  readonly #pages = new Map<number, Int32Array>();
  readonly #empty: number;
  #size = 0;

  /** `empty`: the value of an address never set (and what removing sets). */
  constructor(empty: number) {
    this.#empty = empty;
  }

  /** Addresses whose value is not the empty one. */
  get size(): number {
    return this.#size;
  }

  get(address: number): number {
    const page = this.#pages.get(address >>> PAGE_BITS);
    return page === undefined ? this.#empty : page[address & PAGE_MASK] as number;
  }

  set(address: number, value: number): void {
    const n = address >>> PAGE_BITS;
    let page = this.#pages.get(n);
    if (page === undefined) {
      if (value === this.#empty) return;
      page = new Int32Array(PAGE_SIZE);
      if (this.#empty !== 0) page.fill(this.#empty);
      this.#pages.set(n, page);
    }
    const i = address & PAGE_MASK;
    const old = page[i] as number;
    if (old === this.#empty) {
      if (value !== this.#empty) this.#size++;
    } else if (value === this.#empty) this.#size--;
    page[i] = value;
  }
}

/**
 * Addresses by key, one key per address. An address is kept as its int32 (`address | 0`),
 * unboxed for 0.0.0.0/2 and 192.0.0.0/2 (the unsigned value only for 0.0.0.0/2), and read back
 * with `>>> 0`.
 */
export class AddressIndex {
  /** One address, or several (a client with several leases, or a hash collision). */
  readonly #byKey = new Map<number, number | number[]>();
  readonly #keyOf = new AddressTable(NO_KEY);

  /** Number of addresses that have a key. */
  get size(): number {
    return this.#keyOf.size;
  }

  /** Gives `address` the key `key` (NO_KEY: none), dropping the one it had. */
  set(address: number, key: number): void {
    const old = this.#keyOf.get(address);
    if (old === key) return;
    const a = address | 0;
    if (old !== NO_KEY) this.#unlink(old, a);
    this.#keyOf.set(address, key);
    if (key === NO_KEY) return;
    const current = this.#byKey.get(key);
    if (current === undefined) this.#byKey.set(key, a);
    else if (typeof current === "number") this.#byKey.set(key, [current, a]);
    else current.push(a);
  }

  /** The addresses with key `key`, in no particular order (candidates: compare the rows). */
  lookup(key: number): readonly number[] {
    if (key === NO_KEY) return [];
    const found = this.#byKey.get(key);
    if (found === undefined) return [];
    return typeof found === "number" ? [found >>> 0] : found.map((a) => a >>> 0);
  }

  #unlink(key: number, a: number): void {
    const current = this.#byKey.get(key);
    if (current === undefined) return;
    if (typeof current === "number") {
      if (current === a) this.#byKey.delete(key);
      return;
    }
    const i = current.indexOf(a);
    if (i < 0) return;
    current.splice(i, 1);
    if (current.length === 1) this.#byKey.set(key, current[0] as number);
  }
}

/** What the store keeps per row: status code, and the keys of its two client columns. */
export class ClientIndex {
  readonly hw = new AddressIndex();
  readonly clientId = new AddressIndex();
  /** Status codes are 1..7; 0 is "no row". */
  readonly #codes = new AddressTable(0);

  /** Number of rows. */
  get size(): number {
    return this.#codes.size;
  }

  /** The stored binding status code of `address`; 0 when it has no row. */
  code(address: number): number {
    return this.#codes.get(address);
  }

  /** Records the row of `address` as written. */
  set(address: number, code: number, hw: number, clientId: number): void {
    this.#codes.set(address, code);
    this.hw.set(address, hw);
    this.clientId.set(address, clientId);
  }

  /** Forgets the row of `address`. */
  remove(address: number): void {
    this.#codes.set(address, 0);
    this.hw.set(address, NO_KEY);
    this.clientId.set(address, NO_KEY);
  }
}
