/**
 * The DHCP core as one half of a failover pair (draft-ietf-dhc-failover-12): what each state
 * serves (§9, state.ts service()), load balancing in NORMAL (§9.8.2), address ownership (FREE
 * on the primary, BACKUP on the secondary, §5.4, §9.9.2), the MCLT lease-time rule (§5.2.1),
 * reuse only after the partner's ack or PARTNER-DOWN's MCLT (§5.11, §9.4.2), and pool
 * balancing (giveToBackup). The failover endpoint is replaced by a small view over the real
 * service() table, so every answer here comes from the core and the draft's tables.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { buildRequest } from "../../lib/cli/relay_client.ts";
import { acceptUpdate } from "../../lib/failover/binding.ts";
import { type FailoverRole, service } from "../../lib/failover/state.ts";
import {
  bindingUpdateFromWire,
  leaseToBindingUpdate,
  potentialExpirationOf,
} from "../../lib/failover/sync.ts";
import { silentLogger } from "../../lib/log.ts";
import { DhcpCore, type DhcpOutcome, type FailoverView } from "../../lib/server/dhcp.ts";
import type { Arrival } from "../../lib/server/reply.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import {
  type DhcpMessage,
  DhcpType,
  dhcpTypeName,
  getLeaseTime,
  getMessageType,
} from "../../lib/wire/dhcp.ts";
import { ServerState } from "../../lib/wire/failover.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";

function ip(s: string): number {
  const v = parseIpv4(s);
  if (v === undefined) throw new TypeError(s);
  return v;
}

const SERVER = ip("192.0.2.1");
const NOW = 1_800_000_000;
const MCLT = 300;
/** Pool 192.0.2.100-103: four addresses. */
const POOL = [ip("192.0.2.100"), ip("192.0.2.101"), ip("192.0.2.102"), ip("192.0.2.103")];

const CONFIG = `
database: ":memory:"
listen:
  - interface: lan0
lease-time: { default: 3600, max: 7200, min: 60 }
subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.100 - 192.0.2.103
`;

const DIRECT: Arrival = {
  srcAddress: 0,
  srcPort: 68,
  ifindex: 7,
  ifname: "lan0",
  localAddress: SERVER,
  dstAddress: 0xffffffff,
};

/** A stand-in for the endpoint: the real service() table over a settable state. */
class View implements FailoverView {
  readonly role: FailoverRole;
  state: number = ServerState.NORMAL;
  startTimeOfState = NOW - 10_000;
  mine: (msg: DhcpMessage) => boolean = () => true;
  unsentAddresses = new Set<number>();
  constructor(role: FailoverRole) {
    this.role = role;
  }
  mclt(): number {
    return MCLT;
  }
  service(now: number) {
    return service(this.state, this.role, {
      now,
      startTimeOfState: this.startTimeOfState,
      mclt: MCLT,
    });
  }
  partnerDownSince(): number | null {
    return this.state === ServerState.PARTNER_DOWN ? this.startTimeOfState : null;
  }
  isMine(msg: DhcpMessage): boolean {
    return this.mine(msg);
  }
  unsent(address: number): boolean {
    return this.unsentAddresses.has(address);
  }
}

interface Ctx {
  core: DhcpCore;
  store: MemoryLeaseStore;
  view: View;
}

/** A core whose store holds `rows` (e.g. BACKUP addresses the primary handed over). */
function setup(role: FailoverRole, rows: Lease[] = []): Ctx {
  const config = parseConfig(CONFIG, "test.yaml");
  const store = new MemoryLeaseStore();
  for (const r of rows) store.put(r);
  store.commit();
  const view = new View(role);
  const core = new DhcpCore(config, store, { logger: silentLogger(), failover: view });
  return { core, store, view };
}

function backupRow(address: number): Lease {
  return { ...emptyLease(address, "backup"), starts: NOW - 100 };
}

function mac(n: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0, 0, n]);
}

function run(ctx: Ctx, msg: DhcpMessage, now = NOW): DhcpOutcome {
  const out = ctx.core.handle(msg, DIRECT, now);
  for (const e of out.effects) if (e.kind === "persist") ctx.store.put(e.lease);
  ctx.store.commit();
  return out;
}

function reply(out: DhcpOutcome): DhcpMessage | undefined {
  const r = out.effects.find((e) => e.kind === "reply");
  return r?.kind === "reply" ? r.message : undefined;
}

function discover(ctx: Ctx, n: number, now = NOW): DhcpOutcome {
  return run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(n), { xid: n }), now);
}

/** DISCOVER + SELECTING REQUEST; returns the ACK (or throws with the drop reason). */
function lease(ctx: Ctx, n: number, now = NOW): DhcpMessage {
  const d = discover(ctx, n, now);
  const offer = reply(d);
  assert.ok(offer, `no OFFER: ${d.dropped}`);
  const r = run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(n), {
      xid: n,
      requested: offer.yiaddr,
      serverId: SERVER,
    }),
    now,
  );
  const ack = reply(r);
  assert.ok(ack && getMessageType(ack) === DhcpType.DHCPACK, `no ACK: ${r.dropped}`);
  return ack;
}

function renew(ctx: Ctx, n: number, address: number, now: number): DhcpOutcome {
  return run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(n), { xid: n + 1000, ciaddr: address }),
    now,
  );
}

Deno.test("DhcpCore with failover answers per state (draft-12 §9, service())", async (t) => {
  for (
    const [name, state] of [
      ["STARTUP (§9.3.1)", ServerState.STARTUP],
      ["RECOVER (§9.5.1)", ServerState.RECOVER],
      ["RECOVER-WAIT (§9.6.1)", ServerState.RECOVER_WAIT],
      ["POTENTIAL-CONFLICT (§9.10.2)", ServerState.POTENTIAL_CONFLICT],
      ["PAUSED (§9.13)", ServerState.PAUSED],
      ["SHUTDOWN (§9.14.2)", ServerState.SHUTDOWN],
    ] as const
  ) {
    await t.step(`${name}: nothing, not even a renewal`, () => {
      const ctx = setup("primary");
      const ack = lease(ctx, 1);
      ctx.view.state = state;
      const d = discover(ctx, 2);
      assert.equal(d.dropped, "failover-state");
      assert.equal(renew(ctx, 1, ack.yiaddr, NOW + 100).dropped, "failover-state");
    });
  }
  await t.step("RECOVER-DONE (§9.7.1): renewals only", () => {
    const ctx = setup("primary");
    const ack = lease(ctx, 1);
    ctx.view.state = ServerState.RECOVER_DONE;
    assert.equal(discover(ctx, 2).dropped, "failover-state");
    const r = renew(ctx, 1, ack.yiaddr, NOW + 100);
    assert.equal(getMessageType(reply(r)!), DhcpType.DHCPACK);
  });
  await t.step("COMMUNICATIONS-INTERRUPTED (§9.9.2): everyone, no load balancing", () => {
    const ctx = setup("primary");
    ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
    ctx.view.mine = () => false;
    assert.ok(reply(discover(ctx, 1)));
  });
});

Deno.test("DhcpCore drops the partner's clients before its guards: they take no rate-limit tokens", () => {
  const config = parseConfig(
    `${CONFIG}rate-limit: { per-client: { rate: 1, burst: 2 } }\n`,
    "test.yaml",
  );
  const store = new MemoryLeaseStore();
  const view = new View("primary");
  const ctx = {
    core: new DhcpCore(config, store, { logger: silentLogger(), failover: view }),
    store,
    view,
  };
  view.mine = () => false;
  for (let i = 0; i < 10; i++) assert.equal(discover(ctx, 1).dropped, "load-balanced");
  assert.equal(ctx.core.counters.dropped["rate-limited"] ?? 0, 0);
  // The client's bucket is still full: its burst of two is answered, the third is limited.
  view.mine = () => true;
  assert.ok(reply(discover(ctx, 1)));
  assert.ok(reply(discover(ctx, 1)));
  assert.equal(discover(ctx, 1).dropped, "rate-limited");
});

Deno.test("DhcpCore in NORMAL answers only its hash buckets, but every renewal (§9.8.2)", () => {
  const ctx = setup("primary");
  const ack = lease(ctx, 1);
  ctx.view.mine = () => false;
  assert.equal(discover(ctx, 2).dropped, "load-balanced");
  // INIT-REBOOT is load balanced too.
  const reboot = run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 9, requested: ack.yiaddr }),
  );
  assert.equal(reboot.dropped, "load-balanced");
  // RENEWING / REBINDING: always.
  assert.equal(getMessageType(reply(renew(ctx, 1, ack.yiaddr, NOW + 60))!), DhcpType.DHCPACK);
  // A SELECTING REQUEST naming this server is answered: this server made the offer.
  ctx.view.mine = () => true;
  const offer = reply(discover(ctx, 3))!;
  ctx.view.mine = () => false;
  const sel = run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(3), {
      xid: 3,
      requested: offer.yiaddr,
      serverId: SERVER,
    }),
  );
  assert.equal(getMessageType(reply(sel)!), DhcpType.DHCPACK);
  // A RELEASE to the partner's server identifier is the partner's.
  const rel = run(
    ctx,
    buildRequest(DhcpType.DHCPRELEASE, mac(3), {
      xid: 4,
      ciaddr: offer.yiaddr,
      serverId: ip("192.0.2.2"),
    }),
  );
  assert.equal(rel.dropped, "other-server");
});

Deno.test("DhcpCore gives a new client at most the MCLT, and the full time once the partner acked (§5.2.1)", () => {
  const ctx = setup("primary");
  const ack = lease(ctx, 1);
  assert.equal(getLeaseTime(ack), MCLT, "first lease: the MCLT");
  const row = ctx.store.get(ack.yiaddr)!;
  assert.equal(row.ends, NOW + MCLT);
  // §5.2.1: potential-expiration-time = now + renewal interval (half the lease) + desired.
  assert.equal(row.tstp, NOW + MCLT / 2 + 3600);
  // Without the partner's ack, a renewal is still capped at the MCLT.
  let r = reply(renew(ctx, 1, ack.yiaddr, NOW + 150))!;
  assert.equal(getLeaseTime(r), MCLT);
  // The partner acked the potential expiration (the BNDACK sets tsfp).
  const acked = ctx.store.get(ack.yiaddr)!;
  ctx.store.put({ ...acked, tsfp: acked.tstp });
  ctx.store.commit();
  r = reply(renew(ctx, 1, ack.yiaddr, NOW + 300))!;
  assert.equal(getLeaseTime(r), 3600, "the acknowledged interval lets the desired time through");
});

Deno.test("DhcpCore does not carry the partner's acks of an ended binding into a new one (§5.2.1)", () => {
  // Found by the simulation (seed 18): a client released its address, the partner acked the
  // RELEASED update (and stored FREE), the client took the same address again and its first
  // renewal got the full lease on the strength of the old binding's acknowledgement.
  const ctx = setup("primary");
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const ack = lease(ctx, 1);
  const address = ack.yiaddr;
  // The partner acked the lease (tsfp), then the RELEASED update: the sync frees the address.
  ctx.store.put({ ...ctx.store.get(address)!, tsfp: ctx.store.get(address)!.tstp });
  ctx.store.commit();
  run(
    ctx,
    buildRequest(DhcpType.DHCPRELEASE, mac(1), { xid: 7, ciaddr: address, serverId: SERVER }),
  );
  const released = ctx.store.get(address)!;
  assert.equal(released.state, "released");
  ctx.store.put({ ...released, state: "free", tsfp: released.tstp });
  ctx.store.commit();
  ctx.core.resync([address]);
  // The same client again: a new binding, the MCLT, and no acknowledgement to build on.
  const again = lease(ctx, 1, NOW + 60);
  assert.equal(again.yiaddr, address);
  assert.equal(getLeaseTime(again), MCLT);
  assert.equal(ctx.store.get(address)!.tsfp, 0);
  // Its renewal before the partner acked the new binding: still at most the MCLT from now.
  const r = reply(renew(ctx, 1, address, NOW + 200))!;
  assert.equal(getLeaseTime(r), MCLT);
});

Deno.test("DhcpCore treats a request for an ended, unmarked ACTIVE binding as a new one (§5.2.1)", () => {
  // Found by the simulation (seed 4360): the primary took the secondary's update of a lease
  // that had already ended (ACTIVE, not yet marked EXPIRED here), the partner stored FREE for
  // it, and the client's request got MCLT beyond the ended binding's received time (atsfp).
  const ctx = setup("primary");
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const address = POOL[0]!;
  ctx.store.put({
    ...emptyLease(address, "active"),
    hwAddress: mac(1),
    starts: NOW - 400,
    cltt: NOW - 400,
    ends: NOW - 30,
    tsfp: NOW + 40,
    atsfp: NOW + 40,
  });
  ctx.store.commit();
  ctx.core.resync([address]);
  const r = reply(
    run(ctx, buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 5, requested: address })),
  )!;
  assert.equal(getMessageType(r), DhcpType.DHCPACK);
  assert.equal(getLeaseTime(r), MCLT);
  const row = ctx.store.get(address)!;
  assert.deepEqual([row.tsfp, row.atsfp, row.starts], [0, 0, NOW]);
});

Deno.test("DhcpCore does not ACK an offer whose binding ended and was told to the partner (§5.11)", () => {
  // Found by the simulation (seed 1592590593): the secondary offered a client the address of
  // its current binding (the primary's lease), the lease then expired and the secondary sent
  // EXPIRED, the primary freed the address and gave it to another client, and the held offer
  // still let the secondary ACK the first client's REQUEST.
  const ctx = setup("secondary", [POOL[3]!].map(backupRow));
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const address = POOL[0]!;
  ctx.store.put({
    ...emptyLease(address, "active"),
    hwAddress: mac(1),
    starts: NOW - 100,
    cltt: NOW - 100,
    ends: NOW + 2,
  });
  ctx.store.commit();
  ctx.core.resync([address]);
  assert.equal(reply(discover(ctx, 1))!.yiaddr, address, "its current binding is offered");
  for (const e of ctx.core.tick(NOW + 3)) if (e.kind === "persist") ctx.store.put(e.lease);
  ctx.store.commit();
  assert.equal(ctx.store.get(address)!.state, "expired");
  // The EXPIRED update has gone out (unsent() is false).
  const request = (now: number) => {
    const out = run(
      ctx,
      buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 1, requested: address, serverId: SERVER }),
      now,
    );
    const r = reply(out);
    return r === undefined ? `dropped ${out.dropped}` : dhcpTypeName(getMessageType(r));
  };
  assert.notEqual(request(NOW + 4), "DHCPACK");
  // Nor once the partner acked it and the sync stored FREE: FREE is the primary's (§5.4).
  ctx.store.put({ ...ctx.store.get(address)!, state: "free", starts: NOW + 4 });
  ctx.store.commit();
  ctx.core.resync([address]);
  assert.notEqual(request(NOW + 5), "DHCPACK");
});

Deno.test("DhcpCore does not ACK in NORMAL an offer of the partner's address made in PARTNER-DOWN (§9.4.2)", () => {
  // Found by the simulation (seed 1592596640): the primary in PARTNER-DOWN offered a BACKUP
  // address, the secondary came back and both went NORMAL, and the held offer let the primary
  // ACK the secondary's address while the secondary gave it to another client.
  const ctx = setup("primary", POOL.map(backupRow));
  ctx.view.state = ServerState.PARTNER_DOWN;
  ctx.view.startTimeOfState = NOW - 2 * MCLT;
  const offer = reply(discover(ctx, 1))!;
  assert.ok(POOL.includes(offer.yiaddr), "a BACKUP address, after the MCLT");
  ctx.view.state = ServerState.NORMAL;
  const out = run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(1), {
      xid: 1,
      requested: offer.yiaddr,
      serverId: SERVER,
    }),
    NOW + 1,
  );
  const r = reply(out);
  assert.ok(r === undefined || getMessageType(r) !== DhcpType.DHCPACK, out.dropped ?? "an ACK");
});

Deno.test("DhcpCore gives a RELEASE in the second of a renewal a later transaction time (§7.1.3)", () => {
  // Found by the simulation (seed 4): a client renewed and released in the same second. Both
  // BNDUPDs carried client-last-transaction-time t, so the partner rejected RELEASED over its
  // ACTIVE (time(1) wants "later than"), later its own EXPIRED was rejected over RELEASED, and
  // the address was nobody's on either server.
  const ctx = setup("primary");
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const address = lease(ctx, 1).yiaddr;
  renew(ctx, 1, address, NOW + 100);
  const renewed = ctx.store.get(address)!;
  assert.equal(renewed.cltt, NOW + 100);
  run(
    ctx,
    buildRequest(DhcpType.DHCPRELEASE, mac(1), { xid: 7, ciaddr: address, serverId: SERVER }),
    NOW + 100,
  );
  const released = ctx.store.get(address)!;
  assert.equal(released.state, "released");
  assert.equal(released.cltt, NOW + 101);
  // The partner, which holds the renewed binding, takes the RELEASED update.
  const update = bindingUpdateFromWire(leaseToBindingUpdate(released))!;
  const verdict = acceptUpdate(renewed, update, {
    role: "secondary",
    now: NOW + 100,
    inPool: true,
  });
  assert.equal(verdict.accept, true, JSON.stringify(verdict));
});

Deno.test("DhcpCore as primary allocates FREE addresses only, as secondary BACKUP only (§5.4, §9.9.2)", () => {
  const backup = [POOL[2]!, POOL[3]!];
  const primary = setup("primary", backup.map(backupRow));
  primary.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const got = [lease(primary, 1).yiaddr, lease(primary, 2).yiaddr];
  assert.deepEqual(got.sort(), [POOL[0], POOL[1]]);
  assert.equal(discover(primary, 3).dropped, "pool-exhausted", "the BACKUP ones are not its");

  const secondary = setup("secondary", backup.map(backupRow));
  secondary.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const got2 = [lease(secondary, 1).yiaddr, lease(secondary, 2).yiaddr];
  assert.deepEqual(got2.sort(), backup);
  assert.equal(discover(secondary, 3).dropped, "pool-exhausted", "FREE ones are the primary's");
});

Deno.test("DhcpCore in PARTNER-DOWN takes the partner's addresses only after the MCLT (§9.4.2)", () => {
  const ctx = setup("secondary", [backupRow(POOL[3]!)]);
  ctx.view.state = ServerState.PARTNER_DOWN;
  ctx.view.startTimeOfState = NOW;
  assert.equal(lease(ctx, 1).yiaddr, POOL[3]);
  assert.equal(discover(ctx, 2, NOW + MCLT - 1).dropped, "pool-exhausted");
  assert.equal(lease(ctx, 2, NOW + MCLT).yiaddr, POOL[0], "FREE after the MCLT");
});

Deno.test("DhcpCore stays silent, not NAK, for an address the partner may have leased (§9.9.2)", () => {
  // The secondary's BACKUP address, asked for at the primary: the secondary's lazy update
  // may not have arrived yet.
  const ctx = setup("primary", [backupRow(POOL[3]!)]);
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const out = run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(5), { xid: 5, requested: POOL[3]! }),
  );
  assert.equal(out.dropped, "partner-address");
  assert.equal(out.effects.length, 0);
});

Deno.test("DhcpCore reuses an EXPIRED or RELEASED address only after the partner's ack (§5.11)", () => {
  const ctx = setup("primary");
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  for (let n = 1; n <= 4; n++) lease(ctx, n);
  const first = ctx.store.findByHw(1, mac(1))[0]!.address;
  // Client 1 releases.
  run(ctx, buildRequest(DhcpType.DHCPRELEASE, mac(1), { xid: 7, ciaddr: first, serverId: SERVER }));
  assert.equal(ctx.store.get(first)!.state, "released");
  assert.equal(discover(ctx, 5).dropped, "pool-exhausted", "RELEASED waits for the partner");
  // The same client may have it back while the partner was not told (§5.11).
  ctx.view.unsentAddresses.add(first);
  assert.equal(reply(discover(ctx, 1))!.yiaddr, first);
  ctx.view.unsentAddresses.clear();
  ctx.core.tick(NOW + 20); // the offer's hold ends
  // The partner acks the RELEASED update: the sync stores FREE and the core re-reads it.
  ctx.store.put({ ...ctx.store.get(first)!, state: "free" });
  ctx.store.commit();
  ctx.core.resync([first]);
  assert.equal(reply(discover(ctx, 5, NOW + 30))!.yiaddr, first);
});

Deno.test("DhcpCore expiry with failover: EXPIRED, and FREE in PARTNER-DOWN after the MCLT rules (§9.4.2)", () => {
  const ctx = setup("secondary", POOL.map(backupRow));
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  const ack = lease(ctx, 1);
  // The partner acked the lease (tsfp), then never heard of its expiry (it is down).
  ctx.store.put({ ...ctx.store.get(ack.yiaddr)!, tsfp: ctx.store.get(ack.yiaddr)!.tstp });
  ctx.store.commit();
  const row = ctx.store.get(ack.yiaddr)!;
  const expired = ctx.core.tick(row.ends + 1);
  assert.deepEqual(expired.map((e) => e.kind === "persist" && e.lease.state), ["expired"]);
  for (const e of expired) if (e.kind === "persist") ctx.store.put(e.lease);
  ctx.store.commit();
  // PARTNER-DOWN since now: reusable once the MCLT has passed beyond tstp (the latest time).
  ctx.view.state = ServerState.PARTNER_DOWN;
  ctx.view.startTimeOfState = row.ends + 1;
  const at = row.tstp + MCLT;
  assert.deepEqual(ctx.core.tick(at - 1), []);
  const freed = ctx.core.tick(at);
  assert.deepEqual(
    freed.map((e) => e.kind === "persist" && [e.lease.address, e.lease.state]),
    [[ack.yiaddr, "free"]],
  );
  // The partner must hear of it even after a restart: the row stays unacked (§7.1.1).
  const free = freed[0]?.kind === "persist" ? freed[0].lease : undefined;
  assert.notEqual(potentialExpirationOf(free!), free!.tsfp);
});

Deno.test("DhcpCore.resync() learns the partner's bindings: the client keeps its address", () => {
  const ctx = setup("secondary", POOL.map(backupRow));
  // The partner granted 192.0.2.101 to client 8 (its BNDUPD was stored by the sync).
  const partnerLease: Lease = {
    ...emptyLease(POOL[1]!, "active"),
    hwAddress: mac(8),
    starts: NOW - 10,
    ends: NOW + 290,
    cltt: NOW - 10,
    atsfp: NOW + 3800,
  };
  ctx.store.put(partnerLease);
  ctx.store.commit();
  ctx.core.resync([POOL[1]!]);
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  assert.equal(reply(discover(ctx, 8))!.yiaddr, POOL[1]);
  // Its renewal here may use the potential expiration the partner told us (atsfp, §7.1.5).
  const r = reply(renew(ctx, 8, POOL[1]!, NOW + 100))!;
  assert.equal(getLeaseTime(r), 3600);
});

Deno.test("DhcpCore.place() places a lease just written without reading it back", () => {
  // The endpoint writes a partner's binding (or a BNDACK's acked times) and hands the lease to
  // the core: the allocator must see it exactly as resync() would, without the store lookup.
  const ctx = setup("primary");
  const partnerLease: Lease = {
    ...emptyLease(POOL[0]!, "active"),
    hwAddress: mac(9),
    starts: NOW - 10,
    ends: NOW + 290,
    cltt: NOW - 10,
  };
  ctx.store.put(partnerLease);
  ctx.store.commit();
  let reads = 0;
  const get = ctx.store.get.bind(ctx.store);
  ctx.store.get = (address: number) => {
    reads++;
    return get(address);
  };
  ctx.core.place(partnerLease);
  assert.equal(reads, 0, "no read of the row just written");
  ctx.store.get = get;
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  // A new client does not get the placed address (the allocator would hand out POOL[0] next);
  // client 9 is known there.
  assert.notEqual(reply(discover(ctx, 5))!.yiaddr, POOL[0]);
  assert.equal(reply(discover(ctx, 9))!.yiaddr, POOL[0]);
});

Deno.test("DhcpCore.giveToBackup() moves available FREE addresses to BACKUP, primary only (§5.4)", () => {
  const ctx = setup("primary");
  const effects = ctx.core.giveToBackup(0, 2, NOW);
  const leases = effects.flatMap((e) => e.kind === "persist" ? [e.lease] : []);
  assert.deepEqual(leases.map((l) => [l.address, l.state]), [
    [POOL[0], "backup"],
    [POOL[1], "backup"],
  ]);
  // Found by the simulation (seed 267): the primary moved an address to BACKUP, the link
  // dropped before the ack, and the primary restarted. A BACKUP row carries no new expiration
  // time, so it looked acked and no update pass ever sent it: the secondary never had the
  // address and the primary would not give it out. tstp marks it unacked (§7.1.1).
  for (const l of leases) assert.notEqual(potentialExpirationOf(l), l.tsfp, "unacked");
  // Also for a FREE row whose last binding was acked with a time still to come.
  const used = setup(
    "primary",
    POOL.map((a) => ({
      ...emptyLease(a, "free"),
      hwAddress: mac(9),
      tstp: NOW + 5000,
      tsfp: NOW + 5000,
    })),
  );
  const moved = used.core.giveToBackup(0, 1, NOW).flatMap((e) =>
    e.kind === "persist" ? [e.lease] : []
  );
  assert.equal(moved.length, 1);
  assert.notEqual(potentialExpirationOf(moved[0]!), moved[0]!.tsfp, "unacked");
  for (const l of leases) ctx.store.put(l);
  ctx.store.commit();
  assert.deepEqual(ctx.core.utilisation(), [
    { subnet: "192.0.2.0/24", size: 4, free: 4, backup: 2 },
  ]);
  // The primary no longer hands them out.
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  assert.deepEqual([lease(ctx, 1).yiaddr, lease(ctx, 2).yiaddr].sort(), [POOL[2], POOL[3]]);
  assert.deepEqual(setup("secondary").core.giveToBackup(0, 2, NOW), []);
});

Deno.test("DhcpCore with failover reclaims a long-declined address through RESET when the pool is empty (§5.11 note 3)", () => {
  const ctx = setup("primary");
  ctx.view.state = ServerState.COMMUNICATIONS_INTERRUPTED;
  for (const a of POOL) {
    ctx.store.put({ ...emptyLease(a, "abandoned"), starts: NOW - 700, ends: NOW + 80_000 });
  }
  ctx.store.commit();
  const fresh = new DhcpCore(parseConfig(CONFIG, "test.yaml"), ctx.store, {
    logger: silentLogger(),
    failover: ctx.view,
  });
  const out = fresh.handle(buildRequest(DhcpType.DHCPDISCOVER, mac(9), { xid: 9 }), DIRECT, NOW);
  // No offer yet: RESET is freed by the partner's ack, not by this server alone.
  assert.equal(out.dropped, "pool-exhausted");
  assert.deepEqual(
    out.effects.map((e) => e.kind === "persist" && [e.lease.address, e.lease.state]),
    [[POOL[0], "reset"]],
  );
});
