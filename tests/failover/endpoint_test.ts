/**
 * Two duet servers in this process on loopback (distinct failover and DHCP ports, temporary
 * databases): a fresh pair goes RECOVER -> RECOVER-DONE -> NORMAL on both sides (draft-12
 * §9.5-§9.8), a lease granted by the primary reaches the secondary's database by
 * BNDUPD/BNDACK (§7.1-§7.2), a restarted server resumes from its stored state (§9.3.2), and
 * the operator's PARTNER-DOWN (§9.9.3) is taken in COMMUNICATIONS-INTERRUPTED through the
 * control socket and `duet partner-down`, and after a clock step PARTNER-DOWN still waits the
 * MCLT (§9.4.2).
 */
import assert from "node:assert/strict";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import { type RunningServer, startServer } from "../../lib/cli/serve.ts";
import { parseConfig } from "../../lib/config/config.ts";
import type { Config } from "../../lib/config/types.ts";
import { type ControlServer, startControl } from "../../lib/control/http.ts";
import { requestControl } from "../../lib/cli/status.ts";
import { balanceShare, STATE_META_KEY } from "../../lib/failover/endpoint.ts";
import { createLogger, type Logger } from "../../lib/log.ts";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { DhcpType, getMessageType, getServerId } from "../../lib/wire/dhcp.ts";
import { ServerState } from "../../lib/wire/failover.ts";
import { formatIpv4, toHex } from "../../lib/wire/ip.ts";
import { freeUdpPort, runDuet } from "../e2e/process.ts";

function freeTcpPort(): number {
  const l = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function configOf(
  dir: string,
  name: string,
  role: "primary" | "secondary",
  port: number,
  peerPort: number,
): Config {
  return parseConfig(
    `database: ${dir}/${name}.db
listen:
  - address: 127.0.0.1
    port: ${freeUdpPort()}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.30.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.30.10 - 198.18.30.59
failover:
  role: ${role}
  address: 127.0.0.1
  port: ${port}
  peer: 127.0.0.1
  peer-port: ${peerPort}
  relationship: ep-pair
  max-response-delay: 6
${role === "primary" ? "  mclt: 60\n  split: 128\n" : ""}`,
    `${dir}/${name}.yaml`,
  );
}

/** A logger that keeps its lines (for the transition log) and prints nothing. */
function recordingLogger(lines: string[]): Logger {
  return createLogger({ level: "info", format: "text", write: (l) => lines.push(l) });
}

/** Logs of the two servers, printed when a wait times out. */
const logs: { primary: string[]; secondary: string[] } = { primary: [], secondary: [] };

async function waitFor(what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(
    `Timed out after ${ms} ms waiting for ${what}\n--- primary\n${
      logs.primary.slice(-40).join("\n")
    }\n--- secondary\n${logs.secondary.slice(-40).join("\n")}`,
  );
}

function stateOf(s: RunningServer): string {
  return s.failover?.status().state ?? "none";
}

/** Waits until every server of `servers` is in `state`. */
function untilState(servers: RunningServer[], state: string, what: string, ms: number) {
  return waitFor(what, () => servers.every((s) => stateOf(s) === state), ms);
}

/** Until the primary has noticed that its partner is gone. */
function untilAlone(primary: RunningServer) {
  return untilState(
    [primary],
    "COMMUNICATIONS-INTERRUPTED",
    "the primary in COMMUNICATIONS-INTERRUPTED",
    10_000,
  );
}

function udpPortOf(c: Config): number {
  const l = c.listen[0];
  assert.ok(l && l.kind === "address");
  return l.port;
}

Deno.test("a fresh duet pair reaches NORMAL, shares a lease by BNDUPD and resumes after restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-endpoint-" });
  const ports = [freeTcpPort(), freeTcpPort()];
  if (ports[0] === ports[1]) ports[1] = freeTcpPort();
  const [pPort, sPort] = ports as [number, number];
  const primaryConfig = configOf(dir, "primary", "primary", pPort, sPort);
  const secondaryConfig = configOf(dir, "secondary", "secondary", sPort, pPort);
  const pLog: string[] = logs.primary;
  const sLog: string[] = logs.secondary;
  const pLogger = recordingLogger(pLog);
  const options = (lines: string[]) => ({
    logger: lines === pLog ? pLogger : recordingLogger(lines),
    transport: "deno" as const,
    peerRetrySeconds: 1,
  });
  const primary = startServer(primaryConfig, options(pLog));
  let secondary: RunningServer | undefined;
  let control: ControlServer | undefined;
  const client = new RelayClient("127.0.0.1", udpPortOf(primaryConfig));
  try {
    secondary = startServer(secondaryConfig, options(sLog));
    const s1 = secondary;
    await untilState([primary, s1], "NORMAL", "both servers in NORMAL", 20_000);
    // §9.5.2, §9.7.2: a fresh server has no stored state, so both recover first.
    for (const [who, lines] of [["primary", pLog], ["secondary", sLog]] as const) {
      const text = lines.join("\n");
      assert.match(text, /Failover STARTUP, previous state RECOVER/, who);
      assert.match(text, /Failover state RECOVER -> RECOVER-DONE/, who);
      assert.match(text, /Failover state RECOVER-DONE -> NORMAL/, who);
      // Every transition is logged once, with its reason.
      const normal = lines.filter((l) => /Failover state RECOVER-DONE -> NORMAL/.test(l));
      assert.equal(normal.length, 1, `${who}: ${normal.join("\n")}`);
      assert.match(normal[0] as string, /reason=/, who);
    }
    // §9.2: the state is in stable storage.
    assert.equal(
      JSON.parse(primary.store.getMeta(STATE_META_KEY) ?? "{}").state,
      ServerState.NORMAL,
    );

    // §5.4, §7.6, §7.7: the primary gave half of its 50 FREE addresses to the secondary as
    // BACKUP, and answered the secondary's POOLREQ.
    await waitFor(
      "25 BACKUP addresses on both sides",
      () => primary.store.countByState().backup === 25 && s1.store.countByState().backup === 25,
      5_000,
    );
    assert.deepEqual(primary.core.utilisation(), [
      { subnet: "198.18.30.0/24", size: 50, free: 50, backup: 25 },
    ]);
    assert.deepEqual(s1.core.utilisation(), primary.core.utilisation());
    assert.match(sLog.join("\n"), /Sent POOLREQ/);
    assert.match(pLog.join("\n"), /Sent POOLRESP/);
    assert.match(sLog.join("\n"), /Received POOLRESP/);

    // A client leased through the primary.
    const mac = new Uint8Array([2, 0, 0, 0, 0x30, 1]);
    const offer = await client.exchange(
      buildRequest(DhcpType.DHCPDISCOVER, mac, { xid: 0x3001, giaddr: client.giaddr }),
    );
    assert.equal(getMessageType(offer!), DhcpType.DHCPOFFER);
    const ack = await client.exchange(
      buildRequest(DhcpType.DHCPREQUEST, mac, {
        xid: 0x3002,
        giaddr: client.giaddr,
        requested: offer!.yiaddr,
        serverId: getServerId(offer!) ?? 0,
      }),
    );
    assert.equal(getMessageType(ack!), DhcpType.DHCPACK);
    const address = ack!.yiaddr;
    // §9.8.3 / §5.4: from the primary's own (FREE) pool, not the secondary's BACKUP.
    assert.notEqual(s1.store.get(address)?.state, "backup");

    // §7.1: the secondary's database gets the same binding.
    await waitFor(
      `${formatIpv4(address)} ACTIVE on the secondary`,
      () => s1.store.get(address)?.state === "active",
      5_000,
    );
    const mirrored = s1.store.get(address)!;
    const original = primary.store.get(address)!;
    assert.equal(toHex(mirrored.hwAddress), toHex(mac));
    assert.equal(mirrored.htype, 1);
    assert.equal(mirrored.ends, original.ends);
    // §7.2.2: the BNDACK is recorded: the primary knows what the partner has (tsfp).
    await waitFor(
      "the primary's tsfp",
      () => (primary.store.get(address)?.tsfp ?? 0) > 0,
      5_000,
    );
    // Durable on the secondary's disk, as another connection sees it.
    const reader = SqliteLeaseStore.open(secondaryConfig.database, { readOnly: true });
    try {
      assert.equal(reader.get(address)?.state, "active");
    } finally {
      reader.close();
    }

    // Restart the secondary: it resumes from NORMAL (§9.3.2) and returns to NORMAL.
    await secondary.stop();
    secondary = undefined;
    await untilAlone(primary);
    // What it stored is NORMAL: stopping does not record a communications failure.
    const stored = SqliteLeaseStore.open(secondaryConfig.database, { readOnly: true });
    try {
      assert.equal(JSON.parse(stored.getMeta(STATE_META_KEY) ?? "{}").state, ServerState.NORMAL);
    } finally {
      stored.close();
    }
    sLog.length = 0;
    secondary = startServer(secondaryConfig, options(sLog));
    const s2 = secondary;
    await untilState([primary, s2], "NORMAL", "both servers in NORMAL again", 20_000);
    // §9.3.2 steps 1-2: NORMAL from stable storage becomes COMMUNICATIONS-INTERRUPTED, and
    // §9.9.3 takes it back to NORMAL with the partner: no RECOVER, no UPDREQALL.
    assert.match(
      sLog.join("\n"),
      /Failover STARTUP, previous state COMMUNICATIONS-INTERRUPTED .*previous state from stable storage; step 2/,
    );
    assert.match(sLog.join("\n"), /Failover state COMMUNICATIONS-INTERRUPTED -> NORMAL/);
    assert.doesNotMatch(sLog.join("\n"), /Failover state [A-Z-]+ -> RECOVER\b/);
    assert.equal(s2.store.get(address)?.state, "active");

    // The operator's PARTNER-DOWN (§9.9.3) through the control socket and `duet partner-down`.
    const socket = `${dir}/primary.sock`;
    control = await startControl(primary, { socket, config: primaryConfig, logger: pLogger });
    await secondary.stop();
    secondary = undefined;
    await untilAlone(primary);
    const cli = await runDuet(["partner-down", "--socket", socket]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, "COMMUNICATIONS-INTERRUPTED -> PARTNER-DOWN\n");
    assert.equal(stateOf(primary), "PARTNER-DOWN");
    assert.equal(
      JSON.parse(primary.store.getMeta(STATE_META_KEY) ?? "{}").state,
      ServerState.PARTNER_DOWN,
    );
    assert.match(pLog.join("\n"), /Operator command partner-down accepted=yes/);
    // Asking again changes nothing and still answers with the state.
    const again = await requestControl(socket, "/partner-down", { method: "POST" });
    assert.equal(again.status, 200, again.body);
    assert.deepEqual(JSON.parse(again.body), { state: "PARTNER-DOWN", previous: "PARTNER-DOWN" });
  } finally {
    await control?.stop();
    await client.close();
    await secondary?.stop();
    await primary.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a pair member whose clock steps back a day still waits PARTNER-DOWN's MCLT (§9.4.2)", async () => {
  // lib/server/clock.ts: the shell moves every stored time by the step and tells the failover
  // endpoint, which moves its own; the core's clock never steps. Before that was wired, a
  // server entering PARTNER-DOWN after a step back of more than the MCLT could take the
  // partner's addresses at once.
  const dir = await Deno.makeTempDir({ prefix: "duet-endpoint-step-" });
  const ports = [freeTcpPort(), freeTcpPort()];
  if (ports[0] === ports[1]) ports[1] = freeTcpPort();
  const [pPort, sPort] = ports as [number, number];
  logs.primary = [];
  logs.secondary = [];
  const DAY = 86_400;
  let stepMs = 0;
  const primary = startServer(configOf(dir, "primary", "primary", pPort, sPort), {
    logger: recordingLogger(logs.primary),
    transport: "deno",
    peerRetrySeconds: 1,
    clockSources: { wallMs: () => Date.now() + stepMs, monoMs: () => performance.now() },
  });
  let secondary: RunningServer | undefined;
  try {
    secondary = startServer(configOf(dir, "secondary", "secondary", sPort, pPort), {
      logger: recordingLogger(logs.secondary),
      transport: "deno",
      peerRetrySeconds: 1,
    });
    const s = secondary;
    await untilState([primary, s], "NORMAL", "both servers in NORMAL", 20_000);
    await secondary.stop();
    secondary = undefined;
    await untilAlone(primary);
    stepMs = -DAY * 1000;
    await waitFor("the step applied", () => primary.shell.clockHealth.steps === 1, 5_000);
    assert.equal(primary.failover?.command("partner-down").accepted, true);
    assert.equal(stateOf(primary), "PARTNER-DOWN");
    const coreNow = Date.now() / 1000;
    const since = primary.failover?.partnerDownSince() ?? 0;
    assert.ok(Math.abs(since - coreNow) < 3, `entered ${since - coreNow} s from now`);
    assert.equal(
      primary.failover?.service(Math.floor(coreNow)).partnerPool,
      false,
      "the partner's pool waits the MCLT (60 s)",
    );
    assert.equal(primary.failover?.service(Math.floor(since) + 61).partnerPool, true);
    const recorded = JSON.parse(primary.store.getMeta(STATE_META_KEY) ?? "{}");
    assert.equal(recorded.state, ServerState.PARTNER_DOWN);
    assert.ok(
      Math.abs(recorded.startTimeOfState - (coreNow - DAY)) < 3,
      "recorded on the stepped clock, as the lease times are",
    );
  } finally {
    await secondary?.stop();
    await primary.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("balanceShare() gives half the FREE surplus once past max-lease-misbalance (§5.4)", async (t) => {
  const cases: [string, number, number, number, number][] = [
    // [name, free, backup, misbalance %, expected]
    ["a fresh pool: half of it", 200, 0, 15, 100],
    ["balanced: nothing", 100, 100, 15, 0],
    ["within the threshold (10 of 200 = 5 %): nothing", 105, 95, 15, 0],
    ["just past it (32 of 200 = 16 %): half the difference", 116, 84, 15, 16],
    ["the secondary has more: nothing (addresses move only to it)", 50, 150, 15, 0],
    ["threshold 0: any surplus above one address", 101, 99, 0, 1],
    ["an odd surplus rounds down", 3, 0, 15, 1],
    ["empty: nothing", 0, 0, 15, 0],
  ];
  for (const [name, free, backup, misbalance, expected] of cases) {
    await t.step(name, () => assert.equal(balanceShare(free, backup, misbalance), expected));
  }
});
