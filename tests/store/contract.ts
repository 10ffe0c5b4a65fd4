/**
 * The LeaseStore contract (lib/store/store.ts), run against every implementation
 * (STYLE.md §6): memory_test.ts and sqlite_test.ts call these with their own factories.
 */
import assert from "node:assert/strict";
import { StoreError } from "../../lib/errors.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";
import {
  emptyLease,
  type Lease,
  type LeaseState,
  type LeaseStore,
  type MetaStore,
} from "../../lib/store/store.ts";

/** An address in the documentation ranges, as uint32. */
export function ip(text: string): number {
  const v = parseIpv4(text);
  if (v === undefined) throw new TypeError(`bad test address ${text}`);
  return v;
}

/** MAC 02:00:00:00:00:nn. */
export function mac(n: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0, 0, n]);
}

/** An active lease with every field set, overridable. */
export function lease(address: string, fields: Partial<Lease> = {}): Lease {
  return {
    ...emptyLease(ip(address), "active"),
    hwAddress: mac(1),
    clientId: new Uint8Array([1, 2, 0, 0, 0, 0, 1]),
    hostname: "host-1",
    starts: 1_795_930_000,
    ends: 1_795_933_600,
    cltt: 1_795_930_000,
    tstp: 1_795_935_000,
    tsfp: 1_795_934_000,
    atsfp: 1_795_930_001,
    relayInfo: new Uint8Array([1, 3, 0x65, 0x74, 0x30]),
    ...fields,
  };
}

function addresses(leases: Iterable<Lease>): number[] {
  return [...leases].map((l) => l.address);
}

function withStore(make: () => LeaseStore, fn: (s: LeaseStore) => void): void {
  const s = make();
  try {
    fn(s);
  } finally {
    s.close();
  }
}

/** Registers the contract tests for one LeaseStore implementation. */
export function leaseStoreContract(name: string, make: () => LeaseStore): void {
  const t = (title: string, fn: (s: LeaseStore) => void) =>
    Deno.test(`${name}: ${title}`, () => withStore(make, fn));

  t("get() returns undefined for an address with no row", (s) => {
    assert.equal(s.get(ip("192.0.2.10")), undefined);
  });

  t("put() then get() round-trips every field", (s) => {
    const full = lease("203.0.113.255", { htype: 6, hostname: 'ä ü, "quoted"\n' });
    const bare = { ...emptyLease(ip("192.0.2.0"), "abandoned") };
    s.put(full);
    s.put(bare);
    s.commit();
    assert.deepEqual(s.get(full.address), full);
    assert.deepEqual(s.get(bare.address), bare);
  });

  t("put() is visible to reads before commit()", (s) => {
    s.put(lease("192.0.2.10"));
    assert.equal(s.pending, 1);
    assert.equal(s.get(ip("192.0.2.10"))?.state, "active");
    assert.deepEqual(addresses(s.findByHw(1, mac(1))), [ip("192.0.2.10")]);
    assert.equal(s.countByState().active, 1);
  });

  t("commit() returns the writes in the batch and clears pending", (s) => {
    assert.equal(s.commit(), 0, "an empty batch writes nothing");
    s.put(lease("192.0.2.10"));
    s.put(lease("192.0.2.11", { hwAddress: mac(2) }));
    s.delete(ip("192.0.2.12"));
    assert.equal(s.pending, 3);
    assert.equal(s.commit(), 3);
    assert.equal(s.pending, 0);
    assert.equal(s.commit(), 0);
    assert.equal(s.get(ip("192.0.2.11"))?.hwAddress[5], 2);
  });

  t("put() on an existing address replaces the row and its index entries", (s) => {
    s.put(lease("192.0.2.10"));
    s.commit();
    s.put(lease("192.0.2.10", { hwAddress: mac(2), clientId: null, state: "released" }));
    s.commit();
    assert.equal(s.get(ip("192.0.2.10"))?.state, "released");
    assert.deepEqual(s.findByHw(1, mac(1)), []);
    assert.deepEqual(s.findByClientId(new Uint8Array([1, 2, 0, 0, 0, 0, 1])), []);
    assert.deepEqual(addresses(s.findByHw(1, mac(2))), [ip("192.0.2.10")]);
    assert.equal(s.countByState().active, 0);
    assert.equal(s.countByState().released, 1);
  });

  t("rollback() discards new, replaced and deleted rows of the batch", (s) => {
    s.put(lease("192.0.2.10"));
    s.put(lease("192.0.2.11", { hwAddress: mac(2), clientId: null }));
    s.commit();
    s.put(lease("192.0.2.10", { hwAddress: mac(3), state: "expired" }));
    s.put(lease("192.0.2.10", { hwAddress: mac(4), state: "free" }));
    s.delete(ip("192.0.2.11"));
    s.put(lease("192.0.2.12", { hwAddress: mac(5) }));
    assert.equal(s.pending, 4);
    s.rollback();
    assert.equal(s.pending, 0);
    assert.deepEqual(s.get(ip("192.0.2.10")), lease("192.0.2.10"));
    assert.equal(s.get(ip("192.0.2.11"))?.hwAddress[5], 2);
    assert.equal(s.get(ip("192.0.2.12")), undefined);
    assert.deepEqual(addresses(s.findByHw(1, mac(1))), [ip("192.0.2.10")]);
    assert.deepEqual(s.findByHw(1, mac(3)), []);
    assert.deepEqual(s.findByHw(1, mac(4)), []);
    assert.deepEqual(s.findByHw(1, mac(5)), []);
    assert.deepEqual(addresses(s.iterate()), [ip("192.0.2.10"), ip("192.0.2.11")]);
    assert.equal(s.commit(), 0, "nothing is left to commit");
  });

  t("rollback() with no batch changes nothing", (s) => {
    s.put(lease("192.0.2.10"));
    s.commit();
    s.rollback();
    assert.deepEqual(s.get(ip("192.0.2.10")), lease("192.0.2.10"));
  });

  t("delete() removes a row; deleting a missing address is harmless", (s) => {
    s.put(lease("192.0.2.10"));
    s.commit();
    s.delete(ip("192.0.2.10"));
    s.delete(ip("192.0.2.99"));
    assert.equal(s.get(ip("192.0.2.10")), undefined);
    assert.equal(s.commit(), 2);
    assert.equal(s.get(ip("192.0.2.10")), undefined);
    assert.deepEqual(s.findByHw(1, mac(1)), []);
    assert.deepEqual([...s.iterate()], []);
  });

  t("findByHw() matches htype and bytes, newest ends first", (s) => {
    s.put(lease("192.0.2.10", { ends: 100 }));
    s.put(lease("192.0.2.11", { ends: 300 }));
    s.put(lease("192.0.2.12", { ends: 200 }));
    s.put(lease("192.0.2.13", { ends: 300 })); // tie with .11: lower address first
    s.put(lease("192.0.2.14", { htype: 6 })); // same bytes, other hardware type
    s.put(lease("192.0.2.15", { hwAddress: new Uint8Array([2, 0, 0, 0, 0]) })); // prefix only
    s.commit();
    assert.deepEqual(addresses(s.findByHw(1, mac(1))), [
      ip("192.0.2.11"),
      ip("192.0.2.13"),
      ip("192.0.2.12"),
      ip("192.0.2.10"),
    ]);
    assert.deepEqual(addresses(s.findByHw(6, mac(1))), [ip("192.0.2.14")]);
    assert.deepEqual(s.findByHw(1, mac(9)), []);
  });

  t("findByClientId() matches exactly, newest ends first; null ids are not found", (s) => {
    const id = new Uint8Array([1, 2, 0, 0, 0, 0, 7]);
    s.put(lease("198.51.100.1", { clientId: id, ends: 10 }));
    s.put(lease("198.51.100.2", { clientId: id, ends: 20 }));
    s.put(lease("198.51.100.3", { clientId: id.subarray(0, 6), ends: 30 }));
    s.put(lease("198.51.100.4", { clientId: null }));
    s.commit();
    assert.deepEqual(addresses(s.findByClientId(id)), [ip("198.51.100.2"), ip("198.51.100.1")]);
    assert.deepEqual(s.findByClientId(new Uint8Array([9])), []);
    assert.deepEqual(s.findByClientId(new Uint8Array(0)), []);
  });

  t("iterate() yields every row in address order", (s) => {
    const order = ["203.0.113.7", "192.0.2.200", "198.51.100.1", "192.0.2.3", "203.0.113.0"];
    for (const [i, a] of order.entries()) s.put(lease(a, { hwAddress: mac(i) }));
    s.commit();
    assert.deepEqual(addresses(s.iterate()), [
      ip("192.0.2.3"),
      ip("192.0.2.200"),
      ip("198.51.100.1"),
      ip("203.0.113.0"),
      ip("203.0.113.7"),
    ]);
    assert.deepEqual(addresses(s.iterate({})), addresses(s.iterate()));
  });

  t("iterate() applies state, hwAddress and address filters together", (s) => {
    s.put(lease("192.0.2.1", { state: "active", hwAddress: mac(1) }));
    s.put(lease("192.0.2.2", { state: "free", hwAddress: mac(1) }));
    s.put(lease("192.0.2.3", { state: "active", hwAddress: mac(2) }));
    s.put(lease("192.0.2.4", { state: "active", hwAddress: mac(1), htype: 6 }));
    s.commit();
    assert.deepEqual(addresses(s.iterate({ state: "active" })), [
      ip("192.0.2.1"),
      ip("192.0.2.3"),
      ip("192.0.2.4"),
    ]);
    assert.deepEqual(addresses(s.iterate({ hwAddress: mac(1) })), [
      ip("192.0.2.1"),
      ip("192.0.2.2"),
      ip("192.0.2.4"),
    ]);
    assert.deepEqual(addresses(s.iterate({ address: ip("192.0.2.3") })), [ip("192.0.2.3")]);
    assert.deepEqual(addresses(s.iterate({ address: ip("192.0.2.9") })), []);
    assert.deepEqual(addresses(s.iterate({ state: "free", hwAddress: mac(1) })), [
      ip("192.0.2.2"),
    ]);
    assert.deepEqual(
      addresses(s.iterate({ state: "free", hwAddress: mac(1), address: ip("192.0.2.1") })),
      [],
    );
    assert.deepEqual(addresses(s.iterate({ state: "backup" })), []);
  });

  t("iterate() can stop early, nest, and be followed by writes", (s) => {
    for (let i = 1; i <= 20; i++) s.put(lease(`192.0.2.${i}`, { hwAddress: mac(i) }));
    s.commit();
    for (const l of s.iterate()) {
      assert.equal(l.address, ip("192.0.2.1"));
      break;
    }
    const pairs: number[] = [];
    for (const outer of s.iterate({ state: "active" })) {
      for (const inner of s.iterate({ state: "active" })) {
        if (inner.address === outer.address) pairs.push(inner.address);
      }
      if (pairs.length === 3) break;
    }
    assert.deepEqual(pairs, [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")]);
    const it = s.iterate();
    assert.equal(it.next().value?.address, ip("192.0.2.1"));
    it.return?.();
    s.put(lease("192.0.2.21", { hwAddress: mac(21) }));
    assert.equal(s.commit(), 1);
    assert.equal([...s.iterate()].length, 21);
  });

  t("countByState() reports all seven states, zeros included", (s) => {
    const empty: Record<LeaseState, number> = {
      free: 0,
      active: 0,
      expired: 0,
      released: 0,
      abandoned: 0,
      reset: 0,
      backup: 0,
    };
    assert.deepEqual(s.countByState(), empty);
    s.put(lease("192.0.2.1", { state: "active" }));
    s.put(lease("192.0.2.2", { state: "active" }));
    s.put(lease("192.0.2.3", { state: "backup" }));
    s.put(lease("192.0.2.4", { state: "free" }));
    s.commit();
    assert.deepEqual(s.countByState(), { ...empty, active: 2, backup: 1, free: 1 });
  });

  t("recordAck() sets tsfp only on the binding as it was sent (§7.2.2)", (s) => {
    const sent = lease("192.0.2.20", { tsfp: 0 });
    const tsfp = sent.tstp;
    s.put(sent);
    s.commit();
    const at = ip("192.0.2.20");
    // Another status, another client (by client id when either has one, else chaddr), no row:
    // nothing changes.
    assert.equal(s.recordAck({ ...sent, state: "expired" }, tsfp), false);
    assert.equal(s.recordAck({ ...sent, clientId: new Uint8Array([1, 9]) }, tsfp), false);
    assert.equal(s.recordAck({ ...sent, clientId: null }, tsfp), false);
    assert.equal(s.recordAck({ ...sent, address: ip("192.0.2.21") }, tsfp), false);
    assert.equal(s.get(at)?.tsfp, 0);
    // The same client id with another chaddr is the same client.
    assert.equal(s.recordAck({ ...sent, hwAddress: mac(7) }, tsfp), true);
    assert.deepEqual(s.get(at), { ...sent, tsfp });
    assert.equal(s.recordAck(sent, tsfp), false, "tsfp already recorded");
    s.commit();
    // Without client ids, by htype and chaddr; and rolled back with its batch.
    const plain = lease("192.0.2.22", { clientId: null, tsfp: 0 });
    s.put(plain);
    s.commit();
    assert.equal(s.recordAck({ ...plain, hwAddress: mac(8) }, 5), false);
    assert.equal(s.recordAck({ ...plain, htype: 6 }, 5), false);
    assert.equal(s.recordAck(plain, 5), true);
    assert.equal(s.get(ip("192.0.2.22"))?.tsfp, 5);
    s.rollback();
    assert.equal(s.get(ip("192.0.2.22"))?.tsfp, 0);
    assert.throws(() => s.recordAck(plain, -1), RangeError);
  });

  t("leases read back are copies, and put() copies its argument", (s) => {
    const l = lease("192.0.2.10");
    s.put(l);
    l.hwAddress[5] = 99;
    l.hostname = "changed";
    (l.clientId as Uint8Array)[0] = 99;
    const got = s.get(ip("192.0.2.10")) as Lease;
    assert.equal(got.hwAddress[5], 1);
    assert.equal(got.hostname, "host-1");
    got.hwAddress[5] = 77;
    (got.relayInfo as Uint8Array)[0] = 77;
    assert.deepEqual(s.get(ip("192.0.2.10")), lease("192.0.2.10"));
    assert.equal(s.findByHw(1, mac(1))[0]?.clientId?.[0], 1);
  });

  t("put() rejects malformed leases and leaves the batch alone", (s) => {
    const bad: [string, Partial<Lease>, ErrorConstructor][] = [
      ["negative address", { address: -1 }, RangeError],
      ["address above uint32", { address: 2 ** 32 }, RangeError],
      ["fractional address", { address: 1.5 }, RangeError],
      ["unknown state", { state: "bound" as LeaseState }, TypeError],
      ["htype above 255", { htype: 256 }, RangeError],
      ["chaddr longer than 16 bytes (RFC 2131 §2)", { hwAddress: new Uint8Array(17) }, RangeError],
      ["negative time", { ends: -5 }, RangeError],
      ["fractional time", { starts: 1.25 }, RangeError],
      ["client id not bytes", { clientId: "abc" as unknown as Uint8Array }, TypeError],
    ];
    for (const [what, fields, type] of bad) {
      assert.throws(() => s.put(lease("192.0.2.10", fields)), type, what);
    }
    assert.equal(s.pending, 0);
    assert.equal(s.get(ip("192.0.2.10")), undefined);
  });

  t("takeDiscarded() reports each batch that ended without a commit, once", (s) => {
    assert.deepEqual(s.takeDiscarded(), { batches: 0, addresses: [] });
    s.put(lease("192.0.2.10"));
    s.commit();
    assert.deepEqual(s.takeDiscarded(), { batches: 0, addresses: [] }, "a commit loses nothing");
    s.put(lease("192.0.2.11", { hwAddress: mac(2) }));
    s.delete(ip("192.0.2.10"));
    s.rollback();
    const lost = s.takeDiscarded();
    assert.equal(lost.batches, 1);
    assert.deepEqual([...lost.addresses].sort(), [ip("192.0.2.10"), ip("192.0.2.11")].sort());
    assert.deepEqual(s.takeDiscarded(), { batches: 0, addresses: [] }, "reported once");
    s.rollback();
    assert.equal(s.takeDiscarded().batches, 0, "rolling back nothing loses nothing");
  });

  t("probe() joins the batch and changes no lease", (s) => {
    s.put(lease("192.0.2.10"));
    s.commit();
    s.probe();
    assert.equal(s.pending, 1);
    assert.equal(s.commit(), 1);
    assert.deepEqual(s.get(ip("192.0.2.10")), lease("192.0.2.10"));
    assert.equal(s.countByState().active, 1);
  });

  t("shiftTimes() moves every set time by the step, keeps 0 unset and times >= 1", (s) => {
    s.put(lease("192.0.2.10"));
    s.put(lease("192.0.2.11", { hwAddress: mac(2), tstp: 0, tsfp: 0, atsfp: 0, ends: 100 }));
    s.commit();
    assert.equal(s.shiftTimes(-1000), 2);
    assert.equal(s.pending, 1, "one write in the batch");
    s.commit();
    const a = s.get(ip("192.0.2.10"));
    assert.deepEqual(
      a && [a.starts, a.ends, a.cltt, a.tstp, a.tsfp, a.atsfp],
      [1_795_929_000, 1_795_932_600, 1_795_929_000, 1_795_934_000, 1_795_933_000, 1_795_929_001],
    );
    const b = s.get(ip("192.0.2.11"));
    assert.deepEqual(b && [b.ends, b.tstp, b.tsfp, b.atsfp], [1, 0, 0, 0]);
    assert.deepEqual(s.findByHw(1, mac(2)).map((l) => l.ends), [1], "indexes still find it");
    s.shiftTimes(86_400);
    s.rollback();
    assert.equal(s.get(ip("192.0.2.10"))?.ends, 1_795_932_600, "rolled back with its batch");
    assert.throws(() => s.shiftTimes(0.5), RangeError);
  });

  t("close() makes later calls throw StoreError and can be repeated", (s) => {
    s.put(lease("192.0.2.10"));
    s.commit();
    s.close();
    s.close();
    assert.throws(() => s.get(ip("192.0.2.10")), StoreError);
    assert.throws(() => s.put(lease("192.0.2.11")), StoreError);
  });
}

/** Registers the meta (key/value) tests for a store that also implements MetaStore. */
export function metaStoreContract(name: string, make: () => LeaseStore & MetaStore): void {
  Deno.test(`${name}: getMeta()/setMeta() store values that join the lease batch`, () => {
    const s = make();
    try {
      assert.equal(s.getMeta("failover.state"), undefined);
      s.setMeta("failover.state", "normal");
      s.put(lease("192.0.2.10"));
      assert.equal(s.getMeta("failover.state"), "normal", "visible before commit");
      assert.equal(s.pending, 2);
      assert.equal(s.commit(), 2);
      s.setMeta("failover.state", "communications-interrupted");
      s.setMeta("failover.stos", "1795930000");
      s.rollback();
      assert.equal(s.getMeta("failover.state"), "normal");
      assert.equal(s.getMeta("failover.stos"), undefined);
      s.setMeta("failover.state", "");
      s.commit();
      assert.equal(s.getMeta("failover.state"), "");
    } finally {
      s.close();
    }
  });
}
