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
import { DhcpShell, type LeaseChange } from "../../lib/server/shell.ts";
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

function setup(onLeasesCommitted?: (changes: LeaseChange[]) => void) {
  const store = new ControlledStore();
  const core = new DhcpCore(CONFIG, store, { logger: silentLogger() });
  const transport = new FakeTransport();
  const shell = new DhcpShell({
    core,
    store,
    transports: [transport],
    logger: silentLogger(),
    commitDelayMs: 1000,
    commitBatch: 100,
    now: () => 1_800_000_000,
    tickSeconds: 3600,
    ...(onLeasesCommitted ? { onLeasesCommitted } : {}),
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

/** Lets every sync started so far finish, and the replies waiting on them go out. */
async function syncAll(store: ControlledStore): Promise<void> {
  for (let i = 0; i < 5; i++) {
    for (const s of store.syncs.splice(0)) s.resolve();
    await settle();
  }
}

Deno.test("DhcpShell reports each committed lease with the row it replaced, not a rolled-back one", async () => {
  const seen: LeaseChange[][] = [];
  const { store, transport, shell } = setup((changes) => seen.push(changes));
  try {
    shell.trackPrevious = true;
    discoverThenRequest(transport);
    await syncAll(store);
    assert.equal(seen.length, 1, "one COMMIT, one call");
    const [first] = seen[0] as [LeaseChange];
    assert.equal(first.before, undefined, "the address had no row");
    assert.equal(first.after.state, "active");
    // A renewal: the row before is the lease just committed.
    discoverThenRequest(transport);
    await syncAll(store);
    assert.equal(seen.length, 2);
    const [second] = seen[1] as [LeaseChange];
    assert.equal(second.before?.state, "active");
    assert.equal(second.before?.address, first.after.address);
    // A failed commit reports nothing.
    store.failCommit = true;
    const hw = new Uint8Array([2, 0, 0, 0, 0, 9]);
    transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, hw, { xid: 9 })));
    const offer = decodeDhcp(transport.sent.at(-1)?.data as Uint8Array);
    transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPREQUEST, hw, {
      xid: 9,
      requested: offer.yiaddr,
      serverId: getServerId(offer) as number,
    })));
    await syncAll(store);
    assert.equal(seen.length, 2);
    // Without trackPrevious the row before is not read.
    store.failCommit = false;
    shell.trackPrevious = false;
    discoverThenRequest(transport);
    await syncAll(store);
    assert.equal(seen.length, 3);
    assert.equal((seen[2] as LeaseChange[])[0]?.before, undefined);
  } finally {
    const stopping = shell.stop();
    await syncAll(store);
    await stopping;
  }
});

Deno.test("DhcpShell sends packets to the core it was last given", async () => {
  const { store, transport, shell } = setup();
  try {
    const other = new DhcpCore(
      parseConfig(
        `database: ":memory:"
listen: [{interface: lan0}]
subnets:
  - subnet: 192.0.2.0/24
    pools: [{range: 192.0.2.200 - 192.0.2.210}]
`,
        "other.yaml",
      ),
      store,
      { logger: silentLogger() },
    );
    shell.core = other;
    assert.equal(shell.core, other);
    transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, MAC, { xid: 5 })));
    const offer = decodeDhcp(transport.sent.at(-1)?.data as Uint8Array);
    assert.equal(offer.yiaddr, 0xc00002c8, "offered from the new core's pool (192.0.2.200)");
    assert.equal(other.counters.received.DHCPDISCOVER, 1);
  } finally {
    const stopping = shell.stop();
    for (const s of store.syncs) s.resolve();
    await stopping;
  }
});
