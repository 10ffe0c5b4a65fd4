import assert from "node:assert/strict";
import {
  applyPeerFlags,
  checkFailoverFiles,
  loadConfig,
  parseConfig,
  readSharedSecret,
} from "../../lib/config/config.ts";
import type { Config, FailoverConfig } from "../../lib/config/types.ts";
import { ConfigError, type ConfigProblem } from "../../lib/errors.ts";

/** Lines 1-5: a valid standalone configuration; `failover:` starts on line 6. */
const BASE = "database: leases.db\nlisten:\n  - address: 192.0.2.1\nsubnets:\n" +
  "  - subnet: 192.0.2.0/24\n";

/** A valid primary section body (lines 7-10 after BASE + "failover:\n"). */
const PRIMARY = "  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  split: 128\n";

function withFailover(body: string): string {
  return BASE + "failover:\n" + body;
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

function failoverOf(text: string): FailoverConfig {
  const f = parseConfig(text, "test.yaml").failover;
  assert.ok(f !== null, "failover section read");
  return f;
}

const HBA_HEX = "ff".repeat(16) + "00".repeat(16);

Deno.test("parseConfig() reads every failover key into the right value", () => {
  const f = failoverOf(withFailover(`  role: primary
  address: 198.51.100.1
  port: 10647
  peer: 198.51.100.2
  peer-port: 10648
  relationship: lab-pair
  mclt: 1800
  hba: "${HBA_HEX}"
  hba-polarity: draft
  load-balance-max-seconds: 5
  max-lease-misbalance: 25
  min-balance: 30
  max-balance: 600
  max-unacked-bndupd: 20
  max-response-delay: 60
  shared-secret-file: /etc/duet/pair.secret
  auto-partner-down: 3600
  max-clock-skew: 10
  kernel-filter: false
`));
  assert.deepEqual(f, {
    role: "primary",
    address: 0xc6336401,
    port: 10647,
    peer: 0xc6336402,
    peerPort: 10648,
    relationship: "lab-pair",
    mclt: 1800,
    split: null,
    hba: new Uint8Array([...new Array(16).fill(0xff), ...new Array(16).fill(0)]),
    hbaPolarity: "draft",
    loadBalanceMaxSeconds: 5,
    maxLeaseMisbalance: 25,
    minBalance: 30,
    maxBalance: 600,
    maxUnackedBndupd: 20,
    maxResponseDelay: 60,
    sharedSecretFile: "/etc/duet/pair.secret",
    sharedSecretFilePos: { line: 22, col: 23 },
    autoPartnerDown: 3600,
    maxClockSkew: 10,
    kernelFilter: false,
    tls: null,
  });
});

Deno.test("parseConfig() fills in documented failover defaults", async (t) => {
  await t.step("primary", () => {
    const f = failoverOf(withFailover(PRIMARY));
    assert.equal(f.address, 0xc0000201, "the first listen address");
    assert.equal(f.port, 647);
    assert.equal(f.peerPort, 647);
    assert.equal(f.relationship, "duet");
    assert.equal(f.split, 128);
    assert.equal(f.hba, null);
    assert.equal(f.loadBalanceMaxSeconds, 3);
    assert.equal(f.hbaPolarity, "isc");
    assert.equal(f.maxLeaseMisbalance, 15);
    assert.equal(f.minBalance, 60);
    assert.equal(f.maxBalance, 3600);
    assert.equal(f.maxUnackedBndupd, 10);
    assert.equal(f.maxResponseDelay, 30);
    assert.equal(f.sharedSecretFile, null);
    assert.deepEqual(f.sharedSecretFilePos, { line: 0, col: 0 });
    assert.equal(f.autoPartnerDown, 0);
    assert.equal(f.maxClockSkew, 0);
  });
  await t.step("secondary learns mclt from CONNECT, so it may be absent", () => {
    const f = failoverOf(withFailover("  role: secondary\n  peer: 192.0.2.2\n"));
    assert.equal(f.role, "secondary");
    assert.equal(f.mclt, null);
    assert.equal(f.split, null);
  });
  await t.step("secondary may set split, the assignment it expects (§7.8.2 step 8)", () => {
    const f = failoverOf(withFailover("  role: secondary\n  peer: 192.0.2.2\n  split: 64\n"));
    assert.equal(f.split, 64);
  });
  await t.step("secondary may set mclt (it must match the primary's)", () => {
    const f = failoverOf(withFailover("  role: secondary\n  peer: 192.0.2.2\n  mclt: 300\n"));
    assert.equal(f.mclt, 300);
  });
  await t.step("address is 0.0.0.0 when listening by interface only", () => {
    const f = parseConfig(
      "database: a\nlisten:\n  - interface: eth0\nsubnets:\n  - subnet: 192.0.2.0/24\n" +
        "failover:\n" + PRIMARY,
      "t.yaml",
    ).failover;
    assert.equal(f?.address, 0);
  });
  await t.step("an empty failover key is a standalone server", () => {
    assert.equal(parseConfig(BASE + "failover:\n", "t.yaml").failover, null);
  });
  await t.step("split 0 and 256 are the ends of the range", () => {
    const body = (n: number) => `  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  split: ${n}\n`;
    assert.equal(failoverOf(withFailover(body(0))).split, 0);
    assert.equal(failoverOf(withFailover(body(256))).split, 256);
  });
  await t.step("same address on loopback with another port (two processes on one host)", () => {
    const f = failoverOf(
      withFailover(
        "  role: primary\n  address: 127.0.0.1\n  port: 10647\n  peer: 127.0.0.1\n" +
          "  peer-port: 10648\n  mclt: 300\n  split: 128\n",
      ),
    );
    assert.equal(f.peer, 0x7f000001);
  });
});

/** [line, col, message fragment] for each expected problem, in order. */
type Expect = [number, number, string][];

/** `failover:` is line 6; its first key is line 7. */
const BROKEN: [string, string, Expect][] = [
  // Section shape.
  ["failover is a list", BASE + "failover: [a]\n", [[
    6,
    11,
    'Expected a map for "failover", got a list',
  ]]],
  [
    "unknown key with a suggestion",
    withFailover(PRIMARY + "  max-unacked-updates: 10\n"),
    [[11, 3, 'Unknown key "max-unacked-updates": did you mean "max-unacked-bndupd"?']],
  ],
  [
    "unknown key with underscores",
    withFailover(PRIMARY + "  peer_port: 647\n"),
    [[11, 3, 'Unknown key "peer_port": did you mean "peer-port"?']],
  ],
  ["kernel-filter not a boolean", withFailover(PRIMARY + "  kernel-filter: maybe\n"), [[
    11,
    18,
    '"kernel-filter"',
  ]]],
  ["unknown key far from any", withFailover(PRIMARY + "  colour: blue\n"), [[
    11,
    3,
    'Unknown key "colour"',
  ]]],
  // role: draft-12 §5.1, each endpoint is a primary or a secondary.
  ["role missing", withFailover("  peer: 192.0.2.2\n"), [[
    7,
    3,
    'Missing required key "role" in "failover"',
  ]]],
  ["role bad", withFailover("  role: master\n  peer: 192.0.2.2\n"), [[
    7,
    9,
    'Expected "primary" or "secondary" for "role", got "master"',
  ]]],
  // peer.
  ["peer missing", withFailover("  role: secondary\n"), [[
    7,
    3,
    'Missing required key "peer" in "failover"',
  ]]],
  ["peer not an address", withFailover("  role: secondary\n  peer: partner.example\n"), [[
    8,
    9,
    'Expected an IPv4 address for "peer", got "partner.example"',
  ]]],
  ["peer 0.0.0.0", withFailover("  role: secondary\n  peer: 0.0.0.0\n"), [[
    8,
    9,
    "Peer 0.0.0.0 is not a host address",
  ]]],
  ["peer multicast", withFailover("  role: secondary\n  peer: 224.0.0.1\n"), [[
    8,
    9,
    "Peer 224.0.0.1 is not a host address",
  ]]],
  ["peer broadcast", withFailover("  role: secondary\n  peer: 255.255.255.255\n"), [[
    8,
    9,
    "Peer 255.255.255.255 is not a host address",
  ]]],
  [
    "peer equal to address",
    withFailover("  role: secondary\n  address: 192.0.2.7\n  peer: 192.0.2.7\n  peer-port: 648\n"),
    [[9, 9, "Peer 192.0.2.7 is this server's own failover address: the partner must be"]],
  ],
  [
    "peer equal to the default address (first listen address)",
    withFailover("  role: secondary\n  peer: 192.0.2.1\n"),
    [[8, 9, "Peer 192.0.2.1 port 647 is this server's own failover address and port"]],
  ],
  [
    "peer equal to address and port on loopback",
    withFailover("  role: secondary\n  address: 127.0.0.1\n  peer: 127.0.0.1\n"),
    [[9, 9, "Peer 127.0.0.1 port 647 is this server's own failover address and port"]],
  ],
  // address.
  ["address bad", withFailover("  role: secondary\n  address: 192.0.2.300\n  peer: 192.0.2.2\n"), [[
    8,
    12,
    'Expected an IPv4 address for "address", got "192.0.2.300"',
  ]]],
  [
    "address multicast",
    withFailover("  role: secondary\n  address: 239.1.1.1\n  peer: 192.0.2.2\n"),
    [[8, 12, "Failover address 239.1.1.1 is not a host address"]],
  ],
  // Ports are TCP ports.
  ["port 0", withFailover("  role: secondary\n  peer: 192.0.2.2\n  port: 0\n"), [[
    9,
    9,
    'Expected an integer from 1 to 65535 for "port", got 0',
  ]]],
  [
    "peer-port too big",
    withFailover("  role: secondary\n  peer: 192.0.2.2\n  peer-port: 65536\n"),
    [[
      9,
      14,
      'Expected an integer from 1 to 65535 for "peer-port", got 65536',
    ]],
  ],
  ["port as a string", withFailover('  role: secondary\n  peer: 192.0.2.2\n  port: "647"\n'), [[
    9,
    9,
    'for "port", got "647"',
  ]]],
  // split: RFC 3074 has 256 buckets.
  [
    "split above 256",
    withFailover("  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  split: 257\n"),
    [[
      10,
      10,
      'Expected an integer from 0 to 256 for "split", got 257',
    ]],
  ],
  [
    "split negative",
    withFailover("  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  split: -1\n"),
    [[
      10,
      10,
      'Expected an integer from 0 to 256 for "split", got -1',
    ]],
  ],
  // hba: draft-12 §12.11, 32 octets.
  [
    "hba too short",
    withFailover('  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  hba: "ffff"\n'),
    [[10, 8, 'Expected 64 hex digits (32 octets, one bit per hash bucket) for "hba", got "ffff"']],
  ],
  [
    "hba not hex",
    withFailover(`  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  hba: "${"zz".repeat(32)}"\n`),
    [[10, 8, 'Expected 64 hex digits (32 octets, one bit per hash bucket) for "hba"']],
  ],
  [
    "hba read as a number",
    withFailover("  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  hba: 1234\n"),
    [[10, 8, "got 1234 (quote it)"]],
  ],
  [
    "split and hba together",
    withFailover(
      `  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  split: 128\n  hba: "${HBA_HEX}"\n`,
    ),
    [[11, 3, 'Failover has both "split" and "hba": use one']],
  ],
  [
    "primary without split or hba",
    withFailover("  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n"),
    [[
      7,
      3,
      'Missing required key "split" (or "hba") in "failover" for a primary',
    ]],
  ],
  // ISC: a secondary may not define load balance settings; it gets them in CONNECT.
  [
    "split and hba on a secondary",
    withFailover(`  role: secondary\n  peer: 192.0.2.2\n  split: 128\n  hba: "${HBA_HEX}"\n`),
    [[10, 3, 'Failover has both "split" and "hba": use one']],
  ],
  // mclt: draft-12 §5.2.1, §7.8.1; required on the primary.
  [
    "mclt missing on the primary",
    withFailover("  role: primary\n  peer: 192.0.2.2\n  split: 128\n"),
    [[
      7,
      3,
      'Missing required key "mclt" in "failover"',
    ]],
  ],
  ["mclt 0", withFailover("  role: primary\n  peer: 192.0.2.2\n  mclt: 0\n  split: 128\n"), [[
    9,
    9,
    'Expected an integer from 1 to 4294967295 for "mclt", got 0',
  ]]],
  [
    "mclt negative on a secondary",
    withFailover("  role: secondary\n  peer: 192.0.2.2\n  mclt: -5\n"),
    [[
      9,
      9,
      'for "mclt", got -5',
    ]],
  ],
  // relationship: draft-12 §12.22.
  ["relationship empty", withFailover(PRIMARY + '  relationship: ""\n'), [[
    11,
    17,
    "Relationship name is empty",
  ]]],
  ["relationship too long", withFailover(PRIMARY + `  relationship: ${"a".repeat(256)}\n`), [[
    11,
    17,
    "Relationship name is 256 octets long: the most is 255",
  ]]],
  [
    "relationship too long in octets (UTF-8)",
    withFailover(PRIMARY + `  relationship: ${"é".repeat(128)}\n`),
    [[11, 17, "Relationship name is 256 octets long"]],
  ],
  ["relationship control character", withFailover(PRIMARY + '  relationship: "a\\tb"\n'), [[
    11,
    17,
    "Relationship name contains a control character",
  ]]],
  ["relationship a number", withFailover(PRIMARY + "  relationship: 5\n"), [[
    11,
    17,
    'Expected a string for "relationship", got 5',
  ]]],
  // Counters and timers.
  ["max-unacked-bndupd 0", withFailover(PRIMARY + "  max-unacked-bndupd: 0\n"), [[
    11,
    23,
    'Expected an integer from 1 to 65535 for "max-unacked-bndupd", got 0',
  ]]],
  ["max-response-delay 0", withFailover(PRIMARY + "  max-response-delay: 0\n"), [[
    11,
    23,
    'Expected an integer from 1 to 86400 for "max-response-delay", got 0',
  ]]],
  ["auto-partner-down negative", withFailover(PRIMARY + "  auto-partner-down: -1\n"), [[
    11,
    22,
    'Expected an integer from 0 to 4294967295 for "auto-partner-down", got -1',
  ]]],
  [
    "load-balance-max-seconds too big",
    withFailover(PRIMARY + "  load-balance-max-seconds: 65536\n"),
    [[
      11,
      29,
      'Expected an integer from 0 to 65535 for "load-balance-max-seconds", got 65536',
    ]],
  ],
  // Pool balancing (draft-12 §5.4) and the hash-bucket-assignment polarity (§12.11).
  ["hba-polarity unknown", withFailover(PRIMARY + "  hba-polarity: lsb\n"), [[
    11,
    17,
    'Expected "isc" or "draft" for "hba-polarity", got "lsb"',
  ]]],
  ["max-lease-misbalance above 100", withFailover(PRIMARY + "  max-lease-misbalance: 101\n"), [[
    11,
    25,
    'Expected an integer from 0 to 100 for "max-lease-misbalance", got 101',
  ]]],
  [
    "max-balance below min-balance",
    withFailover(PRIMARY + "  min-balance: 120\n  max-balance: 60\n"),
    [[12, 16, '"max-balance" (60) is below "min-balance" (120)']],
  ],
  ["max-clock-skew negative", withFailover(PRIMARY + "  max-clock-skew: -1\n"), [[
    11,
    19,
    'Expected an integer from 0 to 86400 for "max-clock-skew", got -1',
  ]]],
  ["shared-secret-file empty", withFailover(PRIMARY + '  shared-secret-file: ""\n'), [[
    11,
    23,
    'Expected a non-empty string for "shared-secret-file", got ""',
  ]]],
  [
    // Every problem is reported, sorted by position.
    "several problems at once",
    withFailover("  role: primary\n  peer: 192.0.2.2\n  split: 300\n  max-response-delay: 0\n"),
    [
      [7, 3, 'Missing required key "mclt"'],
      [9, 10, 'for "split", got 300'],
      [10, 23, 'for "max-response-delay", got 0'],
    ],
  ],
];

Deno.test("parseConfig() reports each broken failover section at its line and column", async (t) => {
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
        assert.ok(p.path === "failover" || p.path.startsWith("failover."), `path ${p.path}`);
      }
    });
  }
});

Deno.test("ConfigProblem.path names the dotted failover key", () => {
  const problems = problemsOf(withFailover(PRIMARY + "  peer-port: 0\n  mclts: 3\n"));
  assert.deepEqual(problems.map((p) => p.path), ["failover.peer-port", "failover.mclts"]);
});

const EXAMPLES = new URL("../../examples/", import.meta.url);

Deno.test("parseConfig() accepts the failover pair in examples/", async () => {
  const read = async (name: string) => {
    const path = new URL(name, EXAMPLES).pathname;
    return parseConfig(await Deno.readTextFile(path), path);
  };
  const p = (await read("pair-primary.yaml")).failover;
  const s = (await read("pair-secondary.yaml")).failover;
  assert.ok(p !== null && s !== null);
  assert.equal(p.role, "primary");
  assert.equal(s.role, "secondary");
  // Each side's peer is the other's address, on 198.18.0.0/15.
  assert.equal(p.address, 0xc6120001);
  assert.equal(p.peer, 0xc6120002);
  assert.equal(s.address, p.peer);
  assert.equal(s.peer, p.address);
  assert.equal(p.peerPort, s.port);
  assert.equal(s.peerPort, p.port);
  assert.equal(p.relationship, s.relationship);
  assert.equal(p.mclt, 300);
  assert.equal(p.split, 128);
  assert.equal(s.split, null);
  assert.equal(s.hba, null);
  assert.equal(p.sharedSecretFile, "/etc/duet/pair.secret");
  assert.equal(s.sharedSecretFile, p.sharedSecretFile);
});

/** A temporary directory with a config whose shared secret is `secret` written with `mode`. */
async function withSecret(
  secret: string | null,
  mode: number,
  fn: (dir: string, configPath: string, secretPath: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const secretPath = `${dir}/pair.secret`;
    if (secret !== null) {
      await Deno.writeTextFile(secretPath, secret);
      await Deno.chmod(secretPath, mode);
    }
    const configPath = `${dir}/duet.yaml`;
    await Deno.writeTextFile(
      configPath,
      withFailover(PRIMARY + `  shared-secret-file: ${JSON.stringify(secretPath)}\n`),
    );
    await fn(dir, configPath, secretPath);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sameSecretSite(problems: ConfigProblem[]): void {
  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.path, "failover.shared-secret-file");
  assert.deepEqual([problems[0]!.line, problems[0]!.col], [11, 23]);
  assert.ok(!problems[0]!.message.endsWith("."));
}

const IS_POSIX = Deno.build.os !== "windows";

function skipBecause(reason: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`  skipped: ${reason}\n`));
}

Deno.test("checkFailoverFiles() accepts a mode 0600 secret and readSharedSecret() reads it", async () => {
  await withSecret("s3cret\n", 0o600, async (_dir, configPath) => {
    const c = await loadConfig(configPath);
    assert.deepEqual(await checkFailoverFiles(c), []);
    // One trailing newline is not part of the secret.
    assert.deepEqual(await readSharedSecret(c), new TextEncoder().encode("s3cret"));
  });
});

Deno.test("readSharedSecret() keeps everything but one trailing newline", async (t) => {
  for (
    const [name, text, want] of [
      ["no newline", "abc", "abc"],
      ["CRLF", "abc\r\n", "abc"],
      ["two newlines", "abc\n\n", "abc\n"],
      ["inner spaces", " a b ", " a b "],
    ] as const
  ) {
    await t.step(name, async () => {
      await withSecret(text, 0o600, async (_dir, configPath) => {
        const c = await loadConfig(configPath);
        assert.deepEqual(await readSharedSecret(c), new TextEncoder().encode(want));
      });
    });
  }
});

Deno.test("readSharedSecret() returns null without a shared-secret-file", async () => {
  assert.equal(await readSharedSecret(parseConfig(withFailover(PRIMARY), "t.yaml")), null);
  assert.equal(await readSharedSecret(parseConfig(BASE, "t.yaml")), null);
  assert.deepEqual(await checkFailoverFiles(parseConfig(BASE, "t.yaml")), []);
});

Deno.test("checkFailoverFiles() refuses a secret readable by group or others", async (t) => {
  if (!IS_POSIX) {
    skipBecause("file modes are POSIX-only");
    return;
  }
  for (const mode of [0o644, 0o640, 0o604, 0o620, 0o602]) {
    await t.step(mode.toString(8), async () => {
      await withSecret("s3cret\n", mode, async (_dir, configPath, secretPath) => {
        const c = parseConfig(await Deno.readTextFile(configPath), configPath);
        const problems = await checkFailoverFiles(c);
        sameSecretSite(problems);
        assert.equal(
          problems[0]!.message,
          `Shared secret file ${JSON.stringify(secretPath)} has mode 0${
            mode.toString(8)
          }: it must not be readable or writable by group or others (chmod 600)`,
        );
        await assert.rejects(readSharedSecret(c), ConfigError);
      });
    });
  }
});

Deno.test("loadConfig() reports a world-readable secret with the other problems", async () => {
  if (!IS_POSIX) {
    skipBecause("file modes are POSIX-only");
    return;
  }
  await withSecret("s3cret\n", 0o644, async (_dir, configPath) => {
    // Add a problem earlier in the file: both must be reported, sorted by line.
    const text = await Deno.readTextFile(configPath);
    await Deno.writeTextFile(configPath, text.replace("database: leases.db", "database: 5"));
    await assert.rejects(loadConfig(configPath), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.problems.map((p) => [p.line, p.path]), [
        [1, "database"],
        [11, "failover.shared-secret-file"],
      ]);
      assert.match(err.problems[1]!.message, /has mode 0644/);
      return true;
    });
  });
});

Deno.test("checkFailoverFiles() reports a missing, empty or non-regular secret file", async (t) => {
  await t.step("missing", async () => {
    await withSecret(null, 0o600, async (_dir, configPath, secretPath) => {
      const c = parseConfig(await Deno.readTextFile(configPath), configPath);
      const problems = await checkFailoverFiles(c);
      sameSecretSite(problems);
      assert.equal(
        problems[0]!.message,
        `Cannot read shared secret file ${JSON.stringify(secretPath)}: no such file`,
      );
    });
  });
  await t.step("empty", async () => {
    await withSecret("", 0o600, async (_dir, configPath, secretPath) => {
      const problems = await checkFailoverFiles(
        parseConfig(await Deno.readTextFile(configPath), configPath),
      );
      sameSecretSite(problems);
      assert.equal(
        problems[0]!.message,
        `Shared secret file ${JSON.stringify(secretPath)} is empty`,
      );
    });
  });
  await t.step("only a newline", async () => {
    await withSecret("\n", 0o600, async (_dir, configPath) => {
      const problems = await checkFailoverFiles(
        parseConfig(await Deno.readTextFile(configPath), configPath),
      );
      sameSecretSite(problems);
      assert.match(problems[0]!.message, /is empty$/);
    });
  });
  await t.step("a directory", async () => {
    await withSecret(null, 0o600, async (_dir, configPath, secretPath) => {
      await Deno.mkdir(secretPath, { mode: 0o700 });
      const problems = await checkFailoverFiles(
        parseConfig(await Deno.readTextFile(configPath), configPath),
      );
      sameSecretSite(problems);
      assert.match(problems[0]!.message, /is not a regular file$/);
    });
  });
});

function standalone(listen = "  - address: 192.0.2.1\n"): Config {
  return parseConfig(
    `database: a\nlisten:\n${listen}subnets:\n  - subnet: 192.0.2.0/24\n`,
    "duet.yaml",
  );
}

function flagProblem(fn: () => unknown): ConfigProblem {
  try {
    fn();
  } catch (err: unknown) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.equal(err.problems.length, 1);
    const p = err.problems[0]!;
    assert.deepEqual([p.line, p.col], [0, 0]);
    assert.ok(!p.message.endsWith("."));
    return p;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("applyPeerFlags() without flags returns the configuration unchanged", () => {
  const c = standalone();
  assert.equal(applyPeerFlags(c, {}), c);
  assert.equal(applyPeerFlags(c, { peer: undefined, role: undefined }), c);
});

Deno.test("applyPeerFlags() makes a standalone server a primary with defaults", () => {
  const c = standalone();
  const out = applyPeerFlags(c, { peer: "192.0.2.2", role: "primary" });
  assert.equal(c.failover, null, "the input is not changed");
  assert.deepEqual(out.failover, {
    role: "primary",
    address: 0xc0000201,
    port: 647,
    peer: 0xc0000202,
    peerPort: 647,
    relationship: "duet",
    mclt: 3600,
    split: 128,
    hba: null,
    hbaPolarity: "isc",
    loadBalanceMaxSeconds: 3,
    maxLeaseMisbalance: 15,
    minBalance: 60,
    maxBalance: 3600,
    maxUnackedBndupd: 10,
    maxResponseDelay: 30,
    sharedSecretFile: null,
    sharedSecretFilePos: { line: 0, col: 0 },
    autoPartnerDown: 0,
    maxClockSkew: 0,
    kernelFilter: true,
    tls: null,
  });
  assert.deepEqual(out.subnets, c.subnets);
});

Deno.test("applyPeerFlags() makes a standalone server a secondary without split or mclt", () => {
  const out = applyPeerFlags(standalone("  - interface: eth0\n"), {
    peer: "198.51.100.7:10647",
    role: "secondary",
  });
  const f = out.failover!;
  assert.equal(f.role, "secondary");
  assert.equal(f.address, 0, "0.0.0.0 when listening by interface");
  assert.equal(f.peer, 0xc6336407);
  assert.equal(f.peerPort, 10647);
  assert.equal(f.mclt, null);
  assert.equal(f.split, null);
  assert.equal(f.hba, null);
});

Deno.test("applyPeerFlags() overlays a failover section from the file", async (t) => {
  const file = parseConfig(
    withFailover(
      `  role: primary\n  peer: 192.0.2.2\n  peer-port: 10648\n  mclt: 300\n  hba: "${HBA_HEX}"\n` +
        "  relationship: lab\n",
    ),
    "duet.yaml",
  );
  await t.step("--peer without a port keeps peer-port", () => {
    const f = applyPeerFlags(file, { peer: "192.0.2.3" }).failover!;
    assert.equal(f.peer, 0xc0000203);
    assert.equal(f.peerPort, 10648);
    assert.equal(f.relationship, "lab");
    assert.equal(f.mclt, 300);
    assert.equal(f.hba?.length, 32);
    assert.equal(f.split, null, "hba stays, no split added");
  });
  await t.step("--peer with a port replaces peer-port", () => {
    assert.equal(applyPeerFlags(file, { peer: "192.0.2.3:700" }).failover!.peerPort, 700);
  });
  await t.step("--role secondary drops hba and keeps mclt", () => {
    const f = applyPeerFlags(file, { role: "secondary" }).failover!;
    assert.equal(f.role, "secondary");
    assert.equal(f.hba, null);
    assert.equal(f.split, null);
    assert.equal(f.mclt, 300);
    assert.equal(f.peer, 0xc0000202);
  });
  await t.step("--role primary on a secondary file adds split 128 and mclt 3600", () => {
    const sec = parseConfig(withFailover("  role: secondary\n  peer: 192.0.2.2\n"), "d.yaml");
    const f = applyPeerFlags(sec, { role: "primary" }).failover!;
    assert.equal(f.role, "primary");
    assert.equal(f.split, 128);
    assert.equal(f.mclt, 3600);
  });
});

Deno.test("applyPeerFlags() rejects bad flags with the flag as the path", async (t) => {
  const cases: [string, { peer?: string; role?: string }, string, string][] = [
    ["bad role", { peer: "192.0.2.2", role: "master" }, "--role", 'got "master"'],
    ["peer not an address", { peer: "partner", role: "primary" }, "--peer", 'got "partner"'],
    ["peer port 0", { peer: "192.0.2.2:0", role: "primary" }, "--peer", 'got "192.0.2.2:0"'],
    ["peer port too big", { peer: "192.0.2.2:65536", role: "primary" }, "--peer", "ADDR[:PORT]"],
    ["peer bad octet", { peer: "192.0.2.256", role: "primary" }, "--peer", "ADDR[:PORT]"],
    ["peer 0.0.0.0", { peer: "0.0.0.0", role: "primary" }, "--peer", "not a host address"],
    [
      "peer is the first listen address on the same port",
      { peer: "192.0.2.1", role: "primary" },
      "--peer",
      "Peer 192.0.2.1 port 647 is this server's own failover address and port",
    ],
    [
      "peer is the local address on another port (not loopback)",
      { peer: "192.0.2.1:648", role: "primary" },
      "--peer",
      "the partner must be another host",
    ],
    ["--peer without --role", { peer: "192.0.2.2" }, "--role", 'Missing "--role"'],
    ["--role without --peer", { role: "secondary" }, "--peer", 'Missing "--peer"'],
  ];
  for (const [name, flags, path, fragment] of cases) {
    await t.step(name, () => {
      const p = flagProblem(() => applyPeerFlags(standalone(), flags));
      assert.equal(p.path, path);
      assert.ok(p.message.includes(fragment), `${JSON.stringify(p.message)} lacks ${fragment}`);
    });
  }
});

Deno.test("applyPeerFlags() allows a loopback pair on other ports", () => {
  const c = standalone("  - address: 127.0.0.1\n    port: 10067\n");
  const f = applyPeerFlags(c, { peer: "127.0.0.1:10648", role: "primary" }).failover!;
  assert.equal(f.address, 0x7f000001);
  assert.equal(f.port, 647);
  assert.equal(f.peerPort, 10648);
});
