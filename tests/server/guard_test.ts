/** The pure abuse defences of lib/server/guard.ts: token buckets, relay checks, size bounds. */
import assert from "node:assert/strict";
import { buildRequest } from "../../lib/cli/relay_client.ts";
import {
  offerCap,
  OfferQueue,
  RateLimiter,
  relayInfoFits,
  relayRefusal,
  replyMaxSize,
} from "../../lib/server/guard.ts";
import type { Arrival } from "../../lib/server/reply.ts";
import { type DhcpMessage, DhcpType, encodeIp, encodeU16, Opt } from "../../lib/wire/dhcp.ts";
import { type Cidr, parseCidr, parseIpv4 } from "../../lib/wire/ip.ts";

function ip(s: string): number {
  const v = parseIpv4(s);
  if (v === undefined) throw new TypeError(s);
  return v;
}

function cidr(s: string): Cidr {
  const v = parseCidr(s);
  if (v === undefined) throw new TypeError(s);
  return v;
}

const NOW = 1_800_000_000;
const MAC = new Uint8Array([2, 0, 0, 0, 0, 1]);

function from(src: string): Arrival {
  return {
    srcAddress: ip(src),
    srcPort: 67,
    ifindex: 0,
    ifname: null,
    localAddress: ip("192.0.2.1"),
    dstAddress: null,
  };
}

function discover(options: { giaddr?: string; option118?: string; maxSize?: number } = {}) {
  const msg = buildRequest(DhcpType.DHCPDISCOVER, MAC, {
    xid: 1,
    ...(options.giaddr ? { giaddr: ip(options.giaddr) } : {}),
  });
  if (options.option118) msg.options.set(Opt.SUBNET_SELECTION, encodeIp(ip(options.option118)));
  if (options.maxSize !== undefined) {
    msg.options.set(Opt.MAX_MESSAGE_SIZE, encodeU16(options.maxSize));
  }
  return msg;
}

Deno.test("RateLimiter per client: a burst, then the rate, and one 'first' refusal per episode", () => {
  const r = new RateLimiter({
    perClient: { rate: 2, burst: 4 },
    global: null,
    trackedClients: 16,
  });
  for (let i = 0; i < 4; i++) assert.equal(r.admit("a", false, NOW), null, `burst ${i}`);
  assert.deepEqual(r.admit("a", false, NOW), { limit: "per-client", first: true });
  assert.deepEqual(r.admit("a", false, NOW), { limit: "per-client", first: false });
  assert.equal(r.admit("b", false, NOW), null, "another client has its own bucket");
  // One second later: rate 2 earns two tokens.
  assert.equal(r.admit("a", false, NOW + 1), null);
  assert.equal(r.admit("a", false, NOW + 1), null);
  assert.deepEqual(
    r.admit("a", false, NOW + 1),
    { limit: "per-client", first: false },
    "still the same episode: the bucket was never full again",
  );
  // Full again after burst / rate seconds: the next refusal is a new episode (logged again).
  for (let i = 0; i < 4; i++) assert.equal(r.admit("a", false, NOW + 10), null);
  assert.deepEqual(r.admit("a", false, NOW + 10), { limit: "per-client", first: true });
});

Deno.test("RateLimiter earns fractional tokens and none when the clock goes back", () => {
  const r = new RateLimiter({
    perClient: { rate: 0.5, burst: 1 },
    global: null,
    trackedClients: 16,
  });
  assert.equal(r.admit("a", false, NOW), null);
  assert.notEqual(r.admit("a", false, NOW + 1), null, "half a token is not one");
  assert.equal(r.admit("a", false, NOW + 2), null, "two half tokens are");
  assert.notEqual(r.admit("a", false, NOW - 3600), null, "a clock jump back earns nothing");
  assert.notEqual(r.admit("a", false, NOW - 3599), null, "half a token again");
  assert.equal(r.admit("a", false, NOW - 3598), null, "counting resumes from the new time");
});

Deno.test("RateLimiter keeps at most trackedClients buckets; forgetting one only forgives it", () => {
  const r = new RateLimiter({
    perClient: { rate: 1, burst: 1 },
    global: null,
    trackedClients: 16,
  });
  assert.equal(r.admit("noisy", false, NOW), null);
  assert.notEqual(r.admit("noisy", false, NOW), null);
  for (let i = 0; i < 1000; i++) {
    r.admit(`mac-${i}`, false, NOW);
    assert.ok(r.tracked <= 16, `memory is bounded by the table size: ${r.tracked}`);
  }
  assert.equal(r.admit("noisy", false, NOW), null, "forgotten, so it starts with a full bucket");
  // A client is remembered for at least trackedClients / 2 new clients after its last request.
  assert.notEqual(r.admit("noisy", false, NOW), null);
  for (let i = 0; i < 8; i++) r.admit(`other-${i}`, false, NOW);
  assert.notEqual(r.admit("noisy", false, NOW), null, "still remembered, still empty");
  // Its last request refreshed it: another 8 new clients do not make it forgotten either.
  for (let i = 0; i < 8; i++) r.admit(`more-${i}`, false, NOW);
  assert.notEqual(r.admit("noisy", false, NOW), null);
});

Deno.test("RateLimiter global bucket: shared by new clients only", () => {
  const r = new RateLimiter({
    perClient: null,
    global: { rate: 10, burst: 5 },
    trackedClients: 16,
  });
  assert.equal(r.limitsNewClients, true);
  for (let i = 0; i < 5; i++) assert.equal(r.admit(`new-${i}`, true, NOW), null);
  assert.deepEqual(r.admit("new-5", true, NOW), { limit: "global", first: true });
  assert.deepEqual(r.admit("new-6", true, NOW), { limit: "global", first: false });
  assert.equal(r.admit("known", false, NOW), null, "a known client does not use the bucket");
  assert.equal(r.tracked, 0, "no per-client table without a per-client limit");
  let admitted = 0;
  for (let i = 0; i < 100; i++) if (r.admit(`later-${i}`, true, NOW + 1) === null) admitted++;
  assert.equal(admitted, 5, "one second at rate 10 refills to the burst of 5, no more");
});

Deno.test("RateLimiter: the per-client limit refuses before the global bucket is touched", () => {
  const r = new RateLimiter({
    perClient: { rate: 1, burst: 1 },
    global: { rate: 1, burst: 2 },
    trackedClients: 16,
  });
  assert.equal(r.admit("a", true, NOW), null);
  assert.deepEqual(r.admit("a", true, NOW), { limit: "per-client", first: true });
  assert.equal(r.admit("b", true, NOW), null, "a's refusal took no global token");
  assert.deepEqual(r.admit("c", true, NOW), { limit: "global", first: true });
  assert.equal(
    new RateLimiter({ perClient: null, global: null, trackedClients: 16 }).admit("a", true, NOW),
    null,
  );
});

Deno.test("relayRefusal() checks giaddr always and the allow list when set", async (t) => {
  const allow = [cidr("198.51.100.0/24"), cidr("203.0.113.7/32")];
  const cases: [string, DhcpMessage, Arrival, readonly Cidr[] | null, string | null][] = [
    // A direct request (no giaddr, no option 118) never concerns relays.
    ["direct, open", discover(), from("0.0.0.0"), null, null],
    ["direct, with a list", discover(), from("0.0.0.0"), allow, null],
    // RFC 1542 §4.1: a relay has an address, so a relayed packet never comes from 0.0.0.0.
    [
      "giaddr from 0.0.0.0",
      discover({ giaddr: "198.51.100.1" }),
      from("0.0.0.0"),
      null,
      "spoofed-giaddr",
    ],
    // giaddr must be a unicast address to send the reply to (RFC 2131 §4.1).
    [
      "giaddr broadcast",
      discover({ giaddr: "255.255.255.255" }),
      from("198.51.100.1"),
      null,
      "spoofed-giaddr",
    ],
    [
      "giaddr multicast",
      discover({ giaddr: "224.0.0.1" }),
      from("198.51.100.1"),
      null,
      "spoofed-giaddr",
    ],
    [
      "giaddr reserved 240/4",
      discover({ giaddr: "240.0.0.1" }),
      from("198.51.100.1"),
      null,
      "spoofed-giaddr",
    ],
    [
      "giaddr in 0/8",
      discover({ giaddr: "0.1.2.3" }),
      from("198.51.100.1"),
      null,
      "spoofed-giaddr",
    ],
    ["relayed, open list", discover({ giaddr: "192.0.2.200" }), from("192.0.2.77"), null, null],
    [
      "relayed, source and giaddr allowed",
      discover({ giaddr: "198.51.100.1" }),
      from("203.0.113.7"),
      allow,
      null,
    ],
    [
      "relayed, source not allowed",
      discover({ giaddr: "198.51.100.1" }),
      from("203.0.113.8"),
      allow,
      "relay-not-allowed",
    ],
    [
      "relayed, giaddr not allowed",
      discover({ giaddr: "192.0.2.200" }),
      from("198.51.100.1"),
      allow,
      "relay-not-allowed",
    ],
    // RFC 3011 option 118 picks a subnet like giaddr does: only allowed relays may use it.
    ["option 118, open", discover({ option118: "198.51.100.0" }), from("192.0.2.77"), null, null],
    [
      "option 118 from outside the list",
      discover({ option118: "198.51.100.0" }),
      from("192.0.2.77"),
      allow,
      "relay-not-allowed",
    ],
    [
      "option 118 from an allowed relay",
      discover({ option118: "198.51.100.0" }),
      from("198.51.100.9"),
      allow,
      null,
    ],
  ];
  for (const [name, msg, arrival, list, expected] of cases) {
    await t.step(name, () => assert.equal(relayRefusal(msg, arrival, list), expected));
  }
});

Deno.test("offerCap() is the percentage of unleased addresses, at least one", () => {
  assert.equal(offerCap(100, 50), 50);
  assert.equal(offerCap(101, 50), 50, "rounded down");
  assert.equal(offerCap(3, 50), 1);
  assert.equal(offerCap(1, 50), 1, "a one-address pool still offers");
  assert.equal(offerCap(0, 50), 1);
  assert.equal(offerCap(200, 100), 200, "100 % is no cap");
});

Deno.test("replyMaxSize() follows option 57 between 576 and 1500 octets, less IP and UDP headers", () => {
  assert.equal(replyMaxSize(discover()), 548, "RFC 2131 §2: 576 without option 57");
  assert.equal(replyMaxSize(discover({ maxSize: 1000 })), 972);
  assert.equal(replyMaxSize(discover({ maxSize: 65535 })), 1472, "never above one Ethernet MTU");
  assert.equal(
    replyMaxSize(discover({ maxSize: 100 })),
    548,
    "RFC 2132 §9.10: below 576 is illegal",
  );
});

Deno.test("relayInfoFits(): option 82 must fit next to options 53 and 54 (RFC 3046 §2.2)", () => {
  const relayed = (len: number, maxSize?: number) => {
    const m = discover({ giaddr: "198.51.100.1", ...(maxSize ? { maxSize } : {}) });
    m.options.set(Opt.RELAY_AGENT_INFO, new Uint8Array(len).fill(1));
    return m;
  };
  // 548 - 241 (header, cookie, END) - 9 (53, 54) = 298 octets: two instances of 294 + 2 + 2.
  assert.equal(relayInfoFits(relayed(294)), true);
  assert.equal(relayInfoFits(relayed(295)), false);
  assert.equal(relayInfoFits(relayed(600)), false);
  assert.equal(relayInfoFits(relayed(600, 1500)), true, "a client that takes 1500 octets");
  const direct = discover();
  direct.options.set(Opt.RELAY_AGENT_INFO, new Uint8Array(1000));
  assert.equal(relayInfoFits(direct), true, "not echoed without giaddr, so always fits");
});

Deno.test("OfferQueue: oldest first, removal anywhere, many cycles stay in order", () => {
  const q = new OfferQueue<{ queued: boolean; id: number }>();
  const items = Array.from({ length: 10 }, (_, id) => ({ queued: false, id }));
  for (const o of items) q.add(o);
  assert.equal(q.size, 10);
  assert.equal(q.oldest()?.id, 0);
  q.remove(items[0] as { queued: boolean; id: number });
  q.remove(items[5] as { queued: boolean; id: number });
  q.remove(items[5] as { queued: boolean; id: number }); // twice is once
  assert.equal(q.size, 8);
  assert.equal(q.oldest()?.id, 1, "the oldest still queued");
  q.add(items[1] as { queued: boolean; id: number }); // already queued: keeps its place
  assert.equal(q.oldest()?.id, 1);
  // A long run of add-and-remove-oldest (what a flood at the cap does) keeps FIFO order.
  let next = 10;
  for (let i = 0; i < 100_000; i++) {
    const oldest = q.oldest();
    assert.ok(oldest);
    q.remove(oldest);
    q.add({ queued: false, id: next++ });
  }
  assert.equal(q.size, 8);
  const ids: number[] = [];
  for (let o = q.oldest(); o !== undefined; o = q.oldest()) {
    ids.push(o.id);
    q.remove(o);
  }
  assert.deepEqual(ids, Array.from({ length: 8 }, (_, i) => next - 8 + i));
  assert.equal(q.size, 0);
});
