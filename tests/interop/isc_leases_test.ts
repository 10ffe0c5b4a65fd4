/**
 * parseIscLeases() over lease files ISC dhcpd 4.4.3-P1 wrote in our lab (tests/fixtures/isc/,
 * see tests/fixtures/README.md) and over small hand-written files for the forms those lack.
 * Expected values were read off the files by hand (and counted with a separate script).
 */
import assert from "node:assert/strict";
import { parseIscLeases } from "./isc_leases.ts";

const FIXTURES = new URL("../fixtures/isc/", import.meta.url);

function fixture(name: string): string {
  return Deno.readTextFileSync(new URL(name, FIXTURES));
}

function countStates(leases: Iterable<{ bindingState: string }>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of leases) out[l.bindingState] = (out[l.bindingState] ?? 0) + 1;
  return out;
}

Deno.test("parseIscLeases() reads ISC's primary file of scenario b (six clients, two releases)", () => {
  const file = parseIscLeases(fixture("b-leases.primary.leases"));
  // 516 lease blocks journal 200 addresses; the last block of each is current.
  assert.equal(file.history.length, 516);
  assert.equal(file.leases.size, 200);
  assert.deepEqual(countStates(file.leases.values()), { free: 99, backup: 97, active: 4 });

  // Client 5's lease, granted by the primary: the last of its three blocks, after the BNDACK.
  const active = file.leases.get("198.18.16.102");
  assert.deepEqual({ ...active, line: 0 }, {
    address: "198.18.16.102",
    bindingState: "active",
    nextBindingState: "expired",
    rewindBindingState: null,
    starts: 1795926509, // 2026/11/29 04:28:29
    ends: 1795926809, // 04:33:29: the MCLT (300 s) cap
    tstp: 1795927259, // 04:40:59
    tsfp: 1795927259,
    atsfp: 1795927259,
    cltt: 1795926509,
    hardware: "02:00:00:00:00:05",
    uid: null,
    clientHostname: null,
    line: 0,
  });

  // Client 1 released its secondary-held lease; the primary gave the address back as BACKUP.
  const backup = file.leases.get("198.18.16.100");
  assert.equal(backup?.bindingState, "backup");
  assert.equal(backup?.hardware, "02:00:00:00:00:01");
  assert.equal(backup?.starts, 1795926517); // 04:28:37
  assert.equal(backup?.cltt, null);
  // Client 2 released the primary's lease: FREE after the secondary's ack.
  assert.equal(file.leases.get("198.18.16.101")?.bindingState, "free");
  assert.equal(
    file.history.filter((l) => l.address === "198.18.16.101").at(-2)?.bindingState,
    "released",
  );

  // Nine state blocks; the last says both servers are normal (the primary writes no mclt).
  assert.equal(file.failover.length, 9);
  const last = file.failover.at(-1);
  assert.equal(last?.peer, "pair");
  assert.equal(last?.myState, "normal");
  assert.equal(last?.partnerState, "normal");
  assert.equal(last?.myStateAt, 1795926463); // 04:27:43
  assert.equal(last?.mclt, null);
});

Deno.test("parseIscLeases() reads ISC's secondary file of scenario b", () => {
  const file = parseIscLeases(fixture("b-leases.secondary.leases"));
  assert.equal(file.history.length, 318);
  assert.deepEqual(countStates(file.leases.values()), { free: 99, backup: 97, active: 4 });
  // The same lease as the primary's, learned by BNDUPD: no tstp (it sent none) and no cltt.
  const l = file.leases.get("198.18.16.102");
  assert.equal(l?.bindingState, "active");
  assert.equal(l?.ends, 1795926809);
  assert.equal(l?.tstp, null);
  assert.equal(l?.tsfp, 1795927259);
  assert.equal(l?.cltt, null);
  // Client 6 was the secondary's own: cltt = starts, ends = starts + 300.
  const own = file.leases.get("198.18.16.97");
  assert.equal(own?.starts, 1795926512);
  assert.equal(own?.ends, 1795926812);
  assert.equal(own?.cltt, 1795926512);
  assert.equal(file.failover.at(-1)?.mclt, 300);
});

Deno.test("parseIscLeases() reads a fresh secondary's file after pool balancing (a1)", () => {
  const file = parseIscLeases(fixture("a1-startup.secondary.leases"));
  assert.equal(file.history.length, 300);
  assert.deepEqual(countStates(file.leases.values()), { backup: 100, free: 100 });
  const moved = file.leases.get("198.18.16.97");
  assert.equal(moved?.bindingState, "backup");
  assert.equal(moved?.starts, 1795926417); // 04:26:57
  assert.equal(moved?.ends, null);
  assert.equal(file.leases.get("198.18.16.101")?.starts, null);
});

Deno.test("parseIscLeases() reads uid, client-hostname, never, epoch times and comments", () => {
  const text = `# comment
lease 198.18.16.7 {
  starts epoch 1795926500; # 2026/11/29 04:28:20
  ends never;
  cltt 0 2026/11/29 04:28:20;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 02:00:00:00:00:0A;
  uid "\\001\\002\\000\\000\\000\\000\\012";
  set vendor-class-identifier = "udhcp 1.35.0";
  client-hostname "a \\"quoted\\" name";
  on expiry { set x = "y"; }
}
lease 198.18.16.8 {
  binding state abandoned;
  uid 01:02:00:00:00:00:0b;
  abandoned;
}
`;
  const file = parseIscLeases(text);
  const a = file.leases.get("198.18.16.7");
  assert.equal(a?.starts, 1795926500);
  assert.equal(a?.ends, Infinity);
  assert.equal(a?.cltt, 1795926500);
  assert.equal(a?.rewindBindingState, "free");
  assert.equal(a?.hardware, "02:00:00:00:00:0a");
  assert.equal(a?.uid, "01:02:00:00:00:00:0a");
  assert.equal(a?.clientHostname, 'a "quoted" name');
  assert.equal(a?.line, 2);
  const b = file.leases.get("198.18.16.8");
  assert.equal(b?.bindingState, "abandoned");
  assert.equal(b?.uid, "01:02:00:00:00:00:0b");
});

Deno.test("parseIscLeases() refuses malformed files with a SyntaxError naming the line", async (t) => {
  const cases: [string, string, RegExp][] = [
    ["unclosed block", "lease 198.18.16.1 {\n  binding state free;\n", /not closed/],
    ["missing semicolon", "lease 198.18.16.1 {\n  binding state free\n}\n", /line 3/],
    ["bad time", "lease 198.18.16.1 {\n  starts 0 2026-11-29 04:28:20;\n}\n", /line 2/],
    ["bad address", "lease nowhere {\n}\n", /line 1/],
    ["unterminated string", 'lease 198.18.16.1 {\n  uid "abc;\n}\n', /line 2/],
    ["stray brace", "}\n", /line 1/],
  ];
  for (const [name, text, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => parseIscLeases(text), (e: unknown) => {
        assert.ok(e instanceof SyntaxError, String(e));
        assert.match(e.message, message);
        return true;
      });
    });
  }
});
