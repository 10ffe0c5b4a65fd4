/** `duet serve`: run the DHCP server until SIGTERM or SIGINT. */
import { parseArgs } from "node:util";
import { applyPeerFlags, loadConfig, readSharedSecret } from "../config/config.ts";
import type { Config } from "../config/types.ts";
import { ConfigError, StoreError } from "../errors.ts";
import { createLogger, type Logger, type LogLevel } from "../log.ts";
import { DhcpCore } from "../server/dhcp.ts";
import { DhcpShell } from "../server/shell.ts";
import type { Transport } from "../server/transport.ts";
import { openDenoTransport } from "../server/udp_deno.ts";
import { openFfiTransport } from "../server/udp_ffi.ts";
import { SqliteLeaseStore } from "../store/sqlite.ts";
import { hbaFromSplit, wireHba } from "../balance/hba.ts";
import type { LinkSettings } from "../peer/link.ts";
import type { PeerService } from "../peer/tcp.ts";
import { type EndpointClock, FailoverEndpoint } from "../failover/endpoint.ts";
import type { MachineOptions } from "../failover/state.ts";
import { formatIpv4 } from "../wire/ip.ts";
import {
  type ControlServer,
  controlSocketPath,
  metricsAddress,
  startControl,
} from "../control/http.ts";
import { type CliIo, ExitCode } from "./io.ts";
import { VERSION } from "./version.ts";

const LEVELS: readonly string[] = ["debug", "info", "warn", "error"];

/** Which socket implementation to use for `listen` entries. */
export type TransportChoice = "auto" | "ffi" | "deno";

/**
 * Opens one transport per `listen` entry: interfaces always go through FFI (the only way to
 * know the interface of arrival); addresses use Deno's sockets unless `ffi` is asked for.
 */
export function openTransports(config: Config, choice: TransportChoice): Transport[] {
  const out: Transport[] = [];
  try {
    const byPort = new Map<number, string[]>();
    for (const l of config.listen) {
      if (l.kind === "interface") {
        if (choice === "deno") {
          throw new Error(
            `Cannot listen on interface "${l.interface}" with --transport deno: use an address`,
          );
        }
        byPort.set(l.port, [...(byPort.get(l.port) ?? []), l.interface]);
      } else if (choice === "ffi") {
        out.push(openFfiTransport({ address: formatIpv4(l.address), port: l.port }));
      } else {
        out.push(openDenoTransport({ address: formatIpv4(l.address), port: l.port }));
      }
    }
    for (const [port, interfaces] of byPort) out.push(openFfiTransport({ interfaces, port }));
  } catch (e) {
    for (const t of out) t.close();
    throw e;
  }
  return out;
}

/** A running server, for serve and the demo. */
export interface RunningServer {
  shell: DhcpShell;
  core: DhcpCore;
  store: SqliteLeaseStore;
  transports: Transport[];
  /** The failover partner link, when the configuration has a failover section. */
  peer: PeerService | null;
  /** The failover endpoint (state machine and binding sync) that owns `peer`. */
  failover: FailoverEndpoint | null;
  /**
   * Stops serving, commits what is pending and closes the database. With `shutdown`, the
   * failover endpoint first enters SHUTDOWN and tells the partner (draft-12 §9.14).
   */
  stop(options?: { shutdown?: boolean }): Promise<void>;
}

/** The link settings of a configuration's failover section (draft-12 §7.8). */
export function linkSettings(config: Config, secret: Uint8Array | null): LinkSettings | null {
  const f = config.failover;
  if (!f) return null;
  return {
    role: f.role,
    relationship: f.relationship,
    mclt: f.mclt,
    hba: f.role === "primary"
      ? wireHba(f.hba ?? hbaFromSplit(f.split ?? 128), f.hbaPolarity)
      : null,
    maxUnackedBndupd: f.maxUnackedBndupd,
    receiveTimer: f.maxResponseDelay,
    vendorClass: `duet-${VERSION}`,
    secret,
    maxClockSkew: f.maxClockSkew,
    handshakeTimeout: Math.max(10, f.maxResponseDelay),
  };
}

/** The real clock and timers for the failover endpoint. */
export const SYSTEM_CLOCK: EndpointClock = {
  now: () => Date.now() / 1000,
  schedule: (fn, ms) => setTimeout(fn, Math.min(ms, 2 ** 31 - 1)),
  cancel: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Options of startServer(). */
export interface StartOptions {
  logger: Logger;
  transport?: TransportChoice;
  secret?: Uint8Array | null;
  /** Failover machine overrides (tests shorten the STARTUP timer). */
  machine?: Partial<MachineOptions>;
  /** Seconds between dials of an unreachable partner (default 5). */
  peerRetrySeconds?: number;
}

/** Opens the database and sockets of a configuration and starts serving. */
export function startServer(config: Config, options: StartOptions): RunningServer {
  // DEFERRED: COMMIT writes the WAL, the fsync runs off the event loop, ACKs wait for it.
  const store = SqliteLeaseStore.open(config.database, { synchronous: "DEFERRED" });
  let transports: Transport[];
  try {
    transports = openTransports(config, options.transport ?? "auto");
  } catch (e) {
    store.close();
    throw e;
  }
  let failover: FailoverEndpoint | null = null;
  const settings = linkSettings(config, options.secret ?? null);
  if (settings && config.failover) {
    // draft-12 §7-§9: the state machine and binding sync behind the partner link. The core and
    // the shell it calls into are made below; it uses them only once started.
    failover = new FailoverEndpoint({
      config,
      settings,
      store,
      core: {
        resync: (a) => core.resync(a),
        place: (l) => core.place(l),
        utilisation: () => core.utilisation(),
        giveToBackup: (i, n, now) => core.giveToBackup(i, n, now),
      },
      shell: {
        flush: () => shell.flush(),
        commitNow: () => shell.commitNow(),
        commitSoon: () => shell.commitSoon(),
        apply: (e) => shell.apply(e),
      },
      logger: options.logger,
      clock: SYSTEM_CLOCK,
      ...(options.machine ? { machine: options.machine } : {}),
      ...(options.peerRetrySeconds !== undefined ? { retrySeconds: options.peerRetrySeconds } : {}),
    });
  }
  const core: DhcpCore = new DhcpCore(config, store, { logger: options.logger, failover });
  const shell = new DhcpShell({
    core,
    store,
    transports,
    logger: options.logger,
    commitDelayMs: config.commitDelayMs,
    commitBatch: config.commitBatch,
    onCommitted: (addresses) => failover?.leasesCommitted(addresses),
  });
  let peer: PeerService | null = null;
  if (failover) {
    peer = failover.peer;
    try {
      failover.start();
    } catch (e) {
      await0(failover);
      for (const t of transports) t.close();
      store.close();
      throw e;
    }
  }
  shell.start();
  let stopping: Promise<void> | undefined;
  return {
    shell,
    core,
    store,
    transports,
    peer,
    failover,
    stop(options = {}) {
      stopping ??= (async () => {
        if (options.shutdown === true) await failover?.shutdown();
        else await failover?.stop();
        await shell.stop();
        store.close();
      })();
      return stopping;
    },
  };
}

/** Stops an endpoint whose start failed, in the background (its timers must not linger). */
function await0(failover: FailoverEndpoint): void {
  failover.stop().catch(() => {});
}

/** Runs `duet serve`; returns the exit code. */
export async function serveCommand(args: string[], io: CliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        db: { type: "string" },
        "log-level": { type: "string" },
        "log-format": { type: "string" },
        transport: { type: "string" },
        peer: { type: "string" },
        role: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    io.stderr(`duet serve: ${(e as Error).message}\n`);
    return ExitCode.USAGE;
  }
  if (values.help) {
    io.stdout(
      "Usage: duet serve --config FILE [--db FILE] [--log-level debug|info|warn|error]\n" +
        "                  [--log-format text|json] [--transport auto|ffi|deno]\n" +
        "                  [--peer ADDR[:PORT] --role primary|secondary]\n",
    );
    return ExitCode.OK;
  }
  if (!values.config) {
    io.stderr("duet serve: --config FILE is required\n");
    return ExitCode.USAGE;
  }
  const format = values["log-format"] ?? "text";
  if (format !== "text" && format !== "json") {
    io.stderr(`duet serve: --log-format must be text or json, not "${format}"\n`);
    return ExitCode.USAGE;
  }
  const transport = values.transport ?? "auto";
  if (transport !== "auto" && transport !== "ffi" && transport !== "deno") {
    io.stderr(`duet serve: --transport must be auto, ffi or deno, not "${transport}"\n`);
    return ExitCode.USAGE;
  }
  if (values["log-level"] !== undefined && !LEVELS.includes(values["log-level"])) {
    io.stderr(`duet serve: --log-level must be one of ${LEVELS.join(", ")}\n`);
    return ExitCode.USAGE;
  }

  let config: Config;
  let secret: Uint8Array | null;
  try {
    config = applyPeerFlags(await loadConfig(values.config), {
      peer: values.peer,
      role: values.role,
    });
    secret = await readSharedSecret(config);
  } catch (e) {
    if (e instanceof ConfigError) {
      io.stderr(e.message + "\n");
      return ExitCode.INVALID_CONFIG;
    }
    throw e;
  }
  if (values.db) config = { ...config, database: values.db };
  const level = (values["log-level"] ?? config.logLevel) as LogLevel;
  const logger = createLogger({ level, format });

  let server: RunningServer;
  try {
    server = startServer(config, { logger, transport, secret });
  } catch (e) {
    if (e instanceof StoreError || e instanceof Error) {
      logger.error("Cannot start", { error: e.message });
      return ExitCode.FAILURE;
    }
    throw e;
  }
  // The control endpoint (lib/control/http.ts): GET /status, /metrics, /leases.
  let control: ControlServer;
  try {
    control = await startControl(server, {
      socket: controlSocketPath(config),
      metrics: metricsAddress(config),
      config,
      logger,
    });
  } catch (e) {
    logger.error("Cannot start", { error: e instanceof Error ? e.message : String(e) });
    await server.stop();
    return ExitCode.FAILURE;
  }
  logger.info("duet serving", {
    version: VERSION,
    database: config.database,
    listen: server.transports.map((t) => t.name).join(","),
    control: control.socket,
    metrics: control.metricsAddr
      ? `${control.metricsAddr.hostname}:${control.metricsAddr.port}`
      : undefined,
    subnets: config.subnets.length,
    failover: config.failover
      ? `${config.failover.role} of "${config.failover.relationship}", partner ${
        formatIpv4(config.failover.peer)
      }:${config.failover.peerPort}`
      : "off",
  });

  const { promise: signalled, resolve } = Promise.withResolvers<string>();
  const onTerm = () => resolve("SIGTERM");
  const onInt = () => resolve("SIGINT");
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGINT", onInt);
  const why = await Promise.race([signalled, server.shell.done().then(() => "closed")]);
  Deno.removeSignalListener("SIGTERM", onTerm);
  Deno.removeSignalListener("SIGINT", onInt);
  logger.info("duet stopping", { reason: why });
  await control.stop();
  // draft-12 §9.14: a partner in NORMAL hears STATE SHUTDOWN and takes over (PARTNER-DOWN).
  await server.stop({ shutdown: true });
  return ExitCode.OK;
}
