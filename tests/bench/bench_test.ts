/** Unit tests of the benchmark's pure parts: perfdhcp parsing, verdicts, the sweep, lease counts. */
import assert from "node:assert/strict";
import { parseSettings } from "../../bench/bench.ts";
import { type RunResult } from "../../bench/measure.ts";
import { parsePerfdhcp, type PerfdhcpStats } from "../../bench/perfdhcp.ts";
import {
  cpuAtCommonRate,
  duetKeaRatios,
  formatTable,
  type ServerSummary,
} from "../../bench/report.ts";
import {
  countDhcpdLeases,
  countDnsmasqLeases,
  countDuetLeases,
  countKeaLeases,
  duetConfig,
} from "../../bench/servers.ts";
import { judgeRun, medianRun, sweep, type SweepRun, type Verdict } from "../../bench/sweep.ts";
import { topologyNames } from "../../bench/topology.ts";

// perfdhcp 2.2.0 output of a 2 s run at 62/s against dhcpd, trimmed to the parsed sections.
const PERFDHCP_OUTPUT = `Running: perfdhcp -4 -l pc0 -r 62 -p 2 -R 4000000 -d 2 -W 2000000 -g single
***Rate statistics***
Rate: 30.7492 4-way exchanges/second, expected rate: 62

***Malformed Packets***
Malformed packets: 0
***Statistics for: DISCOVER-OFFER***
sent packets: 123
received packets: 121
drops: 2
drops ratio: 1.6 %
orphans: 0

min delay: 1013.344 ms
avg delay: 1256.509 ms
max delay: 1430.792 ms
collected packets: 0

***Statistics for: REQUEST-ACK***
sent packets: 121
received packets: 120
drops: 1
drops ratio: 0.826 %

min delay: 6.627 ms
avg delay: 193.321 ms
max delay: 437.299 ms
`;

function stats(sent: number, acks: number): PerfdhcpStats {
  return {
    discoverOffer: { sent, received: sent, drops: 0, avgDelayMs: 1 },
    requestAck: { sent, received: acks, drops: sent - acks, avgDelayMs: 1 },
  };
}

Deno.test("parsePerfdhcp() reads both exchanges", () => {
  assert.deepEqual(parsePerfdhcp(PERFDHCP_OUTPUT), {
    discoverOffer: { sent: 123, received: 121, drops: 2, avgDelayMs: 1256.509 },
    requestAck: { sent: 121, received: 120, drops: 1, avgDelayMs: 193.321 },
  });
});

Deno.test("parsePerfdhcp() reads missing sections as zero", () => {
  const empty = { sent: 0, received: 0, drops: 0, avgDelayMs: null };
  assert.deepEqual(parsePerfdhcp("perfdhcp: cannot open socket\n"), {
    discoverOffer: empty,
    requestAck: empty,
  });
});

Deno.test("judgeRun() applies the 99 % and 97 % rules", async (t) => {
  const base = { rate: 1000, durationSeconds: 10, clientCpuSeconds: 5, wallSeconds: 12.3 };
  const cases: [string, PerfdhcpStats, Partial<typeof base>, Verdict][] = [
    ["every ACK back", stats(9999, 9999), {}, "PASS"],
    ["exactly 99 % ACKs", stats(10000, 9900), {}, "PASS"],
    ["just under 99 % ACKs", stats(10000, 9899), {}, "FAIL"],
    ["perfdhcp sent under 97 % of RATE x DUR", stats(9600, 9600), {}, "FAIL_CLIENT"],
    ["perfdhcp on 90 % of its core while ACKs are lost", stats(10000, 9000), {
      clientCpuSeconds: 11.1,
    }, "FAIL_CLIENT"],
    ["nothing sent", stats(0, 0), {}, "FAIL_CLIENT"],
  ];
  for (const [name, s, over, want] of cases) {
    await t.step(name, () => assert.equal(judgeRun({ ...base, ...over, stats: s }), want));
  }
});

type FakeRun = SweepRun & { phase: string; error?: string };

/** A fake server that passes every rate up to `limit`. */
function fakeServer(limit: number, overrides: Record<string, Verdict[]> = {}) {
  const calls: string[] = [];
  const measure = (rate: number, phase: string): Promise<FakeRun> => {
    calls.push(`${phase}@${rate}`);
    const queued = overrides[rate];
    const verdict = queued && queued.length > 0 ? queued.shift()! : rate <= limit ? "PASS" : "FAIL";
    return Promise.resolve({ rate, phase, verdict, exchangesPerSecond: rate - calls.length });
  };
  return { calls, measure };
}

Deno.test("sweep() steps up, bisects once and repeats three times", async () => {
  const f = fakeServer(5000);
  const r = await sweep({
    steps: [500, 1000, 2000, 4000, 8000],
    minRate: 50,
    bisections: 1,
    repeats: 3,
  }, f.measure);
  assert.deepEqual(f.calls, [
    "step@500",
    "step@1000",
    "step@2000",
    "step@4000",
    "step@8000",
    "bisect@6000",
    "repeat1@4000",
    "repeat2@4000",
    "repeat3@4000",
  ]);
  assert.equal(r.bestRate, 4000);
  assert.equal(r.repeatsPassed, 3);
  assert.equal(r.reported?.phase, "repeat2");
});

Deno.test("sweep() halves down when the first step fails", async () => {
  const f = fakeServer(70);
  const r = await sweep({ steps: [500, 1000], minRate: 50, bisections: 1, repeats: 0 }, f.measure);
  assert.deepEqual(f.calls, [
    "step@500",
    "stepdown@250",
    "stepdown@125",
    "stepdown@62",
    "bisect@90",
  ]);
  assert.equal(r.bestRate, 62);
  assert.equal(r.reported?.phase, "stepdown");
});

Deno.test("sweep() falls back to a lower rate when most repeats fail", async () => {
  const f = fakeServer(2000, { 2000: ["PASS", "FAIL", "FAIL", "PASS"] });
  const r = await sweep(
    { steps: [1000, 2000, 4000], minRate: 50, bisections: 0, repeats: 3 },
    f.measure,
  );
  assert.equal(r.bestRate, 1000);
  assert.equal(r.repeatsPassed, 3);
  assert.deepEqual(f.calls.slice(3), [
    "repeat1@2000",
    "repeat2@2000",
    "repeat3@2000",
    "repeat1@1000",
    "repeat2@1000",
    "repeat3@1000",
  ]);
});

Deno.test("sweep() halves down again when most repeats fail at the lowest rate that passed", async () => {
  // The ISC pair of 2026-12-03: 500 fails, 250 passes once, then fails two repeats of three.
  const f = fakeServer(125, { 250: ["PASS", "FAIL", "PASS", "FAIL", "FAIL"] });
  const r = await sweep(
    { steps: [500, 1000], minRate: 50, bisections: 1, repeats: 3 },
    f.measure,
  );
  assert.deepEqual(f.calls, [
    "step@500",
    "stepdown@250",
    "bisect@370",
    "repeat1@250",
    "repeat2@250",
    "repeat3@250",
    "stepdown@125",
    "bisect@185",
    "repeat1@125",
    "repeat2@125",
    "repeat3@125",
  ]);
  assert.equal(r.bestRate, 125);
  assert.equal(r.repeatsPassed, 3);
});

Deno.test("sweep() bisects below a rate whose repeats fail, then confirms the best of that", async () => {
  // Kea on 2026-12-03: every step up to 16,000/s passed once, two repeats of three at 16,000
  // failed; the old sweep confirmed 8,000 with nothing tried in between.
  const f = fakeServer(14000, { 16000: ["PASS", "FAIL", "FAIL", "PASS"] });
  const r = await sweep(
    { steps: [4000, 8000, 16000], minRate: 50, bisections: 2, repeats: 3 },
    f.measure,
  );
  assert.deepEqual(f.calls, [
    "step@4000",
    "step@8000",
    "step@16000",
    "repeat1@16000",
    "repeat2@16000",
    "repeat3@16000",
    "bisect@12000",
    "bisect@14000",
    "repeat1@14000",
    "repeat2@14000",
    "repeat3@14000",
  ]);
  assert.equal(r.bestRate, 14000);
  assert.equal(r.repeatsPassed, 3);
});

Deno.test("sweep() gives up below minRate when no rate confirms", async () => {
  const f = fakeServer(0, { 500: ["PASS", "FAIL", "FAIL", "FAIL"] });
  const r = await sweep({ steps: [500, 1000], minRate: 100, bisections: 0, repeats: 3 }, f.measure);
  assert.deepEqual(f.calls, [
    "step@500",
    "step@1000",
    "repeat1@500",
    "repeat2@500",
    "repeat3@500",
    "stepdown@250",
    "stepdown@125",
  ]);
  assert.equal(r.bestRate, 0);
  assert.equal(r.reported, null);
});

Deno.test("sweep() stops at a server that does not start", async () => {
  const measure = (rate: number, phase: string): Promise<FakeRun> =>
    Promise.resolve({ rate, phase, verdict: "ERROR", exchangesPerSecond: 0, error: "boom\nmore" });
  const r = await sweep({ steps: [500, 1000], minRate: 50, bisections: 1, repeats: 3 }, measure);
  assert.equal(r.bestRate, 0);
  assert.equal(r.runs.length, 1);
  assert.equal(r.error, "boom\nmore");
});

Deno.test("medianRun() takes the middle by exchanges per second", () => {
  const runs = [3, 1, 2].map((x) => ({ rate: 1, verdict: "PASS" as const, exchangesPerSecond: x }));
  assert.equal(medianRun(runs)?.exchangesPerSecond, 2);
  assert.equal(medianRun([]), null);
});

Deno.test("lease counters count distinct active leases", async (t) => {
  await t.step("duet leases --json", () => {
    const rows = [
      { address: "198.18.16.0", state: "active" },
      { address: "198.18.16.1", state: "offered" },
      { address: "198.18.16.2", state: "ACTIVE" },
    ];
    assert.equal(countDuetLeases(JSON.stringify(rows)), 2);
    assert.equal(countDuetLeases(JSON.stringify({ leases: rows })), 2);
  });
  await t.step("Kea memfile CSV (valid_lifetime > 0, repeats of one address)", () => {
    const csv = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id\n" +
      "198.18.16.0,02:00:00:00:00:01,,3600,1,1\n" +
      "198.18.16.0,02:00:00:00:00:01,,3600,2,1\n" +
      "198.18.16.1,02:00:00:00:00:02,,0,2,1\n";
    assert.equal(countKeaLeases(csv), 1);
  });
  await t.step("dhcpd leases file (last binding state wins)", () => {
    const text = "lease 198.18.16.0 {\n  binding state active;\n}\n" +
      "lease 198.18.16.1 {\n  binding state active;\n}\n" +
      "lease 198.18.16.1 {\n  binding state free;\n}\n";
    assert.equal(countDhcpdLeases(text), 1);
  });
  await t.step("dnsmasq lease file", () => {
    const text = "1795933318 02:00:00:00:00:01 198.18.16.0 * *\n" +
      "1795933318 02:00:00:00:00:02 198.18.16.1 * 01:02:00:00:00:00:02\n";
    assert.equal(countDnsmasqLeases(text), 2);
  });
});

Deno.test("duetConfig() listens on the server veth with the shared pool", () => {
  const yaml = duetConfig("/tmp/x", topologyNames(42));
  assert.match(yaml, /^database: \/tmp\/x\/leases\.db$/m);
  assert.match(yaml, /^ {2}- interface: db-s42$/m);
  assert.match(yaml, /range: 198\.18\.16\.0 - 198\.19\.255\.250$/m);
});

Deno.test("topologyNames() fit the 15-character interface limit", () => {
  const t = topologyNames(4_194_304);
  assert.ok(t.serverIf.length <= 15 && t.clientIf.length <= 15);
  assert.notEqual(t.serverNs, t.clientNs);
});

Deno.test("parseSettings() reads the knobs", async (t) => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  await t.step("defaults", () => {
    const s = parseSettings(env({}));
    assert.deepEqual(s.servers, ["duet", "kea", "dhcpd", "dnsmasq"]);
    assert.equal(s.durationSeconds, 10);
    assert.equal(s.plan.repeats, 3);
    assert.equal(s.clientRcvbuf, 4 * 1024 * 1024);
  });
  await t.step("BENCH_CLIENT_RCVBUF=0 leaves perfdhcp the host default", () => {
    assert.equal(parseSettings(env({ BENCH_CLIENT_RCVBUF: "0" })).clientRcvbuf, 0);
    assert.throws(() => parseSettings(env({ BENCH_CLIENT_RCVBUF: "-1" })), RangeError);
  });
  await t.step("quick", () => {
    const s = parseSettings(env({ BENCH_QUICK: "1", BENCH_SERVERS: "duet, kea" }));
    assert.deepEqual(s.servers, ["duet", "kea"]);
    assert.equal(s.durationSeconds, 2);
    assert.equal(s.plan.repeats, 0);
  });
  await t.step("an unknown server is refused", () => {
    assert.throws(() => parseSettings(env({ BENCH_SERVERS: "bind" })), RangeError);
  });
  await t.step("a bad duration is refused", () => {
    assert.throws(() => parseSettings(env({ BENCH_DUR: "ten" })), RangeError);
  });
});

function summary(server: string, perSecond: number, micros: number): ServerSummary {
  const run = {
    server,
    exchangesPerSecond: perSecond,
    cpuMicrosPerExchange: micros,
    discoverOffer: { sent: 10, received: 10, drops: 0, avgDelayMs: 0.5 },
    requestAck: { sent: 10, received: 10, drops: 0, avgDelayMs: 0.25 },
    peakRssMib: 40,
    leases: 10,
  } as RunResult;
  return {
    server,
    version: "",
    storage: "s",
    note: null,
    bestRate: 4000,
    repeatsPassed: 3,
    repeatsRun: 3,
    clientLimited: false,
    run,
  };
}

Deno.test("formatTable() prints one row per server and the duet/Kea ratios", () => {
  const rows = [summary("duet", 6000, 80), summary("kea", 4000, 160)];
  assert.deepEqual(duetKeaRatios(rows), { rate: 1.5, cpu: 0.5 });
  const table = formatTable(rows);
  assert.match(
    table,
    /^\| duet \| s \| 4000 \| \*\*6000\.0\*\* \| 3\/3 \| 0\.50 \/ 0\.25 \| 80 \| 40\.0 \| 10 \/ 10 \|$/m,
  );
  assert.match(table, /duet\/Kea: 4-way\/s × 1\.50, CPU per exchange × 0\.50/);
});

Deno.test("cpuAtCommonRate() compares at the highest rate both servers passed", () => {
  const run = (server: string, rate: number, verdict: Verdict, micros: number) =>
    ({
      server,
      rate,
      verdict,
      cpuMicrosPerExchange: micros,
      exchangesPerSecond: rate,
    }) as RunResult;
  const runs = [
    run("duet", 2000, "PASS", 300),
    run("duet", 4000, "FAIL", 150),
    run("kea", 2000, "PASS", 200),
    run("kea", 4000, "PASS", 160),
    run("dnsmasq", 4000, "PASS", 1),
  ];
  assert.deepEqual(cpuAtCommonRate(runs), { rate: 2000, duet: 300, kea: 200 });
  assert.equal(cpuAtCommonRate(runs.filter((r) => r.server !== "kea")), null);
});
