/**
 * DhcpShell's ordering contract with a fake transport and a controllable store: a DHCPACK
 * leaves only after its lease is committed and synced, and a store that refuses writes or
 * commits gets no ACK out (nothing unrecorded is acknowledged).
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { buildRequest } from "../../lib/cli/relay_client.ts";
import { StoreError } from "../../lib/errors.ts";
import { createLogger, silentLogger } from "../../lib/log.ts";
import { CoreLeaseView, ProtocolClock } from "../../lib/server/clock.ts";
import { DhcpCore } from "../../lib/server/dhcp.ts";
import { DhcpShell, type LeaseChange, SYNC_INTERVAL_MS } from "../../lib/server/shell.ts";
import type { Received, SendTarget, Transport } from "../../lib/server/transport.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import {
  decodeDhcp,
  type DhcpMessage,
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

/**
 * A store whose writes, commits and syncs the test controls. A failed write or commit discards
 * the whole batch, as SqliteLeaseStore does.
 */
class ControlledStore extends MemoryLeaseStore {
  failPut = false;
  failCommit = false;
  syncs: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #failedWrites = 0;
  override put(lease: Lease): void {
    this.#maybeFailWrite();
    super.put(lease);
  }
  override probe(): void {
    this.#maybeFailWrite();
    super.probe();
  }
  /** A failed write is a lost batch, even as the batch's first write (SqliteLeaseStore). */
  #maybeFailWrite(): void {
    if (!this.failPut) return;
    if (this.pending > 0) this.rollback();
    else this.#failedWrites++;
    throw new StoreError("Cannot write lease database: disk full");
  }
  override takeDiscarded(): { batches: number; addresses: number[] } {
    const lost = super.takeDiscarded();
    lost.batches += this.#failedWrites;
    this.#failedWrites = 0;
    return lost;
  }
  override commit(): number {
    if (this.failCommit) {
      this.rollback();
      throw new StoreError("Cannot commit: disk full");
    }
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
  /** How many datagrams each batch() call sent. */
  batches: number[] = [];
  batch(sends: () => void): void {
    const before = this.sent.length;
    sends();
    this.batches.push(this.sent.length - before);
  }
  close(): void {
    this.#done.resolve();
  }
  deliver(bytes: Uint8Array): void {
    this.deliverInBurst(bytes);
    this.onBurstEnd?.();
  }
  /** Delivers a datagram without ending the burst (more follow in the same read). */
  deliverInBurst(bytes: Uint8Array): void {
    this.onPacket?.({
      data: bytes,
      srcAddress: 0,
      srcPort: 68,
      ifindex: 3,
      ifname: "lan0",
      localAddress: 0xc0000201,
      dstAddress: 0xffffffff,
    });
  }
  types(): (number | undefined)[] {
    return this.sent.map((s) => getMessageType(decodeDhcp(s.data)));
  }
}

/** Clock sources the test moves by hand: `wall` may step, `mono` only runs forward. */
class FakeTime {
  wallMs = 1_800_000_000_000;
  monoMs = 5_000;
  /** Time passes: both clocks advance. */
  advance(seconds: number): void {
    this.wallMs += seconds * 1000;
    this.monoMs += seconds * 1000;
  }
  /** The system clock steps; the monotonic clock does not. */
  step(seconds: number): void {
    this.wallMs += seconds * 1000;
  }
  sources() {
    return { wallMs: () => this.wallMs, monoMs: () => this.monoMs };
  }
}

function setup(
  options: {
    logLines?: string[];
    onClockStep?: (delta: number) => void;
    onLeasesCommitted?: (changes: LeaseChange[]) => void;
    commitDelayMs?: number;
    clockMs?: () => number;
  } = {},
) {
  const store = new ControlledStore();
  let spacing = 0;
  const time = new FakeTime();
  const clock = new ProtocolClock(time.sources());
  const core = new DhcpCore(CONFIG, new CoreLeaseView(store, clock), { logger: silentLogger() });
  const transport = new FakeTransport();
  const lines = options.logLines;
  const logger = lines
    ? createLogger({ level: "info", write: (l) => lines.push(l), now: () => time.wallMs })
    : silentLogger();
  const shell = new DhcpShell({
    core,
    store,
    transports: [transport],
    logger,
    commitDelayMs: options.commitDelayMs ?? 1000,
    commitBatch: 100,
    clock,
    tickSeconds: 3600,
    ...(options.onLeasesCommitted ? { onLeasesCommitted: options.onLeasesCommitted } : {}),
    ...(options.onClockStep ? { onClockStep: options.onClockStep } : {}),
    // Unless a test is about the spacing of syncs, each reading is far past the last, so that
    // no sync waits for SYNC_INTERVAL_MS on a real timer.
    clockMs: options.clockMs ?? (() => (spacing += 1000)),
  });
  shell.start();
  return { store, transport, shell, core, time, clock };
}

const MAC = new Uint8Array([2, 0, 0, 0, 0, 1]);

function discoverThenRequest(transport: FakeTransport, mac = MAC): void {
  transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, mac, { xid: 1 })));
  const offer = decodeDhcp(transport.sent.at(-1)?.data as Uint8Array);
  transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPREQUEST, mac, {
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

Deno.test("DhcpShell sends the ACKs one sync released as one batch", async () => {
  const { store, transport, shell } = setup();
  const macs = [MAC, new Uint8Array([2, 0, 0, 0, 0, 2]), new Uint8Array([2, 0, 0, 0, 0, 3])];
  try {
    for (const [i, mac] of macs.entries()) {
      transport.deliverInBurst(encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, mac, { xid: i })));
    }
    transport.onBurstEnd?.();
    const offers = transport.sent.map((s) => decodeDhcp(s.data));
    assert.equal(offers.length, 3);
    for (const [i, mac] of macs.entries()) {
      transport.deliverInBurst(encodeDhcp(buildRequest(DhcpType.DHCPREQUEST, mac, {
        xid: i,
        requested: offers[i]?.yiaddr as number,
        serverId: getServerId(offers[i] as DhcpMessage) as number,
      })));
    }
    transport.onBurstEnd?.();
    assert.equal(store.syncs.length, 1, "one group commit, one sync");
    assert.deepEqual(transport.batches, [], "nothing released before the sync ends");
    store.syncs[0]?.resolve();
    await settle();
    assert.deepEqual(transport.batches, [3], "the three ACKs in one batch");
    assert.deepEqual(transport.types().slice(3), [
      DhcpType.DHCPACK,
      DhcpType.DHCPACK,
      DhcpType.DHCPACK,
    ]);
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

function discover(transport: FakeTransport, mac: typeof MAC, xid = 7): void {
  transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, mac, { xid })));
}

function inform(transport: FakeTransport): void {
  transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPINFORM, MAC, {
    xid: 9,
    ciaddr: 0xc0000205,
  })));
}

async function stopShell(shell: DhcpShell, store: ControlledStore): Promise<void> {
  const stopping = shell.stop();
  for (const s of store.syncs) s.resolve();
  await stopping;
}

Deno.test("DhcpShell withholds OFFERs and ACKs while the database refuses writes, still answers INFORM, and resumes once a probe succeeds", async () => {
  const { store, transport, shell, core } = setup();
  try {
    store.failCommit = true;
    discoverThenRequest(transport);
    await settle();
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER], "the ACK needs a commit");
    assert.equal(shell.storeFailing, true);
    assert.equal(shell.storeHealth.writable, false);
    assert.match(shell.storeHealth.lastError ?? "", /disk full/);
    assert.equal(shell.storeHealth.failingSince, 1_800_000_000);
    // RFC 2131 §3.1: a server MAY offer; an OFFER no ACK can follow only delays the client.
    discover(transport, new Uint8Array([2, 0, 0, 0, 0, 2]));
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER], "no OFFER while failing");
    // RFC 2131 §4.3.5: INFORM needs no lease, so it is answered.
    inform(transport);
    assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER, DhcpType.DHCPACK]);
    assert.deepEqual(shell.counters.withheld, { DHCPACK: 1, DHCPOFFER: 1 });
    assert.equal(core.counters.sent.DHCPACK, 1, "only the INFORM reply counts as sent");
    assert.equal(core.counters.sent.DHCPOFFER, 1);

    shell.tick(); // probe: the commit still fails
    assert.equal(shell.storeFailing, true);
    assert.equal(store.syncs.length, 0, "a failed probe starts no sync");
    store.failCommit = false;
    shell.tick(); // probe: commits, then waits for its sync
    assert.equal(store.syncs.length, 1);
    assert.equal(shell.storeFailing, true, "writable only once the sync succeeded too");
    store.syncs[0]?.resolve();
    await settle();
    assert.equal(shell.storeFailing, false);
    assert.equal(shell.storeHealth.failingSince, null);
    assert.equal(shell.counters.leasesCommitted, 0, "the probe wrote no lease");
    discover(transport, new Uint8Array([2, 0, 0, 0, 0, 3]));
    assert.equal(transport.types().at(-1), DhcpType.DHCPOFFER, "offers again");
  } finally {
    await stopShell(shell, store);
  }
});

Deno.test("DhcpShell expires no lease while the database refuses writes, and catches up after", async () => {
  const { store, transport, shell, time } = setup();
  try {
    const address = await leaseOne(transport, store, MAC);
    store.failCommit = true;
    discover(transport, new Uint8Array([2, 0, 0, 0, 0, 2]));
    transport.deliver(
      encodeDhcp(buildRequest(DhcpType.DHCPREQUEST, new Uint8Array([2, 0, 0, 0, 0, 2]), {
        xid: 8,
        requested: 0xc0000265,
        serverId: 0xc0000201,
      })),
    );
    assert.equal(shell.storeFailing, true);
    time.advance(3700); // past the lease's end
    shell.tick();
    assert.equal(store.get(address)?.state, "active", "expiry waits for the database");
    store.failCommit = false;
    shell.tick(); // the probe commits; recovery after its sync
    await drainSyncs(store);
    assert.equal(shell.storeFailing, false);
    shell.tick();
    assert.equal(store.get(address)?.state, "expired", "and happens once it is back");
  } finally {
    await stopShell(shell, store);
  }
});

Deno.test("DhcpShell sends no ACK that waited for a batch another writer's failed write discarded", async (t) => {
  await t.step("the failed write comes before the end of the burst", async () => {
    const { store, transport, shell } = setup();
    try {
      transport.deliver(encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, MAC, { xid: 1 })));
      const offer = decodeDhcp(transport.sent.at(-1)?.data as Uint8Array);
      transport.deliverInBurst(encodeDhcp(buildRequest(DhcpType.DHCPREQUEST, MAC, {
        xid: 1,
        requested: offer.yiaddr,
        serverId: getServerId(offer) as number,
      })));
      assert.equal(store.pending, 1, "the ACK's lease waits in the batch");
      // The failover endpoint writes a partner's binding into the same batch; it fails.
      store.failPut = true;
      assert.throws(() => store.put({ ...(store.get(offer.yiaddr) as Lease), address: 7 }));
      store.failPut = false;
      transport.onBurstEnd?.();
      for (const s of store.syncs) s.resolve();
      await settle();
      assert.deepEqual(transport.types(), [DhcpType.DHCPOFFER], "the ACK's lease was lost");
      assert.equal(store.get(offer.yiaddr), undefined);
      assert.deepEqual(shell.counters.withheld, { DHCPACK: 1 });
    } finally {
      await stopShell(shell, store);
    }
  });
  await t.step(
    "commitNow() (what a BNDACK waits for) rejects after a discarded write",
    async () => {
      const { store, shell } = setup({ commitDelayMs: 5 });
      try {
        store.failPut = true;
        assert.throws(() => store.put({ ...emptyLease(0xc0000265, "active"), ends: 1 }));
        store.failPut = false;
        // draft-12 §7.2: a BNDACK only after the binding is on stable storage.
        await assert.rejects(shell.commitNow(), StoreError);
        // The next one joins the group commit (commitDelayMs) and resolves after its sync.
        const next = shell.commitNow();
        let settled = false;
        next.then(() => settled = true, () => settled = true);
        for (let i = 0; i < 100 && !settled; i++) {
          for (const s of store.syncs) s.resolve();
          await new Promise((r) => setTimeout(r, 10));
        }
        await next;
      } finally {
        await stopShell(shell, store);
      }
    },
  );
});

Deno.test("DhcpShell logs a refusing database once, a reminder a minute, and the recovery", async () => {
  const lines: string[] = [];
  const { store, transport, shell, time } = setup({ logLines: lines });
  try {
    store.failCommit = true;
    discoverThenRequest(transport);
    for (let i = 0; i < 90; i++) {
      time.advance(1);
      shell.tick();
    }
    const errors = lines.filter((l) => l.includes("ERROR"));
    assert.equal(errors.length, 2, errors.join("\n"));
    assert.match(errors[0] as string, /Lease database refuses writes: withholding DHCPOFFER/);
    assert.match(errors[1] as string, /Lease database still refuses writes .*failures=61/);
    store.failCommit = false;
    shell.tick();
    store.syncs.at(-1)?.resolve();
    await settle();
    assert.match(
      lines.at(-1) as string,
      /WARN {2}Lease database writable again after=90s failures=91 withheld=1$/,
    );
  } finally {
    await stopShell(shell, store);
  }
});

/** Lets every sync finish, also those started by earlier syncs finishing. */
async function drainSyncs(store: ControlledStore): Promise<void> {
  for (let i = 0; i < 5; i++) {
    for (const s of store.syncs.splice(0)) s.resolve();
    await settle();
  }
}

/** Leases a client through the shell; returns its address. */
async function leaseOne(
  transport: FakeTransport,
  store: ControlledStore,
  mac: typeof MAC,
): Promise<number> {
  discoverThenRequest(transport, mac);
  await drainSyncs(store);
  const ack = decodeDhcp(transport.sent.at(-1)?.data as Uint8Array);
  assert.equal(getMessageType(ack), DhcpType.DHCPACK);
  return ack.yiaddr;
}

Deno.test("DhcpShell on a clock step: no lease expires early or lives longer, stored times follow the clock", async (t) => {
  for (const step of [86_400, -86_400]) {
    await t.step(`a step of ${step} s`, async () => {
      const lines: string[] = [];
      const told: number[] = [];
      const { store, transport, shell, time, clock } = setup({
        logLines: lines,
        onClockStep: (delta) => told.push(delta),
      });
      try {
        const address = await leaseOne(transport, store, MAC);
        const before = store.get(address) as Lease;
        assert.equal(before.ends, 1_800_003_600, "default lease time 3600 s");
        time.step(step);
        shell.tick();
        const moved = store.get(address) as Lease;
        assert.equal(moved.state, "active", "the step expired nothing");
        assert.equal(moved.ends, before.ends + step, "stored end moved with the clock");
        assert.equal(moved.starts, before.starts + step);
        assert.equal(clock.offset, step);
        assert.deepEqual(shell.clockHealth, { steps: 1, lastStepSeconds: step });
        assert.deepEqual(told, [step], "the failover endpoint is told, once");
        const logged = lines.filter((l) => l.includes("System clock stepped"));
        assert.equal(logged.length, 1);
        assert.match(logged[0] as string, new RegExp(`step=${step > 0 ? "\\+" : ""}${step}s`));
        shell.tick();
        assert.equal(lines.filter((l) => l.includes("System clock stepped")).length, 1, "once");

        // The lease ends 3600 s after the ACK in elapsed time, not a day sooner or later.
        time.advance(3599);
        shell.tick();
        assert.equal(store.get(address)?.state, "active", "not before its time");
        time.advance(2);
        shell.tick();
        assert.equal(store.get(address)?.state, "expired", "and not after");

        // A lease granted after the step is stored on the new clock.
        const other = await leaseOne(transport, store, new Uint8Array([2, 0, 0, 0, 0, 9]));
        assert.equal(store.get(other)?.ends, Math.floor(time.wallMs / 1000) + 3600);
      } finally {
        await stopShell(shell, store);
      }
    });
  }
  await t.step("offer holds are not stretched by a backward step", async () => {
    const { store, transport, shell, core, time } = setup();
    try {
      const free = core.utilisation()[0]?.free as number;
      discover(transport, MAC);
      assert.equal(core.utilisation()[0]?.free, free - 1, "the offer holds an address");
      time.step(-86_400);
      time.advance(11); // offer-hold is 10 s
      shell.tick();
      assert.equal(core.utilisation()[0]?.free, free, "released after 10 s, not a day");
    } finally {
      await stopShell(shell, store);
    }
  });
  await t.step("a step the database cannot record is retried and applied later", async () => {
    const { store, transport, shell, time, clock } = setup();
    try {
      const address = await leaseOne(transport, store, MAC);
      store.failCommit = true;
      time.step(3600);
      shell.tick();
      assert.equal(clock.offset, 0, "not applied while the move cannot be committed");
      assert.equal(store.get(address)?.ends, 1_800_003_600);
      store.failCommit = false;
      shell.tick();
      assert.equal(clock.offset, 3600);
      assert.equal(store.get(address)?.ends, 1_800_007_200);
    } finally {
      await stopShell(shell, store);
    }
  });
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
  const { store, transport, shell } = setup({ onLeasesCommitted: (changes) => seen.push(changes) });
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
