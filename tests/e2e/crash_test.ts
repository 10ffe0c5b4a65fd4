/**
 * Crash consistency (issue #8): a real `duet serve` on loopback under load from many clients
 * (tests/e2e/dhcp_load.ts) is killed with SIGKILL at random moments, many times, and started
 * again on the same database each time. After every kill, every lease a client holds a
 * DHCPACK for must be in the database with the client's chaddr and an end no earlier than the
 * ACK promised (draft-12 §3.1.3, RFC 2131 §4.3.1: the ACK follows the commit). At the end the
 * same holds for `duet leases --json`, and the file passes `PRAGMA integrity_check`.
 *
 * Seeded: the seed is printed; replay with DUET_CRASH_SEED=<seed>.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { formatIpv4, formatMac } from "../../lib/wire/ip.ts";
import { type AckRecord, DhcpLoad, seededRandom } from "./dhcp_load.ts";
import { DuetProcess, freeUdpPort, runDuet } from "./process.ts";

/** How many times the server is killed, and the bound on the whole kill loop. */
const KILLS = 25;
const LOOP_BUDGET_MS = 40_000;
/** Fewer kills than this within the budget make the test fail (it would prove too little). */
const MIN_KILLS = 12;

function seedFromEnv(): number {
  const granted = Deno.permissions.querySync({ name: "env", variable: "DUET_CRASH_SEED" }).state;
  const text = granted === "granted" ? Deno.env.get("DUET_CRASH_SEED") : undefined;
  if (text !== undefined && /^\d+$/.test(text)) return Number(text) >>> 0;
  return crypto.getRandomValues(new Uint32Array(1))[0] as number;
}

function configText(db: string, socket: string, port: number): string {
  return `database: ${db}
listen:
  - address: 127.0.0.1
    port: ${port}
lease-time: { default: 3600, max: 3600 }
control: { socket: ${socket} }
subnets:
  - subnet: 198.18.0.0/16
    relays: [127.0.0.1]
    pools:
      - range: 198.18.1.0 - 198.18.250.255
`;
}

/** What the database says about one address. */
interface Row {
  hw: string | null;
  state: string;
  /** Epoch seconds. */
  ends: number;
}

/** Every ACK whose lease is not in `rows` as the client was told, as readable lines. */
function lostAcks(latest: Map<string, AckRecord>, rows: Map<string, Row>): string[] {
  const problems: string[] = [];
  const holders = new Map<string, string>();
  for (const ack of latest.values()) {
    const row = rows.get(ack.address);
    const what = `${ack.kind} ACK of ${ack.address} to ${ack.chaddr} at ` +
      `${new Date(ack.receivedAt).toISOString()} (xid ${
        ack.xid.toString(16)
      }, ends >= ${ack.endsMin})`;
    if (!row) problems.push(`${what}: no row`);
    else if (row.hw !== ack.chaddr) problems.push(`${what}: row belongs to ${row.hw}`);
    else if (row.state !== "active") problems.push(`${what}: row is ${row.state}`);
    else if (row.ends < ack.endsMin) problems.push(`${what}: row ends at ${row.ends}`);
    const other = holders.get(ack.address);
    if (other !== undefined) problems.push(`${ack.address} is ACKed to ${other} and ${ack.chaddr}`);
    holders.set(ack.address, ack.chaddr);
  }
  return problems;
}

/** The leases as this process reads them (read-only, like `duet leases`). */
function readRows(db: string): Map<string, Row> {
  const store = SqliteLeaseStore.open(db, { readOnly: true });
  try {
    const rows = new Map<string, Row>();
    for (const l of store.iterate()) {
      rows.set(formatIpv4(l.address), {
        hw: l.hwAddress.length > 0 ? formatMac(l.hwAddress) : null,
        state: l.state,
        ends: l.ends,
      });
    }
    return rows;
  } finally {
    store.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

Deno.test("duet serve killed with SIGKILL under load keeps every ACKed lease and an intact database", async () => {
  const seed = seedFromEnv();
  // deno-lint-ignore no-console
  console.log(`crash test seed ${seed} (replay: DUET_CRASH_SEED=${seed})`);
  const random = seededRandom(seed ^ 0x5bd1e995);
  const dir = await Deno.makeTempDir({ prefix: "duet-crash-" });
  const db = `${dir}/leases.db`;
  const port = freeUdpPort();
  const configPath = `${dir}/duet.yaml`;
  await Deno.writeTextFile(configPath, configText(db, `${dir}/control.sock`, port));
  const load = new DhcpLoad({
    hostname: "127.0.0.1",
    port,
    clients: 40,
    seed,
    pauseMs: [5, 80],
    replyTimeoutMs: 300,
    churn: 0.1,
  });
  const args = ["--config", configPath, "--log-level", "warn"];
  let server: DuetProcess | null = null;
  const started = Date.now();
  let kills = 0;
  let earlyKills = 0;
  let stopped = false;
  try {
    load.start();
    while (kills < KILLS && Date.now() - started < LOOP_BUDGET_MS) {
      server = new DuetProcess(args);
      if (random() < 0.2) {
        // Anywhere in start-up: opening, migrating, loading leases, the first requests.
        await sleep(random() * 400);
        earlyKills++;
      } else {
        assert.ok(await load.answering(15_000), `server did not answer:\n${server.stderr}`);
        await sleep(50 + random() * 700);
      }
      const log = server.stderr;
      await server.stop("SIGKILL");
      server = null;
      kills++;
      // ACKs already in this socket's buffer belong to this round.
      await sleep(30);
      // Before the first ACK the database may not even exist yet (killed while creating it).
      const latest = load.latest();
      if (latest.size === 0) continue;
      const lost = lostAcks(latest, readRows(db));
      assert.deepEqual(lost, [], `after kill ${kills} (seed ${seed}); server log:\n${log}`);
    }
    assert.ok(kills >= MIN_KILLS, `only ${kills} kills in ${LOOP_BUDGET_MS} ms (seed ${seed})`);

    // One more start: every client that renews is answered from the recovered database.
    server = new DuetProcess(args);
    assert.ok(await load.answering(15_000), `server did not answer:\n${server.stderr}`);
    const acksBefore = load.stats.acks;
    await sleep(1000);
    await load.stop();
    stopped = true;
    assert.ok(load.stats.acks > acksBefore, "the restarted server acknowledges");
    assert.equal(await server.stop("SIGTERM"), 0, server.stderr);
    server = null;

    const renewNaks = load.naks.filter((n) => n.kind === "renew");
    assert.deepEqual(renewNaks, [], "no bound client was refused its lease");
    const latest = load.latest();
    assert.ok(latest.size >= 40, `only ${latest.size} clients were leased`);

    const dump = await runDuet(["leases", "--db", db, "--json"]);
    assert.equal(dump.code, 0, dump.stderr);
    const rows = new Map<string, Row>();
    for (const r of JSON.parse(dump.stdout) as Record<string, string | null>[]) {
      rows.set(r.address as string, {
        hw: r["hw-address"] ?? null,
        state: r.state as string,
        ends: r.ends === null ? 0 : Date.parse(r.ends as string) / 1000,
      });
    }
    assert.deepEqual(lostAcks(latest, rows), [], `duet leases --json (seed ${seed})`);

    const check = new DatabaseSync(db);
    try {
      const verdict = check.prepare("PRAGMA integrity_check").all() as Record<string, unknown>[];
      assert.deepEqual(verdict.map((r) => Object.values(r)[0]), ["ok"]);
    } finally {
      check.close();
    }
    // deno-lint-ignore no-console
    console.log(
      `crash test: ${kills} kills (${earlyKills} during start-up), ${load.stats.acks} ACKs ` +
        `to ${latest.size} clients, ${rows.size} rows, ${Date.now() - started} ms`,
    );
  } finally {
    if (!stopped) await load.stop();
    if (server) await server.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});
