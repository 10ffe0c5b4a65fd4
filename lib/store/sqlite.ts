/**
 * The lease database: one SQLite file in WAL mode, written in group-commit batches.
 * A DHCPACK MUST NOT be sent before the commit that holds its lease (draft §3.1.3), so the
 * server puts every lease decided within a few milliseconds and commits them with one fsync.
 */
import { existsSync } from "node:fs";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { pathToFileURL } from "node:url";
import { StoreError } from "../errors.ts";
import { BLOCK_BITS, StateTally } from "./tally.ts";
import { clientIdKey, clientIdKeyOfHex, ClientIndex, hwKey, hwKeyOfHex } from "./client_index.ts";
import {
  bindingStatusOf,
  byEndsDesc,
  bytesEqual,
  checkLease,
  type Lease,
  LEASE_STATES,
  type LeaseFilter,
  type LeaseState,
  leaseStateOf,
  type LeaseStore,
  type MetaStore,
  zeroCounts,
} from "./store.ts";

/** `PRAGMA application_id` of a duet lease database: "duet" in ASCII. */
export const APPLICATION_ID = 0x64756574;

/**
 * Schema changes in order; step i (0-based) takes the database from version i to i + 1.
 * Append only: a released step MUST never be edited.
 */
const MIGRATIONS: readonly string[] = [
  // Version 1: the lease table (draft §12.3 binding status codes in `state`).
  `CREATE TABLE leases (
     address    INTEGER PRIMARY KEY CHECK (address BETWEEN 0 AND 4294967295),
     state      INTEGER NOT NULL CHECK (state BETWEEN 1 AND 7),
     htype      INTEGER NOT NULL,
     hw_address BLOB    NOT NULL,
     client_id  BLOB,
     hostname   TEXT,
     starts     INTEGER NOT NULL,
     ends       INTEGER NOT NULL,
     cltt       INTEGER NOT NULL,
     tstp       INTEGER NOT NULL,
     tsfp       INTEGER NOT NULL,
     atsfp      INTEGER NOT NULL,
     relay_info BLOB
   );
   CREATE INDEX leases_hw ON leases (htype, hw_address);
   CREATE INDEX leases_client_id ON leases (client_id);`,
  // Version 2: key/value settings for the failover endpoint's persistent state (draft §9).
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;`,
  // Version 3: lookups by client move to memory (client_index.ts): each index was a random
  // B-tree page written per lease that changed hands.
  `DROP INDEX leases_hw;
   DROP INDEX leases_client_id;`,
];

/** The schema version this code writes and reads. */
export const SCHEMA_VERSION: number = MIGRATIONS.length;

/** How long a connection waits for another one's lock before failing. */
const BUSY_TIMEOUT_MS = 5000;

/** Binding status code (draft §12.3) to state name, and back. */
const CODE_BY_STATE = Object.fromEntries(
  LEASE_STATES.map((state) => [state, bindingStatusOf(state)]),
) as Record<LeaseState, number>;

const COLUMNS =
  "address, state, htype, hw_address, client_id, hostname, starts, ends, cltt, tstp, tsfp, atsfp, relay_info";

/** Rows per statement of the client index's start-up scan. */
const INDEX_CHUNK = 8192;

const SQL = {
  get: `SELECT ${COLUMNS} FROM leases WHERE address = ?`,
  findByHw: `SELECT ${COLUMNS} FROM leases WHERE htype = ? AND hw_address = ?
             ORDER BY ends DESC, address`,
  findByClientId: `SELECT ${COLUMNS} FROM leases WHERE client_id = ? ORDER BY ends DESC, address`,
  countByState: "SELECT state, count(*) AS n FROM leases GROUP BY state",
  countInRange: `SELECT state, count(*) AS n FROM leases WHERE address BETWEEN ? AND ?
                 GROUP BY state`,
  // The client index's columns; hex() spares an array per blob (client_index.ts). In chunks:
  // all() costs a third of a cursor's next() per row, and a chunk bounds the memory.
  indexAll: `SELECT address, state, htype, hex(hw_address),
               iif(client_id IS NULL, NULL, hex(client_id)) FROM leases
             WHERE address > ? ORDER BY address LIMIT ${INDEX_CHUNK}`,
  indexOne: `SELECT address, state, htype, hex(hw_address),
               iif(client_id IS NULL, NULL, hex(client_id)) FROM leases WHERE address = ?`,
  countByBlock: `SELECT address >> ${BLOCK_BITS} AS block, state, count(*) AS n FROM leases
                 GROUP BY block, state`,
  upsert: `INSERT INTO leases (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (address) DO UPDATE SET
             state = excluded.state, htype = excluded.htype, hw_address = excluded.hw_address,
             client_id = excluded.client_id, hostname = excluded.hostname,
             starts = excluded.starts, ends = excluded.ends, cltt = excluded.cltt,
             tstp = excluded.tstp, tsfp = excluded.tsfp, atsfp = excluded.atsfp,
             relay_info = excluded.relay_info`,
  // store.recordAck(): the row as it was sent (status and client, as sync.ts compares them).
  recordAck: `UPDATE leases SET tsfp = ?1
              WHERE address = ?2 AND state = ?3 AND tsfp != ?1 AND (
                (?6 IS NULL AND client_id IS NULL AND htype = ?4 AND hw_address = ?5) OR
                (?6 IS NOT NULL AND client_id = ?6))`,
  delete: "DELETE FROM leases WHERE address = ?",
  // 0 means "unset" and stays 0; a shifted time stays >= 1 (store.ts shiftTime()).
  shiftTimes: `UPDATE leases SET
                 starts = CASE WHEN starts = 0 THEN 0 ELSE max(1, starts + ?1) END,
                 ends = CASE WHEN ends = 0 THEN 0 ELSE max(1, ends + ?1) END,
                 cltt = CASE WHEN cltt = 0 THEN 0 ELSE max(1, cltt + ?1) END,
                 tstp = CASE WHEN tstp = 0 THEN 0 ELSE max(1, tstp + ?1) END,
                 tsfp = CASE WHEN tsfp = 0 THEN 0 ELSE max(1, tsfp + ?1) END,
                 atsfp = CASE WHEN atsfp = 0 THEN 0 ELSE max(1, atsfp + ?1) END`,
  getMeta: "SELECT value FROM meta WHERE key = ?",
  setMeta: `INSERT INTO meta (key, value) VALUES (?, ?)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
} as const;

/** Bits of an iterate() filter; each combination has its own cached statement. */
const FILTER_ADDRESS = 1;
const FILTER_STATE = 2;
const FILTER_HW = 4;

function iterateSql(shape: number): string {
  const where: string[] = [];
  if (shape & FILTER_ADDRESS) where.push("address = ?");
  if (shape & FILTER_STATE) where.push("state = ?");
  if (shape & FILTER_HW) where.push("hw_address = ?");
  const clause = where.length > 0 ? ` WHERE ${where.join(" AND ")}` : "";
  return `SELECT ${COLUMNS} FROM leases${clause} ORDER BY address`;
}

type Row = Record<string, unknown>;

/** Addresses per block of the tally. */
const BLOCK_SIZE = 2 ** BLOCK_BITS;

/** Rows per state code (index = binding status code) as counts per state. */
function countsOf(byCode: Int32Array): Record<LeaseState, number> {
  const counts = zeroCounts();
  for (const state of LEASE_STATES) counts[state] = byCode[CODE_BY_STATE[state]] ?? 0;
  return counts;
}

function blobOrNull(v: unknown): Uint8Array | null {
  return v instanceof Uint8Array ? v : null;
}

/** A row of COLUMNS as an array (statements set to return arrays: no object per row). */
type LeaseRow = unknown[];

/** A row of SQL.indexAll: address, state, htype, hex(hw_address), hex(client_id) or null. */
type IndexRow = [number, number, number, string, string | null];

function indexRow(index: ClientIndex, r: IndexRow): void {
  index.set(r[0], r[1], hwKeyOfHex(r[2], r[3]), clientIdKeyOfHex(r[4]));
}

function rowToLease(r: LeaseRow, path: string): Lease {
  const state = leaseStateOf(r[1] as number);
  if (state === undefined) {
    throw new StoreError(
      `Cannot read lease database "${path}": unknown binding status ${String(r[1])}`,
    );
  }
  return {
    address: r[0] as number,
    state,
    htype: r[2] as number,
    hwAddress: blobOrNull(r[3]) ?? new Uint8Array(0),
    clientId: blobOrNull(r[4]),
    hostname: typeof r[5] === "string" ? r[5] : null,
    starts: r[6] as number,
    ends: r[7] as number,
    cltt: r[8] as number,
    tstp: r[9] as number,
    tsfp: r[10] as number,
    atsfp: r[11] as number,
    relayInfo: blobOrNull(r[12]),
  };
}

/** Rows as arrays in column order: a few µs less per row than an object with named keys. */
function arrays(stmt: StatementSync): StatementSync {
  // Deno's node:sqlite has it (Node 24's API); the bundled node types do not know it yet.
  (stmt as unknown as { setReturnArrays(on: boolean): void }).setReturnArrays(true);
  return stmt;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Options for SqliteLeaseStore.open. */
export interface SqliteOpenOptions {
  /** Open for reading only (dumps while the server runs); writes then throw StoreError. */
  readOnly?: boolean;
  /**
   * How commits reach the disk:
   * - "FULL" (default): SQLite fsyncs the WAL inside every COMMIT, blocking the caller;
   * - "DEFERRED": COMMIT only writes the WAL (synchronous=NORMAL) and `sync()` fdatasyncs it
   *   on Deno's blocking-I/O thread pool, so the event loop keeps serving while the disk
   *   works. Once `sync()` resolves, every earlier commit is as durable as with FULL;
   * - "NORMAL": SQLite's synchronous=NORMAL, no sync: the last commits may be lost on power loss.
   */
  synchronous?: "FULL" | "DEFERRED" | "NORMAL";
  /** DEFERRED: how the WAL is synced (tests inject failures); default `file.syncData()`. */
  syncData?: (file: Deno.FsFile) => Promise<void>;
}

/**
 * LeaseStore on an SQLite file (node:sqlite). The first write of a batch starts
 * BEGIN IMMEDIATE; `commit` runs COMMIT, so reads on this store see the batch at once while
 * other connections see it only after the commit.
 */
export class SqliteLeaseStore implements LeaseStore, MetaStore {
  readonly path: string;
  readonly readOnly: boolean;
  #db: DatabaseSync;
  #stmts: Record<keyof typeof SQL, StatementSync> | undefined;
  #begin: StatementSync | undefined;
  #commit: StatementSync | undefined;
  #rollback: StatementSync | undefined;
  #iterateStmts = new Map<number, StatementSync>();
  #iterateBusy = new Set<number>();
  #inBatch = false;
  /**
   * A read transaction (BEGIN DEFERRED) is open outside a batch: point reads in one event-loop
   * task share it, since each transaction of its own costs file locks and a stat of the WAL
   * index (about 5-7 µs here, as much as the read itself). It ends in a microtask, so no
   * snapshot outlives the task that took it, and before the next write opens a batch.
   */
  #inRead = false;
  #beginRead: StatementSync | undefined;
  #endReadTask = (): void => this.#endRead();
  #pending = 0;
  /** Addresses written in the open batch (reported by takeDiscarded() if it is lost). */
  #batchAddresses: number[] = [];
  #discardedBatches = 0;
  #discardedAddresses: number[] = [];
  #probe: StatementSync | undefined;
  #closed = false;
  /** The -wal file, opened for fdatasync in DEFERRED mode. */
  #wal: Deno.FsFile | undefined;
  #syncData: (file: Deno.FsFile) => Promise<void> = (file) => file.syncData();
  /**
   * A sync failed and no checkpoint has rewritten the WAL since. After a failed fdatasync
   * the kernel may have dropped the dirty pages and cleared the error, so a later fdatasync
   * succeeds while a range of the WAL never reached the disk. SQLite's recovery after a
   * crash stops at the first bad frame and drops every frame after it, acknowledged ones
   * too. So a sync counts again only once the WAL's content is checkpointed into the
   * database file (synced) and the WAL truncated.
   */
  #syncFailed = false;
  /**
   * Lease counts by state, kept as leases are written once somebody asked for counts (a
   * writable store only: a read-only one cannot see another connection's writes).
   */
  #tally: StateTally | null = null;
  /**
   * Each row's status and client keys (client_index.ts), for lookups by client and for the
   * tally; built with one scan when a writable store opens, and again at the next use after a
   * batch whose rollback it could not follow. Null for a read-only store (it cannot see another
   * connection's writes; its lookups scan the table).
   */
  #index: ClientIndex | null = null;

  private constructor(path: string, db: DatabaseSync, readOnly: boolean) {
    this.path = path;
    this.#db = db;
    this.readOnly = readOnly;
  }

  /**
   * Opens (and creates or migrates, unless readOnly) a lease database.
   * Throws StoreError when the file is not a duet lease database, is corrupt, has a newer
   * schema, or (unless readOnly) cannot be written.
   */
  static open(path: string, options: SqliteOpenOptions = {}): SqliteLeaseStore {
    const readOnly = options.readOnly ?? false;
    let db: DatabaseSync;
    try {
      db = readOnly ? openReadOnly(path) : openConnection(path, false);
    } catch (e) {
      throw openError(path, readOnly, e);
    }
    try {
      const store = new SqliteLeaseStore(path, db, readOnly);
      if (readOnly) store.#checkReadable();
      else {
        const mode = options.synchronous ?? "FULL";
        store.#initialise(mode === "DEFERRED" ? "NORMAL" : mode);
        if (mode === "DEFERRED") {
          store.#openWal();
          if (options.syncData) store.#syncData = options.syncData;
        }
      }
      store.#prepare();
      // At start rather than at the first packet (about 0.3 s for 127,000 rows).
      if (!readOnly) store.#readyIndex();
      return store;
    } catch (e) {
      closeQuietly(db);
      throw openError(path, readOnly, e);
    }
  }

  get pending(): number {
    return this.#pending;
  }

  get(address: number): Lease | undefined {
    const row = this.#pointRead(() => this.#s.get.get(address) as unknown as LeaseRow | undefined);
    return row && rowToLease(row, this.path);
  }

  findByHw(htype: number, hwAddress: Uint8Array): Lease[] {
    const index = this.#readyIndex();
    // Rows without a hardware address are not in the index (every pool address is one).
    if (index === null || hwAddress.length === 0) {
      const rows = this.#pointRead(() =>
        this.#s.findByHw.all(htype, hwAddress) as unknown as LeaseRow[]
      );
      return rows.map((r) => rowToLease(r, this.path));
    }
    const out: Lease[] = [];
    for (const address of index.hw.lookup(hwKey(htype, hwAddress))) {
      const l = this.get(address);
      if (l !== undefined && l.htype === htype && bytesEqual(l.hwAddress, hwAddress)) out.push(l);
    }
    return out.sort(byEndsDesc);
  }

  findByClientId(clientId: Uint8Array): Lease[] {
    const index = this.#readyIndex();
    if (index === null) {
      const rows = this.#pointRead(() =>
        this.#s.findByClientId.all(clientId) as unknown as LeaseRow[]
      );
      return rows.map((r) => rowToLease(r, this.path));
    }
    const out: Lease[] = [];
    for (const address of index.clientId.lookup(clientIdKey(clientId))) {
      const l = this.get(address);
      if (l?.clientId && bytesEqual(l.clientId, clientId)) out.push(l);
    }
    return out.sort(byEndsDesc);
  }

  /**
   * Streams rows in address order with one SQLite cursor; never loads the table.
   * Callers MUST run the iterator to the end or call return() (for-of does), or the
   * connection keeps a read snapshot open.
   */
  *iterate(filter: LeaseFilter = {}): IterableIterator<Lease> {
    this.#checkOpen();
    let shape = 0;
    const params: (number | Uint8Array)[] = [];
    if (filter.address !== undefined) {
      shape |= FILTER_ADDRESS;
      params.push(filter.address);
    }
    if (filter.state !== undefined) {
      shape |= FILTER_STATE;
      params.push(CODE_BY_STATE[filter.state]);
    }
    if (filter.hwAddress !== undefined) {
      shape |= FILTER_HW;
      params.push(filter.hwAddress);
    }
    // A statement has one cursor: a nested iterate() of the same shape gets its own statement.
    const nested = this.#iterateBusy.has(shape);
    let stmt = nested ? undefined : this.#iterateStmts.get(shape);
    if (!stmt) {
      stmt = this.#read(() => arrays(this.#db.prepare(iterateSql(shape))));
      if (!nested) this.#iterateStmts.set(shape, stmt);
    }
    if (!nested) this.#iterateBusy.add(shape);
    try {
      const cursor = this.#read(() => stmt.iterate(...params));
      try {
        while (true) {
          const next = this.#read(() => cursor.next());
          if (next.done) return;
          yield rowToLease(next.value as unknown as LeaseRow, this.path);
        }
      } finally {
        // Resets the statement so an abandoned loop does not hold a read snapshot open.
        try {
          cursor.return?.();
        } catch {
          // The connection may already be closed; nothing is left to release.
        }
      }
    } finally {
      if (!nested) this.#iterateBusy.delete(shape);
    }
  }

  countByState(): Record<LeaseState, number> {
    const tally = this.#readyTally();
    if (tally !== null) return countsOf(tally.total());
    const counts = zeroCounts();
    const rows = this.#read(() => this.#s.countByState.all() as Row[]);
    for (const r of rows) {
      const state = leaseStateOf(r.state as number);
      if (state !== undefined) counts[state] = r.n as number;
    }
    return counts;
  }

  /**
   * Number of leases per state on the addresses first..last (inclusive), for per-pool
   * utilisation and for `duet reload`'s check of a shrunk pool. With the tally: its whole
   * blocks plus a range scan of the primary key for the partial blocks at either end.
   */
  countInRange(first: number, last: number): Record<LeaseState, number> {
    const tally = this.#readyTally();
    if (tally === null || last - first < 2 * BLOCK_SIZE) {
      return countsOf(this.#scanRange(first, last, new Int32Array(LEASE_STATES.length + 1)));
    }
    const into = new Int32Array(LEASE_STATES.length + 1);
    let firstBlock = Math.floor(first / BLOCK_SIZE);
    let lastBlock = Math.floor(last / BLOCK_SIZE);
    if (first % BLOCK_SIZE !== 0) this.#scanRange(first, ++firstBlock * BLOCK_SIZE - 1, into);
    if (last % BLOCK_SIZE !== BLOCK_SIZE - 1) this.#scanRange(lastBlock-- * BLOCK_SIZE, last, into);
    tally.addBlocks(firstBlock, lastBlock, into);
    return countsOf(into);
  }

  /** Adds the rows per state code on first..last to `into` (one range scan); returns it. */
  #scanRange(first: number, last: number, into: Int32Array): Int32Array {
    const rows = this.#read(() => this.#s.countInRange.all(first, last) as Row[]);
    for (const r of rows) {
      const code = r.state as number;
      if (code >= 1 && code < into.length) into[code] = (into[code] as number) + (r.n as number);
    }
    return into;
  }

  /**
   * The tally, counted on first use with one scan. Null for a read-only store, and while a
   * batch is open before the first count (the scan would see writes the tally could not undo).
   */
  #readyTally(): StateTally | null {
    if (this.#tally !== null || this.readOnly || this.#inBatch) return this.#tally;
    const tally = new StateTally();
    const rows = this.#read(() => this.#s.countByBlock.all() as Row[]);
    for (const r of rows) tally.seed(r.block as number, r.state as number, r.n as number);
    this.#tally = tally;
    return tally;
  }

  /** The client index, built with one scan of the table if needed. Null for a read-only store. */
  #readyIndex(): ClientIndex | null {
    if (this.#index !== null || this.readOnly) return this.#index;
    const index = new ClientIndex();
    this.#pointRead(() => {
      let after = -1;
      while (true) {
        const rows = this.#s.indexAll.all(after) as unknown as IndexRow[];
        for (const r of rows) indexRow(index, r);
        if (rows.length < INDEX_CHUNK) break;
        after = (rows[rows.length - 1] as IndexRow)[0];
      }
    });
    this.#index = index;
    return index;
  }

  /**
   * One statement, no read: the client index knows the stored state (for the tally) and,
   * with no SQLite index on the client columns, rewriting them costs no more than keeping them.
   */
  put(lease: Lease): void {
    checkLease(lease);
    const index = this.#readyIndex() as ClientIndex;
    const address = lease.address;
    const after = CODE_BY_STATE[lease.state];
    this.#write(address, () =>
      this.#s.upsert.run(
        address,
        after,
        lease.htype,
        lease.hwAddress,
        lease.clientId,
        lease.hostname,
        lease.starts,
        lease.ends,
        lease.cltt,
        lease.tstp,
        lease.tsfp,
        lease.atsfp,
        lease.relayInfo,
      ));
    this.#tally?.change(address, index.code(address), after);
    index.set(address, after, hwKey(lease.htype, lease.hwAddress), clientIdKey(lease.clientId));
  }

  recordAck(sent: Lease, tsfp: number): boolean {
    checkLease(sent);
    if (!Number.isSafeInteger(tsfp) || tsfp < 0) {
      throw new RangeError(`Cannot record tsfp ${tsfp}: not a time`);
    }
    let changed = false;
    // The binding status stays as it is: no tally change, and no indexed column is written.
    this.#write(sent.address, () => {
      changed = Number(
        this.#s.recordAck.run(
          tsfp,
          sent.address,
          CODE_BY_STATE[sent.state],
          sent.htype,
          sent.hwAddress,
          sent.clientId,
        ).changes,
      ) > 0;
    });
    return changed;
  }

  delete(address: number): void {
    const index = this.#readyIndex() as ClientIndex;
    this.#write(address, () => this.#s.delete.run(address));
    this.#tally?.change(address, index.code(address), 0);
    index.remove(address);
  }

  getMeta(key: string): string | undefined {
    const row = this.#pointRead(() => this.#s.getMeta.get(key) as Row | undefined);
    return row === undefined ? undefined : String(row.value);
  }

  setMeta(key: string, value: string): void {
    this.#write(null, () => this.#s.setMeta.run(key, value));
  }

  takeDiscarded(): { batches: number; addresses: number[] } {
    const out = { batches: this.#discardedBatches, addresses: this.#discardedAddresses };
    this.#discardedBatches = 0;
    this.#discardedAddresses = [];
    return out;
  }

  /** Rewrites user_version with its own value: page 1 goes to the WAL, no row changes. */
  probe(): void {
    this.#write(null, () => (this.#probe as StatementSync).run());
  }

  shiftTimes(delta: number): number {
    if (!Number.isSafeInteger(delta)) throw new RangeError(`Cannot shift times by ${delta}`);
    let changed = 0;
    this.#write(null, () => {
      changed = Number(this.#s.shiftTimes.run(delta).changes);
    });
    return changed;
  }

  /** Commits the batch with one fsync (synchronous=FULL); on failure rolls it back and throws. */
  commit(): number {
    if (!this.#inBatch) return 0;
    const n = this.#pending;
    try {
      (this.#commit as StatementSync).run();
    } catch (e) {
      this.#abandonBatch();
      throw new StoreError(
        `Cannot commit ${n} lease writes to "${this.path}": ${messageOf(e)}`,
        { cause: e },
      );
    }
    this.#inBatch = false;
    this.#pending = 0;
    this.#batchAddresses = [];
    this.#tally?.commit();
    return n;
  }

  rollback(): void {
    if (!this.#inBatch) return;
    this.#abandonBatch();
  }

  /**
   * Makes every commit so far durable. With DEFERRED, fdatasync of the WAL off the main
   * thread; otherwise commits are already as durable as they will be and this resolves at once.
   */
  async sync(): Promise<void> {
    if (!this.#wal || this.#closed) return;
    // Before the fdatasync, while nothing is written (the shell syncs right after a commit).
    if (this.#syncFailed) this.#rewriteWal();
    try {
      // SQLite deletes the WAL only when the last connection closes, which is not this one
      // while it is open, so the file opened at start is the WAL for the whole run (a
      // TRUNCATE checkpoint empties the same file).
      await this.#syncData(this.#wal as Deno.FsFile);
    } catch (e) {
      this.#syncFailed = true;
      throw new StoreError(`Cannot sync lease database "${this.path}": ${messageOf(e)}`, {
        cause: e,
      });
    }
  }

  /**
   * After a failed sync: copies the WAL into the database file, which SQLite syncs, and
   * empties the WAL; throws (the sync fails again) while that cannot be done.
   */
  #rewriteWal(): void {
    if (this.#inBatch) {
      throw new StoreError(
        `Cannot make lease database "${this.path}" durable yet: an earlier sync failed, ` +
          "and a batch is open",
      );
    }
    this.#endRead();
    let row: Row | undefined;
    try {
      // No waiting for readers: this runs on the event loop.
      this.#db.exec("PRAGMA busy_timeout = 0");
      try {
        row = this.#db.prepare("PRAGMA wal_checkpoint(TRUNCATE)").get() as Row | undefined;
      } finally {
        this.#db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
      }
    } catch (e) {
      throw new StoreError(
        `Cannot checkpoint lease database "${this.path}" after a failed sync: ${messageOf(e)}`,
        { cause: e },
      );
    }
    // (busy, log frames, checkpointed frames): busy when a reader holds an older snapshot.
    if (row === undefined || Number(row.busy) !== 0) {
      throw new StoreError(
        `Cannot checkpoint lease database "${this.path}" after a failed sync: a reader holds ` +
          "the WAL; trying again at the next sync",
      );
    }
    this.#syncFailed = false;
  }

  #openWal(): void {
    try {
      this.#wal?.close();
    } catch {
      // Already closed.
    }
    const path = `${this.path}-wal`;
    this.#wal = Deno.openSync(path, { read: true });
  }

  /** Closes the connection; an uncommitted batch is discarded. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inBatch) this.#abandonBatch();
    this.#endRead();
    try {
      this.#wal?.close();
    } catch {
      // Already closed.
    }
    this.#wal = undefined;
    closeQuietly(this.#db);
  }

  get #s(): Record<keyof typeof SQL, StatementSync> {
    this.#checkOpen();
    return this.#stmts as Record<keyof typeof SQL, StatementSync>;
  }

  #checkOpen(): void {
    if (this.#closed || !this.#stmts) {
      throw new StoreError(`Cannot use lease database "${this.path}": it is closed`);
    }
  }

  /** A point read on the writable store: in the task's read transaction, or in the batch. */
  #pointRead<T>(fn: () => T): T {
    if (!this.#inBatch && !this.#inRead && this.#beginRead !== undefined && !this.#closed) {
      try {
        this.#beginRead.run();
        this.#inRead = true;
        queueMicrotask(this.#endReadTask);
      } catch {
        // The read runs in a transaction of its own instead.
      }
    }
    return this.#read(fn);
  }

  #endRead(): void {
    if (!this.#inRead) return;
    this.#inRead = false;
    try {
      if (this.#db.isOpen && this.#db.isTransaction) (this.#commit as StatementSync).run();
    } catch {
      // Nothing was written in it; a connection that cannot end it is closing or broken, and
      // the next write reports that.
    }
  }

  #read<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      throw new StoreError(`Cannot read lease database "${this.path}": ${messageOf(e)}`, {
        cause: e,
      });
    }
  }

  /**
   * Runs one write in the open batch (starting it with BEGIN IMMEDIATE). A write that fails
   * discards the whole batch: SQLite may already have rolled it back (disk full, I/O error)
   * or only this statement, and a batch with a hole in it MUST NOT be committed, because
   * another writer sharing it (the failover endpoint) may wait for the write that failed.
   */
  #write(address: number | null, fn: () => unknown): void {
    this.#checkOpen();
    if (this.readOnly) {
      throw new StoreError(`Cannot write lease database "${this.path}": it is open read-only`);
    }
    try {
      if (!this.#inBatch) {
        // BEGIN IMMEDIATE, not an upgrade of the read: a snapshot older than another
        // connection's commit could not be written to (SQLITE_BUSY_SNAPSHOT).
        this.#endRead();
        (this.#begin as StatementSync).run();
        this.#inBatch = true;
      }
      fn();
    } catch (e) {
      const lost = this.#inBatch;
      if (lost) this.#abandonBatch();
      // The failed write itself is lost even when it would have opened the batch.
      else this.#discardedBatches++;
      if (address !== null) this.#discardedAddresses.push(address);
      throw new StoreError(
        `Cannot write lease database "${this.path}": ${messageOf(e)}` +
          (lost ? " (the uncommitted batch was rolled back)" : ""),
        { cause: e },
      );
    }
    this.#pending++;
    if (address !== null) this.#batchAddresses.push(address);
  }

  /** Reads the rows of `addresses` into the client index again (after a rollback). */
  #reindex(addresses: readonly number[]): void {
    const index = this.#index;
    if (index === null || addresses.length === 0) return;
    if (this.#closed || !this.#db.isOpen) {
      this.#index = null;
      return;
    }
    try {
      const one = this.#s.indexOne;
      for (const address of new Set(addresses)) {
        const row = one.get(address) as IndexRow | undefined;
        if (row === undefined) index.remove(address);
        else indexRow(index, row);
      }
    } catch {
      // The next use scans the table again; until then the index is not trusted.
      this.#index = null;
    }
  }

  #abandonBatch(): void {
    try {
      if (this.#db.isOpen && this.#db.isTransaction) (this.#rollback as StatementSync).run();
    } catch {
      // SQLite has already rolled back (or the connection is gone): nothing is left to undo.
    }
    this.#tally?.rollback();
    if (this.#inBatch) {
      this.#discardedBatches++;
      for (const a of this.#batchAddresses) this.#discardedAddresses.push(a);
      this.#reindex(this.#batchAddresses);
    }
    this.#batchAddresses = [];
    this.#inBatch = false;
    this.#pending = 0;
  }

  /** Identifies the file, sets WAL and synchronous, and migrates it to SCHEMA_VERSION. */
  #initialise(synchronous: "FULL" | "NORMAL"): void {
    const db = this.#db;
    const { applicationId, version } = this.#identify();
    if (version > SCHEMA_VERSION) throw this.#tooNew(version);
    try {
      // WAL lets `duet leases` read while the server writes; FULL syncs the WAL per commit.
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(`PRAGMA synchronous = ${synchronous}`);
      db.exec("BEGIN IMMEDIATE");
    } catch (e) {
      throw this.#notWritable(e);
    }
    try {
      // Read again under the write lock: another process may have migrated meanwhile.
      const current = pragmaNumber(db, "user_version");
      if (current > SCHEMA_VERSION) throw this.#tooNew(current);
      for (let v = current; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v] as string);
      if (applicationId !== APPLICATION_ID) db.exec(`PRAGMA application_id = ${APPLICATION_ID}`);
      // Always written: this is also the probe that the file can be written at all.
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
      db.exec("COMMIT");
    } catch (e) {
      try {
        if (db.isTransaction) db.exec("ROLLBACK");
      } catch {
        // Already rolled back by SQLite.
      }
      if (e instanceof StoreError) throw e;
      throw this.#notWritable(e);
    }
    // Catches truncated or damaged files at start rather than in the middle of serving.
    const check = db.prepare("PRAGMA quick_check(1)").get() as Row | undefined;
    const verdict = check === undefined ? "no result" : String(Object.values(check)[0]);
    if (verdict !== "ok") {
      throw new StoreError(
        `Cannot open lease database "${this.path}": it is damaged (quick_check: ${verdict})`,
      );
    }
  }

  #checkReadable(): void {
    const { version } = this.#identify();
    if (version > SCHEMA_VERSION) throw this.#tooNew(version);
    if (version === 0) {
      throw new StoreError(
        `Cannot open lease database "${this.path}": it is empty (the server creates it on start)`,
      );
    }
    if (version < SCHEMA_VERSION) {
      throw new StoreError(
        `Cannot open lease database "${this.path}": schema version ${version} is older than ` +
          `this duet uses (${SCHEMA_VERSION}); start the server once to migrate it`,
      );
    }
  }

  /** Reads application_id and user_version; rejects files that are not duet lease databases. */
  #identify(): { applicationId: number; version: number } {
    const db = this.#db;
    const applicationId = pragmaNumber(db, "application_id");
    const version = pragmaNumber(db, "user_version");
    if (applicationId === APPLICATION_ID) return { applicationId, version };
    const objects = db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as Row;
    const fresh = applicationId === 0 && version === 0 && objects.n === 0;
    if (!fresh) {
      throw new StoreError(
        `Cannot open lease database "${this.path}": not a duet lease database ` +
          `(application_id 0x${(applicationId >>> 0).toString(16).padStart(8, "0")})`,
      );
    }
    return { applicationId, version };
  }

  #tooNew(version: number): StoreError {
    return new StoreError(
      `Cannot open lease database "${this.path}": schema version ${version} is newer than ` +
        `this duet supports (${SCHEMA_VERSION})`,
    );
  }

  #notWritable(e: unknown): StoreError {
    return notWritable(this.path, e);
  }

  #prepare(): void {
    const db = this.#db;
    const stmts = {} as Record<keyof typeof SQL, StatementSync>;
    for (const [name, sql] of Object.entries(SQL) as [keyof typeof SQL, string][]) {
      stmts[name] = db.prepare(sql);
    }
    for (const name of ["get", "findByHw", "findByClientId", "indexAll", "indexOne"] as const) {
      arrays(stmts[name]);
    }
    this.#stmts = stmts;
    if (!this.readOnly) {
      this.#begin = db.prepare("BEGIN IMMEDIATE");
      this.#beginRead = db.prepare("BEGIN DEFERRED");
      this.#commit = db.prepare("COMMIT");
      this.#rollback = db.prepare("ROLLBACK");
      this.#probe = db.prepare(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    }
  }
}

const WRITE_HINT = " (its directory must exist, and the file and directory must be writable)";

function notWritable(path: string, e: unknown): StoreError {
  return new StoreError(
    `Cannot open lease database "${path}" for writing: ${messageOf(e)}${WRITE_HINT}`,
    { cause: e },
  );
}

/** Wraps whatever open() hit in a StoreError that says what to fix. */
function openError(path: string, readOnly: boolean, e: unknown): StoreError {
  if (e instanceof StoreError) return e;
  const message = messageOf(e);
  if (!readOnly && /unable to open database file|readonly database/.test(message)) {
    return notWritable(path, e);
  }
  return new StoreError(`Cannot open lease database "${path}": ${message}`, { cause: e });
}

function pragmaNumber(db: DatabaseSync, name: string): number {
  const row = db.prepare(`PRAGMA ${name}`).get() as Row | undefined;
  return Number(row?.[name] ?? 0);
}

function openConnection(path: string | URL, readOnly: boolean): DatabaseSync {
  const db = new DatabaseSync(path, { readOnly });
  try {
    // Waits out a writer's checkpoint instead of failing with SQLITE_BUSY.
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Schema objects never run SQL from the file itself (hostile database files).
    db.exec("PRAGMA trusted_schema = OFF");
  } catch (e) {
    closeQuietly(db);
    throw e;
  }
  return db;
}

/**
 * Opens read-only. In WAL mode a reader needs the -shm file; when the directory is
 * read-only and no server has the file open (no -wal file), reading it as immutable is safe.
 */
function openReadOnly(path: string): DatabaseSync {
  const fail = (e: unknown) =>
    new StoreError(`Cannot open lease database "${path}": ${messageOf(e)}`, { cause: e });
  if (path !== ":memory:" && !existsSync(path)) {
    throw new StoreError(`Cannot open lease database "${path}": no such file`);
  }
  try {
    return openAndRead(path);
  } catch (e) {
    if (path === ":memory:" || existsSync(`${path}-wal`)) throw fail(e);
    try {
      const url = pathToFileURL(path);
      url.search = "?immutable=1";
      return openAndRead(url);
    } catch {
      throw fail(e);
    }
  }
}

/** Opens read-only and reads the header, so that an unreadable file fails here. */
function openAndRead(path: string | URL): DatabaseSync {
  const db = openConnection(path, true);
  try {
    pragmaNumber(db, "user_version");
  } catch (e) {
    closeQuietly(db);
    throw e;
  }
  return db;
}

function closeQuietly(db: DatabaseSync): void {
  try {
    if (db.isOpen) db.close();
  } catch {
    // Closing is best effort after a failure.
  }
}
