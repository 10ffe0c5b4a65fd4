/**
 * planReload(): what `duet reload` applies live and what it refuses (with the key and its
 * line:col in the new file), subtractIntervals(), and keyPosition().
 */
import assert from "node:assert/strict";
import { keyPosition, parseConfig } from "../../lib/config/config.ts";
import { planReload, subtractIntervals } from "../../lib/config/reload.ts";
import type { Config } from "../../lib/config/types.ts";

const BASE = `database: /var/lib/duet/leases.db
listen:
  - address: 127.0.0.1
    port: 10067
options:
  domain-name-servers: [198.51.100.53]
subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.100 - 192.0.2.199
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.10
`;

const FAILOVER = `failover:
  role: primary
  address: 127.0.0.1
  port: 10647
  peer: 127.0.0.2
  mclt: 300
  split: 128
`;

function parse(text: string): Config {
  return parseConfig(text, "duet.yaml");
}

/** Plans BASE (plus `extraOld`) -> `next`, with ACTIVE leases on `active`. */
function plan(next: string, options: { old?: string; active?: number[] } = {}) {
  const active = options.active ?? [];
  return planReload(parse(options.old ?? BASE), parse(next), {
    locate: (path) => keyPosition(next, path),
    countActive: (first, last) => active.filter((a) => a >= first && a <= last).length,
  });
}

/** 192.0.2.N */
function ip(n: number): number {
  return (192 << 24 | 0 << 16 | 2 << 8 | n) >>> 0;
}

Deno.test("planReload() applies safe changes live", async (t) => {
  const cases: [string, string, string[]][] = [
    // Options at every level.
    [
      "global option",
      BASE.replace("198.51.100.53]", "198.51.100.54]"),
      ["options"],
    ],
    [
      "subnet option",
      BASE.replace("    pools:\n", "    options: { routers: [192.0.2.1] }\n    pools:\n"),
      ["subnets.0.options (192.0.2.0/24)"],
    ],
    [
      "pool option",
      BASE.replace(
        "192.0.2.199\n",
        "192.0.2.199\n        options: { domain-name: pool.example }\n",
      ),
      ["subnets.0.pools (192.0.2.0/24)"],
    ],
    // A subnet inherits the global lease times and authoritative, so both change.
    [
      "lease times",
      BASE + "lease-time: { default: 600 }\n",
      ["lease-time", "subnets.0.lease-time (192.0.2.0/24)"],
    ],
    ["offer-hold", BASE + "offer-hold: 30\n", ["offer-hold"]],
    [
      "abuse defences",
      BASE + "offer-limit: 25\n",
      ["rate-limit/offer-limit/relay-allow"],
    ],
    [
      "authoritative",
      BASE + "authoritative: false\n",
      ["authoritative", "subnets.0.authoritative (192.0.2.0/24)"],
    ],
    ["log-level", BASE + "log-level: debug\n", ["log-level"]],
    ["commit", BASE + "commit: { delay-ms: 5 }\n", ["commit"]],
    [
      "a reservation",
      BASE + "      - hw-address: 02:00:00:00:00:02\n        address: 192.0.2.11\n",
      ["subnets.0.reservations (192.0.2.0/24)"],
    ],
    [
      "a new subnet",
      BASE + "  - subnet: 198.51.100.0/24\n    pools: [{ range: 198.51.100.10 - 198.51.100.20 }]\n",
      ["subnets.1 (198.51.100.0/24 added)"],
    ],
    [
      "a grown pool",
      BASE.replace("192.0.2.199", "192.0.2.250"),
      ["subnets.0.pools (192.0.2.0/24)"],
    ],
    [
      "a shrunk pool without ACTIVE leases in the cut",
      BASE.replace("192.0.2.199", "192.0.2.150"),
      ["subnets.0.pools (192.0.2.0/24)"],
    ],
    ["hooks", BASE + "hooks: { command: [/bin/true] }\n", ["hooks"]],
    ["nothing but a comment", BASE + "# a comment\n", []],
  ];
  for (const [name, next, changes] of cases) {
    await t.step(name, () => {
      const p = plan(next, { active: [ip(100), ip(10)] });
      assert.deepEqual(p.refused, []);
      assert.deepEqual(p.changes, changes);
    });
  }
});

Deno.test("planReload() refuses changes that need a restart, naming the key and its place", async (t) => {
  const cases: [string, string, { path: string; line: number; col: number; text: RegExp }][] = [
    [
      "database",
      BASE.replace("/var/lib/duet/leases.db", "/srv/other.db"),
      { path: "database", line: 1, col: 1, text: /Cannot change "database" on reload/ },
    ],
    [
      "listen",
      BASE.replace("port: 10067", "port: 10068"),
      { path: "listen", line: 2, col: 1, text: /Cannot change "listen" on reload/ },
    ],
    [
      "control socket",
      BASE + "control: { socket: /run/duet/control.sock }\n",
      { path: "control.socket", line: 14, col: 12, text: /"control\.socket"/ },
    ],
    [
      "metrics address",
      BASE + "control:\n  metrics: 127.0.0.1:9467\n",
      { path: "control.metrics", line: 15, col: 3, text: /"control\.metrics"/ },
    ],
    [
      "adding failover",
      BASE + FAILOVER,
      { path: "failover", line: 14, col: 1, text: /Cannot add the "failover" section/ },
    ],
  ];
  for (const [name, next, want] of cases) {
    await t.step(name, () => {
      const p = plan(next);
      assert.equal(p.refused.length, 1, JSON.stringify(p.refused));
      const r = p.refused[0]!;
      assert.equal(r.path, want.path);
      assert.match(r.message, want.text);
      assert.match(r.message, /restart/);
      assert.deepEqual([r.line, r.col], [want.line, want.col]);
    });
  }
});

Deno.test("planReload() refuses every change to the failover section, key by key", async (t) => {
  const old = BASE + FAILOVER;
  const cases: [string, string, string[]][] = [
    ["role", old.replace("role: primary", "role: secondary").replace("  split: 128\n", ""), [
      "failover.role",
      "failover.split",
    ]],
    ["peer", old.replace("peer: 127.0.0.2", "peer: 127.0.0.3"), ["failover.peer"]],
    ["mclt", old.replace("mclt: 300", "mclt: 600"), ["failover.mclt"]],
    ["split", old.replace("split: 128", "split: 64"), ["failover.split"]],
    ["relationship", old + "  relationship: other\n", ["failover.relationship"]],
    ["pool balancing", old + "  max-lease-misbalance: 30\n", ["failover.max-lease-misbalance"]],
    ["hash bucket polarity", old + "  hba-polarity: draft\n", ["failover.hba-polarity"]],
    ["removed", BASE, ["failover"]],
  ];
  for (const [name, next, paths] of cases) {
    await t.step(name, () => {
      const p = plan(next, { old });
      assert.deepEqual(p.refused.map((r) => r.path).sort(), paths.sort());
    });
  }
  await t.step("a key the list does not name yet is refused with the section", () => {
    const before = parse(old);
    const after = {
      ...before,
      failover: { ...before.failover, futureKey: 1 },
    } as unknown as Config;
    const p = planReload(before, after, {
      locate: (path) => keyPosition(old, path),
      countActive: () => 0,
    });
    assert.deepEqual(p.refused.map((r) => r.path), ["failover"]);
  });
  await t.step("a changed shared secret", () => {
    const text = old + "  shared-secret-file: /etc/duet/pair.secret\n";
    const p = planReload(parse(text), parse(text), {
      locate: (path) => keyPosition(text, path),
      countActive: () => 0,
      secrets: { old: new Uint8Array([1, 2]), next: new Uint8Array([1, 3]) },
    });
    assert.deepEqual(p.refused.map((r) => r.path), ["failover.shared-secret-file"]);
    assert.match(p.refused[0]!.message, /shared secret/);
  });
  await t.step("pools, which the failover endpoint fixes at start", () => {
    const p = plan(old.replace("192.0.2.199", "192.0.2.250"), { old });
    assert.deepEqual(p.refused.map((r) => r.path), ["subnets.0.pools"]);
    assert.match(p.refused[0]!.message, /both partners/);
  });
  await t.step("options still apply with failover", () => {
    const p = plan(old.replace("198.51.100.53]", "198.51.100.54]"), { old });
    assert.deepEqual(p.refused, []);
    assert.deepEqual(p.changes, ["options"]);
  });
});

Deno.test("planReload() refuses to take a pool or subnet from under ACTIVE leases", async (t) => {
  await t.step("a shrunk pool with ACTIVE leases in the cut", () => {
    const next = BASE.replace("192.0.2.199", "192.0.2.150");
    const p = plan(next, { active: [ip(151), ip(199), ip(120)] });
    assert.deepEqual(p.refused.map((r) => r.path), ["subnets.0.pools"]);
    const r = p.refused[0]!;
    assert.deepEqual([r.line, r.col], [9, 5]);
    assert.match(r.message, /192\.0\.2\.151 - 192\.0\.2\.199 .* 2 ACTIVE leases/);
  });
  await t.step("a removed pool", () => {
    const next = BASE.replace("      - range: 192.0.2.100 - 192.0.2.199\n", "      []\n").replace(
      "    pools:\n      []\n",
      "    pools: []\n",
    );
    const p = plan(next, { active: [ip(100)] });
    assert.deepEqual(p.refused.map((r) => r.path), ["subnets.0.pools"]);
    assert.match(p.refused[0]!.message, /1 ACTIVE lease;/);
  });
  await t.step("a removed subnet, also for its reserved addresses", () => {
    const next = BASE.replace("192.0.2.0/24", "198.51.100.0/24").replace(
      "192.0.2.100 - 192.0.2.199",
      "198.51.100.100 - 198.51.100.199",
    ).replace("192.0.2.10\n", "198.51.100.10\n");
    const p = plan(next, { active: [ip(10)] });
    assert.deepEqual(p.refused.map((r) => r.path), ["subnets"]);
    assert.match(p.refused[0]!.message, /Cannot remove subnet 192\.0\.2\.0\/24 .* 1 ACTIVE lease/);
    assert.equal(plan(next, { active: [] }).refused.length, 0, "allowed once nothing is ACTIVE");
  });
  await t.step("a pool moved to another range of the same subnet", () => {
    const next = BASE.replace("192.0.2.100 - 192.0.2.199", "192.0.2.20 - 192.0.2.99");
    assert.equal(plan(next, { active: [ip(150)] }).refused.length, 1);
    assert.equal(plan(next, { active: [ip(50)] }).refused.length, 0);
  });
  await t.step("every problem is reported, in file order", () => {
    const next = BASE.replace("/var/lib/duet/leases.db", "/srv/x.db").replace(
      "port: 10067",
      "port: 1",
    ).replace("192.0.2.199", "192.0.2.150");
    const p = plan(next, { active: [ip(160)] });
    assert.deepEqual(p.refused.map((r) => r.path), ["database", "listen", "subnets.0.pools"]);
  });
});

Deno.test("subtractIntervals() keeps what the other intervals do not cover", async (t) => {
  const cases: [string, [number, number][], [number, number][], [number, number][]][] = [
    ["nothing removed", [[1, 10]], [], [[1, 10]]],
    ["all covered", [[1, 10]], [[0, 20]], []],
    ["a middle cut", [[1, 10]], [[4, 6]], [[1, 3], [7, 10]]],
    ["two cuts, unsorted and touching", [[1, 10]], [[8, 9], [2, 3], [4, 4]], [[1, 1], [5, 7], [
      10,
      10,
    ]]],
    ["several sources merged", [[5, 7], [1, 4]], [[3, 5]], [[1, 2], [6, 7]]],
  ];
  for (const [name, from, minus, want] of cases) {
    await t.step(name, () => assert.deepEqual(subtractIntervals(from, minus), want));
  }
});

Deno.test("keyPosition() finds keys and list items, or the deepest part that exists", () => {
  assert.deepEqual(keyPosition(BASE, "database"), { line: 1, col: 1 });
  assert.deepEqual(keyPosition(BASE, "subnets.0.pools"), { line: 9, col: 5 });
  assert.deepEqual(keyPosition(BASE, "subnets.0.pools.0"), { line: 10, col: 9 });
  assert.deepEqual(keyPosition(BASE, "subnets.0.nope"), { line: 8, col: 5 });
  assert.deepEqual(keyPosition(BASE, "subnets.5"), { line: 7, col: 1 });
  assert.deepEqual(keyPosition(BASE, ""), { line: 1, col: 1 });
  assert.deepEqual(keyPosition("a: [", "a"), { line: 1, col: 1 }, "unparsable text");
});
