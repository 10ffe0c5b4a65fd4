/**
 * Reloading a real `duet serve` on loopback: SIGHUP applies a pool change (a client the old
 * pool could not serve gets a lease), `duet reload` rejects an invalid file and refuses unsafe
 * changes with file:line:col (the server keeps serving with the configuration in force), and
 * its exit codes; the last reload in `duet status` and the reload metrics.
 */
import assert from "node:assert/strict";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import { requestControl } from "../../lib/cli/status.ts";
import type { StatusSnapshot } from "../../lib/control/status.ts";
import {
  type DhcpMessage,
  DhcpType,
  getMessageType,
  getServerId,
  Opt,
} from "../../lib/wire/dhcp.ts";
import { formatIpv4 } from "../../lib/wire/ip.ts";
import { parseExposition, sampleValue } from "../control/prometheus.ts";
import { DuetProcess, freeUdpPort, runDuet } from "./process.ts";

interface Variant {
  port: number;
  poolEnd: number;
  extra?: string;
}

function configText(dir: string, v: Variant): string {
  return `database: ${dir}/leases.db
listen:
  - address: 127.0.0.1
    port: ${v.port}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.24.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.24.10 - 198.18.24.${v.poolEnd}
control:
  socket: ${dir}/ctl.sock
${v.extra ?? ""}`;
}

/** DISCOVER then REQUEST; the ACK, or undefined when the server offered nothing. */
async function lease(client: RelayClient, i: number): Promise<DhcpMessage | undefined> {
  const hw = new Uint8Array([2, 0, 0, 0, 0x24, i]);
  const offer = await client.exchange(
    buildRequest(DhcpType.DHCPDISCOVER, hw, { xid: 0x2400 + i, giaddr: client.giaddr }),
    800,
  );
  if (!offer) return undefined;
  const ack = await client.exchange(buildRequest(DhcpType.DHCPREQUEST, hw, {
    xid: 0x2500 + i,
    giaddr: client.giaddr,
    requested: offer.yiaddr,
    serverId: getServerId(offer) as number,
  }));
  assert.equal(ack && getMessageType(ack), DhcpType.DHCPACK, `client ${i}: ACK`);
  return ack;
}

async function status(socket: string): Promise<StatusSnapshot> {
  return JSON.parse((await requestControl(socket, "/status")).body) as StatusSnapshot;
}

Deno.test("duet serve reloads on SIGHUP and duet reload, keeping the old configuration on any problem", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-reload-" });
  const port = freeUdpPort();
  const configPath = `${dir}/duet.yaml`;
  const socket = `${dir}/ctl.sock`;
  await Deno.writeTextFile(configPath, configText(dir, { port, poolEnd: 11 }));
  const server = new DuetProcess(["--config", configPath]);
  const client = new RelayClient("127.0.0.1", port);
  try {
    await server.waitFor("duet serving");
    assert.equal(formatIpv4((await lease(client, 1))?.yiaddr ?? 0), "198.18.24.10");
    assert.equal(formatIpv4((await lease(client, 2))?.yiaddr ?? 0), "198.18.24.11");
    assert.equal(await lease(client, 3), undefined, "a two-address pool is full");

    // SIGHUP: a bigger pool, an option and debug logging apply at once.
    await Deno.writeTextFile(
      configPath,
      configText(dir, {
        port,
        poolEnd: 20,
        extra: "log-level: debug\noptions: { domain-name: reload.example }\n",
      }),
    );
    server.child.kill("SIGHUP");
    await server.waitFor("Configuration reloaded");
    assert.match(server.stderr, /Configuration reloaded .*changes=".*subnets\.0\.pools/);
    const third = await lease(client, 3);
    assert.equal(formatIpv4(third?.yiaddr ?? 0), "198.18.24.12", "the grown pool serves");
    assert.equal(
      new TextDecoder().decode(third?.options.get(Opt.DOMAIN_NAME)),
      "reload.example",
      "the new option is sent",
    );
    await server.waitFor("Handled DHCP request", 5000); // log-level debug is in force
    let s = await status(socket);
    // The counters of the replaced core carry over.
    assert.equal(s.dhcp.received.DHCPDISCOVER, 4);
    assert.equal(s.dhcp.dropped["pool-exhausted"], 1);
    assert.equal(s.reload.last?.outcome, "applied");
    assert.equal(s.hooks, null, "no hooks section, no hook status");

    // An invalid file: every problem with its line:col, and the server keeps serving.
    await Deno.writeTextFile(
      configPath,
      configText(dir, { port, poolEnd: 20, extra: "leas-time: 5\n" }).replace(
        "198.18.24.10 - 198.18.24.20",
        "198.18.25.10 - 198.18.25.20",
      ),
    );
    const invalid = await runDuet(["reload", "--socket", socket]);
    assert.equal(invalid.code, 3, invalid.stderr);
    assert.match(invalid.stderr, /the configuration is invalid; it keeps the configuration/);
    assert.match(
      invalid.stderr,
      /duet\.yaml:10:16: Pool 198\.18\.25\.10 - 198\.18\.25\.20 is outside/,
    );
    assert.match(invalid.stderr, /duet\.yaml:13:1: Unknown key "leas-time"/);
    await server.waitFor("Reload problem");
    assert.match(server.stderr, /Reload problem problem=".*duet\.yaml:13:1: Unknown key/);
    assert.equal(formatIpv4((await lease(client, 4))?.yiaddr ?? 0), "198.18.24.13");

    // Unsafe changes: a pool shrunk under ACTIVE leases and a new listen port, both refused.
    await Deno.writeTextFile(configPath, configText(dir, { port: port + 1, poolEnd: 11 }));
    const refused = await runDuet(["reload", "-c", configPath]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /the server refused it/);
    assert.match(refused.stderr, /duet\.yaml:2:1: Cannot change "listen" on reload/);
    assert.match(
      refused.stderr,
      /duet\.yaml:9:5: Cannot remove or shrink a pool of subnet 198\.18\.24\.0\/24 on reload: 198\.18\.24\.12 - 198\.18\.24\.20 .*2 ACTIVE leases/,
    );
    // Still the grown pool: client 5 gets an address the refused file would not have.
    assert.equal(formatIpv4((await lease(client, 5))?.yiaddr ?? 0), "198.18.24.14");
    s = await status(socket);
    assert.deepEqual(s.reload.count, { applied: 1, unchanged: 0, invalid: 1, refused: 1 });
    assert.equal(s.reload.last?.outcome, "refused");
    assert.deepEqual(s.reload.last?.problems.map((p) => p.path), ["listen", "subnets.0.pools"]);
    const human = await runDuet(["status", "--socket", socket]);
    assert.match(human.stdout, /^reload {4}\S+Z refused$/m);
    assert.match(human.stdout, /^ {10}\S*duet\.yaml:2:1: Cannot change "listen"/m);

    // Back to a safe change: exit 0 and what changed.
    await Deno.writeTextFile(
      configPath,
      configText(dir, { port, poolEnd: 20, extra: "options: { domain-name: two.example }\n" }),
    );
    const applied = await runDuet(["reload", "-c", configPath]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /^reloaded \S*duet\.yaml: .*options/);
    const same = await runDuet(["reload", "--socket", socket]);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /nothing changed/);

    const families = parseExposition((await requestControl(socket, "/metrics")).body);
    assert.equal(sampleValue(families, "duet_reloads_total", { outcome: "applied" }), 2);
    assert.equal(sampleValue(families, "duet_reloads_total", { outcome: "unchanged" }), 1);
    assert.equal(sampleValue(families, "duet_reloads_total", { outcome: "invalid" }), 1);
    assert.equal(sampleValue(families, "duet_reloads_total", { outcome: "refused" }), 1);
    assert.equal(sampleValue(families, "duet_config_last_reload_successful"), 1);
    assert.equal(families.has("duet_hook_runs_total"), false, "no hook families without hooks");

    assert.equal(await server.stop("SIGTERM"), 0, server.stderr);
    const gone = await runDuet(["reload", "-c", configPath]);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /duet serve is not running/);
  } finally {
    await client.close();
    await server.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duet reload exit codes without a server: usage 2, invalid configuration 3", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-reload-" });
  try {
    assert.equal((await runDuet(["reload"])).code, 2);
    assert.equal((await runDuet(["reload", "--bogus"])).code, 2);
    assert.equal((await runDuet(["reload", "-c", "a.yaml", "--socket", "b"])).code, 2);
    await Deno.writeTextFile(`${dir}/bad.yaml`, "database: x.db\nlisten: []\nsubnets: nope\n");
    const bad = await runDuet(["reload", "-c", `${dir}/bad.yaml`]);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /bad\.yaml:\d+:\d+: /);
    const help = await runDuet(["reload", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /Exit codes: 0 applied/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
