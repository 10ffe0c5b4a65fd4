/**
 * DhcpShell's ordering contract with a fake transport and a controllable store: a DHCPACK
 * leaves only after its lease is committed and synced, and a store that refuses writes or
 * commits gets no ACK out (nothing unrecorded is acknowledged).
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { buildRequest } from "../../lib/cli/relay_client.ts";
import { StoreError } from "../../lib/errors.ts";
import { silentLogger } from "../../lib/log.ts";
import { DhcpCore } from "../../lib/server/dhcp.ts";
import { DhcpShell, SYNC_INTERVAL_MS } from "../../lib/server/shell.ts";
import type { Received, SendTarget, Transport } from "../../lib/server/transport.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import type { Lease } from "../../lib/store/store.ts";
import {
  decodeDhcp,
  DhcpType,
  encodeDhcp,
  getMessageType,
  getServerId,
} from "../../lib/wire/dhcp.ts";

const CONFIG = parseConfig(
  `database: ":memory:"
listen: [{interface: lan0}]
subnets:
  - subnet: 192.0.2.0/24
    pools: [{range: 192.0.2.100 - 192.0.2.150}]
`,
  "test.yaml",
);

/** A store whose writes, commits and syncs the test controls. */
class ControlledStore extends MemoryLeaseStore {
  failPut = false;
  failCommit = false;
  syncs: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  override put(lease: Lease): void {
    if (this.failPut) throw new StoreError("Cannot write lease database: disk full");
    super.put(lease);
  }
  override commit(): number {
    if (this.failCommit) throw new StoreError("Cannot commit: disk full");
    return super.commit();
  }
  override sync(): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.syncs.push({ resolve, reject });
    return promise;
  }
}

/** A transport the test drives by hand. */
class FakeTransport implements Transport {
  readonly name = "fake";
  sent: { data: Uint8Array; to: SendTarget }[] = [];
  onPacket: ((p: Received) => void) | null = null;
  onBurstEnd: (() => void) | null = null;
  #done = Promise.withResolvers<void>();
  run(onPacket: (p: Received) => void, onBurstEnd?: () => void): Promise<void> {
    this.onPacket = onPacket;
    this.onBurstEnd = onBurstEnd ?? null;
    return this.#done.promise;
  }
  send(data: Uint8Array, to: SendTarget): boolean {
    this.sent.push({ data: data.slice(), to });
    return true;
  }
  close(): void {
    this.#done.resolve();
  }
  deliver(bytes: Uint8Array): void {
    this.onPacket?.({
      data: bytes,
      srcAddress: 0,
      srcPort: 68,
      ifindex: 3,
      ifname: "lan0",
      localAddress: 0xc0000201,
      dstAddress: 0xffffffff,
    });
    this.onBurstEnd?.();
  }
  types(): (number | undefined)[] {
    return this.sent.map((s) => getMessageType(decodeDhcp(s.data)));
  }
}

function setup(options: { commitDelayMs?: number; clockMs?: () => number } = {}) {
  const store = new ControlledStore();
  const core = new DhcpCore(CONFIG, store, { logger: silentLogger() });
  const transport = new FakeTransport();
  const shell = new DhcpShell({
    core,
    store,
    transports: [transport],
    logger: silentLogger(),
    commitDelayMs: options.commitDelayMs ?? 1000,
    commitBatch: 100,
    now: () => 1_800_000_000,
    tickSeconds: 3600,
    ...(options.clockMs ? { clockMs: options.clockMs } : {}),
  });
  shell.start();
  return { store, transport, shell };
}

const MAC = new Uint8Array([2, 0, 0, 0, 0, 1]);

function discoverThenRequest(transport: FakeTransport): void {
  transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, MAC, { xid: 1 })));
  const offer = decodeDhcp(transport.sent.at(-1)?.data as Uint8Array);
  transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPREQUEST, MAC, {
    xid: 1,
    requested: offer.yiaddr,
    serverId: getServerId(offer) as number,
  })));
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

Deno.test("DhcpShell sends the DHCPACK only after the commit and the sync that covers it", async () => {
  const { store, transport, shell } = setup();
  try {
    discoverThenRequest(transport);
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER], "OFFER at once, ACK held");
    assert.equal(store.pending, 0, "committed at the end of the burst");
    assert.equal(store.syncs.length, 1, "a sync is running");
    await settle();
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER], "still held until the sync ends");
    store.syncs[0]?.resolve();
    await settle();
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER, DhcpType.DHCPACK]);
  } finally {
    const stopping = shell.stop();
    for (const s of store.syncs) s.resolve();
    await stopping;
  }
});

Deno.test("DhcpShell withholds the ACK when the lease cannot be written, and recovers", async () => {
  const { store, transport, shell } = setup();
  try {
    store.failPut = true;
    discoverThenRequest(transport);
    await settle();
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER], "no ACK for an unwritten lease");
    assert.equal(shell.storeFailing, true);
    assert.equal(shell.counters.commitFailures, 1);
    store.failPut = false;
    discoverThenRequest(transport);
    store.syncs.at(-1)?.resolve();
    await settle();
    assert.deepEqual(transport.types().filter((t) => t === DhcpType.DHCPACK).length, 1);
    assert.equal(shell.storeFailing, false);
  } finally {
    const stopping = shell.stop();
    for (const s of store.syncs) s.resolve();
    await stopping;
  }
});

Deno.test("DhcpShell drops the ACKs of a failed commit and of a failed sync", async () => {
  const { store, transport, shell } = setup();
  try {
    store.failCommit = true;
    discoverThenRequest(transport);
    await settle();
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER]);
    assert.equal(store.get(0xc0000264), undefined, "the batch was rolled back");
    store.failCommit = false;
    discoverThenRequest(transport);
    store.syncs.at(-1)?.reject(new StoreError("Cannot sync: I/O error"));
    await settle();
    assert.equal(transport.types().includes(DhcpType.DHCPACK), false);
    assert.equal(shell.storeFailing, true);
  } finally {
    const stopping = shell.stop();
    for (const s of store.syncs) s.resolve();
    await stopping;
  }
});

function leaseAt(address: number): Lease {
  return {
    address,
    state: "active",
    htype: 1,
    hwAddress: new Uint8Array([2, 0, 0, 0, 0, address & 0xff]),
    clientId: null,
    hostname: null,
    starts: 1_800_000_000,
    ends: 1_800_000_600,
    cltt: 1_800_000_000,
    tstp: 0,
    tsfp: 0,
    atsfp: 0,
    relayInfo: null,
  };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("DhcpShell.commitNow() joins the group commit: one COMMIT and one sync for several callers", async () => {
  // draft-12 §7.1.1: a BNDACK waits until what it acknowledges is durable. Before, every
  // BNDUPD committed and synced on its own; now they share the DHCPACKs' group commit.
  const { store, shell } = setup({ commitDelayMs: 2 });
  try {
    const done: string[] = [];
    store.put(leaseAt(0xc0000264));
    const first = shell.commitNow().then(() => done.push("first"));
    store.put(leaseAt(0xc0000265));
    const second = shell.commitNow().then(() => done.push("second"));
    assert.equal(store.pending, 2, "nothing is committed at once");
    await tick(20);
    assert.equal(store.pending, 0, "one COMMIT took both writes");
    assert.equal(shell.counters.commits, 1);
    assert.equal(store.syncs.length, 1, "one sync covers both");
    assert.deepEqual(done, [], "neither resolves before the sync");
    store.syncs[0]?.resolve();
    await Promise.all([first, second]);
    assert.deepEqual(done, ["first", "second"]);
  } finally {
    const stopping = shell.stop();
    for (const s of store.syncs) s.resolve();
    await stopping;
  }
});

Deno.test("DhcpShell.commitNow() rejects when the commit or the sync fails", async () => {
  const { store, shell } = setup({ commitDelayMs: 1 });
  try {
    store.failCommit = true;
    store.put(leaseAt(0xc0000266));
    await assert.rejects(shell.commitNow(), StoreError);
    store.failCommit = false;
    store.put(leaseAt(0xc0000267));
    const synced = shell.commitNow();
    await tick(10);
    store.syncs.at(-1)?.reject(new StoreError("Cannot sync: I/O error"));
    await assert.rejects(synced, StoreError);
  } finally {
    const stopping = shell.stop();
    for (const s of store.syncs) s.resolve();
    await stopping;
  }
});

Deno.test("DhcpShell.commitSoon() commits with the next group commit and starts no sync", async () => {
  // A BNDACK's acked times need a commit but no caller waits for the disk.
  const { store, shell } = setup({ commitDelayMs: 1 });
  try {
    store.put(leaseAt(0xc0000268));
    shell.commitSoon();
    assert.equal(store.pending, 1);
    await tick(10);
    assert.equal(store.pending, 0);
    assert.equal(store.syncs.length, 0);
  } finally {
    const stopping = shell.stop();
    for (const s of store.syncs) s.resolve();
    await stopping;
  }
});

Deno.test("DhcpShell starts at most one sync per SYNC_INTERVAL_MS; the commits meanwhile share it", async () => {
  // Each fdatasync costs a thread hand-off and the kernel's flush: a busy server spaces them.
  let now = 1000;
  const { store, shell } = setup({ commitDelayMs: 0, clockMs: () => now });
  try {
    store.put(leaseAt(0xc0000270));
    const first = shell.commitNow();
    await tick(5);
    assert.equal(store.syncs.length, 1, "the first sync starts at once");
    store.syncs[0]?.resolve();
    await first;
    store.put(leaseAt(0xc0000271));
    const second = shell.commitNow();
    store.put(leaseAt(0xc0000272));
    const third = shell.commitNow();
    await tick(5);
    assert.equal(store.pending, 0, "committed at once");
    store.put(leaseAt(0xc0000273));
    const fourth = shell.commitNow();
    await tick(3 * SYNC_INTERVAL_MS);
    assert.equal(store.syncs.length, 1, "no second sync while the interval has not passed");
    now += SYNC_INTERVAL_MS;
    await tick(SYNC_INTERVAL_MS + 5);
    assert.equal(store.pending, 0);
    assert.equal(store.syncs.length, 2, "one sync for all three");
    store.syncs[1]?.resolve();
    await Promise.all([second, third, fourth]);
  } finally {
    now += 1_000_000; // a frozen clock would keep stop() waiting for the interval
    const stopping = shell.stop();
    // stop() may start one more sync: resolve until it is done (bounded).
    let done = false;
    stopping.then(() => done = true);
    for (let i = 0; i < 100 && !done; i++) {
      for (const s of store.syncs) s.resolve();
      await tick(2);
    }
    await stopping;
  }
});
