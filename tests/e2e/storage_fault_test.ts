/**
 * Storage faults (issue #8): a real `duet serve` whose database sits on a small tmpfs that the
 * test fills up, and on an ext4 file system that turns read-only under it. While the database
 * refuses writes, duet grants no lease (no DHCPOFFER, no DHCPACK: the client retransmits, RFC
 * 2131 §4.1, §4.4.5), still answers DHCPINFORM, logs the outage once, and reports it in
 * /status and /metrics; when space returns it grants leases again without a restart. The
 * database passes `PRAGMA integrity_check` afterwards and holds every lease it acknowledged.
 *
 * Needs root (mount). A plain `mount -o remount,ro` is refused ("mount point is busy") while
 * duet has the database open for writing, so the read-only case uses what the kernel itself
 * does after a write error on a file system mounted errors=remount-ro (ext4's
 * trigger_fs_error), unless the plain remount happens to work.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type RunningServer, startServer } from "../../lib/cli/serve.ts";
import { parseConfig } from "../../lib/config/config.ts";
import type { Config } from "../../lib/config/types.ts";
import { createLogger } from "../../lib/log.ts";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import { DhcpType, getMessageType } from "../../lib/wire/dhcp.ts";
import { formatIpv4, formatMac, parseIpv4 } from "../../lib/wire/ip.ts";
import { requireOrSkip } from "../netns.ts";
import { DhcpLoad } from "./dhcp_load.ts";
import { DuetProcess, freeUdpPort } from "./process.ts";

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

/** Runs a command (bounded to 20 s); returns its exit code and output. */
async function sh(cmd: string[]): Promise<{ code: number; out: string }> {
  const child = new Deno.Command(cmd[0] as string, {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, 20_000);
  const r = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

async function must(cmd: string[]): Promise<string> {
  const r = await sh(cmd);
  if (r.code !== 0) throw new Error(`Cannot run "${cmd.join(" ")}": exit ${r.code}: ${r.out}`);
  return r.out;
}

/** Why these tests cannot run here, or null. */
function prerequisites(tools: string[]): string | null {
  if (Deno.build.os !== "linux") return `needs Linux, this is ${Deno.build.os}`;
  if (Deno.uid() !== 0) return "needs root (mount)";
  for (const tool of ["mount", "umount", "findmnt", ...tools]) {
    const which = new Deno.Command("which", { args: [tool], stdout: "null", stderr: "null" });
    if (!which.outputSync().success) return `needs "${tool}" on PATH`;
  }
  return null;
}

/** GET on the control socket; the body as text. */
async function control(socket: string, path: string): Promise<string> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  try {
    const res = await fetch(`http://localhost${path}`, { client });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    return body;
  } finally {
    client.close();
  }
}

interface DbStatus {
  writable: boolean;
  storeFailing: boolean;
  failingSince: string | null;
  lastError: string | null;
  commitFailures: number;
}

async function dbStatus(socket: string): Promise<DbStatus> {
  const status = JSON.parse(await control(socket, "/status")) as { db: DbStatus };
  return status.db;
}

/** The value of an unlabelled metric. */
async function metric(socket: string, name: string): Promise<number> {
  const text = await control(socket, "/metrics");
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no ${name} in /metrics`);
  return Number(line.slice(name.length + 1));
}

/** Writes zeros to `path` until the file system is full (bounded by `limit` bytes). */
async function fill(path: string, limit: number): Promise<number> {
  const file = await Deno.open(path, { write: true, create: true });
  const chunk = new Uint8Array(64 * 1024);
  let written = 0;
  try {
    while (written < limit) {
      try {
        written += await file.write(chunk);
      } catch {
        break; // ENOSPC
      }
    }
    try {
      await file.sync();
    } catch {
      // Nothing left to flush on a full tmpfs.
    }
  } finally {
    file.close();
  }
  return written;
}

function mac(n: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0x10, (n >> 8) & 0xff, n & 0xff]);
}

/** Every lease the generator got an ACK for must be in `db` as acknowledged. */
function assertAckedLeasesStored(load: DhcpLoad, db: string): void {
  const store = SqliteLeaseStore.open(db, { readOnly: true });
  try {
    for (const ack of load.latest().values()) {
      const rows = [...store.iterate()].filter((l) => formatIpv4(l.address) === ack.address);
      const row = rows[0];
      assert.ok(row, `ACKed lease ${ack.address} missing`);
      assert.equal(formatMac(row.hwAddress), ack.chaddr);
      assert.equal(row.state, "active");
      assert.ok(row.ends >= ack.endsMin, `${ack.address} ends ${row.ends} < ${ack.endsMin}`);
    }
  } finally {
    store.close();
  }
}

function integrity(db: string): string[] {
  const check = new DatabaseSync(db);
  try {
    const rows = check.prepare("PRAGMA integrity_check").all() as Record<string, unknown>[];
    return rows.map((r) => String(Object.values(r)[0]));
  } finally {
    check.close();
  }
}

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Leases `n` new clients starting at client number `first`; returns how many got an ACK. */
async function leaseMany(load: DhcpLoad, first: number, n: number, timeoutMs: number) {
  let acked = 0;
  for (let i = first; i < first + n; i++) {
    const reply = await load.lease(mac(i), timeoutMs);
    if (reply && getMessageType(reply) === DhcpType.DHCPACK) acked++;
  }
  return acked;
}

/**
 * What every storage-fault test checks while the database refuses writes: no lease for a new
 * client, no renewal, INFORM still answered, and the outage in /status and /metrics.
 */
async function assertRefusing(
  load: DhcpLoad,
  socket: string,
  renewing: { mac: Uint8Array; address: number },
  error: RegExp,
): Promise<void> {
  const first = await load.lease(mac(900), 1000);
  assert.notEqual(first && getMessageType(first), DhcpType.DHCPACK, "no ACK on a broken disk");
  await until("the outage in /status", async () => !(await dbStatus(socket)).writable, 5000);
  const db = await dbStatus(socket);
  assert.equal(db.storeFailing, true);
  assert.ok(db.failingSince !== null);
  assert.match(db.lastError ?? "", error);
  assert.ok(db.commitFailures >= 1);
  assert.equal(await metric(socket, "duet_db_writable"), 0);
  assert.ok(await metric(socket, "duet_db_commit_failures_total") >= 1);
  // While failing: no OFFER for a newcomer, no ACK for a renewal, INFORM answered.
  const offer = await load.discover(mac(901), 700);
  assert.equal(offer, undefined, "no DHCPOFFER while the database refuses writes");
  const renewal = await load.renew(renewing.mac, renewing.address, 700);
  assert.equal(renewal, undefined, "no DHCPACK for a renewal that cannot be recorded");
  const informed = await load.inform(1000);
  assert.equal(informed && getMessageType(informed), DhcpType.DHCPACK, "INFORM needs no disk");
}

Deno.test("duet serve on a full disk grants no lease, reports it, answers INFORM, and recovers when space returns", async (t) => {
  if (!requireOrSkip(t, prerequisites([]))) return;
  const dir = await Deno.makeTempDir({ prefix: "duet-full-" });
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  let mounted = false;
  let server: DuetProcess | null = null;
  const port = freeUdpPort();
  const load = new DhcpLoad({ hostname: "127.0.0.1", port, clients: 0, seed: 8 });
  try {
    await must(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt]);
    mounted = true;
    const db = `${mnt}/leases.db`;
    const socket = `${dir}/control.sock`;
    await Deno.writeTextFile(`${dir}/duet.yaml`, configText(db, socket, port));
    server = new DuetProcess(["--config", `${dir}/duet.yaml`]);
    await server.waitFor("duet serving");
    assert.equal(await leaseMany(load, 1, 10, 2000), 10, "leases before the disk is full");
    const renewing = boundClient(load, 1);
    const before = await load.renew(renewing.mac, renewing.address, 2000);
    assert.equal(before && getMessageType(before), DhcpType.DHCPACK, "renewals work");

    const filled = await fill(`${mnt}/fill`, 4 * 1024 * 1024);
    assert.ok(filled > 0);
    await assertRefusing(load, socket, renewing, /full/i);
    const refusals = server.stderr.split("\n").filter((l) => l.includes("refuses writes"));
    assert.equal(refusals.length, 1, `the outage is logged once:\n${server.stderr}`);

    // Space returns: the next probe (once a second) finds the database writable again.
    await Deno.remove(`${mnt}/fill`);
    await until("recovery", async () => (await dbStatus(socket)).writable, 5000);
    assert.equal(await metric(socket, "duet_db_writable"), 1);
    assert.match(server.stderr, /Lease database writable again after=\d+s/);
    assert.equal(await leaseMany(load, 20, 5, 2000), 5, "leases again without a restart");
    const renewed = await load.renew(renewing.mac, renewing.address, 2000);
    assert.equal(renewed && getMessageType(renewed), DhcpType.DHCPACK);

    assert.equal(await server.stop("SIGTERM"), 0, server.stderr);
    server = null;
    assert.deepEqual(integrity(db), ["ok"]);
    assertAckedLeasesStored(load, db);
  } finally {
    await load.stop();
    if (server) await server.stop("SIGKILL");
    if (mounted) await sh(["umount", mnt]);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duet serve on a file system that turns read-only grants no lease, reports it, answers INFORM, and keeps the database intact", async (t) => {
  if (!requireOrSkip(t, prerequisites(["mkfs.ext4", "e2fsck", "losetup"]))) return;
  const dir = await Deno.makeTempDir({ prefix: "duet-ro-" });
  const image = `${dir}/disk.img`;
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  let mounted = false;
  let server: DuetProcess | null = null;
  const port = freeUdpPort();
  const load = new DhcpLoad({ hostname: "127.0.0.1", port, clients: 0, seed: 9 });
  try {
    await must(["truncate", "-s", "16M", image]);
    await must(["mkfs.ext4", "-q", "-F", image]);
    await must(["mount", "-o", "loop,errors=remount-ro", image, mnt]);
    mounted = true;
    const device = (await must(["findmnt", "-n", "-o", "SOURCE", mnt])).trim();
    const db = `${mnt}/leases.db`;
    const socket = `${dir}/control.sock`;
    await Deno.writeTextFile(`${dir}/duet.yaml`, configText(db, socket, port));
    server = new DuetProcess(["--config", `${dir}/duet.yaml`]);
    await server.waitFor("duet serving");
    assert.equal(await leaseMany(load, 1, 10, 2000), 10, "leases before the remount");
    const renewing = boundClient(load, 1);

    // The read-only remount, mid-run.
    const remount = await sh(["mount", "-o", "remount,ro", mnt]);
    if (remount.code !== 0) {
      assert.match(remount.out, /busy/, "remount,ro refused for the open database");
      const name = device.replace(/^\/dev\//, "");
      await Deno.writeTextFile(`/sys/fs/ext4/${name}/trigger_fs_error`, "duet test");
    }
    const options = (await must(["findmnt", "-n", "-o", "OPTIONS", mnt])).trim();
    assert.match(options, /(^|,)(ro|emergency_ro)(,|$)/, `read-only now: ${options}`);
    await assertRefusing(load, socket, renewing, /I\/O|read-?only/i);

    assert.equal(
      await server.stop("SIGTERM"),
      0,
      `clean stop on a read-only disk:\n${server.stderr}`,
    );
    server = null;
    await must(["umount", mnt]);
    mounted = false;
    // The kernel marked the file system as having errors; repair the marker, then look.
    const fsck = await sh(["e2fsck", "-fy", image]);
    assert.ok(fsck.code <= 1, `e2fsck: ${fsck.out}`);
    await must(["mount", "-o", "loop", image, mnt]);
    mounted = true;
    assert.deepEqual(integrity(db), ["ok"]);
    assertAckedLeasesStored(load, db);
  } finally {
    await load.stop();
    if (server) await server.stop("SIGKILL");
    if (mounted) await sh(["umount", mnt]);
    await Deno.remove(dir, { recursive: true });
  }
});

/** Client `n` and the address its newest ACK gave it. */
function boundClient(load: DhcpLoad, n: number): { mac: Uint8Array; address: number } {
  const ack = load.latest().get(formatMac(mac(n)));
  assert.ok(ack, `client ${n} has no lease`);
  return { mac: mac(n), address: parseIpv4(ack.address) as number };
}

function freeTcpPort(): number {
  const l = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function pairConfig(
  db: string,
  role: "primary" | "secondary",
  udpPort: number,
  port: number,
  peerPort: number,
): Config {
  return parseConfig(
    `database: ${db}
listen:
  - address: 127.0.0.1
    port: ${udpPort}
lease-time: { default: 600, max: 3600 }
subnets:
  - subnet: 198.18.0.0/16
    relays: [127.0.0.1]
    pools:
      - range: 198.18.1.0 - 198.18.1.250
failover:
  role: ${role}
  address: 127.0.0.1
  port: ${port}
  peer: 127.0.0.1
  peer-port: ${peerPort}
  relationship: full-disk
  max-response-delay: 6
${role === "primary" ? "  mclt: 60\n  split: 128\n" : ""}`,
    `${db}.yaml`,
  );
}

Deno.test("a failover secondary whose disk is full does not BNDACK an update it could not store", async (t) => {
  if (!requireOrSkip(t, prerequisites([]))) return;
  const dir = await Deno.makeTempDir({ prefix: "duet-full-pair-" });
  const mnt = `${dir}/mnt`;
  await Deno.mkdir(mnt);
  let mounted = false;
  const servers: RunningServer[] = [];
  const lines = { primary: [] as string[], secondary: [] as string[] };
  const udpPort = freeUdpPort();
  const load = new DhcpLoad({ hostname: "127.0.0.1", port: udpPort, clients: 0, seed: 10 });
  try {
    await must(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", mnt]);
    mounted = true;
    const [pPort, sPort] = [freeTcpPort(), freeTcpPort()];
    const primaryConfig = pairConfig(`${dir}/primary.db`, "primary", udpPort, pPort, sPort);
    const secondaryDb = `${mnt}/secondary.db`;
    const secondaryConfig = pairConfig(secondaryDb, "secondary", freeUdpPort(), sPort, pPort);
    const logger = (out: string[]) => createLogger({ level: "info", write: (l) => out.push(l) });
    const primary = startServer(primaryConfig, {
      logger: logger(lines.primary),
      transport: "deno",
      peerRetrySeconds: 1,
    });
    servers.push(primary);
    const secondary = startServer(secondaryConfig, {
      logger: logger(lines.secondary),
      transport: "deno",
      peerRetrySeconds: 1,
    });
    servers.push(secondary);
    const normal = (s: RunningServer) => s.failover?.status().state === "NORMAL";
    await until(
      "both servers in NORMAL",
      () => Promise.resolve(normal(primary) && normal(secondary)),
      20_000,
    );

    // With room on the disk, an update is stored and acknowledged (draft-12 §7.2.2: tsfp).
    const first = await load.lease(mac(1), 2000);
    assert.equal(first && getMessageType(first), DhcpType.DHCPACK);
    const a1 = first?.yiaddr as number;
    await until(
      "the first BNDACK",
      () => Promise.resolve((primary.store.get(a1)?.tsfp ?? 0) > 0),
      5000,
    );
    assert.equal(secondary.store.get(a1)?.state, "active");

    await fill(`${mnt}/fill`, 4 * 1024 * 1024);
    const second = await load.lease(mac(2), 2000);
    assert.equal(second && getMessageType(second), DhcpType.DHCPACK, "the primary's disk is fine");
    const a2 = second?.yiaddr as number;
    // draft-12 §7.2: a BNDACK only after the binding is committed to stable storage.
    await until(
      "the secondary to refuse",
      () =>
        Promise.resolve(lines.secondary.some((l) => l.includes("its bindings are not durable"))),
      5000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(primary.store.get(a2)?.tsfp, 0, "no BNDACK for the update the secondary lost");
    assert.equal(secondary.store.get(a2), undefined, "and it is not in the secondary's database");
    assert.equal(secondary.shell.storeFailing, true);
    assert.ok(lines.secondary.some((l) => l.includes("Lease database refuses writes")));

    await Deno.remove(`${mnt}/fill`);
    await until(
      "the secondary to recover",
      () => Promise.resolve(!secondary.shell.storeFailing),
      5000,
    );
    // The primary would not send that BNDUPD again on the same connection: the secondary
    // restarts the link and the update arrives on the next one (§8.6).
    await until(
      "the lost update stored and acknowledged after the recovery",
      () =>
        Promise.resolve(
          secondary.store.get(a2)?.state === "active" && (primary.store.get(a2)?.tsfp ?? 0) > 0,
        ),
      15_000,
    );
    assert.ok(lines.secondary.some((l) => l.includes("Restarting the partner link")));
    for (const s of servers.splice(0)) await s.stop();
    assert.deepEqual(integrity(secondaryDb), ["ok"]);
    assert.deepEqual(integrity(primaryConfig.database), ["ok"]);
  } finally {
    await load.stop();
    for (const s of servers) await s.stop();
    if (mounted) await sh(["umount", mnt]);
    await Deno.remove(dir, { recursive: true });
  }
});
