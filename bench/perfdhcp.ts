/** Runs Kea's perfdhcp in the client namespace and parses its statistics. */
import { readRcvbufErrors } from "./client_buffer.ts";
import { sleep } from "./command.ts";
import { CLOCK_TICKS, readCpuTicks } from "./proc.ts";
import type { Topology } from "./topology.ts";

/** Counters of one exchange ("Statistics for: DISCOVER-OFFER" or "REQUEST-ACK"). */
export interface ExchangeStats {
  sent: number;
  received: number;
  drops: number;
  /** perfdhcp's "avg delay" in ms; null when it printed none (nothing received). */
  avgDelayMs: number | null;
}

/** The two exchanges of a 4-way run. */
export interface PerfdhcpStats {
  discoverOffer: ExchangeStats;
  requestAck: ExchangeStats;
}

function emptyExchange(): ExchangeStats {
  return { sent: 0, received: 0, drops: 0, avgDelayMs: null };
}

/** Parses perfdhcp -4 output; missing sections and counters read as zero. */
export function parsePerfdhcp(text: string): PerfdhcpStats {
  const stats: PerfdhcpStats = { discoverOffer: emptyExchange(), requestAck: emptyExchange() };
  let section: ExchangeStats | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("***Statistics for: DISCOVER-OFFER")) section = stats.discoverOffer;
    else if (line.startsWith("***Statistics for: REQUEST-ACK")) section = stats.requestAck;
    else if (line.startsWith("***")) section = null;
    if (section === null) continue;
    let m: RegExpExecArray | null;
    if ((m = /^sent packets: (\d+)$/.exec(line))) section.sent = Number(m[1]);
    else if ((m = /^received packets: (\d+)$/.exec(line))) section.received = Number(m[1]);
    else if ((m = /^drops: (\d+)$/.exec(line))) section.drops = Number(m[1]);
    else if ((m = /^avg delay: ([0-9.]+) ms$/.exec(line))) section.avgDelayMs = Number(m[1]);
  }
  return stats;
}

/** What one perfdhcp run produced. */
export interface PerfdhcpRun {
  stats: PerfdhcpStats;
  output: string;
  exitCode: number;
  wallSeconds: number;
  /** perfdhcp's own CPU seconds (last sample before it exited, 0.25 s resolution). */
  cpuSeconds: number;
  /**
   * Datagrams the client namespace's sockets dropped for a full receive buffer during the run
   * (UDP RcvbufErrors): replies the servers sent that perfdhcp never read. Null if unreadable.
   */
  rcvbufErrors: number | null;
}

/** Options of one 4-way run. */
export interface PerfdhcpOptions {
  rate: number;
  durationSeconds: number;
  clientCpu: number;
  /** Simulated clients (-R); perfdhcp walks MACs sequentially, so each exchange is new. */
  clients?: number;
  /** Extra environment for perfdhcp (the receive-buffer preload, client_buffer.ts). */
  env?: Record<string, string>;
  /** Called with the child while it runs, so a Ctrl-C handler can kill it. */
  onSpawn?: (child: Deno.ChildProcess | null) => void;
}

/**
 * `perfdhcp -4 -l <client veth> -r RATE -p DUR -R 4000000 -d 2 -W 2000000 -g single`, pinned
 * to `clientCpu`, in the client namespace. Broadcast on the wire; perfdhcp always relays
 * (giaddr = its own address, source port 67). A reply later than 2 s counts as lost, and it
 * waits 2 s after the last DISCOVER for stragglers.
 */
export async function runPerfdhcp(t: Topology, options: PerfdhcpOptions): Promise<PerfdhcpRun> {
  const args = [
    "netns",
    "exec",
    t.clientNs,
    "taskset",
    "-c",
    String(options.clientCpu),
    "perfdhcp",
    "-4",
    "-l",
    t.clientIf,
    "-r",
    String(options.rate),
    "-p",
    String(options.durationSeconds),
    "-R",
    String(options.clients ?? 4_000_000),
    "-d",
    "2",
    "-W",
    "2000000",
    "-g",
    "single",
  ];
  const errors0 = await readRcvbufErrors(t.clientNs);
  const started = performance.now();
  // ip netns exec and taskset exec() in place, so the child pid is perfdhcp's.
  const child = new Deno.Command("ip", {
    args,
    env: options.env ?? {},
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  options.onSpawn?.(child);
  let cpuTicks = 0;
  let finished = false;
  const deadline = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, (options.durationSeconds + 40) * 1000);
  const sampler = (async () => {
    while (!finished) {
      const ticks = readCpuTicks(child.pid);
      if (ticks > 0) cpuTicks = ticks;
      await sleep(250);
    }
  })();
  try {
    const out = await child.output();
    finished = true;
    await sampler;
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const wallSeconds = (performance.now() - started) / 1000;
    const errors1 = await readRcvbufErrors(t.clientNs);
    return {
      stats: parsePerfdhcp(text),
      output: text,
      exitCode: out.code,
      wallSeconds,
      cpuSeconds: cpuTicks / CLOCK_TICKS,
      rcvbufErrors: errors0 === null || errors1 === null ? null : errors1 - errors0,
    };
  } finally {
    finished = true;
    clearTimeout(deadline);
    options.onSpawn?.(null);
  }
}
