/**
 * One measured run: a fresh server with an empty lease store, one perfdhcp run against it,
 * the server's CPU time and peak RSS, then the leases it persisted.
 */
import { progress, sleep } from "./command.ts";
import { type ExchangeStats, runPerfdhcp } from "./perfdhcp.ts";
import { CLOCK_TICKS, readPeakRssKib, readSystemBusyTicks, readTreeCpuTicks } from "./proc.ts";
import { type ServerProcess, startServer, stopServer, tail } from "./server_process.ts";
import type { ServerSpec } from "./servers.ts";
import { judgeRun, type Verdict } from "./sweep.ts";
import type { Topology } from "./topology.ts";
import type { PairExtras } from "./pair.ts";

/** At most this many DISCOVERs per run, below the 126,971-address pool: DUR shrinks at high rates. */
export const POOL_BUDGET = 120_000;

/** Everything recorded about one run (also the JSON row). */
export interface RunResult {
  server: string;
  phase: string;
  rate: number;
  durationSeconds: number;
  verdict: Verdict;
  discoverOffer: ExchangeStats;
  requestAck: ExchangeStats;
  /** ACKs received / DISCOVERs sent. */
  completion: number;
  /** ACKs received / DUR: completed 4-way exchanges per second. */
  exchangesPerSecond: number;
  serverCpuSeconds: number;
  /** Server CPU µs per ACK; null without ACKs. */
  cpuMicrosPerExchange: number | null;
  peakRssMib: number;
  /** Distinct active leases persisted; null when they could not be counted. */
  leases: number | null;
  clientCpuSeconds: number;
  /** Replies dropped by perfdhcp's full socket (client UDP RcvbufErrors); null if unread. */
  clientRcvbufErrors: number | null;
  wallSeconds: number;
  /** Busy CPU seconds of everything else on the machine during the run (foreign load). */
  otherCpuSeconds: number;
  /** Other load averaged more than NOISY_CORES during the run. */
  noisy: boolean;
  /** Pair mode: the second server's leases, the BNDUPD round trips and backlog. */
  pair?: PairExtras;
  error?: string;
}

/** Settings shared by every run. */
export interface MeasureOptions {
  topology: Topology;
  workDir: string;
  durationSeconds: number;
  serverCpu: number;
  clientCpu: number;
  /** perfdhcp's extra environment (its receive-buffer preload, client_buffer.ts). */
  clientEnv: Record<string, string>;
  /** Before a run, wait up to this long for the machine to be below 0.25 busy cores. */
  quietWaitSeconds: number;
  keepRunDirs: boolean;
  /** Tracks the live server and perfdhcp so a signal handler can stop them. */
  live: LiveProcesses;
}

/** The processes of the run in progress; `aborted` is set by the signal handler. */
export interface LiveProcesses {
  server: ServerProcess | null;
  /** Pair mode: both servers of the pair. */
  others: ServerProcess[];
  client: Deno.ChildProcess | null;
  aborted: boolean;
}

const QUIET_CORES = 0.25;
/** A run during which everything else averaged more than this many busy cores is noisy. */
export const NOISY_CORES = 0.4;

/** Waits up to `maxSeconds` for the machine to be below QUIET_CORES busy cores. */
export async function waitQuiet(maxSeconds: number): Promise<void> {
  const deadline = performance.now() + maxSeconds * 1000;
  let busy = 0;
  do {
    const a = readSystemBusyTicks();
    await sleep(1000);
    busy = (readSystemBusyTicks() - a) / CLOCK_TICKS;
    if (busy <= QUIET_CORES) return;
  } while (performance.now() < deadline);
  progress(`machine still busy (${busy.toFixed(2)} cores): measuring anyway`);
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Runs `spec` fresh at `rate` and measures it; a start failure becomes verdict ERROR. */
export async function measureRun(
  spec: ServerSpec,
  rate: number,
  phase: string,
  options: MeasureOptions,
): Promise<RunResult> {
  const durationSeconds = Math.max(
    2,
    Math.min(options.durationSeconds, Math.floor(POOL_BUDGET / rate)),
  );
  await waitQuiet(options.quietWaitSeconds);
  const dir = await Deno.makeTempDir({ dir: options.workDir, prefix: `${spec.name}-r${rate}-` });
  const base = { server: spec.name, phase, rate, durationSeconds };
  let server: ServerProcess;
  try {
    await spec.prepare(dir, options.topology);
    if (options.live.aborted) throw new Error("Interrupted");
    server = await startServer(spec, dir, {
      topology: options.topology,
      cpu: options.serverCpu,
      onSpawn: (s) => {
        options.live.server = s;
        if (options.live.aborted) s.child.kill("SIGKILL");
      },
    });
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    progress(`${spec.name} r=${rate}: cannot start: ${error}`);
    if (!options.keepRunDirs) await Deno.remove(dir, { recursive: true });
    return { ...base, ...emptyRun(), verdict: "ERROR", error };
  }
  let stopped = false;
  try {
    const cpu0 = readTreeCpuTicks(server.pid);
    const busy0 = readSystemBusyTicks();
    const perf = await runPerfdhcp(options.topology, {
      rate,
      durationSeconds,
      clientCpu: options.clientCpu,
      env: options.clientEnv,
      onSpawn: (child) => {
        options.live.client = child;
        if (child && options.live.aborted) child.kill("SIGKILL");
      },
    });
    const cpu1 = readTreeCpuTicks(server.pid);
    const busy1 = readSystemBusyTicks();
    const peakRssKib = readPeakRssKib(server.pid);
    const died = server.exited();
    await stopServer(server);
    stopped = true;
    options.live.server = null;
    let leases: number | null = null;
    let error: string | undefined;
    try {
      leases = await spec.countLeases(dir);
    } catch (e) {
      error = `cannot count leases: ${e instanceof Error ? e.message : String(e)}`;
    }
    if (died) error = `server exited during the run:\n${await tail(server.logFile)}`;
    await Deno.writeTextFile(`${dir}/perfdhcp.out`, perf.output);
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
      leases,
      clientCpuSeconds: round(perf.cpuSeconds, 2),
      clientRcvbufErrors: perf.rcvbufErrors,
      wallSeconds: round(perf.wallSeconds, 2),
      otherCpuSeconds: round(otherCpuSeconds, 2),
      noisy: otherCpuSeconds / perf.wallSeconds > NOISY_CORES,
      ...(error === undefined ? {} : { error }),
    };
    progress(describeRun(run));
    return run;
  } finally {
    if (!stopped) {
      await stopServer(server);
      options.live.server = null;
    }
    if (!options.keepRunDirs) await Deno.remove(dir, { recursive: true });
  }
}

function emptyRun() {
  const zero = { sent: 0, received: 0, drops: 0, avgDelayMs: null };
  return {
    discoverOffer: zero,
    requestAck: zero,
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
  };
}

/** One progress line for a run. */
export function describeRun(r: RunResult): string {
  const d = r.discoverOffer;
  const a = r.requestAck;
  return `${r.server} ${r.phase} r=${r.rate} dur=${r.durationSeconds}s: ` +
    `DO ${d.sent}/${d.received} RA ${a.sent}/${a.received} (${
      (r.completion * 100).toFixed(2)
    } %) ` +
    `${r.exchangesPerSecond}/s avg DO=${d.avgDelayMs ?? "-"} RA=${a.avgDelayMs ?? "-"} ms ` +
    `cpu=${r.serverCpuSeconds}s (${r.cpuMicrosPerExchange ?? "-"} µs/ex) rss=${r.peakRssMib} MiB ` +
    `client cpu=${r.clientCpuSeconds}s rcvbuf drops=${
      r.clientRcvbufErrors ?? "?"
    } other=${r.otherCpuSeconds}s leases=${r.leases ?? "?"} ` +
    (r.pair
      ? `secondary leases=${r.pair.leasesSecondary ?? "?"} acks=${
        r.pair.acks ? `${r.pair.acks.primary}/${r.pair.acks.secondary}` : "?"
      }${
        r.pair.kernelDropped
          ? ` kdrop=${r.pair.kernelDropped.primary}/${r.pair.kernelDropped.secondary}`
          : ""
      } bndack p50/p99=${r.pair.bndackP50Ms ?? "-"}/${r.pair.bndackP99Ms ?? "-"} ms backlog=${
        r.pair.backlogPeak ?? "-"
      } drain=${r.pair.drainSeconds ?? "-"}s `
      : "") +
    `-> ${r.verdict}${r.noisy ? " (noisy)" : ""}${r.error ? ` (${r.error.split("\n")[0]})` : ""}`;
}
