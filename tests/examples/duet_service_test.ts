/**
 * examples/duet.service: systemd accepts it (systemd-analyze verify, when installed), it has
 * the sections and keys the README relies on, and it runs duet with the permissions of
 * `deno task compile`.
 */
import assert from "node:assert/strict";
import { ROOT } from "../e2e/process.ts";

const UNIT = `${ROOT}examples/duet.service`;

/** Sections of a unit file as key -> values (repeats kept); throws on a line of neither form. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return;
    const section = /^\[([A-Za-z]+)\]$/.exec(line);
    if (section) {
      assert.ok(!sections.has(section[1] as string), `line ${i + 1}: repeated section`);
      current = new Map();
      sections.set(section[1] as string, current);
      return;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    assert.ok(kv, `line ${i + 1} is neither [Section] nor Key=Value: ${line}`);
    assert.ok(current, `line ${i + 1}: key before the first section`);
    const [, key, value] = kv as unknown as [string, string, string];
    current.set(key, [...(current.get(key) ?? []), value]);
  });
  return sections;
}

/** The --allow-* and --unstable-* flags of a command line. */
function permissionFlags(command: string): string[] {
  return command.split(/\s+/).filter((w) => /^--(allow|unstable)-/.test(w)).sort();
}

Deno.test("examples/duet.service has the sections, keys and permissions duet needs", async () => {
  const unit = parseUnit(await Deno.readTextFile(UNIT));
  assert.deepEqual([...unit.keys()], ["Unit", "Service", "Install"]);
  const service = unit.get("Service") as Map<string, string[]>;
  const one = (key: string) => {
    const v = service.get(key);
    assert.equal(v?.length, 1, `exactly one ${key}=`);
    return v[0] as string;
  };
  assert.equal(one("User"), "duet");
  assert.equal(one("StateDirectory"), "duet");
  assert.equal(one("RuntimeDirectory"), "duet");
  assert.equal(one("Restart"), "on-failure");
  // systemctl reload: SIGHUP makes duet serve re-read its configuration.
  assert.equal(one("ExecReload"), "/bin/kill -HUP $MAINPID");
  assert.equal(one("NoNewPrivileges"), "yes");
  assert.equal(one("ProtectSystem"), "strict");
  // Port 67, SIOCSARP and SO_RCVBUFFORCE; nothing more.
  assert.deepEqual(one("AmbientCapabilities").split(" ").sort(), [
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
  ]);
  // The FFI socket is AF_INET; the control socket AF_UNIX.
  const families = one("RestrictAddressFamilies").split(" ");
  for (const f of ["AF_INET", "AF_UNIX"]) assert.ok(families.includes(f), f);
  assert.equal(service.has("MemoryDenyWriteExecute"), false, "V8 needs W+X pages");
  assert.equal(service.has("PrivateNetwork"), false, "duet needs the router's interfaces");

  const start = one("ExecStart");
  assert.match(start, /^\/usr\/local\/bin\/deno run .* \/usr\/local\/lib\/duet\/duet\.js serve /);
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks;
  assert.deepEqual(permissionFlags(start), permissionFlags(tasks.compile));
  assert.equal(
    (unit.get("Install") as Map<string, string[]>).get("WantedBy")?.[0],
    "multi-user.target",
  );
});

Deno.test("examples/duet.service passes systemd-analyze verify", async (t) => {
  let found = true;
  try {
    await new Deno.Command("systemd-analyze", { args: ["--version"], stdout: "null" }).output();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    found = false;
  }
  if (!found) {
    if (Deno.env.get("CI") === "true") assert.fail("systemd-analyze is missing under CI=true");
    // deno-lint-ignore no-console
    console.log("skipped: systemd-analyze is not installed");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "duet-unit-" });
  try {
    // verify checks that ExecStart's program exists: point it at this deno.
    const text = (await Deno.readTextFile(UNIT)).replaceAll("/usr/local/bin/deno", Deno.execPath());
    await Deno.writeTextFile(`${dir}/duet.service`, text);
    await t.step("the unit verifies without a warning", async () => {
      const out = await new Deno.Command("systemd-analyze", {
        args: ["verify", `${dir}/duet.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, said);
      // Unknown keys and bad values are only warnings (exit 0), so any output is a failure.
      assert.equal(said.trim(), "");
    });
    await t.step("a bad key would be reported (the check can fail)", async () => {
      await Deno.writeTextFile(`${dir}/bad.service`, text.replace("[Service]", "[Service]\nFoo=1"));
      const out = await new Deno.Command("systemd-analyze", {
        args: ["verify", `${dir}/bad.service`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.match(new TextDecoder().decode(out.stderr), /Unknown key 'Foo'/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
