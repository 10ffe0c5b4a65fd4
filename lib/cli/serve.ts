/** `duet serve`: run the DHCP server until SIGTERM or SIGINT. */
import { parseArgs } from "node:util";
import {
  applyPeerFlags,
  type FailoverTlsFiles,
  keyPosition,
  loadConfig,
  loadConfigText,
  type PeerFlags,
  readFailoverTls,
  readSharedSecret,
} from "../config/config.ts";
import {
  planReload,
  RELOAD_OUTCOMES,
  type ReloadOutcome,
  type ReloadResult,
} from "../config/reload.ts";
import type { Config } from "../config/types.ts";
import { ConfigError, type ConfigProblem, StoreError } from "../errors.ts";
import { classifyChange } from "../hooks/event.ts";
import { hookPermissionProblem, HookRunner } from "../hooks/runner.ts";
import { createLogger, type LevelLogger, type Logger, type LogLevel } from "../log.ts";
import { type ClockSources, CoreLeaseView, ProtocolClock, startStep } from "../server/clock.ts";
import { DhcpCore, type DhcpCounters, type FailoverView } from "../server/dhcp.ts";
import { DhcpShell, type LeaseChange, SYSTEM_CLOCK_SOURCES } from "../server/shell.ts";
import type { LeaseView } from "../store/store.ts";
import { type PoolStatus, poolUsage } from "../control/pools.ts";
import type { Transport } from "../server/transport.ts";
import { openDenoTransport } from "../server/udp_deno.ts";
import { openFfiTransport } from "../server/udp_ffi.ts";
import { KernelBalancer } from "../server/kernel_balance.ts";
import { SqliteLeaseStore } from "../store/sqlite.ts";
import { hbaFromSplit, wireHba } from "../balance/hba.ts";
import type { LinkSettings } from "../peer/link.ts";
import { PeerService } from "../peer/tcp.ts";
import {
  type EndpointClock,
  FailoverEndpoint,
  parsePersisted,
  STATE_META_KEY,
} from "../failover/endpoint.ts";
import { type MachineOptions, type Persisted, shiftPersistedTimes } from "../failover/state.ts";
import { cidrContains, formatIpv4 } from "../wire/ip.ts";
import {
  type ControlServer,
  controlSocketPath,
  metricsAddress,
  startControl,
} from "../control/http.ts";
import { type CliIo, ExitCode } from "./io.ts";
import { VERSION } from "./version.ts";

const LEVELS: readonly string[] = ["debug", "info", "warn", "error"];
/** How long a stopping server lets queued lease hooks run before killing them. */
const HOOK_STOP_GRACE_MS = 2000;

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

/**
 * Builds the DHCP core of a configuration over the lease database. The one place a DhcpCore
 * is constructed: at start, and again by every reload that applies (the core derives all its
 * state from the configuration and the leases).
 */
export function createCore(
  config: Config,
  view: LeaseView,
  logger: Logger,
  failover: FailoverView | null = null,
): DhcpCore {
  return new DhcpCore(config, view, { logger, failover });
}

/** Reloads so far by outcome, and the last one. */
export interface ReloadHistory {
  count: Record<ReloadOutcome, number>;
  last: ReloadResult | null;
}

/** A running server, for serve and the demo. */
export interface RunningServer {
  shell: DhcpShell;
  /** The DHCP core in force (a reload replaces it). */
  readonly core: DhcpCore;
  /** The configuration in force (a reload replaces it). */
  readonly config: Config;
  store: SqliteLeaseStore;
  transports: Transport[];
  /** The failover partner link, when the configuration has a failover section. */
  peer: PeerService | null;
  /** The failover endpoint (state machine and binding sync) that owns `peer`. */
  failover: FailoverEndpoint | null;
  /** The kernel's load-balancing filter beside the endpoint (lib/server/kernel_balance.ts). */
  kernelFilter: KernelBalancer | null;
  /** The lease-event hook runner (idle when no `hooks:` section is configured). */
  hooks: HookRunner;
  /** Utilisation of every pool of the configuration in force. */
  pools(): PoolStatus[];
  /**
   * Re-reads the configuration file and applies what is safe to apply live (SIGHUP,
   * POST /reload); the configuration in force stays when the file is invalid or a change is
   * refused. Never rejects.
   */
  reload(): Promise<ReloadResult>;
  /** Reloads so far. */
  reloads(): ReloadHistory;
  /**
   * Stops serving, commits what is pending and closes the database. With `shutdown`, the
   * failover endpoint first enters SHUTDOWN and tells the partner (draft-12 §9.14).
   */
  stop(options?: { shutdown?: boolean }): Promise<void>;
}

/** The link settings of a configuration's failover section (draft-12 §7.8, §11.2). */
export function linkSettings(
  config: Config,
  secret: Uint8Array | null,
  tlsFiles: FailoverTlsFiles | null = null,
): LinkSettings | null {
  const f = config.failover;
  if (!f) return null;
  const tls = f.tls && tlsFiles
    ? {
      require: f.tls.require,
      cert: tlsFiles.cert,
      key: tlsFiles.key,
      ca: tlsFiles.ca,
      serverName: f.tls.serverName,
    }
    : null;
  return {
    role: f.role,
    relationship: f.relationship,
    mclt: f.mclt,
    // A secondary's, if set, is the assignment it expects from the primary (§7.8.2 step 8).
    hba: f.role === "primary" || f.hba !== null || f.split !== null
      ? wireHba(f.hba ?? hbaFromSplit(f.split ?? 128), f.hbaPolarity)
      : null,
    maxUnackedBndupd: f.maxUnackedBndupd,
    receiveTimer: f.maxResponseDelay,
    vendorClass: `duet-${VERSION}`,
    secret,
    maxClockSkew: f.maxClockSkew,
    handshakeTimeout: Math.max(10, f.maxResponseDelay),
    tls,
  };
}

/**
 * The failover endpoint's clock: the DHCP shell's protocol clock on the timeline of the stored
 * lease times (ProtocolClock.storeNow(): the system clock, with a step taking effect when the
 * shell moves the stored times by it), and real timers (monotonic, so steps do not move them).
 */
export function endpointClock(clock: ProtocolClock): EndpointClock {
  return {
    now: () => clock.storeNow(),
    schedule: (fn, ms) => setTimeout(fn, Math.min(ms, 2 ** 31 - 1)),
    cancel: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  };
}

/**
 * Test hook of `duet serve --test-clock-offset-file FILE`: the system wall clock plus the
 * number of seconds written in FILE, read again at every reading (missing or not a number: 0).
 * Lets a test step the clock one server sees without touching the machine's clock.
 */
export function offsetClockSources(file: string): ClockSources {
  return {
    wallMs: () => SYSTEM_CLOCK_SOURCES.wallMs() + readOffsetSeconds(file) * 1000,
    monoMs: () => performance.now(),
  };
}

function readOffsetSeconds(file: string): number {
  try {
    const n = Number(Deno.readTextFileSync(file).trim());
    return Number.isFinite(n) ? n : 0;
  } catch {
    return 0;
  }
}

/** Options of startServer(). */
export interface StartOptions {
  logger: Logger;
  transport?: TransportChoice;
  secret?: Uint8Array | null;
  /** The `failover.tls` files, read by readFailoverTls(). */
  tls?: FailoverTlsFiles | null;
  /** Failover machine overrides (tests shorten the STARTUP timer). */
  machine?: Partial<MachineOptions>;
  /** Seconds between dials of an unreachable partner (default 5). */
  peerRetrySeconds?: number;
  /** Where the protocol clock reads time (default: the system's; tests step a fake). */
  clockSources?: ClockSources;
  /**
   * How reload() reads the configuration again: the file (default `config.file`) and the
   * flags of `duet serve` that changed what was read, applied again.
   */
  reload?: ReloadOptions;
}

/** serve's flags that reload() applies again to the file it re-reads. */
export interface ReloadOptions {
  file?: string;
  peerFlags?: PeerFlags;
  /** `--db`: replaces the file's `database`. */
  db?: string | undefined;
  /** `--log-level` was given: the file's `log-level` is not applied. */
  logLevelFixed?: boolean;
}

/** Adds one core's counters to another's, so that a reload does not reset them. */
function carryCounters(from: DhcpCounters, to: DhcpCounters): void {
  for (const key of ["received", "sent", "dropped"] as const) {
    const dst = to[key];
    for (const [name, n] of Object.entries(from[key])) dst[name] = (dst[name] ?? 0) + n;
  }
  to.offersRecycled += from.offersRecycled;
}

/** The CIDR of the subnet an address is in, or null. */
function subnetOf(config: Config, address: number): string | null {
  const s = config.subnets.find((x) => cidrContains(x.subnet, address));
  return s ? `${formatIpv4(s.subnet.network)}/${s.subnet.prefix}` : null;
}

/** Formats problems as `file:line:col: message`. */
export function problemLines(file: string, problems: readonly ConfigProblem[]): string[] {
  return problems.map((p) => `${file}:${p.line}:${p.col}: ${p.message}`);
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
  const logger = options.logger;
  let current = config;
  const clock = new ProtocolClock(options.clockSources ?? SYSTEM_CLOCK_SOURCES);
  alignStoredTimes(store, clock, logger);
  // The core reads the leases on the protocol clock's timeline (lib/server/clock.ts).
  const view = new CoreLeaseView(store, clock);
  let failover: FailoverEndpoint | null = null;
  let peer: PeerService | null = null;
  const settings = linkSettings(config, options.secret ?? null, options.tls ?? null);
  const f = config.failover;
  // The failover endpoint and its link run on the stored timeline (lib/server/clock.ts).
  const storedClock = endpointClock(clock);
  if (settings && f) {
    // draft-12 §7-§9: the state machine and binding sync behind the partner link. The core and
    // the shell it calls into are made below; it uses them only once started. It reaches the
    // core through `core`, which a reload replaces.
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
        writable: () => !shell.storeFailing,
      },
      logger,
      clock: storedClock,
      coreOffset: () => clock.offset,
      ...(options.machine ? { machine: options.machine } : {}),
      // draft-12 §8: the partner link over TCP.
      link: (handlers) => {
        peer = new PeerService({
          settings,
          addresses: { address: f.address, port: f.port, peer: f.peer, peerPort: f.peerPort },
          logger: options.logger,
          ...handlers,
          now: () => storedClock.now(),
          ...(options.peerRetrySeconds !== undefined
            ? { retrySeconds: options.peerRetrySeconds }
            : {}),
        });
        return peer;
      },
    });
  }
  let core: DhcpCore;
  try {
    core = createCore(config, view, logger, failover);
  } catch (e) {
    for (const t of transports) t.close();
    store.close();
    throw e;
  }
  const hooks = new HookRunner({ settings: config.hooks ?? null, logger });
  const shell = new DhcpShell({
    core,
    store,
    transports,
    logger,
    commitDelayMs: config.commitDelayMs,
    commitBatch: config.commitBatch,
    clock,
    onCommitted: (addresses, leases) => failover?.leasesCommitted(addresses, leases),
    onLeasesCommitted: (changes) => leaseEvents(changes),
    onClockStep: (delta) => failover?.shiftTimes(delta),
  });
  shell.trackPrevious = hooks.enabled;

  /** After a COMMIT: one hook event per client-visible change (lib/hooks/event.ts). */
  function leaseEvents(changes: LeaseChange[]): void {
    if (!hooks.enabled) return;
    const time = Math.floor(Date.now() / 1000);
    for (const c of changes) {
      const event = classifyChange(c.before, c.after);
      if (event === null) continue;
      hooks.enqueue({
        event,
        time,
        lease: c.after,
        previous: c.before?.state ?? null,
        subnet: subnetOf(current, c.after.address),
      });
    }
  }
  if (failover) {
    try {
      failover.start();
    } catch (e) {
      await0(failover);
      for (const t of transports) t.close();
      store.close();
      throw e;
    }
  }
  // draft-12 §5.3 in the kernel: while NORMAL, the partner's broadcasts never wake this server.
  let kernelFilter: KernelBalancer | null = null;
  if (failover !== null) {
    const k = new KernelBalancer({
      transports,
      source: failover,
      serverId: () => current.serverId ?? null,
      counters: () => core.counters,
      logger,
      enabled: f?.kernelFilter === true,
    });
    failover.onStateChange = () => k.sync();
    kernelFilter = k;
  }
  shell.start();
  // The wall time the database was last known good at, for the next start (alignStoredTimes):
  // a small commit of its own, between the shell's batches (no reply waits for it, and it is
  // no lease), skipped while a batch is open; the next minute will do.
  const recordWall = () => {
    if (store.pending > 0) return;
    try {
      store.setMeta(CLOCK_META_KEY, String(Math.floor(clock.wall())));
      store.commit();
    } catch (e) {
      // A database that refuses writes is the shell's to report.
      if (!(e instanceof StoreError)) throw e;
      try {
        store.rollback();
      } catch {
        // Already rolled back.
      }
      store.takeDiscarded();
    }
  };
  recordWall();
  const wallTimer = setInterval(recordWall, CLOCK_RECORD_SECONDS * 1000);
  let stopping: Promise<void> | undefined;
  const history: ReloadHistory = {
    count: Object.fromEntries(RELOAD_OUTCOMES.map((o) => [o, 0])) as Record<ReloadOutcome, number>,
    last: null,
  };
  let secret = options.secret ?? null;
  let reloading: Promise<unknown> = Promise.resolve();

  /** Puts a validated, allowed configuration in force between two packets. */
  function apply(next: Config, nextSecret: Uint8Array | null): void {
    const fresh = createCore(next, view, logger, failover);
    carryCounters(core.counters, fresh.counters);
    core = fresh;
    shell.core = fresh;
    shell.setCommit(next.commitDelayMs, next.commitBatch);
    hooks.configure(next.hooks ?? null);
    shell.trackPrevious = hooks.enabled;
    const level = options.reload?.logLevelFixed ? undefined : next.logLevel;
    if (level !== undefined && "setLevel" in logger) (logger as LevelLogger).setLevel(level);
    current = next;
    secret = nextSecret;
  }

  async function reloadOnce(): Promise<ReloadResult> {
    const r = options.reload ?? {};
    const file = r.file ?? config.file;
    const time = Math.floor(Date.now() / 1000);
    const result = (outcome: ReloadOutcome, changes: string[], problems: ConfigProblem[]) => ({
      outcome,
      file,
      time,
      changes,
      problems,
    });
    let next: Config;
    let text: string;
    let nextSecret: Uint8Array | null;
    try {
      const loaded = await loadConfigText(file);
      text = loaded.text;
      next = applyPeerFlags(loaded.config, r.peerFlags ?? {});
      if (r.db !== undefined) next = { ...next, database: r.db };
      nextSecret = await readSharedSecret(next);
    } catch (e) {
      if (e instanceof ConfigError) return result("invalid", [], e.problems);
      const message = `Cannot read the configuration: ${e instanceof Error ? e.message : e}`;
      return result("invalid", [], [{ path: "", line: 0, col: 0, message }]);
    }
    if (stopping) {
      return result("refused", [], [{
        path: "",
        line: 0,
        col: 0,
        message: "Cannot reload: duet is stopping",
      }]);
    }
    const locate = (path: string) => keyPosition(text, path);
    const plan = planReload(current, next, {
      locate,
      countActive: (first, last) => store.countInRange(first, last).active,
      secrets: { old: secret, next: nextSecret },
    });
    const program = next.hooks?.command[0];
    const denied = program === undefined ? null : hookPermissionProblem(program);
    if (denied !== null) {
      plan.refused.push({ path: "hooks.command", ...locate("hooks.command"), message: denied });
    }
    if (plan.refused.length > 0) return result("refused", [], plan.refused);
    if (plan.changes.length === 0) return result("unchanged", [], []);
    try {
      apply(next, nextSecret);
    } catch (e) {
      const message = `Cannot apply the configuration: ${e instanceof Error ? e.message : e}`;
      return result("refused", [], [{ path: "", line: 0, col: 0, message }]);
    }
    return result("applied", plan.changes, []);
  }

  function record(r: ReloadResult): ReloadResult {
    history.count[r.outcome]++;
    history.last = r;
    if (r.outcome === "applied") {
      logger.info("Configuration reloaded", { file: r.file, changes: r.changes.join(", ") });
    } else if (r.outcome === "unchanged") {
      logger.info("Configuration reloaded: nothing changed", { file: r.file });
    } else {
      logger.error(
        r.outcome === "invalid"
          ? "Configuration reload failed: the file is invalid; keeping the configuration in force"
          : "Configuration reload refused; keeping the configuration in force",
        { file: r.file, problems: r.problems.length },
      );
      for (const line of problemLines(r.file, r.problems)) {
        logger.error("Reload problem", { problem: line });
      }
    }
    return r;
  }

  return {
    shell,
    get core() {
      return core;
    },
    get config() {
      return current;
    },
    store,
    transports,
    peer,
    failover,
    kernelFilter,
    hooks,
    pools: () => poolUsage(current.subnets, store),
    reload() {
      // One reload at a time, in the order asked.
      const run = reloading.then(() =>
        reloadOnce().catch((e: unknown): ReloadResult => ({
          outcome: "refused",
          file: options.reload?.file ?? config.file,
          time: Math.floor(Date.now() / 1000),
          changes: [],
          problems: [{
            path: "",
            line: 0,
            col: 0,
            message: `Cannot reload: ${e instanceof Error ? e.message : String(e)}`,
          }],
        }))
      ).then(record);
      reloading = run.catch(() => {});
      return run;
    },
    reloads: () => ({ count: { ...history.count }, last: history.last }),
    stop(stopOptions = {}) {
      stopping ??= (async () => {
        await reloading;
        clearInterval(wallTimer);
        if (stopOptions.shutdown === true) await failover?.shutdown();
        else await failover?.stop();
        kernelFilter?.stop();
        await shell.stop();
        recordWall();
        await hooks.stop(HOOK_STOP_GRACE_MS);
        store.close();
      })();
      return stopping;
    },
  };
}

/**
 * Before the core loads the leases: when the wall time last recorded is later than the system
 * clock by more than a minute (it went backwards across the restart, e.g. a router without a battery-backed clock
 * that has not synchronised yet), every stored time moves back by the difference, so that each
 * lease keeps the time it had left (lib/server/clock.ts startStep()).
 */
export function alignStoredTimes(
  store: SqliteLeaseStore,
  clock: ProtocolClock,
  logger: Logger,
): void {
  // The wall time this server last recorded, not the leases' own times: those may come from a
  // partner whose clock is ahead (draft-12 §5.10 lets partners differ by any amount).
  const newest = Number(store.getMeta(CLOCK_META_KEY) ?? 0) || 0;
  const step = startStep(newest, clock.wall());
  if (step === 0) return;
  logger.warn("System clock is behind the lease database: moving every lease time back", {
    step: `${step}s`,
    clock: new Date(clock.wall() * 1000).toISOString(),
    newest: new Date(newest * 1000).toISOString(),
  });
  try {
    store.shiftTimes(step);
    // The failover state's own times move with them, so that its waits (the MCLT in
    // PARTNER-DOWN, RECOVER-WAIT) keep what they had left; an unreadable record is left for
    // the endpoint to report.
    const text = store.getMeta(STATE_META_KEY);
    const record = text === undefined ? null : readStateRecord(text);
    if (record !== null) {
      store.setMeta(STATE_META_KEY, JSON.stringify(shiftPersistedTimes(record, step)));
    }
    store.commit();
  } catch (e) {
    if (!(e instanceof StoreError)) throw e;
    store.rollback();
    logger.error("Cannot move the lease times back; leases keep their stored times", {
      error: e.message,
    });
  }
}

/** The meta key of the wall time the server last recorded, epoch seconds. */
const CLOCK_META_KEY = "clock.wall";

/** A stored failover state record with times to move, or null when it is not one. */
function readStateRecord(text: string): Persisted | null {
  try {
    const p = parsePersisted(text);
    return Number.isSafeInteger(p.startTimeOfState) && Number.isSafeInteger(p.lastOperational)
      ? p
      : null;
  } catch {
    return null;
  }
}

/** How often it is recorded while serving (one small commit), seconds. */
const CLOCK_RECORD_SECONDS = 60;

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
        // A test hook, not in --help: README "Testing clock steps".
        "test-clock-offset-file": { type: "string" },
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
  let tls: FailoverTlsFiles | null;
  try {
    config = applyPeerFlags(await loadConfig(values.config), {
      peer: values.peer,
      role: values.role,
    });
    secret = await readSharedSecret(config);
    tls = await readFailoverTls(config);
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
  const program = config.hooks?.command[0];
  const denied = program === undefined ? null : hookPermissionProblem(program);
  if (denied !== null) {
    logger.error("Cannot start", { error: denied });
    return ExitCode.FAILURE;
  }

  let server: RunningServer;
  try {
    const offsetFile = values["test-clock-offset-file"];
    server = startServer(config, {
      logger,
      transport,
      secret,
      tls,
      reload: {
        file: values.config,
        peerFlags: { peer: values.peer, role: values.role },
        db: values.db,
        logLevelFixed: values["log-level"] !== undefined,
      },
      ...(offsetFile !== undefined ? { clockSources: offsetClockSources(offsetFile) } : {}),
    });
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
      }:${config.failover.peerPort}${
        config.failover.tls ? `, TLS ${config.failover.tls.require ? "required" : "desired"}` : ""
      }`
      : "off",
    hooks: config.hooks ? config.hooks.command.join(" ") : undefined,
  });

  const { promise: signalled, resolve } = Promise.withResolvers<string>();
  const onTerm = () => resolve("SIGTERM");
  const onInt = () => resolve("SIGINT");
  // SIGHUP: re-read the configuration (as `duet reload` does through POST /reload).
  const onHup = () => {
    logger.info("SIGHUP: reloading the configuration", { file: values.config });
    void server.reload();
  };
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGHUP", onHup);
  const why = await Promise.race([signalled, server.shell.done().then(() => "closed")]);
  Deno.removeSignalListener("SIGTERM", onTerm);
  Deno.removeSignalListener("SIGINT", onInt);
  Deno.removeSignalListener("SIGHUP", onHup);
  logger.info("duet stopping", { reason: why });
  await control.stop();
  // draft-12 §9.14: a partner in NORMAL hears STATE SHUTDOWN and takes over (PARTNER-DOWN).
  await server.stop({ shutdown: true });
  return ExitCode.OK;
}
