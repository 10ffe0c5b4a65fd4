/**
 * The control endpoint on a real server in this process (loopback, relay-style clients):
 * GET /status, /metrics and /leases over the Unix socket, metrics over TCP, `duet status` as
 * a subprocess, socket permissions and clean-up.
 */
import assert from "node:assert/strict";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import { startServer } from "../../lib/cli/serve.ts";
import { requestControl } from "../../lib/cli/status.ts";
import { parseConfig } from "../../lib/config/config.ts";
import { startControl } from "../../lib/control/http.ts";
import type { StatusSnapshot } from "../../lib/control/status.ts";
import { silentLogger } from "../../lib/log.ts";
import { DhcpType, getMessageType, getServerId } from "../../lib/wire/dhcp.ts";
import { formatIpv4 } from "../../lib/wire/ip.ts";
import { freeUdpPort, runDuet } from "../e2e/process.ts";
import { parseExposition, sampleValue } from "./prometheus.ts";

const CLIENTS = 3;

function configText(db: string, port: number): string {
  return `database: ${db}
listen:
  - address: 127.0.0.1
    port: ${port}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.20.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.20.10 - 198.18.20.59
`;
}

function mac(i: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0, 7, i]);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Reads one sample value from Prometheus text, or undefined. */
function metric(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

Deno.test("the control socket serves status, metrics and leases of a running server", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-control-" });
  const db = `${dir}/leases.db`;
  const socket = `${dir}/control.sock`;
  const port = freeUdpPort();
  const config = parseConfig(configText(db, port), `${dir}/duet.yaml`);
  const server = startServer(config, { logger: silentLogger(), transport: "deno" });
  const client = new RelayClient("127.0.0.1", port);
  let control;
  try {
    control = await startControl(server, {
      socket,
      metrics: { hostname: "127.0.0.1", port: 0 },
      config,
      logger: silentLogger(),
    });
    const mode = (await Deno.lstat(socket)).mode;
    assert.equal((mode ?? 0) & 0o777, 0o600, "owner-only socket");

    // One malformed datagram, then CLIENTS full DISCOVER/REQUEST exchanges.
    const raw = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    await raw.send(new Uint8Array([1, 2, 3]), { transport: "udp", hostname: "127.0.0.1", port });
    raw.close();
    const given: string[] = [];
    for (let i = 1; i <= CLIENTS; i++) {
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
      assert.equal(ack && getMessageType(ack), DhcpType.DHCPACK, `client ${i} got no ACK`);
      given.push(formatIpv4(ack?.yiaddr ?? 0));
    }

    // GET /status
    const status = await requestControl(socket, "/status");
    assert.equal(status.status, 200, status.body);
    const s = JSON.parse(status.body) as StatusSnapshot;
    assert.equal(s.pid, Deno.pid);
    assert.equal(s.database, db);
    assert.deepEqual(s.listen, server.transports.map((t) => t.name));
    assert.deepEqual(s.subnets, [{ subnet: "198.18.20.0/24", size: 50, free: 50 - CLIENTS }]);
    assert.equal(s.leases.active, CLIENTS);
    assert.equal(s.dhcp.received.DHCPDISCOVER, CLIENTS);
    assert.equal(s.dhcp.received.DHCPREQUEST, CLIENTS);
    assert.equal(s.dhcp.sent.DHCPOFFER, CLIENTS);
    assert.equal(s.dhcp.sent.DHCPACK, CLIENTS);
    assert.equal(s.dhcp.malformed, 1);
    assert.ok(s.db.commits >= 1, "at least one commit");
    assert.equal(s.db.leasesCommitted >= CLIENTS, true);
    assert.equal(s.db.commitLatencyMs.count, s.db.commits);
    assert.equal(s.failover, null);
    assert.equal(s.state, null);
    assert.equal(s["partner-state"], null);

    // GET /metrics, on the socket and over TCP.
    const m = await requestControl(socket, "/metrics");
    assert.equal(m.status, 200);
    assert.equal(metric(m.body, `duet_leases{state="active"}`), CLIENTS);
    assert.equal(metric(m.body, `duet_packets_received_total{type="DHCPREQUEST"}`), CLIENTS);
    assert.equal(metric(m.body, `duet_packets_sent_total{type="DHCPACK"}`), CLIENTS);
    assert.equal(metric(m.body, "duet_packets_malformed_total"), 1);
    assert.equal(metric(m.body, `duet_pool_free_addresses{subnet="198.18.20.0/24"}`), 47);
    assert.equal(
      metric(m.body, `duet_db_commit_latency_ms_bucket{le="+Inf"}`),
      metric(m.body, "duet_db_commits_total"),
    );
    const addr = control.metricsAddr;
    assert.ok(addr);
    const tcp = await fetch(`http://127.0.0.1:${addr.port}/metrics`);
    assert.equal(tcp.status, 200);
    assert.match(tcp.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    assert.equal(metric(await tcp.text(), `duet_leases{state="active"}`), CLIENTS);
    const notHere = await fetch(`http://127.0.0.1:${addr.port}/status`);
    assert.equal(notHere.status, 404, "the TCP address serves only /metrics");
    await notHere.body?.cancel();

    // GET /leases matches `duet leases --json` byte for byte.
    const leases = await requestControl(socket, "/leases");
    assert.equal(leases.status, 200);
    const dump = await runDuet(["leases", "--db", db, "--json"]);
    assert.equal(dump.code, 0, dump.stderr);
    assert.equal(leases.body, dump.stdout);
    const rows = JSON.parse(leases.body) as { address: string; state: string }[];
    assert.deepEqual(
      rows.filter((r) => r.state === "active").map((r) => r.address).sort(),
      [...given].sort(),
    );

    // Operator commands and wrong requests.
    const pd = await requestControl(socket, "/partner-down", { method: "POST" });
    // No failover section: there is no partner to declare down.
    assert.equal(pd.status, 409);
    assert.match(JSON.parse(pd.body).error, /no failover section/);
    assert.equal((await requestControl(socket, "/partner-down")).status, 405);
    assert.equal((await requestControl(socket, "/status", { method: "POST" })).status, 405);
    assert.equal((await requestControl(socket, "/nope")).status, 404);

    // `duet status` as a subprocess.
    const json = await runDuet(["status", "--json", "--socket", socket]);
    assert.equal(json.code, 0, json.stderr);
    const viaCli = JSON.parse(json.stdout) as StatusSnapshot;
    assert.equal(viaCli.leases.active, CLIENTS);
    assert.equal(viaCli.dhcp.sent.DHCPACK, CLIENTS);
    const human = await runDuet(["status", "--socket", socket]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^subnet {4}198\.18\.20\.0\/24 {2}3\/50 used \(6\.0%\), 47 free$/m);
    assert.match(human.stdout, /^leases {4}active 3$/m);
    assert.match(human.stdout, /^failover {2}off$/m);

    await control.stop();
    assert.equal(await exists(socket), false, "the socket is removed at stop");
    const gone = await runDuet(["status", "--socket", socket]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /not running/);
  } finally {
    await control?.stop();
    await client.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

/** Listens on `path` in a child process and SIGKILLs it, leaving the socket file behind. */
async function leaveStaleSocket(path: string): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `Deno.listen({ transport: "unix", path: ${JSON.stringify(path)} });` +
      `console.log("ready"); setTimeout(() => {}, 30000);`,
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  try {
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /ready/);
    reader.releaseLock();
    child.kill("SIGKILL");
    await child.stdout.cancel();
  } finally {
    clearTimeout(timer);
    await child.status;
  }
}

Deno.test("startControl() replaces a stale socket and refuses a live one or a plain file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-control-" });
  const socket = `${dir}/c.sock`;
  const fake = {
    core: {
      utilisation: () => [],
      counters: { received: {}, sent: {}, dropped: {}, offersRecycled: 0 },
    },
    shell: {
      counters: {
        malformed: 0,
        sendFailed: 0,
        commits: 0,
        commitFailures: 0,
        leasesCommitted: 0,
        commitLatencyMs: new Map<number, number>(),
        commitLatencySumMs: 0,
        withheld: {},
      },
      storeFailing: false,
    },
    store: {
      countByState: () => ({
        free: 0,
        active: 0,
        expired: 0,
        released: 0,
        abandoned: 0,
        reset: 0,
        backup: 0,
      }),
    },
    transports: [],
    peer: null,
  };
  const options = {
    socket,
    config: { database: `${dir}/x.db`, failover: null },
    logger: silentLogger(),
  };
  try {
    // A socket file with nobody listening: what a killed server leaves behind (Deno unlinks
    // the file on close, so only a killed process leaves one).
    await leaveStaleSocket(socket);
    assert.equal((await Deno.lstat(socket)).isSocket, true, "a stale socket file exists");
    const control = await startControl(fake, options);
    assert.equal((await requestControl(socket, "/status")).status, 200);

    // A second endpoint on the same path must not steal the socket from a live one.
    await assert.rejects(() => startControl(fake, options), /another server is running/);
    assert.equal((await requestControl(socket, "/status")).status, 200, "first one untouched");
    await control.stop();
    assert.equal(await exists(socket), false);

    await Deno.writeTextFile(socket, "not a socket");
    await assert.rejects(() => startControl(fake, options), /is not a socket/);
    assert.equal(await Deno.readTextFile(socket), "not a socket", "a plain file is kept");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function freeTcpPort(): number {
  const l = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("the control socket reports a real failover link and the partner's state", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-control-fo-" });
  const ports = [freeTcpPort(), freeTcpPort()];
  if (ports[0] === ports[1]) ports[1] = freeTcpPort();
  const texts = new Map<string, string>();
  const side = (name: string, role: string, port: number, peerPort: number) => {
    const text = configText(`${dir}/${name}.db`, freeUdpPort()) +
      `failover:
  role: ${role}
  address: 127.0.0.1
  port: ${port}
  peer: 127.0.0.1
  peer-port: ${peerPort}
  relationship: ctl-pair
  max-response-delay: 6
${role === "primary" ? "  mclt: 300\n  split: 128\n" : ""}`;
    texts.set(name, text);
    return parseConfig(text, `${dir}/${name}.yaml`);
  };
  const primaryConfig = side("primary", "primary", ports[0] as number, ports[1] as number);
  const secondaryConfig = side("secondary", "secondary", ports[1] as number, ports[0] as number);
  const logger = silentLogger();
  const primary = startServer(primaryConfig, { logger, transport: "deno" });
  let secondary;
  let control;
  try {
    secondary = startServer(secondaryConfig, { logger, transport: "deno" });
    const socket = `${dir}/primary.sock`;
    control = await startControl(primary, { socket, config: primaryConfig, logger });
    let s: StatusSnapshot | undefined;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      s = JSON.parse((await requestControl(socket, "/status")).body) as StatusSnapshot;
      if (s.failover?.link === "up") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(s?.failover?.link, "up", JSON.stringify(s?.failover));
    assert.equal(s?.failover?.role, "primary");
    assert.equal(s?.failover?.relationship, "ctl-pair");
    // A fresh pair goes to NORMAL (draft-12 §9.7.2); wait for the partner's last STATE.
    while (Date.now() < deadline && s?.failover?.partner?.state !== "NORMAL") {
      await new Promise((r) => setTimeout(r, 50));
      s = JSON.parse((await requestControl(socket, "/status")).body) as StatusSnapshot;
    }
    assert.equal(s?.failover?.partner?.state, "NORMAL");
    assert.equal(s?.failover?.partner?.relationship, "ctl-pair");
    assert.equal(typeof s?.failover?.clockSkewSeconds, "number");
    assert.ok((s?.failover?.sinceContactSeconds ?? Infinity) < 10);

    const m = (await requestControl(socket, "/metrics")).body;
    assert.equal(metric(m, "duet_failover_link_up"), 1);
    assert.equal(metric(m, `duet_failover_partner_state{state="NORMAL"}`), 1);
    assert.equal(metric(m, `duet_failover_partner_state{state="STARTUP"}`), 0);
    assert.ok(metric(m, "duet_failover_clock_skew_seconds") !== undefined);

    const human = await runDuet(["status", "--socket", socket]);
    assert.match(
      human.stdout,
      /^failover {2}primary of "ctl-pair" in NORMAL, link up, partner NORMAL/m,
    );
    assert.equal(s?.failover?.state, "NORMAL");
    assert.equal(metric(m, `duet_failover_state{state="NORMAL"}`), 1);
    // The top-level keys the failover issue names, in the draft's words, lower case.
    assert.equal(s?.state, "normal");
    assert.equal(s?.["partner-state"], "normal");

    // The last transitions (draft-12 §9.7.2: a fresh server recovers first), each with its
    // reason, as JSON and in the human summary.
    const transitions = s?.failover?.transitions ?? [];
    const steps = transitions.map((t) => `${t.from} -> ${t.to}`);
    assert.ok(steps.includes("RECOVER -> RECOVER-DONE"), steps.join(", "));
    assert.equal(steps[steps.length - 1], "RECOVER-DONE -> NORMAL", steps.join(", "));
    assert.ok(transitions.every((t) => t.reason !== "" && /Z$/.test(t.time)));
    assert.match(human.stdout, /^states {4}\S+Z /m);
    assert.match(human.stdout, /^ {10}\S+Z RECOVER-DONE -> NORMAL \(.+\)$/m);
    assert.match(human.stdout, /^updates {3}\d+ queued, \d+ unacked; \d+ sent, /m);
    // Binding-update gauges, and the whole exposition is valid.
    const families = parseExposition(m);
    // Read at another moment than `s`: both are counts, not necessarily the same one.
    assert.equal(typeof s?.failover?.updates?.unacked, "number");
    assert.ok(sampleValue(families, "duet_failover_bndupd_unacked") >= 0);
    assert.ok(sampleValue(families, "duet_failover_updates_queued") >= 0);
    assert.ok(sampleValue(families, "duet_failover_updates_sent_total") >= 0);

    // A reload in NORMAL: lease times apply (a new core, same endpoint), pools are refused.
    const path = `${dir}/primary.yaml`;
    const text = texts.get("primary") as string;
    const core = primary.core;
    await Deno.writeTextFile(path, text.replace("default: 600", "default: 900"));
    const applied = await primary.reload();
    assert.equal(applied.outcome, "applied", JSON.stringify(applied.problems));
    assert.notEqual(primary.core, core, "the core was replaced");
    assert.equal(primary.config.leaseTime.default, 900);
    assert.equal(primary.failover?.status().state, "NORMAL");
    await Deno.writeTextFile(path, text.replace("198.18.20.59", "198.18.20.99"));
    const refused = await primary.reload();
    assert.equal(refused.outcome, "refused");
    assert.deepEqual(refused.problems.map((p) => p.path), ["subnets.0.pools"]);
    assert.equal(primary.config.leaseTime.default, 900, "the configuration in force stays");
    assert.equal(primary.failover?.status().state, "NORMAL");
  } finally {
    await control?.stop();
    await secondary?.stop();
    await primary.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
