/**
 * Oversized input through DhcpShell with a fake transport: a datagram over MAX_REQUEST_SIZE is
 * dropped before decoding, and a relayed request whose option 82 cannot be echoed no longer
 * throws out of the receive loop (it used to: the encoder refused the reply).
 */
import assert from "node:assert/strict";
import { parseConfig } from "../../lib/config/config.ts";
import { buildRequest } from "../../lib/cli/relay_client.ts";
import { silentLogger } from "../../lib/log.ts";
import { DhcpCore } from "../../lib/server/dhcp.ts";
import { MAX_REQUEST_SIZE } from "../../lib/server/guard.ts";
import { ProtocolClock } from "../../lib/server/clock.ts";
import { DhcpShell } from "../../lib/server/shell.ts";
import type { Received, SendTarget, Transport } from "../../lib/server/transport.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { decodeDhcp, DhcpType, encodeDhcp, getMessageType, Opt } from "../../lib/wire/dhcp.ts";

const RELAY = 0xc6336401; // 198.51.100.1

const CONFIG = parseConfig(
  `database: ":memory:"
listen: [{address: 192.0.2.1}]
subnets:
  - subnet: 198.51.100.0/24
    pools: [{range: 198.51.100.10 - 198.51.100.20}]
`,
  "test.yaml",
);

/** A transport the test drives by hand; packets arrive from the relay. */
class FakeTransport implements Transport {
  readonly name = "fake";
  sent: { data: Uint8Array; to: SendTarget }[] = [];
  onPacket: ((p: Received) => void) | null = null;
  #done = Promise.withResolvers<void>();
  run(onPacket: (p: Received) => void): Promise<void> {
    this.onPacket = onPacket;
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
      srcAddress: RELAY,
      srcPort: 67,
      ifindex: 0,
      ifname: null,
      localAddress: 0xc0000201,
      dstAddress: null,
    });
  }
}

function setup() {
  const store = new MemoryLeaseStore();
  const core = new DhcpCore(CONFIG, store, { logger: silentLogger() });
  const transport = new FakeTransport();
  const shell = new DhcpShell({
    core,
    store,
    transports: [transport],
    logger: silentLogger(),
    commitDelayMs: 1000,
    commitBatch: 100,
    clock: new ProtocolClock({ wallMs: () => 1_800_000_000_000, monoMs: () => 0 }),
    tickSeconds: 3600,
  });
  shell.start();
  return { core, transport, shell };
}

function relayedDiscover(xid: number, option82Length: number): Uint8Array {
  const msg = buildRequest(DhcpType.DHCPDISCOVER, new Uint8Array([2, 0, 0, 0, 0, xid]), {
    xid,
    giaddr: RELAY,
  });
  if (option82Length > 0) {
    msg.options.set(Opt.RELAY_AGENT_INFO, new Uint8Array(option82Length).fill(1));
  }
  return encodeDhcp(msg, { maxSize: MAX_REQUEST_SIZE });
}

Deno.test("DhcpShell drops a datagram over MAX_REQUEST_SIZE as oversized, before decoding", async () => {
  const { core, transport, shell } = setup();
  try {
    const padded = new Uint8Array(MAX_REQUEST_SIZE + 1);
    padded.set(relayedDiscover(1, 0));
    transport.deliver(padded);
    assert.equal(core.counters.dropped.oversized, 1);
    assert.equal(core.counters.received.DHCPDISCOVER, undefined, "never decoded");
    // The same request at exactly the limit is served.
    transport.deliver(padded.subarray(0, MAX_REQUEST_SIZE));
    assert.equal(transport.sent.length, 1);
    assert.equal(getMessageType(decodeDhcp(transport.sent[0]?.data as Uint8Array)), 2);
  } finally {
    await shell.stop();
  }
});

Deno.test("DhcpShell survives a relayed request whose option 82 no reply can carry", async () => {
  const { core, transport, shell } = setup();
  try {
    // 600 octets of option 82 cannot be echoed in a 576-octet reply (RFC 3046 §2.2).
    transport.deliver(relayedDiscover(2, 600));
    assert.equal(core.counters.dropped.oversized, 1);
    assert.equal(transport.sent.length, 0);
    // The server goes on serving.
    transport.deliver(relayedDiscover(3, 20));
    assert.equal(transport.sent.length, 1);
  } finally {
    await shell.stop();
  }
});
