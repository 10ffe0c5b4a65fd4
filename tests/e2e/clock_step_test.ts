/**
 * Clock steps (issue #8) against a real `duet serve` on loopback. The machine's clock cannot be
 * stepped in a test (other tests run beside it), so the server runs with the test hook
 * `--test-clock-offset-file FILE`: its wall-clock source is the system clock plus the seconds
 * written in FILE. Stepping FILE must neither expire the leases nor stretch them: each lease
 * ends its lease time after its ACK in elapsed time, and the stored times follow the clock.
 */
import assert from "node:assert/strict";
import { SqliteLeaseStore } from "../../lib/store/sqlite.ts";
import type { Lease } from "../../lib/store/store.ts";
import { DhcpType, getMessageType } from "../../lib/wire/dhcp.ts";
import { DhcpLoad } from "./dhcp_load.ts";
import { DuetProcess, freeUdpPort } from "./process.ts";

const DAY = 86_400;

function configText(db: string, port: number, leaseTime: number): string {
  return `database: ${db}
listen:
  - address: 127.0.0.1
    port: ${port}
lease-time: { default: ${leaseTime}, min: 10, max: 3600 }
subnets:
  - subnet: 198.18.0.0/16
    relays: [127.0.0.1]
    pools:
      - range: 198.18.1.0 - 198.18.1.250
`;
}

function mac(n: number): Uint8Array {
  return new Uint8Array([2, 0, 0, 0x20, 0, n]);
}

/** The stored leases by address, read the way `duet leases` reads them. */
function leases(db: string): Map<number, Lease> {
  const store = SqliteLeaseStore.open(db, { readOnly: true });
  try {
    return new Map([...store.iterate()].map((l) => [l.address, l]));
  } finally {
    store.close();
  }
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Leases client `n`; returns the address and when (ms, real clock) the ACK arrived. */
async function lease(load: DhcpLoad, n: number): Promise<{ address: number; at: number }> {
  const ack = await load.lease(mac(n), 2000);
  assert.equal(ack && getMessageType(ack), DhcpType.DHCPACK, `client ${n} got no ACK`);
  return { address: ack?.yiaddr as number, at: Date.now() };
}

/** Waits until the server has logged the `count`-th line containing `text`. */
async function logged(server: DuetProcess, text: string, count: number): Promise<string> {
  return await until(`${count} x "${text}"`, () => {
    const lines = server.stderr.split("\n").filter((l) => l.includes(text));
    return lines.length >= count ? lines[count - 1] : undefined;
  }, 5000);
}

Deno.test("duet serve: clock steps of a day forward and back neither expire leases nor stretch them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-clock-" });
  const db = `${dir}/leases.db`;
  const offsetFile = `${dir}/offset`;
  const port = freeUdpPort();
  await Deno.writeTextFile(`${dir}/duet.yaml`, configText(db, port, 12));
  await Deno.writeTextFile(offsetFile, "0");
  const server = new DuetProcess([
    "--config",
    `${dir}/duet.yaml`,
    "--test-clock-offset-file",
    offsetFile,
  ]);
  const load = new DhcpLoad({ hostname: "127.0.0.1", port, clients: 0, seed: 3 });
  try {
    await server.waitFor("duet serving");
    const a = await lease(load, 1);
    const b = await lease(load, 2);
    const before = leases(db);
    const endsA = before.get(a.address)?.ends as number;

    // NTP (or an admin) moves the clock a day forward: nothing expires, times move along.
    await Deno.writeTextFile(offsetFile, String(DAY));
    assert.match(await logged(server, "System clock stepped", 1), /step=\+86400s/);
    let now = leases(db);
    assert.equal(now.get(a.address)?.state, "active", "a forward step expires nothing");
    assert.equal(now.get(a.address)?.ends, endsA + DAY);

    // ... and two days back (a day behind the real time).
    await Deno.writeTextFile(offsetFile, String(-DAY));
    assert.match(await logged(server, "System clock stepped", 2), /step=-172800s/);
    now = leases(db);
    assert.equal(now.get(a.address)?.state, "active");
    assert.equal(now.get(a.address)?.ends, endsA - DAY, "stored on the server's clock");

    // Client b renews after the steps: its lease is stored on the stepped clock.
    const renewed = await load.renew(mac(2), b.address, 2000);
    assert.equal(renewed && getMessageType(renewed), DhcpType.DHCPACK);
    const renewedAt = Date.now();
    const endsB = leases(db).get(b.address)?.ends as number;
    assert.ok(
      Math.abs(endsB - (Math.floor(renewedAt / 1000) - DAY + 12)) <= 2,
      `renewal stored on the stepped clock: ${endsB}`,
    );

    // Lease a lasts 12 s after its ACK in elapsed time: not a day longer, not a day shorter.
    await until("lease a to expire", () => {
      const l = leases(db).get(a.address);
      return l?.state === "expired" ? l : undefined;
    }, 20_000);
    const lived = (Date.now() - a.at) / 1000;
    assert.ok(lived >= 11 && lived <= 16, `lease a expired ${lived.toFixed(1)} s after its ACK`);
    assert.equal(leases(db).get(b.address)?.state, "active", "b was renewed later");

    const client = Deno.createHttpClient({ proxy: { transport: "unix", path: `${db}.sock` } });
    try {
      const res = await fetch("http://localhost/status", { client });
      const status = await res.json() as { clock: { steps: number; lastStepSeconds: number } };
      assert.deepEqual(status.clock, { steps: 2, lastStepSeconds: -2 * DAY });
      const metrics = await (await fetch("http://localhost/metrics", { client })).text();
      assert.match(metrics, /^duet_clock_steps_total 2$/m);
    } finally {
      client.close();
    }
  } finally {
    await load.stop();
    await server.stop("SIGTERM");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("duet serve started with a clock behind its database (a router without RTC) keeps every lease's remaining time", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-clock-" });
  const db = `${dir}/leases.db`;
  const offsetFile = `${dir}/offset`;
  const port = freeUdpPort();
  await Deno.writeTextFile(`${dir}/duet.yaml`, configText(db, port, 3600));
  await Deno.writeTextFile(offsetFile, "0");
  const args = ["--config", `${dir}/duet.yaml`, "--test-clock-offset-file", offsetFile];
  let server = new DuetProcess(args);
  const load = new DhcpLoad({ hostname: "127.0.0.1", port, clients: 0, seed: 4 });
  const YEAR = 365 * DAY;
  try {
    await server.waitFor("duet serving");
    const a = await lease(load, 1);
    const stored = leases(db).get(a.address) as Lease;
    assert.equal(await server.stop("SIGTERM"), 0, server.stderr);

    // The router reboots with its clock a year behind.
    await Deno.writeTextFile(offsetFile, String(-YEAR));
    server = new DuetProcess(args);
    await server.waitFor("duet serving");
    assert.match(server.stderr, /System clock is behind the lease database: moving every lease/);
    let l = leases(db).get(a.address) as Lease;
    assert.equal(l.state, "active");
    const moved = stored.ends - l.ends;
    // Moved back by the year less the few seconds between the last write and the restart.
    assert.ok(moved > YEAR - 30 && moved <= YEAR, `moved back ${moved} s`);

    // It renews on the wrong clock, then NTP fixes the clock: times move forward again.
    const renewed = await load.renew(mac(1), a.address, 2000);
    assert.equal(renewed && getMessageType(renewed), DhcpType.DHCPACK);
    const endsWrong = leases(db).get(a.address)?.ends as number;
    await Deno.writeTextFile(offsetFile, "0");
    const line = await logged(server, "System clock stepped", 1);
    const step = Number(/step=\+(\d+)s/.exec(line)?.[1]);
    assert.ok(step > YEAR - 30 && step <= YEAR, line);
    l = leases(db).get(a.address) as Lease;
    assert.equal(l.state, "active");
    assert.equal(l.ends, endsWrong + step, "the renewal keeps its 3600 s");
    assert.ok(Math.abs(l.ends - (Math.floor(Date.now() / 1000) + 3600)) <= 3, "on the real clock");
  } finally {
    await load.stop();
    await server.stop("SIGTERM");
    await Deno.remove(dir, { recursive: true });
  }
});
