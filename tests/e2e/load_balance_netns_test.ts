/**
 * Load balancing of a duet pair with real processes (issue #5, RFC 3074, draft-12 §5.3, §5.4,
 * §9.8.2): two `duet serve` with `split: 128` on one bridge and perfdhcp with 2,000 distinct
 * clients, whose broadcasts reach both servers. Each server answers exactly the clients of its
 * hash buckets, from its own pool (FREE on the primary, BACKUP on the secondary), no client
 * gets two OFFERs nor two addresses, and both lease tables agree. Then the secondary hangs
 * (SIGSTOP: the link stays up until max-response-delay): the primary answers the secondary's
 * clients once their `secs` passes load-balance-max-seconds, and, after declaring the link
 * down (COMMUNICATIONS-INTERRUPTED), every client at once.
 */
import assert from "node:assert/strict";
import { kernelFilterRefusal, netnsPrerequisites, requireOrSkip } from "../netns.ts";
import {
  ADDRESS,
  addressRange,
  byState,
  DHCLIENT_SCRIPT,
  differences,
  keepDir,
  type LeaseRow,
  macServedBy,
  ownerOfLease,
  PairLab,
  perfdhcpCounts,
} from "./pair_lab.ts";

/** 4,096 addresses: two thousand clients fit in either half. */
const POOL_FIRST = "198.18.16.0";
const POOL_LAST = "198.18.31.255";
const POOL = `${POOL_FIRST} - ${POOL_LAST}`;
const CLIENTS = 2000;
/** Seconds without a message before the link is declared down (draft-12 §8.3). */
const MAX_RESPONSE_DELAY = 10;
/** Both tests' pair: split 128, a short MCLT and link timeout. */
const PAIR = {
  pool: POOL,
  mclt: 30,
  split: 128,
  leaseTime: { default: 600, max: 3600 },
  maxResponseDelay: MAX_RESPONSE_DELAY,
  loadBalanceMaxSeconds: 3,
};

/**
 * perfdhcp, broadcast on c0 (it relays: giaddr 198.18.0.2), `n` exchanges of new clients from
 * `base`. perfdhcp may send a few more than `-n` under load; -R is far larger, so that even
 * those are new clients (its MACs count up from `base`).
 */
function perfdhcp(base: string, n: number, rate: number): string[] {
  return [
    "perfdhcp",
    "-4",
    "-l",
    "c0",
    "-r",
    String(rate),
    "-R",
    "1000000",
    "-n",
    String(n),
    "-b",
    `mac=${base}`,
    "-d",
    "2",
    "-W",
    "2000000",
  ];
}

function acks(s: { dhcp: { sent: Record<string, number> } }): number {
  return s.dhcp.sent.DHCPACK ?? 0;
}

Deno.test({
  name:
    "duet pair in namespaces: split 128 splits 2,000 perfdhcp clients by the RFC 3074 hash, and a hung partner's clients are served after load-balance-max-seconds and without load balancing once the link is down",
  sanitizeResources: false,
  async fn(t) {
    if (!requireOrSkip(t, netnsPrerequisites(["perfdhcp", "dhclient"]))) return;
    const lateMac = macServedBy("secondary", 0xe1);
    const pair = await PairLab.create("lb", PAIR, [
      { name: "c", address: "198.18.0.2/15", mac: "02:00:00:00:f1:02" },
      { name: "d", address: null, mac: lateMac },
    ]);
    const dir = pair.dir;
    const lab = pair.lab;
    let keep: string | null = null;
    let current = "setup";
    const phase = async (name: string, fn: () => Promise<void>) => {
      current = name;
      await fn();
    };
    try {
      // DUET_E2E_KEEP=DIR keeps the server logs and a capture of the DHCP traffic.
      keep = await keepDir(pair);
      if (keep) pair.capture(`${keep}/bridge.pcapng`);
      let backup0 = new Set<string>();
      await phase("the pair reaches NORMAL and balances the pool", async () => {
        await pair.start("secondary", "info");
        await pair.start("primary", "info");
        await pair.waitState("primary", "normal", "normal", 20_000);
        await pair.waitState("secondary", "normal", "normal", 20_000);
        await pair.waitUntil("2,048 BACKUP addresses on the secondary", async () => {
          return (await pair.status("secondary")).leases.backup === 2048;
        }, 15_000);
        backup0 = new Set(byState(await pair.leases("secondary"), "backup").keys());
      });

      await phase(
        "2,000 clients: each server answers its own hash buckets from its own pool",
        async () => {
          const out = await lab.exec(
            pair.ns.c as string,
            perfdhcp("02:00:00:a0:00:00", CLIENTS, 400),
            {
              timeoutMs: 40_000,
            },
          );
          const counts = perfdhcpCounts(out.stdout);
          const n = counts.do[0] as number;
          assert.ok(n >= CLIENTS, out.stdout);
          // Every client was answered: by exactly one server (below), within perfdhcp's 2 s.
          assert.equal(counts.do[1], n, out.stdout);
          assert.equal(counts.ra[1], n, out.stdout);
          const p = await pair.status("primary");
          const s = await pair.status("secondary");
          // Both heard every DISCOVER; together they OFFERed once per client (§9.8.2).
          assert.equal(p.dhcp.received.DHCPDISCOVER, n);
          assert.equal(s.dhcp.received.DHCPDISCOVER, n);
          assert.equal((p.dhcp.sent.DHCPOFFER ?? 0) + (s.dhcp.sent.DHCPOFFER ?? 0), n);
          assert.equal(acks(p) + acks(s), n);
          const share = acks(p) / n;
          assert.ok(share >= 0.45 && share <= 0.55, `the primary ACKed ${acks(p)} of ${n}`);

          let tables: [LeaseRow[], LeaseRow[]] = [[], []];
          await pair.waitUntil("both tables hold the 2,000 leases", async () => {
            tables = [await pair.leases("primary"), await pair.leases("secondary")];
            return tables.every((rows) => byState(rows, "active").size === n);
          }, 15_000);
          const [pActive, sActive] = tables.map((rows) => byState(rows, "active"));
          const clientsSeen = new Map<string, Set<string>>();
          let primaryClients = 0;
          for (const [address, row] of pActive as Map<string, LeaseRow>) {
            const mac = row["hw-address"] as string;
            // The tables agree (BNDUPD/BNDACK, §7.1).
            assert.equal(sActive?.get(address)?.["hw-address"], mac, address);
            assert.equal(sActive?.get(address)?.ends, row.ends, address);
            const seen = clientsSeen.get(mac) ?? new Set();
            seen.add(address);
            clientsSeen.set(mac, seen);
            // The hash owner served it (RFC 3074), from its own pool (§5.4).
            const owner = ownerOfLease(row);
            if (owner === "primary") primaryClients++;
            assert.equal(backup0.has(address), owner === "secondary", `${address} for ${mac}`);
          }
          // Every pool address has the same binding on both (FREE, BACKUP, ACTIVE and its end).
          assert.deepEqual(differences(addressRange(POOL_FIRST, POOL_LAST), ...tables), []);
          // No client holds two addresses across the pair.
          assert.equal(clientsSeen.size, n);
          assert.ok([...clientsSeen.values()].every((a) => a.size === 1));
          // Exactly the clients of the primary's buckets got their ACK from it.
          assert.equal(acks(p), primaryClients);
          // Each dropped its partner's DISCOVERs and SELECTING REQUESTs in the kernel (the
          // counts above include them), unless this kernel refuses eBPF (printed).
          const noKernel = kernelFilterRefusal();
          if (noKernel !== null) {
            // deno-lint-ignore no-console
            console.log(`NOTE: kernel filter not checked: ${noKernel}`);
          } else {
            for (const [status, own] of [[p, acks(p)], [s, acks(s)]] as const) {
              const k = status.failover?.kernelFilter;
              assert.equal(k?.state, "dropping", JSON.stringify(k));
              assert.equal(k.dropped.DHCPDISCOVER, n - own, JSON.stringify(k));
              assert.equal(k.dropped.DHCPREQUEST, n - own, JSON.stringify(k));
            }
          }
        },
      );

      await phase(
        "a hung secondary: its client is served by the primary once secs > 3",
        async () => {
          const s = pair.servers.secondary;
          assert.ok(s);
          s.child.kill("SIGSTOP");
          const before = await pair.status("primary");
          assert.equal(before.state, "normal");
          await Deno.writeTextFile(`${dir}/dhclient.sh`, DHCLIENT_SCRIPT, { mode: 0o755 });
          // Retransmit every 1-2 s: secs passes 3 within a few seconds (RFC 2131 §4.1).
          await Deno.writeTextFile(
            `${dir}/dhclient.conf`,
            "initial-interval 1;\nbackoff-cutoff 2;\n",
          );
          const started = Date.now();
          const client = lab.spawn(pair.ns.d as string, [
            "dhclient",
            "-4",
            "-d",
            "-v",
            "-cf",
            `${dir}/dhclient.conf`,
            "-lf",
            `${dir}/dhclient.leases`,
            "-pf",
            `${dir}/dhclient.pid`,
            "-sf",
            `${dir}/dhclient.sh`,
            "d0",
          ]);
          const bound = new RegExp(`^BOUND \\S+ ${ADDRESS.primary.replaceAll(".", "\\.")}$`, "m");
          try {
            await pair.waitUntil("dhclient bound by the primary", async () => {
              return bound.test(await Deno.readTextFile(`${dir}/dhclient.events`).catch(() => ""));
            }, 15_000);
          } finally {
            client.kill("SIGTERM");
            await lab.collect(client, { timeoutMs: 5_000 });
          }
          const after = await pair.status("primary");
          // Still NORMAL: load balancing, not a lost link, let the primary answer (RFC 3074 §4).
          assert.equal(after.state, "normal");
          assert.ok(Date.now() - started < MAX_RESPONSE_DELAY * 1000);
          // It first ignored the young DISCOVERs of a client that is not its own.
          assert.ok(
            (after.dhcp.dropped["load-balanced"] ?? 0) >
              (before.dhcp.dropped["load-balanced"] ?? 0),
            JSON.stringify(after.dhcp.dropped),
          );
        },
      );

      await phase(
        "once the link is declared down the primary answers every client at once",
        async () => {
          await pair.waitState(
            "primary",
            "communications-interrupted",
            null,
            (MAX_RESPONSE_DELAY + 5) * 1000,
          );
          const before = await pair.status("primary");
          const out = await lab.exec(pair.ns.c as string, perfdhcp("02:00:00:a1:00:00", 400, 200), {
            timeoutMs: 30_000,
          });
          const counts = perfdhcpCounts(out.stdout);
          const n = counts.do[0] as number;
          assert.ok(n >= 400, out.stdout);
          assert.equal(counts.ra[1], n, out.stdout);
          const after = await pair.status("primary");
          // §9.9.2: no load balancing in COMMUNICATIONS-INTERRUPTED, in user space or kernel.
          assert.equal(after.dhcp.dropped["load-balanced"], before.dhcp.dropped["load-balanced"]);
          if (kernelFilterRefusal() === null) {
            assert.equal(after.failover?.kernelFilter?.state, "passing");
          }
          assert.equal(acks(after) - acks(before), n);
          // kill -9 of the hung secondary ends its part.
          await pair.stop("secondary", "SIGKILL");
          assert.equal((await pair.status("primary")).state, "communications-interrupted");
        },
      );
    } catch (e) {
      throw new Error(`In "${current}": ${(e as Error).message}\n${pair.logs(40)}`, { cause: e });
    } finally {
      if (keep) await pair.saveLogs(keep);
      await pair.cleanup();
    }
  },
});

Deno.test({
  name:
    "duet pair in namespaces: a secondary that may not load eBPF balances in user space, says why, and the split is the same",
  sanitizeResources: false,
  async fn(t) {
    if (!requireOrSkip(t, netnsPrerequisites(["perfdhcp", "setpriv"]))) return;
    const noKernel = kernelFilterRefusal();
    if (!requireOrSkip(t, noKernel === null ? null : `this kernel refuses eBPF: ${noKernel}`)) {
      return;
    }
    const pair = await PairLab.create("lbu", PAIR, [{
      name: "c",
      address: "198.18.0.2/15",
      mac: "02:00:00:00:f2:02",
    }]);
    try {
      // Root without CAP_BPF, CAP_SYS_ADMIN and CAP_PERFMON: bpf(2) refuses the map.
      await pair.start("secondary", "info", [
        "setpriv",
        "--bounding-set=-bpf,-sys_admin,-perfmon",
      ]);
      await pair.start("primary", "info");
      await pair.waitState("primary", "normal", "normal", 20_000);
      await pair.waitState("secondary", "normal", "normal", 20_000);
      const secondaryLog = pair.servers.secondary?.stderr ?? "";
      assert.match(secondaryLog, /Load balancing in user space only: no kernel filter/);
      assert.match(secondaryLog, /Operation not permitted/);
      const n = 400;
      const out = await pair.lab.exec(pair.ns.c as string, perfdhcp("02:00:00:b0:00:00", n, 200), {
        timeoutMs: 30_000,
      });
      const counts = perfdhcpCounts(out.stdout);
      const sent = counts.do[0] as number;
      assert.ok(sent >= n, out.stdout);
      assert.equal(counts.ra[1], sent, out.stdout);
      const p = await pair.status("primary");
      const s = await pair.status("secondary");
      assert.equal(acks(p) + acks(s), sent);
      assert.equal(p.failover?.kernelFilter?.state, "dropping");
      assert.equal(p.failover?.kernelFilter?.dropped.DHCPDISCOVER, sent - acks(p));
      const k = s.failover?.kernelFilter;
      assert.equal(k?.state, "unavailable", JSON.stringify(k));
      assert.match(k?.reason ?? "", /needs CAP_BPF or root/);
      // The user-space refusals of the secondary are the kernel's of the primary, mirrored.
      assert.equal(s.dhcp.dropped["load-balanced"], sent - acks(s));
      assert.equal(s.dhcp.received.DHCPDISCOVER, sent);
      assert.equal(p.dhcp.received.DHCPDISCOVER, sent);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${pair.logs(40)}`, { cause: e });
    } finally {
      await pair.cleanup();
    }
  },
});
