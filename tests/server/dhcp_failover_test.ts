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
import { type FailoverRole, service } from "../../lib/failover/state.ts";
import { silentLogger } from "../../lib/log.ts";
import { DhcpCore, type DhcpOutcome, type FailoverView } from "../../lib/server/dhcp.ts";
import type { Arrival } from "../../lib/server/reply.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import { type DhcpMessage, DhcpType, getLeaseTime, getMessageType } from "../../lib/wire/dhcp.ts";
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
