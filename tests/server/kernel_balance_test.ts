/**
 * KernelBalancer (lib/server/kernel_balance.ts) on a real socket: it follows what the
 * endpoint says (NORMAL's buckets or nothing), and the kernel's drops reach the DHCP core's
 * counters as the user-space refusals they replace.
 */
import assert from "node:assert/strict";
import { KernelBalanceFilter } from "../../lib/server/bpf.ts";
import { KernelBalancer } from "../../lib/server/kernel_balance.ts";
import type { DhcpCounters } from "../../lib/server/dhcp.ts";
import { openDenoTransport } from "../../lib/server/udp_deno.ts";
import type { Transport } from "../../lib/server/transport.ts";
import { silentLogger } from "../../lib/log.ts";
import { deliver, discover } from "./bpf_packets.ts";
import { requireOrSkip } from "../netns.ts";

function counters(): DhcpCounters {
  return { received: {}, sent: {}, dropped: {}, offersRecycled: 0 };
}

const MACS = Array.from({ length: 400 }, (_, i) => Uint8Array.of(2, 0, 0, 0, i >> 8, i & 255));

Deno.test("KernelBalancer follows the endpoint: drops while it names buckets, passes when not", async (t) => {
  try {
    KernelBalanceFilter.open().close();
  } catch (e) {
    requireOrSkip(t, `the kernel refused the eBPF filter: ${(e as Error).message}`);
    return;
  }
  // No bucket is this server's: in "NORMAL" every young DISCOVER is the partner's.
  let balance: { mine: Uint8Array; loadBalanceMaxSeconds: number } | null = null;
  const c = counters();
  const specs = MACS.map((mac, i) => discover(i + 1, mac));
  let k: KernelBalancer | null = null;
  // A balancer attaches to the sockets it is given at start: one per run's socket.
  const start = (transport: Transport) =>
    new KernelBalancer({
      transports: [transport],
      source: { kernelBalance: () => balance },
      serverId: () => null,
      counters: () => c,
      logger: silentLogger(),
      enabled: true,
    });
  try {
    const arrivedOff = await deliver(specs, (transport) => {
      k = start(transport);
    });
    assert.equal(arrivedOff.size, specs.length, "outside NORMAL everything passes");
    assert.equal(k!.status().state, "passing");
    k!.stop();
    const arrivedOn = await deliver(specs, (transport) => {
      k = start(transport);
      balance = { mine: new Uint8Array(32), loadBalanceMaxSeconds: 3 };
      k.sync();
    });
    assert.equal(arrivedOn.size, 0, "every DISCOVER is the partner's");
    const s = k!.status();
    assert.equal(s.state, "dropping");
    assert.deepEqual(s.dropped, { DHCPDISCOVER: specs.length, DHCPREQUEST: 0 });
    // Counted as the core counts its own refusals, once however often the status is read.
    k!.status();
    assert.equal(c.received.DHCPDISCOVER, specs.length);
    assert.equal(c.dropped["load-balanced"], specs.length);
    balance = null;
    k!.sync();
    assert.equal(k!.status().state, "passing");
  } finally {
    (k as KernelBalancer | null)?.stop();
  }
});

Deno.test("KernelBalancer is off by configuration and says why it is unavailable", () => {
  const off = new KernelBalancer({
    transports: [],
    source: { kernelBalance: () => null },
    serverId: () => null,
    counters,
    logger: silentLogger(),
    enabled: false,
  });
  assert.deepEqual(off.status(), {
    state: "off",
    reason: null,
    dropped: { DHCPDISCOVER: 0, DHCPREQUEST: 0 },
  });
  off.stop();
  // Deno's own sockets cannot take a socket filter: user space balances alone.
  const deno = openDenoTransport({ address: "127.0.0.1", port: 0 });
  try {
    const k = new KernelBalancer({
      transports: [deno],
      source: { kernelBalance: () => null },
      serverId: () => null,
      counters,
      logger: silentLogger(),
      enabled: true,
    });
    const s = k.status();
    assert.equal(s.state, "unavailable");
    assert.match(s.reason ?? "", /no DHCP socket is a raw \(FFI\) socket/);
    k.stop();
  } finally {
    deno.close();
  }
});
