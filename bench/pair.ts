/**
 * Pair mode (issue #5): a failover pair in NORMAL with `split 128` on one bridge, perfdhcp
 * from a third namespace, every lease sent to the partner by BNDUPD. Two pairs are known: two
 * duet servers, and two ISC dhcpd 4.4 (as /work/shared/bench/dhcpd-failover.sh runs them).
 * Each run starts both servers of a pair from a snapshot of a balanced NORMAL pair (made once
 * per spec: a fresh pair would first spend the MCLT in RECOVER-WAIT and move half the pool to
 * BACKUP), both pinned to the server CPU, so that the pair gets the one core a single server
 * gets.
 */
import { requestControl } from "../lib/cli/status.ts";
import type { AckLatencySummary } from "../lib/peer/ack_latency.ts";
import { findTool, progress, runCommand, sleep } from "./command.ts";
import { type ExchangeStats, runPerfdhcp } from "./perfdhcp.ts";
import { CLOCK_TICKS, readPeakRssKib, readSystemBusyTicks, readTreeCpuTicks } from "./proc.ts";
import {
  describeRun,
  type LiveProcesses,
  NOISY_CORES,
  POOL_BUDGET,
  type RunResult,
  waitQuiet,
} from "./measure.ts";
import { type ServerProcess, startServer, stopServer, tail } from "./server_process.ts";
import {
  countDhcpdLeases,
  countDuetLeases,
  LEASE_TIME,
  POOL_END,
  POOL_START,
  PROJECT_DIR,
  type ServerSpec,
} from "./servers.ts";
import { judgeRun } from "./sweep.ts";
import type { PairTopology } from "./topology.ts";

/** The two ends of a pair. */
export type PairRole = "primary" | "secondary";
const ROLES: readonly PairRole[] = ["primary", "secondary"];

/** The failover settings both pairs use (those of dhcpd-failover.sh). */
export const PAIR_SETTINGS = {
  relationship: "bench",
  mclt: 300,
  split: 128,
  loadBalanceMaxSeconds: 3,
  maxUnackedBndupd: 10,
  maxResponseDelay: 30,
} as const;

/** What a pair run records beyond a single server's run. */
export interface PairExtras {
  /** Active leases persisted by the secondary (`leases` is the primary's). */
  leasesSecondary: number | null;
  /** DHCPACKs each server sent during the run (duet: from GET /status), or null. */
  acks: Record<PairRole, number> | null;
  /** BNDUPD -> BNDACK round trips measured by each side (duet only). */
  bndack: Record<PairRole, AckLatencySummary | null> | null;
  /**
   * Requests each side's kernel filter dropped as the partner's since it started (duet
   * only; 0 with BENCH_KERNEL_FILTER=0 or where the kernel refuses eBPF), or null.
   */
  kernelDropped?: Record<PairRole, number> | null;
  /** The larger side's median and p99, ms. */
  bndackP50Ms: number | null;
  bndackP99Ms: number | null;
  /** Most lease changes not yet acknowledged by the partner (queued + in flight), either side. */
  backlogPeak: number | null;
  /** Seconds after perfdhcp ended until both backlogs were empty, or null if they never were. */
  drainSeconds: number | null;
}

/** A pair the benchmark knows how to run. */
export interface PairSpec {
  name: string;
  binary: string;
  storage: string;
  version(): Promise<string>;
  /** Builds the balanced NORMAL pair in `dir` once; returns a line describing how it went. */
  snapshot(dir: string, t: PairTopology, cpu: number): Promise<string>;
  /** Writes the run directory `dir` (`dir/primary`, `dir/secondary`) from the snapshot. */
  prepare(dir: string, snapshot: string, t: PairTopology): Promise<void>;
  /** The ServerSpec of one side, for server_process.startServer. */
  side(role: PairRole, dir: string, t: PairTopology): ServerSpec;
  /** True once both are in NORMAL and idle (called until true, bounded by the caller). */
  ready(dir: string): Promise<boolean>;
  /** Sizes of both sides' backlogs, or null when the pair cannot tell (ISC). */
  backlog(dir: string): Promise<Record<PairRole, number> | null>;
  /** Failover figures read before the servers stop (duet: GET /status). */
  stats(dir: string): Promise<Pick<PairExtras, "acks" | "bndack" | "kernelDropped">>;
  /** Active leases each side persisted (after the servers stopped). */
  countLeases(dir: string): Promise<Record<PairRole, number>>;
}

function namespaceOf(role: PairRole, t: PairTopology): string {
  return role === "primary" ? t.serverNs : t.secondNs;
}

function interfaceOf(role: PairRole, t: PairTopology): string {
  return role === "primary" ? t.serverIf : t.secondIf;
}

function addressOf(role: PairRole, t: PairTopology): string {
  return role === "primary" ? t.serverAddress : t.secondAddress;
}

function partnerOf(role: PairRole): PairRole {
  return role === "primary" ? "secondary" : "primary";
}

/** Pool addresses (the single servers' pool): BACKUP gets floor(size / 2) of them (§5.4). */
export const POOL_SIZE = ipNumber(POOL_END) - ipNumber(POOL_START) + 1;

function ipNumber(a: string): number {
  return a.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

// ---- duet pair -----------------------------------------------------------------------------

/** One side's configuration: the single server's plus the failover section. */
export function duetPairConfig(dbDir: string, role: PairRole, t: PairTopology): string {
  const s = PAIR_SETTINGS;
  const primaryOnly = role === "primary" ? [`  mclt: ${s.mclt}`, `  split: ${s.split}`] : [];
  return [
    `database: ${dbDir}/leases.db`,
    "authoritative: true",
    "listen:",
    `  - interface: ${interfaceOf(role, t)}`,
    `lease-time: { default: ${LEASE_TIME}, max: ${LEASE_TIME} }`,
    "subnets:",
    "  - subnet: 198.18.0.0/15",
    "    pools:",
    `      - range: ${POOL_START} - ${POOL_END}`,
    "failover:",
    `  role: ${role}`,
    `  address: ${addressOf(role, t)}`,
    "  port: 647",
    `  peer: ${addressOf(partnerOf(role), t)}`,
    "  peer-port: 647",
    `  relationship: ${s.relationship}`,
    ...primaryOnly,
    `  load-balance-max-seconds: ${s.loadBalanceMaxSeconds}`,
    `  max-unacked-bndupd: ${s.maxUnackedBndupd}`,
    `  max-response-delay: ${s.maxResponseDelay}`,
    // BENCH_KERNEL_FILTER=0 measures the pair balancing in user space only (bench/README.md).
    ...(Deno.env.get("BENCH_KERNEL_FILTER") === "0" ? ["  kernel-filter: false"] : []),
    "",
  ].join("\n");
}

/** The parts of GET /status the harness reads. */
export interface DuetPairStatus {
  state: string | null;
  "partner-state": string | null;
  leases: Record<string, number>;
  dhcp: { sent: Record<string, number> };
  failover: {
    updates?: { queued: number; unacked: number; ackLatency: AckLatencySummary | null };
    kernelFilter?: { dropped: Record<string, number> };
  } | null;
}

function kernelDropped(s: DuetPairStatus): number {
  return Object.values(s.failover?.kernelFilter?.dropped ?? {}).reduce((a, b) => a + b, 0);
}

/** In NORMAL with a NORMAL partner and nothing waiting for the partner's acknowledgement. */
export function duetSideIdle(s: DuetPairStatus): boolean {
  const b = s.failover?.updates;
  return s.state === "normal" && s["partner-state"] === "normal" && b !== undefined &&
    b.queued === 0 && b.unacked === 0;
}

/** queued + in flight, or null without failover figures. */
export function duetBacklog(s: DuetPairStatus): number | null {
  const b = s.failover?.updates;
  return b === undefined ? null : b.queued + b.unacked;
}

async function duetStatus(dir: string, role: PairRole): Promise<DuetPairStatus | null> {
  try {
    const r = await requestControl(`${dir}/${role}/leases.db.sock`, "/status", {
      timeoutMs: 2000,
    });
    return r.status === 200 ? JSON.parse(r.body) as DuetPairStatus : null;
  } catch {
    return null;
  }
}

function denoRun(...args: string[]): string[] {
  return [Deno.execPath(), "run", "--allow-all", `${PROJECT_DIR}/main.ts`, ...args];
}

/**
 * `duet serve` of one side. BENCH_DENO_FLAGS adds deno flags (for a profile, e.g.
 * `--v8-flags=--perf-basic-prof` with `perf record`).
 */
function duetServe(config: string): string[] {
  const flags = (Deno.env.get("BENCH_DENO_FLAGS") ?? "").split(/\s+/).filter((f) => f !== "");
  return [
    Deno.execPath(),
    "run",
    "--allow-all",
    ...flags,
    `${PROJECT_DIR}/main.ts`,
    "serve",
    "--config",
    config,
  ];
}

async function writeDuetSide(dir: string, role: PairRole, t: PairTopology): Promise<void> {
  await Deno.mkdir(`${dir}/${role}`, { recursive: true });
  await Deno.writeTextFile(`${dir}/${role}/duet.yaml`, duetPairConfig(`${dir}/${role}`, role, t));
}

function duetSide(role: PairRole, dir: string): ServerSpec {
  return {
    name: `duet-${role}`,
    binary: Deno.execPath(),
    storage: "",
    readyText: "duet serving",
    cwd: PROJECT_DIR,
    prepare: () => Promise.resolve(),
    command: () => duetServe(`${dir}/${role}/duet.yaml`),
    countLeases: () => Promise.resolve(0),
    version: () => Promise.resolve(""),
  };
}

async function startPair(
  spec: PairSpec,
  dir: string,
  t: PairTopology,
  cpu: number,
  live: LiveProcesses | null,
): Promise<ServerProcess[]> {
  const started: ServerProcess[] = [];
  try {
    // The secondary first: the primary dials it at once.
    for (const role of ["secondary", "primary"] as const) {
      const s = await startServer(spec.side(role, dir, t), `${dir}/${role}`, {
        topology: { ...t, serverNs: namespaceOf(role, t) },
        cpu,
        onSpawn: (p) => live?.others.push(p),
      });
      started.push(s);
    }
  } catch (e) {
    for (const s of started) await stopServer(s);
    throw e;
  }
  return started;
}

async function until(what: string, check: () => Promise<boolean>, seconds: number) {
  const deadline = performance.now() + seconds * 1000;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`${what} not reached in ${seconds} s`);
    await sleep(250);
  }
}

const DUET_PAIR: PairSpec = {
  name: "duet-pair",
  binary: Deno.execPath(),
  storage: "SQLite WAL, group commit, fdatasync before ACK; BNDUPD after commit",
  version: async () =>
    (await runCommand(denoRun("version"), { timeoutMs: 30_000 })).stdout.split("\n")[0] ?? "",
  async snapshot(dir, t, cpu) {
    for (const role of ROLES) await writeDuetSide(dir, role, t);
    const started = performance.now();
    const servers = await startPair(this, dir, t, cpu, null);
    try {
      // §5.4: on reaching NORMAL the primary gives half of its FREE addresses to the
      // secondary; wait until both tables say so and every BNDUPD is acknowledged.
      await until("a balanced, idle NORMAL pair", async () => {
        const [p, s] = [await duetStatus(dir, "primary"), await duetStatus(dir, "secondary")];
        return p !== null && s !== null && duetSideIdle(p) && duetSideIdle(s) &&
          (s.leases.backup ?? 0) === Math.floor(POOL_SIZE / 2) &&
          (p.leases.backup ?? 0) === (s.leases.backup ?? 0);
      }, 900);
    } finally {
      // kill -9: the stored state stays NORMAL (a SIGTERM would store SHUTDOWN, §9.14).
      for (const s of servers) {
        try {
          s.child.kill("SIGKILL");
        } catch {
          // gone
        }
        await s.child.status;
      }
    }
    return `NORMAL and balanced (${Math.floor(POOL_SIZE / 2)} BACKUP) after ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`;
  },
  async prepare(dir, snapshot, t) {
    for (const role of ROLES) {
      await writeDuetSide(dir, role, t);
      for (const suffix of ["", "-wal"]) {
        const from = `${snapshot}/${role}/leases.db${suffix}`;
        try {
          await Deno.copyFile(from, `${dir}/${role}/leases.db${suffix}`);
        } catch (e) {
          if (suffix === "") throw e;
        }
      }
    }
  },
  side: (role, dir) => duetSide(role, dir),
  async ready(dir) {
    const p = await duetStatus(dir, "primary");
    const s = await duetStatus(dir, "secondary");
    return p !== null && s !== null && duetSideIdle(p) && duetSideIdle(s);
  },
  async backlog(dir) {
    const p = await duetStatus(dir, "primary");
    const s = await duetStatus(dir, "secondary");
    const bp = p === null ? null : duetBacklog(p);
    const bs = s === null ? null : duetBacklog(s);
    return bp === null || bs === null ? null : { primary: bp, secondary: bs };
  },
  async stats(dir) {
    const p = await duetStatus(dir, "primary");
    const s = await duetStatus(dir, "secondary");
    if (p === null || s === null) return { acks: null, bndack: null };
    return {
      acks: { primary: p.dhcp.sent.DHCPACK ?? 0, secondary: s.dhcp.sent.DHCPACK ?? 0 },
      bndack: {
        primary: p.failover?.updates?.ackLatency ?? null,
        secondary: s.failover?.updates?.ackLatency ?? null,
      },
      kernelDropped: { primary: kernelDropped(p), secondary: kernelDropped(s) },
    };
  },
  async countLeases(dir) {
    const out: Record<PairRole, number> = { primary: 0, secondary: 0 };
    for (const role of ROLES) {
      const r = await runCommand(denoRun("leases", "--db", `${dir}/${role}/leases.db`, "--json"), {
        cwd: PROJECT_DIR,
        timeoutMs: 120_000,
      });
      if (r.code !== 0) throw new Error(`duet leases (${role}) failed: ${r.stderr.trim()}`);
      out[role] = countDuetLeases(r.stdout);
    }
    return out;
  },
};

// ---- ISC dhcpd pair ------------------------------------------------------------------------

/** One side's dhcpd.conf, as dhcpd-failover.sh writes it (mclt and split on the primary). */
export function dhcpdPairConfig(role: PairRole, t: PairTopology): string {
  const s = PAIR_SETTINGS;
  return [
    "authoritative;",
    `default-lease-time ${LEASE_TIME};`,
    `max-lease-time ${LEASE_TIME};`,
    "ddns-update-style none;",
    `failover peer "${s.relationship}" {`,
    `  ${role};`,
    `  address ${addressOf(role, t)};`,
    "  port 647;",
    `  peer address ${addressOf(partnerOf(role), t)};`,
    "  peer port 647;",
    `  max-response-delay ${s.maxResponseDelay};`,
    `  max-unacked-updates ${s.maxUnackedBndupd};`,
    `  load balance max seconds ${s.loadBalanceMaxSeconds};`,
    ...(role === "primary" ? [`  mclt ${s.mclt};`, `  split ${s.split};`] : []),
    "}",
    "subnet 198.18.0.0 netmask 255.254.0.0 {",
    "  pool {",
    `    failover peer "${s.relationship}";`,
    `    range ${POOL_START} ${POOL_END};`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** A leases file that says "we were NORMAL": no MCLT-long RECOVER-WAIT on the first start. */
export function dhcpdSeedLeases(): string {
  return [
    `failover peer "${PAIR_SETTINGS.relationship}" state {`,
    "  my state normal at 1 2024/01/01 00:00:00;",
    "  partner state normal at 1 2024/01/01 00:00:00;",
    "}",
    "",
  ].join("\n");
}

/** The state an ISC dhcpd log last says it moved to ("I move from X to Y"), or null. */
export function lastIscState(log: string): string | null {
  let state: string | null = null;
  for (const m of log.matchAll(/I move from [a-z-]+ to ([a-z-]+)/g)) state = m[1] ?? null;
  return state;
}

function dhcpdSide(role: PairRole, dir: string, t: PairTopology): ServerSpec {
  const d = `${dir}/${role}`;
  return {
    name: `dhcpd-${role}`,
    binary: "dhcpd",
    storage: "",
    prepare: () => Promise.resolve(),
    command: () => [
      "dhcpd",
      "-4",
      "-f",
      "-d",
      "-cf",
      `${d}/dhcpd.conf`,
      "-lf",
      `${d}/dhcpd.leases`,
      "-pf",
      `${d}/dhcpd.pid`,
      interfaceOf(role, t),
    ],
    countLeases: () => Promise.resolve(0),
    version: () => Promise.resolve(""),
  };
}

async function dhcpdBothNormal(dir: string): Promise<boolean> {
  for (const role of ROLES) {
    const log = await Deno.readTextFile(`${dir}/${role}/server.out`).catch(() => "");
    if (lastIscState(log) !== "normal") return false;
  }
  return true;
}

async function writeDhcpdSide(dir: string, role: PairRole, t: PairTopology): Promise<void> {
  await Deno.mkdir(`${dir}/${role}`, { recursive: true });
  await Deno.writeTextFile(`${dir}/${role}/dhcpd.conf`, dhcpdPairConfig(role, t));
}

const DHCPD_PAIR: PairSpec = {
  name: "dhcpd-pair",
  binary: "dhcpd",
  storage: "leases file, fsync per lease; BNDUPD per lease",
  version: async () =>
    (await runCommand(["dhcpd", "--version"])).stderr.trim().split("\n")[0] ?? "",
  async snapshot(dir, t, cpu) {
    for (const role of ROLES) {
      await writeDhcpdSide(dir, role, t);
      await Deno.writeTextFile(`${dir}/${role}/dhcpd.leases`, dhcpdSeedLeases());
      const check = await runCommand([
        "ip",
        "netns",
        "exec",
        namespaceOf(role, t),
        "dhcpd",
        "-4",
        "-t",
        "-cf",
        `${dir}/${role}/dhcpd.conf`,
      ]);
      if (check.code !== 0) {
        throw new Error(`dhcpd -t (${role}) failed:\n${(check.stdout + check.stderr).trim()}`);
      }
    }
    const started = performance.now();
    const servers = await startPair(this, dir, t, cpu, null);
    try {
      await until("both dhcpd in normal", () => dhcpdBothNormal(dir), 120);
      // Settled: the primary has balanced the pool and both lease files stopped growing.
      let last = "";
      let still = 0;
      await until("settled lease files", async () => {
        const sizes = await Promise.all(
          ROLES.map(async (r) => (await Deno.stat(`${dir}/${r}/dhcpd.leases`)).size),
        );
        const now = sizes.join(",");
        still = now === last ? still + 1 : 0;
        last = now;
        return still >= 20; // 5 s unchanged
      }, 900);
    } finally {
      for (const s of servers) await stopServer(s);
    }
    return `normal and settled after ${((performance.now() - started) / 1000).toFixed(1)} s`;
  },
  async prepare(dir, snapshot, t) {
    for (const role of ROLES) {
      await writeDhcpdSide(dir, role, t);
      await Deno.copyFile(`${snapshot}/${role}/dhcpd.leases`, `${dir}/${role}/dhcpd.leases`);
    }
  },
  side: (role, dir, t) => dhcpdSide(role, dir, t),
  ready: (dir) => dhcpdBothNormal(dir),
  backlog: () => Promise.resolve(null),
  stats: () => Promise.resolve({ acks: null, bndack: null }),
  async countLeases(dir) {
    const out: Record<PairRole, number> = { primary: 0, secondary: 0 };
    for (const role of ROLES) {
      const text = await Deno.readTextFile(`${dir}/${role}/dhcpd.leases`).catch(() => "");
      out[role] = countDhcpdLeases(text);
    }
    return out;
  },
};

/** Every pair the harness knows, in the order they are measured. */
export const PAIRS: readonly PairSpec[] = [DUET_PAIR, DHCPD_PAIR];

/** Why `spec` cannot be measured here, or null. */
export function pairMissing(spec: PairSpec): string | null {
  if (spec.binary.startsWith("/")) return null;
  return findTool(spec.binary) === null ? `"${spec.binary}" is not installed` : null;
}

// ---- one measured run ----------------------------------------------------------------------

/** Settings shared by every pair run. */
export interface PairMeasureOptions {
  topology: PairTopology;
  workDir: string;
  durationSeconds: number;
  serverCpu: number;
  clientCpu: number;
  /** perfdhcp's extra environment (its receive-buffer preload, client_buffer.ts). */
  clientEnv: Record<string, string>;
  quietWaitSeconds: number;
  keepRunDirs: boolean;
  live: LiveProcesses;
}

/** The larger of two sides' figures (null only when both are null). */
export function worse(a: number | null | undefined, b: number | null | undefined): number | null {
  const xs = [a, b].filter((x): x is number => typeof x === "number");
  return xs.length === 0 ? null : Math.max(...xs);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function zero(): ExchangeStats {
  return { sent: 0, received: 0, drops: 0, avgDelayMs: null };
}

/** Runs a fresh pair (from the snapshot) at `rate` and measures it. */
export async function measurePairRun(
  spec: PairSpec,
  snapshot: string,
  rate: number,
  phase: string,
  options: PairMeasureOptions,
): Promise<RunResult> {
  const durationSeconds = Math.max(
    2,
    Math.min(options.durationSeconds, Math.floor(POOL_BUDGET / rate)),
  );
  await waitQuiet(options.quietWaitSeconds);
  const dir = await Deno.makeTempDir({ dir: options.workDir, prefix: `${spec.name}-r${rate}-` });
  const base = { server: spec.name, phase, rate, durationSeconds };
  const t = options.topology;
  let servers: ServerProcess[] = [];
  const fail = async (error: string): Promise<RunResult> => {
    progress(`${spec.name} r=${rate}: ${error.split("\n")[0]}`);
    for (const s of servers) await stopServer(s);
    if (!options.keepRunDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
    return {
      ...base,
      verdict: "ERROR",
      discoverOffer: zero(),
      requestAck: zero(),
      completion: 0,
      exchangesPerSecond: 0,
      serverCpuSeconds: 0,
      cpuMicrosPerExchange: null,
      peakRssMib: 0,
      leases: null,
      clientCpuSeconds: 0,
      clientRcvbufErrors: null,
      wallSeconds: 0,
      otherCpuSeconds: 0,
      noisy: false,
      error,
    };
  };
  try {
    await spec.prepare(dir, snapshot, t);
    if (options.live.aborted) throw new Error("Interrupted");
    servers = await startPair(spec, dir, t, options.serverCpu, options.live);
    await until("both servers NORMAL and idle", () => spec.ready(dir), 120);
  } catch (e) {
    const logs = await Promise.all(ROLES.map((r) => tail(`${dir}/${r}/server.out`, 8)));
    return await fail(`cannot start: ${e instanceof Error ? e.message : String(e)}\n${logs}`);
  }
  const cpuOf = () => servers.reduce((n, s) => n + readTreeCpuTicks(s.pid), 0);
  let peak: number | null = null;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const b = await spec.backlog(dir);
      if (b !== null) peak = Math.max(peak ?? 0, b.primary, b.secondary);
      await sleep(250);
    }
  })();
  const cpu0 = cpuOf();
  const busy0 = readSystemBusyTicks();
  let perf;
  try {
    perf = await runPerfdhcp(t, {
      rate,
      durationSeconds,
      clientCpu: options.clientCpu,
      env: options.clientEnv,
      onSpawn: (child) => {
        options.live.client = child;
        if (child && options.live.aborted) child.kill("SIGKILL");
      },
    });
  } finally {
    sampling = false;
    await sampler;
  }
  const cpu1 = cpuOf();
  const busy1 = readSystemBusyTicks();
  const peakRssKib = servers.reduce((n, s) => n + readPeakRssKib(s.pid), 0);
  // The backlog left when perfdhcp stopped: how long until every lease is acknowledged.
  let drainSeconds: number | null = null;
  const drained = performance.now();
  for (;;) {
    const b = await spec.backlog(dir);
    if (b === null) break;
    if (b.primary === 0 && b.secondary === 0) {
      drainSeconds = round((performance.now() - drained) / 1000, 2);
      break;
    }
    if (performance.now() - drained > 60_000) break;
    await sleep(100);
  }
  const stats = await spec.stats(dir);
  const died = servers.some((s) => s.exited());
  for (const s of servers) await stopServer(s);
  servers = [];
  options.live.others.length = 0;
  let counts: Record<PairRole, number> | null = null;
  let error: string | undefined;
  try {
    counts = await spec.countLeases(dir);
  } catch (e) {
    error = `cannot count leases: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (died) {
    const logs = await Promise.all(ROLES.map((r) => tail(`${dir}/${r}/server.out`, 10)));
    error = `a server exited during the run:\n${logs.join("\n")}`;
  }
  await Deno.writeTextFile(`${dir}/perfdhcp.out`, perf.output);
  if (!options.keepRunDirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  const serverCpuSeconds = (cpu1 - cpu0) / CLOCK_TICKS;
  const acks = perf.stats.requestAck.received;
  const verdict = judgeRun({
    stats: perf.stats,
    rate,
    durationSeconds,
    clientCpuSeconds: perf.cpuSeconds,
    wallSeconds: perf.wallSeconds,
  });
  const otherCpuSeconds = (busy1 - busy0) / CLOCK_TICKS - serverCpuSeconds - perf.cpuSeconds;
  const bndack = stats.bndack;
  const run: RunResult = {
    ...base,
    verdict: died ? "FAIL" : verdict,
    discoverOffer: perf.stats.discoverOffer,
    requestAck: perf.stats.requestAck,
    completion: round(
      perf.stats.discoverOffer.sent > 0 ? acks / perf.stats.discoverOffer.sent : 0,
      4,
    ),
    exchangesPerSecond: round(acks / durationSeconds, 1),
    serverCpuSeconds: round(serverCpuSeconds, 2),
    cpuMicrosPerExchange: acks > 0 ? round((serverCpuSeconds * 1e6) / acks, 1) : null,
    peakRssMib: round(peakRssKib / 1024, 1),
    leases: counts?.primary ?? null,
    clientCpuSeconds: round(perf.cpuSeconds, 2),
    clientRcvbufErrors: perf.rcvbufErrors,
    wallSeconds: round(perf.wallSeconds, 2),
    otherCpuSeconds: round(otherCpuSeconds, 2),
    noisy: otherCpuSeconds / perf.wallSeconds > NOISY_CORES,
    pair: {
      leasesSecondary: counts?.secondary ?? null,
      acks: stats.acks,
      kernelDropped: stats.kernelDropped ?? null,
      bndack,
      bndackP50Ms: worse(bndack?.primary?.p50Ms, bndack?.secondary?.p50Ms),
      bndackP99Ms: worse(bndack?.primary?.p99Ms, bndack?.secondary?.p99Ms),
      backlogPeak: peak,
      drainSeconds,
    },
    ...(error === undefined ? {} : { error }),
  };
  progress(describeRun(run));
  return run;
}
