import assert from "node:assert/strict";
import { escapeLabelValue, formatValue, renderMetrics } from "../../lib/control/metrics.ts";
import { buildStatus, renderStatus } from "../../lib/control/status.ts";
import { ServerState } from "../../lib/wire/failover.ts";
import { standaloneParts } from "./fixtures.ts";
import { type Family, parseExposition, sampleValue } from "./prometheus.ts";
import { buildRequest, RelayClient } from "../../lib/cli/relay_client.ts";
import { DhcpType, getMessageType, getServerId } from "../../lib/wire/dhcp.ts";
import { DuetProcess, freeUdpPort } from "../e2e/process.ts";

function freeTcpPort(): number {
  const l = Deno.listen({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

type ParsedFamily = Family;

function sample(f: ParsedFamily | undefined, labels: Record<string, string> = {}): number {
  const s = f?.samples.find((x) => JSON.stringify(x.labels) === JSON.stringify(labels));
  assert.ok(s, `no sample with ${JSON.stringify(labels)}`);
  return s.value;
}

Deno.test("renderMetrics() writes HELP and TYPE before every family and parses back", () => {
  const families = parseExposition(renderMetrics(buildStatus(standaloneParts())));
  const expected: [string, string][] = [
    ["duet_uptime_seconds", "gauge"],
    ["duet_packets_received_total", "counter"],
    ["duet_packets_sent_total", "counter"],
    ["duet_packets_dropped_total", "counter"],
    ["duet_packets_withheld_total", "counter"],
    ["duet_packets_malformed_total", "counter"],
    ["duet_packets_send_failed_total", "counter"],
    ["duet_offers_recycled_total", "counter"],
    ["duet_leases", "gauge"],
    ["duet_pool_addresses", "gauge"],
    ["duet_pool_free_addresses", "gauge"],
    ["duet_pool_range_addresses", "gauge"],
    ["duet_pool_range_free_addresses", "gauge"],
    ["duet_db_writable", "gauge"],
    ["duet_db_commits_total", "counter"],
    ["duet_db_commit_failures_total", "counter"],
    ["duet_db_leases_committed_total", "counter"],
    ["duet_db_commit_latency_ms", "histogram"],
    ["duet_reloads_total", "counter"],
    ["duet_config_last_reload_successful", "gauge"],
    ["duet_config_last_reload_timestamp_seconds", "gauge"],
    ["duet_clock_steps_total", "counter"],
  ];
  assert.deepEqual(
    [...families].map(([name, f]) => [name, f.type]),
    expected,
    "no failover or hook families without them",
  );
  for (const [name, f] of families) assert.ok(f.help.length > 0, `${name} has help text`);
  assert.equal(sample(families.get("duet_uptime_seconds")), 3723);
  assert.equal(sample(families.get("duet_packets_received_total"), { type: "DHCPDISCOVER" }), 45);
  assert.equal(sample(families.get("duet_packets_sent_total"), { type: "DHCPNAK" }), 1);
  assert.equal(
    sample(families.get("duet_packets_dropped_total"), { reason: "pool-exhausted" }),
    4,
  );
  assert.equal(sample(families.get("duet_packets_malformed_total")), 2);
  assert.equal(sample(families.get("duet_leases"), { state: "active" }), 50);
  assert.equal(sample(families.get("duet_leases"), { state: "backup" }), 0);
  assert.equal(families.get("duet_leases")?.samples.length, 7, "one sample per state");
  assert.equal(sample(families.get("duet_pool_addresses"), { subnet: "192.0.2.0/24" }), 200);
  assert.equal(sample(families.get("duet_pool_free_addresses"), { subnet: "192.0.2.0/24" }), 150);
  assert.equal(sample(families.get("duet_db_commits_total")), 7);
  assert.equal(sample(families.get("duet_db_commit_failures_total")), 1);
  const pool = { subnet: "192.0.2.0/24", pool: "192.0.2.10 - 192.0.2.209" };
  assert.equal(sample(families.get("duet_pool_range_addresses"), pool), 200);
  assert.equal(sample(families.get("duet_pool_range_free_addresses"), pool), 150);
  assert.equal(sample(families.get("duet_reloads_total"), { outcome: "refused" }), 1);
  assert.equal(sample(families.get("duet_reloads_total"), { outcome: "applied" }), 2);
  assert.equal(sample(families.get("duet_config_last_reload_successful")), 0);
  assert.equal(sample(families.get("duet_config_last_reload_timestamp_seconds")), 1_700_003_000);
  assert.equal(sample(families.get("duet_db_writable")), 1);
  assert.equal(sample(families.get("duet_clock_steps_total")), 0);
});

Deno.test("renderMetrics() reports the hook's events, drops, runs and queue", () => {
  const parts = standaloneParts();
  parts.hooks = {
    command: ["/usr/local/bin/lease-hook"],
    capacity: 100,
    queued: 4,
    running: 1,
    events: { new: 10, renew: 5, release: 2, expire: 1, decline: 0 },
    dropped: 3,
    started: 14,
    succeeded: 11,
    failed: 1,
    timedOut: 1,
    lastError: "exit code 2",
  };
  const families = parseExposition(renderMetrics(buildStatus(parts)));
  assert.equal(sample(families.get("duet_hook_events_total"), { event: "renew" }), 5);
  assert.equal(sample(families.get("duet_hook_events_total"), { event: "decline" }), 0);
  assert.equal(sample(families.get("duet_hook_dropped_total")), 3);
  assert.equal(sample(families.get("duet_hook_runs_total"), { result: "ok" }), 11);
  assert.equal(sample(families.get("duet_hook_runs_total"), { result: "timeout" }), 1);
  assert.equal(sample(families.get("duet_hook_queue_length")), 4);
  assert.equal(sample(families.get("duet_hook_running")), 1);
});

Deno.test("renderMetrics() and renderStatus() report a database that refuses writes and clock steps", () => {
  const parts = standaloneParts();
  parts.storeFailing = true;
  parts.storeHealth = {
    writable: false,
    failingSince: 1_700_003_000,
    lastError: "Cannot commit 3 lease writes: database or disk is full",
  };
  parts.shell.withheld = { DHCPOFFER: 4, DHCPACK: 2 };
  parts.clock = { steps: 2, lastStepSeconds: -86_400 };
  const snapshot = buildStatus(parts);
  assert.equal(snapshot.db.writable, false);
  assert.equal(snapshot.db.failingSince, "2023-11-14T23:03:20Z");
  assert.match(snapshot.db.lastError ?? "", /disk is full/);
  const families = parseExposition(renderMetrics(snapshot));
  assert.equal(sample(families.get("duet_db_writable")), 0);
  assert.equal(sample(families.get("duet_packets_withheld_total"), { type: "DHCPOFFER" }), 4);
  assert.equal(sample(families.get("duet_packets_withheld_total"), { type: "DHCPACK" }), 2);
  assert.equal(sample(families.get("duet_clock_steps_total")), 2);
  const text = renderStatus(snapshot);
  assert.match(text, /^withheld {2}DHCPACK 2, DHCPOFFER 4$/m);
  assert.match(
    text,
    /DATABASE REFUSING WRITES\ndb error {2}Cannot commit 3 lease writes: database or disk is full \(since 2023-11-14T23:03:20Z\)$/m,
  );
  assert.match(text, /^clock {5}2 step\(s\) applied, last -86400 s$/m);
});

Deno.test("renderMetrics() makes the per-bucket latency counts cumulative", () => {
  const families = parseExposition(renderMetrics(buildStatus(standaloneParts())));
  const h = families.get("duet_db_commit_latency_ms");
  // Per bucket 3, 2, 0, 1, 1 (fixtures.ts) -> cumulative 3, 5, 5, 6, 7.
  assert.deepEqual(
    h?.samples.filter((s) => s.name.endsWith("_bucket")).map((s) => [s.labels.le, s.value]),
    [["0.5", 3], ["1", 5], ["2", 5], ["5", 6], ["+Inf", 7]],
  );
  assert.equal(h?.samples.find((s) => s.name.endsWith("_sum"))?.value, 1234.5);
  assert.equal(h?.samples.find((s) => s.name.endsWith("_count"))?.value, 7);
});

Deno.test("renderMetrics() adds a +Inf bucket when the histogram has none", () => {
  const parts = standaloneParts();
  parts.shell.commitLatencyMs = new Map([[1, 2], [10, 3]]);
  const h = parseExposition(renderMetrics(buildStatus(parts))).get("duet_db_commit_latency_ms");
  assert.deepEqual(
    h?.samples.filter((s) => s.name.endsWith("_bucket")).map((s) => [s.labels.le, s.value]),
    [["1", 2], ["10", 5], ["+Inf", 5]],
  );
});

Deno.test("renderMetrics() escapes backslash, quote and line feed in label values", () => {
  const parts = standaloneParts();
  const nasty = 'a\\b"c\nd';
  parts.dhcp.dropped = { [nasty]: 3 };
  parts.utilisation = [{ subnet: "x}y{z=,", size: 1, free: 1 }];
  const text = renderMetrics(buildStatus(parts));
  assert.ok(text.includes(`{reason="a\\\\b\\"c\\nd"} 3\n`), "escaped on the wire");
  const families = parseExposition(text);
  assert.equal(sample(families.get("duet_packets_dropped_total"), { reason: nasty }), 3);
  assert.equal(sample(families.get("duet_pool_addresses"), { subnet: "x}y{z=," }), 1);
});

Deno.test("escapeLabelValue() and formatValue() follow format 0.0.4", async (t) => {
  await t.step("escapes", () => {
    assert.equal(escapeLabelValue("plain"), "plain");
    assert.equal(escapeLabelValue('"'), '\\"');
    assert.equal(escapeLabelValue("\\"), "\\\\");
    assert.equal(escapeLabelValue("\n"), "\\n");
  });
  await t.step("special floats", () => {
    assert.equal(formatValue(Infinity), "+Inf");
    assert.equal(formatValue(-Infinity), "-Inf");
    assert.equal(formatValue(NaN), "NaN");
    assert.equal(formatValue(0.25), "0.25");
  });
});

Deno.test("renderMetrics() reports the failover link, partner state, skew and contact", () => {
  const parts = standaloneParts();
  parts.failover = {
    role: "primary",
    relationship: "duet",
    peer: {
      link: "up",
      partner: {
        relationship: "duet",
        vendorClass: null,
        maxUnackedBndupd: null,
        receiveTimer: null,
        mclt: null,
        hba: null,
        serverState: ServerState.PARTNER_DOWN,
        serverFlags: 0,
        startTimeOfState: 0,
      },
      skew: -1.5,
      sinceContact: 0.5,
      connections: 1,
    },
    local: {
      state: "NORMAL",
      stateCode: 2,
      startTimeOfState: 1_700_000_100,
      sync: {
        queued: 5,
        inFlight: 3,
        window: 10,
        pass: "none",
        updreqallOwed: false,
        updatesSent: 40,
        updatesAccepted: 36,
        updatesRejected: 1,
      },
    },
    kernelFilter: { state: "dropping", reason: null, dropped: { DHCPDISCOVER: 7, DHCPREQUEST: 5 } },
  };
  const families = parseExposition(renderMetrics(buildStatus(parts)));
  assert.equal(sample(families.get("duet_failover_link_up")), 1);
  assert.equal(sample(families.get("duet_kernel_filter_active")), 1);
  assert.equal(
    sample(families.get("duet_kernel_filter_dropped_total"), { type: "DHCPDISCOVER" }),
    7,
  );
  assert.equal(
    sample(families.get("duet_kernel_filter_dropped_total"), { type: "DHCPREQUEST" }),
    5,
  );
  const states = families.get("duet_failover_partner_state")?.samples ?? [];
  assert.deepEqual(states.filter((s) => s.value === 1).map((s) => s.labels.state), [
    "PARTNER-DOWN",
  ]);
  assert.ok(states.some((s) => s.labels.state === "NORMAL" && s.value === 0));
  assert.equal(sample(families.get("duet_failover_clock_skew_seconds")), -1.5);
  assert.equal(sample(families.get("duet_failover_seconds_since_contact")), 0.5);
  const own = families.get("duet_failover_state")?.samples ?? [];
  assert.deepEqual(own.filter((s) => s.value === 1).map((s) => s.labels.state), ["NORMAL"]);
  assert.equal(sample(families.get("duet_failover_updates_queued")), 5);
  assert.equal(sample(families.get("duet_failover_bndupd_unacked")), 3);
  assert.equal(sample(families.get("duet_failover_updates_sent_total")), 40);
  assert.equal(
    sample(families.get("duet_failover_updates_acked_total"), { result: "accepted" }),
    36,
  );
  assert.equal(
    sample(families.get("duet_failover_updates_acked_total"), { result: "rejected" }),
    1,
  );
});

Deno.test("renderMetrics() with the link down has no skew or contact samples", () => {
  const parts = standaloneParts();
  parts.failover = { role: "secondary", relationship: "duet", peer: null };
  const families = parseExposition(renderMetrics(buildStatus(parts)));
  assert.equal(sample(families.get("duet_failover_link_up")), 0);
  assert.ok(families.get("duet_failover_partner_state")?.samples.every((s) => s.value === 0));
  assert.equal(families.get("duet_failover_clock_skew_seconds")?.samples.length, 0);
  assert.equal(families.get("duet_failover_seconds_since_contact")?.samples.length, 0);
  assert.equal(families.has("duet_kernel_filter_active"), false, "no endpoint, no filter");
});

Deno.test("renderMetrics() reports the BNDUPD backlog and the BNDACK round-trip quantiles", () => {
  const parts = standaloneParts();
  parts.failover = {
    role: "secondary",
    relationship: "duet",
    peer: {
      link: "up",
      partner: null,
      skew: 0,
      sinceContact: 0,
      connections: 1,
      bndupdAck: {
        count: 3,
        pending: 0,
        samples: 3,
        meanMs: 2,
        p50Ms: 1.5,
        p99Ms: 4.25,
        maxMs: 4.25,
      },
    },
    local: {
      state: "NORMAL",
      stateCode: ServerState.NORMAL,
      startTimeOfState: 0,
      sync: {
        queued: 7,
        inFlight: 3,
        window: 10,
        pass: "none",
        updreqallOwed: false,
        updatesSent: 1,
        updatesAccepted: 1,
        updatesRejected: 0,
      },
    },
  };
  const families = parseExposition(renderMetrics(buildStatus(parts)));
  assert.equal(sample(families.get("duet_failover_updates_queued")), 7);
  assert.equal(sample(families.get("duet_failover_bndupd_unacked")), 3);
  const q = families.get("duet_failover_bndack_latency_ms")?.samples ?? [];
  assert.deepEqual(q.map((s) => [s.labels.quantile, s.value]), [["0.5", 1.5], ["0.99", 4.25]]);
});

Deno.test("parseExposition() rejects what format 0.0.4 does not allow", async (t) => {
  const ok = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n";
  parseExposition(ok);
  const hist = (buckets: string) =>
    `# HELP h H.\n# TYPE h histogram\n${buckets}h_sum 3\nh_count 2\n`;
  parseExposition(hist('h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'));
  const cases: [string, string][] = [
    ["no final line feed", ok.slice(0, -1)],
    ["a sample before its TYPE", "a_total 1\n" + ok],
    ["TYPE without HELP", "# TYPE a_total counter\na_total 1\n"],
    ["HELP without TYPE", "# HELP a_total A.\na_total 1\n"],
    ["a family announced twice", ok + ok],
    ["a sample of another family", ok + "b_total 2\n"],
    ["a bad metric name", "# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n"],
    ["a bad label name", ok.replace("a_total 1", 'a_total{1x="v"} 1')],
    ["a repeated label", ok.replace("a_total 1", 'a_total{x="1",x="2"} 1')],
    ["an unquoted label value", ok.replace("a_total 1", "a_total{x=v} 1")],
    ["a bad escape", ok.replace("a_total 1", 'a_total{x="a\\tb"} 1')],
    ["an unterminated label value", ok.replace("a_total 1", 'a_total{x="v} 1')],
    ["a bad value", ok.replace("a_total 1", "a_total one")],
    ["two spaces before the value", ok.replace("a_total 1", "a_total  1")],
    ["a negative counter", ok.replace("a_total 1", "a_total -1")],
    ["a repeated sample", ok + "a_total 2\n"],
    ["an empty line", ok + "\n"],
    ["a stray comment", ok + "# just a comment\n"],
    ["an unknown type", "# HELP a A.\n# TYPE a thing\na 1\n"],
    ["buckets not cumulative", hist('h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n')],
    ["no +Inf bucket", hist('h_bucket{le="1"} 1\nh_bucket{le="2"} 2\n')],
    ["+Inf bucket differs from _count", hist('h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 3\n')],
    ["le not increasing", hist('h_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n')],
    ["no _count", '# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 3\n'],
  ];
  for (const [name, text] of cases) {
    await t.step(name, () => assert.throws(() => parseExposition(text), assert.AssertionError));
  }
});

/** GET /metrics from the TCP metrics address. */
async function scrape(port: number): Promise<Map<string, Family>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, {
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parseExposition(await res.text());
}

Deno.test("a running duet serve's /metrics parses strictly and counts leases as they are granted", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-metrics-" });
  const port = freeUdpPort();
  const metricsPort = freeTcpPort();
  const configPath = `${dir}/duet.yaml`;
  await Deno.writeTextFile(
    configPath,
    `database: ${dir}/leases.db
listen:
  - address: 127.0.0.1
    port: ${port}
subnets:
  - subnet: 198.18.22.0/24
    relays: [127.0.0.1]
    pools:
      - range: 198.18.22.10 - 198.18.22.19
      - range: 198.18.22.100 - 198.18.22.199
control:
  metrics: 127.0.0.1:${metricsPort}
`,
  );
  const server = new DuetProcess(["--config", configPath]);
  const client = new RelayClient("127.0.0.1", port);
  try {
    await server.waitFor("duet serving");
    const before = await scrape(metricsPort);
    const small = { subnet: "198.18.22.0/24", pool: "198.18.22.10 - 198.18.22.19" };
    assert.equal(sampleValue(before, "duet_pool_range_addresses", small), 10);
    assert.equal(sampleValue(before, "duet_pool_range_free_addresses", small), 10);
    assert.equal(sampleValue(before, "duet_leases", { state: "active" }), 0);
    const commits0 = sampleValue(before, "duet_db_commits_total");

    const GRANTED = 4;
    for (let i = 1; i <= GRANTED; i++) {
      const hw = new Uint8Array([2, 0, 0, 0, 0x22, i]);
      const offer = await client.exchange(
        buildRequest(DhcpType.DHCPDISCOVER, hw, { xid: 0x2200 + i, giaddr: client.giaddr }),
      );
      assert.ok(offer, `client ${i} got an OFFER`);
      const ack = await client.exchange(buildRequest(DhcpType.DHCPREQUEST, hw, {
        xid: 0x2300 + i,
        giaddr: client.giaddr,
        requested: offer.yiaddr,
        serverId: getServerId(offer) as number,
      }));
      assert.equal(ack && getMessageType(ack), DhcpType.DHCPACK, `client ${i} got an ACK`);
    }

    const after = await scrape(metricsPort);
    const received = (type: string) => sampleValue(after, "duet_packets_received_total", { type });
    assert.equal(received("DHCPDISCOVER"), GRANTED);
    assert.equal(received("DHCPREQUEST"), GRANTED);
    assert.equal(sampleValue(after, "duet_packets_sent_total", { type: "DHCPACK" }), GRANTED);
    assert.equal(sampleValue(after, "duet_leases", { state: "active" }), GRANTED);
    // The allocator hands out the lowest fresh addresses first: the small pool.
    assert.equal(sampleValue(after, "duet_pool_range_free_addresses", small), 10 - GRANTED);
    assert.equal(
      sampleValue(after, "duet_pool_free_addresses", { subnet: "198.18.22.0/24" }),
      110 - GRANTED,
    );
    assert.ok(sampleValue(after, "duet_db_commits_total") > commits0);
    assert.equal(sampleValue(after, "duet_db_leases_committed_total"), GRANTED);
    const count = sampleValue(
      after,
      "duet_db_commit_latency_ms",
      {},
      "duet_db_commit_latency_ms_count",
    );
    assert.equal(count, sampleValue(after, "duet_db_commits_total"));
    assert.ok(sampleValue(after, "duet_uptime_seconds") >= 0);
  } finally {
    await client.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
