import assert from "node:assert/strict";
import { loadConfig, parseConfig } from "../../lib/config/config.ts";
import { checkCommand } from "../../lib/cli/check.ts";
import { ConfigError, type ConfigProblem } from "../../lib/errors.ts";

function hex(b: Uint8Array | undefined): string {
  return b === undefined
    ? "(none)"
    : Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function problemsOf(text: string): ConfigProblem[] {
  try {
    parseConfig(text, "test.yaml");
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return err.problems;
  }
  assert.fail("expected the configuration to be rejected");
}

/** Lines 1-3 of most cases below. */
const HEAD = "database: leases.db\nlisten:\n  - address: 127.0.0.1\n";

Deno.test("parseConfig() reads every key into the right value", () => {
  const text = `database: /var/lib/duet/leases.db
authoritative: false
listen:
  - interface: eth1
  - address: 127.0.0.1
    port: 10067
lease-time: { default: 1800, max: 7200, min: 120 }
options:
  domain-name-servers: [198.51.100.53, 198.51.100.54]
  "252": "0a:0b"
  253: { text: "hi" }
subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.10 - 192.0.2.20
        options:
          domain-name: pool.example
      - range: 192.0.2.100 - 192.0.2.199
    options:
      routers: [192.0.2.1]
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.50
        hostname: printer
        options:
          host-name: printer
      - client-id: "01:02:00:00:00:00:02"
        address: 192.0.2.15
    interface: eth1
    relays: [203.0.113.1, 203.0.113.2]
    lease-time: { default: 600 }
    authoritative: true
  - subnet: 198.51.100.0/25
offer-hold: 30
server-id: 192.0.2.1
commit: { delay-ms: 5, batch: 100 }
log-level: debug
`;
  const c = parseConfig(text, "full.yaml");
  assert.equal(c.file, "full.yaml");
  assert.equal(c.database, "/var/lib/duet/leases.db");
  assert.equal(c.authoritative, false);
  assert.deepEqual(c.listen, [
    { kind: "interface", interface: "eth1", port: 67 },
    { kind: "address", address: 0x7f000001, port: 10067 },
  ]);
  assert.deepEqual(c.leaseTime, { default: 1800, max: 7200, min: 120 });
  assert.deepEqual([...c.options.keys()], [6, 252, 253]);
  assert.equal(hex(c.options.get(6)), "c6336435c6336436");
  assert.equal(hex(c.options.get(252)), "0a0b");
  assert.equal(hex(c.options.get(253)), "6869");
  assert.equal(c.offerHold, 30);
  assert.equal(c.serverId, 0xc0000201);
  assert.equal(c.commitDelayMs, 5);
  assert.equal(c.commitBatch, 100);
  assert.equal(c.logLevel, "debug");
  assert.equal(c.subnets.length, 2);

  const s = c.subnets[0]!;
  assert.equal(s.index, 0);
  assert.deepEqual(s.subnet, { network: 0xc0000200, prefix: 24, mask: 0xffffff00 });
  assert.equal(s.pools.length, 2);
  assert.equal(s.pools[0]!.start, 0xc000020a);
  assert.equal(s.pools[0]!.end, 0xc0000214);
  assert.equal(hex(s.pools[0]!.options.get(15)), hex(new TextEncoder().encode("pool.example")));
  assert.equal(s.pools[1]!.start, 0xc0000264);
  assert.equal(s.pools[1]!.end, 0xc00002c7);
  assert.equal(s.pools[1]!.options.size, 0);
  assert.equal(hex(s.options.get(3)), "c0000201");
  assert.equal(s.reservations.length, 2);
  const [r0, r1] = s.reservations;
  assert.equal(hex(r0!.hwAddress ?? undefined), "020000000001");
  assert.equal(r0!.clientId, null);
  assert.equal(r0!.address, 0xc0000232);
  assert.equal(r0!.hostname, "printer");
  assert.equal(hex(r0!.options.get(12)), hex(new TextEncoder().encode("printer")));
  assert.equal(r1!.hwAddress, null);
  assert.equal(hex(r1!.clientId ?? undefined), "01020000000002");
  // Inside the first pool: allowed, the address is then kept for this client only.
  assert.equal(r1!.address, 0xc000020f);
  assert.equal(r1!.hostname, null);
  assert.equal(s.interface, "eth1");
  assert.deepEqual(s.relays, [0xcb007101, 0xcb007102]);
  // Fields missing from the override come from the global lease-time.
  assert.deepEqual(s.leaseTime, { default: 600, max: 7200, min: 120 });
  assert.equal(s.authoritative, true);

  const t = c.subnets[1]!;
  assert.equal(t.index, 1);
  assert.deepEqual(t.subnet, { network: 0xc6336400, prefix: 25, mask: 0xffffff80 });
  assert.deepEqual(t.pools, []);
  assert.deepEqual(t.reservations, []);
  assert.equal(t.interface, null);
  assert.deepEqual(t.relays, []);
  assert.deepEqual(t.leaseTime, { default: 1800, max: 7200, min: 120 });
  assert.equal(t.authoritative, false);
});

Deno.test("parseConfig() fills in documented defaults", () => {
  const c = parseConfig(HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n", "min.yaml");
  assert.equal(c.authoritative, true);
  assert.deepEqual(c.listen, [{ kind: "address", address: 0x7f000001, port: 67 }]);
  assert.deepEqual(c.leaseTime, { default: 3600, max: 86400, min: 60 });
  assert.equal(c.offerHold, 10);
  assert.equal(c.serverId, null);
  assert.equal(c.options.size, 0);
  assert.equal(c.commitDelayMs, 2);
  assert.equal(c.commitBatch, 256);
  assert.equal(c.logLevel, "info");
  assert.equal(c.failover, null);
  assert.deepEqual(c.subnets[0]!.leaseTime, { default: 3600, max: 86400, min: 60 });
  assert.equal(c.subnets[0]!.authoritative, true);
});

Deno.test("parseConfig() accepts empty optional collections and YAML aliases", () => {
  const c = parseConfig(
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    options: &common
      routers: [192.0.2.1]
    pools:
    reservations: []
  - subnet: 198.51.100.0/24
    options: *common
`,
    "alias.yaml",
  );
  assert.equal(hex(c.subnets[1]!.options.get(3)), "c0000201");
  assert.deepEqual(c.subnets[0]!.pools, []);
});

Deno.test("parseConfig() reports an option value with an unresolvable alias as a problem, not a ReferenceError", async (t) => {
  // Found by the fuzzer (tests/fixtures/fuzz/config/exception-22ecd26b91c5.yaml): the YAML
  // library throws while turning such a value into plain data; that escaped the loader.
  await t.step("an alias to an anchor that does not exist", () => {
    const p = problemsOf(
      HEAD + "subnets:\n  - subnet: 192.0.2.0/24\noptions:\n  domain-name-servers:\n" +
        "    - socket: *missing\n",
    );
    assert.deepEqual(p.map((x) => [x.line, x.col, x.path]), [[
      8,
      5,
      "options.domain-name-servers",
    ]]);
    assert.match(
      p[0]?.message ?? "",
      /^Cannot read the value of option "domain-name-servers": unresolved alias/,
    );
  });
  await t.step("an alias before its anchor", () => {
    const p = problemsOf(
      HEAD + "subnets:\n  - subnet: 192.0.2.0/24\noptions:\n  routers: [*later]\n" +
        "  domain-name: &later example.com\n",
    );
    assert.ok(
      p.some((x) => x.path === "options.routers" && x.message.includes("unresolved alias")),
      JSON.stringify(p),
    );
  });
});

/** [line, col, message fragment] for each expected problem, in order. */
type Expect = [number, number, string][];

const BROKEN: [string, string, Expect][] = [
  // Syntax errors come from the YAML parser with their position.
  ["YAML duplicate key", "database: a\ndatabase: b\n", [[
    2,
    1,
    "Cannot parse YAML: map keys must be unique",
  ]]],
  ["YAML unclosed flow list", "database: a\nlisten: [\n", [[
    3,
    1,
    "Cannot parse YAML: flow sequence",
  ]]],
  ["empty file", "", [[1, 1, "Configuration is empty"]]],
  ["top level is a list", "- a\n", [[1, 1, "Expected a map for the configuration, got a list"]]],
  [
    "unknown key with a suggestion",
    HEAD + "leas-time: { default: 60 }\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 1, 'Unknown key "leas-time": did you mean "lease-time"?']],
  ],
  ["unknown key far from any", HEAD + "colour: blue\nsubnets: [{ subnet: 192.0.2.0/24 }]\n", [[
    4,
    1,
    'Unknown key "colour"',
  ]]],
  [
    "unknown key in a subnet",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n    pool: []\n",
    [[6, 5, 'Unknown key "pool": did you mean "pools"?']],
  ],
  [
    "missing database",
    "listen:\n  - address: 127.0.0.1\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[1, 1, 'Missing required key "database"']],
  ],
  ["missing subnets", HEAD, [[1, 1, 'Missing required key "subnets"']]],
  ["missing listen", "database: a\nsubnets:\n  - subnet: 192.0.2.0/24\n", [[
    1,
    1,
    'Missing required key "listen"',
  ]]],
  ["empty subnets", HEAD + "subnets: []\n", [[4, 10, 'Expected at least one subnet in "subnets"']]],
  [
    "empty listen",
    "database: a\nlisten: []\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[2, 9, 'Expected at least one interface or address in "listen"']],
  ],
  [
    "database of the wrong type",
    "database: [a]\nlisten:\n  - interface: eth0\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[1, 11, 'Expected a non-empty string for "database", got a list']],
  ],
  [
    "authoritative as yes",
    HEAD + "authoritative: yes\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 16, 'Expected true or false for "authoritative", got "yes"']],
  ],
  [
    "listen port out of range",
    "database: a\nlisten:\n  - address: 127.0.0.1\n    port: 70000\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 11, 'Expected an integer from 1 to 65535 for "port", got 70000']],
  ],
  [
    "listen port as a string",
    'database: a\nlisten:\n  - interface: eth0\n    port: "67"\nsubnets:\n  - subnet: 192.0.2.0/24\n',
    [[4, 11, 'for "port", got "67"']],
  ],
  [
    "listen with interface and address",
    "database: a\nlisten:\n  - interface: eth0\n    address: 127.0.0.1\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[3, 5, 'Listen entry has both "interface" and "address": use one']],
  ],
  [
    "listen with neither",
    "database: a\nlisten:\n  - port: 67\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[3, 5, 'Listen entry needs an "interface" or an "address"']],
  ],
  [
    "listen bad address",
    "database: a\nlisten:\n  - address: 127.0.0.256\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[3, 14, 'Expected an IPv4 address for "address", got "127.0.0.256"']],
  ],
  [
    "listen twice the same",
    "database: a\nlisten:\n  - interface: eth0\n  - interface: eth0\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 5, 'Listen interface "eth0" port 67 is already listed at line 3']],
  ],
  [
    "lease-time default above max",
    HEAD + "lease-time: { default: 7200, max: 3600 }\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 13, "Lease time default 7200 is greater than max 3600"]],
  ],
  [
    "lease-time min above default",
    HEAD + "lease-time: { min: 7200 }\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 13, "Lease time min 7200 is greater than default 3600"]],
  ],
  [
    "lease-time zero",
    HEAD + "lease-time: { default: 0 }\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 24, 'Expected an integer from 1 to 4294967295 for "default", got 0']],
  ],
  [
    // Override fields default to the global ones, so max stays 86400.
    "subnet lease-time default above the global max",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n    lease-time: { default: 100000 }\n",
    [[6, 17, "Lease time default 100000 is greater than max 86400"]],
  ],
  [
    "subnet not a CIDR",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/33\n",
    [[5, 13, 'Expected a subnet such as "198.18.0.0/24" for "subnet", got "192.0.2.0/33"']],
  ],
  [
    "subnet with host bits set",
    HEAD + "subnets:\n  - subnet: 192.0.2.1/24\n",
    [[5, 13, 'Subnet "192.0.2.1/24" has host bits set: did you mean "192.0.2.0/24"?']],
  ],
  ["subnet missing", HEAD + "subnets:\n  - pools: []\n", [[
    5,
    5,
    'Missing required key "subnet" in a subnet',
  ]]],
  [
    "overlapping subnets",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n  - subnet: 192.0.2.128/25\n",
    [[6, 13, "Subnet 192.0.2.128/25 overlaps subnet 192.0.2.0/24 at line 5"]],
  ],
  [
    "range start after end",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - range: 192.0.2.200 - 192.0.2.1\n",
    [[7, 16, "Range start 192.0.2.200 is greater than end 192.0.2.1"]],
  ],
  [
    "range malformed",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - range: 192.0.2.10\n",
    [[
      7,
      16,
      'Expected a range such as "198.18.16.1 - 198.18.16.200" for "range", got "192.0.2.10"',
    ]],
  ],
  [
    "pool missing range",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - options: {}\n",
    [[7, 9, 'Missing required key "range" in a pool']],
  ],
  [
    "pool outside its subnet",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - range: 198.51.100.1 - 198.51.100.200\n",
    [[7, 16, "Pool 198.51.100.1 - 198.51.100.200 is outside subnet 192.0.2.0/24"]],
  ],
  [
    "pool including the network address",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - range: 192.0.2.0 - 192.0.2.9\n",
    [[7, 16, "includes the network address of subnet 192.0.2.0/24"]],
  ],
  [
    "pool including the broadcast address",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - range: 192.0.2.250 - 192.0.2.255\n",
    [[7, 16, "includes the broadcast address of subnet 192.0.2.0/24"]],
  ],
  [
    "overlapping pools in one subnet",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - range: 192.0.2.10 - 192.0.2.20\n      - range: 192.0.2.20 - 192.0.2.30\n",
    [[8, 16, "Pool 192.0.2.20 - 192.0.2.30 overlaps pool 192.0.2.10 - 192.0.2.20 at line 7"]],
  ],
  [
    // The pools overlap only because their subnets do; both are reported.
    "overlapping pools across subnets",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.10 - 192.0.2.20
  - subnet: 192.0.2.0/25
    pools:
      - range: 192.0.2.15 - 192.0.2.30
`,
    [
      [8, 13, "Subnet 192.0.2.0/25 overlaps subnet 192.0.2.0/24 at line 5"],
      [10, 16, "Pool 192.0.2.15 - 192.0.2.30 overlaps pool 192.0.2.10 - 192.0.2.20 at line 7"],
    ],
  ],
  [
    "reservation with neither hw-address nor client-id",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n    reservations:\n      - address: 192.0.2.5\n",
    [[7, 9, 'Reservation needs a "hw-address" or a "client-id"']],
  ],
  [
    "reservation with both identifiers",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:01
        client-id: "01:02:00:00:00:00:01"
        address: 192.0.2.5
`,
    [[8, 9, 'Reservation has both "hw-address" and "client-id": use one']],
  ],
  [
    "reservation without address",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n    reservations:\n      - hw-address: 02:00:00:00:00:01\n",
    [[7, 9, 'Missing required key "address" in a reservation']],
  ],
  [
    "reservation outside its subnet",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 198.51.100.5
`,
    [[8, 18, "Reservation address 198.51.100.5 is outside subnet 192.0.2.0/24"]],
  ],
  [
    "reservation on the broadcast address",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.255
`,
    [[8, 18, "Reservation address 192.0.2.255 is the broadcast address of subnet 192.0.2.0/24"]],
  ],
  [
    "duplicate reservation by hw-address",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.5
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.6
`,
    [[9, 21, "Duplicate reservation for hw-address 02:00:00:00:00:01: already reserved at line 7"]],
  ],
  [
    "duplicate reservation by client-id",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - client-id: "01:02:00:00:00:00:01"
        address: 192.0.2.5
      - client-id: "01020000000001"
        address: 192.0.2.6
`,
    [[
      9,
      20,
      "Duplicate reservation for client-id 01:02:00:00:00:00:01: already reserved at line 7",
    ]],
  ],
  [
    "duplicate reservation by address",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.5
      - hw-address: 02:00:00:00:00:02
        address: 192.0.2.5
`,
    [[10, 18, "Address 192.0.2.5 is already reserved at line 8"]],
  ],
  [
    "bad hw-address",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:zz
        address: 192.0.2.5
`,
    [[7, 21, 'Expected a hardware address such as "02:00:00:00:00:01" for "hw-address"']],
  ],
  [
    "client-id that YAML reads as a number",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - client-id: 0102
        address: 192.0.2.5
`,
    [[7, 20, "got 102 (quote it)"]],
  ],
  [
    "bad hostname",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.5
        hostname: "my printer"
`,
    [[9, 19, 'Expected a host name such as "printer" for "hostname", got "my printer"']],
  ],
  [
    "unknown option name",
    HEAD + "options:\n  domain-name-server: [198.51.100.53]\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[5, 3, 'Unknown option "domain-name-server": did you mean "domain-name-servers"?']],
  ],
  [
    "option value of the wrong shape",
    HEAD + "options:\n  routers: 192.0.2\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[5, 12, 'Invalid value for option "routers": expected an IPv4 address, got "192.0.2"']],
  ],
  [
    "option with no value",
    HEAD + "options:\n  routers:\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[5, 3, 'Invalid value for option "routers": expected a list, got nothing']],
  ],
  [
    "option code out of range",
    HEAD + 'options:\n  "300": "00"\nsubnets:\n  - subnet: 192.0.2.0/24\n',
    [[5, 3, "Option code 300 is out of range: expected 1 to 254"]],
  ],
  [
    "option set by the server",
    HEAD + "options:\n  51: 00000e10\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[5, 3, 'Option 51 (lease time) is set by the server: use "lease-time" instead']],
  ],
  [
    "option set twice, by name and by code",
    HEAD +
    "options:\n  routers: [192.0.2.1]\n  3: [192.0.2.2]\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[6, 3, "Option 3 is already set at line 5"]],
  ],
  [
    "options not a map",
    HEAD + "options: [routers]\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 10, 'Expected a map for "options", got a list']],
  ],
  [
    "bad option in a pool",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n    pools:\n      - range: 192.0.2.10 - 192.0.2.20\n        options: { interface-mtu: 70000 }\n",
    [[8, 35, 'Invalid value for option "interface-mtu": expected an integer from 0 to 65535']],
  ],
  [
    "bad option in a reservation",
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.5
        options: { hostname: x }
`,
    [[9, 20, 'Unknown option "hostname": did you mean "host-name"?']],
  ],
  [
    "offer-hold zero",
    HEAD + "offer-hold: 0\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 13, 'Expected an integer from 1 to 3600 for "offer-hold", got 0']],
  ],
  [
    "server-id not an address",
    HEAD + "server-id: me\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 12, 'Expected an IPv4 address for "server-id", got "me"']],
  ],
  [
    "commit with a misspelt key",
    HEAD + "commit: { delay-ms: 2, bach: 5 }\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 24, 'Unknown key "bach": did you mean "batch"?']],
  ],
  [
    "commit batch zero",
    HEAD + "commit: { batch: 0 }\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 18, 'Expected an integer from 1 to 65536 for "batch", got 0']],
  ],
  [
    "log-level unknown",
    HEAD + "log-level: verbose\nsubnets:\n  - subnet: 192.0.2.0/24\n",
    [[4, 12, 'Expected one of "debug", "info", "warn", "error" for "log-level", got "verbose"']],
  ],
  [
    "relay listed for two subnets",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n    relays: [203.0.113.1]\n  - subnet: 198.51.100.0/24\n    relays: [203.0.113.1]\n",
    [[8, 14, "Relay 203.0.113.1 already selects subnet 192.0.2.0/24 at line 6"]],
  ],
  [
    "relay inside another subnet",
    HEAD +
    "subnets:\n  - subnet: 192.0.2.0/24\n  - subnet: 198.51.100.0/24\n    relays: [192.0.2.1]\n",
    [[
      7,
      14,
      "Relay 192.0.2.1 is inside subnet 192.0.2.0/24 at line 5, so it cannot also select subnet 198.51.100.0/24",
    ]],
  ],
  [
    "relay not an address",
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n    relays: [gw]\n",
    [[6, 14, 'Expected an IPv4 address for a relay, got "gw"']],
  ],
  [
    "subnet on an interface duet does not listen on",
    "database: a\nlisten:\n  - interface: eth1\nsubnets:\n  - subnet: 192.0.2.0/24\n    interface: eth2\n",
    [[5, 13, 'Subnet 192.0.2.0/24 is on interface "eth2", which is not in "listen"']],
  ],
  [
    // Every problem is reported, sorted by position, not just the first.
    "several problems at once",
    "database: 5\nlisten: []\nsubnets:\n  - subnet: 192.0.2.1/24\nlog-level: loud\n",
    [
      [1, 11, 'Expected a non-empty string for "database", got 5'],
      [2, 9, 'Expected at least one interface or address in "listen"'],
      [4, 13, 'Subnet "192.0.2.1/24" has host bits set'],
      [5, 12, 'for "log-level", got "loud"'],
    ],
  ],
];

Deno.test("parseConfig() reports each broken configuration at its line and column", async (t) => {
  for (const [name, text, expected] of BROKEN) {
    await t.step(name, () => {
      const problems = problemsOf(text);
      const got = problems.map((p) => `${p.line}:${p.col}: ${p.message}`);
      assert.equal(problems.length, expected.length, `problems: ${JSON.stringify(got)}`);
      for (const [i, [line, col, fragment]] of expected.entries()) {
        const p = problems[i]!;
        assert.deepEqual([p.line, p.col], [line, col], `problems: ${JSON.stringify(got)}`);
        assert.ok(p.message.includes(fragment), `${JSON.stringify(p.message)} lacks ${fragment}`);
        assert.ok(!p.message.endsWith("."), `message ends with a period: ${p.message}`);
      }
    });
  }
});

Deno.test("parseConfig() allows a reservation inside a dynamic pool", () => {
  const c = parseConfig(
    HEAD + `subnets:
  - subnet: 192.0.2.0/24
    pools:
      - range: 192.0.2.10 - 192.0.2.20
    reservations:
      - hw-address: 02:00:00:00:00:01
        address: 192.0.2.15
`,
    "in-pool.yaml",
  );
  assert.equal(c.subnets[0]!.reservations[0]!.address, 0xc000020f);
});

Deno.test("ConfigError message lists problems as file:line:col: message", () => {
  try {
    parseConfig("database: a\nlisten: []\nsubnets: []\n", "bad.yaml");
    assert.fail("expected a ConfigError");
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError);
    assert.equal(
      err.message,
      'bad.yaml:2:9: Expected at least one interface or address in "listen"\n' +
        'bad.yaml:3:10: Expected at least one subnet in "subnets"',
    );
    assert.equal(err.problems[0]!.path, "listen");
    assert.equal(err.problems[1]!.path, "subnets");
  }
});

Deno.test("ConfigProblem.path names the dotted key", () => {
  const problems = problemsOf(
    HEAD + "subnets:\n  - subnet: 192.0.2.0/24\n  - subnet: 198.51.100.0/24\n    pools:\n" +
      "      - range: 198.51.100.10 - 198.51.100.9\n",
  );
  assert.deepEqual(problems.map((p) => p.path), ["subnets.1.pools.0.range"]);
});

const EXAMPLES = new URL("../../examples/", import.meta.url);

async function exampleFiles(): Promise<string[]> {
  const files: string[] = [];
  for await (const e of Deno.readDir(EXAMPLES)) {
    if (e.isFile && e.name.endsWith(".yaml")) files.push(e.name);
  }
  return files.sort();
}

Deno.test("loadConfig() accepts every file in examples/", async (t) => {
  const files = await exampleFiles();
  for (
    const name of [
      "single-lan.yaml",
      "two-lans.yaml",
      "relay.yaml",
      "loopback-demo.yaml",
      "pair-primary.yaml",
      "pair-secondary.yaml",
    ]
  ) {
    assert.ok(files.includes(name), `examples/${name} exists`);
  }
  for (const name of files) {
    await t.step(name, async () => {
      const path = new URL(name, EXAMPLES).pathname;
      // The failover pair names /etc/duet/pair.secret, which loadConfig() would check on this
      // host; parseConfig() validates the file itself (tests/config/failover_config_test.ts).
      const pair = name.startsWith("pair-");
      const c = pair ? parseConfig(await Deno.readTextFile(path), path) : await loadConfig(path);
      assert.equal(c.failover !== null, pair, `failover section only in pair-*.yaml`);
      assert.ok(c.subnets.length > 0);
      assert.ok(c.listen.length > 0);
      for (const s of c.subnets) {
        for (const p of s.pools) {
          // Examples use only 198.18.0.0/15 for anything that gets handed out.
          assert.equal(p.start >>> 17, 0xc612 >>> 1, `pool in 198.18.0.0/15 in ${name}`);
        }
      }
    });
  }
});

Deno.test("loadConfig() reports the loopback demo listening on 127.0.0.1:10067", async () => {
  const c = await loadConfig(new URL("loopback-demo.yaml", EXAMPLES).pathname);
  assert.deepEqual(c.listen, [{ kind: "address", address: 0x7f000001, port: 10067 }]);
});

Deno.test("loadConfig() reports a missing file as a ConfigError at line 0", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/absent.yaml`;
    await assert.rejects(loadConfig(path), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 1);
      assert.equal(err.problems[0]!.line, 0);
      assert.equal(
        err.problems[0]!.message,
        `Cannot read configuration file "${path}": no such file`,
      );
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function capture(): {
  io: { stdout: (s: string) => void; stderr: (s: string) => void };
  out: string[];
  err: string[];
} {
  const out: string[] = [];
  const err: string[] = [];
  return { io: { stdout: (s) => out.push(s), stderr: (s) => err.push(s) }, out, err };
}

Deno.test("checkCommand() prints a summary and returns 0 for a valid file", async () => {
  const c = capture();
  const code = await checkCommand(
    ["--config", new URL("single-lan.yaml", EXAMPLES).pathname],
    c.io,
  );
  assert.equal(code, 0);
  assert.equal(c.out.join(""), "ok: 1 subnet, 1 pool, 100 addresses\n");
  assert.equal(c.err.join(""), "");
});

Deno.test("checkCommand() prints every problem and returns 3 for an invalid file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/bad.yaml`;
    await Deno.writeTextFile(path, "database: a\nlisten: []\nsubnets:\n  - subnet: 192.0.2.1/24\n");
    const c = capture();
    assert.equal(await checkCommand(["-c", path], c.io), 3);
    assert.equal(
      c.err.join(""),
      `${path}:2:9: Expected at least one interface or address in "listen"\n` +
        `${path}:4:13: Subnet "192.0.2.1/24" has host bits set: did you mean "192.0.2.0/24"?\n`,
    );
    assert.equal(c.out.join(""), "");

    const j = capture();
    assert.equal(await checkCommand(["-c", path, "--json"], j.io), 3);
    const doc = JSON.parse(j.out.join(""));
    assert.equal(doc.ok, false);
    assert.equal(doc.problems.length, 2);
    assert.deepEqual(doc.problems[0], {
      path: "listen",
      line: 2,
      col: 9,
      message: 'Expected at least one interface or address in "listen"',
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkCommand() returns 3 with a clear message for a missing file", async () => {
  const c = capture();
  assert.equal(await checkCommand(["--config", "/nonexistent/duet.yaml"], c.io), 3);
  assert.equal(
    c.err.join(""),
    '/nonexistent/duet.yaml:0:0: Cannot read configuration file "/nonexistent/duet.yaml": no such file\n',
  );
});

Deno.test("checkCommand() returns 2 for usage errors", async (t) => {
  for (const args of [["--bogus"], [], ["extra-positional"], ["--config"]]) {
    await t.step(JSON.stringify(args), async () => {
      const c = capture();
      assert.equal(await checkCommand(args, c.io), 2);
      assert.match(c.err.join(""), /Usage: duet check --config FILE/);
      assert.equal(c.out.join(""), "");
    });
  }
});

Deno.test("checkCommand() --json prints one JSON document for a valid file", async () => {
  const c = capture();
  const path = new URL("two-lans.yaml", EXAMPLES).pathname;
  assert.equal(await checkCommand(["--config", path, "--json"], c.io), 0);
  assert.deepEqual(JSON.parse(c.out.join("")), {
    ok: true,
    file: path,
    subnets: 2,
    pools: 3,
    addresses: 291,
    reservations: 0,
    problems: [],
  });
});

const SUBNET = "subnets:\n  - subnet: 192.0.2.0/24\n";

Deno.test("parseConfig() reads the hooks section, with its defaults", () => {
  const c = parseConfig(
    HEAD + SUBNET + "hooks:\n  command: [/usr/local/bin/lease-hook, --tag, 7]\n",
    "test.yaml",
  );
  assert.deepEqual(c.hooks, {
    command: ["/usr/local/bin/lease-hook", "--tag", "7"],
    commandPos: { line: 7, col: 12 },
    timeoutMs: 10_000,
    queue: 1000,
    concurrency: 1,
  });
  const one = parseConfig(
    HEAD + SUBNET +
      "hooks:\n  command: /usr/local/bin/lease-hook\n  timeout-ms: 500\n  queue: 5\n  concurrency: 2\n",
    "test.yaml",
  );
  assert.deepEqual(one.hooks?.command, ["/usr/local/bin/lease-hook"]);
  assert.deepEqual([one.hooks?.timeoutMs, one.hooks?.queue, one.hooks?.concurrency], [500, 5, 2]);
  assert.equal(parseConfig(HEAD + SUBNET, "test.yaml").hooks, undefined);
});

Deno.test("parseConfig() reports every problem in the hooks section", async (t) => {
  const cases: [string, string, string][] = [
    ["a relative program", "  command: [lease-hook]\n", "must be an absolute path, such as"],
    ["an empty command", "  command: []\n", 'Expected at least the program in "command"'],
    ["a map in the command", "  command: [/bin/x, {a: 1}]\n", "Expected a string, got a map"],
    ["no command", "  queue: 3\n", 'Missing required key "command" in "hooks"'],
    ["a timeout of 0", "  command: /bin/true\n  timeout-ms: 0\n", "from 1 to 3600000"],
    ["a queue too long", "  command: /bin/true\n  queue: 100001\n", "from 1 to 100000"],
    ["too many at once", "  command: /bin/true\n  concurrency: 17\n", "from 1 to 16"],
    ["an unknown key", "  command: /bin/true\n  timout-ms: 5\n", 'did you mean "timeout-ms"?'],
  ];
  for (const [name, body, message] of cases) {
    await t.step(name, () => {
      const problems = problemsOf(HEAD + SUBNET + "hooks:\n" + body);
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.ok(problems[0]!.message.includes(message), problems[0]!.message);
      assert.ok(problems[0]!.path.startsWith("hooks"), problems[0]!.path);
      assert.ok(problems[0]!.line >= 6);
    });
  }
});

Deno.test("loadConfig() checks that the hook program exists and is executable", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const program = `${dir}/hook.sh`;
    const path = `${dir}/duet.yaml`;
    await Deno.writeTextFile(path, HEAD + SUBNET + `hooks:\n  command: [${program}]\n`);
    await assert.rejects(
      loadConfig(path),
      /duet\.yaml:7:12: Cannot use hook program .*: no such file/,
    );
    await Deno.writeTextFile(program, "#!/bin/sh\n");
    await Deno.chmod(program, 0o644);
    await assert.rejects(loadConfig(path), /is not executable \(chmod \+x\)/);
    await Deno.chmod(program, 0o755);
    assert.deepEqual((await loadConfig(path)).hooks?.command, [program]);
    await Deno.writeTextFile(path, HEAD + SUBNET + `hooks:\n  command: [${dir}]\n`);
    await assert.rejects(loadConfig(path), /is not a regular file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
