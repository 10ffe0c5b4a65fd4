/**
 * Lease-event hooks on a real `duet serve` (loopback, relay-style clients): a recording hook
 * gets every event of real leases (new, renew, release, decline, expire) as DUET_ variables
 * and as JSON on stdin; a hanging hook neither stalls DHCP nor outlives its timeout, and a
 * full queue drops and counts events (status and metrics).
 */
import assert from "node:assert/strict";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import { requestControl } from "../../lib/cli/status.ts";
import type { StatusSnapshot } from "../../lib/control/status.ts";
import { type DhcpMessage, DhcpType, getMessageType, getServerId } from "../../lib/wire/dhcp.ts";
import { formatIpv4 } from "../../lib/wire/ip.ts";
import { parseExposition, sampleValue } from "../control/prometheus.ts";
import { DuetProcess, freeUdpPort } from "./process.ts";

function configText(dir: string, port: number, hooks: string): string {
  return `database: ${dir}/leases.db
listen:
  - address: 127.0.0.1
    port: ${port}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.26.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.26.10 - 198.18.26.99
  - subnet: 198.18.27.0/24 # one-second leases, to see one expire
    relays: [127.0.0.2]
    lease-time: { default: 1, min: 1, max: 1 }
    pools:
      - range: 198.18.27.10 - 198.18.27.99
control:
  socket: ${dir}/ctl.sock
hooks:
${hooks}`;
}

function mac(i: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0, 0x26, i]);
}

async function lease(
  client: RelayClient,
  i: number,
  hostname?: string,
): Promise<DhcpMessage> {
  const offer = await client.exchange(
    buildRequest(DhcpType.DHCPDISCOVER, mac(i), { xid: 0x2600 + i, giaddr: client.giaddr }),
  );
  assert.ok(offer, `client ${i} got an OFFER`);
  const ack = await client.exchange(buildRequest(DhcpType.DHCPREQUEST, mac(i), {
    xid: 0x2700 + i,
    giaddr: client.giaddr,
    requested: offer.yiaddr,
    serverId: getServerId(offer) as number,
    ...(hostname ? { hostname } : {}),
  }));
  assert.equal(ack && getMessageType(ack), DhcpType.DHCPACK, `client ${i} got an ACK`);
  return ack as DhcpMessage;
}

async function status(socket: string): Promise<StatusSnapshot> {
  return JSON.parse((await requestControl(socket, "/status")).body) as StatusSnapshot;
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = await probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`Timed out after ${ms} ms waiting for ${what}`);
}

async function writeScript(path: string, body: string): Promise<void> {
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`);
  await Deno.chmod(path, 0o755);
}

/** DUET_* variables of `env` output. */
function parseEnv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (line.startsWith("DUET_") && eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

Deno.test("a lease hook gets new, renew, release, decline and expire events with the lease", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-hooks-" });
  const port = freeUdpPort();
  const hook = `${dir}/record.sh`;
  // Each run leaves its environment and stdin in files named by its sequence number.
  await writeScript(
    hook,
    `env > "${dir}/ev-$DUET_SEQUENCE.env.tmp"; cat > "${dir}/ev-$DUET_SEQUENCE.json.tmp"\n` +
      `mv "${dir}/ev-$DUET_SEQUENCE.json.tmp" "${dir}/ev-$DUET_SEQUENCE.json"\n` +
      `mv "${dir}/ev-$DUET_SEQUENCE.env.tmp" "${dir}/ev-$DUET_SEQUENCE.env"`,
  );
  const configPath = `${dir}/duet.yaml`;
  await Deno.writeTextFile(
    configPath,
    configText(dir, port, `  command: [${hook}]\n  timeout-ms: 5000\n`),
  );
  const server = new DuetProcess(["--config", configPath]);
  const client = new RelayClient("127.0.0.1", port);
  const shortClient = new RelayClient("127.0.0.1", port, "127.0.0.2");
  try {
    await server.waitFor("duet serving");
    const a = (await lease(client, 1, "alpha")).yiaddr;
    // RFC 2131 §4.3.2 RENEWING: ciaddr, no server identifier, no requested address.
    const renew = await client.exchange(
      buildRequest(DhcpType.DHCPREQUEST, mac(1), { xid: 0x2801, ciaddr: a, giaddr: client.giaddr }),
    );
    assert.equal(renew && getMessageType(renew), DhcpType.DHCPACK);
    await client.send(
      buildRequest(DhcpType.DHCPRELEASE, mac(1), { xid: 0x2802, ciaddr: a, giaddr: client.giaddr }),
    );
    const b = (await lease(client, 2)).yiaddr;
    await client.send(
      buildRequest(DhcpType.DHCPDECLINE, mac(2), {
        xid: 0x2803,
        requested: b,
        giaddr: client.giaddr,
      }),
    );
    // Wait for the decline to be committed before the expiring lease, to keep the order fixed.
    await until("event 5", 10_000, async () => {
      return await Deno.stat(`${dir}/ev-5.json`).then(() => true, () => undefined);
    });
    const c = (await lease(shortClient, 3)).yiaddr;

    const events = await until("seven hook runs", 15_000, async () => {
      const out: { env: Record<string, string>; json: Record<string, unknown> }[] = [];
      for (let i = 1; i <= 7; i++) {
        try {
          out.push({
            env: parseEnv(await Deno.readTextFile(`${dir}/ev-${i}.env`)),
            json: JSON.parse(await Deno.readTextFile(`${dir}/ev-${i}.json`)),
          });
        } catch {
          return undefined;
        }
      }
      return out;
    });
    const want: [string, number, string, string][] = [
      ["new", a, "02:00:00:00:26:01", "active"],
      ["renew", a, "02:00:00:00:26:01", "active"],
      ["release", a, "02:00:00:00:26:01", "released"],
      ["new", b, "02:00:00:00:26:02", "active"],
      ["decline", b, "", "abandoned"],
      ["new", c, "02:00:00:00:26:03", "active"],
      ["expire", c, "02:00:00:00:26:03", "expired"],
    ];
    events.forEach(({ env, json }, i) => {
      const [event, address, hw, state] = want[i] as [string, number, string, string];
      const what = `event ${i + 1}: ${JSON.stringify(env)}`;
      assert.equal(env.DUET_EVENT, event, what);
      assert.equal(env.DUET_SEQUENCE, String(i + 1), what);
      assert.equal(env.DUET_ADDRESS, formatIpv4(address), what);
      assert.equal(env.DUET_HW_ADDRESS, hw, what);
      assert.equal(env.DUET_STATE, state, what);
      assert.equal(env.DUET_SUBNET, i < 5 ? "198.18.26.0/24" : "198.18.27.0/24", what);
      // The same lease on stdin, as `duet leases --json` prints it.
      assert.equal(json.event, event, what);
      assert.equal(json.sequence, i + 1, what);
      const l = json.lease as Record<string, unknown>;
      assert.equal(l.address, formatIpv4(address), what);
      assert.equal(l.state, state, what);
      assert.equal(l["hw-address"], hw === "" ? null : hw, what);
      assert.equal(json.subnet, env.DUET_SUBNET, what);
      assert.equal(json["previous-state"], env.DUET_PREVIOUS_STATE || null, what);
      assert.equal(Date.parse(json.time as string) / 1000, Number(env.DUET_TIME), what);
    });
    const first = events[0] as { env: Record<string, string> };
    assert.equal(first.env.DUET_HOSTNAME, "alpha");
    assert.equal(first.env.DUET_PREVIOUS_STATE, "");
    assert.equal(first.env.DUET_LEASE_TIME, "600");
    assert.equal(Number(first.env.DUET_ENDS) - Number(first.env.DUET_CLTT), 600);
    assert.equal((events[1] as { env: Record<string, string> }).env.DUET_PREVIOUS_STATE, "active");
    assert.equal((events[6] as { env: Record<string, string> }).env.DUET_LEASE_TIME, "");

    const s = await until("seven successful runs", 5000, async () => {
      const s = await status(`${dir}/ctl.sock`);
      return s.hooks?.succeeded === 7 ? s : undefined;
    });
    assert.deepEqual(s.hooks?.events, { new: 3, renew: 1, release: 1, expire: 1, decline: 1 });
    assert.deepEqual(
      [s.hooks?.failed, s.hooks?.timedOut, s.hooks?.dropped, s.hooks?.queued],
      [0, 0, 0, 0],
    );
    assert.deepEqual(s.hooks?.command, [hook]);
  } finally {
    await client.close();
    await shortClient.close();
    assert.equal(await server.stop(), 0, server.stderr);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a hanging lease hook does not stall DHCP, is killed at its timeout, and a full queue drops", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-hooks-" });
  const port = freeUdpPort();
  const hook = `${dir}/hang.sh`;
  await writeScript(hook, `echo "$DUET_SEQUENCE" >> "${dir}/started"; exec sleep 60`);
  const configPath = `${dir}/duet.yaml`;
  const socket = `${dir}/ctl.sock`;
  await Deno.writeTextFile(
    configPath,
    configText(dir, port, `  command: [${hook}]\n  timeout-ms: 3000\n  queue: 2\n`),
  );
  const server = new DuetProcess(["--config", configPath]);
  const client = new RelayClient("127.0.0.1", port);
  try {
    await server.waitFor("duet serving");
    const CLIENTS = 8;
    for (let i = 1; i <= CLIENTS; i++) await lease(client, i);
    let s = await status(socket);
    assert.equal(s.dhcp.sent.DHCPACK, CLIENTS, "every client got its lease");
    const h = s.hooks;
    assert.ok(h);
    // One run hangs, two events wait, the rest could not be queued.
    assert.equal(h.events.new + h.dropped, CLIENTS);
    assert.ok(h.dropped >= CLIENTS - 3 - h.timedOut, JSON.stringify(h));
    assert.equal(h.running, 1, JSON.stringify(h));
    await server.waitFor("Lease hook queue full: event dropped");

    // The timeout kills it and the next queued event runs; DHCP goes on meanwhile.
    s = await until("a hook killed at its timeout", 10_000, async () => {
      const s = await status(socket);
      return (s.hooks?.timedOut ?? 0) >= 1 ? s : undefined;
    });
    assert.equal(s.hooks?.lastError, "killed after 3000 ms");
    await server.waitFor("Lease hook timed out: killed");
    await lease(client, CLIENTS + 1);
    const started = (await Deno.readTextFile(`${dir}/started`)).trim().split("\n");
    assert.ok(started.length >= 2, `the next event ran after the kill: ${started}`);

    const families = parseExposition((await requestControl(socket, "/metrics")).body);
    const dropped = sampleValue(families, "duet_hook_dropped_total");
    assert.ok(dropped >= CLIENTS - 3 - 1);
    assert.ok(sampleValue(families, "duet_hook_runs_total", { result: "timeout" }) >= 1);
    assert.equal(sampleValue(families, "duet_hook_running"), 1);
    assert.ok(sampleValue(families, "duet_hook_queue_length") <= 2);
  } finally {
    await client.close();
    assert.equal(await server.stop(), 0, server.stderr);
    await Deno.remove(dir, { recursive: true });
  }
});
