/**
 * duet serve with the FFI transport on a router namespace with three LANs, its default route
 * on LAN 2, and real clients: ISC dhclient on LAN 1, busybox udhcpc on LAN 2, and perfdhcp
 * acting as a relay on LAN 3 for 1,000 4-way exchanges. Addresses from 198.18.0.0/15 only.
 */
import assert from "node:assert/strict";
import { Lab, netnsPrerequisites, requireOrSkip } from "../netns.ts";
import { DuetProcess, runDuet } from "./process.ts";

interface LeaseRow {
  address: string;
  "hw-address": string | null;
  state: string;
  hostname: string | null;
  ends: string;
}

const CONFIG = (db: string) =>
  `database: ${db}
authoritative: true
listen:
  - interface: r1
  - interface: r2
  - interface: r3
lease-time: { default: 12, max: 3600, min: 4 }
subnets:
  - subnet: 198.18.1.0/24
    pools:
      - range: 198.18.1.100 - 198.18.1.199
    options:
      routers: [198.18.1.1]
  - subnet: 198.18.2.0/24
    pools:
      - range: 198.18.2.100 - 198.18.2.199
    options:
      routers: [198.18.2.1]
  - subnet: 198.18.64.0/22
    relays: [198.18.3.2]
    lease-time: { default: 3600 }
    pools:
      - range: 198.18.64.10 - 198.18.67.250
`;

// Client scripts of our own: they only set the interface address, and never touch the host's
// /etc/resolv.conf the way the distribution scripts would.
const DHCLIENT_SCRIPT = `#!/bin/sh
echo "$reason $new_ip_address" >> "$(dirname "$0")/dhclient.events"
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    ip -4 addr flush dev "$interface" ;;
esac
exit 0
`;

const UDHCPC_SCRIPT = `#!/bin/sh
echo "$1 $ip" >> "$(dirname "$0")/udhcpc.events"
case "$1" in
  deconfig) ip -4 addr flush dev "$interface" ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
`;

async function leases(db: string): Promise<LeaseRow[]> {
  const r = await runDuet(["leases", "--db", db, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as LeaseRow[];
}

async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
}

function rowFor(rows: LeaseRow[], mac: string): LeaseRow | undefined {
  return rows.find((r) => r["hw-address"] === mac);
}

Deno.test({
  name:
    "duet serve on a three-LAN router: dhclient, udhcpc and a perfdhcp relay each get the right subnet",
  async fn(t) {
    if (!requireOrSkip(t, netnsPrerequisites(["dhclient", "udhcpc", "perfdhcp"]))) return;
    const lab = await Lab.create("e2e");
    const dir = await Deno.makeTempDir({ prefix: "duet-netns-" });
    let server: DuetProcess | undefined;
    try {
      const r = await lab.addNamespace("r");
      const c1 = await lab.addNamespace("c1");
      const c2 = await lab.addNamespace("c2");
      const c3 = await lab.addNamespace("c3");
      await lab.link(r, "r1", "198.18.1.1/24", c1, "c1", null);
      await lab.link(r, "r2", "198.18.2.1/24", c2, "c2", null);
      await lab.link(r, "r3", "198.18.3.1/24", c3, "c3", "198.18.3.2/24");
      // The router's default route points at LAN 2: replies for LAN 1 must not follow it.
      await lab.ip(r, ["route", "add", "default", "via", "198.18.2.254", "dev", "r2", "onlink"]);
      await lab.setMac(c1, "c1", "02:00:00:00:e1:01");
      await lab.setMac(c2, "c2", "02:00:00:00:e2:01");

      const db = `${dir}/leases.db`;
      await Deno.writeTextFile(`${dir}/duet.yaml`, CONFIG(db));
      await Deno.writeTextFile(`${dir}/dhclient.sh`, DHCLIENT_SCRIPT, { mode: 0o755 });
      await Deno.writeTextFile(`${dir}/udhcpc.sh`, UDHCPC_SCRIPT, { mode: 0o755 });
      server = new DuetProcess(["--config", `${dir}/duet.yaml`, "--log-level", "debug"], [
        "ip",
        "netns",
        "exec",
        r,
      ]);
      await server.waitFor("duet serving");

      await t.step(
        "dhclient on LAN 1 gets a LAN 1 address, renews it and releases it",
        async () => {
          const dh = ["dhclient", "-4", "-v", "-lf", `${dir}/dh.leases`, "-pf", `${dir}/dh.pid`];
          const got = await lab.exec(c1, [...dh, "-1", "-sf", `${dir}/dhclient.sh`, "c1"], {
            timeoutMs: 30_000,
          });
          assert.equal(got.code, 0, got.stderr);
          const addr = await lab.ip(c1, ["-4", "-o", "addr", "show", "dev", "c1"]);
          assert.match(addr, /inet 198\.18\.1\.1\d\d\/24/, addr);
          const bound = rowFor(await leases(db), "02:00:00:00:e1:01");
          assert.equal(bound?.state, "active");
          assert.match(bound?.address ?? "", /^198\.18\.1\./);
          // Lease time 12 s: dhclient renews by unicast after T1 (6 s).
          await waitUntil("a RENEW by dhclient", async () => {
            const ev = await Deno.readTextFile(`${dir}/dhclient.events`).catch(() => "");
            return /^RENEW /m.test(ev);
          }, 20_000);
          const renewed = rowFor(await leases(db), "02:00:00:00:e1:01");
          assert.equal(renewed?.address, bound?.address);
          assert.ok((renewed?.ends ?? "") > (bound?.ends ?? ""), "the renewal moved the end");
          const rel = await lab.exec(c1, [...dh, "-r", "-sf", `${dir}/dhclient.sh`, "c1"], {
            timeoutMs: 15_000,
          });
          assert.equal(rel.code, 0, rel.stderr);
          await waitUntil("the release", async () => {
            return rowFor(await leases(db), "02:00:00:00:e1:01")?.state === "released";
          }, 5_000);
        },
      );

      await t.step(
        "udhcpc on LAN 2 gets a LAN 2 address, renews on SIGUSR1, releases on SIGUSR2",
        async () => {
          const child = lab.spawn(c2, [
            "udhcpc",
            "-f",
            "-i",
            "c2",
            "-s",
            `${dir}/udhcpc.sh`,
            "-t",
            "5",
            "-T",
            "2",
            "-x",
            "hostname:lan2-client",
          ]);
          try {
            await waitUntil("udhcpc bound", async () => {
              const ev = await Deno.readTextFile(`${dir}/udhcpc.events`).catch(() => "");
              return /^bound 198\.18\.2\./m.test(ev);
            }, 20_000);
            const bound = rowFor(await leases(db), "02:00:00:00:e2:01");
            assert.equal(bound?.state, "active");
            assert.match(bound?.address ?? "", /^198\.18\.2\./);
            assert.equal(bound?.hostname, "lan2-client");
            await new Promise((res) => setTimeout(res, 1100));
            child.kill("SIGUSR1");
            await waitUntil("udhcpc renew", async () => {
              const ev = await Deno.readTextFile(`${dir}/udhcpc.events`).catch(() => "");
              return /^renew 198\.18\.2\./m.test(ev);
            }, 10_000);
            const renewed = rowFor(await leases(db), "02:00:00:00:e2:01");
            assert.equal(renewed?.address, bound?.address);
            assert.ok((renewed?.ends ?? "") > (bound?.ends ?? ""));
            child.kill("SIGUSR2");
            await waitUntil("the release", async () => {
              return rowFor(await leases(db), "02:00:00:00:e2:01")?.state === "released";
            }, 5_000);
          } finally {
            child.kill("SIGTERM");
            await lab.collect(child, { timeoutMs: 5_000 });
          }
        },
      );

      await t.step(
        "perfdhcp as a relay on LAN 3: 1,000 4-way exchanges, no drops, right subnet",
        async () => {
          const perf = await lab.exec(c3, [
            "perfdhcp",
            "-4",
            "-l",
            "c3",
            "-r",
            "200",
            "-n",
            "1000",
            "-R",
            "1000",
            "-d",
            "3",
            "-W",
            "2000000",
            "198.18.3.1",
          ], { timeoutMs: 60_000 });
          assert.equal(perf.code, 0, perf.stdout + perf.stderr);
          const counts = [
            ...perf.stdout.matchAll(
              /sent packets: (\d+)[\s\S]*?received packets: (\d+)[\s\S]*?drops: (\d+)/g,
            ),
          ];
          assert.equal(counts.length, 2, perf.stdout);
          for (const [, sent, received, drops] of counts) {
            assert.equal(sent, "1000", perf.stdout);
            assert.equal(received, "1000", perf.stdout);
            assert.equal(drops, "0", perf.stdout);
          }
          const rows = (await leases(db)).filter((row) => row.address.startsWith("198.18.6"));
          assert.equal(rows.filter((row) => row.state === "active").length, 1000);
        },
      );

      await t.step("a restart keeps every lease", async () => {
        const before = await leases(db);
        assert.equal(await server!.stop("SIGTERM"), 0, server!.stderr);
        server = new DuetProcess(["--config", `${dir}/duet.yaml`], ["ip", "netns", "exec", r]);
        await server.waitFor("duet serving");
        const after = await leases(db);
        assert.deepEqual(
          after.filter((row) => row.state === "active" && row.address.startsWith("198.18.6")),
          before.filter((row) => row.state === "active" && row.address.startsWith("198.18.6")),
        );
      });
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- duet log ---\n${server?.stderr.slice(-4000)}`, {
        cause: e,
      });
    } finally {
      await server?.stop("SIGTERM");
      await lab.cleanup();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
