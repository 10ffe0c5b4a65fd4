/**
 * The servers under test: how to configure, start and count the persisted leases of duet,
 * Kea, ISC dhcpd and dnsmasq with the same pool, lease time and authority.
 */
import { findTool, runCommand } from "./command.ts";
import type { Topology } from "./topology.ts";

/** The pool every server hands out: 126,971 addresses of 198.18.0.0/15. */
export const POOL_START = "198.18.16.0";
/** Last address of the pool. */
export const POOL_END = "198.19.255.250";
/** Lease time in seconds (default and max). */
export const LEASE_TIME = 3600;

/** The duet checkout this harness lives in. */
export const PROJECT_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** One DHCPv4 server the benchmark knows how to run. */
export interface ServerSpec {
  /** Short name, as in BENCH_SERVERS. */
  name: string;
  /** The executable that must exist for this server to be measured. */
  binary: string;
  /** Storage and durability in a few words, for the results. */
  storage: string;
  /** When set, the server is ready once its output contains this text; else UDP :67 is bound. */
  readyText?: string;
  /** Extra environment for the server process. */
  env?: Record<string, string>;
  /** Working directory of the server process. */
  cwd?: string;
  /** Writes the configuration into the empty run directory `dir`. */
  prepare(dir: string, t: Topology): Promise<void>;
  /** The foreground command line. */
  command(dir: string, t: Topology): string[];
  /** Distinct active leases persisted in `dir` (called after the server stopped). */
  countLeases(dir: string): Promise<number>;
  /** One line naming the version. */
  version(): Promise<string>;
  /** Validates the configuration in `dir`; returns the error output, or null when it is valid. */
  check?(dir: string, t: Topology): Promise<string | null>;
}

function denoRun(...args: string[]): string[] {
  return [Deno.execPath(), "run", "--allow-all", `${PROJECT_DIR}/main.ts`, ...args];
}

/** duet's configuration, as /work/shared/bench/duet.sh writes it. */
export function duetConfig(dir: string, t: Topology): string {
  return [
    `database: ${dir}/leases.db`,
    "authoritative: true",
    "listen:",
    `  - interface: ${t.serverIf}`,
    `lease-time: { default: ${LEASE_TIME}, max: ${LEASE_TIME} }`,
    "subnets:",
    "  - subnet: 198.18.0.0/15",
    "    pools:",
    `      - range: ${POOL_START} - ${POOL_END}`,
    "",
  ].join("\n");
}

/** Counts entries whose state is "active" in `duet leases --json` output. */
export function countDuetLeases(json: string): number {
  const doc: unknown = JSON.parse(json);
  const rows = Array.isArray(doc)
    ? doc
    : (doc !== null && typeof doc === "object" && "leases" in doc &&
        Array.isArray(doc.leases))
    ? doc.leases as unknown[]
    : [];
  let n = 0;
  for (const row of rows) {
    if (row === null || typeof row !== "object" || !("state" in row)) continue;
    if (String(row.state).toLowerCase() === "active") n++;
  }
  return n;
}

/** Kea memfile CSV: distinct addresses (column 1) with valid_lifetime (column 4) > 0. */
export function countKeaLeases(csv: string): number {
  const addresses = new Set<string>();
  for (const line of csv.split("\n")) {
    const f = line.split(",");
    if (f[0] === "address" || f[0] === "" || f.length < 4) continue;
    if (Number(f[3]) > 0) addresses.add(f[0]!);
  }
  return addresses.size;
}

/** dhcpd leases file: distinct addresses whose last "binding state" is active. */
export function countDhcpdLeases(text: string): number {
  const state = new Map<string, string>();
  let address = "";
  for (const line of text.split("\n")) {
    let m: RegExpExecArray | null;
    if ((m = /^lease (\S+) \{/.exec(line))) address = m[1]!;
    else if ((m = /^\s+binding state (\S+);/.exec(line))) state.set(address, m[1]!);
  }
  let n = 0;
  for (const s of state.values()) if (s === "active") n++;
  return n;
}

/** dnsmasq lease file: distinct addresses (field 3). */
export function countDnsmasqLeases(text: string): number {
  const addresses = new Set<string>();
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 3) addresses.add(f[2]!);
  }
  return addresses.size;
}

async function readAll(paths: string[]): Promise<string> {
  let text = "";
  for (const p of paths) {
    try {
      text += await Deno.readTextFile(p) + "\n";
    } catch {
      // not written
    }
  }
  return text;
}

async function firstLine(args: string[]): Promise<string> {
  const r = await runCommand(args, { timeoutMs: 30_000 });
  return (r.stdout + r.stderr).trim().split("\n")[0] ?? "";
}

const DUET: ServerSpec = {
  name: "duet",
  binary: Deno.execPath(),
  storage: "SQLite WAL, group commit, fdatasync before ACK",
  readyText: "duet serving",
  cwd: PROJECT_DIR,
  prepare: (dir, t) => Deno.writeTextFile(`${dir}/duet.yaml`, duetConfig(dir, t)),
  command: (dir) => denoRun("serve", "--config", `${dir}/duet.yaml`),
  async countLeases(dir) {
    const r = await runCommand(denoRun("leases", "--db", `${dir}/leases.db`, "--json"), {
      cwd: PROJECT_DIR,
      timeoutMs: 60_000,
    });
    if (r.code !== 0) throw new Error(`duet leases failed: ${r.stderr.trim()}`);
    return countDuetLeases(r.stdout);
  },
  version: () => firstLine(denoRun("version")),
  async check(dir) {
    const r = await runCommand(denoRun("check", "--config", `${dir}/duet.yaml`), {
      cwd: PROJECT_DIR,
      timeoutMs: 60_000,
    });
    return r.code === 0 ? null : `exit ${r.code}\n${r.stdout}${r.stderr}`.trim();
  },
};

const KEA: ServerSpec = {
  name: "kea",
  binary: "kea-dhcp4",
  storage: "memfile CSV, no fsync",
  prepare: (dir, t) =>
    Deno.writeTextFile(
      `${dir}/kea-dhcp4.json`,
      JSON.stringify(
        {
          Dhcp4: {
            "interfaces-config": { interfaces: [t.serverIf], "dhcp-socket-type": "raw" },
            "lease-database": {
              type: "memfile",
              persist: true,
              name: `${dir}/kea-leases4.csv`,
              "lfc-interval": 3600,
            },
            "multi-threading": { "enable-multi-threading": false },
            "valid-lifetime": LEASE_TIME,
            authoritative: true,
            subnet4: [{
              id: 1,
              subnet: "198.18.0.0/15",
              pools: [{ pool: `${POOL_START} - ${POOL_END}` }],
            }],
            loggers: [{
              name: "kea-dhcp4",
              severity: "INFO",
              "output_options": [{ output: `${dir}/kea-dhcp4.log` }],
            }],
          },
        },
        null,
        2,
      ),
    ),
  command: (
    dir,
  ) => [
    "env",
    `KEA_PIDFILE_DIR=${dir}`,
    `KEA_LOCKFILE_DIR=${dir}`,
    "kea-dhcp4",
    "-c",
    `${dir}/kea-dhcp4.json`,
  ],
  async countLeases(dir) {
    const files = [...Deno.readDirSync(dir)]
      .filter((e) => e.name.startsWith("kea-leases4.csv"))
      .map((e) => `${dir}/${e.name}`);
    return countKeaLeases(await readAll(files));
  },
  version: async () => `kea-dhcp4 ${await firstLine(["kea-dhcp4", "-V"])}`,
};

const DHCPD: ServerSpec = {
  name: "dhcpd",
  binary: "dhcpd",
  storage: "leases file, fsync per lease",
  async prepare(dir) {
    await Deno.writeTextFile(
      `${dir}/dhcpd.conf`,
      [
        "authoritative;",
        `default-lease-time ${LEASE_TIME};`,
        `max-lease-time ${LEASE_TIME};`,
        "ddns-update-style none;",
        "subnet 198.18.0.0 netmask 255.254.0.0 {",
        `  range ${POOL_START} ${POOL_END};`,
        "}",
        "",
      ].join("\n"),
    );
    await Deno.writeTextFile(`${dir}/dhcpd.leases`, "");
  },
  command: (dir, t) => [
    "dhcpd",
    "-4",
    "-f",
    "-d",
    "-cf",
    `${dir}/dhcpd.conf`,
    "-lf",
    `${dir}/dhcpd.leases`,
    "-pf",
    `${dir}/dhcpd.pid`,
    t.serverIf,
  ],
  countLeases: async (dir) => countDhcpdLeases(await readAll([`${dir}/dhcpd.leases`])),
  version: () => firstLine(["dhcpd", "--version"]),
};

const DNSMASQ: ServerSpec = {
  name: "dnsmasq",
  binary: "dnsmasq",
  storage: "lease file rewritten + fsync per change",
  prepare: () => Promise.resolve(),
  command: (dir, t) => [
    "dnsmasq",
    "--no-daemon",
    "--conf-file=/dev/null",
    "--port=0",
    `--interface=${t.serverIf}`,
    "--dhcp-authoritative",
    `--dhcp-range=${POOL_START},${POOL_END},255.254.0.0,${LEASE_TIME}`,
    "--dhcp-lease-max=150000",
    `--dhcp-leasefile=${dir}/dnsmasq.leases`,
    "--no-ping",
  ],
  countLeases: async (dir) => countDnsmasqLeases(await readAll([`${dir}/dnsmasq.leases`])),
  version: () => firstLine(["dnsmasq", "--version"]),
};

/** Every server the harness knows, in the order they are measured. */
export const SERVERS: readonly ServerSpec[] = [DUET, KEA, DHCPD, DNSMASQ];

/** Why `spec` cannot be measured here, or null when its binary exists. */
export function serverMissing(spec: ServerSpec): string | null {
  if (spec.binary.startsWith("/")) return null;
  return findTool(spec.binary) === null ? `"${spec.binary}" is not installed` : null;
}
