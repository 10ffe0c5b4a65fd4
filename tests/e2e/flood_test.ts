/**
 * A real `duet serve` on loopback under a DISCOVER flood from thousands of made-up MACs
 * (README "DHCP-level abuse"): a client with a lease is served while the flood runs, a new
 * client gets a lease right after it, half the pool stays free throughout, the drops are in
 * /metrics, and the offers lapse after `offer-hold`.
 */
import assert from "node:assert/strict";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import {
  type DhcpMessage,
  DhcpType,
  encodeDhcp,
  getMessageType,
  getServerId,
} from "../../lib/wire/dhcp.ts";
import { DuetProcess, freeUdpPort } from "./process.ts";

const FLOOD_MACS = 5000;
const POOL = 100;

function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function configText(dir: string, port: number, metricsPort: number): string {
  return `database: ${dir}/leases.db
listen:
  - address: 127.0.0.1
    port: ${port}
lease-time: { default: 600, max: 3600 }
offer-hold: 2
rate-limit:
  global: { rate: 200, burst: 200 }
control:
  socket: ${dir}/control.sock
  metrics: 127.0.0.1:${metricsPort}
subnets:
  - subnet: 198.18.16.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.16.10 - 198.18.16.109
`;
}

/** One sample of the Prometheus text, or 0 when absent. */
function metric(text: string, name: string, labels = ""): number {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}${labels} `)) {
      return Number(line.slice(name.length + labels.length + 1));
    }
  }
  return 0;
}

async function scrape(metricsPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  return await res.text();
}

/** A made-up MAC 02:00:00:xx:xx:xx from a seeded generator (the seed is fixed: reproducible). */
function floodMac(state: { x: number }): Uint8Array {
  state.x = (Math.imul(state.x, 1103515245) + 12345) >>> 0;
  const v = state.x >>> 8;
  return new Uint8Array([2, 0, 0, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
}

/** Sends DISCOVERs from FLOOD_MACS MACs in batches, bounded in time; reads and counts OFFERs. */
async function flood(
  port: number,
  progress: { sent: number },
): Promise<{ offers: number; seconds: number }> {
  const conn = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const server: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  let offers = 0;
  const reader = (async () => {
    for (;;) {
      try {
        await conn.receive();
        offers++;
      } catch {
        return; // closed
      }
    }
  })();
  const state = { x: 0x5eed };
  const started = Date.now();
  const deadline = started + 15_000;
  try {
    while (progress.sent < FLOOD_MACS && Date.now() < deadline) {
      for (let i = 0; i < 100 && progress.sent < FLOOD_MACS; i++) {
        const msg = buildRequest(DhcpType.DHCPDISCOVER, floodMac(state), {
          xid: 0x10000 + progress.sent,
          giaddr: 0x7f000001,
        });
        await conn.send(encodeDhcp(msg), server);
        progress.sent++;
      }
      // Spread the flood over a second or two so that the real clients run during it.
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    await new Promise((r) => setTimeout(r, 100));
    conn.close();
    await reader;
  }
  return { offers, seconds: (Date.now() - started) / 1000 };
}

/** DISCOVER and REQUEST like a real client: retries with a short timeout, bounded. */
async function leaseWithRetries(
  client: RelayClient,
  mac: Uint8Array,
  xid: number,
): Promise<DhcpMessage> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const offer = await client.exchange(
      buildRequest(DhcpType.DHCPDISCOVER, mac, { xid: xid + attempt, giaddr: client.giaddr }),
      250,
    );
    if (!offer) continue;
    const ack = await client.exchange(
      buildRequest(DhcpType.DHCPREQUEST, mac, {
        xid: xid + attempt,
        giaddr: client.giaddr,
        requested: offer.yiaddr,
        serverId: getServerId(offer) as number,
      }),
      250,
    );
    if (ack && getMessageType(ack) === DhcpType.DHCPACK) return ack;
  }
  throw new Error("no lease after 20 attempts");
}

Deno.test("duet serve under a DISCOVER flood from 5000 made-up MACs keeps serving real clients", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-flood-" });
  const port = freeUdpPort();
  const metricsPort = freeTcpPort();
  const configPath = `${dir}/duet.yaml`;
  await Deno.writeTextFile(configPath, configText(dir, port, metricsPort));
  const server = new DuetProcess(["--config", configPath]);
  const client = new RelayClient("127.0.0.1", port);
  try {
    await server.waitFor("duet serving");
    const known = new Uint8Array([2, 0, 0, 0xff, 0, 1]);
    const before = await leaseWithRetries(client, known, 1);

    const progress = { sent: 0 };
    const flooding = flood(port, progress);
    // Meanwhile: once the flood is well under way, the client with a lease reboots (INIT-REBOOT)
    // and is confirmed; it is not new, so the global bucket does not apply to it.
    const start = Date.now();
    while (progress.sent < FLOOD_MACS / 3 && Date.now() - start < 10_000) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const reboot = await client.exchange(
      buildRequest(DhcpType.DHCPREQUEST, known, {
        xid: 100,
        giaddr: client.giaddr,
        requested: before.yiaddr,
      }),
      2000,
    );
    assert.equal(reboot && getMessageType(reboot), DhcpType.DHCPACK, "confirmed during the flood");
    assert.equal(reboot?.yiaddr, before.yiaddr);
    const during = await scrape(metricsPort);
    const freeDuring = metric(during, "duet_pool_free_addresses", '{subnet="198.18.16.0/24"}');
    // offer-limit 50: offers hold at most half of the 99 unleased addresses.
    assert.ok(freeDuring >= 50, `free during the flood: ${freeDuring}`);
    const { offers, seconds } = await flooding;
    assert.equal(progress.sent, FLOOD_MACS, "the whole flood was sent");

    // Afterwards: a new client gets a lease at once (retrying like a real client would).
    const fresh = await leaseWithRetries(client, new Uint8Array([2, 0, 0, 0xff, 0, 2]), 200);
    assert.notEqual(fresh.yiaddr, before.yiaddr);

    const after = await scrape(metricsPort);
    const limited = metric(after, "duet_packets_dropped_total", '{reason="rate-limited"}');
    const received = metric(after, "duet_packets_received_total", '{type="DHCPDISCOVER"}');
    assert.ok(limited > 0, "rate-limited drops are counted");
    // At most the burst plus 200/s for the flood's duration got through (the kernel may drop
    // some datagrams before the server reads them, so received can be below FLOOD_MACS).
    assert.ok(offers < received, `${offers} offers for ${received} DISCOVERs`);
    assert.ok(offers <= 200 + 200 * Math.ceil(seconds + 1), `${offers} offers in ${seconds} s`);
    assert.ok(limited >= received - offers - 10, `${limited} rate-limited`);
    assert.ok(metric(after, "duet_offers_recycled_total") > 0, "offer-limit took offers back");
    assert.match(server.stderr, /Rate limit reached; dropping requests.*limit=global/);

    // offer-hold is 2 s: the flood's offers lapse and the pool is whole again but for 2 leases.
    let free = 0;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      free = metric(
        await scrape(metricsPort),
        "duet_pool_free_addresses",
        '{subnet="198.18.16.0/24"}',
      );
      if (free === POOL - 2) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(free, POOL - 2);
  } finally {
    await client.close();
    assert.equal(await server.stop("SIGTERM"), 0, server.stderr);
    await Deno.remove(dir, { recursive: true });
  }
});
