/** The abuse-defence keys: `rate-limit`, `offer-limit` and `relay-allow` (lib/server/guard.ts). */
import assert from "node:assert/strict";
import { DEFAULT_GUARD, parseConfig } from "../../lib/config/config.ts";
import { ConfigError, type ConfigProblem } from "../../lib/errors.ts";

const BASE = `database: leases.db
listen:
  - address: 127.0.0.1
subnets:
  - subnet: 198.18.16.0/24
`;

function problemsOf(text: string): ConfigProblem[] {
  try {
    parseConfig(text, "test.yaml");
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return err.problems;
  }
  assert.fail("expected the configuration to be rejected");
}

function brief(p: ConfigProblem[]): string[] {
  return p.map((x) => `${x.line}:${x.col} ${x.path}: ${x.message}`);
}

Deno.test("parseConfig() applies the guard defaults when no key is given", () => {
  const c = parseConfig(BASE, "test.yaml");
  assert.deepEqual(c.guard, {
    perClient: { rate: 4, burst: 32 },
    global: null,
    trackedClients: 4096,
    offerLimit: 50,
    relayAllow: null,
  });
  assert.deepEqual(c.guard, DEFAULT_GUARD);
});

Deno.test("parseConfig() reads rate-limit, offer-limit and relay-allow", () => {
  const c = parseConfig(
    BASE + `rate-limit:
  per-client: { rate: 0.5, burst: 3 }
  global: { rate: 100 }
  tracked-clients: 1000
offer-limit: 25
relay-allow: [198.18.0.0/15, 203.0.113.7]
`,
    "test.yaml",
  );
  assert.deepEqual(c.guard.perClient, { rate: 0.5, burst: 3 });
  assert.deepEqual(c.guard.global, { rate: 100, burst: 200 }, "burst defaults to twice the rate");
  assert.equal(c.guard.trackedClients, 1000);
  assert.equal(c.guard.offerLimit, 25);
  assert.deepEqual(c.guard.relayAllow, [
    { network: 0xc6120000, prefix: 15, mask: 0xfffe0000 },
    { network: 0xcb007107, prefix: 32, mask: 0xffffffff },
  ]);
});

Deno.test("parseConfig() turns a bucket off with false", () => {
  const c = parseConfig(BASE + "rate-limit: { per-client: false, global: false }\n", "test.yaml");
  assert.equal(c.guard.perClient, null);
  assert.equal(c.guard.global, null);
});

Deno.test("parseConfig() reports bad guard values with line and column", async (t) => {
  const cases: [string, string, string[]][] = [
    [
      "a rate of 0",
      "rate-limit:\n  per-client: { rate: 0 }\n",
      [
        '7:23 rate-limit.per-client.rate: Expected a number above 0 and at most 1000000 for "rate", got 0',
      ],
    ],
    [
      "a missing rate",
      "rate-limit:\n  global: { burst: 5 }\n",
      ['7:11 rate-limit.global.rate: Missing required key "rate" in "global"'],
    ],
    [
      "a burst below 1",
      "rate-limit:\n  global: { rate: 5, burst: 0 }\n",
      [
        '7:29 rate-limit.global.burst: Expected an integer from 1 to 1000000 for "burst", got 0',
      ],
    ],
    [
      "a misspelt key",
      "rate-limit:\n  per-clinet: { rate: 1 }\n",
      ['7:3 rate-limit.per-clinet: Unknown key "per-clinet": did you mean "per-client"?'],
    ],
    [
      "tracked-clients too small",
      "rate-limit: { tracked-clients: 2 }\n",
      [
        '6:32 rate-limit.tracked-clients: Expected an integer from 16 to 1048576 for "tracked-clients", got 2',
      ],
    ],
    [
      "offer-limit 0",
      "offer-limit: 0\n",
      ['6:14 offer-limit: Expected an integer from 1 to 100 for "offer-limit", got 0'],
    ],
    [
      "relay-allow with host bits",
      "relay-allow: [198.18.1.1/24]\n",
      [
        '6:15 relay-allow.0: Relay range "198.18.1.1/24" has host bits set: did you mean "198.18.1.0/24"?',
      ],
    ],
    [
      "relay-allow with a name",
      "relay-allow: [relay1]\n",
      [
        '6:15 relay-allow.0: Expected an address or CIDR such as "198.18.0.0/15" in "relay-allow", got "relay1"',
      ],
    ],
    [
      "an empty relay-allow",
      "relay-allow: []\n",
      [
        '6:14 relay-allow: Expected at least one address or CIDR in "relay-allow": leave the key out to accept any relay',
      ],
    ],
  ];
  for (const [name, extra, expected] of cases) {
    await t.step(name, () => assert.deepEqual(brief(problemsOf(BASE + extra)), expected));
  }
});
