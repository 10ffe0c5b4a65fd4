/**
 * The two ways duet ships: `deno task bundle` (one JS file for a stock deno) and
 * `deno task compile` (one executable; needs the denort runtime, see README "Building").
 */
import assert from "node:assert/strict";
import { ROOT } from "../e2e/process.ts";

/** The permissions duet runs with (the same as the compile task bakes in). */
const PERMISSIONS = [
  "--allow-net",
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env=LOG_TOKENS,LOG_STREAM",
  "--unstable-net",
];

async function run(
  cmd: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; out: string }> {
  const child = new Deno.Command(cmd[0] as string, {
    args: cmd.slice(1),
    cwd: options.cwd ?? ROOT,
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  const r = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

function freePort(): number {
  const c = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (c.addr as Deno.NetAddr).port;
  c.close();
  return port;
}

Deno.test("deno bundle output runs the demo and validates a config with duet's own permissions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "duet-bundle-" });
  try {
    const js = `${dir}/duet.js`;
    const b = await run([Deno.execPath(), "bundle", "--output", js, "main.ts"]);
    assert.equal(b.code, 0, b.out);
    const deno = [Deno.execPath(), "run", ...PERMISSIONS, js];
    const v = await run([...deno, "version"], { cwd: dir });
    assert.equal(v.code, 0, v.out);
    assert.match(v.out, /^duet \d+\.\d+\.\d+/);
    const c = await run([...deno, "check", "--config", `${ROOT}examples/two-lans.yaml`], {
      cwd: dir,
    });
    assert.equal(c.code, 0, c.out);
    const demo = await run([...deno, "demo", "--clients", "3", "--port", String(freePort())], {
      cwd: dir,
    });
    assert.equal(demo.code, 0, demo.out);
    assert.match(demo.out, /secondary: NORMAL -> COMMUNICATIONS-INTERRUPTED/);
    assert.match(demo.out, /6\. Both lease tables agree: yes/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Where `deno compile` finds denort without downloading it, or why it cannot. */
function findDenort(): { env: Record<string, string> } | { missing: string } {
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) {
    try {
      Deno.statSync(bin);
      return { env: { DENORT_BIN: bin } };
    } catch {
      return { missing: `DENORT_BIN=${bin} does not exist` };
    }
  }
  const target = `${Deno.build.arch}-unknown-linux-gnu`;
  const info = new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
    .outputSync();
  const denoDir = (JSON.parse(new TextDecoder().decode(info.stdout)) as { denoDir: string })
    .denoDir;
  const zip = `${denoDir}/dl/release/v${Deno.version.deno}/denort-${target}.zip`;
  try {
    Deno.statSync(zip);
    return { env: {} };
  } catch {
    return {
      missing: `no denort runtime: DENORT_BIN is unset and ${zip} is absent ` +
        "(deno compile downloads it from dl.deno.land, which this machine cannot reach)",
    };
  }
}

Deno.test("deno task compile builds dist/duet, which runs version, check and the demo", async (t) => {
  const denort = findDenort();
  if ("missing" in denort) {
    // Not a CI failure: no machine here can obtain denort (README, "Building").
    // deno-lint-ignore no-console
    console.log(`SKIP ${t.name}: ${denort.missing}`);
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "duet-compile-" });
  try {
    const exe = `${dir}/duet`;
    const b = await run(
      [Deno.execPath(), "compile", ...PERMISSIONS, "--output", exe, "main.ts"],
      { env: denort.env },
    );
    assert.equal(b.code, 0, b.out);
    const v = await run([exe, "version"], { cwd: dir });
    assert.equal(v.code, 0, v.out);
    const c = await run([exe, "check", "--config", `${ROOT}examples/two-lans.yaml`], { cwd: dir });
    assert.equal(c.code, 0, c.out);
    const demo = await run([exe, "demo", "--clients", "3", "--port", String(freePort())], {
      cwd: dir,
    });
    assert.equal(demo.code, 0, demo.out);
    assert.match(demo.out, /\bactive\b/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
