/**
 * The pure core may not touch I/O, clocks or timers (STYLE.md §3): only the shells, the CLI
 * commands, config loading and the SQLite store may. This keeps the core deterministic.
 */
import assert from "node:assert/strict";
import { ROOT } from "./e2e/process.ts";

/** Modules allowed to do I/O or read clocks. */
const SHELLS = new Set([
  "lib/log.ts",
  "lib/config/config.ts", // loadConfig reads the file; parseConfig is pure
  "lib/server/shell.ts",
  "lib/server/udp_deno.ts",
  "lib/server/udp_ffi.ts",
  "lib/server/libc.ts",
  "lib/server/bpf.ts", // bpf(2): loads the kernel filter lib/balance/kernel_filter.ts builds
  "lib/server/kernel_balance.ts", // the filter's one-second timer
  "lib/store/sqlite.ts",
  "lib/peer/tcp.ts",
  "lib/control/http.ts",
  "lib/hooks/runner.ts", // spawns the lease-event hook; lib/hooks/event.ts is pure
]);

const FORBIDDEN =
  /\bDeno\.(?!TestContext)|\bDate\.now\(|\bnew Date\(\)|\bsetTimeout\(|\bsetInterval\(|\bperformance\.now\(|\bMath\.random\(|from "node:(dgram|net|sqlite|fs|child_process)"/;

function* walk(dir: string): Generator<string> {
  for (const e of Deno.readDirSync(`${ROOT}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) yield* walk(path);
    else if (e.name.endsWith(".ts")) yield path;
  }
}

Deno.test("pure modules use no I/O, clock, timer or randomness", () => {
  const offenders: string[] = [];
  let checked = 0;
  for (const path of walk("lib")) {
    if (SHELLS.has(path) || path.startsWith("lib/cli/")) continue;
    checked++;
    const lines = Deno.readTextFileSync(`${ROOT}${path}`).split("\n");
    lines.forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, "");
      if (/^\s*\*/.test(line)) return; // JSDoc
      if (FORBIDDEN.test(code)) offenders.push(`${path}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.ok(checked >= 10, `only ${checked} pure modules found`);
  assert.deepEqual(offenders, []);
});

Deno.test("the purity check itself flags a clock read", () => {
  assert.ok(FORBIDDEN.test("const t = Date.now();"));
  assert.ok(FORBIDDEN.test('import { DatabaseSync } from "node:sqlite";'));
  assert.ok(!FORBIDDEN.test("const now = options.now;"));
});
