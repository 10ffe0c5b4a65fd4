/**
 * Resident memory of `duet serve`: idle with an empty database, idle with 100,000 active
 * leases, and after perfdhcp at 4000/s for 10 s; each with the default V8 heap and with
 * capped heaps. Prints VmRSS and VmHWM (/proc/PID/status), the ACK rate of the load run, and
 * the sizes of dist/duet.js and the deno binary.
 *
 *   sudo deno run --allow-all bench/memory.ts
 *   sudo MEMORY_ENTRY=dist/duet.js deno run --allow-all bench/memory.ts   # the bundle
 *
 * Needs root, iproute2, taskset and perfdhcp (Debian kea-admin); without them it prints why
 * and exits 0. Namespaces db-srv-<pid>/db-cli-<pid> in 198.18.0.0/15 (bench/topology.ts) are
 * removed at the end.
 */
import { findTool, output, progress, sleep } from "./command.ts";
import { runPerfdhcp } from "./perfdhcp.ts";
import { CLOCK_TICKS, readCpuTicks } from "./proc.ts";
import { startServer, stopServer, tail } from "./server_process.ts";
import { duetConfig, POOL_START, PROJECT_DIR, type ServerSpec } from "./servers.ts";
import { createTopology, destroyTopology, type Topology, topologyNames } from "./topology.ts";
import { SqliteLeaseStore } from "../lib/store/sqlite.ts";
import { emptyLease } from "../lib/store/store.ts";
import { parseIpv4 } from "../lib/wire/ip.ts";

/** Active leases in the "100k" database. */
const LEASES = 100_000;
const LOAD_RATE = 4000;
const LOAD_SECONDS = 10;
/** How long an idle server settles before it is measured. */
const SETTLE_MS = 3000;

/** V8 heap settings compared; `flags` go before the script name. */
const VARIANTS: { name: string; flags: string[] }[] = [
  { name: "default", flags: [] },
  { name: "old=64M", flags: ["--v8-flags=--max-old-space-size=64"] },
  {
    name: "old=64M semi=1M",
    flags: ["--v8-flags=--max-old-space-size=64,--max-semi-space-size=1"],
  },
];

type Scenario = "idle, empty db" | "idle, 100k leases" | "load 4000/s 10 s";
const SCENARIOS: Scenario[] = ["idle, empty db", "idle, 100k leases", "load 4000/s 10 s"];

interface Row {
  scenario: Scenario;
  variant: string;
  rssKib: number;
  hwmKib: number;
  acksPerSecond: number | null;
  /** Server CPU (user + system, all threads) per ACK during the load run, in microseconds. */
  cpuMicrosPerAck: number | null;
  error?: string;
}

/** VmRSS and VmHWM of one process, in KiB. */
function readMemory(pid: number): { rssKib: number; hwmKib: number } {
  const text = Deno.readTextFileSync(`/proc/${pid}/status`);
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1]);
  return { rssKib: field("VmRSS"), hwmKib: field("VmHWM") };
}

/** Writes `count` active leases from the pool start, ending a day from now, in one commit. */
function writeLeases(path: string, count: number): void {
  const store = SqliteLeaseStore.open(path);
  const now = Math.floor(Date.now() / 1000);
  const first = parseIpv4(POOL_START) as number;
  try {
    for (let i = 0; i < count; i++) {
      store.put({
        ...emptyLease(first + i, "active"),
        hwAddress: new Uint8Array([2, 0, (i >> 24) & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i]),
        starts: now,
        ends: now + 86_400,
        cltt: now,
      });
    }
    store.commit();
  } finally {
    store.close();
  }
}

function duetSpec(entry: string, flags: string[]): ServerSpec {
  return {
    name: "duet",
    binary: Deno.execPath(),
    storage: "SQLite",
    readyText: "duet serving",
    cwd: PROJECT_DIR,
    prepare: (dir, t) => Deno.writeTextFile(`${dir}/duet.yaml`, duetConfig(dir, t)),
    command: (dir) => [
      Deno.execPath(),
      "run",
      "--allow-all",
      ...flags,
      entry,
      "serve",
      "--config",
      `${dir}/duet.yaml`,
    ],
    countLeases: () => Promise.resolve(0),
    version: () => Promise.resolve(""),
  };
}

async function measure(
  t: Topology,
  entry: string,
  scenario: Scenario,
  variant: (typeof VARIANTS)[number],
): Promise<Row> {
  const dir = await Deno.makeTempDir({ prefix: "duet-memory-" });
  const spec = duetSpec(entry, variant.flags);
  const row: Row = {
    scenario,
    variant: variant.name,
    rssKib: 0,
    hwmKib: 0,
    acksPerSecond: null,
    cpuMicrosPerAck: null,
  };
  try {
    await spec.prepare(dir, t);
    if (scenario === "idle, 100k leases") writeLeases(`${dir}/leases.db`, LEASES);
    const server = await startServer(spec, dir, { topology: t, cpu: 1 });
    try {
      await sleep(SETTLE_MS);
      if (scenario === "load 4000/s 10 s") {
        const before = readCpuTicks(server.pid);
        const run = await runPerfdhcp(t, {
          rate: LOAD_RATE,
          durationSeconds: LOAD_SECONDS,
          clientCpu: 0,
        });
        const acks = run.stats.requestAck.received;
        const ticks = readCpuTicks(server.pid) - before;
        row.acksPerSecond = Math.round(acks / LOAD_SECONDS);
        row.cpuMicrosPerAck = acks > 0 ? Math.round((ticks / CLOCK_TICKS) * 1e6 / acks) : null;
      }
      if (server.exited()) throw new Error(`duet exited:\n${await tail(server.logFile)}`);
      Object.assign(row, readMemory(server.pid));
    } finally {
      await stopServer(server);
    }
  } catch (e) {
    row.error = e instanceof Error ? e.message : String(e);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return row;
}

function mib(kib: number): string {
  return (kib / 1024).toFixed(1);
}

async function fileSize(path: string): Promise<string> {
  try {
    return `${mib((await Deno.stat(path)).size / 1024)} MiB`;
  } catch {
    return "missing (run deno task bundle)";
  }
}

function formatTable(rows: Row[]): string {
  const head = ["scenario", "V8 heap", "VmRSS MiB", "VmHWM MiB", "ACKs/s", "CPU µs/ACK"];
  const lines = rows.map((r) =>
    r.error === undefined
      ? [
        r.scenario,
        r.variant,
        mib(r.rssKib),
        mib(r.hwmKib),
        r.acksPerSecond?.toString() ?? "-",
        r.cpuMicrosPerAck?.toString() ?? "-",
      ]
      : [r.scenario, r.variant, "error", r.error.split("\n")[0] ?? "", "", ""]
  );
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const fmt = (cells: string[]) =>
    "| " + cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ") + " |\n";
  return fmt(head) + fmt(widths.map((w) => "-".repeat(w))) + lines.map(fmt).join("");
}

async function main(): Promise<number> {
  const missing = [
    Deno.uid() === 0 ? null : "root",
    ...["ip", "taskset", "perfdhcp"].map((tool) => (findTool(tool) ? null : tool)),
  ].filter((m) => m !== null);
  if (missing.length > 0) {
    output(`bench/memory.ts: skipped, missing: ${missing.join(", ")}\n`);
    return 0;
  }
  const entry = `${PROJECT_DIR}/${Deno.env.get("MEMORY_ENTRY") ?? "main.ts"}`;
  const t = topologyNames(Deno.pid);
  const cleanUp = () => destroyTopology(t);
  Deno.addSignalListener("SIGINT", () => cleanUp().finally(() => Deno.exit(130)));
  const rows: Row[] = [];
  try {
    await createTopology(t);
    for (const scenario of SCENARIOS) {
      for (const variant of VARIANTS) {
        progress(`${scenario}, ${variant.name}`);
        rows.push(await measure(t, entry, scenario, variant));
      }
    }
  } finally {
    await cleanUp();
  }
  output(`duet serve (${entry.slice(PROJECT_DIR.length + 1)}), deno ${Deno.version.deno}\n\n`);
  output(formatTable(rows));
  output(`\ndist/duet.js: ${await fileSize(`${PROJECT_DIR}/dist/duet.js`)}\n`);
  output(`deno binary (${Deno.execPath()}): ${await fileSize(Deno.execPath())}\n`);
  return rows.some((r) => r.error !== undefined) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
