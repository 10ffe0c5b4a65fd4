/**
 * DHCP-level abuse against the pure core (README "DHCP-level abuse"): DISCOVER floods and the
 * offer limit, rate limits, REQUESTs for other clients' addresses, spoofed server
 * identifiers, oversized and option-stuffed packets, the relay allow list and giaddr spoofing.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { buildRequest } from "../../lib/cli/relay_client.ts";
import { type LogFields, type Logger, silentLogger } from "../../lib/log.ts";
import {
  ABANDONED_REUSE_AFTER,
  DhcpCore,
  type DhcpOutcome,
  type ReplyEffect,
} from "../../lib/server/dhcp.ts";
import type { Arrival } from "../../lib/server/reply.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import {
  decodeDhcp,
  type DhcpMessage,
  DhcpType,
  encodeDhcp,
  encodeIp,
  encodeU16,
  getMessageType,
  getServerId,
  Opt,
} from "../../lib/wire/dhcp.ts";
import { parseIpv4 } from "../../lib/wire/ip.ts";

function ip(s: string): number {
  const v = parseIpv4(s);
  if (v === undefined) throw new TypeError(s);
  return v;
}

const SERVER = ip("192.0.2.1");
const RELAY = ip("198.51.100.1");
const NOW = 1_800_000_000;
const POOL = 20;

// One subnet on the server's link with 20 dynamic addresses, one behind a relay.
const CONFIG = `
database: ":memory:"
authoritative: true
listen:
  - interface: lan0
lease-time: { default: 600, max: 3600, min: 120 }
offer-hold: 10
subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.100 - 192.0.2.119
    options:
      routers: [192.0.2.1]
  - subnet: 198.51.100.0/24
    pools:
      - range: 198.51.100.10 - 198.51.100.20
`;

/** A logger that keeps its warnings. */
function recordingLogger(): Logger & { warnings: { msg: string; fields?: LogFields }[] } {
  const warnings: { msg: string; fields?: LogFields }[] = [];
  return {
    ...silentLogger(),
    warn: (msg: string, fields?: LogFields) => {
      warnings.push(fields ? { msg, fields } : { msg });
    },
    warnings,
  };
}

function setup(extra = "", logger: Logger = silentLogger(), base = CONFIG) {
  const config = parseConfig(base + extra, "test.yaml");
  const store = new MemoryLeaseStore();
  const core = new DhcpCore(config, store, { logger });
  return { config, store, core };
}

type Ctx = ReturnType<typeof setup>;

const DIRECT: Arrival = {
  srcAddress: 0,
  srcPort: 68,
  ifindex: 7,
  ifname: "lan0",
  localAddress: SERVER,
  dstAddress: 0xffffffff,
};

function relayed(src = RELAY): Arrival {
  return { ...DIRECT, srcAddress: src, srcPort: 67, dstAddress: SERVER };
}

/** 02:00:00:xx:xx:xx from a number. */
function mac(n: number): Uint8Array {
  return new Uint8Array([2, 0, 0, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}

/** Runs the core and applies its persist effects the way the shell does. */
function run(ctx: Ctx, msg: DhcpMessage, arrival: Arrival = DIRECT, now = NOW): DhcpOutcome {
  const out = ctx.core.handle(msg, arrival, now);
  for (const e of out.effects) if (e.kind === "persist") ctx.store.put(e.lease);
  ctx.store.commit();
  return out;
}

function replyEffect(out: DhcpOutcome): ReplyEffect {
  const r = out.effects.find((e) => e.kind === "reply");
  assert.ok(r && r.kind === "reply", `expected a reply, got ${JSON.stringify(out.dropped)}`);
  return r;
}

function replyOf(out: DhcpOutcome): DhcpMessage {
  return replyEffect(out).message;
}

function typeOf(out: DhcpOutcome): number | undefined {
  return getMessageType(replyOf(out));
}

function discover(ctx: Ctx, n: number, arrival = DIRECT, now = NOW): DhcpOutcome {
  const giaddr = arrival.srcAddress !== 0 && arrival.srcPort === 67 ? RELAY : 0;
  return run(ctx, buildRequest(DhcpType.DHCPDISCOVER, mac(n), { xid: n, giaddr }), arrival, now);
}

/** SELECTING: the REQUEST that follows an OFFER (RFC 2131 §4.3.2). */
function select(ctx: Ctx, n: number, address: number, now = NOW, serverId = SERVER): DhcpOutcome {
  const msg = buildRequest(DhcpType.DHCPREQUEST, mac(n), {
    xid: n,
    requested: address,
    serverId,
  });
  return run(ctx, msg, DIRECT, now);
}

/** DISCOVER then REQUEST; returns the leased address. */
function lease(ctx: Ctx, n: number, now = NOW): number {
  const offer = replyOf(discover(ctx, n, DIRECT, now));
  const ack = select(ctx, n, offer.yiaddr, now);
  assert.equal(typeOf(ack), DhcpType.DHCPACK);
  return offer.yiaddr;
}

/** A flood of DISCOVERs from `count` MACs never seen before (numbered from `first`). */
function flood(ctx: Ctx, first: number, count: number, now = NOW): DhcpOutcome[] {
  const out: DhcpOutcome[] = [];
  for (let i = 0; i < count; i++) out.push(discover(ctx, 0x100000 + first + i, DIRECT, now));
  return out;
}

function freeOf(ctx: Ctx): number {
  return (ctx.core.utilisation()[0] as { free: number }).free;
}

Deno.test("DISCOVER flood: offers hold at most offer-limit of the pool, real clients still lease", async (t) => {
  await t.step("a thousand made-up MACs leave half the pool free", () => {
    const ctx = setup();
    const out = flood(ctx, 0, 1000);
    assert.ok(out.every((o) => o.dropped === undefined), "every DISCOVER got an offer");
    // offer-limit 50 (default): offers hold half of the 20 unleased addresses.
    assert.equal(freeOf(ctx), POOL / 2);
    assert.equal(ctx.core.counters.offersRecycled, 1000 - POOL / 2);
    assert.equal(ctx.core.counters.dropped["pool-exhausted"], undefined);
  });

  await t.step("a client arriving during the flood gets its lease", () => {
    const ctx = setup();
    flood(ctx, 0, 500);
    const offer = replyOf(discover(ctx, 1));
    flood(ctx, 500, 5, NOW);
    const ack = select(ctx, 1, offer.yiaddr);
    assert.equal(typeOf(ack), DhcpType.DHCPACK);
    assert.equal(ctx.store.get(offer.yiaddr)?.state, "active");
  });

  await t.step("the cap counts unleased addresses: leases shrink what offers may hold", () => {
    const ctx = setup();
    for (let n = 1; n <= 10; n++) lease(ctx, n);
    flood(ctx, 0, 100);
    assert.equal(freeOf(ctx), 5, "half of the 10 addresses left");
    assert.equal(typeOf(discover(ctx, 11)), DhcpType.DHCPOFFER);
  });

  await t.step("when the flood stops, the offers lapse after offer-hold seconds", () => {
    const ctx = setup();
    flood(ctx, 0, 1000);
    ctx.core.tick(NOW + 9);
    assert.equal(freeOf(ctx), POOL / 2, "held for offer-hold (10 s)");
    ctx.core.tick(NOW + 10);
    assert.equal(freeOf(ctx), POOL, "every address free again");
  });

  await t.step("offer-limit 100 restores the old behaviour: a flood exhausts the pool", () => {
    const ctx = setup("offer-limit: 100\n");
    const out = flood(ctx, 0, 25);
    assert.equal(out.filter((o) => o.dropped === "pool-exhausted").length, 25 - POOL);
    assert.equal(ctx.core.counters.offersRecycled, 0);
  });
});

Deno.test("A client whose offer was recycled still gets its REQUEST ACKed while the address is free", async (t) => {
  await t.step("recycled but not offered again: ACK", () => {
    const ctx = setup();
    const offered = replyOf(discover(ctx, 1)).yiaddr;
    // Ten more offers (the cap is 10): client 1's, the oldest, goes back to the pool. Fresh
    // addresses are handed out before reused ones, so it is not offered again yet.
    flood(ctx, 0, 10);
    assert.equal(ctx.core.counters.offersRecycled, 1);
    const ack = select(ctx, 1, offered);
    assert.equal(typeOf(ack), DhcpType.DHCPACK);
    assert.equal(replyOf(ack).yiaddr, offered);
  });

  await t.step("recycled and offered to another client: NAK, the other offer stands", () => {
    const ctx = setup();
    const offered = replyOf(discover(ctx, 1)).yiaddr;
    // Enough offers to use every fresh address and come round to the recycled one.
    const out = flood(ctx, 0, 40);
    const holder = out.findIndex((o) => replyOf(o).yiaddr === offered);
    assert.ok(holder >= 0, "the address was offered again");
    const nak = select(ctx, 1, offered);
    assert.equal(typeOf(nak), DhcpType.DHCPNAK, "RFC 2131 §4.3.2: the client starts over");
    // The holder may still have it, if its own offer was not recycled since.
    const holderOffer = replyOf(out[holder] as DhcpOutcome).yiaddr;
    assert.equal(holderOffer, offered);
  });
});

Deno.test("Rate limits: per client by default, global for unknown clients when configured", async (t) => {
  await t.step("one MAC: 32 requests at once, then 4 per second; counted and logged once", () => {
    const logger = recordingLogger();
    const ctx = setup("", logger);
    const out: DhcpOutcome[] = [];
    for (let i = 0; i < 40; i++) out.push(discover(ctx, 7));
    assert.equal(out.filter((o) => o.dropped === undefined).length, 32);
    assert.equal(out.filter((o) => o.dropped === "rate-limited").length, 8);
    assert.equal(ctx.core.counters.dropped["rate-limited"], 8);
    assert.equal(ctx.core.counters.received.DHCPDISCOVER, 40, "counted as received too");
    const limited = logger.warnings.filter((w) => w.msg.startsWith("Rate limit"));
    assert.equal(limited.length, 1, "one warning per episode");
    assert.equal(limited[0]?.fields?.limit, "per-client");
    let later = 0;
    for (let i = 0; i < 10; i++) {
      if (discover(ctx, 7, DIRECT, NOW + 1).dropped === undefined) later++;
    }
    assert.equal(later, 4);
    assert.equal(discover(ctx, 8).dropped, undefined, "another client is not affected");
  });

  await t.step("per-client: false turns it off", () => {
    const ctx = setup("rate-limit: { per-client: false }\n");
    for (let i = 0; i < 100; i++) assert.equal(discover(ctx, 7).dropped, undefined);
  });

  await t.step("global: a flood of new MACs is cut to the rate; known clients go on", () => {
    const logger = recordingLogger();
    const ctx = setup("rate-limit: { global: { rate: 5, burst: 5 } }\n", logger);
    const known = lease(ctx, 1);
    const holder = replyOf(discover(ctx, 2)).yiaddr; // an offer before the flood
    const out = flood(ctx, 0, 100);
    // The two new clients above took two of the burst's five tokens.
    assert.equal(out.filter((o) => o.dropped === undefined).length, 3);
    assert.equal(ctx.core.counters.dropped["rate-limited"], 97);
    const warned = logger.warnings.filter((w) => w.fields?.limit === "global");
    assert.equal(warned.length, 1);
    // A client with a lease is not new: its INIT-REBOOT and DISCOVER are answered.
    const reboot = run(
      ctx,
      buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 11, requested: known }),
    );
    assert.equal(typeOf(reboot), DhcpType.DHCPACK);
    assert.equal(typeOf(discover(ctx, 1)), DhcpType.DHCPOFFER);
    // A client holding an offer completes its exchange.
    assert.equal(typeOf(select(ctx, 2, holder)), DhcpType.DHCPACK);
    // A REQUEST from an unknown MAC for a free address counts as new too.
    const grab = select(ctx, 99, ip("192.0.2.119"));
    assert.equal(grab.dropped, "rate-limited");
    // The next second brings five more tokens.
    const next = flood(ctx, 1000, 20, NOW + 1);
    assert.equal(next.filter((o) => o.dropped === undefined).length, 5);
  });
});

Deno.test("REQUESTs for another client's address are NAKed and leave the owner's lease alone", async (t) => {
  const states: [string, (victim: number) => DhcpMessage, Arrival][] = [
    // RFC 2131 §4.3.2 INIT-REBOOT: requested address, no server identifier.
    [
      "INIT-REBOOT",
      (v) => buildRequest(DhcpType.DHCPREQUEST, mac(66), { xid: 66, requested: v }),
      DIRECT,
    ],
    // SELECTING: our server identifier, without an offer for this client.
    [
      "SELECTING",
      (v) =>
        buildRequest(DhcpType.DHCPREQUEST, mac(66), { xid: 66, requested: v, serverId: SERVER }),
      DIRECT,
    ],
    // RENEWING: ciaddr, unicast from that address.
    [
      "RENEWING",
      (v) => buildRequest(DhcpType.DHCPREQUEST, mac(66), { xid: 66, ciaddr: v }),
      DIRECT,
    ],
    // REBINDING: ciaddr, broadcast.
    [
      "REBINDING",
      (v) => buildRequest(DhcpType.DHCPREQUEST, mac(66), { xid: 66, ciaddr: v }),
      DIRECT,
    ],
  ];
  for (const [name, request, arrival] of states) {
    await t.step(`${name}: NAK when authoritative`, () => {
      const ctx = setup();
      const victim = lease(ctx, 1);
      const before = structuredClone(ctx.store.get(victim));
      const at = name === "RENEWING"
        ? { ...arrival, srcAddress: victim, dstAddress: SERVER }
        : arrival;
      const out = run(ctx, request(victim), at, NOW + 5);
      assert.equal(typeOf(out), DhcpType.DHCPNAK);
      assert.ok(out.effects.every((e) => e.kind !== "persist"), "nothing written");
      assert.deepEqual(ctx.store.get(victim), before, "the owner's lease is untouched");
      // The owner renews as usual.
      const renew = run(
        ctx,
        buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 2, ciaddr: victim }),
        { ...DIRECT, srcAddress: victim, dstAddress: SERVER },
        NOW + 6,
      );
      assert.equal(typeOf(renew), DhcpType.DHCPACK);
    });
    await t.step(`${name}: silence when not authoritative`, () => {
      const ctx = setup(
        "",
        silentLogger(),
        CONFIG.replace("authoritative: true", "authoritative: false"),
      );
      const victim = lease(ctx, 1);
      const before = structuredClone(ctx.store.get(victim));
      const at = name === "RENEWING"
        ? { ...arrival, srcAddress: victim, dstAddress: SERVER }
        : arrival;
      const out = run(ctx, request(victim), at, NOW + 5);
      assert.equal(out.dropped, "not-ours");
      assert.deepEqual(out.effects, []);
      assert.deepEqual(ctx.store.get(victim), before);
    });
  }
});

Deno.test("Spoofed server identifiers (RFC 2131 §4.3.2 SELECTING)", async (t) => {
  await t.step(
    "our identifier without an offer: a free pool address is ACKed like INIT-REBOOT",
    () => {
      const ctx = setup();
      const out = select(ctx, 5, ip("192.0.2.110"));
      assert.equal(typeOf(out), DhcpType.DHCPACK);
      assert.equal(replyOf(out).yiaddr, ip("192.0.2.110"));
    },
  );

  await t.step(
    "our identifier for an address offered to someone else: NAK, the offer stands",
    () => {
      const ctx = setup();
      const offered = replyOf(discover(ctx, 1)).yiaddr;
      assert.equal(typeOf(select(ctx, 66, offered)), DhcpType.DHCPNAK);
      assert.equal(typeOf(select(ctx, 1, offered)), DhcpType.DHCPACK, "the real client completes");
    },
  );

  await t.step("our identifier for an address outside every pool: NAK, nothing written", () => {
    const ctx = setup();
    const out = select(ctx, 66, ip("192.0.2.50"));
    assert.equal(typeOf(out), DhcpType.DHCPNAK);
    assert.ok(out.effects.every((e) => e.kind !== "persist"));
  });

  await t.step("another identifier with a victim's MAC frees the victim's offer only", () => {
    const ctx = setup();
    const offered = replyOf(discover(ctx, 1)).yiaddr;
    const spoof = select(ctx, 1, offered, NOW, ip("203.0.113.9"));
    assert.equal(spoof.dropped, "other-server");
    assert.deepEqual(spoof.effects, [], "silent");
    // The offer is gone, but the address is free: the victim's own REQUEST is still ACKed.
    assert.equal(freeOf(ctx), POOL);
    assert.equal(typeOf(select(ctx, 1, offered)), DhcpType.DHCPACK);
  });

  await t.step("another identifier naming a leased client changes nothing", () => {
    const ctx = setup();
    const victim = lease(ctx, 1);
    const before = structuredClone(ctx.store.get(victim));
    const out = select(ctx, 1, victim, NOW + 1, ip("203.0.113.9"));
    assert.equal(out.dropped, "other-server");
    assert.deepEqual(ctx.store.get(victim), before);
  });
});

/** A DISCOVER with every option code 1-254 present, some repeated, and option 55 of 255 codes. */
function stuffed(): { bytes: Uint8Array; repeats: number } {
  const bytes = new Uint8Array(2048);
  const head = encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, mac(9), { xid: 9 }), {
    maxSize: 576,
    padTo: 0,
  });
  // Keep the header and cookie (240 octets), then write our own options.
  bytes.set(head.subarray(0, 240));
  let at = 240;
  const put = (code: number, value: Uint8Array) => {
    bytes[at++] = code;
    bytes[at++] = value.length;
    bytes.set(value, at);
    at += value.length;
  };
  put(Opt.MESSAGE_TYPE, new Uint8Array([DhcpType.DHCPDISCOVER]));
  put(Opt.PARAMETER_REQUEST_LIST, Uint8Array.from({ length: 255 }, (_, i) => i));
  // Not the options that change what the server does (type, overload, size, address, server).
  const skip = new Set<number>([
    Opt.MESSAGE_TYPE,
    Opt.PARAMETER_REQUEST_LIST,
    Opt.OVERLOAD,
    Opt.MAX_MESSAGE_SIZE,
    Opt.REQUESTED_IP,
    Opt.SERVER_ID,
    Opt.RELAY_AGENT_INFO,
  ]);
  for (let code = 1; code <= 254; code++) {
    if (!skip.has(code)) put(code, new Uint8Array([code, code]));
  }
  // Hundreds of one-octet instances of one option (RFC 3396 concatenation).
  let repeats = 0;
  while (at + 4 < bytes.length) {
    put(224, new Uint8Array([0xab]));
    repeats++;
  }
  bytes[at++] = Opt.END;
  return { bytes: bytes.subarray(0, at), repeats };
}

Deno.test("Oversized and option-stuffed packets are decoded within bounds and answered within size", async (t) => {
  // Many configured options, so that asking for all of them overflows 576 octets.
  const big = `options:
  "250": "${Array.from({ length: 200 }, () => "aa").join(":")}"
  "251": "${Array.from({ length: 200 }, () => "bb").join(":")}"
  domain-name: example.com
`;

  await t.step(
    "2048 octets, every option code, option 55 with 255 codes: an OFFER of at most 548 octets",
    () => {
      const ctx = setup(big);
      const { bytes, repeats } = stuffed();
      assert.ok(bytes.length > 2040 && repeats > 150, `${bytes.length} octets, ${repeats} repeats`);
      const msg = decodeDhcp(bytes);
      // Option 224 appears once with two octets in the sweep over codes, then `repeats` times.
      assert.equal(msg.options.get(224)?.length, 2 + repeats, "every instance joined");
      const out = run(ctx, msg);
      const e = replyEffect(out);
      assert.equal(getMessageType(e.message), DhcpType.DHCPOFFER);
      const wire = encodeDhcp(e.message, { maxSize: e.maxSize });
      assert.ok(wire.length <= 548, `reply is ${wire.length} octets`);
      const back = decodeDhcp(wire);
      assert.equal(getServerId(back), SERVER, "53 and 54 are never dropped");
    },
  );

  await t.step("option 57 is honoured up to 1500 and ignored below 576", async (t2) => {
    for (const [asked, limit] of [[1500, 1472], [65535, 1472], [100, 548], [800, 772]]) {
      await t2.step(`option 57 = ${asked}`, () => {
        const ctx = setup(big);
        const msg = buildRequest(DhcpType.DHCPDISCOVER, mac(3), {
          xid: 3,
          prl: Array.from({ length: 255 }, (_, i) => i),
        });
        msg.options.set(Opt.MAX_MESSAGE_SIZE, encodeU16(asked as number));
        const e = replyEffect(run(ctx, msg));
        assert.equal(e.maxSize, limit);
        const wire = encodeDhcp(e.message, { maxSize: e.maxSize });
        assert.ok(wire.length <= (limit as number), `${wire.length} > ${limit}`);
      });
    }
  });

  await t.step(
    "option 82 too long to echo in any reply: dropped as oversized, no exception",
    () => {
      const ctx = setup();
      const msg = buildRequest(DhcpType.DHCPDISCOVER, mac(4), { xid: 4, giaddr: RELAY });
      msg.options.set(Opt.RELAY_AGENT_INFO, new Uint8Array(600).fill(1));
      const out = run(ctx, decodeDhcp(encodeDhcp(msg, { maxSize: 1500 })), relayed());
      assert.equal(out.dropped, "oversized");
      assert.equal(ctx.core.counters.dropped.oversized, 1);
    },
  );

  await t.step(
    "option 82 that fits is echoed unchanged, also to a client taking 1500 octets",
    () => {
      const ctx = setup();
      for (const [len, maxSize] of [[294, undefined], [600, 1500]]) {
        const msg = buildRequest(DhcpType.DHCPDISCOVER, mac(5), { xid: 5, giaddr: RELAY });
        const info = Uint8Array.from({ length: len as number }, (_, i) => i & 0xff);
        info[0] = 1; // circuit id sub-option header (RFC 3046 §2.0) keeps it a valid option 82
        msg.options.set(Opt.RELAY_AGENT_INFO, info);
        if (maxSize !== undefined) msg.options.set(Opt.MAX_MESSAGE_SIZE, encodeU16(maxSize));
        const e = replyEffect(run(ctx, msg, relayed()));
        const wire = encodeDhcp(e.message, { maxSize: e.maxSize });
        assert.ok(wire.length <= e.maxSize);
        assert.deepEqual(decodeDhcp(wire).options.get(Opt.RELAY_AGENT_INFO), info);
      }
    },
  );

  await t.step(
    "decodeDhcp() joins thousands of instances of one option in order (RFC 3396)",
    () => {
      // A 64 KiB datagram (the shell drops these, but the decoder must stay linear anyway).
      const head = encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, mac(6), { xid: 6 }), {
        padTo: 0,
      });
      const n = 20_000;
      const bytes = new Uint8Array(240 + 3 + n * 3 + 1);
      bytes.set(head.subarray(0, 240));
      bytes.set([Opt.MESSAGE_TYPE, 1, DhcpType.DHCPDISCOVER], 240);
      for (let i = 0; i < n; i++) bytes.set([224, 1, i & 0xff], 243 + i * 3);
      bytes[bytes.length - 1] = Opt.END;
      const v = decodeDhcp(bytes).options.get(224);
      assert.equal(v?.length, n);
      assert.ok(v?.every((b, i) => b === (i & 0xff)));
    },
  );
});

Deno.test("relay-allow: relayed packets only from listed relays, giaddr included", async (t) => {
  const allow = "relay-allow: [198.51.100.0/24]\n";

  await t.step("a listed relay is served", () => {
    const ctx = setup(allow);
    assert.equal(typeOf(discover(ctx, 1, relayed())), DhcpType.DHCPOFFER);
  });

  await t.step("an unlisted source is dropped and counted", () => {
    const ctx = setup(allow);
    const out = discover(ctx, 1, relayed(ip("203.0.113.9")));
    assert.equal(out.dropped, "relay-not-allowed");
    assert.equal(ctx.core.counters.dropped["relay-not-allowed"], 1);
  });

  await t.step("a listed source relaying an unlisted giaddr is dropped", () => {
    const ctx = setup(allow);
    const msg = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1, giaddr: ip("203.0.113.1") });
    assert.equal(run(ctx, msg, relayed()).dropped, "relay-not-allowed");
  });

  await t.step("without the key (the default) any relay is served", () => {
    const ctx = setup();
    assert.equal(typeOf(discover(ctx, 1, relayed(ip("203.0.113.9")))), DhcpType.DHCPOFFER);
  });
});

Deno.test("giaddr spoofing by a directly connected client", async (t) => {
  // A client on lan0 asks for an address of the relayed subnet by setting giaddr itself.
  const spoofed = () => buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1, giaddr: RELAY });
  const onLan = (src: string): Arrival => ({ ...DIRECT, srcAddress: ip(src) });

  await t.step("from 0.0.0.0 (no address yet): always dropped as spoofed-giaddr", () => {
    const ctx = setup();
    const out = run(ctx, spoofed(), DIRECT);
    assert.equal(out.dropped, "spoofed-giaddr");
    assert.equal(ctx.core.counters.dropped["spoofed-giaddr"], 1);
  });

  await t.step("giaddr that is no unicast address: always dropped", () => {
    const ctx = setup();
    for (const g of ["255.255.255.255", "224.0.0.5", "0.0.0.1"]) {
      const msg = buildRequest(DhcpType.DHCPDISCOVER, mac(1), { xid: 1, giaddr: ip(g) });
      assert.equal(run(ctx, msg, relayed()).dropped, "spoofed-giaddr", g);
    }
  });

  await t.step(
    "from its own address, default (open): served from the other subnet, reply to giaddr",
    () => {
      const ctx = setup();
      const e = replyEffect(run(ctx, spoofed(), onLan("192.0.2.77")));
      assert.equal(e.message.yiaddr >>> 8, ip("198.51.100.0") >>> 8, "the relay's subnet");
      assert.equal(e.to.address, RELAY, "the reply goes to the relay, not to the spoofer");
    },
  );

  await t.step("from its own address, with relay-allow: dropped", () => {
    const ctx = setup("relay-allow: [198.51.100.0/24]\n");
    assert.equal(run(ctx, spoofed(), onLan("192.0.2.77")).dropped, "relay-not-allowed");
    // And option 118 (RFC 3011), the other way to name a subnet, likewise.
    const sel = buildRequest(DhcpType.DHCPDISCOVER, mac(2), { xid: 2 });
    sel.options.set(Opt.SUBNET_SELECTION, encodeIp(ip("198.51.100.0")));
    assert.equal(run(ctx, sel, onLan("192.0.2.78")).dropped, "relay-not-allowed");
    // The client still gets an address on its own link.
    assert.equal(typeOf(discover(ctx, 3)), DhcpType.DHCPOFFER);
  });
});

Deno.test("DECLINE abuse: an exhausted pool takes back the address declined longest ago, after ABANDONED_REUSE_AFTER", () => {
  const ctx = setup("offer-limit: 100\n");
  // Made-up clients take every address with an offer and decline it (RFC 2131 §4.3.3).
  const declined: number[] = [];
  for (let n = 1; n <= POOL; n++) {
    const t = NOW + n;
    const offer = replyOf(discover(ctx, 5000 + n, DIRECT, t));
    const decline = buildRequest(DhcpType.DHCPDECLINE, mac(5000 + n), {
      xid: n,
      requested: offer.yiaddr,
      serverId: SERVER,
    });
    assert.equal(run(ctx, decline, DIRECT, t).dropped, undefined);
    declined.push(offer.yiaddr);
  }
  assert.equal(ctx.store.countByState().abandoned, POOL);
  // A declined address may really be in use: not handed out again at once.
  assert.equal(discover(ctx, 1, DIRECT, NOW + 60).dropped, "pool-exhausted");
  // Later, the pool being empty, the oldest ABANDONED comes back (standalone: FREE at once).
  const later = NOW + 1 + ABANDONED_REUSE_AFTER;
  const out = discover(ctx, 1, DIRECT, later);
  assert.equal(replyOf(out).yiaddr, declined[0]);
  assert.equal(ctx.store.get(declined[0]!)?.state, "free");
  assert.equal(ctx.store.get(declined[1]!)?.state, "abandoned", "only what is needed");
});

Deno.test("DhcpCore: REQUESTs naming another server take no rate-limit tokens", () => {
  const ctx = setup("rate-limit: { per-client: { rate: 1, burst: 2 } }\n");
  for (let i = 0; i < 10; i++) {
    assert.equal(select(ctx, 5, ip("192.0.2.200"), NOW, ip("192.0.2.2")).dropped, "other-server");
  }
  // The client's bucket is still full: two answered, the third limited.
  assert.ok(replyOf(discover(ctx, 5)));
  assert.ok(replyOf(discover(ctx, 5)));
  assert.equal(discover(ctx, 5).dropped, "rate-limited");
});
