import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { StoreError } from "../../lib/errors.ts";
import { APPLICATION_ID, SCHEMA_VERSION, SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { clientIdKey, hwKey } from "../../lib/store/client_index.ts";
import type {
  Lease,
  LeaseFilter,
  LeaseState,
  LeaseStore,
  MetaStore,
} from "../../lib/store/store.ts";
import { leaseStateOf, zeroCounts } from "../../lib/store/store.ts";
import { ip, lease, leaseStoreContract, mac, metaStoreContract } from "./contract.ts";

/**
 * A SqliteLeaseStore on a file in its own temp directory, removed again by close(); in
 * DEFERRED mode, the one the server uses.
 */
class TempFileStore implements LeaseStore, MetaStore {
  #dir = Deno.makeTempDirSync({ prefix: "duet-store-" });
  #store = SqliteLeaseStore.open(`${this.#dir}/leases.db`, { synchronous: "DEFERRED" });
  get pending(): number {
    return this.#store.pending;
  }
  get(address: number): Lease | undefined {
    return this.#store.get(address);
  }
  findByHw(htype: number, hwAddress: Uint8Array): Lease[] {
    return this.#store.findByHw(htype, hwAddress);
  }
  findByClientId(clientId: Uint8Array): Lease[] {
    return this.#store.findByClientId(clientId);
  }
  iterate(filter?: LeaseFilter): IterableIterator<Lease> {
    return this.#store.iterate(filter);
  }
  countByState(): Record<LeaseState, number> {
    return this.#store.countByState();
  }
  put(l: Lease): void {
    this.#store.put(l);
  }
  recordAck(sent: Lease, tsfp: number): boolean {
    return this.#store.recordAck(sent, tsfp);
  }
  delete(address: number): void {
    this.#store.delete(address);
  }
  commit(): number {
    return this.#store.commit();
  }
  rollback(): void {
    this.#store.rollback();
  }
  sync(): Promise<void> {
    return this.#store.sync();
  }
  takeDiscarded(): { batches: number; addresses: number[] } {
    return this.#store.takeDiscarded();
  }
  probe(): void {
    this.#store.probe();
  }
  shiftTimes(delta: number): number {
    return this.#store.shiftTimes(delta);
  }
  getMeta(key: string): string | undefined {
    return this.#store.getMeta(key);
  }
  setMeta(key: string, value: string): void {
    this.#store.setMeta(key, value);
  }
  close(): void {
    this.#store.close();
    if (this.#dir === "") return;
    Deno.removeSync(this.#dir, { recursive: true });
    this.#dir = "";
  }
}

leaseStoreContract("SqliteLeaseStore(:memory:)", () => SqliteLeaseStore.open(":memory:"));
leaseStoreContract("SqliteLeaseStore(file)", () => new TempFileStore());
metaStoreContract("SqliteLeaseStore(:memory:)", () => SqliteLeaseStore.open(":memory:"));
metaStoreContract("SqliteLeaseStore(file)", () => new TempFileStore());

/** Runs fn with a fresh temp directory that is removed afterwards. */
function inTempDir(fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync({ prefix: "duet-store-" });
  try {
    fn(dir);
  } finally {
    // Undo chattr +i if a test left it (only ever set inside dir).
    if (Deno.uid() === 0) {
      new Deno.Command("chattr", { args: ["-R", "-i", dir], stderr: "null" }).outputSync();
    }
    Deno.chmodSync(dir, 0o755);
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Runs SQL on a raw connection (fixtures written the way an old or foreign program would). */
function rawSql(path: string, sql: string): void {
  const db = new DatabaseSync(path);
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

function rawRows(path: string, sql: string): unknown[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return db.prepare(sql).all();
  } finally {
    db.close();
  }
}

function rawPragma(path: string, name: string): unknown {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown>)[name];
  } finally {
    db.close();
  }
}

function assertStoreError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof StoreError, `expected StoreError, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

/** Opens, runs fn, closes. */
function using<T>(store: SqliteLeaseStore, fn: (s: SqliteLeaseStore) => T): T {
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

/**
 * Makes a file or directory unwritable even for root (chattr +i), or for others by chmod.
 * Returns a reason string when this machine cannot do it.
 */
function makeUnwritable(path: string): string | undefined {
  if (Deno.uid() !== 0) {
    Deno.chmodSync(path, Deno.statSync(path).isDirectory ? 0o555 : 0o444);
    return undefined;
  }
  try {
    const out = new Deno.Command("chattr", { args: ["+i", path], stderr: "piped" }).outputSync();
    if (out.success) return undefined;
    return `chattr +i failed: ${new TextDecoder().decode(out.stderr).trim()}`;
  } catch (e) {
    return `chattr is not available: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/** Prints why a test cannot run here; under CI=true a missing prerequisite fails instead. */
function skipBecause(reason: string): void {
  if (Deno.env.get("CI") === "true") assert.fail(`prerequisite missing under CI: ${reason}`);
  Deno.stderr.writeSync(new TextEncoder().encode(`  skipped: ${reason}\n`));
}

Deno.test("SqliteLeaseStore.open() creates a WAL database with the duet application_id", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    using(SqliteLeaseStore.open(path), () => {});
    assert.equal(rawPragma(path, "journal_mode"), "wal");
    assert.equal(rawPragma(path, "application_id"), APPLICATION_ID);
    assert.equal(rawPragma(path, "user_version"), SCHEMA_VERSION);
  });
});

Deno.test("SqliteLeaseStore keeps committed rows across close and reopen, drops the rest", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    using(SqliteLeaseStore.open(path), (s) => {
      s.put(lease("192.0.2.10"));
      s.setMeta("failover.state", "normal");
      s.commit();
      s.put(lease("192.0.2.11", { hwAddress: mac(2) }));
      s.setMeta("failover.state", "recover");
    });
    using(SqliteLeaseStore.open(path), (s) => {
      assert.deepEqual(s.get(ip("192.0.2.10")), lease("192.0.2.10"));
      assert.equal(s.get(ip("192.0.2.11")), undefined);
      assert.equal(s.getMeta("failover.state"), "normal");
      // The lookups by client are rebuilt from the file.
      assert.deepEqual(s.findByHw(1, mac(1)), [lease("192.0.2.10")]);
      assert.deepEqual(s.findByClientId(lease("192.0.2.10").clientId as Uint8Array), [
        lease("192.0.2.10"),
      ]);
      assert.deepEqual(s.findByHw(1, mac(2)), []);
    });
  });
});

Deno.test("SqliteLeaseStore: a second connection sees only committed rows", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    using(SqliteLeaseStore.open(path), (writer) => {
      writer.put(lease("192.0.2.10"));
      writer.commit();
      writer.put(lease("192.0.2.11", { hwAddress: mac(2) }));
      writer.put(lease("192.0.2.10", { state: "released" }));
      using(SqliteLeaseStore.open(path, { readOnly: true }), (reader) => {
        assert.equal(reader.get(ip("192.0.2.10"))?.state, "active");
        assert.equal(reader.get(ip("192.0.2.11")), undefined);
        assert.equal(reader.countByState().released, 0);
        writer.commit();
        assert.equal(reader.get(ip("192.0.2.10"))?.state, "released");
        assert.equal(reader.get(ip("192.0.2.11"))?.hwAddress[5], 2);
        assert.deepEqual([...reader.iterate()].length, 2);
      });
    });
  });
});

Deno.test("SqliteLeaseStore: a read-only store refuses writes with StoreError", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    using(SqliteLeaseStore.open(path), () => {});
    using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
      assertStoreError(() => s.put(lease("192.0.2.10")), /open read-only/);
      assertStoreError(() => s.setMeta("k", "v"), /open read-only/);
      assert.equal(s.pending, 0);
      assert.equal(s.commit(), 0);
    });
  });
});

Deno.test("SqliteLeaseStore: rollback() leaves nothing on disk", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    using(SqliteLeaseStore.open(path), (s) => {
      s.put(lease("192.0.2.10"));
      s.setMeta("k", "v");
      s.rollback();
      assert.equal(s.commit(), 0);
    });
    using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
      assert.deepEqual([...s.iterate()], []);
      assert.equal(s.getMeta("k"), undefined);
    });
  });
});

Deno.test("SqliteLeaseStore.open() rejects a schema version newer than it supports", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    using(SqliteLeaseStore.open(path), () => {});
    rawSql(path, `PRAGMA user_version = ${SCHEMA_VERSION + 7}`);
    const expected = new RegExp(
      `Cannot open lease database ".*leases\\.db": schema version ${
        SCHEMA_VERSION + 7
      } is newer than this duet supports \\(${SCHEMA_VERSION}\\)`,
    );
    assertStoreError(() => SqliteLeaseStore.open(path), expected);
    assertStoreError(() => SqliteLeaseStore.open(path, { readOnly: true }), expected);
    assert.equal(rawPragma(path, "user_version"), SCHEMA_VERSION + 7, "file left untouched");
  });
});

/** Schema version 1, written with raw SQL as duet wrote it (leases only, no meta table). */
const SCHEMA_V1 = `
  CREATE TABLE leases (
    address INTEGER PRIMARY KEY CHECK (address BETWEEN 0 AND 4294967295),
    state INTEGER NOT NULL CHECK (state BETWEEN 1 AND 7),
    htype INTEGER NOT NULL, hw_address BLOB NOT NULL, client_id BLOB, hostname TEXT,
    starts INTEGER NOT NULL, ends INTEGER NOT NULL, cltt INTEGER NOT NULL,
    tstp INTEGER NOT NULL, tsfp INTEGER NOT NULL, atsfp INTEGER NOT NULL, relay_info BLOB);
  CREATE INDEX leases_hw ON leases (htype, hw_address);
  CREATE INDEX leases_client_id ON leases (client_id);
  INSERT INTO leases VALUES (3221225994, 2, 1, x'020000000001', x'01020000000001', 'host-1',
    1795930000, 1795933600, 1795930000, 1795935000, 1795934000, 1795930001, NULL);
  PRAGMA application_id = ${APPLICATION_ID};
  PRAGMA user_version = 1;`;

Deno.test("SqliteLeaseStore.open() migrates a version 1 database and keeps its rows", () => {
  assert.ok(SCHEMA_VERSION > 1, "this test needs a migration after version 1");
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    rawSql(path, SCHEMA_V1);
    assertStoreError(
      () => SqliteLeaseStore.open(path, { readOnly: true }),
      /schema version 1 is older than this duet uses/,
    );
    using(SqliteLeaseStore.open(path), (s) => {
      assert.deepEqual(s.get(ip("192.0.2.10")), lease("192.0.2.10", { relayInfo: null }));
      assert.deepEqual(s.findByHw(1, mac(1)).map((l) => l.address), [ip("192.0.2.10")]);
      assert.equal(s.getMeta("failover.state"), undefined);
      s.setMeta("failover.state", "normal");
      s.commit();
    });
    assert.equal(rawPragma(path, "user_version"), SCHEMA_VERSION);
    // Version 3 dropped the SQLite indexes on the client columns (they live in memory).
    assert.deepEqual(rawRows(path, "SELECT name FROM sqlite_schema WHERE type = 'index'"), []);
    using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
      assert.equal(s.getMeta("failover.state"), "normal");
      assert.equal([...s.iterate()].length, 1);
      assert.deepEqual(s.findByHw(1, mac(1)).map((l) => l.address), [ip("192.0.2.10")]);
    });
  });
});

Deno.test("SqliteLeaseStore.open() initialises an empty file (version 0)", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    Deno.writeFileSync(path, new Uint8Array(0));
    assertStoreError(() => SqliteLeaseStore.open(path, { readOnly: true }), /it is empty/);
    using(SqliteLeaseStore.open(path), (s) => assert.deepEqual([...s.iterate()], []));
    assert.equal(rawPragma(path, "user_version"), SCHEMA_VERSION);
  });
});

Deno.test("SqliteLeaseStore.open() rejects SQLite files that are not duet lease databases", async (t) => {
  await t.step("a database with other tables", () => {
    inTempDir((dir) => {
      const path = `${dir}/other.db`;
      rawSql(path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)");
      for (const readOnly of [false, true]) {
        assertStoreError(
          () => SqliteLeaseStore.open(path, { readOnly }),
          /not a duet lease database \(application_id 0x00000000\)/,
        );
      }
      assert.equal(rawPragma(path, "application_id"), 0, "file left untouched");
    });
  });
  await t.step("an empty database of another application", () => {
    inTempDir((dir) => {
      const path = `${dir}/other.db`;
      rawSql(path, "PRAGMA application_id = 1234");
      assertStoreError(() => SqliteLeaseStore.open(path), /application_id 0x000004d2/);
    });
  });
});

Deno.test("SqliteLeaseStore.open() turns corrupt files into StoreError", async (t) => {
  await t.step("random bytes", () => {
    inTempDir((dir) => {
      const path = `${dir}/leases.db`;
      const bytes = new Uint8Array(8192);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) & 255;
      Deno.writeFileSync(path, bytes);
      for (const readOnly of [false, true]) {
        assertStoreError(
          () => SqliteLeaseStore.open(path, { readOnly }),
          /Cannot open lease database ".*": file is not a database/,
        );
      }
    });
  });
  await t.step("a truncated database", () => {
    inTempDir((dir) => {
      const path = `${dir}/leases.db`;
      using(SqliteLeaseStore.open(path), (s) => {
        for (let i = 0; i < 3000; i++) {
          s.put(lease("192.0.2.1", { address: ip("198.51.100.0") + i, hostname: `h${i}` }));
        }
        s.commit();
      });
      const size = Deno.statSync(path).size;
      assert.ok(size > 64 * 1024, `fixture is big enough (${size} bytes)`);
      Deno.truncateSync(path, Math.floor(size / 2));
      assertStoreError(() => SqliteLeaseStore.open(path), /lease database/);
      // A reader only finds the damage when it reaches it, and must still say StoreError.
      assertStoreError(() => {
        using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
          let n = 0;
          for (const _ of s.iterate()) n++;
          return n;
        });
      }, /lease database/);
    });
  });
  await t.step("a missing file when reading, a missing directory when writing", () => {
    inTempDir((dir) => {
      assertStoreError(
        () => SqliteLeaseStore.open(`${dir}/none.db`, { readOnly: true }),
        /no such file/,
      );
      assertStoreError(() => SqliteLeaseStore.open(`${dir}/no/such/dir.db`), /lease database/);
    });
  });
});

Deno.test("SqliteLeaseStore on a read-only file: StoreError for the server, dumps still work", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    using(SqliteLeaseStore.open(path), (s) => {
      s.put(lease("192.0.2.10"));
      s.commit();
    });
    const reason = makeUnwritable(path);
    if (reason) return skipBecause(reason);
    assertStoreError(
      () => SqliteLeaseStore.open(path),
      /Cannot open lease database ".*" for writing: attempt to write a readonly database/,
    );
    using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
      assert.equal(s.get(ip("192.0.2.10"))?.state, "active");
    });
  });
});

Deno.test("SqliteLeaseStore in a read-only directory: StoreError for the server, dumps still work", () => {
  inTempDir((dir) => {
    const sub = `${dir}/ro`;
    Deno.mkdirSync(sub);
    const path = `${sub}/leases.db`;
    using(SqliteLeaseStore.open(path), (s) => {
      s.put(lease("192.0.2.10"));
      s.commit();
    });
    // With no -wal file left, the reader cannot create -shm here and must read the file as is.
    assert.throws(() => Deno.statSync(`${path}-wal`), Deno.errors.NotFound);
    const reason = makeUnwritable(sub);
    if (reason) return skipBecause(reason);
    assertStoreError(() => SqliteLeaseStore.open(path), /for writing/);
    using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
      assert.equal(s.get(ip("192.0.2.10"))?.state, "active");
    });
  });
});

Deno.test("SqliteLeaseStore.commit() failure throws StoreError and rolls the batch back", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    const ran = using(SqliteLeaseStore.open(path), (s) => {
      s.put(lease("192.0.2.10"));
      s.commit();
      assert.equal(s.countByState().active, 1, "counts are kept from here on");
      if (Deno.uid() !== 0) {
        skipBecause("making the open WAL file unwritable needs root (chattr +i)");
        return false;
      }
      // The WAL file exists while the store is open; an immutable WAL makes COMMIT's write fail.
      const reason = makeUnwritable(`${path}-wal`);
      if (reason) {
        skipBecause(reason);
        return false;
      }
      s.put(lease("192.0.2.11", { hwAddress: mac(2) }));
      s.put(lease("192.0.2.10", { state: "released" }));
      assert.throws(() => s.commit(), (e: unknown) => {
        assert.ok(e instanceof StoreError);
        assert.match(e.message, /Cannot commit 2 lease writes to ".*"/);
        assert.ok(e.cause instanceof Error, "the SQLite error is the cause");
        return true;
      });
      assert.equal(s.pending, 0);
      assert.equal(s.get(ip("192.0.2.11")), undefined);
      assert.equal(s.get(ip("192.0.2.10"))?.state, "active");
      // So do the lookups by client.
      assert.deepEqual(s.findByHw(1, mac(2)), []);
      assert.deepEqual(s.findByHw(1, mac(1)).map((l) => l.state), ["active"]);
      // The kept counts lose the rolled-back batch with it.
      assert.deepEqual(s.countByState(), countedByHand(s));
      const lost = s.takeDiscarded();
      assert.equal(lost.batches, 1, "the failed commit is reported as a lost batch");
      assert.deepEqual([...lost.addresses].sort(), [ip("192.0.2.10"), ip("192.0.2.11")].sort());
      // A probe writes the WAL too, so it fails while the disk does and succeeds after.
      s.probe();
      assert.throws(() => s.commit(), StoreError);
      assert.equal(s.takeDiscarded().batches, 1);
      new Deno.Command("chattr", { args: ["-i", `${path}-wal`] }).outputSync();
      s.probe();
      assert.equal(s.commit(), 1, "the probe commits once the WAL can be written");
      s.put(lease("192.0.2.12", { hwAddress: mac(3) }));
      assert.equal(s.commit(), 1, "the store works again once the disk does");
      return true;
    });
    if (!ran) return;
    using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
      assert.deepEqual([...s.iterate()].map((l) => [l.address, l.state]), [
        [ip("192.0.2.10"), "active"],
        [ip("192.0.2.12"), "active"],
      ]);
    });
  });
});

Deno.test("SqliteLeaseStore.iterate() streams 100k rows in address order", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    const rows = 100_000;
    const base = ip("198.51.100.0"); // the addresses run past the range; only their order matters
    using(SqliteLeaseStore.open(path, { synchronous: "NORMAL" }), (s) => {
      const l = lease("198.51.100.0");
      for (let i = rows - 1; i >= 0; i--) {
        l.address = base + i;
        l.ends = 1_795_933_600 + (i % 1000);
        s.put(l);
      }
      assert.equal(s.commit(), rows);
    });
    using(SqliteLeaseStore.open(path, { readOnly: true }), (s) => {
      let n = 0;
      let last = -1;
      for (const l of s.iterate({ state: "active" })) {
        assert.ok(l.address > last, "address order");
        last = l.address;
        n++;
      }
      assert.equal(n, rows);
      assert.equal(s.countByState().active, rows);
    });
  });
});

Deno.test("SqliteLeaseStore DEFERRED: COMMIT is visible to readers at once, sync() makes it durable", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-store-" });
  const path = `${dir}/leases.db`;
  try {
    const store = SqliteLeaseStore.open(path, { synchronous: "DEFERRED" });
    const reader = SqliteLeaseStore.open(path, { readOnly: true });
    store.put(lease("192.0.2.10", { state: "active" }));
    assert.equal(reader.get(ip("192.0.2.10")), undefined, "not before COMMIT");
    store.commit();
    assert.equal(reader.get(ip("192.0.2.10"))?.state, "active", "committed rows are readable");
    await store.sync();
    // Syncing with nothing new, and after the WAL was checkpointed and restarted, still works.
    await store.sync();
    store.put(lease("192.0.2.11", { state: "active" }));
    store.commit();
    await store.sync();
    reader.close();
    store.close();
    const again = SqliteLeaseStore.open(path);
    assert.equal(again.get(ip("192.0.2.11"))?.state, "active");
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore DEFERRED: after a failed sync, the next one first checkpoints the WAL into the database and empties it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-store-" });
  const path = `${dir}/leases.db`;
  let failSync = false;
  const walSize = () => Deno.statSync(`${path}-wal`).size;
  try {
    const store = SqliteLeaseStore.open(path, {
      synchronous: "DEFERRED",
      syncData: (file) => failSync ? Promise.reject(new Error("EIO")) : file.syncData(),
    });
    store.put(lease("192.0.2.10", { state: "active" }));
    store.commit();
    await store.sync();
    store.put(lease("192.0.2.11", { state: "active" }));
    store.commit();
    failSync = true;
    await assert.rejects(store.sync(), StoreError);
    failSync = false;
    assert.ok(walSize() > 0, "the commits are in the WAL");
    // A reader holding an old snapshot keeps the checkpoint from finishing: the sync fails
    // again instead of claiming durability, and succeeds once the reader is done.
    const reader = new DatabaseSync(path, { readOnly: true });
    reader.exec("BEGIN");
    reader.prepare("SELECT count(*) FROM leases").get();
    store.put(lease("192.0.2.12", { state: "active" }));
    store.commit();
    await assert.rejects(store.sync(), /a reader holds the WAL/);
    reader.exec("COMMIT");
    reader.close();
    await store.sync();
    assert.equal(walSize(), 0, "the WAL was checkpointed and truncated");
    // Later commits start a fresh WAL, and syncs are plain fdatasyncs again.
    store.put(lease("192.0.2.13", { state: "active" }));
    store.commit();
    await store.sync();
    assert.ok(walSize() > 0);
    store.close();
    const again = SqliteLeaseStore.open(path);
    for (const a of ["192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"]) {
      assert.equal(again.get(ip(a))?.state, "active", a);
    }
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SqliteLeaseStore.sync() resolves at once in FULL mode and in :memory:", async () => {
  const mem = SqliteLeaseStore.open(":memory:");
  mem.put(lease("192.0.2.10", { state: "active" }));
  mem.commit();
  await mem.sync();
  mem.close();
});

Deno.test("SqliteLeaseStore.countInRange() counts states on an inclusive address range", () => {
  const s = SqliteLeaseStore.open(":memory:");
  try {
    s.put(lease("192.0.2.9"));
    s.put(lease("192.0.2.10"));
    s.put(lease("192.0.2.15", { state: "released" }));
    s.put(lease("192.0.2.20", { state: "abandoned" }));
    s.put(lease("192.0.2.21"));
    s.commit();
    const c = s.countInRange(ip("192.0.2.10"), ip("192.0.2.20"));
    assert.deepEqual(c, {
      free: 0,
      active: 1,
      expired: 0,
      released: 1,
      abandoned: 1,
      reset: 0,
      backup: 0,
    });
    assert.equal(s.countInRange(ip("192.0.2.9"), ip("192.0.2.9")).active, 1);
    assert.equal(s.countInRange(ip("192.0.2.22"), ip("192.0.2.255")).active, 0);
    // Uncommitted puts are visible to the store's own reads, as get() sees them.
    s.put(lease("192.0.2.11"));
    assert.equal(s.countInRange(ip("192.0.2.10"), ip("192.0.2.20")).active, 2);
  } finally {
    s.close();
  }
});

/** A seeded generator of whole numbers below n (from the LCG's high bits). */
function seededRandom(seed: number): (n: number) => number {
  return (n) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return Math.floor((seed / 2 ** 31) * n);
  };
}

/** Counts per state by reading every row: what countByState()/countInRange() must match. */
function countedByHand(s: SqliteLeaseStore, first = 0, last = 2 ** 32 - 1) {
  const counts = zeroCounts();
  for (const l of s.iterate()) if (l.address >= first && l.address <= last) counts[l.state]++;
  return counts;
}

Deno.test("SqliteLeaseStore: counts kept as leases are written match a count of the rows", () => {
  const s = SqliteLeaseStore.open(":memory:");
  try {
    // A seeded schedule of puts, deletes, commits and rollbacks on 198.18.0.0/22 (four
    // blocks of the tally); ranges with partial blocks at either end and whole ones between.
    const rand = seededRandom(7);
    const base = ip("198.18.0.0");
    const states = ["free", "active", "expired", "released", "abandoned", "reset", "backup"];
    for (let i = 0; i < 300; i++) s.put(lease("198.18.0.0", { address: base + i, state: "free" }));
    s.commit();
    assert.equal(s.countByState().free, 300, "the first count scans the table");
    for (let step = 0; step < 3000; step++) {
      const address = base + rand(1024);
      const op = rand(20);
      if (op < 14) {
        const state = states[rand(states.length)] as LeaseState;
        s.put(lease("198.18.0.0", { address, state, hwAddress: mac(rand(200)) }));
      } else if (op < 16) s.delete(address);
      else if (op < 19) s.commit();
      else s.rollback();
      if (step % 50 === 0) {
        assert.deepEqual(s.countByState(), countedByHand(s), `step ${step}`);
        const first = base + rand(1024);
        const last = Math.min(base + 1023, first + rand(800));
        assert.deepEqual(s.countInRange(first, last), countedByHand(s, first, last));
      }
    }
    s.commit();
    assert.deepEqual(s.countByState(), countedByHand(s));
    assert.deepEqual(s.countInRange(base, base + 1023), countedByHand(s, base, base + 1023));
    assert.deepEqual(
      s.countInRange(base + 1, base + 1022),
      countedByHand(s, base + 1, base + 1022),
    );
  } finally {
    s.close();
  }
});

Deno.test("SqliteLeaseStore: a batch open at the first count is counted by a scan, then kept", () => {
  const s = SqliteLeaseStore.open(":memory:");
  try {
    s.put(lease("198.18.0.1"));
    // While a batch is open the counts come from SQL, so a rollback cannot leave them wrong.
    assert.equal(s.countByState().active, 1);
    s.rollback();
    assert.equal(s.countByState().active, 0);
    s.put(lease("198.18.0.2"));
    s.put(lease("198.18.1.2", { state: "backup" }));
    assert.deepEqual(s.countByState(), countedByHand(s));
    s.commit();
    assert.deepEqual(s.countByState(), countedByHand(s));
  } finally {
    s.close();
  }
});

Deno.test("SqliteLeaseStore: its own reads agree with another connection's after commits and rollbacks", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    const s = SqliteLeaseStore.open(path, { synchronous: "DEFERRED" });
    const reader = SqliteLeaseStore.open(path, { readOnly: true });
    try {
      // Puts of the same client and of another, deletes, commits and rollbacks on 6,000 addresses.
      const rand = seededRandom(11);
      const base = ip("198.18.0.0");
      const span = 6000;
      const states = ["free", "active", "released", "backup"] as LeaseState[];
      for (let step = 0; step < 20_000; step++) {
        const address = base + rand(span);
        const op = rand(20);
        if (op < 12) {
          const state = states[rand(states.length)] as LeaseState;
          // The same client most of the time (only times and state change), or another one.
          const hwAddress = mac(rand(4) === 0 ? 2 : 1);
          s.put(lease("198.18.0.0", { address, state, hwAddress, ends: 1_795_933_600 + step }));
        } else if (op < 14) s.delete(address);
        else if (op < 16) s.get(address);
        else if (op < 19) {
          s.commit();
          for (let k = 0; k < 20; k++) {
            const a = base + rand(span);
            assert.deepEqual(s.get(a), reader.get(a), `step ${step}: ${a - base}`);
          }
        } else {
          s.rollback();
          for (let k = 0; k < 20; k++) {
            const a = base + rand(span);
            assert.deepEqual(s.get(a), reader.get(a), `step ${step} after rollback: ${a - base}`);
          }
        }
      }
    } finally {
      reader.close();
      s.close();
    }
  });
});

Deno.test("SqliteLeaseStore: rewrites of a row keep its client columns and indexes right", () => {
  inTempDir((dir) => {
    const s = SqliteLeaseStore.open(`${dir}/leases.db`);
    try {
      // Few addresses and few clients, so that most puts keep the client and some change it:
      // the hw address, the client id (also to and from none) or only the htype.
      const rand = seededRandom(5);
      const base = ip("198.18.1.0");
      const model = new Map<number, Lease>();
      const clientIds = [null, new Uint8Array([1, 2, 0, 0, 0, 0, 1]), new Uint8Array([0, 7])];
      const states = ["free", "active", "expired", "backup"] as LeaseState[];
      for (let step = 0; step < 3000; step++) {
        const address = base + rand(8);
        const l = lease("198.18.1.0", {
          address,
          state: states[rand(states.length)] as LeaseState,
          htype: rand(5) === 0 ? 6 : 1,
          hwAddress: mac(rand(3)),
          clientId: clientIds[rand(clientIds.length)] as Uint8Array | null,
          hostname: rand(2) === 0 ? null : `h${step}`,
          ends: 1_795_933_600 + step,
          tsfp: step,
        });
        s.put(l);
        model.set(address, l);
        if (rand(4) !== 0) continue;
        s.commit();
        for (let i = 0; i < 8; i++) assert.deepEqual(s.get(base + i), model.get(base + i));
        for (const htype of [1, 6]) {
          for (let n = 0; n < 3; n++) {
            const want = [...model.values()].filter((m) =>
              m.htype === htype && m.hwAddress[5] === n
            )
              .map((m) => m.address).sort();
            assert.deepEqual(s.findByHw(htype, mac(n)).map((m) => m.address).sort(), want);
          }
        }
        for (const id of clientIds.slice(1) as Uint8Array[]) {
          const want = [...model.values()].filter((m) => m.clientId?.length === id.length)
            .map((m) => m.address).sort();
          assert.deepEqual(s.findByClientId(id).map((m) => m.address).sort(), want);
        }
      }
    } finally {
      s.close();
    }
  });
});

Deno.test("SqliteLeaseStore: reads share a transaction only within one task, and writes still go through", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/leases.db`;
  const s = SqliteLeaseStore.open(path, { synchronous: "DEFERRED" });
  try {
    const other = () =>
      rawSql(
        path,
        "INSERT INTO leases VALUES (3323068426, 2, 1, x'020000000009', NULL, NULL, 1, 2, 3, 4, 5, 6, NULL)",
      );
    // 3323068426 is 198.18.0.10. The first read takes this task's snapshot: another
    // connection's commit is not seen until the task ends.
    assert.equal(s.get(ip("198.18.0.10")), undefined);
    other();
    assert.equal(s.get(ip("198.18.0.10")), undefined);
    // A write in the same task starts a batch of its own on the newest state (no stale
    // snapshot to upgrade), and sees the other row.
    s.put(lease("198.18.0.11"));
    assert.equal(s.get(ip("198.18.0.10"))?.hwAddress[5], 9);
    s.commit();
    await Promise.resolve();
    rawSql(path, "UPDATE leases SET state = 3 WHERE address = 3323068426");
    // A new task, a new snapshot.
    assert.equal(s.get(ip("198.18.0.10"))?.state, leaseStateOf(3));
    await new Promise((r) => setTimeout(r, 0));
    // No read transaction is left open between tasks: another writer is not kept waiting.
    const raw = new DatabaseSync(path);
    try {
      raw.exec("PRAGMA busy_timeout = 0");
      raw.exec("BEGIN IMMEDIATE; DELETE FROM leases WHERE address = 3323068426; COMMIT");
      raw.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      const r = raw.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as Record<string, number>;
      assert.equal(r.busy, 0);
    } finally {
      raw.close();
    }
    assert.equal(s.get(ip("198.18.0.10")), undefined);
  } finally {
    s.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Two different byte strings of `length` whose keys (by `keyOf`) are equal. */
function collidingPair(
  length: number,
  keyOf: (bytes: Uint8Array) => number,
): [Uint8Array, Uint8Array] {
  // 30-bit keys: a pair turns up after about 2^15 tries; the bound only guards the loop.
  const seen = new Map<number, Uint8Array>();
  for (let i = 0; i < 2_000_000; i++) {
    const bytes = crypto.getRandomValues(new Uint8Array(length));
    const key = keyOf(bytes);
    const other = seen.get(key);
    if (other !== undefined && other.some((b, j) => b !== bytes[j])) return [other, bytes];
    seen.set(key, bytes);
  }
  throw new Error("no colliding pair found");
}

Deno.test("SqliteLeaseStore: clients whose lookup keys collide each find only their own lease", () => {
  const [hwA, hwB] = collidingPair(6, (b) => hwKey(1, b));
  assert.equal(hwKey(1, hwA), hwKey(1, hwB), "the fixture collides");
  const [idA, idB] = collidingPair(7, (b) => clientIdKey(b));
  using(SqliteLeaseStore.open(":memory:"), (s) => {
    s.put(lease("192.0.2.10", { hwAddress: hwA, clientId: idA }));
    s.put(lease("192.0.2.11", { hwAddress: hwB, clientId: idB }));
    s.commit();
    assert.deepEqual(s.findByHw(1, hwA).map((l) => l.address), [ip("192.0.2.10")]);
    assert.deepEqual(s.findByHw(1, hwB).map((l) => l.address), [ip("192.0.2.11")]);
    assert.deepEqual(s.findByClientId(idA).map((l) => l.address), [ip("192.0.2.10")]);
    assert.deepEqual(s.findByClientId(idB).map((l) => l.address), [ip("192.0.2.11")]);
    assert.deepEqual(s.findByHw(6, hwA), [], "htype is compared too");
  });
});

Deno.test("SqliteLeaseStore: lookups by client agree with a table scan after commits, rollbacks, deletes", () => {
  inTempDir((dir) => {
    const path = `${dir}/leases.db`;
    const s = SqliteLeaseStore.open(path, { synchronous: "DEFERRED" });
    // A read-only connection has no client index: its lookups scan the table (the reference).
    const reader = SqliteLeaseStore.open(path, { readOnly: true });
    try {
      const rand = seededRandom(23);
      const base = ip("198.18.2.0");
      const ids = [
        null,
        ...Array.from({ length: 30 }, (_, i) => new Uint8Array([1, 2, 0, 0, 0, i])),
      ];
      const states = ["free", "active", "expired", "backup"] as LeaseState[];
      const check = (label: string) => {
        for (let n = 0; n < 30; n++) {
          const htype = n % 7 === 0 ? 6 : 1;
          assert.deepEqual(s.findByHw(htype, mac(n)), reader.findByHw(htype, mac(n)), label);
          const id = ids[n + 1] as Uint8Array;
          assert.deepEqual(s.findByClientId(id), reader.findByClientId(id), label);
        }
      };
      for (let step = 0; step < 4000; step++) {
        const address = base + rand(400);
        const op = rand(20);
        if (op < 14) {
          const state = states[rand(states.length)] as LeaseState;
          const free = state === "free" || state === "backup";
          s.put(lease("198.18.2.0", {
            address,
            state,
            htype: rand(7) === 0 ? 6 : 1,
            // Pool rows have no client, as the server writes them.
            hwAddress: free ? new Uint8Array(0) : mac(rand(30)),
            clientId: free ? null : ids[rand(ids.length)] as Uint8Array | null,
            ends: 1_795_933_600 + rand(1000),
          }));
        } else if (op < 16) s.delete(address);
        else if (op < 19) {
          s.commit();
          if (step % 10 < 3) check(`step ${step} after commit`);
        } else {
          s.rollback();
          check(`step ${step} after rollback`);
        }
      }
    } finally {
      reader.close();
      s.close();
    }
  });
});
