/**
 * A duet failover pair with real clients in network namespaces (issue #4, draft-12 §5, §9):
 * two `duet serve` on one bridge, ISC dhclient, busybox udhcpc and perfdhcp in client
 * namespaces. The primary is killed (-9) under load: the secondary goes to
 * COMMUNICATIONS-INTERRUPTED, renews existing clients and serves new ones from its BACKUP
 * pool; `duet partner-down`, then after the MCLT the whole pool; the primary restarts from its
 * database and the pair goes RECOVER -> RECOVER-DONE -> NORMAL with lease tables that agree.
 * Then a SIGTERM (STATE SHUTDOWN) puts the partner in PARTNER-DOWN and the restart recovers.
 */
import assert from "node:assert/strict";
import { netnsPrerequisites, requireOrSkip } from "../netns.ts";
import { runDuet } from "./process.ts";
import {
  ADDRESS,
  byState,
  DHCLIENT_SCRIPT,
  differences,
  keepDir,
  macServedBy,
  PairLab,
  perfdhcpCounts,
  UDHCPC_SCRIPT,
} from "./pair_lab.ts";

const POOL_FIRST = 10;
const POOL_SIZE = 64;
const POOL = `198.18.16.${POOL_FIRST} - 198.18.16.${POOL_FIRST + POOL_SIZE - 1}`;
const POOL_ADDRESSES = Array.from({ length: POOL_SIZE }, (_, i) => `198.18.16.${POOL_FIRST + i}`);
/** Short, so that PARTNER-DOWN's wait and RECOVER-WAIT fit in the test (draft-12 §5.2.1). */
const MCLT = 6;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readEvents(path: string): Promise<string> {
  return await Deno.readTextFile(path).catch(() => "");
}

Deno.test({
  name:
    "duet pair in namespaces: kill -9 of the primary under load, partner-down, MCLT, restart and recovery with real clients",
  sanitizeResources: false,
  async fn(t) {
    if (
      !requireOrSkip(t, netnsPrerequisites(["dhclient", "udhcpc", "perfdhcp"]))
    ) return;
    // dhclient's client hashes to the primary, udhcpc's to the secondary (RFC 3074, split 128).
    const dMac = macServedBy("primary", 0xd1);
    const uMac = macServedBy("secondary", 0xd2);
    const nMac = macServedBy("primary", 0xd3);
    const pair = await PairLab.create("fo", {
      pool: POOL,
      mclt: MCLT,
      leaseTime: { default: 24, max: 48 },
      maxResponseDelay: 5,
    }, [
      { name: "c", address: "198.18.0.2/15", mac: "02:00:00:00:f0:02" },
      { name: "d", address: null, mac: dMac },
      { name: "u", address: null, mac: uMac },
      { name: "n", address: null, mac: nMac },
    ]);
    const dir = pair.dir;
    let keep: string | null = null;
    let current = "setup";
    /** Runs one phase; the first failure ends the test, named by its phase. */
    const phase = async (name: string, fn: () => Promise<void>) => {
      current = name;
      await fn();
    };
    const lab = pair.lab;
    try {
      // DUET_E2E_KEEP=DIR keeps the server logs and a capture of the DHCP traffic.
      keep = await keepDir(pair);
      if (keep) pair.capture(`${keep}/bridge.pcapng`);
      for (const name of ["dhclient", "dhclient-new"]) {
        await Deno.writeTextFile(`${dir}/${name}.sh`, DHCLIENT_SCRIPT, { mode: 0o755 });
        // A private dhclient.conf (dhclient would otherwise read /etc/dhcp's). Retries at most
        // 2 s apart, so that a RENEWING client broadcasts between T2 and the end of its lease.
        await Deno.writeTextFile(`${dir}/${name}.conf`, "initial-interval 1;\nbackoff-cutoff 2;\n");
      }
      await Deno.writeTextFile(`${dir}/udhcpc.sh`, UDHCPC_SCRIPT, { mode: 0o755 });
      const dhclient = (ns: string, name: string, iface: string, extra: string[]) =>
        lab.spawn(ns, [
          "dhclient",
          "-4",
          "-d",
          "-v",
          ...extra,
          "-cf",
          `${dir}/${name}.conf`,
          "-lf",
          `${dir}/${name}.leases`,
          "-pf",
          `${dir}/${name}.pid`,
          "-sf",
          `${dir}/${name}.sh`,
          iface,
        ]);

      let backup0 = new Set<string>();
      let free0 = new Set<string>();
      let dAddress = "";
      let uAddress = "";
      let dClient: Deno.ChildProcess | undefined;
      let uClient: Deno.ChildProcess | undefined;
      await phase(
        "the pair reaches NORMAL and the primary gives half the pool to the secondary",
        async () => {
          await pair.start("secondary");
          await pair.start("primary");
          await pair.waitState("primary", "normal", "normal", 20_000);
          await pair.waitState("secondary", "normal", "normal", 20_000);
          // §5.4 pool balancing: half of the FREE addresses become BACKUP, on both sides.
          await pair.waitUntil("32 BACKUP addresses on the secondary", async () => {
            return (await pair.status("secondary")).leases.backup === POOL_SIZE / 2;
          }, 10_000);
          backup0 = new Set(byState(await pair.leases("secondary"), "backup").keys());
          free0 = new Set(POOL_ADDRESSES.filter((a) => !backup0.has(a)));
          assert.equal(backup0.size, POOL_SIZE / 2);
          const primaryBackup = new Set(byState(await pair.leases("primary"), "backup").keys());
          assert.deepEqual([...primaryBackup].sort(), [...backup0].sort());
        },
      );

      await phase(
        "dhclient gets a FREE address from the primary, udhcpc a BACKUP one from the secondary",
        async () => {
          // Started now: a client that had been retrying has secs above
          // load-balance-max-seconds, and both servers would answer it (RFC 3074 §4).
          dClient = dhclient(pair.ns.d as string, "dhclient", "d0", []);
          // -C: no client identifier, so the hash is over chaddr like dhclient's (RFC 3074 §4).
          uClient = lab.spawn(pair.ns.u as string, [
            "udhcpc",
            "-f",
            "-C",
            "-i",
            "u0",
            "-s",
            `${dir}/udhcpc.sh`,
            "-t",
            "10",
            "-T",
            "1",
          ]);

          await pair.waitUntil("dhclient and udhcpc bound", async () => {
            const d = await readEvents(`${dir}/dhclient.events`);
            const u = await readEvents(`${dir}/udhcpc.events`);
            return /^(BOUND|REBOOT) \S+/m.test(d) && /^bound \S+/m.test(u);
          }, 30_000);
          dAddress = (await readEvents(`${dir}/dhclient.events`)).match(/^(?:BOUND|REBOOT) (\S+)/m)
            ?.[1] as string;
          uAddress = (await readEvents(`${dir}/udhcpc.events`)).match(/^bound (\S+)/m)
            ?.[1] as string;
          // §5.4/§9.9.2: each server allocates from its own pool.
          assert.ok(free0.has(dAddress), `dhclient got ${dAddress}, not a FREE address`);
          assert.ok(backup0.has(uAddress), `udhcpc got ${uAddress}, not a BACKUP address`);
          // busybox udhcpc takes any lease below 122 s for 122 s and would renew only after the
          // server's MCLT-capped first lease (§5.2.1) ran out: renew it now, for the full time.
          await sleep(1_100);
          uClient.kill("SIGUSR1");
          await pair.waitUntil("udhcpc renewed in NORMAL", async () => {
            return (await readEvents(`${dir}/udhcpc.events`)).includes(`renew ${uAddress} `);
          }, 10_000);
          // Both tables know both clients (BNDUPD/BNDACK, §7.1).
          await pair.waitUntil("both leases on both servers", async () => {
            for (const role of ["primary", "secondary"] as const) {
              const active = byState(await pair.leases(role), "active");
              if (active.get(dAddress)?.["hw-address"] !== dMac) return false;
              if (active.get(uAddress)?.["hw-address"] !== uMac) return false;
            }
            return true;
          }, 10_000);
        },
      );

      let perf: Deno.ChildProcess | undefined;
      await phase(
        "kill -9 of the primary under load: the secondary goes to COMMUNICATIONS-INTERRUPTED",
        async () => {
          // 16 clients at 20 exchanges/s for 20 s: the load runs through the failure.
          perf = lab.spawn(pair.ns.c as string, [
            "perfdhcp",
            "-4",
            "-l",
            "c0",
            "-r",
            "20",
            "-R",
            "16",
            "-p",
            "20",
            "-b",
            "mac=02:00:00:0c:00:00",
            "-d",
            "2",
            "-W",
            "2000000",
          ]);
          await sleep(3_000);
          await pair.stop("primary", "SIGKILL");
          // §9.2: a lost connection in NORMAL means COMMUNICATIONS-INTERRUPTED (§9.8.3).
          await pair.waitState("secondary", "communications-interrupted", null, 10_000);
        },
      );

      await phase(
        "in COMMUNICATIONS-INTERRUPTED it renews existing clients and serves new ones from BACKUP",
        async () => {
          // udhcpc renews by unicast with the secondary (its server).
          const uBefore = await readEvents(`${dir}/udhcpc.events`);
          uClient?.kill("SIGUSR1");
          await pair.waitUntil("udhcpc renewed", async () => {
            const now = await readEvents(`${dir}/udhcpc.events`);
            return now.slice(uBefore.length).includes(`renew ${uAddress} ${ADDRESS.secondary}`);
          }, 10_000);
          // dhclient's server is gone: its unicast RENEW goes unanswered and at T2 it asks by
          // broadcast, which the secondary answers (§9.9.2: every client, no load balancing).
          // dhclient names that RENEW too (it stays in RENEWING and only broadcasts).
          const dBefore = await readEvents(`${dir}/dhclient.events`);
          const rebound = new RegExp(
            `^(RENEW|REBIND) ${dAddress.replaceAll(".", "\\.")} ${
              ADDRESS.secondary.replaceAll(".", "\\.")
            }$`,
            "m",
          );
          await pair.waitUntil("dhclient renewed with the secondary", async () => {
            const now = await readEvents(`${dir}/dhclient.events`);
            return rebound.test(now.slice(dBefore.length));
          }, 30_000);
          const d = byState(await pair.leases("secondary"), "active").get(dAddress);
          assert.equal(d?.["hw-address"], dMac);
          // A new client whose hash bucket is the primary's gets a BACKUP address (§9.9.2).
          const n = dhclient(pair.ns.n as string, "dhclient-new", "n0", ["-1"]);
          await pair.waitUntil("the new client bound", async () => {
            return /^BOUND \S+/m.test(await readEvents(`${dir}/dhclient-new.events`));
          }, 20_000);
          const nAddress = (await readEvents(`${dir}/dhclient-new.events`)).match(/^BOUND (\S+)/m)
            ?.[1] as string;
          assert.ok(backup0.has(nAddress), `the new client got ${nAddress}, not a BACKUP address`);
          n.kill("SIGTERM");
          await lab.collect(n, { timeoutMs: 5_000 });
          const done = await lab.collect(perf as Deno.ChildProcess, { timeoutMs: 30_000 });
          const counts = perfdhcpCounts(done.stdout);
          // The load went on through the failure: almost every exchange completed.
          assert.ok(counts.ra[1]! >= 0.9 * counts.do[0]!, done.stdout);
        },
      );

      await phase(
        "duet partner-down, then after the MCLT the secondary serves from the whole pool",
        async () => {
          const r = await runDuet(["partner-down", "--socket", pair.socket("secondary")]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.trim(), "COMMUNICATIONS-INTERRUPTED -> PARTNER-DOWN");
          const down = await pair.statusCli("secondary");
          assert.equal(down.state, "partner-down");
          const since = Date.now();
          const newClients = async (base: string, n: number) => {
            const before = new Set(byState(await pair.leases("secondary"), "active").keys());
            const out = await lab.exec(pair.ns.c as string, [
              "perfdhcp",
              "-4",
              "-l",
              "c0",
              "-r",
              "40",
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
            ], { timeoutMs: 30_000 });
            const active = byState(await pair.leases("secondary"), "active");
            const added = [...active.keys()].filter((a) => !before.has(a));
            const counts = perfdhcpCounts(out.stdout);
            // perfdhcp may send a few more than -n under load (all new clients: -R is larger).
            const sent = counts.do[0] as number;
            return { sent, acks: counts.ra[1] as number, added, out: out.stdout };
          };
          // §9.4.2: within the MCLT only its own (BACKUP) addresses: 40 new clients are more
          // than it has left, and none gets one of the primary's FREE addresses.
          const early = await newClients("02:00:00:0d:00:00", 40);
          assert.ok(Date.now() - since < MCLT * 1000, "the first batch ran within the MCLT");
          assert.ok(early.acks > 0 && early.acks < early.sent, early.out);
          assert.deepEqual(early.added.filter((a) => free0.has(a)), []);
          // After the MCLT the partner's addresses too: 16 more new clients all get one.
          await sleep(Math.max(0, since + (MCLT + 1) * 1000 - Date.now()));
          const late = await newClients("02:00:00:0e:00:00", 16);
          assert.equal(late.acks, late.sent, late.out);
          const fromFree = late.added.filter((a) => free0.has(a));
          assert.ok(fromFree.length > 0, `no new lease on a formerly FREE address: ${late.added}`);
        },
      );

      await phase(
        "the primary restarts with its database: RECOVER -> RECOVER-DONE -> NORMAL, tables agree",
        async () => {
          const primary = await pair.start("primary");
          await pair.waitState("primary", "normal", "normal", 30_000);
          await pair.waitState("secondary", "normal", "normal", 10_000);
          // §9.3.2: a partner in PARTNER-DOWN sends the restarted server to RECOVER.
          assert.match(primary.stderr, /Failover state STARTUP -> RECOVER /);
          assert.match(primary.stderr, /-> RECOVER-DONE /);
          assert.match(primary.stderr, /Failover state RECOVER-DONE -> NORMAL/);
          for (const c of [dClient, uClient]) {
            c?.kill("SIGTERM");
            if (c) await lab.collect(c, { timeoutMs: 5_000 });
          }
          let last: string[] = [];
          await pair.waitUntil("both lease tables agree", async () => {
            last = differences(
              POOL_ADDRESSES,
              await pair.leases("primary"),
              await pair.leases("secondary"),
            );
            return last.length === 0;
          }, 15_000).catch((e) => {
            throw new Error(`${last.join("\n")}\n${(e as Error).message}`);
          });
          // dhclient renewed until just now: its lease is ACTIVE on both (udhcpc's may be over).
          for (const role of ["primary", "secondary"] as const) {
            const active = byState(await pair.leases(role), "active");
            assert.equal(active.get(dAddress)?.["hw-address"], dMac, role);
          }
        },
      );

      await phase(
        "SIGTERM of the secondary: the primary goes to PARTNER-DOWN, the restart recovers",
        async () => {
          assert.equal(await pair.stop("secondary", "SIGTERM"), 0);
          // §9.8.4 (and §9.14): a partner that says SHUTDOWN is down.
          await pair.waitState("primary", "partner-down", "shutdown", 10_000);
          await pair.start("secondary");
          await pair.waitState("secondary", "normal", "normal", 30_000);
          const p = await pair.statusCli("primary");
          const s = await pair.statusCli("secondary");
          assert.deepEqual([p.state, p["partner-state"]], ["normal", "normal"]);
          assert.deepEqual([s.state, s["partner-state"]], ["normal", "normal"]);
        },
      );
    } catch (e) {
      const events = [];
      for (const name of ["dhclient", "udhcpc", "dhclient-new"]) {
        events.push(`--- ${name}.events ---\n${await readEvents(`${dir}/${name}.events`)}`);
      }
      throw new Error(`In "${current}": ${(e as Error).message}\n${events.join("\n")}`, {
        cause: e,
      });
    } finally {
      if (keep) await pair.saveLogs(keep);
      await pair.cleanup();
    }
  },
});
