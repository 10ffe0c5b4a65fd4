import assert from "node:assert/strict";
import { buildStatus, formatDuration, renderStatus } from "../../lib/control/status.ts";
import { renderMetrics } from "../../lib/control/metrics.ts";
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
    transitions: [],
  });
});

Deno.test("buildStatus() reports binding updates and the last transitions with reasons", () => {
  const parts = standaloneParts();
  parts.failover = {
    role: "primary",
    relationship: "duet",
    peer: null,
    local: {
      state: "NORMAL",
      stateCode: 2,
      startTimeOfState: 1_700_000_200,
      sync: {
        queued: 2,
        inFlight: 1,
        window: 10,
        pass: "none",
        updreqallOwed: false,
        updatesSent: 9,
        updatesAccepted: 8,
        updatesRejected: 0,
      },
    },
    transitions: [
      { time: 1_700_000_100, from: "RECOVER", to: "RECOVER-DONE", reason: "UPDDONE received" },
      { time: 1_700_000_200, from: "RECOVER-DONE", to: "NORMAL", reason: "partner RECOVER-DONE" },
    ],
    kernelFilter: { state: "dropping", reason: null, dropped: { DHCPDISCOVER: 7, DHCPREQUEST: 5 } },
  };
  const s = buildStatus(parts);
  assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
  assert.deepEqual(s.failover?.updates, {
    queued: 2,
    unacked: 1,
    window: 10,
    sent: 9,
    accepted: 8,
    rejected: 0,
    ackLatency: null,
  });
  assert.deepEqual(s.failover?.transitions, [
    {
      time: "2023-11-14T22:15:00Z",
      from: "RECOVER",
      to: "RECOVER-DONE",
      reason: "UPDDONE received",
    },
    {
      time: "2023-11-14T22:16:40Z",
      from: "RECOVER-DONE",
      to: "NORMAL",
      reason: "partner RECOVER-DONE",
    },
  ]);
  assert.deepEqual(s.failover?.kernelFilter, {
    state: "dropping",
    reason: null,
    dropped: { DHCPDISCOVER: 7, DHCPREQUEST: 5 },
  });
  const lines = renderStatus(s).split("\n");
  assert.ok(lines.includes("updates   2 queued, 1 unacked; 9 sent, 8 accepted, 0 rejected"));
  assert.ok(lines.includes("kernel    drops the partner's requests; 12 dropped"), lines.join("\n"));
  const unavailable = buildStatus({
    ...parts,
    failover: {
      ...parts.failover,
      kernelFilter: {
        state: "unavailable",
        reason: "Cannot create the eBPF map: Operation not permitted",
        dropped: { DHCPDISCOVER: 0, DHCPREQUEST: 0 },
      },
    },
  });
  assert.ok(
    renderStatus(unavailable).includes(
      "kernel    unavailable: Cannot create the eBPF map: Operation not permitted; 0 dropped",
    ),
  );
  const at = lines.indexOf(
    "states    2023-11-14T22:15:00Z RECOVER -> RECOVER-DONE (UPDDONE received)",
  );
  assert.ok(at > 0, lines.join("\n"));
  assert.equal(
    lines[at + 1],
    "          2023-11-14T22:16:40Z RECOVER-DONE -> NORMAL (partner RECOVER-DONE)",
  );
});

Deno.test("buildStatus() and renderStatus() show pools, the hook and the last reload", () => {
  const parts = standaloneParts();
  parts.hooks = {
    command: ["/usr/local/bin/lease-hook", "--quiet"],
    capacity: 100,
    queued: 0,
    running: 1,
    events: { new: 3, renew: 1, release: 0, expire: 0, decline: 0 },
    dropped: 2,
    started: 3,
    succeeded: 1,
    failed: 1,
    timedOut: 1,
    lastError: "killed after 5000 ms",
  };
  const s = buildStatus(parts);
  assert.deepEqual(s.pools, [
    { subnet: "192.0.2.0/24", range: "192.0.2.10 - 192.0.2.209", size: 200, used: 50, free: 150 },
  ]);
  assert.deepEqual(s.reload.count, { applied: 2, unchanged: 0, invalid: 0, refused: 1 });
  assert.equal(s.reload.last?.time, "2023-11-14T23:03:20Z");
  assert.equal(s.reload.last?.outcome, "refused");
  const lines = renderStatus(s).split("\n");
  const subnet = lines.indexOf("subnet    192.0.2.0/24     50/200 used (25.0%), 150 free");
  assert.equal(
    lines[subnet + 1],
    "pool        192.0.2.10 - 192.0.2.209  50/200 used (25.0%), 150 free",
  );
  assert.ok(
    lines.includes(
      "hooks     /usr/local/bin/lease-hook --quiet: 4 events, 1 ok, 1 failed, 1 timed out, " +
        "2 dropped, 0 queued, 1 running",
    ),
    lines.join("\n"),
  );
  assert.ok(lines.includes("          last failure: killed after 5000 ms"));
  const reload = lines.indexOf("reload    2023-11-14T23:03:20Z refused");
  assert.ok(reload > 0, lines.join("\n"));
  assert.equal(
    lines[reload + 1],
    '          /etc/duet/duet.yaml:3:1: Cannot change "listen" on reload (the sockets stay bound): restart duet',
  );
  const none = standaloneParts();
  delete none.reload;
  assert.ok(renderStatus(buildStatus(none)).includes("\nreload    none since start\n"));
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
  assert.deepEqual(buildStatus(parts).failover?.updates, {
    queued: 5,
    unacked: 2,
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

Deno.test("buildStatus(), renderStatus() and renderMetrics() show the FREE/BACKUP split of a failover pair (draft-12 §5.4)", () => {
  const parts = standaloneParts();
  parts.utilisation = [{ subnet: "192.0.2.0/24", size: 200, free: 150, backup: 70 }];
  // Without failover the split means nothing and is left out.
  assert.deepEqual(buildStatus(parts).subnets, [{ subnet: "192.0.2.0/24", size: 200, free: 150 }]);
  parts.failover = { role: "secondary", relationship: "duet", peer: null };
  const s = buildStatus(parts);
  assert.deepEqual(s.subnets, [{ subnet: "192.0.2.0/24", size: 200, free: 150, backup: 70 }]);
  assert.match(
    renderStatus(s),
    /^subnet {4}192\.0\.2\.0\/24 {2}50\/200 used \(25\.0%\), 150 free \(primary 80, secondary 70\)$/m,
  );
  assert.match(renderMetrics(s), /^duet_pool_backup_addresses\{subnet="192\.0\.2\.0\/24"\} 70$/m);
  assert.doesNotMatch(renderMetrics(buildStatus(standaloneParts())), /duet_pool_backup/);
});
