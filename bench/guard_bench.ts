/**
 * In-process cost of the abuse defences (lib/server/guard.ts) on the hot path:
 * `deno bench --allow-all bench/guard_bench.ts`. Compares DhcpCore.handle() for a DISCOVER
 * from a new MAC with the defaults (per-client bucket, offer limit) and with every defence
 * off, and times the pieces on their own, including decoding stuffed packets of growing size
 * (the decoder must stay linear in the number of option instances).
 */
import { parseConfig } from "../lib/config/config.ts";
import { buildRequest } from "../lib/cli/relay_client.ts";
import { silentLogger } from "../lib/log.ts";
import { DhcpCore } from "../lib/server/dhcp.ts";
import { RateLimiter, relayRefusal } from "../lib/server/guard.ts";
import type { Arrival } from "../lib/server/reply.ts";
import { MemoryLeaseStore } from "../lib/store/memory.ts";
import { decodeDhcp, type DhcpMessage, DhcpType, encodeDhcp, Opt } from "../lib/wire/dhcp.ts";
import { parseCidr } from "../lib/wire/ip.ts";

const BASE = `database: ":memory:"
listen: [{address: 198.18.0.1}]
subnets:
  - subnet: 198.18.0.0/15
    relays: [198.18.0.2]
    pools: [{range: 198.18.16.0 - 198.19.255.250}]
`;

const ARRIVAL: Arrival = {
  srcAddress: 0xc6120002,
  srcPort: 67,
  ifindex: 0,
  ifname: null,
  localAddress: 0xc6120001,
  dstAddress: 0xc6120001,
};

/** DISCOVERs from 2^20 different MACs, cycled; `now` moves one second per 4096 requests. */
function discoverBench(extra: string): (b: Deno.BenchContext) => void {
  const core = new DhcpCore(parseConfig(BASE + extra, "bench.yaml"), new MemoryLeaseStore(), {
    logger: silentLogger(),
  });
  const msgs: DhcpMessage[] = [];
  for (let i = 0; i < 4096; i++) {
    msgs.push(buildRequest(DhcpType.DHCPDISCOVER, new Uint8Array([2, 0, 0, 0, i >> 8, i & 0xff]), {
      xid: i,
      giaddr: 0xc6120002,
    }));
  }
  let n = 0;
  let now = 1_800_000_000;
  return () => {
    const msg = msgs[n & 4095] as DhcpMessage;
    // A new MAC each time: the bytes after the fixed prefix count up.
    msg.chaddr[3] = (n >>> 12) & 0xff;
    if ((++n & 4095) === 0) now++;
    if ((n & 65535) === 0) core.tick(now + 10);
    core.handle(msg, ARRIVAL, now);
  };
}

Deno.bench("DhcpCore.handle() DISCOVER, new MAC, defaults", {
  group: "discover",
  baseline: true,
}, discoverBench(""));
Deno.bench(
  "DhcpCore.handle() DISCOVER, new MAC, every defence off",
  { group: "discover" },
  discoverBench("rate-limit: { per-client: false }\noffer-limit: 100\n"),
);
Deno.bench(
  "DhcpCore.handle() DISCOVER, new MAC, defaults + global bucket + relay-allow",
  { group: "discover" },
  discoverBench(
    "rate-limit: { global: { rate: 1000000, burst: 1000000 } }\nrelay-allow: [198.18.0.0/15]\n",
  ),
);

const limiter = new RateLimiter({
  perClient: { rate: 4, burst: 32 },
  global: null,
  trackedClients: 4096,
});
const keys = Array.from({ length: 65536 }, (_, i) => `h1:020000${i.toString(16).padStart(6, "0")}`);
let k = 0;
Deno.bench("RateLimiter.admit() new client each time (LRU eviction)", { group: "guard" }, () => {
  limiter.admit(keys[k++ & 65535] as string, true, 1_800_000_000 + (k >> 12));
});
Deno.bench("RateLimiter.admit() one client", { group: "guard" }, () => {
  limiter.admit("h1:020000000001", false, 1_800_000_000 + (k++ >> 12));
});
const allow = [parseCidr("198.18.0.0/15"), parseCidr("203.0.113.0/24")].filter((c) => !!c);
const relayed = buildRequest(DhcpType.DHCPDISCOVER, new Uint8Array([2, 0, 0, 0, 0, 1]), {
  xid: 1,
  giaddr: 0xc6120002,
});
Deno.bench("relayRefusal() with a two-entry allow list", { group: "guard" }, () => {
  relayRefusal(relayed, ARRIVAL, allow);
});

/** A DISCOVER of `size` octets whose options are one-octet instances of option 224. */
function stuffed(size: number): Uint8Array {
  const head = encodeDhcp(buildRequest(DhcpType.DHCPDISCOVER, new Uint8Array(6), { xid: 1 }), {
    padTo: 0,
  });
  const bytes = new Uint8Array(size);
  bytes.set(head.subarray(0, 240));
  bytes.set([Opt.MESSAGE_TYPE, 1, DhcpType.DHCPDISCOVER], 240);
  let at = 243;
  while (at + 4 <= size) {
    bytes.set([224, 1, at & 0xff], at);
    at += 3;
  }
  bytes[at] = Opt.END;
  return bytes;
}

for (const size of [576, 2048, 16384, 65507]) {
  const bytes = stuffed(size);
  Deno.bench(`decodeDhcp() ${size} octets of one-octet option instances`, {
    group: "decode",
    ...(size === 2048 ? { baseline: true } : {}),
  }, () => {
    decodeDhcp(bytes);
  });
}
