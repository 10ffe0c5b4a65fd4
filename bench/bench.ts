/**
 * `deno task bench`: DHCPv4 4-way throughput of duet against Kea, ISC dhcpd and dnsmasq on one
 * veth pair between two network namespaces, with perfdhcp as the client. See bench/README.md.
 *
 * Needs root, perfdhcp, iproute2 (ip, ss), taskset and two CPUs; otherwise it says why and
 * exits 0 (a benchmark, not a test).
 */
import { CLIENT_RCVBUF_DEFAULT, type ClientBuffer, prepareClientBuffer } from "./client_buffer.ts";
import { findTool, output, progress, runCommand } from "./command.ts";
import { type LiveProcesses, type MeasureOptions, measureRun, type RunResult } from "./measure.ts";
import {
  cpuAtCommonRate,
  duetKeaRatios,
  formatPairTable,
  formatTable,
  pairTargets,
  type ServerSummary,
  summarize,
} from "./report.ts";
import { stopServer } from "./server_process.ts";
import { POOL_END, POOL_START, PROJECT_DIR, serverMissing, SERVERS } from "./servers.ts";
import { sweep, type SweepPlan } from "./sweep.ts";
import {
  createPairTopology,
  createTopology,
  destroyPairTopology,
  destroyTopology,
  pairTopologyNames,
  type Topology,
  topologyNames,
} from "./topology.ts";
import { measurePairRun, pairMissing, PAIRS, type PairSpec } from "./pair.ts";

/** The knobs, from the environment. */
export interface BenchSettings {
  /** "single": one server per run; "pair": failover pairs on a bridge (BENCH_MODE=pair). */
  mode: "single" | "pair";
  servers: string[];
  durationSeconds: number;
  quick: boolean;
  plan: SweepPlan;
  quietWaitSeconds: number;
  /** How often a run with foreign load is redone. */
  noiseRetries: number;
  keepRunDirs: boolean;
  serverCpu: number;
  clientCpu: number;
  /** perfdhcp's socket receive buffer in bytes, 0 for the host default (client_buffer.ts). */
  clientRcvbuf: number;
}

/** What pair mode measures unless BENCH_SERVERS says otherwise: Kea alone, then both pairs. */
export const PAIR_MODE_SERVERS = ["kea", "duet-pair", "dhcpd-pair"];

function parseList(text: string | undefined): string[] | null {
  if (text === undefined || text.trim() === "") return null;
  return text.split(/[\s,]+/).filter((s) => s !== "");
}

/** Reads BENCH_* from `env` (see bench/README.md). */
export function parseSettings(env: (name: string) => string | undefined): BenchSettings {
  const quick = env("BENCH_QUICK") === "1";
  const modeText = env("BENCH_MODE") ?? "single";
  if (modeText !== "single" && modeText !== "pair") {
    throw new RangeError(`Cannot use BENCH_MODE="${modeText}": expected single or pair`);
  }
  const mode: "single" | "pair" = modeText;
  const known = mode === "pair"
    ? [...SERVERS.map((s) => s.name), ...PAIRS.map((p) => p.name)]
    : SERVERS.map((s) => s.name);
  const servers = parseList(env("BENCH_SERVERS")) ??
    (mode === "pair" ? PAIR_MODE_SERVERS : SERVERS.map((s) => s.name));
  for (const name of servers) {
    if (!known.includes(name)) {
      const hint = PAIRS.some((p) => p.name === name) ? " (a pair: set BENCH_MODE=pair)" : "";
      throw new RangeError(`Cannot bench server "${name}"${hint}: known are ${known.join(", ")}`);
    }
  }
  const number = (name: string, fallback: number): number => {
    const v = env(name);
    if (v === undefined || v === "") return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(`Cannot use ${name}="${v}": not a whole number`);
    }
    return n;
  };
  const steps = (parseList(env("BENCH_RATES")) ??
    (quick ? ["250", "2000"] : ["500", "1000", "2000", "4000", "8000", "16000", "32000"]))
    .map(Number);
  if (steps.some((r) => !Number.isInteger(r) || r <= 0)) {
    throw new RangeError(
      `Cannot use BENCH_RATES="${env("BENCH_RATES")}": not positive whole numbers`,
    );
  }
  return {
    mode,
    servers,
    durationSeconds: Math.max(2, number("BENCH_DUR", quick ? 2 : 10)),
    quick,
    plan: {
      steps: steps.sort((a, b) => a - b),
      minRate: 50,
      bisections: number("BENCH_BISECT", quick ? 0 : 2),
      repeats: number("BENCH_REPEATS", quick ? 0 : 3),
    },
    quietWaitSeconds: number("BENCH_QUIET_WAIT", quick ? 2 : 15),
    noiseRetries: number("BENCH_NOISE_RETRIES", quick ? 0 : 2),
    keepRunDirs: env("BENCH_KEEP") === "1",
    serverCpu: 1,
    clientCpu: 0,
    clientRcvbuf: number("BENCH_CLIENT_RCVBUF", CLIENT_RCVBUF_DEFAULT),
  };
}

/** Why the benchmark cannot run on this machine, or null. */
async function prerequisites(): Promise<string | null> {
  if (Deno.build.os !== "linux") return `needs Linux, this is ${Deno.build.os}`;
  if (Deno.uid() !== 0) return "needs root (network namespaces, veth, pinned servers)";
  for (const tool of ["perfdhcp", "ip", "ss", "taskset", "sh"]) {
    if (findTool(tool) === null) {
      return `needs "${tool}" (perfdhcp comes with Debian's kea-admin/kea packages)`;
    }
  }
  const cpus = await runCommand(["nproc"]);
  if (Number(cpus.stdout.trim()) < 2) return "needs 2 CPUs (server on CPU 1, perfdhcp on CPU 0)";
  return null;
}

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${
    p(d.getMinutes())
  }${p(d.getSeconds())}`;
}

async function machine(): Promise<Record<string, string>> {
  const first = async (args: string[]) =>
    (await runCommand(args)).stdout.trim().split("\n")[0] ?? "";
  return {
    kernel: await first(["uname", "-r"]),
    cpus: await first(["nproc"]),
    cpuModel: (await Deno.readTextFile("/proc/cpuinfo")).match(/^model name\s*:\s*(.*)$/m)?.[1] ??
      "",
    perfdhcp: await first(["perfdhcp", "-v"]),
    deno: Deno.version.deno,
    duetCommit: await first(["git", "-C", PROJECT_DIR, "rev-parse", "--short", "HEAD"]),
  };
}

/** Runs the benchmark; returns the exit code. */
async function main(): Promise<number> {
  const why = await prerequisites();
  if (why !== null) {
    output(`bench: not running: ${why}\n`);
    return 0;
  }
  let settings: BenchSettings;
  try {
    settings = parseSettings((name) => Deno.env.get(name));
  } catch (e) {
    output(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  const started = new Date();
  const host = await machine();
  const pairTopology = settings.mode === "pair" ? pairTopologyNames(Deno.pid) : null;
  const topology: Topology = pairTopology ?? topologyNames(Deno.pid);
  const workDir = await Deno.makeTempDir({ prefix: "duet-bench-" });
  const live: LiveProcesses = { server: null, others: [], client: null, aborted: false };
  let cleaned: Promise<void> | null = null;
  const cleanup = () => {
    live.aborted = true;
    cleaned ??= (async () => {
      try {
        live.client?.kill("SIGKILL");
      } catch {
        // already gone
      }
      if (live.server) await stopServer(live.server);
      for (const s of live.others) await stopServer(s);
      if (pairTopology) await destroyPairTopology(pairTopology);
      else await destroyTopology(topology);
      if (!settings.keepRunDirs) await Deno.remove(workDir, { recursive: true }).catch(() => {});
    })();
    return cleaned;
  };
  const onSignal = () => {
    progress("interrupted: stopping the servers, deleting namespaces");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const summaries: ServerSummary[] = [];
  const runs: RunResult[] = [];
  /** Noisy runs that were redone (kept in the JSON, out of the sweep). */
  const redone: RunResult[] = [];
  /** Pair mode: how each pair's snapshot went. */
  const snapshots: Record<string, string> = {};
  let clientBuffer: ClientBuffer = { env: {}, bytes: null, note: "not prepared" };
  try {
    const where = pairTopology
      ? `bridge ${pairTopology.bridge} in ${pairTopology.bridgeNs}: ${topology.serverNs} (${topology.serverIf} ${topology.serverAddress}/15, primary), ` +
        `${pairTopology.secondNs} (${pairTopology.secondIf} ${pairTopology.secondAddress}/15, secondary), ` +
        `${topology.clientNs} (${topology.clientIf} ${topology.clientAddress}/15)`
      : `${topology.serverNs} (${topology.serverIf} ${topology.serverAddress}/15) <-> ` +
        `${topology.clientNs} (${topology.clientIf} ${topology.clientAddress}/15)`;
    progress(
      `topology ${where}; pool ${POOL_START} - ${POOL_END}; dur ${settings.durationSeconds}s; ` +
        `rates ${settings.plan.steps.join(",")}${settings.quick ? " (quick)" : ""}`,
    );
    clientBuffer = await prepareClientBuffer(workDir, settings.clientRcvbuf);
    progress(clientBuffer.note);
    if (pairTopology) await createPairTopology(pairTopology);
    else await createTopology(topology);
    const options: MeasureOptions = {
      topology,
      workDir,
      durationSeconds: settings.durationSeconds,
      serverCpu: settings.serverCpu,
      clientCpu: settings.clientCpu,
      clientEnv: clientBuffer.env,
      quietWaitSeconds: settings.quietWaitSeconds,
      keepRunDirs: settings.keepRunDirs,
      live,
    };
    const measureSweep = async (
      base: { name: string; storage: string; version: string },
      run: (rate: number, phase: string) => Promise<RunResult>,
    ) => {
      const result = await sweep(settings.plan, async (rate, phase) => {
        for (let attempt = 0;; attempt++) {
          const r = await run(rate, phase);
          if (!r.noisy || attempt >= settings.noiseRetries) return r;
          progress(`  ^ other load ${r.otherCpuSeconds} s during the run: redoing it`);
          redone.push(r);
        }
      });
      runs.push(...result.runs);
      const summary = summarize(base, result);
      summaries.push(summary);
      progress(
        `${base.name}: best ${summary.bestRate}/s${summary.note ? ` (${summary.note})` : ""}`,
      );
    };
    const measurePair = async (pair: PairSpec): Promise<void> => {
      const t = pairTopology!;
      const missing = pairMissing(pair);
      const base = { name: pair.name, storage: pair.storage, version: "" };
      if (missing !== null) {
        progress(`${pair.name}: skipped: ${missing}`);
        summaries.push({ ...summarize(base, emptySweep()), note: `skipped: ${missing}` });
        return;
      }
      base.version = await pair.version();
      progress(`${pair.name}: ${base.version}; building the balanced NORMAL snapshot`);
      const snapshot = await Deno.makeTempDir({ dir: workDir, prefix: `${pair.name}-snapshot-` });
      try {
        snapshots[pair.name] = await pair.snapshot(snapshot, t, settings.serverCpu);
        progress(`${pair.name}: snapshot ${snapshots[pair.name]}`);
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        progress(`${pair.name}: cannot build the snapshot: ${why}`);
        summaries.push({
          ...summarize(base, emptySweep()),
          note: `snapshot failed: ${why.split("\n")[0]}`,
        });
        return;
      }
      await measureSweep(
        base,
        (rate, phase) => measurePairRun(pair, snapshot, rate, phase, { ...options, topology: t }),
      );
    };
    for (const name of settings.servers) {
      const pair = PAIRS.find((p) => p.name === name);
      if (pair && pairTopology) {
        await measurePair(pair);
        continue;
      }
      const spec = SERVERS.find((s) => s.name === name);
      if (!spec) continue;
      const missing = serverMissing(spec);
      const base = { name: spec.name, storage: spec.storage, version: "" };
      if (missing !== null) {
        progress(`${spec.name}: skipped: ${missing}`);
        summaries.push({ ...summarize(base, emptySweep()), note: `skipped: ${missing}` });
        continue;
      }
      base.version = await spec.version();
      progress(`${spec.name}: ${base.version}`);
      if (spec.check) {
        const dir = await Deno.makeTempDir({ dir: workDir, prefix: `${spec.name}-check-` });
        await spec.prepare(dir, topology);
        const problem = await spec.check(dir, topology);
        if (problem !== null) {
          progress(`${spec.name}: config check failed:\n${problem}`);
          summaries.push({
            ...summarize(base, emptySweep()),
            note: `config check failed: ${problem.split("\n")[0]}`,
          });
          continue;
        }
      }
      await measureSweep(base, (rate, phase) => measureRun(spec, rate, phase, options));
    }
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }

  const finished = new Date();
  const table = settings.mode === "pair"
    ? formatPairTable(summaries)
    : formatTable(summaries, runs);
  const command = [
    ...[
      "BENCH_MODE",
      "BENCH_SERVERS",
      "BENCH_DUR",
      "BENCH_QUICK",
      "BENCH_RATES",
      "BENCH_REPEATS",
      "BENCH_BISECT",
      "BENCH_CLIENT_RCVBUF",
    ]
      .filter((k) => Deno.env.get(k) !== undefined)
      .map((k) => `${k}=${Deno.env.get(k)}`),
    "deno task bench",
  ].join(" ");
  output(
    `\n${command}  (${started.toISOString()}, ${
      ((finished.getTime() - started.getTime()) / 1000).toFixed(0)
    } s)\n\n${table}`,
  );
  const resultsDir = `${PROJECT_DIR}/bench/results`;
  await Deno.mkdir(resultsDir, { recursive: true });
  const file = `${resultsDir}/${stamp(started)}.json`;
  const doc = {
    command,
    started: started.toISOString(),
    finished: finished.toISOString(),
    machine: host,
    settings,
    method: {
      pool: `${POOL_START} - ${POOL_END}`,
      perfdhcp: "perfdhcp -4 -l <client veth> -r RATE -p DUR -R 4000000 -d 2 -W 2000000 -g single",
      pass: "ACKs >= 99 % of DISCOVERs sent and DISCOVERs sent >= 97 % of RATE x DUR",
      clientReceiveBuffer: clientBuffer.note,
    },
    servers: summaries,
    ...(settings.mode === "pair"
      ? { pairTargets: pairTargets(summaries), snapshots }
      : { duetKea: { ...duetKeaRatios(summaries), atCommonRate: cpuAtCommonRate(runs) } }),
    runs,
    redone,
  };
  await Deno.writeTextFile(file, JSON.stringify(doc, null, 2) + "\n");
  output(`\nresults: ${file}\n`);
  return 0;
}

function emptySweep() {
  return {
    bestRate: 0,
    reported: null,
    repeatsPassed: 0,
    repeatsRun: 0,
    clientLimited: false,
    runs: [],
    error: null,
  };
}

if (import.meta.main) Deno.exit(await main());
