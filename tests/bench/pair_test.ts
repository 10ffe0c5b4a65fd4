/** Unit tests of the pure parts of the benchmark's pair mode (bench/pair.ts, report, topology). */
import assert from "node:assert/strict";
import { PAIR_MODE_SERVERS, parseSettings } from "../../bench/bench.ts";
import type { RunResult } from "../../bench/measure.ts";
import {
  dhcpdPairConfig,
  dhcpdSeedLeases,
  duetBacklog,
  duetPairConfig,
  type DuetPairStatus,
  duetSideIdle,
  lastIscState,
  type PairExtras,
  POOL_SIZE,
  worse,
} from "../../bench/pair.ts";
import { formatPairTable, pairTargets, type ServerSummary } from "../../bench/report.ts";
import { bridgePort, pairTopologyNames } from "../../bench/topology.ts";
import { parseConfig } from "../../lib/config/config.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("parseSettings() in pair mode measures Kea alone and both pairs by default", async (t) => {
  await t.step("BENCH_MODE=pair", () => {
    const s = parseSettings(env({ BENCH_MODE: "pair" }));
    assert.equal(s.mode, "pair");
    assert.deepEqual(s.servers, PAIR_MODE_SERVERS);
    assert.deepEqual(PAIR_MODE_SERVERS, ["kea", "duet-pair", "dhcpd-pair"]);
  });
  await t.step("single servers may be named too", () => {
    const s = parseSettings(env({ BENCH_MODE: "pair", BENCH_SERVERS: "duet,duet-pair" }));
    assert.deepEqual(s.servers, ["duet", "duet-pair"]);
  });
  await t.step("a pair outside pair mode is refused, naming BENCH_MODE", () => {
    assert.throws(
      () => parseSettings(env({ BENCH_SERVERS: "duet-pair" })),
      /set BENCH_MODE=pair/,
    );
  });
  await t.step("an unknown mode is refused", () => {
    assert.throws(() => parseSettings(env({ BENCH_MODE: "triple" })), RangeError);
  });
  await t.step("single mode is the default", () => {
    assert.equal(parseSettings(env({})).mode, "single");
  });
});

Deno.test("pairTopologyNames() keeps every interface within 15 characters", () => {
  const t = pairTopologyNames(4_194_304);
  for (const name of [t.serverIf, t.secondIf, t.clientIf, t.bridge]) {
    assert.ok(name.length <= 15, name);
    assert.ok(bridgePort(name).length <= 15, bridgePort(name));
  }
  assert.equal(new Set([t.serverNs, t.secondNs, t.clientNs, t.bridgeNs]).size, 4);
  assert.deepEqual([t.serverAddress, t.secondAddress, t.clientAddress], [
    "198.18.0.1",
    "198.18.0.3",
    "198.18.0.2",
  ]);
  assert.equal(bridgePort("db-s42"), "db-bs42");
});

Deno.test("duetPairConfig() is a valid pair: mclt and split on the primary only", () => {
  const t = pairTopologyNames(42);
  const primary = parseConfig(duetPairConfig("/tmp/p", "primary", t), "primary.yaml");
  const secondary = parseConfig(duetPairConfig("/tmp/s", "secondary", t), "secondary.yaml");
  assert.equal(primary.database, "/tmp/p/leases.db");
  assert.equal(primary.failover?.role, "primary");
  assert.equal(primary.failover?.mclt, 300);
  assert.equal(primary.failover?.split, 128);
  assert.equal(primary.failover?.peer, 0xc6120003); // the secondary, 198.18.0.3
  assert.equal(secondary.failover?.role, "secondary");
  assert.equal(secondary.failover?.split, null);
  assert.equal(secondary.failover?.peer, 0xc6120001);
  assert.equal(primary.failover?.maxUnackedBndupd, 10);
  assert.equal(primary.failover?.loadBalanceMaxSeconds, 3);
});

Deno.test("dhcpdPairConfig() mirrors dhcpd-failover.sh; the seed says both were normal", () => {
  const t = pairTopologyNames(42);
  const primary = dhcpdPairConfig("primary", t);
  const secondary = dhcpdPairConfig("secondary", t);
  assert.match(primary, /^ {2}primary;$/m);
  assert.match(primary, /^ {2}mclt 300;$/m);
  assert.match(primary, /^ {2}split 128;$/m);
  assert.match(primary, /^ {2}peer address 198\.18\.0\.3;$/m);
  assert.doesNotMatch(secondary, /mclt|split/);
  assert.match(secondary, /^ {2}address 198\.18\.0\.3;$/m);
  assert.match(secondary, /range 198\.18\.16\.0 198\.19\.255\.250;/);
  assert.match(dhcpdSeedLeases(), /my state normal at 1 .*\n {2}partner state normal at 1/);
});

Deno.test("lastIscState() takes the last state ISC dhcpd moved to", () => {
  const log = "failover peer bench: I move from recover to startup\n" +
    "failover peer bench: I move from startup to normal\n" +
    "failover peer bench: peer moves from recover-done to normal\n";
  assert.equal(lastIscState(log), "normal");
  assert.equal(lastIscState("nothing yet\n"), null);
});

function status(o: Partial<DuetPairStatus> & { queued?: number; inFlight?: number }) {
  return {
    state: "normal",
    "partner-state": "normal",
    leases: {},
    dhcp: { sent: {} },
    failover: { updates: { queued: o.queued ?? 0, unacked: o.inFlight ?? 0, ackLatency: null } },
    ...o,
  } as DuetPairStatus;
}

Deno.test("duetSideIdle() wants NORMAL on both ends and nothing unacknowledged", () => {
  assert.equal(duetSideIdle(status({})), true);
  assert.equal(duetSideIdle(status({ "partner-state": "recover-done" })), false);
  assert.equal(duetSideIdle(status({ queued: 3 })), false);
  assert.equal(duetSideIdle(status({ inFlight: 1 })), false);
  assert.equal(duetSideIdle(status({ failover: null })), false);
  assert.equal(duetBacklog(status({ queued: 3, inFlight: 2 })), 5);
  assert.equal(duetBacklog(status({ failover: null })), null);
});

Deno.test("worse() takes the larger side and ignores a missing one", () => {
  assert.equal(worse(1.5, 2.5), 2.5);
  assert.equal(worse(null, 2), 2);
  assert.equal(worse(undefined, null), null);
});

Deno.test("POOL_SIZE is the single servers' pool", () => {
  assert.equal(POOL_SIZE, 126_971);
});

function row(
  server: string,
  perSecond: number,
  pair?: PairExtras,
  median = perSecond,
): ServerSummary {
  const run = {
    server,
    exchangesPerSecond: median,
    cpuMicrosPerExchange: 200,
    discoverOffer: { sent: 10, received: 10, drops: 0, avgDelayMs: 0.5 },
    requestAck: { sent: 10, received: 10, drops: 0, avgDelayMs: 0.25 },
    peakRssMib: 40,
    leases: 10,
    ...(pair ? { pair } : {}),
  } as RunResult;
  return {
    server,
    version: "",
    storage: "s",
    note: null,
    bestRate: perSecond,
    repeatsPassed: 3,
    repeatsRun: 3,
    clientLimited: false,
    run,
  };
}

const EXTRAS: PairExtras = {
  leasesSecondary: 10,
  acks: { primary: 6, secondary: 4 },
  bndack: null,
  bndackP50Ms: 3.25,
  bndackP99Ms: 20.5,
  backlogPeak: 12,
  drainSeconds: 0.15,
};

Deno.test("pairTargets() compares the duet pair with Kea alone and with the ISC pair", () => {
  const met = pairTargets([
    row("kea", 4000),
    row("duet-pair", 4500, EXTRAS),
    row("dhcpd-pair", 100),
  ]);
  assert.deepEqual(met, {
    duetPair: 4500,
    kea: 4000,
    iscPair: 100,
    vsKea: 1.125,
    vsIscPair: 45,
    vsKeaMedian: 1.125,
    vsIscPairMedian: 45,
    met: true,
  });
  assert.equal(
    pairTargets([row("kea", 5000), row("duet-pair", 4500), row("dhcpd-pair", 100)]).met,
    false,
    "below Kea alone",
  );
  assert.equal(
    pairTargets([row("kea", 4000), row("duet-pair", 4500), row("dhcpd-pair", 500)]).met,
    false,
    "less than ten times the ISC pair",
  );
  assert.equal(pairTargets([row("kea", 5000), row("duet-pair", 4500)]).met, null);
});

Deno.test("pairTargets() compares confirmed rates; the medians of ACKs/s are information", () => {
  // Both confirmed 14,000/s; perfdhcp sent a few fewer DISCOVERs in the pair's median run.
  const t = pairTargets([
    row("kea", 14000, undefined, 13967),
    row("duet-pair", 14000, EXTRAS, 13958.4),
    row("dhcpd-pair", 310, undefined, 309.9),
  ]);
  assert.equal(t.vsKea, 1);
  assert.equal(t.met, true);
  assert.ok(t.vsKeaMedian !== null && t.vsKeaMedian < 1);
  // One rate step lower than Kea is below, whatever the medians say.
  const below = pairTargets([
    row("kea", 14000, undefined, 13000),
    row("duet-pair", 12000, EXTRAS, 13500),
    row("dhcpd-pair", 310),
  ]);
  assert.equal(below.met, false);
  assert.ok(below.vsKeaMedian !== null && below.vsKeaMedian > 1);
  // A server that confirmed no rate has no figure.
  const none = row("kea", 0);
  assert.equal(pairTargets([none, row("duet-pair", 4500), row("dhcpd-pair", 100)]).met, null);
});

Deno.test("formatPairTable() adds the ACK split, both lease counts, BNDACK times and backlog", () => {
  const table = formatPairTable([row("kea", 4000), row("duet-pair", 4500, EXTRAS)]);
  assert.match(
    table,
    /^\| duet-pair \| s \| 4500 \| \*\*4500\.0\*\* \| 3\/3 \| 0\.50 \/ 0\.25 \| 200 \| 40\.0 \| 6 \/ 4 \| 10 \/ 10 \/ 10 \| 3\.25 \/ 20\.50 \| 12 \| 0\.15 \|$/m,
  );
  assert.match(
    table,
    /^\| kea \| s \| 4000 \| \*\*4000\.0\*\* .*\| – \| 10 \/ 10 \| – \| – \| – \|$/m,
  );
  assert.match(
    table,
    /duet pair \/ Kea: confirmed rate 4500 \/ 4000 = × 1\.13 .* not all measured/,
  );
});
