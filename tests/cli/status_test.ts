/**
 * `duet status`: against a real `duet serve` process (found through --config), and its exit
 * codes when the server is not running, on usage errors and on a bad configuration.
 */
import assert from "node:assert/strict";
import { statusCommand } from "../../lib/cli/status.ts";
import type { StatusSnapshot } from "../../lib/control/status.ts";
import { DuetProcess, freeUdpPort, runDuet } from "../e2e/process.ts";

function capture(): {
  out: string[];
  err: string[];
  io: { stdout(s: string): void; stderr(s: string): void };
} {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: (s) => out.push(s), stderr: (s) => err.push(s) } };
}

Deno.test("duet status reads the running server's status through its configuration", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-status-" });
  const socket = `${dir}/ctl.sock`;
  const configPath = `${dir}/duet.yaml`;
  await Deno.writeTextFile(
    configPath,
    `database: ${dir}/leases.db
listen:
  - address: 127.0.0.1
    port: ${freeUdpPort()}
subnets:
  - subnet: 198.18.21.0/24
    pools:
      - range: 198.18.21.100 - 198.18.21.199
control:
  socket: ${socket}
`,
  );
  const server = new DuetProcess(["--config", configPath]);
  try {
    await server.waitFor("duet serving");
    assert.match(server.stderr, /control=\S*ctl\.sock/, "serve logs the control socket");
    assert.equal(((await Deno.lstat(socket)).mode ?? 0) & 0o777, 0o600);

    const human = await runDuet(["status", "-c", configPath]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^duet {6}\d+\.\d+\.\d+, pid \d+, up \d+s$/m);
    assert.match(
      human.stdout,
      /^subnet {4}198\.18\.21\.0\/24 {2}0\/100 used \(0\.0%\), 100 free$/m,
    );
    assert.match(human.stdout, /^leases {4}none$/m);

    const json = await runDuet(["status", "--config", configPath, "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const s = JSON.parse(json.stdout) as StatusSnapshot;
    assert.equal(s.pid, server.child.pid);
    assert.equal(s.database, `${dir}/leases.db`);
    assert.deepEqual(s.subnets, [{ subnet: "198.18.21.0/24", size: 100, free: 100 }]);

    assert.equal(await server.stop("SIGTERM"), 0, server.stderr);
    assert.equal(
      await Deno.lstat(socket).then(() => true, () => false),
      false,
      "serve removes its socket when it stops",
    );
    const after = await runDuet(["status", "-c", configPath]);
    assert.equal(after.code, 1);
    assert.match(after.stderr, /duet serve is not running: no control socket at/);
  } finally {
    await server.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("statusCommand() exit codes: usage 2, bad configuration 3, nothing listening 1", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "duet-status-" });
  try {
    await t.step("no --config or --socket is a usage error", async () => {
      const c = capture();
      assert.equal(await statusCommand([], c.io), 2);
      assert.match(c.err.join(""), /exactly one of --config and --socket/);
    });
    await t.step("both --config and --socket is a usage error", async () => {
      const c = capture();
      assert.equal(await statusCommand(["-c", "x", "--socket", "y"], c.io), 2);
    });
    await t.step("an unknown flag is a usage error", async () => {
      const c = capture();
      assert.equal(await statusCommand(["--bogus"], c.io), 2);
    });
    await t.step("--help prints the usage and exits 0", async () => {
      const c = capture();
      assert.equal(await statusCommand(["--help"], c.io), 0);
      assert.match(c.out.join(""), /^Usage: duet status/);
    });
    await t.step("an invalid configuration exits 3", async () => {
      await Deno.writeTextFile(`${dir}/bad.yaml`, "database: x.db\ncontrol: { metrics: nope }\n");
      const r = await runDuet(["status", "-c", `${dir}/bad.yaml`]);
      assert.equal(r.code, 3, r.stderr);
    });
    await t.step("a missing socket exits 1 and says the server is not running", async () => {
      const c = capture();
      assert.equal(await statusCommand(["--socket", `${dir}/none.sock`], c.io), 1);
      assert.match(c.err.join(""), /duet serve is not running: no control socket at/);
    });
    await t.step("a socket nobody listens on exits 1 with the reason", async () => {
      // A regular file where the socket should be: connecting fails, the file exists.
      await Deno.writeTextFile(`${dir}/file.sock`, "");
      const c = capture();
      assert.equal(await statusCommand(["--socket", `${dir}/file.sock`], c.io), 1);
      assert.match(c.err.join(""), /Cannot reach duet serve on /);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
