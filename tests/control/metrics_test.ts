import assert from "node:assert/strict";
import { escapeLabelValue, formatValue, renderMetrics } from "../../lib/control/metrics.ts";
import { buildStatus } from "../../lib/control/status.ts";
import { ServerState } from "../../lib/wire/failover.ts";
import { standaloneParts } from "./fixtures.ts";

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface ParsedFamily {
  help: string;
  type: string;
  samples: ParsedSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Reads a label set `{a="x",b="y"}` from `s` at `i` (just after `{`); format 0.0.4 escapes. */
function parseLabels(s: string, i: number): { labels: Record<string, string>; end: number } {
  const labels: Record<string, string> = {};
  while (s[i] !== "}") {
    const eq = s.indexOf("=", i);
    assert.ok(eq > i, `label name expected at ${i} in ${s}`);
    const name = s.slice(i, eq);
    assert.match(name, LABEL_NAME);
    assert.equal(s[eq + 1], '"', `quote expected in ${s}`);
    let v = "";
    let j = eq + 2;
    for (; s[j] !== '"'; j++) {
      assert.ok(j < s.length, `unterminated label value in ${s}`);
      if (s[j] === "\\") {
        const c = s[++j];
        assert.ok(c === "\\" || c === '"' || c === "n", `bad escape \\${c} in ${s}`);
        v += c === "n" ? "\n" : c;
      } else {
        assert.notEqual(s[j], "\n");
        v += s[j];
      }
    }
    assert.ok(!(name in labels), `label ${name} repeated in ${s}`);
    labels[name] = v;
    i = j + 1;
    if (s[i] === ",") i++;
  }
  return { labels, end: i + 1 };
}

function parseValue(text: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  assert.match(text, /^-?\d+(\.\d+)?(e[+-]?\d+)?$/, `bad value ${text}`);
  return Number(text);
}

/** Parses the text format strictly: HELP then TYPE before a family's samples, nothing else. */
function parseExposition(text: string): Map<string, ParsedFamily> {
  assert.ok(text.endsWith("\n"), "the text ends with a line feed");
  const families = new Map<string, ParsedFamily>();
  let current: string | undefined;
  let pendingHelp: { name: string; help: string } | undefined;
  const familyOf = (sample: string, type: string | undefined): string | undefined => {
    if (type === "histogram") {
      for (const suffix of ["_bucket", "_sum", "_count"]) {
        if (sample === current + suffix) return current;
      }
      return undefined;
    }
    return sample === current ? current : undefined;
  };
  for (const line of text.slice(0, -1).split("\n")) {
    const help = /^# HELP (\S+) (.*)$/.exec(line);
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (help) {
      assert.match(help[1] as string, NAME);
      assert.ok(!families.has(help[1] as string), `family ${help[1]} appears twice`);
      pendingHelp = { name: help[1] as string, help: help[2] as string };
      continue;
    }
    if (type) {
      assert.equal(pendingHelp?.name, type[1], `TYPE ${type[1]} right after its HELP`);
      current = type[1] as string;
      families.set(current, {
        help: pendingHelp?.help ?? "",
        type: type[2] as string,
        samples: [],
      });
      pendingHelp = undefined;
      continue;
    }
    assert.ok(!line.startsWith("#"), `unexpected comment: ${line}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{?)/.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    const name = m[1] as string;
    let labels: Record<string, string> = {};
    let rest = line.slice(name.length);
    if (m[2] === "{") {
      const parsed = parseLabels(line, name.length + 1);
      labels = parsed.labels;
      rest = line.slice(parsed.end);
    }
    assert.equal(rest[0], " ", `one space before the value: ${line}`);
    const family = familyOf(name, current === undefined ? undefined : families.get(current)?.type);
    assert.ok(family, `sample ${name} outside its family (current ${current})`);
    families.get(family)?.samples.push({ name, labels, value: parseValue(rest.slice(1)) });
  }
  return families;
}

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
    ["duet_packets_malformed_total", "counter"],
    ["duet_packets_send_failed_total", "counter"],
    ["duet_leases", "gauge"],
    ["duet_pool_addresses", "gauge"],
    ["duet_pool_free_addresses", "gauge"],
    ["duet_db_commits_total", "counter"],
    ["duet_db_commit_failures_total", "counter"],
    ["duet_db_leases_committed_total", "counter"],
    ["duet_db_commit_latency_ms", "histogram"],
  ];
  assert.deepEqual(
    [...families].map(([name, f]) => [name, f.type]),
    expected,
    "no failover families without failover",
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
  };
  const families = parseExposition(renderMetrics(buildStatus(parts)));
  assert.equal(sample(families.get("duet_failover_link_up")), 1);
  const states = families.get("duet_failover_partner_state")?.samples ?? [];
  assert.deepEqual(states.filter((s) => s.value === 1).map((s) => s.labels.state), [
    "PARTNER-DOWN",
  ]);
  assert.ok(states.some((s) => s.labels.state === "NORMAL" && s.value === 0));
  assert.equal(sample(families.get("duet_failover_clock_skew_seconds")), -1.5);
  assert.equal(sample(families.get("duet_failover_seconds_since_contact")), 0.5);
});

Deno.test("renderMetrics() with the link down has no skew or contact samples", () => {
  const parts = standaloneParts();
  parts.failover = { role: "secondary", relationship: "duet", peer: null };
  const families = parseExposition(renderMetrics(buildStatus(parts)));
  assert.equal(sample(families.get("duet_failover_link_up")), 0);
  assert.ok(families.get("duet_failover_partner_state")?.samples.every((s) => s.value === 0));
  assert.equal(families.get("duet_failover_clock_skew_seconds")?.samples.length, 0);
  assert.equal(families.get("duet_failover_seconds_since_contact")?.samples.length, 0);
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
  assert.equal(sample(families.get("duet_failover_bndupd_queued")), 7);
  assert.equal(sample(families.get("duet_failover_bndupd_in_flight")), 3);
  const q = families.get("duet_failover_bndack_latency_ms")?.samples ?? [];
  assert.deepEqual(q.map((s) => [s.labels.quantile, s.value]), [["0.5", 1.5], ["0.99", 4.25]]);
});
