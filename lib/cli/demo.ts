/**
 * `duet demo`: no root, no configuration. Starts a failover pair on loopback (primary on
 * 127.0.0.1, secondary on 127.0.0.2), puts simulated clients through a relay that forwards to
 * both, stops the primary as if it crashed, shows the secondary carrying on
 * (COMMUNICATIONS-INTERRUPTED, then PARTNER-DOWN by operator command), restarts the primary,
 * shows RECOVER -> NORMAL, and checks that both lease tables agree. Prints what happens.
 */
import { parseArgs } from "node:util";
import { parseConfig } from "../config/config.ts";
import type { Logger } from "../log.ts";
import type { Lease } from "../store/store.ts";
import {
  type DhcpMessage,
  DhcpType,
  getLeaseTime,
  getMessageType,
  getServerId,
} from "../wire/dhcp.ts";
import { formatIpv4, formatMac, parseIpv4 } from "../wire/ip.ts";
import type { CliIo } from "./io.ts";
import { ExitCode } from "./io.ts";
import { leasesCommand } from "./leases.ts";
import { buildRequest, RelayToAll, type ServerReply } from "./relay_client.ts";
import { type RunningServer, startServer } from "./serve.ts";

/** The demo's MCLT in seconds: short, so that the waits of the draft take seconds. */
export const DEMO_MCLT = 4;

/** The embedded configuration of one end; the upper-case words are filled in. */
export const DEMO_CONFIG = `# duet demo: loopback only, clients arrive through a relay at 127.0.0.1
database: DATABASE
authoritative: true
listen:
  - address: ADDRESS
    port: PORT
lease-time: { default: 600, max: 3600 }
options:
  domain-name-servers: [198.18.16.53]
  domain-name: demo.example
subnets:
  - subnet: 198.18.16.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.16.10 - 198.18.16.49
    options:
      routers: [198.18.16.1]
failover:
  role: ROLE
  address: ADDRESS
  port: PORT
  peer: PEER
  peer-port: PORT
  relationship: demo
  max-response-delay: 5
`;

/** The extra lines of the primary's failover section (draft-12 §7.8.1: it decides both). */
const PRIMARY_ONLY = `  mclt: ${DEMO_MCLT}\n  split: 128\n`;

const PRIMARY = "127.0.0.1";
const SECONDARY = "127.0.0.2";

/** A logger that keeps failover state changes for the narrative and drops the rest. */
class StoryLogger implements Logger {
  readonly debugEnabled = false;
  readonly transitions: string[] = [];
  readonly errors: string[] = [];
  debug(): void {}
  info(msg: string): void {
    const m = /^Failover state (\S+) -> (\S+)$/.exec(msg);
    if (m) this.transitions.push(`${m[1]} -> ${m[2]}`);
  }
  warn(): void {}
  error(msg: string, fields?: Record<string, unknown>): void {
    this.errors.push(`${msg} ${JSON.stringify(fields ?? {})}`);
  }
  /** The transitions since the last call, as "A -> B -> C". */
  take(): string {
    const t = this.transitions.splice(0);
    if (t.length === 0) return "(no change)";
    return [t[0]!.split(" -> ")[0], ...t.map((x) => x.split(" -> ")[1])].join(" -> ");
  }
}

interface End {
  name: "primary" | "secondary";
  address: string;
  database: string;
  logger: StoryLogger;
  server: RunningServer | null;
}

function configOf(end: End, port: number): string {
  let text = DEMO_CONFIG.replaceAll("DATABASE", end.database)
    .replaceAll("ADDRESS", end.address)
    .replaceAll("PORT", String(port))
    .replaceAll("ROLE", end.name)
    .replaceAll("PEER", end.name === "primary" ? SECONDARY : PRIMARY);
  if (end.name === "primary") text += PRIMARY_ONLY;
  return text;
}

function start(end: End, port: number): void {
  const config = parseConfig(configOf(end, port), `(demo ${end.name})`);
  end.server = startServer(config, {
    logger: end.logger,
    transport: "deno",
    peerRetrySeconds: 1,
  });
}

function stateOf(end: End): string {
  return end.server?.failover?.status().state ?? "stopped";
}

async function waitState(end: End, state: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (stateOf(end) === state) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return stateOf(end) === state;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The fields both halves of a pair must agree on (the failover times are each side's own). */
function shared(l: Lease): string {
  return [
    formatIpv4(l.address),
    l.state,
    formatMac(l.hwAddress),
    l.clientId === null ? "-" : formatMac(l.clientId),
    l.hostname ?? "-",
    l.ends,
  ].join(" ");
}

/** The server's bindings as rows of shared(). */
function rowsOf(end: End): string[] {
  return end.server === null ? [] : [...end.server.store.iterate()].map(shared);
}

function one(replies: ServerReply[], type: number): ServerReply | undefined {
  const r = replies.filter((x) => getMessageType(x.message) === type);
  return r.length === 1 ? r[0] : undefined;
}

/** Runs the demo; returns the exit code. */
export async function demoCommand(args: string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        clients: { type: "string", default: "6" },
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
  if (!Number.isInteger(clients) || clients < 2 || clients > 16) {
    io.stderr("duet demo: --clients must be a whole number from 2 to 16\n");
    return ExitCode.USAGE;
  }
  if (!Number.isInteger(port) || port < 1024 || port > 65535) {
    io.stderr("duet demo: --port must be from 1024 to 65535\n");
    return ExitCode.USAGE;
  }
  const dir = values.keep ?? await Deno.makeTempDir({ prefix: "duet-demo-" });
  if (values.keep) await Deno.mkdir(dir, { recursive: true });
  const primary: End = {
    name: "primary",
    address: PRIMARY,
    database: `${dir}/primary.db`,
    logger: new StoryLogger(),
    server: null,
  };
  const secondary: End = {
    name: "secondary",
    address: SECONDARY,
    database: `${dir}/secondary.db`,
    logger: new StoryLogger(),
    server: null,
  };
  const problems: string[] = [];
  const expect = (ok: boolean, what: string): boolean => {
    if (!ok) problems.push(what);
    return ok;
  };
  const say = (s: string) => io.stdout(s + "\n");
  let relay: RelayToAll | null = null;
  try {
    say("duet demo: a failover pair on loopback (draft-ietf-dhc-failover-12)");
    say(`  primary    ${PRIMARY}:${port} (DHCP/udp and failover/tcp), ${primary.database}`);
    say(`  secondary  ${SECONDARY}:${port} (DHCP/udp and failover/tcp), ${secondary.database}`);
    say(`  MCLT ${DEMO_MCLT} s, split 128: each server answers about half of the new clients`);
    say("");

    // 1. Startup.
    start(primary, port);
    start(secondary, port);
    const normal = await waitState(primary, "NORMAL", 15_000) &&
      await waitState(secondary, "NORMAL", 15_000);
    say("1. Both servers start, connect and synchronise (UPDREQALL/UPDDONE):");
    say(`   primary:   ${primary.logger.take()}`);
    say(`   secondary: ${secondary.logger.take()}`);
    if (!expect(normal, "the pair did not reach NORMAL")) return ExitCode.FAILURE;
    await sleep(300);
    const u = primary.server?.core.utilisation()[0];
    say(
      `   The primary gave ${u?.backup ?? 0} of the ${u?.free ?? 0} free addresses to the ` +
        "secondary (pool balancing, BNDUPD BACKUP).",
    );
    say("");

    // 2. Clients join through a relay that forwards to both servers.
    relay = new RelayToAll([
      { name: "primary", hostname: PRIMARY, port },
      { name: "secondary", hostname: SECONDARY, port },
    ]);
    say(`2. ${clients} clients join through a relay that forwards to both servers:`);
    let xid = 0x6475_6500;
    const granted = new Map<number, { address: number; server: string }>();
    const served: Record<string, number> = { primary: 0, secondary: 0 };
    for (let i = 1; i <= clients; i++) {
      const mac = new Uint8Array([2, 0, 0, 0, 0, i]);
      const common = { giaddr: relay.giaddr, hostname: `demo-${i}` };
      const offers = await relay.ask(
        buildRequest(DhcpType.DHCPDISCOVER, mac, { ...common, xid: ++xid }),
      );
      const offer = one(offers, DhcpType.DHCPOFFER);
      if (offer === undefined) {
        expect(false, `demo-${i} got ${offers.length} offers, not one`);
        continue;
      }
      const serverId = getServerId(offer.message) as number;
      const acks = await relay.ask(buildRequest(DhcpType.DHCPREQUEST, mac, {
        ...common,
        xid: ++xid,
        requested: offer.message.yiaddr,
        serverId,
      }));
      const ack = one(acks, DhcpType.DHCPACK);
      if (ack === undefined) {
        expect(false, `demo-${i} got no single DHCPACK`);
        continue;
      }
      served[ack.server] = (served[ack.server] ?? 0) + 1;
      granted.set(i, { address: ack.message.yiaddr, server: ack.server });
      // The first lease of a new client is at most the MCLT (§5.2.1); once the partner has
      // acked the BNDUPD, the renewal gets the configured time.
      await sleep(100);
      const renewed = one(
        await relay.ask(
          buildRequest(DhcpType.DHCPREQUEST, mac, {
            ...common,
            xid: ++xid,
            ciaddr: ack.message.yiaddr,
          }),
          300,
          [ack.server],
        ),
        DhcpType.DHCPACK,
      );
      say(
        `   demo-${i} ${formatMac(mac)}  ${ack.server.padEnd(9)} ACK ` +
          `${formatIpv4(ack.message.yiaddr).padEnd(14)} ${getLeaseTime(ack.message)} s, ` +
          `renewed for ${renewed ? getLeaseTime(renewed.message) : "-"} s`,
      );
      expect(renewed !== undefined, `demo-${i} was not renewed`);
    }
    say(
      `   The primary served ${served.primary}, the secondary ${served.secondary} ` +
        "(RFC 3074 hash of each client's MAC).",
    );
    say("");

    // 3. The primary crashes.
    say("3. The primary stops as if it crashed (no STATE SHUTDOWN).");
    await primary.server?.stop();
    primary.server = null;
    primary.logger.take();
    expect(
      await waitState(secondary, "COMMUNICATIONS-INTERRUPTED", 10_000),
      "the secondary did not go to COMMUNICATIONS-INTERRUPTED",
    );
    say(`   secondary: ${secondary.logger.take()}`);
    const ofPrimary = [...granted.entries()].find(([, g]) => g.server === "primary");
    if (ofPrimary) {
      const [i, g] = ofPrimary;
      const mac = new Uint8Array([2, 0, 0, 0, 0, i]);
      const r = one(
        await relay.ask(
          buildRequest(DhcpType.DHCPREQUEST, mac, {
            xid: ++xid,
            giaddr: relay.giaddr,
            ciaddr: g.address,
          }),
        ),
        DhcpType.DHCPACK,
      );
      say(
        `   demo-${i}, a client of the primary, rebinds: the secondary renews ` +
          `${formatIpv4(g.address)}: ${r ? "ACK" : "no answer"}`,
      );
      expect(r !== undefined, "the secondary did not renew the primary's client");
    }
    const newMac = new Uint8Array([2, 0, 0, 0, 0, 0x40]);
    const fresh = await lease(relay, newMac, ++xid, ++xid);
    xid += 2;
    say(
      `   A new client gets ${fresh ? formatIpv4(fresh) : "nothing"} from the secondary's own ` +
        `(BACKUP) addresses, for the MCLT (${DEMO_MCLT} s); it does not renew, so it expires.`,
    );
    expect(fresh !== undefined, "the secondary gave the new client no address");
    say("");

    // 4. The operator says the partner is down.
    say("4. The operator runs `duet partner-down` on the secondary:");
    const cmd = secondary.server?.failover?.command("partner-down");
    say(`   secondary: ${secondary.logger.take()}`);
    expect(cmd?.state === "PARTNER-DOWN", "the secondary did not go to PARTNER-DOWN");
    // The highest pool address is still the primary's (balancing gave the lowest away).
    const wanted = parseIpv4("198.18.16.49") as number;
    const askMac = new Uint8Array([2, 0, 0, 0, 0, 0x41]);
    const before = one(
      await relay.ask(
        buildRequest(DhcpType.DHCPDISCOVER, askMac, {
          xid: ++xid,
          giaddr: relay.giaddr,
          requested: wanted,
        }),
      ),
      DhcpType.DHCPOFFER,
    );
    say(
      `   A new client asks for ${formatIpv4(wanted)}, one of the primary's addresses: offered ` +
        `${before ? formatIpv4(before.message.yiaddr) : "nothing"} (not before the MCLT, §9.4.2).`,
    );
    expect(before?.message.yiaddr !== wanted, "the primary's address was offered too early");
    await sleep(DEMO_MCLT * 1000 + 1100);
    const after = one(
      await relay.ask(
        buildRequest(DhcpType.DHCPDISCOVER, new Uint8Array([2, 0, 0, 0, 0, 0x42]), {
          xid: ++xid,
          giaddr: relay.giaddr,
          requested: wanted,
        }),
      ),
      DhcpType.DHCPOFFER,
    );
    say(
      `   ${DEMO_MCLT} s (the MCLT) later another client asking for it is offered ` +
        `${after ? formatIpv4(after.message.yiaddr) : "nothing"}: the whole pool is the ` +
        "secondary's now.",
    );
    expect(after?.message.yiaddr === wanted, "the whole pool did not open after the MCLT");
    say("");

    // 5. The primary comes back.
    say("5. The primary restarts with its database:");
    start(primary, port);
    const back = await waitState(primary, "NORMAL", 20_000) &&
      await waitState(secondary, "NORMAL", 20_000);
    say(`   primary:   ${primary.logger.take()}`);
    say(`   secondary: ${secondary.logger.take()}`);
    expect(back, "the pair did not return to NORMAL");
    say("");

    // 6. Both databases agree.
    await sleep(500);
    const a = rowsOf(primary);
    const b = rowsOf(secondary);
    const differ = a.filter((x, i) => x !== b[i]).length + Math.abs(a.length - b.length);
    const active = a.filter((x) => x.includes(" active ")).length;
    say(
      `6. Both lease tables agree: ${differ === 0 ? "yes" : `no, ${differ} rows differ`} ` +
        `(${a.length} addresses, ${active} active).`,
    );
    expect(differ === 0, "the lease tables differ");
  } finally {
    await relay?.close();
    await primary.server?.stop({ shutdown: true });
    await secondary.server?.stop({ shutdown: true });
  }
  say("");
  say(`Active leases (duet leases --db ${primary.database} --state active):`);
  const code = await leasesCommand(["--db", primary.database, "--state", "active"], io);
  if (!values.keep) await Deno.remove(dir, { recursive: true });
  for (const e of [...primary.logger.errors, ...secondary.logger.errors]) {
    io.stderr(`duet demo: server error: ${e}\n`);
  }
  if (problems.length > 0) {
    for (const p of problems) io.stderr(`duet demo: ${p}\n`);
    return ExitCode.FAILURE;
  }
  return code;
}

/** DISCOVER and SELECTING REQUEST through the relay; the address, or undefined. */
async function lease(
  relay: RelayToAll,
  mac: Uint8Array,
  xid1: number,
  xid2: number,
): Promise<number | undefined> {
  const offer = one(
    await relay.ask(buildRequest(DhcpType.DHCPDISCOVER, mac, { xid: xid1, giaddr: relay.giaddr })),
    DhcpType.DHCPOFFER,
  );
  if (!offer) return undefined;
  const ack: DhcpMessage | undefined = one(
    await relay.ask(buildRequest(DhcpType.DHCPREQUEST, mac, {
      xid: xid2,
      giaddr: relay.giaddr,
      requested: offer.message.yiaddr,
      serverId: getServerId(offer.message) as number,
    })),
    DhcpType.DHCPACK,
  )?.message;
  return ack?.yiaddr;
}
