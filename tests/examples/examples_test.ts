/**
 * Every configuration in examples/ passes `duet check` (the shared secrets they name are
 * stood in for by 0600 files in a temporary directory), uses only 198.18.0.0/15 (and loopback
 * for the demo), and the ISC dhcpd half of the ISC pairing passes `dhcpd -t` and matches the
 * duet half.
 */
import assert from "node:assert/strict";
import { checkCommand } from "../../lib/cli/check.ts";
import { parseConfig } from "../../lib/config/config.ts";
import { formatIpv4, parseIpv4 } from "../../lib/wire/ip.ts";
import { ROOT } from "../e2e/process.ts";
import { requireOrSkip } from "../netns.ts";

const EXAMPLES = `${ROOT}examples`;

async function files(suffix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(EXAMPLES)) {
    if (e.isFile && e.name.endsWith(suffix)) out.push(e.name);
  }
  return out.sort();
}

/** Runs `duet check` in this process; the exit code and what it printed. */
async function check(path: string): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await checkCommand(["--config", path], {
    stdout: (s) => out += s,
    stderr: (s) => err += s,
  });
  return { code, out, err };
}

/**
 * A copy of an example with its shared-secret-file (an /etc path that does not exist here)
 * pointing at a file in `dir` written with `mode`.
 */
async function withLocalSecret(name: string, dir: string, mode: number): Promise<string> {
  const text = await Deno.readTextFile(`${EXAMPLES}/${name}`);
  const secret = `${dir}/${name}.secret`;
  await Deno.writeTextFile(secret, "correct horse battery staple\n");
  await Deno.chmod(secret, mode);
  const copy = `${dir}/${name}`;
  await Deno.writeTextFile(
    copy,
    text.replace(/shared-secret-file: \S+/, `shared-secret-file: ${secret}`),
  );
  return copy;
}

Deno.test("every example configuration passes duet check", async (t) => {
  const names = await files(".yaml");
  assert.ok(names.includes("pair-isc-duet-secondary.yaml"), names.join(", "));
  const dir = await Deno.makeTempDir({ prefix: "duet-examples-" });
  try {
    for (const name of names) {
      await t.step(name, async () => {
        const text = await Deno.readTextFile(`${EXAMPLES}/${name}`);
        const secret = /shared-secret-file:/.test(text);
        const path = secret ? await withLocalSecret(name, dir, 0o600) : `${EXAMPLES}/${name}`;
        const r = await check(path);
        assert.equal(r.code, 0, r.err);
        assert.match(r.out, /^ok: \d+ subnets?, \d+ pools?, \d+ address/);
        if (secret) {
          // The secret must be private: the same file readable by others fails the check.
          const open = await withLocalSecret(name, dir, 0o644);
          const bad = await check(open);
          assert.equal(bad.code, 3);
          assert.match(bad.err, /has mode 0644: it must not be readable or writable by group/);
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the duet pair examples sign their messages with a shared secret from a file", async () => {
  for (const name of ["pair-primary.yaml", "pair-secondary.yaml"]) {
    const c = parseConfig(await Deno.readTextFile(`${EXAMPLES}/${name}`), name);
    assert.equal(c.failover?.sharedSecretFile, "/etc/duet/pair.secret", name);
  }
  // ISC dhcpd 4.4 cannot sign failover messages: its pairing says so instead.
  const isc = await Deno.readTextFile(`${EXAMPLES}/pair-isc-duet-secondary.yaml`);
  assert.equal(parseConfig(isc, "isc").failover?.sharedSecretFile, null);
  assert.match(isc, /No shared secret here: ISC dhcpd 4\.4 cannot sign/);
});

/** Every dotted quad of a text, netmasks excepted. */
function addresses(text: string): string[] {
  const stripped = text.replace(/netmask \d+\.\d+\.\d+\.\d+/g, "");
  return [...stripped.matchAll(/\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b/g)].map((m) => m[0]);
}

Deno.test("examples use only 198.18.0.0/15, loopback and the default route", async () => {
  const names = await files("");
  assert.ok(names.length >= 9, names.join(", "));
  for (const name of names) {
    for (const a of addresses(await Deno.readTextFile(`${EXAMPLES}/${name}`))) {
      const ip = parseIpv4(a);
      assert.ok(ip !== undefined, `${name}: ${a}`);
      const ok = ip >>> 17 === 0xc612 >>> 1 || ip >>> 24 === 127 || ip === 0;
      assert.ok(ok, `${name} uses ${a}, outside 198.18.0.0/15`);
    }
  }
  assert.deepEqual(addresses("a 10.0.0.1 netmask 255.0.0.0"), ["10.0.0.1"], "the scan finds them");
});

/** The values of one ISC statement (`address 198.18.0.1;` -> ["198.18.0.1"]) inside `text`. */
function statement(text: string, pattern: RegExp): string[] {
  const m = pattern.exec(text);
  assert.ok(m, `no ${pattern} in the ISC example`);
  return m.slice(1);
}

Deno.test("the ISC dhcpd half of the ISC pairing matches the duet half", async () => {
  const conf = await Deno.readTextFile(`${EXAMPLES}/pair-isc-dhcpd-primary.conf`);
  const duet = parseConfig(
    await Deno.readTextFile(`${EXAMPLES}/pair-isc-duet-secondary.yaml`),
    "pair-isc-duet-secondary.yaml",
  );
  const f = duet.failover;
  assert.ok(f);
  assert.equal(f.role, "secondary");
  assert.equal(f.split, null, "ISC refuses load balance settings on a secondary; so does duet");
  assert.equal(f.hba, null);
  const [name] = statement(conf, /failover peer "([^"]+)" \{/);
  assert.equal(f.relationship, name);
  assert.match(conf, /^\s*primary;/m);
  // NOTES.md pitfall 2: an ISC primary needs mclt and split.
  assert.match(conf, /^\s*mclt \d+;/m);
  assert.match(conf, /^\s*split \d+;/m);
  const [own] = statement(conf, /^\s*address (\S+);/m);
  const [peer] = statement(conf, /^\s*peer address (\S+);/m);
  assert.equal(formatIpv4(f.peer), own);
  assert.equal(formatIpv4(f.address), peer);
  assert.equal(String(f.peerPort), statement(conf, /^\s*port (\d+);/m)[0]);
  assert.equal(String(f.port), statement(conf, /^\s*peer port (\d+);/m)[0]);
  assert.equal(String(f.maxUnackedBndupd), statement(conf, /max-unacked-updates (\d+);/)[0]);
  assert.equal(String(f.maxResponseDelay), statement(conf, /max-response-delay (\d+);/)[0]);
  assert.equal(
    String(f.loadBalanceMaxSeconds),
    statement(conf, /load balance max seconds (\d+);/)[0],
  );
  const [net, mask] = statement(conf, /subnet (\S+) netmask (\S+) \{/);
  const s = duet.subnets[0];
  assert.ok(s && duet.subnets.length === 1);
  assert.equal(formatIpv4(s.subnet.network), net);
  assert.equal(formatIpv4(s.subnet.mask), mask);
  const [first, last] = statement(conf, /range (\S+) (\S+);/);
  assert.deepEqual(s.pools.map((p) => [formatIpv4(p.start), formatIpv4(p.end)]), [[first, last]]);
});

Deno.test("the ISC dhcpd half of the ISC pairing passes dhcpd -t", async (t) => {
  let found = true;
  try {
    await new Deno.Command("dhcpd", { args: ["--version"], stdout: "null", stderr: "null" })
      .output();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    found = false;
  }
  if (!requireOrSkip(t, found ? null : "ISC dhcpd is not installed (isc-dhcp-server)")) return;
  const test = async (path: string) => {
    const out = await new Deno.Command("dhcpd", {
      args: ["-t", "-4", "-cf", path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: out.code, said: new TextDecoder().decode(out.stderr) };
  };
  const ok = await test(`${EXAMPLES}/pair-isc-dhcpd-primary.conf`);
  assert.equal(ok.code, 0, ok.said);
  // The check can fail: the same file as a secondary that keeps split is refused.
  const dir = await Deno.makeTempDir({ prefix: "duet-isc-conf-" });
  try {
    const text = await Deno.readTextFile(`${EXAMPLES}/pair-isc-dhcpd-primary.conf`);
    await Deno.writeTextFile(`${dir}/bad.conf`, text.replace("  primary;", "  secondary;"));
    const bad = await test(`${dir}/bad.conf`);
    assert.notEqual(bad.code, 0);
    assert.match(bad.said, /secondary may not define load balance settings/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
