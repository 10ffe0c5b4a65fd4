import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { buildRequest } from "../../lib/cli/relay_client.ts";
import { silentLogger } from "../../lib/log.ts";
import { DECLINE_HOLD_SECONDS, DhcpCore, type DhcpOutcome } from "../../lib/server/dhcp.ts";
import type { Arrival } from "../../lib/server/reply.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import {
  BROADCAST_FLAG,
  decodeDhcp,
  type DhcpMessage,
  DhcpType,
  encodeDhcp,
  getLeaseTime,
  getMessage,
  getMessageType,
  getRebindingTime,
  getRenewalTime,
  getRouters,
  getServerId,
  getSubnetMask,
  Opt,
} from "../../lib/wire/dhcp.ts";
import { formatIpv4, parseIpv4 } from "../../lib/wire/ip.ts";

function ip(s: string): number {
  const v = parseIpv4(s);
  if (v === undefined) throw new TypeError(s);
  return v;
}

const SERVER = ip("192.0.2.1");
const RELAY = ip("198.51.100.1");
const NOW = 1_800_000_000;

// Two subnets: one on the server's own link (192.0.2.0/24), one behind a relay.
const CONFIG = `
database: ":memory:"
authoritative: true
listen:
  - interface: lan0
lease-time: { default: 600, max: 3600, min: 120 }
offer-hold: 10
options:
  domain-name-servers: [203.0.113.53]
subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.100 - 192.0.2.102
    options:
      routers: [192.0.2.1]
    reservations:
      - hw-address: 02:00:00:00:00:99
        address: 192.0.2.50
        hostname: printer
  - subnet: 198.51.100.0/24
    pools:
      - range: 198.51.100.10 - 198.51.100.20
    options:
      routers: [198.51.100.1]
`;

function setup(extra = "") {
  const config = parseConfig(CONFIG + extra, "test.yaml");
  const store = new MemoryLeaseStore();
  const core = new DhcpCore(config, store, { logger: silentLogger() });
  return { config, store, core };
}

const DIRECT: Arrival = {
  srcAddress: 0,
  srcPort: 68,
  ifindex: 7,
  ifname: "lan0",
  localAddress: SERVER,
  dstAddress: 0xffffffff,
};

const RELAYED: Arrival = {
  srcAddress: RELAY,
  srcPort: 67,
  ifindex: 7,
  ifname: "lan0",
  localAddress: SERVER,
  dstAddress: SERVER,
};

function mac(n: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0, 0, n]);
}

/** Runs the core and applies its persist effects the way the shell does. */
function run(
  ctx: { core: DhcpCore; store: MemoryLeaseStore },
  msg: DhcpMessage,
  arrival: Arrival,
  now = NOW,
): DhcpOutcome {
  const out = ctx.core.handle(msg, arrival, now);
  for (const e of out.effects) if (e.kind === "persist") ctx.store.put(e.lease);
  ctx.store.commit();
  return out;
}

function replyOf(out: DhcpOutcome): DhcpMessage {
  const r = out.effects.find((e) => e.kind === "reply");
  assert.ok(r && r.kind === "reply", `expected a reply, got ${JSON.stringify(out.dropped)}`);
  return r.message;
}

/** DISCOVER then REQUEST; returns the ACK. */
function lease(
  ctx: { core: DhcpCore; store: MemoryLeaseStore },
  n: number,
  arrival = DIRECT,
  now = NOW,
): DhcpMessage {
  const giaddr = arrival === RELAYED ? RELAY : 0;
  const offer = replyOf(
    run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(n), { xid: n, giaddr }), arrival, now),
  );
  return replyOf(run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(n), {
      xid: n,
      giaddr,
      requested: offer.yiaddr,
      serverId: getServerId(offer) as number,
    }),
    arrival,
    now,
  ));
}

Deno.test("DhcpCore answers DISCOVER with an OFFER from the arrival link's pool (RFC 2131 §4.3.1)", () => {
  const ctx = setup();
  const out = run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 }), DIRECT);
  const offer = replyOf(out);
  assert.equal(getMessageType(offer), DhcpType.DHCPOFFER);
  assert.equal(formatIpv4(offer.yiaddr), "192.0.2.100");
  assert.equal(getServerId(offer), SERVER);
  assert.equal(getLeaseTime(offer), 600);
  assert.equal(getRenewalTime(offer), 300);
  assert.equal(getRebindingTime(offer), 525);
  assert.equal(getSubnetMask(offer), ip("255.255.255.0"));
  assert.deepEqual(getRouters(offer), [SERVER]);
  // An offer is not a lease: nothing is written.
  assert.equal(out.effects.filter((e) => e.kind === "persist").length, 0);
  assert.equal(ctx.store.get(offer.yiaddr), undefined);
});

Deno.test("DhcpCore offers the same address to a retransmitted DISCOVER and another to a second client", () => {
  const ctx = setup();
  const a1 = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 }), DIRECT));
  const a2 = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 2 }), DIRECT));
  const b = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(2), { xid: 3 }), DIRECT));
  assert.equal(a1.yiaddr, a2.yiaddr);
  assert.notEqual(a1.yiaddr, b.yiaddr);
});

Deno.test("DhcpCore persists the lease before the ACK, and the ACK waits for the commit", () => {
  const ctx = setup();
  const offer = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 }), DIRECT));
  const out = ctx.core.handle(
    buildRequest(DhcpType.DHCPREQUEST, mac(1), {
      xid: 1,
      requested: offer.yiaddr,
      serverId: SERVER,
      hostname: "laptop",
    }),
    DIRECT,
    NOW,
  );
  assert.deepEqual(out.effects.map((e) => e.kind), ["persist", "reply"]);
  const [persist, reply] = out.effects;
  assert.ok(persist?.kind === "persist" && reply?.kind === "reply");
  assert.equal(reply.afterCommit, true);
  assert.equal(getMessageType(reply.message), DhcpType.DHCPACK);
  assert.equal(persist.lease.state, "active");
  assert.equal(persist.lease.address, offer.yiaddr);
  assert.equal(persist.lease.hostname, "laptop");
  assert.equal(persist.lease.starts, NOW);
  assert.equal(persist.lease.ends, NOW + 600);
  assert.equal(persist.lease.cltt, NOW);
});

Deno.test("DhcpCore stays silent and frees its offer when the client chose another server", () => {
  const ctx = setup();
  const offer = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 }), DIRECT));
  const out = run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(1), {
      xid: 1,
      requested: ip("192.0.2.200"),
      serverId: ip("192.0.2.2"),
    }),
    DIRECT,
  );
  assert.equal(out.dropped, "other-server");
  assert.equal(out.effects.length, 0);
  // The freed address goes back to the pool (after the fresh ones).
  const b = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(2), { xid: 2 }), DIRECT));
  const c = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(3), { xid: 3 }), DIRECT));
  const d = replyOf(run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(4), { xid: 4 }), DIRECT));
  assert.deepEqual(
    [b.yiaddr, c.yiaddr, d.yiaddr].map(formatIpv4),
    ["192.0.2.101", "192.0.2.102", formatIpv4(offer.yiaddr)],
  );
});

Deno.test("DhcpCore INIT-REBOOT: ACK its own binding, NAK a wrong network or another client's address", async (t) => {
  await t.step("its own binding is confirmed", () => {
    const ctx = setup();
    const ack = lease(ctx, 1);
    const out = run(
      ctx,
      buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 9, requested: ack.yiaddr }),
      DIRECT,
      NOW + 60,
    );
    assert.equal(getMessageType(replyOf(out)), DhcpType.DHCPACK);
    assert.equal(ctx.store.get(ack.yiaddr)?.starts, NOW, "a renewal keeps its start time");
    assert.equal(ctx.store.get(ack.yiaddr)?.ends, NOW + 60 + 600);
  });
  await t.step("an address from another network is NAKed when authoritative (§4.3.2)", () => {
    const ctx = setup();
    const out = run(
      ctx,
      buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 9, requested: ip("203.0.113.9") }),
      DIRECT,
    );
    const nak = replyOf(out);
    assert.equal(getMessageType(nak), DhcpType.DHCPNAK);
    assert.equal(getMessage(nak), "Address is not on this network");
    assert.equal(nak.yiaddr, 0);
    const r = out.effects[0];
    assert.ok(r?.kind === "reply");
    assert.equal(r.to.address, 0xffffffff, "a NAK to a direct client is broadcast");
  });
  await t.step("the same request is ignored when not authoritative", () => {
    const config = parseConfig(CONFIG.replace("authoritative: true", "authoritative: false"), "x");
    const store = new MemoryLeaseStore();
    const core = new DhcpCore(config, store, { logger: silentLogger() });
    const out = run(
      { core, store },
      buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 9, requested: ip("203.0.113.9") }),
      DIRECT,
    );
    assert.equal(out.effects.length, 0);
    assert.equal(out.dropped, "not-ours");
  });
  await t.step("another client's address is NAKed", () => {
    const ctx = setup();
    const ack = lease(ctx, 1);
    const out = run(
      ctx,
      buildRequest(DhcpType.DHCPREQUEST, mac(2), { xid: 9, requested: ack.yiaddr }),
      DIRECT,
    );
    assert.equal(getMessageType(replyOf(out)), DhcpType.DHCPNAK);
  });
  await t.step(
    "a free pool address is granted to an unknown client (server lost its database)",
    () => {
      const ctx = setup();
      const out = run(
        ctx,
        buildRequest(DhcpType.DHCPREQUEST, mac(5), { xid: 9, requested: ip("192.0.2.102") }),
        DIRECT,
      );
      assert.equal(getMessageType(replyOf(out)), DhcpType.DHCPACK);
      assert.equal(ctx.store.get(ip("192.0.2.102"))?.state, "active");
    },
  );
});

Deno.test("DhcpCore RENEWING: unicast ACK to ciaddr extends the lease", () => {
  const ctx = setup();
  const ack = lease(ctx, 1);
  const renew = buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 5, ciaddr: ack.yiaddr });
  const out = run(
    ctx,
    renew,
    { ...DIRECT, srcAddress: ack.yiaddr, dstAddress: SERVER },
    NOW + 300,
  );
  const r = out.effects.find((e) => e.kind === "reply");
  assert.ok(r?.kind === "reply");
  assert.equal(getMessageType(r.message), DhcpType.DHCPACK);
  assert.equal(r.to.address, ack.yiaddr);
  assert.equal(r.to.port, 68);
  assert.equal(r.message.yiaddr, ack.yiaddr);
  assert.equal(ctx.store.get(ack.yiaddr)?.ends, NOW + 300 + 600);
});

Deno.test("DhcpCore keeps the client's host name across a renewal without option 12", () => {
  const ctx = setup();
  const offer = replyOf(
    run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(3), { xid: 3, hostname: "laptop" }), DIRECT),
  );
  run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(3), {
      xid: 4,
      hostname: "laptop",
      requested: offer.yiaddr,
      serverId: SERVER,
    }),
    DIRECT,
  );
  assert.equal(ctx.store.get(offer.yiaddr)?.hostname, "laptop");
  const renew = buildRequest(DhcpType.DHCPREQUEST, mac(3), { xid: 5, ciaddr: offer.yiaddr });
  replyOf(run(ctx, renew, { ...DIRECT, srcAddress: offer.yiaddr, dstAddress: SERVER }, NOW + 300));
  assert.equal(ctx.store.get(offer.yiaddr)?.hostname, "laptop");
  // Another client on the address later does not inherit the name.
  run(
    ctx,
    buildRequest(DhcpType.DHCPRELEASE, mac(3), { xid: 6, ciaddr: offer.yiaddr, serverId: SERVER }),
    DIRECT,
    NOW + 301,
  );
  const other = buildRequest(DhcpType.DHCPREQUEST, mac(4), { xid: 7, requested: offer.yiaddr });
  replyOf(run(ctx, other, DIRECT, NOW + 302));
  assert.equal(ctx.store.get(offer.yiaddr)?.hostname, null);
});

Deno.test("DhcpCore keeps cltt at the request's time however often a client renews in one second", () => {
  const ctx = setup();
  const ack = lease(ctx, 6);
  // 20: within the per-client rate limit's burst (32).
  for (let i = 0; i < 20; i++) {
    const renew = buildRequest(DhcpType.DHCPREQUEST, mac(6), { xid: 100 + i, ciaddr: ack.yiaddr });
    replyOf(run(ctx, renew, { ...DIRECT, srcAddress: ack.yiaddr, dstAddress: SERVER }, NOW + 5));
  }
  // A cltt ahead of the clock would reorder the partner's updates (draft-12 §7.1.3).
  assert.equal(ctx.store.get(ack.yiaddr)?.cltt, NOW + 5);
});

Deno.test("DhcpCore RELEASE frees the address; a returning client gets it back", () => {
  const ctx = setup();
  const ack = lease(ctx, 1);
  const out = run(
    ctx,
    buildRequest(DhcpType.DHCPRELEASE, mac(1), { xid: 6, ciaddr: ack.yiaddr, serverId: SERVER }),
    DIRECT,
    NOW + 10,
  );
  assert.equal(out.effects.filter((e) => e.kind === "reply").length, 0);
  const l = ctx.store.get(ack.yiaddr);
  assert.equal(l?.state, "released");
  assert.equal(l?.ends, NOW + 10);
  // RFC 2131 §4.3.1: the client's previous address is preferred.
  const again = lease(ctx, 1, DIRECT, NOW + 20);
  assert.equal(again.yiaddr, ack.yiaddr);
});

Deno.test("DhcpCore ignores a RELEASE for another client's address", () => {
  const ctx = setup();
  const ack = lease(ctx, 1);
  const out = run(
    ctx,
    buildRequest(DhcpType.DHCPRELEASE, mac(2), { xid: 6, ciaddr: ack.yiaddr, serverId: SERVER }),
    DIRECT,
  );
  assert.equal(out.dropped, "not-ours");
  assert.equal(ctx.store.get(ack.yiaddr)?.state, "active");
});

Deno.test("DhcpCore DECLINE abandons the address without client identity, and reuses it after the hold", () => {
  const ctx = setup();
  const ack = lease(ctx, 1);
  run(
    ctx,
    buildRequest(DhcpType.DHCPDECLINE, mac(1), { xid: 7, requested: ack.yiaddr, serverId: SERVER }),
    DIRECT,
    NOW + 1,
  );
  const l = ctx.store.get(ack.yiaddr);
  assert.equal(l?.state, "abandoned");
  assert.equal(l?.hwAddress.length, 0);
  assert.equal(l?.clientId, null);
  // The declining client gets a different address.
  const next = lease(ctx, 1, DIRECT, NOW + 2);
  assert.notEqual(next.yiaddr, ack.yiaddr);
  const states = (now: number) =>
    ctx.core.tick(now).flatMap((e) =>
      e.kind === "persist" && e.lease.address === ack.yiaddr ? [e.lease.state] : []
    );
  assert.deepEqual(states(NOW + 1 + DECLINE_HOLD_SECONDS), []);
  assert.deepEqual(states(NOW + 2 + DECLINE_HOLD_SECONDS), ["free"]);
});

Deno.test("DhcpCore tick() expires leases at their end and holds offers only offer-hold seconds", () => {
  const ctx = setup();
  const ack = lease(ctx, 1);
  assert.deepEqual(ctx.core.tick(NOW + 600), [], "not at the end second itself");
  const effects = ctx.core.tick(NOW + 601);
  assert.equal(effects.length, 1);
  const e = effects[0];
  assert.ok(e?.kind === "persist");
  assert.equal(e.lease.state, "expired");
  assert.equal(e.lease.address, ack.yiaddr);

  // Offers: three clients take the three addresses; a fourth gets nothing until a hold lapses
  // (offer-limit 100: offers may hold the whole pool; tests/server/dhcp_abuse_test.ts has the cap).
  const ctx2 = setup("offer-limit: 100\n");
  replyOf(run(ctx2, buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 }), DIRECT));
  replyOf(run(ctx2, buildRequest(DhcpType.DHCPDISCOVER, mac(2), { xid: 2 }), DIRECT));
  replyOf(run(ctx2, buildRequest(DhcpType.DHCPDISCOVER, mac(3), { xid: 3 }), DIRECT));
  const none = run(ctx2, buildRequest(DhcpType.DHCPDISCOVER, mac(4), { xid: 4 }), DIRECT);
  assert.equal(none.dropped, "pool-exhausted");
  ctx2.core.tick(NOW + 10);
  const later = run(
    ctx2,
    buildRequest(DhcpType.DHCPDISCOVER, mac(4), { xid: 5 }),
    DIRECT,
    NOW + 10,
  );
  assert.equal(getMessageType(replyOf(later)), DhcpType.DHCPOFFER);
});

Deno.test("DhcpCore gives a reserved client its address, and no one else", () => {
  const ctx = setup();
  const ack = lease(ctx, 0x99);
  assert.equal(formatIpv4(ack.yiaddr), "192.0.2.50");
  assert.equal(ctx.store.get(ack.yiaddr)?.hostname, "printer");
  const out = run(
    ctx,
    buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 9, requested: ip("192.0.2.50") }),
    DIRECT,
  );
  assert.equal(getMessageType(replyOf(out)), DhcpType.DHCPNAK);
});

Deno.test("DhcpCore chooses the subnet from giaddr and replies to the relay on port 67", () => {
  const ctx = setup();
  const discover = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1, giaddr: RELAY });
  const agent = new Uint8Array([1, 4, 0x65, 0x74, 0x68, 0x31]); // circuit id "eth1"
  discover.options.set(Opt.RELAY_AGENT_INFO, agent);
  const out = run(ctx, discover, RELAYED);
  const r = out.effects[0];
  assert.ok(r?.kind === "reply");
  assert.equal(formatIpv4(r.message.yiaddr), "198.51.100.10");
  assert.equal(r.to.address, RELAY);
  assert.equal(r.to.port, 67);
  assert.deepEqual(r.message.options.get(Opt.RELAY_AGENT_INFO), agent, "option 82 echoed");
  assert.deepEqual(getRouters(r.message), [ip("198.51.100.1")]);
});

Deno.test("DhcpCore direct replies: broadcast when asked, else unicast to chaddr on the arrival interface", () => {
  const ctx = setup();
  const withFlag = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 });
  withFlag.flags = BROADCAST_FLAG;
  const a = run(ctx, withFlag, DIRECT).effects[0];
  assert.ok(a?.kind === "reply");
  assert.equal(a.to.address, 0xffffffff);
  assert.equal(a.to.ifindex, 7);
  const b = run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(2), { xid: 2 }), DIRECT).effects[0];
  assert.ok(b?.kind === "reply");
  assert.equal(b.to.address, b.message.yiaddr);
  assert.equal(b.to.ifindex, 7);
  assert.deepEqual(b.to.hwAddress, mac(2));
});

Deno.test("DhcpCore honours the requested address when free and clamps the requested lease time", () => {
  const ctx = setup();
  const d = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1, requested: ip("192.0.2.102") });
  d.options.set(Opt.LEASE_TIME, new Uint8Array([0, 1, 0, 0])); // 65536 s > max
  const offer = replyOf(run(ctx, d, DIRECT));
  assert.equal(formatIpv4(offer.yiaddr), "192.0.2.102");
  assert.equal(getLeaseTime(offer), 3600);
  const short = buildRequest(DhcpType.DHCPDISCOVER, mac(2), { xid: 2 });
  short.options.set(Opt.LEASE_TIME, new Uint8Array([0, 0, 0, 5]));
  assert.equal(getLeaseTime(replyOf(run(ctx, short, DIRECT))), 120);
});

Deno.test("DhcpCore INFORM: an ACK with configuration, no address and no lease time (§4.3.5)", () => {
  const ctx = setup();
  const inform = buildRequest(DhcpType.DHCPINFORM, mac(1), { xid: 1, ciaddr: ip("192.0.2.9") });
  const out = run(ctx, inform, { ...DIRECT, srcAddress: ip("192.0.2.9"), dstAddress: SERVER });
  const r = out.effects[0];
  assert.ok(r?.kind === "reply");
  assert.equal(getMessageType(r.message), DhcpType.DHCPACK);
  assert.equal(r.message.yiaddr, 0);
  assert.equal(getLeaseTime(r.message), undefined);
  assert.equal(r.to.address, ip("192.0.2.9"));
  assert.equal(out.effects.filter((e) => e.kind === "persist").length, 0);
});

Deno.test("DhcpCore drops what it cannot place: no subnet, replies, no message type", () => {
  const ctx = setup();
  const lost = run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 }), {
    ...DIRECT,
    ifname: "wan0",
    localAddress: ip("203.0.113.1"),
  });
  assert.equal(lost.dropped, "no-subnet");
  const reply = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 });
  reply.op = 2;
  assert.equal(run(ctx, reply, DIRECT).dropped, "not-a-request");
  const bare = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1 });
  bare.options.delete(Opt.MESSAGE_TYPE);
  assert.equal(run(ctx, bare, DIRECT).dropped, "no-message-type");
});

Deno.test("DhcpCore rebuilds its free pool from the store on start", () => {
  const ctx = setup();
  const a = lease(ctx, 1);
  const b = lease(ctx, 2);
  const core2 = new DhcpCore(ctx.config, ctx.store, { logger: silentLogger() });
  const c = replyOf(
    run(
      { core: core2, store: ctx.store },
      buildRequest(DhcpType.DHCPDISCOVER, mac(3), { xid: 3 }),
      DIRECT,
    ),
  );
  assert.ok(![a.yiaddr, b.yiaddr].includes(c.yiaddr));
  // The returning client is offered its binding.
  const again = replyOf(
    run(
      { core: core2, store: ctx.store },
      buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 4 }),
      DIRECT,
    ),
  );
  assert.equal(again.yiaddr, a.yiaddr);
});

Deno.test("DhcpCore selects the subnet by RFC 3527 link selection and RFC 3011 subnet selection", async (t) => {
  await t.step("option 82 sub-option 5 (link selection) overrides giaddr", () => {
    const ctx = setup();
    const d = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1, giaddr: RELAY });
    // Relay agent information: sub-option 5, length 4, 192.0.2.0.
    d.options.set(Opt.RELAY_AGENT_INFO, new Uint8Array([5, 4, 192, 0, 2, 0]));
    const offer = replyOf(run(ctx, d, RELAYED));
    assert.equal(formatIpv4(offer.yiaddr), "192.0.2.100");
  });
  await t.step("option 118 (subnet selection) overrides giaddr and the arrival link", () => {
    const ctx = setup();
    const d = buildRequest(DhcpType.DHCPDISCOVER, mac(2), { xid: 2 });
    d.options.set(Opt.SUBNET_SELECTION, new Uint8Array([198, 51, 100, 0]));
    const offer = replyOf(run(ctx, d, DIRECT));
    assert.equal(formatIpv4(offer.yiaddr), "198.51.100.10");
  });
  await t.step("a selection outside every subnet is dropped", () => {
    const ctx = setup();
    const d = buildRequest(DhcpType.DHCPDISCOVER, mac(3), { xid: 3, giaddr: RELAY });
    d.options.set(Opt.SUBNET_SELECTION, new Uint8Array([203, 0, 113, 0]));
    assert.equal(run(ctx, d, RELAYED).dropped, "no-subnet");
  });
});

Deno.test("DhcpCore: a lease it writes shares no bytes with the datagram it came from", () => {
  const ctx = setup();
  const id = Uint8Array.of(0xff, 1, 2, 3, 4);
  const offer = replyOf(
    run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(9), { xid: 9, clientId: id }), DIRECT),
  );
  // Decoded from bytes, as the server does: chaddr and option values are views into them.
  const datagram = encodeDhcp(
    buildRequest(DhcpType.DHCPREQUEST, mac(9), {
      xid: 9,
      clientId: id,
      requested: offer.yiaddr,
      serverId: getServerId(offer) as number,
    }),
  );
  const out = ctx.core.handle(decodeDhcp(datagram), DIRECT, NOW);
  const persisted = out.effects.find((e) => e.kind === "persist");
  assert.ok(persisted && persisted.kind === "persist");
  datagram.fill(0);
  assert.deepEqual(persisted.lease.hwAddress, mac(9));
  assert.deepEqual(persisted.lease.clientId, id);
});
