import assert from "node:assert/strict";
import { buildStatus, formatDuration, renderStatus } from "../../lib/control/status.ts";
import { ServerState } from "../../lib/wire/failover.ts";
import { standaloneParts } from "./fixtures.ts";

Deno.test("buildStatus() makes a plain JSON snapshot from the parts", () => {
  const s = buildStatus(standaloneParts());
  // A round trip through JSON changes nothing: no Map, Infinity or undefined inside.
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
  assert.equal(s.version, "0.1.0");
  assert.equal(s.pid, 4242);
  assert.equal(s.uptimeSeconds, 3723);
  assert.equal(s.startedAt, "2023-11-14T22:13:20Z");
  assert.deepEqual(s.listen, ["deno 192.0.2.1:67"]);
  assert.deepEqual(s.subnets[0], { subnet: "192.0.2.0/24", size: 200, free: 150 });
  assert.deepEqual(Object.keys(s.dhcp.received), ["DHCPDISCOVER", "DHCPRELEASE", "DHCPREQUEST"]);
  assert.deepEqual(s.dhcp.dropped, { "not-ours": 2, "pool-exhausted": 4 });
  assert.equal(s.dhcp.malformed, 2);
  assert.equal(s.dhcp.sendFailed, 1);
  assert.deepEqual(s.db.commitLatencyMs, {
    buckets: [
      { le: 0.5, count: 3 },
      { le: 1, count: 2 },
      { le: 2, count: 0 },
      { le: 5, count: 1 },
      { le: "+Inf", count: 1 },
    ],
    sum: 1234.5,
    count: 7,
  });
  assert.equal(s.db.commits, 7);
  assert.equal(s.failover, null);
});

Deno.test("buildStatus() fills in every lease state", () => {
  const parts = standaloneParts();
  parts.leases = { active: 2 } as typeof parts.leases;
  const s = buildStatus(parts);
  assert.deepEqual(s.leases, {
    free: 0,
    active: 2,
    expired: 0,
    released: 0,
    abandoned: 0,
    reset: 0,
    backup: 0,
  });
});

Deno.test("buildStatus() reports the failover link and the partner by state name", () => {
  const parts = standaloneParts();
  parts.failover = {
    role: "primary",
    relationship: "duet",
    peer: {
      link: "up",
      partner: {
        relationship: "duet",
        vendorClass: "duet-0.1.0",
        maxUnackedBndupd: 10,
        receiveTimer: 30,
        mclt: null,
        hba: new Uint8Array(32),
        serverState: ServerState.COMMUNICATIONS_INTERRUPTED,
        serverFlags: 0,
        startTimeOfState: 1_700_000_100,
      },
      skew: -0.25,
      sinceContact: 1.5,
      connections: 1,
    },
  };
  const s = buildStatus(parts);
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s, "no Uint8Array leaks into the snapshot");
  assert.deepEqual(s.failover, {
    role: "primary",
    relationship: "duet",
    link: "up",
    connections: 1,
    partner: {
      relationship: "duet",
      vendorClass: "duet-0.1.0",
      state: "COMMUNICATIONS-INTERRUPTED",
      stateCode: 3,
      flags: 0,
      startTimeOfState: 1_700_000_100,
      mclt: null,
      maxUnackedBndupd: 10,
      receiveTimer: 30,
    },
    clockSkewSeconds: -0.25,
    sinceContactSeconds: 1.5,
  });
});

Deno.test("buildStatus() says the link is down when the peer service is missing", () => {
  const parts = standaloneParts();
  parts.failover = { role: "secondary", relationship: "pair", peer: null };
  const f = buildStatus(parts).failover;
  assert.equal(f?.link, "down");
  assert.equal(f?.partner, null);
  assert.equal(f?.clockSkewSeconds, null);
});

Deno.test("buildStatus() keeps the partner's last known state once the link is down", () => {
  // draft-12 §9.2, §9.8.4: the partner said SHUTDOWN and closed the link; the machine still
  // knows it, and the top-level partner-state says so (it was null before this fix).
  const parts = standaloneParts();
  parts.failover = {
    role: "primary",
    relationship: "pair",
    peer: null,
    local: {
      state: "PARTNER-DOWN",
      stateCode: ServerState.PARTNER_DOWN,
      startTimeOfState: 1_700_000_000,
      partnerState: "SHUTDOWN",
    },
  };
  const s = buildStatus(parts);
  assert.equal(s.state, "partner-down");
  assert.equal(s["partner-state"], "shutdown");
  assert.equal(s.failover?.partner, null, "the link itself has no partner");
});

Deno.test("buildStatus() reports the binding-update backlog and the BNDACK round trips", () => {
  const parts = standaloneParts();
  const bndupdAck = {
    count: 40,
    pending: 2,
    samples: 40,
    meanMs: 3.1,
    p50Ms: 2.5,
    p99Ms: 9,
    maxMs: 12,
  };
  parts.failover = {
    role: "primary",
    relationship: "pair",
    peer: { link: "up", partner: null, skew: 0, sinceContact: 0, connections: 1, bndupdAck },
    local: {
      state: "NORMAL",
      stateCode: ServerState.NORMAL,
      startTimeOfState: 1_700_000_000,
      sync: {
        queued: 5,
        inFlight: 2,
        window: 10,
        pass: "none",
        updreqallOwed: false,
        updatesSent: 400,
        updatesAccepted: 390,
        updatesRejected: 1,
      },
    },
  };
  assert.deepEqual(buildStatus(parts).failover?.bndupd, {
    queued: 5,
    inFlight: 2,
    window: 10,
    sent: 400,
    accepted: 390,
    rejected: 1,
    ackLatency: bndupdAck,
  });
});

Deno.test("formatDuration() drops leading zero units", async (t) => {
  const cases: [number, string][] = [
    [0, "0s"],
    [59.9, "59s"],
    [61, "1m 01s"],
    [3723, "1h 02m 03s"],
    [90061, "1d 01h 01m 01s"],
  ];
  for (const [s, want] of cases) {
    await t.step(`${s} s`, () => assert.equal(formatDuration(s), want));
  }
});

Deno.test("renderStatus() prints version, uptime, utilisation, leases and failover", () => {
  const text = renderStatus(buildStatus(standaloneParts()));
  const lines = text.split("\n");
  assert.equal(lines[0], "duet      0.1.0, pid 4242, up 1h 02m 03s");
  assert.ok(lines.includes("database  /var/lib/duet/leases.db"));
  assert.ok(lines.includes("subnet    192.0.2.0/24     50/200 used (25.0%), 150 free"), text);
  assert.ok(lines.includes("subnet    198.51.100.0/25  0/0 used (0.0%), 0 free"), text);
  assert.ok(lines.includes("leases    active 50, expired 3, released 1"), text);
  assert.ok(lines.includes("received  DHCPDISCOVER 45, DHCPRELEASE 1, DHCPREQUEST 40"), text);
  assert.ok(
    lines.includes("dropped   not-ours 2, pool-exhausted 4, malformed 2, send-failed 1"),
    text,
  );
  assert.ok(lines.includes("commits   7 (9 leases, mean 176.36 ms), 1 failed"), text);
  assert.ok(lines.includes("failover  off"), text);
  assert.ok(text.endsWith("\n"));
});

Deno.test("renderStatus() shows the partner's state, skew and last contact", () => {
  const parts = standaloneParts();
  parts.failover = {
    role: "secondary",
    relationship: "pair",
    peer: {
      link: "up",
      partner: {
        relationship: "pair",
        vendorClass: null,
        maxUnackedBndupd: null,
        receiveTimer: null,
        mclt: 3600,
        hba: null,
        serverState: ServerState.NORMAL,
        serverFlags: 0,
        startTimeOfState: 0,
      },
      skew: 0.04,
      sinceContact: 2,
      connections: 1,
    },
  };
  parts.storeFailing = true;
  const text = renderStatus(buildStatus(parts));
  assert.match(
    text,
    /^failover {2}secondary of "pair", link up, partner NORMAL \(clock skew 0\.0 s, last contact 2s ago\)$/m,
  );
  assert.match(text, /DATABASE REFUSING WRITES/);
});
