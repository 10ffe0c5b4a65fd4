/**
 * BindingSync (draft-12 §6.3, §7.1-§7.5, §8.4, §8.6): two engines wired to each other through
 * encode/decode, each over its own MemoryLeaseStore. Pure: no sockets, no clock.
 */
import assert from "node:assert/strict";
import {
  BindingSync,
  bindingUpdateFromWire,
  leaseToBindingUpdate,
  partnerTakesBatches,
  type SyncEffect,
  type SyncInput,
  unpackOptions,
} from "../../lib/failover/sync.ts";
import type { FailoverRole } from "../../lib/failover/state.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import {
  assignedIpAddressOption,
  bindingStatusOption,
  buildBndupd,
  buildUpdreq,
  buildUpdreqall,
  decodeFailover,
  encodeFailover,
  FAILOVER_MAX_LENGTH,
  type FailoverMessage,
  getBindingAcks,
  getBindingUpdates,
  MsgType,
  RejectReason,
  signFailover,
} from "../../lib/wire/failover.ts";

const T0 = 1_800_000_000;
const NET_A = 0xc0000200; // 192.0.2.0/24
const NET_B = 0xc6336400; // 198.51.100.0/24
const NET_C = 0xcb007100; // 203.0.113.0/24

function inTestPools(address: number): boolean {
  const net = (address & 0xffffff00) >>> 0;
  return net === NET_A || net === NET_B || net === NET_C;
}

/** Every address of the three documentation /24s, in address order (768). */
function testAddresses(n: number): number[] {
  const out: number[] = [];
  for (const net of [NET_A, NET_B, NET_C]) {
    for (let i = 0; i < 256 && out.length < n; i++) out.push(net + i);
  }
  assert.equal(out.length, n, "not enough documentation addresses");
  return out;
}

/** An ACTIVE lease for client 02:00:00:00:hi:lo, told to the partner with tstp T0 + 750. */
function activeLease(address: number, o: Partial<Lease> = {}): Lease {
  const n = address & 0xffff;
  return {
    ...emptyLease(address, "active"),
    hwAddress: new Uint8Array([0x02, 0, 0, 0, n >> 8, n & 0xff]),
    starts: T0,
    cltt: T0,
    ends: T0 + 300,
    tstp: T0 + 750,
    ...o,
  };
}

/** One endpoint: a store, an engine and what it sent. */
class Node {
  readonly store = new MemoryLeaseStore();
  readonly sync: BindingSync;
  readonly name: string;
  /** Messages on their way to the partner (decoded from the encoded bytes). */
  outbox: FailoverMessage[] = [];
  /** Every effect, tagged, in order. */
  trace: string[] = [];
  events: string[] = [];
  sentBndupds: FailoverMessage[] = [];
  maxInFlight = 0;
  #xid = 0;

  constructor(name: string, role: FailoverRole, options: { maxBindings?: number } = {}) {
    this.name = name;
    this.sync = new BindingSync({
      role,
      view: this.store,
      inPool: inTestPools,
      ...(options.maxBindings !== undefined ? { maxBindingsPerBndupd: options.maxBindings } : {}),
    });
  }

  step(input: SyncInput): SyncEffect[] {
    const effects = this.sync.step(input);
    this.apply(effects);
    this.maxInFlight = Math.max(this.maxInFlight, this.sync.status.inFlight);
    return effects;
  }

  /** A shell: persist joins the batch, send-after-commit commits first (and checks the connection). */
  apply(effects: SyncEffect[]): void {
    for (const e of effects) {
      switch (e.kind) {
        case "persist":
          this.trace.push(`persist ${e.lease.address}`);
          this.store.put(e.lease);
          break;
        case "record-ack":
          this.trace.push(`ack ${e.lease.address}`);
          this.store.recordAck(e.lease, e.tsfp);
          break;
        case "send-after-commit":
          this.store.commit();
          this.trace.push("commit");
          if (e.connection !== this.sync.connection) {
            this.trace.push("drop-stale");
            break;
          }
          this.#send(e.message);
          break;
        case "send":
          this.#send(e.message);
          break;
        case "event":
          this.events.push(e.event);
          this.trace.push(`event ${e.event}`);
          break;
        case "log":
          break;
      }
    }
  }

  #send(message: FailoverMessage): void {
    const bytes = encodeFailover(message);
    assert.ok(bytes.length <= FAILOVER_MAX_LENGTH, `${this.name} sent ${bytes.length} octets`);
    const copy = decodeFailover(bytes);
    this.trace.push(`send ${message.type} ${message.xid}`);
    if (copy.type === MsgType.BNDUPD) this.sentBndupds.push(copy);
    this.outbox.push(copy);
  }

  linkUp(maxUnacked: number): void {
    this.#xid = 0;
    this.step({
      kind: "link-up",
      now: T0,
      maxUnackedBndupd: maxUnacked,
      nextXid: () => this.#xid++,
    });
  }

  /** Adds (and commits) a lease, then tells the engine. */
  change(lease: Lease, now = T0): void {
    this.store.put(lease);
    this.store.commit();
    this.step({ kind: "lease-changed", now, lease });
  }

  receive(message: FailoverMessage, now = T0): void {
    this.trace.push(`recv ${message.type} ${message.xid}`);
    this.step({ kind: "message", now, message });
  }
}

/** Delivers messages both ways, one at a time, until both outboxes are empty (bounded). */
function run(a: Node, b: Node, limit = 100_000): number {
  let delivered = 0;
  while (a.outbox.length > 0 || b.outbox.length > 0) {
    assert.ok(delivered < limit, "message exchange does not settle");
    const fromA = a.outbox.shift();
    if (fromA !== undefined) {
      b.receive(fromA);
      delivered++;
    }
    const fromB = b.outbox.shift();
    if (fromB !== undefined) {
      a.receive(fromB);
      delivered++;
    }
  }
  return delivered;
}

function pair(maxUnacked = 10, options: { maxBindings?: number } = {}): [Node, Node] {
  const a = new Node("primary", "primary", options);
  const b = new Node("secondary", "secondary", options);
  a.linkUp(maxUnacked);
  b.linkUp(maxUnacked);
  return [a, b];
}

function transactions(msgs: FailoverMessage[]): number[] {
  return msgs.flatMap((m) => getBindingUpdates(m).map((u) => u?.assignedIpAddress ?? -1));
}

Deno.test("BindingSync sends one change as a BNDUPD and records tsfp from the BNDACK", () => {
  const [a, b] = pair();
  const address = NET_A + 10;
  a.change(activeLease(address));
  assert.equal(a.sync.status.inFlight, 1);
  run(a, b);

  const there = b.store.get(address);
  assert.ok(there !== undefined);
  assert.equal(there.state, "active");
  assert.deepEqual(there.hwAddress, new Uint8Array([2, 0, 0, 0, 2, 10]));
  assert.equal(there.ends, T0 + 300);
  // §7.1.5: the receiver keeps the potential-expiration-time it acked.
  assert.equal(there.atsfp, T0 + 750);
  // §7.2.2: the sender stores the potential-expiration-time the partner acked.
  assert.equal(a.store.get(address)?.tsfp, T0 + 750);
  assert.equal(a.sync.status.inFlight, 0);
  assert.equal(a.sync.status.updatesAccepted, 1);
  assert.equal(b.sync.status.updatesSent, 0, "storage writes from a BNDUPD send nothing (§7.1.1)");
});

Deno.test("BindingSync keeps at most max-unacked-bndupd BNDUPDs in flight (§8.4)", () => {
  const [a, b] = pair(3, { maxBindings: 1 });
  const addresses = testAddresses(10);
  for (const address of addresses) a.change(activeLease(address));
  assert.equal(a.sync.status.inFlight, 3);
  assert.equal(a.sync.status.queued, 7);
  run(a, b);
  assert.equal(a.maxInFlight, 3);
  assert.equal(a.sentBndupds.length, 10);
  for (const address of addresses) {
    assert.equal(b.store.get(address)?.state, "active", `address ${address}`);
    assert.equal(a.store.get(address)?.tsfp, T0 + 750, `tsfp of ${address}`);
  }
  assert.equal(a.sync.status.queued, 0);
  assert.equal(a.sync.status.inFlight, 0);
});

Deno.test("BindingSync coalesces changes to one address: the latest wins", () => {
  const a = new Node("primary", "primary");
  const address = NET_B + 5;
  a.change(activeLease(address, { ends: T0 + 100 }));
  a.change(activeLease(address, { ends: T0 + 200 }));
  assert.equal(a.sync.status.queued, 1);
  const b = new Node("secondary", "secondary");
  a.linkUp(10);
  b.linkUp(10);
  run(a, b);
  assert.equal(a.sentBndupds.length, 1);
  assert.equal(b.store.get(address)?.ends, T0 + 200);
});

Deno.test("BindingSync batches several bindings per BNDUPD within 2048 octets (§6.3)", () => {
  const a = new Node("primary", "primary");
  const b = new Node("secondary", "secondary");
  const addresses = testAddresses(40);
  for (const [i, address] of addresses.entries()) {
    // 60-octet client identifiers make each transaction about 130 octets.
    a.change(activeLease(address, { clientId: new Uint8Array(60).fill(i + 1) }));
  }
  a.linkUp(10);
  b.linkUp(10);
  const batches = a.sentBndupds.map((m) => getBindingUpdates(m).length);
  assert.ok(batches.length > 1 && batches.length < 40, `batches ${batches.join(",")}`);
  assert.ok(batches.every((n) => n > 1), `batches ${batches.join(",")}`);
  for (const m of a.sentBndupds) assert.ok(encodeFailover(m).length <= FAILOVER_MAX_LENGTH);
  // Full messages go out at once; a partial one waits for an ack while another is in flight.
  const sentFirst = transactions(a.sentBndupds).length;
  assert.ok(sentFirst < 40, `sent at once: ${sentFirst}`);

  // §6.3: the BNDACK names the same addresses, in the same order.
  const first = a.outbox[0];
  assert.ok(first !== undefined);
  b.receive(a.outbox.shift() as FailoverMessage);
  const ack = b.outbox[0];
  assert.ok(ack !== undefined);
  assert.equal(ack.type, MsgType.BNDACK);
  assert.equal(ack.xid, first.xid);
  assert.deepEqual(
    getBindingAcks(ack).map((x) => x.assignedIpAddress),
    transactions([first]),
  );
  run(a, b);
  assert.deepEqual(transactions(a.sentBndupds).sort((x, y) => x - y), addresses);
  for (const m of a.sentBndupds) assert.ok(encodeFailover(m).length <= FAILOVER_MAX_LENGTH);
  for (const address of addresses) assert.equal(b.store.get(address)?.state, "active");
});

Deno.test("BindingSync sends each change at once on an idle link and holds partial BNDUPDs while one is in flight", () => {
  const a = new Node("primary", "primary");
  const b = new Node("secondary", "secondary");
  a.linkUp(10);
  b.linkUp(10);
  const addresses = testAddresses(40);
  // Idle: the first change goes out alone, at once.
  a.change(activeLease(addresses[0] as number));
  assert.deepEqual(a.sentBndupds.map((m) => getBindingUpdates(m).length), [1]);
  // In flight: the next changes wait, one step at a time, until a message's worth is queued.
  for (const address of addresses.slice(1, 16)) a.change(activeLease(address));
  assert.equal(a.sentBndupds.length, 1, "15 changes wait while the first BNDUPD is unacked");
  a.change(activeLease(addresses[16] as number));
  assert.deepEqual(a.sentBndupds.map((m) => getBindingUpdates(m).length), [1, 16]);
  // The ack of every BNDUPD in flight sends what is left, however little.
  a.change(activeLease(addresses[17] as number));
  assert.equal(a.sentBndupds.length, 2);
  run(a, b);
  assert.deepEqual(a.sentBndupds.map((m) => getBindingUpdates(m).length), [1, 16, 1]);
  for (const address of addresses.slice(0, 18)) {
    assert.equal(b.store.get(address)?.state, "active");
  }
});

Deno.test("BindingSync sends one binding per BNDUPD on a connection whose link-up says so", () => {
  // ISC dhcpd 4.4.3 drops the connection on a second assigned-IP-address in one BNDUPD
  // ("duplicate option"), so the endpoint asks for single updates on its connections.
  const a = new Node("primary", "primary");
  const b = new Node("secondary", "secondary");
  const addresses = testAddresses(25);
  for (const address of addresses) a.change(activeLease(address));
  let xid = 0;
  a.step({
    kind: "link-up",
    now: T0,
    maxUnackedBndupd: 10,
    nextXid: () => xid++,
    maxBindingsPerBndupd: 1,
  });
  b.linkUp(10);
  run(a, b);
  assert.equal(a.sentBndupds.length, 25);
  assert.ok(a.sentBndupds.every((m) => getBindingUpdates(m).length === 1));
  for (const address of addresses) assert.equal(b.store.get(address)?.state, "active");
  // The next connection without the override batches again (§6.3).
  for (const address of addresses) a.change(activeLease(address, { ends: T0 + 400 }));
  a.sentBndupds = [];
  a.linkUp(10);
  b.linkUp(10);
  run(a, b);
  assert.ok(a.sentBndupds.length < 25, `${a.sentBndupds.length} BNDUPDs`);
});

Deno.test("partnerTakesBatches() batches only for a duet partner (ISC 4.4.3 cannot)", async (t) => {
  const cases: [string, string | null, boolean][] = [
    ["duet", "duet-0.1.0", true],
    ["ISC dhcpd 4.4.3 (vendor class of its CONNECT)", "isc-4.4.3-P1", false],
    ["no vendor-class-identifier", null, false],
    ["unknown software", "other-1.0", false],
  ];
  for (const [name, vendor, expected] of cases) {
    await t.step(name, () => assert.equal(partnerTakesBatches(vendor), expected));
  }
});

Deno.test("BindingSync sends the leases of one commit in one BNDUPD while the link is up (§6.3)", () => {
  const [a, b] = pair(10);
  const leases = testAddresses(5).map((address) => activeLease(address));
  for (const lease of leases) a.store.put(lease);
  a.store.commit();
  // One group commit of five leases: before this input existed, each lease-changed pumped at
  // once and the five went out as five BNDUPDs of one binding each.
  a.step({ kind: "leases-changed", now: T0, leases });
  assert.equal(a.sentBndupds.length, 1);
  assert.equal(getBindingUpdates(a.sentBndupds[0] as FailoverMessage).length, 5);
  run(a, b);
  for (const lease of leases) assert.equal(b.store.get(lease.address)?.state, "active");
  assert.equal(a.sync.status.inFlight, 0);
});

Deno.test("BindingSync reads no row again for leases the caller just handed it; later ones it does", () => {
  const [a] = pair(1, { maxBindings: 1 });
  const leases = testAddresses(3).map((address) => activeLease(address));
  for (const lease of leases) a.store.put(lease);
  a.store.commit();
  let reads = 0;
  const get = a.store.get.bind(a.store);
  a.store.get = (address: number) => {
    reads++;
    return get(address);
  };
  // Window 1, one binding per BNDUPD: the first goes out now, read from the caller's copy.
  a.step({ kind: "leases-changed", now: T0, leases });
  assert.equal(a.sentBndupds.length, 1);
  assert.equal(reads, 0, "the lease read by the caller a moment ago is not read again");
  // The rest waited for window space: by then the row may have changed, so it is read.
  const changed = { ...leases[1] as Lease, ends: T0 + 999 };
  a.store.put(changed);
  a.store.commit();
  const [b] = [new Node("secondary", "secondary")];
  b.linkUp(10);
  b.receive(a.outbox.shift() as FailoverMessage);
  a.receive(b.outbox.shift() as FailoverMessage);
  assert.ok(reads > 0, "a lease queued in an earlier step is read from the store");
  const second = getBindingUpdates(a.sentBndupds[1] as FailoverMessage)[0];
  assert.equal(second?.assignedIpAddress, changed.address);
  assert.equal(second?.leaseExpirationTime, T0 + 999, "the latest row went out");
  a.store.get = get;
});

Deno.test("BindingSync keeps no copy of a change past its step: a row gone by sending time is not sent", () => {
  const [a] = pair(1, { maxBindings: 1 });
  const leases = testAddresses(3).map((address) => activeLease(address));
  for (const lease of leases) a.store.put(lease);
  a.store.commit();
  a.step({ kind: "leases-changed", now: T0, leases });
  assert.equal(a.sentBndupds.length, 1);
  assert.equal(a.sync.status.queued, 2);
  // The second change waits for window space; its row goes before it is sent.
  a.store.delete((leases[1] as Lease).address);
  a.store.commit();
  const b = new Node("secondary", "secondary");
  b.linkUp(10);
  run(a, b);
  assert.deepEqual(
    transactions(a.sentBndupds),
    [(leases[0] as Lease).address, (leases[2] as Lease).address],
    "the change without a row is dropped, the next goes out",
  );
  assert.equal(a.sync.status.queued, 0);
});

Deno.test("BindingSync answers UPDREQALL with every binding, then UPDDONE after all BNDACKs", () => {
  const [a, b] = pair(10);
  const addresses = testAddresses(768);
  for (const address of addresses) {
    // Already acked earlier: only an UPDREQALL sends these.
    a.store.put(activeLease(address, { tsfp: T0 + 750 }));
  }
  a.store.commit();
  a.receive(buildUpdreqall({ time: T0, xid: 77 }));
  assert.ok(a.sync.status.inFlight <= 10);
  run(a, b);

  assert.equal(a.maxInFlight, 10);
  assert.deepEqual(transactions(a.sentBndupds).sort((x, y) => x - y), addresses);
  for (const address of addresses) assert.equal(b.store.get(address)?.state, "active");
  // §7.5: exactly one UPDDONE with the request's xid, after the BNDACK of every BNDUPD.
  const done = a.trace.filter((t) => t.startsWith(`send ${MsgType.UPDDONE} `));
  assert.deepEqual(done, [`send ${MsgType.UPDDONE} 77`]);
  const doneAt = a.trace.indexOf(done[0] as string);
  const acksBefore = a.trace.slice(0, doneAt).filter((t) =>
    t.startsWith(`recv ${MsgType.BNDACK} `)
  );
  assert.equal(acksBefore.length, a.sentBndupds.length);
  assert.deepEqual(b.events, ["upddone"]);
  assert.equal(a.sync.status.pass, "none");
});

/** Stores `n` ACTIVE leases on `a`, every `every`-th one not yet acked by the partner. */
function storeSomeUnacked(
  a: Node,
  n: number,
  every: number,
): { addresses: number[]; unacked: Set<number> } {
  const addresses = testAddresses(n);
  const unacked = new Set(addresses.filter((_, i) => i % every === 0));
  for (const address of addresses) {
    a.store.put(activeLease(address, { tsfp: unacked.has(address) ? 0 : T0 + 750 }));
  }
  a.store.commit();
  return { addresses, unacked };
}

Deno.test("BindingSync answers UPDREQ with only the bindings not yet acked (§7.3.2)", () => {
  const [a, b] = pair(10);
  const { addresses, unacked } = storeSomeUnacked(a, 20, 4);
  a.receive(buildUpdreq({ time: T0, xid: 5 }));
  run(a, b);
  assert.deepEqual(
    transactions(a.sentBndupds).sort((x, y) => x - y),
    [...unacked].sort((x, y) => x - y),
  );
  assert.deepEqual(b.events, ["upddone"]);
  for (const address of addresses) {
    assert.equal(b.store.get(address)?.state, unacked.has(address) ? "active" : undefined);
  }
});

Deno.test("BindingSync's UPDREQ pass reads again only the rows it may send, not every row", () => {
  const [a, b] = pair(10);
  const { unacked } = storeSomeUnacked(a, 400, 40);
  const read: number[] = [];
  const get = a.store.get.bind(a.store);
  a.store.get = (address: number) => {
    read.push(address);
    return get(address);
  };
  a.receive(buildUpdreq({ time: T0, xid: 5 }));
  run(a, b);
  assert.deepEqual(
    transactions(a.sentBndupds).sort((x, y) => x - y),
    [...unacked].sort((x, y) => x - y),
  );
  // The unacked rows are read once more before they are sent (and again for their BNDACKs);
  // the 390 acked rows the cursor already read are not.
  assert.ok(read.every((address) => unacked.has(address)), `read acked rows: ${read.length}`);
  assert.deepEqual(new Set(read), unacked);
  assert.deepEqual(b.events, ["upddone"]);
});

Deno.test("BindingSync answers an UPDREQ at once with UPDDONE when nothing is unacked", () => {
  const [a, b] = pair(10);
  a.receive(buildUpdreq({ time: T0, xid: 9 }));
  assert.deepEqual(a.trace.slice(-1), [`send ${MsgType.UPDDONE} 9`]);
  run(a, b);
  assert.deepEqual(b.events, ["upddone"]);
});

Deno.test("BindingSync loses nothing when the link goes down in the middle of a pass", () => {
  const [a, b] = pair(4, { maxBindings: 2 });
  const addresses = testAddresses(300);
  for (const address of addresses) a.store.put(activeLease(address, { tsfp: T0 + 750 }));
  a.store.commit();
  a.receive(buildUpdreqall({ time: T0, xid: 1 }));
  // Let some traffic through, then cut the link with BNDUPDs and BNDACKs on the wire.
  for (let i = 0; i < 5; i++) {
    const m = a.outbox.shift();
    if (m !== undefined) b.receive(m);
    const r = b.outbox.shift();
    if (r !== undefined) a.receive(r);
  }
  const inFlight = a.sync.status.inFlight;
  assert.ok(inFlight > 0);
  const carried = a.sentBndupds.length;
  a.outbox = [];
  b.outbox = [];
  a.step({ kind: "link-down", now: T0 + 1 });
  b.step({ kind: "link-down", now: T0 + 1 });
  assert.equal(a.sync.status.inFlight, 0);
  assert.ok(a.sync.status.queued >= inFlight, "in-flight bindings are queued again");
  assert.equal(a.sync.status.updreqallOwed, true);
  assert.equal(a.sync.status.pass, "none");

  a.linkUp(4);
  b.linkUp(4);
  // §7.4.2: until its UPDDONE, an owed UPDREQALL turns an UPDREQ into an UPDREQALL.
  a.receive(buildUpdreq({ time: T0 + 2, xid: 2 }));
  assert.equal(a.sync.status.pass, "updreqall");
  run(a, b);
  assert.ok(a.sentBndupds.length > carried);
  for (const address of addresses) assert.equal(b.store.get(address)?.state, "active");
  assert.deepEqual(a.trace.filter((t) => t.startsWith(`send ${MsgType.UPDDONE} `)), [
    `send ${MsgType.UPDDONE} 2`,
  ]);
  assert.equal(a.sync.status.updreqallOwed, false);
  assert.equal(a.sync.status.queued, 0);
});

Deno.test("BindingSync queues changes while down and sends them after link-up", () => {
  const a = new Node("primary", "primary");
  const b = new Node("secondary", "secondary");
  const addresses = testAddresses(12);
  for (const address of addresses) a.change(activeLease(address));
  assert.equal(a.outbox.length, 0);
  assert.equal(a.sync.status.queued, 12);
  a.linkUp(2);
  b.linkUp(2);
  run(a, b);
  for (const address of addresses) assert.equal(a.store.get(address)?.tsfp, T0 + 750);
});

Deno.test("BindingSync does not resend an update the partner rejected with reason 16", () => {
  const [a, b] = pair();
  const address = NET_C + 7;
  // Fig. 7.1.3-1: the secondary's ABANDONED row rejects an ACTIVE update (reason 16).
  b.store.put({ ...emptyLease(address, "abandoned"), starts: T0 - 10 });
  b.store.commit();
  a.change(activeLease(address));
  run(a, b);
  assert.equal(a.sync.status.updatesRejected, 1);
  assert.equal(a.store.get(address)?.tsfp, 0, "a rejected update records no tsfp");
  assert.equal(b.store.get(address)?.state, "abandoned");
  const acks = a.trace.filter((t) => t.startsWith(`recv ${MsgType.BNDACK} `));
  assert.equal(acks.length, 1);
  // §7.2.2: MUST NOT resend at once, not even after a reconnection.
  a.step({ kind: "link-down", now: T0 + 1 });
  b.step({ kind: "link-down", now: T0 + 1 });
  a.linkUp(10);
  b.linkUp(10);
  run(a, b);
  assert.equal(a.sentBndupds.length, 1);
  assert.equal(a.sync.status.queued, 0);
});

Deno.test("BindingSync reports reject reason 16 in the BNDACK it sends", () => {
  const [, b] = pair();
  const address = NET_C + 8;
  b.store.put(emptyLease(address, "abandoned"));
  b.store.commit();
  b.receive(buildBndupd({ time: T0, xid: 40 }, {
    assignedIpAddress: address,
    bindingStatus: 2,
    clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 0, 8]) },
    leaseExpirationTime: T0 + 300,
    potentialExpirationTime: T0 + 750,
  }));
  const ack = b.outbox[0];
  assert.ok(ack !== undefined);
  assert.equal(ack.xid, 40);
  const [only] = getBindingAcks(ack);
  assert.equal(only?.rejectReason, RejectReason.LESS_CRITICAL_BINDING);
  assert.ok((only?.message ?? "").length > 0);
  assert.ok(!b.trace.some((t) => t.startsWith("persist")), "a rejection writes nothing");
});

Deno.test("BindingSync sends a BNDACK only after the accepted leases are committed", () => {
  const [a, b] = pair();
  const addresses = testAddresses(3);
  const bndupd = buildBndupd({ time: T0, xid: 12 }, [
    ...addresses.map((address) => ({
      assignedIpAddress: address,
      bindingStatus: 2,
      clientHardwareAddress: { htype: 1, chaddr: new Uint8Array([2, 0, 0, 0, 1, address & 0xff]) },
      leaseExpirationTime: T0 + 300,
      potentialExpirationTime: T0 + 750,
    })),
  ]);
  const effects = b.sync.step({ kind: "message", now: T0, message: bndupd });
  assert.deepEqual(effects.filter((e) => e.kind !== "log").map((e) => e.kind), [
    "persist",
    "persist",
    "persist",
    "send-after-commit",
  ]);
  const last = effects.at(-1);
  assert.ok(last?.kind === "send-after-commit");
  assert.equal(last.connection, b.sync.connection);
  assert.equal(last.message.type, MsgType.BNDACK);
  assert.equal(last.message.xid, 12);
  assert.deepEqual(getBindingAcks(last.message).map((x) => x.assignedIpAddress), addresses);

  // §8.6: when the connection changes before the commit, the BNDACK is dropped.
  b.step({ kind: "link-down", now: T0 });
  b.linkUp(10);
  b.apply(effects);
  assert.deepEqual(b.trace.slice(-2), ["commit", "drop-stale"]);
  assert.equal(b.outbox.length, 0);
  assert.equal(a.outbox.length, 0);
});

Deno.test("BindingSync frees a RELEASED lease once the partner acks it (§5.11)", () => {
  const [a, b] = pair();
  const address = NET_A + 20;
  a.change(activeLease(address));
  run(a, b);
  a.change(
    activeLease(address, { state: "released", starts: T0 + 60, ends: T0 + 60, cltt: T0 + 60 }),
    T0 + 60,
  );
  run(a, b);
  assert.equal(a.store.get(address)?.state, "free");
  assert.equal(b.store.get(address)?.state, "free");
});

Deno.test("BindingSync does not send back a FREE binding the partner sent it (§7.1.1, §5.4)", () => {
  // Found by the simulation (seed 17): the primary's EXPIRED update was stored as FREE on the
  // secondary; the primary then moved the address to BACKUP, and the secondary, entering
  // NORMAL, sent the FREE row back as "unacked". The primary's FREE/BACKUP row takes any
  // update (Fig. 7.1.3-1): it stored FREE, the secondary BACKUP, and they disagreed for good.
  const [a, b] = pair();
  const address = NET_A + 20;
  a.change(activeLease(address, { starts: T0 - 400, cltt: T0 - 400, ends: T0 - 10, tstp: 0 }));
  run(a, b);
  a.change({ ...a.store.get(address)!, state: "expired", starts: T0 });
  run(a, b);
  assert.equal(b.store.get(address)!.state, "free", "§7.1.3 stores EXPIRED as FREE");
  a.change({ ...a.store.get(address)!, state: "backup", starts: T0 });
  b.step({ kind: "send-updates", now: T0 });
  assert.deepEqual(transactions(b.outbox.filter((m) => m.type === MsgType.BNDUPD)), []);
  run(a, b);
  assert.equal(a.store.get(address)!.state, "backup");
  assert.equal(b.store.get(address)!.state, "backup");
});

Deno.test("BindingSync ignores the late ack of an update the partner's own one replaced (§7.1.5)", () => {
  // Seed 17 again: both servers expired the lease and sent EXPIRED at once. Each stored the
  // other's as FREE, then the ack of its own EXPIRED arrived and put back that update's older
  // potential expiration time as tsfp, so the FREE row looked unacked and went back.
  const [a, b] = pair();
  const address = NET_A + 21;
  a.change(activeLease(address, { starts: T0 - 400, cltt: T0 - 400, ends: T0 - 10, tstp: 0 }));
  run(a, b);
  const copy = b.store.get(address)!;
  // The primary had renewed the client a little (an update b never got), then it expired.
  a.store.put({ ...a.store.get(address)!, cltt: T0 - 300, ends: T0 - 5 });
  a.store.commit();
  a.change({ ...a.store.get(address)!, state: "expired", starts: T0 });
  b.change({ ...copy, state: "expired", starts: T0 });
  run(a, b);
  for (const n of [a, b]) assert.equal(n.store.get(address)!.state, "free", n.name);
  a.change({ ...a.store.get(address)!, state: "backup", starts: T0 });
  b.step({ kind: "send-updates", now: T0 });
  assert.deepEqual(transactions(b.outbox.filter((m) => m.type === MsgType.BNDUPD)), []);
  run(a, b);
  for (const n of [a, b]) assert.equal(n.store.get(address)!.state, "backup", n.name);
});

Deno.test("BindingSync still sends its newer change when an older partner update crosses it (§7.1.5)", () => {
  // Found by the simulation (seed 94): after a reconnect the secondary's stale copy of a lease
  // crossed the primary's queued renewal; the primary accepted it (same client: the later
  // times are kept), but dropped its queued renewal, so the secondary never learned it.
  const a = new Node("primary", "primary");
  const b = new Node("secondary", "secondary");
  a.linkUp(1);
  b.linkUp(1);
  const address = NET_A + 22;
  a.change(activeLease(address, { ends: T0 + 300 }));
  // A renewal while the first BNDUPD is in flight: queued (one BNDUPD per address).
  a.change(activeLease(address, { cltt: T0 + 100, ends: T0 + 600, tstp: T0 + 1000 }));
  assert.equal(a.sync.status.queued, 1);
  // The secondary's older copy of the same binding arrives first.
  a.receive(buildBndupd({ time: T0, xid: 50 }, [
    leaseToBindingUpdate(activeLease(address, { cltt: T0 - 50, ends: T0 + 200 })),
  ]));
  assert.equal(a.store.get(address)!.ends, T0 + 600, "the later time is kept");
  run(a, b);
  assert.equal(b.store.get(address)!.ends, T0 + 600, "the renewal reached the partner");
});

Deno.test("BindingSync does not resend an EXPIRED update the ack in the same step freed (§5.11)", () => {
  // Found by the simulation (seed 374): an update pass was waiting for window space when the
  // BNDACK of an EXPIRED update came; the ack freed the binding, but the pass read the store
  // before that write was applied and sent EXPIRED again. The stale EXPIRED reached the
  // primary after it had moved the address to BACKUP, and both then took it as theirs.
  const [a, b] = pair(1);
  const x = NET_A + 30;
  const y = NET_A + 31;
  for (const address of [x, y]) {
    const lease = activeLease(address, {
      starts: T0 - 400,
      cltt: T0 - 400,
      ends: T0 - 10,
      tstp: 0,
    });
    a.store.put(lease);
    a.store.commit();
    b.change(lease);
  }
  run(a, b);
  b.sentBndupds.length = 0;
  b.change({ ...b.store.get(x)!, state: "expired", starts: T0 });
  b.change({ ...b.store.get(y)!, state: "expired", starts: T0 });
  b.step({ kind: "send-updates", now: T0 });
  run(a, b);
  for (const address of [x, y]) assert.equal(b.store.get(address)!.state, "free");
  const sent = transactions(b.sentBndupds);
  assert.deepEqual(sent.filter((t) => t === y), [y], `${y} sent once: ${sent}`);
  assert.deepEqual(sent.filter((t) => t === x), [x], `${x} sent once: ${sent}`);
});

Deno.test("BindingSync acks an update older than its move to BACKUP and keeps the move (§5.4)", () => {
  // Seed 537: the secondary's EXPIRED crossed the primary's BACKUP move of the address.
  const [a, b] = pair();
  const address = NET_A + 40;
  a.change({ ...emptyLease(address, "backup"), starts: T0 + 100, tstp: T0 + 100 }, T0 + 100);
  a.receive(
    buildBndupd({ time: T0 + 100, xid: 60 }, [
      leaseToBindingUpdate({
        ...activeLease(address, { ends: T0 + 40, tstp: T0 + 40 }),
        state: "expired",
        starts: T0 + 50,
      }),
    ]),
    T0 + 100,
  );
  const row = a.store.get(address)!;
  assert.equal(row.state, "backup");
  assert.equal(row.tsfp, 0, "the move is still unacked");
  const ack = a.outbox.find((m) => m.type === MsgType.BNDACK && m.xid === 60)!;
  assert.deepEqual(getBindingAcks(ack), [{ assignedIpAddress: address }]);
  run(a, b);
  assert.equal(b.store.get(address)!.state, "backup");
  assert.equal(a.store.get(address)!.state, "backup");
});

Deno.test("BindingSync.isUnsent() is false for an EXPIRED update that was on the wire (§5.11)", () => {
  // Found by the simulation (seed 1592591935): the secondary's EXPIRED update was in flight
  // when the link dropped; requeued, it counted as unsent, and the secondary gave the address
  // back to the same client, but the primary had taken the EXPIRED, freed the address, and
  // gave it to another client.
  const [a, b] = pair();
  const address = NET_A + 50;
  a.change(activeLease(address, { ends: T0 - 10 }));
  run(a, b);
  a.change({ ...a.store.get(address)!, state: "expired", starts: T0 });
  assert.equal(a.sync.isUnsent(address), false, "in flight");
  a.step({ kind: "link-down", now: T0 });
  assert.equal(a.sync.status.queued, 1, "requeued");
  assert.equal(a.sync.isUnsent(address), false, "the partner may have it");
  // A change that was never sent is unsent; a new ACTIVE binding starts afresh.
  const other = NET_A + 51;
  a.change({ ...activeLease(other), state: "released" });
  assert.equal(a.sync.isUnsent(other), true);
  a.change(activeLease(address, { cltt: T0 + 5 }));
  a.change({ ...a.store.get(address)!, state: "released", cltt: T0 + 6 });
  assert.equal(a.sync.isUnsent(address), true);
});

Deno.test("BindingSync frees on the ack of an EXPIRED only that same EXPIRED (§5.11)", () => {
  // Found by the simulation (seed 2182): the secondary's EXPIRED was delayed on the wire; the
  // primary's newer (ended) ACTIVE of the same client came, expired again here, and the late
  // ack of the first EXPIRED freed the address, which then went out as FREE.
  const a = new Node("primary", "primary");
  const b = new Node("secondary", "secondary");
  a.linkUp(10);
  b.linkUp(10);
  const address = NET_A + 60;
  const first = {
    ...activeLease(address, { cltt: T0 - 500, ends: T0 - 400 }),
    state: "expired" as const,
    starts: T0 - 399,
  };
  b.change(first);
  const inFlight = b.outbox.splice(0);
  b.receive(
    buildBndupd({ time: T0, xid: 70 }, [
      leaseToBindingUpdate(activeLease(address, { cltt: T0 - 100, ends: T0 + 10, tstp: T0 + 10 })),
    ]),
    T0,
  );
  assert.equal(b.store.get(address)!.state, "active");
  b.change({ ...b.store.get(address)!, state: "expired", starts: T0 + 11 }, T0 + 11);
  for (const m of inFlight) a.receive(m, T0 + 12);
  for (const m of a.outbox.splice(0)) if (m.type === MsgType.BNDACK) b.receive(m, T0 + 12);
  assert.equal(b.store.get(address)!.state, "expired", "the later EXPIRED is not acked yet");
  const next = b.outbox.filter((m) => m.type === MsgType.BNDUPD).flatMap(getBindingUpdates);
  assert.deepEqual(
    next.map((u) => [u?.bindingStatus, u?.clientLastTransactionTime]),
    [[3, T0 - 100]], // EXPIRED, with the later transaction time
  );
});

Deno.test("BindingSync emits upddone when the partner's UPDDONE arrives (§7.5.2)", () => {
  const [a] = pair();
  const effects = a.sync.step({
    kind: "message",
    now: T0,
    message: {
      type: MsgType.UPDDONE,
      time: T0,
      xid: 3,
      additionalHeader: new Uint8Array(0),
      options: [],
    },
  });
  assert.deepEqual(effects, [{ kind: "event", event: "upddone" }]);
});

Deno.test("leaseToBindingUpdate() carries host-name, option 82 and T1/T2; the receiver stores the name (§7.1.1, §7.1.4)", () => {
  const relay = new Uint8Array([1, 3, 0x65, 0x74, 0x68]);
  const lease = activeLease(NET_A + 7, { hostname: "printer", relayInfo: relay });
  const wire = leaseToBindingUpdate(lease);
  // Table 7.1.1-2: host-name (12) and relay-agent-information (82), as DHCP options.
  assert.deepEqual(wire.clientRequestOptions, {
    magic: 0x63825363,
    options: new Uint8Array([12, 7, ...new TextEncoder().encode("printer"), 82, 5, ...relay]),
  });
  // Table 7.1.1-3: renewal (58) and rebinding (59) times of the 300 s lease.
  assert.deepEqual(wire.clientReplyOptions, {
    magic: 0x63825363,
    options: new Uint8Array([58, 4, 0, 0, 0, 150, 59, 4, 0, 0, 1, 6]),
  });
  const message = decodeFailover(
    encodeFailover(buildBndupd({ time: T0, xid: 1 }, [wire])),
  );
  const back = bindingUpdateFromWire(getBindingUpdates(message)[0]!)!;
  assert.equal(back.hostname, "printer");
  assert.deepEqual(back.relayInfo, relay);
  // A BNDUPD from ISC (no such options) leaves both unset; ABANDONED carries none (§5.11).
  assert.equal(leaseToBindingUpdate(activeLease(NET_A + 8)).clientRequestOptions, undefined);
  assert.equal(
    leaseToBindingUpdate({ ...lease, state: "abandoned" }).clientRequestOptions,
    undefined,
  );
});

Deno.test("unpackOptions() stops at END and at an option running past the block", () => {
  assert.deepEqual(
    [...unpackOptions(new Uint8Array([0, 12, 1, 0x61, 255, 82, 1, 9]))],
    [[12, new Uint8Array([0x61])]],
  );
  assert.deepEqual([...unpackOptions(new Uint8Array([12, 9, 0x61]))], []);
  assert.deepEqual([...unpackOptions(new Uint8Array([12]))], []);
});

Deno.test("BindingSync drops reject texts until its BNDACK fits with a message-digest added (§6.1, §7.2.1, §11.1)", () => {
  const node = new Node("secondary", "secondary");
  node.linkUp(10);
  // Transactions with a binding-status no table knows: each is rejected with reason 3 and a
  // text, which together would be far beyond 2048 octets.
  const options = [];
  // 121: with the texts that fit in 2048 octets unsigned, 2033, the signed BNDACK would not.
  for (const a of testAddresses(121)) {
    options.push(assignedIpAddressOption(a), bindingStatusOption(99));
  }
  const bndupd: FailoverMessage = {
    type: MsgType.BNDUPD,
    time: T0,
    xid: 7,
    additionalHeader: new Uint8Array(0),
    options,
  };
  node.step({ kind: "message", now: T0, message: bndupd });
  const ack = node.outbox.find((m) => m.type === MsgType.BNDACK);
  assert.ok(ack, "a BNDACK");
  assert.equal(getBindingAcks(ack).length, 121, "one answer per transaction (§6.3)");
  const signed = signFailover(ack, new TextEncoder().encode("secret"));
  assert.ok(signed.length <= FAILOVER_MAX_LENGTH, `${signed.length} octets signed`);
});

Deno.test("BindingSync: a pass that reaches a row in the step that recorded its BNDACK does not send it again", () => {
  const [a, b] = pair(2, { maxBindings: 2 });
  const rows = [NET_A + 1, NET_A + 2, NET_A + 3, NET_A + 200];
  const high = NET_A + 200;
  for (const address of rows) a.store.put(activeLease(address, { tsfp: 0 }));
  a.store.commit();
  // `high` goes out as a local change; a pass sends the first two rows and stops at the third
  // (window of two full). high's BNDACK comes back first: in that step the pass goes on with
  // the third row and then reaches `high`, whose tsfp the store gets only after the step.
  a.step({ kind: "lease-changed", now: T0, lease: activeLease(high, { tsfp: 0 }) });
  a.step({ kind: "send-updates", now: T0 });
  assert.deepEqual(transactions(a.sentBndupds), [high, NET_A + 1, NET_A + 2]);
  run(a, b);
  assert.deepEqual(transactions(a.sentBndupds), [high, ...rows.slice(0, 3)], "nothing twice");
  for (const address of rows) assert.equal(a.store.get(address)?.tsfp, T0 + 750);
});
