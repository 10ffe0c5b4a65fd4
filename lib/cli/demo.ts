/**
 * `duet demo`: no root, no configuration. Starts duet on loopback with an embedded
 * configuration, runs simulated clients through DISCOVER/REQUEST, a renewal and a
 * release, and prints the lease table.
 */
import { parseArgs } from "node:util";
import { parseConfig } from "../config/config.ts";
import { createLogger } from "../log.ts";
import { DhcpType, getServerId } from "../wire/dhcp.ts";
import { formatMac } from "../wire/ip.ts";
import type { CliIo } from "./io.ts";
import { ExitCode } from "./io.ts";
import { leasesCommand } from "./leases.ts";
import { buildRequest, describeReply, RelayClient } from "./relay_client.ts";
import { startServer } from "./serve.ts";

/** The embedded configuration; DATABASE and PORT are filled in. */
export const DEMO_CONFIG = `# duet demo: loopback only, clients arrive through a relay at 127.0.0.1
database: DATABASE
authoritative: true
listen:
  - address: 127.0.0.1
    port: PORT
lease-time: { default: 600, max: 3600 }
options:
  domain-name-servers: [198.51.100.53]
  domain-name: demo.example
subnets:
  - subnet: 198.18.16.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.16.10 - 198.18.16.200
    options:
      routers: [198.18.16.1]
    reservations:
      - hw-address: 02:00:00:00:00:05
        address: 198.18.16.5
        hostname: printer
`;

/** Runs the demo; returns the exit code. */
export async function demoCommand(args: string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        clients: { type: "string", default: "5" },
        port: { type: "string", default: "10067" },
        keep: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    io.stderr(`duet demo: ${(e as Error).message}\n`);
    return ExitCode.USAGE;
  }
  if (values.help) {
    io.stdout("Usage: duet demo [--clients N] [--port P] [--keep DIR]\n");
    return ExitCode.OK;
  }
  const clients = Number(values.clients);
  const port = Number(values.port);
  if (!Number.isInteger(clients) || clients < 1 || clients > 100) {
    io.stderr("duet demo: --clients must be a whole number from 1 to 100\n");
    return ExitCode.USAGE;
  }
  if (!Number.isInteger(port) || port < 1024 || port > 65535) {
    io.stderr("duet demo: --port must be from 1024 to 65535\n");
    return ExitCode.USAGE;
  }
  const dir = values.keep ?? await Deno.makeTempDir({ prefix: "duet-demo-" });
  if (values.keep) await Deno.mkdir(dir, { recursive: true });
  const database = `${dir}/leases.db`;
  const text = DEMO_CONFIG.replace("DATABASE", database).replace("PORT", String(port));
  const config = parseConfig(text, "(demo)");
  const logger = createLogger({ level: "warn" });
  const server = startServer(config, { logger, transport: "deno" });
  io.stdout(`duet demo: server on 127.0.0.1:${port}, database ${database}\n\n`);
  const client = new RelayClient("127.0.0.1", port);
  let failures = 0;
  try {
    let xid = 0x6475_6500;
    for (let i = 1; i <= clients; i++) {
      const mac = new Uint8Array([2, 0, 0, 0, 0, i]);
      const name = `demo-${i}`;
      const common = { giaddr: client.giaddr, hostname: name };
      const offer = await client.exchange(
        buildRequest(DhcpType.DHCPDISCOVER, mac, { ...common, xid: ++xid }),
      );
      io.stdout(`${name} ${formatMac(mac)}  DHCPDISCOVER -> ${describeReply(offer)}\n`);
      if (!offer) {
        failures++;
        continue;
      }
      const serverId = getServerId(offer);
      const ack = await client.exchange(buildRequest(DhcpType.DHCPREQUEST, mac, {
        ...common,
        xid: ++xid,
        requested: offer.yiaddr,
        ...(serverId !== undefined ? { serverId } : {}),
      }));
      io.stdout(`${name} ${formatMac(mac)}  DHCPREQUEST  -> ${describeReply(ack)}\n`);
      if (!ack || ack.yiaddr === 0) {
        failures++;
        continue;
      }
      const renew = await client.exchange(
        buildRequest(DhcpType.DHCPREQUEST, mac, { ...common, xid: ++xid, ciaddr: ack.yiaddr }),
      );
      io.stdout(`${name} ${formatMac(mac)}  renew        -> ${describeReply(renew)}\n`);
      if (i === clients && clients > 1) {
        await client.send(buildRequest(DhcpType.DHCPRELEASE, mac, {
          ...common,
          xid: ++xid,
          ciaddr: ack.yiaddr,
          ...(serverId !== undefined ? { serverId } : {}),
        }));
        io.stdout(`${name} ${formatMac(mac)}  DHCPRELEASE  (no reply expected)\n`);
      }
    }
    // Let the release land before the server stops.
    await new Promise((r) => setTimeout(r, 100));
  } finally {
    await client.close();
    await server.stop();
  }
  io.stdout("\nLease table (duet leases --db " + database + "):\n");
  const code = await leasesCommand(["--db", database], io);
  if (!values.keep) await Deno.remove(dir, { recursive: true });
  if (failures > 0) {
    io.stderr(`duet demo: ${failures} client(s) got no lease\n`);
    return ExitCode.FAILURE;
  }
  return code;
}
