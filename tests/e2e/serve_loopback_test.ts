/**
 * `duet serve` as a real process on loopback, with a relay-style client (no root needed):
 * leases, the lease dump while running, malformed input, SIGTERM and a restart that keeps
 * every lease.
 */
import assert from "node:assert/strict";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import { DhcpType, getMessageType, getServerId } from "../../lib/wire/dhcp.ts";
import { formatIpv4 } from "../../lib/wire/ip.ts";
import { DuetProcess, freeUdpPort, runDuet } from "./process.ts";

function configText(db: string, port: number): string {
  return `database: ${db}
authoritative: true
listen:
  - address: 127.0.0.1
    port: ${port}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.16.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.16.10 - 198.18.16.250
`;
}

function mac(i: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0, 1, i]);
}

interface LeaseRow {
  address: string;
  "hw-address": string;
  state: string;
  starts: string;
  ends: string;
}

Deno.test("duet serve leases, survives garbage, dumps while running, and keeps leases across a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-e2e-" });
  const db = `${dir}/leases.db`;
  const port = freeUdpPort();
  const configPath = `${dir}/duet.yaml`;
  await Deno.writeTextFile(configPath, configText(db, port));
  let server = new DuetProcess(["--config", configPath]);
  const client = new RelayClient("127.0.0.1", port);
  try {
    await server.waitFor("duet serving");

    // Garbage first: the server must drop it and keep serving.
    const raw = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    await raw.send(new Uint8Array([1, 2, 3]), { transport: "udp", hostname: "127.0.0.1", port });
    raw.close();

    const given = new Map<number, number>();
    for (let i = 1; i <= 20; i++) {
      const offer = await client.exchange(
        buildRequest(DhcpType.DHCPDISCOVER, mac(i), { xid: i, giaddr: client.giaddr }),
      );
      assert.ok(offer, `client ${i} got no OFFER`);
      const ack = await client.exchange(buildRequest(DhcpType.DHCPREQUEST, mac(i), {
        xid: 100 + i,
        giaddr: client.giaddr,
        requested: offer.yiaddr,
        serverId: getServerId(offer) as number,
      }));
      assert.ok(ack, `client ${i} got no ACK`);
      assert.equal(getMessageType(ack), DhcpType.DHCPACK);
      given.set(i, ack.yiaddr);
    }
    assert.equal(new Set(given.values()).size, 20, "every client has its own address");

    // The dump works while the server runs (WAL) and shows every ACKed lease.
    const dump = await runDuet(["leases", "--db", db, "--json"]);
    assert.equal(dump.code, 0, dump.stderr);
    const rows = JSON.parse(dump.stdout) as LeaseRow[];
    assert.equal(rows.filter((r) => r.state === "active").length, 20);
    const byAddress = new Map(rows.map((r) => [r.address, r]));
    for (const [i, a] of given) {
      assert.equal(
        byAddress.get(formatIpv4(a))?.["hw-address"],
        `02:00:00:00:01:${i.toString(16).padStart(2, "0")}`,
      );
    }

    assert.equal(await server.stop("SIGTERM"), 0, server.stderr);
    server = new DuetProcess(["--config", configPath]);
    await server.waitFor("duet serving");

    // INIT-REBOOT after the restart: the server still knows client 1's binding.
    const a1 = given.get(1) as number;
    const confirm = await client.exchange(buildRequest(DhcpType.DHCPREQUEST, mac(1), {
      xid: 500,
      giaddr: client.giaddr,
      requested: a1,
    }));
    assert.equal(confirm && getMessageType(confirm), DhcpType.DHCPACK);
    // Client 2's address is not given to a newcomer who asks for it.
    const a2 = given.get(2) as number;
    const steal = await client.exchange(buildRequest(DhcpType.DHCPREQUEST, mac(99), {
      xid: 501,
      giaddr: client.giaddr,
      requested: a2,
    }));
    assert.equal(steal && getMessageType(steal), DhcpType.DHCPNAK);
    const fresh = await client.exchange(
      buildRequest(DhcpType.DHCPDISCOVER, mac(99), { xid: 502, giaddr: client.giaddr }),
    );
    assert.ok(fresh && ![...given.values()].includes(fresh.yiaddr));
  } finally {
    await client.close();
    await server.stop("SIGTERM");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duet serve exits 3 on an invalid config and 2 on a bad flag", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-e2e-" });
  try {
    await Deno.writeTextFile(`${dir}/bad.yaml`, "database: x.db\nlisten: []\nsubnets: nope\n");
    const bad = await runDuet(["serve", "--config", `${dir}/bad.yaml`]);
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, /bad\.yaml:\d+:\d+: /);
    const usage = await runDuet(["serve", "--bogus"]);
    assert.equal(usage.code, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
