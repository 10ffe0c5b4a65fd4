/**
 * The local control endpoint of `duet serve`: a small HTTP/1.1 JSON API on a Unix-domain
 * socket only its owner may connect to, plus an optional TCP address that serves only
 * GET /metrics for a Prometheus scraper.
 *
 *   GET  /status        the status snapshot (lib/control/status.ts) as JSON
 *   GET  /metrics       Prometheus text format 0.0.4 (lib/control/metrics.ts)
 *   GET  /leases        the lease table, exactly as `duet leases --json` prints it; the
 *                       optional query ?state=S&mac=M&ip=A filters it as the flags do
 *   POST /partner-down  the operator's PARTNER-DOWN command (draft-12 §9.9.3): 200 with the
 *                       new state; 409 when the state machine refuses it in its state
 *                       or the server has no failover section
 *   POST /reload        re-reads the configuration file (`duet reload`, like SIGHUP): 200
 *                       applied or unchanged, 422 invalid, 409 refused (the configuration in
 *                       force stays), each with the problems and their line:col
 */
import type { KernelFilterStatus } from "../server/kernel_balance.ts";
import type { Config } from "../config/types.ts";
import type { ReloadOutcome, ReloadResult } from "../config/reload.ts";
import type { HookStatus } from "../hooks/runner.ts";
import type { Logger } from "../log.ts";
import type { PeerStatus } from "../peer/tcp.ts";
import type { SyncStatus } from "../failover/sync.ts";
import type { DhcpCounters } from "../server/dhcp.ts";
import type { ClockHealth, ShellCounters, StoreHealth } from "../server/shell.ts";
import { SqliteLeaseStore } from "../store/sqlite.ts";
import { type Lease, LEASE_STATES, type LeaseFilter, type LeaseState } from "../store/store.ts";
import { formatIpv4, parseIpv4, parseMac } from "../wire/ip.ts";
import { toRecord } from "../cli/leases.ts";
import { VERSION } from "../cli/version.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import type { PoolStatus } from "./pools.ts";
import { buildStatus, type StatusSnapshot } from "./status.ts";

/** Rows per chunk of the GET /leases body (as `duet leases` flushes). */
const LEASE_CHUNK_ROWS = 500;
/** How long the stale-socket probe waits for an answer, in milliseconds. */
const PROBE_TIMEOUT_MS = 1000;

/** The parts of a running server the endpoint reads (RunningServer in lib/cli/serve.ts fits). */
export interface ControlSource {
  core: {
    utilisation(): { subnet: string; size: number; free: number }[];
    readonly counters: DhcpCounters;
  };
  shell: {
    readonly counters: ShellCounters;
    readonly storeFailing: boolean;
    readonly storeHealth?: StoreHealth;
    readonly clockHealth?: ClockHealth;
  };
  store: { countByState(): Record<LeaseState, number> };
  transports: readonly { readonly name: string }[];
  peer: { status(): PeerStatus } | null;
  /** The failover endpoint (lib/failover/endpoint.ts), when failover is configured. */
  failover?: {
    command(command: "partner-down"): { accepted: boolean; state: string; previous: string };
    status(): {
      state: string;
      stateCode: number;
      startTimeOfState: number;
      partnerState?: string | null;
      sync?: SyncStatus;
    };
    /** The last state transitions, oldest first (epoch seconds). */
    readonly transitions?: readonly { time: number; from: string; to: string; reason: string }[];
  } | null;
  /** The kernel's load-balancing filter (lib/server/kernel_balance.ts), with an endpoint. */
  kernelFilter?: { status(): KernelFilterStatus } | null;
  /** Per-pool utilisation (lib/control/pools.ts), read when a status is built. */
  pools?(): PoolStatus[];
  /** The lease-event hook runner (lib/hooks/runner.ts). */
  hooks?: { status(): HookStatus } | null;
  /** Re-reads and applies the configuration file (POST /reload). */
  reload?(): Promise<ReloadResult>;
  /** Reloads so far by outcome and the last one. */
  reloads?(): { count: Record<ReloadOutcome, number>; last: ReloadResult | null };
}

/** A lease listing that must be closed; GET /leases opens one per request. */
export interface LeaseCursor {
  iterate(filter?: LeaseFilter): IterableIterator<Lease>;
  close(): void;
}

/** Options for startControl(). */
export interface ControlOptions {
  /** Path of the Unix-domain socket. */
  socket: string;
  /** TCP address for GET /metrics only; port 0 picks a free port. */
  metrics?: { hostname: string; port: number } | null;
  config: Pick<Config, "database" | "failover">;
  logger: Logger;
  /** Epoch seconds the server started; defaults to now. */
  startedAt?: number;
  /**
   * Opens the lease listing of GET /leases. The default opens the database read-only on its
   * own connection, so the stream reads one consistent WAL snapshot and never holds a cursor
   * on the server's write connection across awaits.
   */
  openLeases?: () => LeaseCursor;
}

/** A running control endpoint. */
export interface ControlServer {
  readonly socket: string;
  /** The metrics listener's address, or null when there is none. */
  readonly metricsAddr: Deno.NetAddr | null;
  /** The snapshot GET /status would return now. */
  snapshot(): StatusSnapshot;
  /** Stops both listeners and removes the socket file. */
  stop(): Promise<void>;
}

/** The control socket of a configuration: `control.socket`, else `<database>.sock`. */
export function controlSocketPath(config: Pick<Config, "database" | "control">): string {
  return config.control?.socket ?? `${config.database}.sock`;
}

/** The metrics address of a configuration, or null. */
export function metricsAddress(
  config: Pick<Config, "control">,
): { hostname: string; port: number } | null {
  const m = config.control?.metrics;
  return m ? { hostname: formatIpv4(m.address), port: m.port } : null;
}

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function problem(status: number, error: string, headers: Record<string, string> = {}): Response {
  return json({ error }, status, headers);
}

const encoder = new TextEncoder();

/** GET /leases: a JSON array streamed in chunks, closing the cursor when done or cancelled. */
function leasesBody(cursor: LeaseCursor, filter: LeaseFilter): ReadableStream<Uint8Array> {
  const rows = cursor.iterate(filter);
  let count = 0;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      rows.return?.();
    } finally {
      cursor.close();
    }
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode("["));
    },
    pull(controller) {
      try {
        let chunk = "";
        for (let i = 0; i < LEASE_CHUNK_ROWS; i++) {
          const next = rows.next();
          if (next.done) {
            chunk += count === 0 ? "]\n" : "\n]\n";
            controller.enqueue(encoder.encode(chunk));
            controller.close();
            close();
            return;
          }
          chunk += (count++ === 0 ? "\n" : ",\n") + JSON.stringify(toRecord(next.value));
        }
        controller.enqueue(encoder.encode(chunk));
      } catch (e) {
        close();
        controller.error(e);
      }
    },
    cancel() {
      close();
    },
  });
}

/** The filter of a GET /leases query (`duet leases --live`), or the problem with it. */
function parseLeasesQuery(query: URLSearchParams): LeaseFilter | string {
  const filter: LeaseFilter = {};
  for (const key of query.keys()) {
    if (key !== "state" && key !== "mac" && key !== "ip") return `Unknown query parameter "${key}"`;
  }
  const state = query.get("state");
  if (state !== null) {
    const s = state.toLowerCase() as LeaseState;
    if (!LEASE_STATES.includes(s)) return `Unknown state "${state}"`;
    filter.state = s;
  }
  const mac = query.get("mac");
  if (mac !== null) {
    const hw = parseMac(mac);
    if (!hw) return `Invalid mac "${mac}"`;
    filter.hwAddress = hw;
  }
  const ip = query.get("ip");
  if (ip !== null) {
    const address = parseIpv4(ip);
    if (address === undefined) return `Invalid ip "${ip}"`;
    filter.address = address;
  }
  return filter;
}

const ROUTES: Record<string, string> = {
  "/status": "GET",
  "/metrics": "GET",
  "/leases": "GET",
  "/partner-down": "POST",
  "/reload": "POST",
};

/** HTTP status of a reload's answer. */
const RELOAD_STATUS: Record<ReloadOutcome, number> = {
  applied: 200,
  unchanged: 200,
  invalid: 422,
  refused: 409,
};

/** POST /reload's body: the result with its time in ISO 8601 UTC. */
export function reloadBody(r: ReloadResult): Record<string, unknown> {
  return {
    ok: r.outcome === "applied" || r.outcome === "unchanged",
    outcome: r.outcome,
    file: r.file,
    time: new Date(r.time * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
    changes: r.changes,
    problems: r.problems,
  };
}

/** Starts the control endpoint; throws when the socket is in use or cannot be created. */
export async function startControl(
  source: ControlSource,
  options: ControlOptions,
): Promise<ControlServer> {
  const { socket, logger, config } = options;
  const startedAt = options.startedAt ?? Date.now() / 1000;
  // Uptime from the monotonic clock: a step of the system clock does not change it.
  const startedMono = performance.now();
  const openLeases = options.openLeases ??
    (() => SqliteLeaseStore.open(config.database, { readOnly: true }));

  function snapshot(): StatusSnapshot {
    const f = config.failover;
    return buildStatus({
      version: VERSION,
      pid: Deno.pid,
      now: startedAt + (performance.now() - startedMono) / 1000,
      startedAt,
      database: config.database,
      listen: source.transports.map((t) => t.name),
      utilisation: source.core.utilisation(),
      pools: source.pools?.() ?? [],
      leases: source.store.countByState(),
      dhcp: source.core.counters,
      shell: source.shell.counters,
      storeFailing: source.shell.storeFailing,
      ...(source.shell.storeHealth ? { storeHealth: source.shell.storeHealth } : {}),
      ...(source.shell.clockHealth ? { clock: source.shell.clockHealth } : {}),
      failover: f
        ? {
          role: f.role,
          relationship: f.relationship,
          peer: source.peer?.status() ?? null,
          local: source.failover?.status() ?? null,
          transitions: source.failover?.transitions ?? [],
          kernelFilter: source.kernelFilter?.status() ?? null,
        }
        : null,
      hooks: hookStatus(),
      reload: source.reloads?.() ??
        { count: { applied: 0, unchanged: 0, invalid: 0, refused: 0 }, last: null },
    });
  }

  /** The hook runner's status, or null when no hook is configured (a runner always exists). */
  function hookStatus(): HookStatus | null {
    const h = source.hooks?.status() ?? null;
    return h !== null && h.command !== null ? h : null;
  }

  function metrics(): Response {
    return new Response(renderMetrics(snapshot()), {
      headers: { "content-type": METRICS_CONTENT_TYPE },
    });
  }

  async function reload(): Promise<Response> {
    if (!source.reload) return problem(409, "Cannot reload: this server does not support it");
    const r = await source.reload();
    return json(reloadBody(r), RELOAD_STATUS[r.outcome]);
  }

  function handle(req: Request): Response | Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    const method = ROUTES[path];
    if (method === undefined) return problem(404, `No such endpoint "${path}"`);
    if (req.method !== method && !(method === "GET" && req.method === "HEAD")) {
      return problem(405, `Use ${method} for ${path}`, { allow: method });
    }
    if (path === "/status") return json(snapshot());
    if (path === "/metrics") return metrics();
    if (path === "/leases") {
      const filter = parseLeasesQuery(url.searchParams);
      if (typeof filter === "string") return problem(400, filter);
      return new Response(leasesBody(openLeases(), filter), {
        headers: { "content-type": "application/json; charset=utf-8" },
      });
    }
    if (path === "/reload") return reload();
    // POST /partner-down: §9.9.3, the operator says the partner is down.
    const endpoint = source.failover ?? null;
    if (endpoint === null) {
      return problem(409, "Cannot go to PARTNER-DOWN: this server has no failover section");
    }
    const result = endpoint.command("partner-down");
    logger.warn("Operator command partner-down", {
      accepted: result.accepted ? "yes" : "no",
      from: result.previous,
      state: result.state,
    });
    if (!result.accepted && result.state !== "PARTNER-DOWN") {
      return json(
        { error: `Cannot go to PARTNER-DOWN from ${result.state}`, state: result.state },
        409,
      );
    }
    return json({ state: result.state, previous: result.previous });
  }

  function onError(e: unknown): Response {
    logger.error("Control request failed", {
      error: e instanceof Error ? e.message : String(e),
    });
    return problem(500, `Cannot answer: ${e instanceof Error ? e.message : String(e)}`);
  }

  await clearStaleSocket(socket);
  let unix: Deno.HttpServer<Deno.UnixAddr>;
  try {
    unix = Deno.serve({ path: socket, transport: "unix", onListen() {}, onError }, handle);
  } catch (e) {
    throw new Error(`Cannot listen on control socket "${socket}": ${(e as Error).message}`, {
      cause: e,
    });
  }
  let tcp: Deno.HttpServer<Deno.NetAddr> | null = null;
  try {
    // Owner only: the API can read every lease and (later) order PARTNER-DOWN.
    await Deno.chmod(socket, 0o600);
    const m = options.metrics;
    if (m) {
      try {
        tcp = Deno.serve({ hostname: m.hostname, port: m.port, onListen() {}, onError }, (req) => {
          const path = new URL(req.url).pathname;
          if (path !== "/metrics") return problem(404, `Only /metrics is served here`);
          if (req.method !== "GET" && req.method !== "HEAD") {
            return problem(405, "Use GET for /metrics", { allow: "GET" });
          }
          return metrics();
        });
      } catch (e) {
        throw new Error(
          `Cannot listen for metrics on ${m.hostname}:${m.port}: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
  } catch (e) {
    await unix.shutdown();
    await removeSocket(socket);
    throw e;
  }

  let stopping: Promise<void> | undefined;
  return {
    socket,
    metricsAddr: tcp?.addr ?? null,
    snapshot,
    stop() {
      stopping ??= (async () => {
        await Promise.all([unix.shutdown(), tcp?.shutdown()]);
        await removeSocket(socket);
      })();
      return stopping;
    },
  };
}

/**
 * Removes a socket file left by a server that died; throws when the path is not a socket or
 * something still answers on it (another server owns it).
 */
async function clearStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!info.isSocket) {
    throw new Error(`Cannot use "${path}" as the control socket: it exists and is not a socket`);
  }
  let conn: Deno.UnixConn | undefined;
  const timer = Promise.withResolvers<"timeout">();
  const id = setTimeout(() => timer.resolve("timeout"), PROBE_TIMEOUT_MS);
  try {
    const connecting = Deno.connect({ transport: "unix", path });
    const won = await Promise.race([connecting, timer.promise]);
    if (won === "timeout") {
      // Leave no pending op behind: close the connection if it completes later.
      connecting.then((c) => c.close(), () => {});
      throw new Error(`Cannot use control socket "${path}": it does not answer but exists`);
    }
    conn = won;
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused || e instanceof Deno.errors.NotFound) {
      await removeSocket(path);
      return;
    }
    throw e;
  } finally {
    clearTimeout(id);
  }
  conn.close();
  throw new Error(
    `Cannot listen on control socket "${path}": another server is running there ` +
      `(stop it, or set control.socket)`,
  );
}

async function removeSocket(path: string): Promise<void> {
  try {
    const info = await Deno.lstat(path);
    if (info.isSocket) await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}
