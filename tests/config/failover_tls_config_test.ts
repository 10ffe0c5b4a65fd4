/**
 * The `failover.tls` section (draft-12 §11.2): keys per role, checked at file:line:col, and the
 * files it names (certificates parse, the key is private, parses and matches the certificate).
 */
import assert from "node:assert/strict";
import {
  applyPeerFlags,
  checkFailoverFiles,
  loadConfig,
  parseConfig,
  readFailoverTls,
} from "../../lib/config/config.ts";
import { ConfigError, type ConfigProblem } from "../../lib/errors.ts";
import { requireOrSkip } from "../netns.ts";
import { makeTlsFiles, opensslMissing } from "../tls_certs.ts";

/** Lines 1-5: a valid standalone configuration; `failover:` is line 6. */
const BASE = "database: leases.db\nlisten:\n  - address: 192.0.2.1\nsubnets:\n" +
  "  - subnet: 192.0.2.0/24\n";
const PRIMARY = "  role: primary\n  peer: 192.0.2.2\n  mclt: 300\n  split: 128\n"; // lines 7-10
const SECONDARY = "  role: secondary\n  peer: 192.0.2.1\n  address: 192.0.2.2\n"; // lines 7-9

function problemsOf(text: string): ConfigProblem[] {
  try {
    parseConfig(text, "t.yaml");
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e.problems;
  }
  assert.fail("expected the configuration to be rejected");
}

function sites(problems: ConfigProblem[]): string[] {
  return problems.map((p) => `${p.line}:${p.col} ${p.path}: ${p.message}`);
}

Deno.test("parseConfig() reads failover.tls for each role, with require defaulting to true", async (t) => {
  await t.step("primary: ca-file and server-name", () => {
    const c = parseConfig(
      BASE + "failover:\n" + PRIMARY +
        "  tls:\n    ca-file: /etc/duet/ca.crt\n    server-name: duet-b.example\n",
      "t.yaml",
    );
    const tls = c.failover?.tls;
    assert.ok(tls);
    assert.equal(tls.caFile, "/etc/duet/ca.crt");
    assert.equal(tls.serverName, "duet-b.example");
    assert.equal(tls.require, true);
    assert.equal(tls.certFile, null);
    assert.deepEqual(tls.pos.caFile, { line: 12, col: 14 });
  });
  await t.step("secondary: cert-file, key-file, require false", () => {
    const c = parseConfig(
      BASE + "failover:\n" + SECONDARY +
        "  tls: { cert-file: s.crt, key-file: s.key, require: false }\n",
      "t.yaml",
    );
    const tls = c.failover?.tls;
    assert.ok(tls);
    assert.deepEqual([tls.certFile, tls.keyFile, tls.require], ["s.crt", "s.key", false]);
  });
  await t.step("no tls key, or an empty one: no TLS", () => {
    assert.equal(parseConfig(BASE + "failover:\n" + PRIMARY, "t.yaml").failover?.tls, null);
    assert.equal(
      parseConfig(BASE + "failover:\n" + PRIMARY + "  tls:\n", "t.yaml").failover?.tls,
      null,
    );
  });
});

Deno.test("parseConfig() reports a failover.tls section that does not fit its role at line:col", async (t) => {
  const cases: [string, string, string[]][] = [
    [
      "a primary without ca-file",
      PRIMARY + "  tls:\n    require: true\n",
      ['12:5 failover.tls.ca-file: Missing required key "ca-file" in "failover.tls"'],
    ],
    [
      "a primary with the secondary's keys",
      PRIMARY + "  tls:\n    ca-file: ca.crt\n    cert-file: p.crt\n",
      ['13:5 failover.tls.cert-file: A primary may not set "cert-file": it is the TLS client; the secondary presents the certificate'],
    ],
    [
      "a secondary without its key",
      SECONDARY + "  tls:\n    cert-file: s.crt\n",
      ['11:5 failover.tls.key-file: Missing required key "key-file" in "failover.tls"'],
    ],
    [
      "a secondary with ca-file",
      SECONDARY + "  tls:\n    cert-file: s.crt\n    key-file: s.key\n    ca-file: ca.crt\n",
      ['13:5 failover.tls.ca-file: A secondary may not set "ca-file": it is the TLS server; the primary checks its certificate'],
    ],
    [
      "an unknown key and a non-boolean require",
      PRIMARY + "  tls:\n    ca-file: ca.crt\n    requires: yes\n    require: yes\n",
      [
        '13:5 failover.tls.requires: Unknown key "requires": did you mean "require"?',
        '14:14 failover.tls.require: Expected true or false for "require", got "yes"',
      ],
    ],
    [
      "not a map",
      PRIMARY + "  tls: on\n",
      ['11:8 failover.tls: Expected a map for "failover.tls", got "on"'],
    ],
  ];
  for (const [name, body, expected] of cases) {
    await t.step(name, () => {
      assert.deepEqual(sites(problemsOf(BASE + "failover:\n" + body)), expected);
    });
  }
});

Deno.test("applyPeerFlags() refuses --role that does not fit failover.tls", () => {
  const c = parseConfig(BASE + "failover:\n" + PRIMARY + "  tls:\n    ca-file: ca.crt\n", "t.yaml");
  assert.throws(() => applyPeerFlags(c, { role: "secondary" }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.problems[0]?.path, "--role");
    assert.match(e.problems[0]?.message ?? "", /"failover.tls" section is for a primary/);
    return true;
  });
  assert.equal(applyPeerFlags(c, { role: "primary" }).failover?.tls?.caFile, "ca.crt");
});

Deno.test("checkFailoverFiles() checks the failover.tls files and readFailoverTls() reads them", async (t) => {
  if (!requireOrSkip(t, await opensslMissing())) return;
  const dir = await Deno.makeTempDir({ prefix: "duet-tls-config-" });
  try {
    const f = await makeTlsFiles(dir);
    const secondary = (cert: string, key: string) =>
      `${BASE}failover:\n${SECONDARY}  tls:\n    cert-file: ${cert}\n    key-file: ${key}\n`;
    const load = async (text: string) => {
      await Deno.writeTextFile(`${dir}/duet.yaml`, text);
      return await loadConfig(`${dir}/duet.yaml`);
    };
    const problemsOfFile = async (text: string): Promise<string[]> => {
      try {
        await load(text);
      } catch (e) {
        assert.ok(e instanceof ConfigError, String(e));
        return sites(e.problems);
      }
      assert.fail("expected the configuration to be rejected");
    };
    await t.step("good files are read", async () => {
      const c = await load(secondary(f.cert, f.key));
      assert.deepEqual(await checkFailoverFiles(c), []);
      const files = await readFailoverTls(c);
      assert.match(files?.cert ?? "", /^-----BEGIN CERTIFICATE-----/);
      assert.match(files?.key ?? "", /PRIVATE KEY-----/);
      const p = await load(`${BASE}failover:\n${PRIMARY}  tls:\n    ca-file: ${f.ca}\n`);
      assert.match((await readFailoverTls(p))?.ca ?? "", /^-----BEGIN CERTIFICATE-----/);
    });
    await t.step("a key readable by others", async () => {
      await Deno.chmod(f.key, 0o640);
      try {
        assert.deepEqual(await problemsOfFile(secondary(f.cert, f.key)), [
          `12:15 failover.tls.key-file: TLS key file ${
            JSON.stringify(f.key)
          } has mode 0640: it must not be readable or writable by group or others (chmod 600)`,
        ]);
      } finally {
        await Deno.chmod(f.key, 0o600);
      }
    });
    await t.step("a key of another certificate", async () => {
      assert.deepEqual(await problemsOfFile(secondary(f.cert, f.otherKey)), [
        `12:15 failover.tls.key-file: TLS key file ${
          JSON.stringify(f.otherKey)
        } does not belong to the certificate in ${JSON.stringify(f.cert)}`,
      ]);
    });
    await t.step("missing files and a file that is not a certificate", async () => {
      const notKey = `${dir}/not-a-key.pem`;
      await Deno.copyFile(f.ca, notKey);
      await Deno.chmod(notKey, 0o600);
      assert.deepEqual(await problemsOfFile(secondary(`${dir}/nope.crt`, notKey)), [
        `11:16 failover.tls.cert-file: Cannot read TLS certificate file ${
          JSON.stringify(`${dir}/nope.crt`)
        }: no such file`,
        `12:15 failover.tls.key-file: TLS key file ${
          JSON.stringify(notKey)
        } holds no PEM private key`,
      ]);
      assert.deepEqual(
        await problemsOfFile(`${BASE}failover:\n${PRIMARY}  tls:\n    ca-file: ${dir}/ext.cnf\n`),
        [`12:14 failover.tls.ca-file: TLS certificate file ${
          JSON.stringify(`${dir}/ext.cnf`)
        } holds no PEM certificate`],
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
