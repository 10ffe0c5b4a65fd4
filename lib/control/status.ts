/**
 * The status snapshot of a running server (GET /status, `duet status`, GET /metrics) and its
 * human rendering. Pure: the shell (lib/control/http.ts) gathers the parts, buildStatus()
 * turns them into one plain JSON-able object.
 */
import type { KernelFilterStatus } from "../server/kernel_balance.ts";
import type { DhcpCounters } from "../server/dhcp.ts";
import type { ClockHealth, ShellCounters, StoreHealth } from "../server/shell.ts";
import type { PeerStatus } from "../peer/tcp.ts";
import type { ReloadOutcome, ReloadResult } from "../config/reload.ts";
import { RELOAD_OUTCOMES } from "../config/reload.ts";
import type { ConfigProblem } from "../errors.ts";
import type { HookStatus } from "../hooks/runner.ts";
import type { PoolStatus } from "./pools.ts";
import type { AckLatencySummary } from "../peer/ack_latency.ts";
import type { SyncStatus } from "../failover/sync.ts";
import { LEASE_STATES, type LeaseState } from "../store/store.ts";
import { serverStateName } from "../wire/failover.ts";

/** One subnet's dynamic addresses (DhcpCore.utilisation()). */
export interface SubnetStatus {
  /** CIDR, e.g. "198.18.16.0/24". */
  subnet: string;
  /** Addresses in the subnet's pools. */
  size: number;
  /** Of those, how many are free to offer. */
  free: number;
  /**
   * Failover only: how many of the free ones are the secondary's (BACKUP); the rest are the
   * primary's (FREE, draft-12 §5.4).
   */
  backup?: number;
}

/** One histogram bucket: the count of observations in (previous `le`, `le`]. */
export interface HistogramBucket {
  /** Upper bound; "+Inf" for the last bucket (JSON has no Infinity). */
  le: number | "+Inf";
  count: number;
}

/** A histogram as per-bucket counts (not cumulative), with the sum and count of observations. */
export interface Histogram {
  buckets: HistogramBucket[];
  sum: number;
  count: number;
}

/** What the partner said about itself (draft-12 §7.8, §7.10). */
export interface PartnerStatus {
  relationship: string;
  vendorClass: string | null;
  /** server-state name (draft-12 §12.24), e.g. "NORMAL". */
  state: string;
  /** server-state number. */
  stateCode: number;
  /** server-flags (draft-12 §12.23). */
  flags: number;
  /** start-time-of-state, epoch seconds (draft-12 §12.25). */
  startTimeOfState: number;
  mclt: number | null;
  maxUnackedBndupd: number | null;
  receiveTimer: number | null;
}

/** The failover relationship as seen from this server, or null in the snapshot when off. */
export interface FailoverStatus {
  role: "primary" | "secondary";
  relationship: string;
  /** This server's failover state (draft-12 §9), when the state machine runs. */
  state?: string;
  stateCode?: number;
  /** ISO 8601 UTC time this server entered `state`. */
  stateSince?: string;
  /** Partner link (draft-12 §8.3): up once CONNECT/CONNECTACK and STATE are done. */
  link: "up" | "connecting" | "down";
  connections: number;
  partner: PartnerStatus | null;
  /** Partner clock minus ours in seconds (draft-12 §5.10), or null before any contact. */
  clockSkewSeconds: number | null;
  /** Seconds since the partner last sent anything, or null. */
  sinceContactSeconds: number | null;
  /**
   * Binding updates (draft-12 §7.1-§7.2), when the state machine runs: lease changes queued to
   * send, BNDUPDs sent and not acknowledged, the partner's window, the totals, and the
   * BNDUPD -> BNDACK round trips.
   */
  updates?: {
    queued: number;
    unacked: number;
    /** The partner's max-unacked-bndupd (§8.4), 0 while the link is down. */
    window: number;
    sent: number;
    accepted: number;
    rejected: number;
    /** BNDUPD -> BNDACK round trips in milliseconds (this side's clock). */
    ackLatency: AckLatencySummary | null;
  };
  /** The last state transitions (up to 10), oldest first, each with the reason logged. */
  transitions: TransitionStatus[];
  /**
   * The kernel's load-balancing filter: whether it drops the partner's requests now
   * (`dropping`, NORMAL), stands by (`passing`), is `off` by configuration or `unavailable`
   * (with the kernel's reason), and how many requests it dropped. Absent without an endpoint.
   */
  kernelFilter?: KernelFilterStatus;
}

/** One failover state transition (draft-12 §9). */
export interface TransitionStatus {
  /** ISO 8601 UTC. */
  time: string;
  from: string;
  to: string;
  reason: string;
}

/** The last reload as GET /status shows it (time in ISO 8601 UTC). */
export interface LastReload {
  outcome: ReloadOutcome;
  file: string;
  time: string;
  changes: string[];
  problems: ConfigProblem[];
}

/** Reloads since start (SIGHUP and POST /reload) by outcome, and the last one. */
export interface ReloadStatus {
  count: Record<ReloadOutcome, number>;
  last: LastReload | null;
}

/** GET /status: everything an operator or a scraper needs, as plain JSON. */
export interface StatusSnapshot {
  /**
   * This server's failover state in lower case as the draft names it (`normal`,
   * `communications-interrupted`, `partner-down`, `recover`, …), or null without failover.
   */
  state: string | null;
  /** The partner's last reported state, same spelling, or null when unknown. */
  "partner-state": string | null;
  version: string;
  pid: number;
  /** ISO 8601 UTC time the server started. */
  startedAt: string;
  uptimeSeconds: number;
  database: string;
  /** Transport names, e.g. "deno 127.0.0.1:67". */
  listen: string[];
  subnets: SubnetStatus[];
  /** Every pool's utilisation, in configuration order (lib/control/pools.ts). */
  pools: PoolStatus[];
  /** Lease count per binding state (draft-12 §5.11), every state present. */
  leases: Record<LeaseState, number>;
  dhcp: {
    /** Requests received per DHCP message type name (RFC 2132 §9.6). */
    received: Record<string, number>;
    /** Replies sent per message type name. */
    sent: Record<string, number>;
    /** Requests answered with nothing, per reason. */
    dropped: Record<string, number>;
    /**
     * Replies decided on but not sent because the database could not record their lease
     * (DHCPOFFER, DHCPACK), per message type; not counted in `sent`.
     */
    withheld: Record<string, number>;
    /** Datagrams that did not decode as DHCP. */
    malformed: number;
    sendFailed: number;
    /** Offers taken back before their hold ended because `offer-limit` was reached. */
    offersRecycled: number;
  };
  db: {
    commits: number;
    commitFailures: number;
    leasesCommitted: number;
    /** True while the database refuses writes (acknowledgements are withheld). */
    storeFailing: boolean;
    /** The opposite of storeFailing: writes (and their syncs) succeed. */
    writable: boolean;
    /** ISO 8601 UTC start of the current outage, or null while writable. */
    failingSince: string | null;
    /** The error of the latest failed write, commit or sync (kept after recovery), or null. */
    lastError: string | null;
    commitLatencyMs: Histogram;
  };
  /** Steps of the system clock that were applied to the stored lease times (README). */
  clock: {
    steps: number;
    /** The last step in seconds (positive: forward), or null. */
    lastStepSeconds: number | null;
  };
  failover: FailoverStatus | null;
  /** The lease-event hook (lib/hooks/runner.ts), or null when none is configured. */
  hooks: HookStatus | null;
  reload: ReloadStatus;
}

/** The inputs of buildStatus(), gathered by the shell. */
export interface StatusParts {
  version: string;
  pid: number;
  /** Epoch seconds now and at start. */
  now: number;
  startedAt: number;
  database: string;
  listen: readonly string[];
  utilisation: readonly SubnetStatus[];
  pools?: readonly PoolStatus[];
  leases: Record<LeaseState, number>;
  dhcp: DhcpCounters;
  shell: ShellCounters;
  storeFailing: boolean;
  /** The shell's view of the database (DhcpShell.storeHealth); derived from storeFailing if absent. */
  storeHealth?: StoreHealth;
  /** DhcpShell.clockHealth; no steps if absent. */
  clock?: ClockHealth;
  failover: {
    role: "primary" | "secondary";
    relationship: string;
    peer: PeerStatus | null;
    /** The state machine's state (lib/failover/endpoint.ts), when it runs. */
    local?: {
      state: string;
      stateCode: number;
      startTimeOfState: number;
      /**
       * The partner's last known state as the machine keeps it (draft-12 §9.2), also while
       * the link is down; null if it never heard from the partner.
       */
      partnerState?: string | null;
      /** The binding sync's counters (lib/failover/sync.ts). */
      sync?: SyncStatus;
    } | null;
    /** FailoverEndpoint.transitions: times in epoch seconds. */
    transitions?: readonly { time: number; from: string; to: string; reason: string }[];
    /** The kernel's load-balancing filter (lib/server/kernel_balance.ts). */
    kernelFilter?: KernelFilterStatus | null;
  } | null;
  hooks?: HookStatus | null;
  /** Reload counts and the last reload (lib/cli/serve.ts). */
  reload?: { count: Record<ReloadOutcome, number>; last: ReloadResult | null };
}

/** Epoch seconds as ISO 8601 UTC without milliseconds. */
function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function reloadOf(r: StatusParts["reload"]): ReloadStatus {
  const count = {} as Record<ReloadOutcome, number>;
  for (const o of RELOAD_OUTCOMES) count[o] = r?.count[o] ?? 0;
  const l = r?.last ?? null;
  return {
    count,
    last: l === null ? null : {
      outcome: l.outcome,
      file: l.file,
      time: iso(l.time),
      changes: [...l.changes],
      problems: l.problems.map((p) => ({ ...p })),
    },
  };
}

/** A copy of a counter record with its keys sorted (stable JSON). */
function sorted(r: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(r).sort()) out[k] = r[k] as number;
  return out;
}

function isoSeconds(t: number): string {
  return new Date(t * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

function histogramOf(map: ReadonlyMap<number, number>, sum: number): Histogram {
  const buckets: HistogramBucket[] = [...map.keys()].sort((a, b) => a - b).map((le) => ({
    le: le === Infinity ? "+Inf" : le,
    count: map.get(le) ?? 0,
  }));
  return { buckets, sum, count: buckets.reduce((n, b) => n + b.count, 0) };
}

function failoverOf(f: NonNullable<StatusParts["failover"]>): FailoverStatus {
  const p = f.peer;
  const partner = p?.partner ?? null;
  const local = f.local ?? null;
  return {
    role: f.role,
    relationship: f.relationship,
    ...(local === null ? {} : {
      state: local.state,
      stateCode: local.stateCode,
      stateSince: new Date(local.startTimeOfState * 1000).toISOString().replace(
        /\.\d{3}Z$/,
        "Z",
      ),
    }),
    link: p?.link ?? "down",
    connections: p?.connections ?? 0,
    partner: partner === null ? null : {
      relationship: partner.relationship,
      vendorClass: partner.vendorClass,
      state: serverStateName(partner.serverState),
      stateCode: partner.serverState,
      flags: partner.serverFlags,
      startTimeOfState: partner.startTimeOfState,
      mclt: partner.mclt,
      maxUnackedBndupd: partner.maxUnackedBndupd,
      receiveTimer: partner.receiveTimer,
    },
    clockSkewSeconds: p?.skew ?? null,
    sinceContactSeconds: p?.sinceContact ?? null,
    ...(local?.sync === undefined ? {} : {
      updates: {
        queued: local.sync.queued,
        unacked: local.sync.inFlight,
        window: local.sync.window,
        sent: local.sync.updatesSent,
        accepted: local.sync.updatesAccepted,
        rejected: local.sync.updatesRejected,
        ackLatency: p?.bndupdAck ?? null,
      },
    }),
    ...(f.kernelFilter ? { kernelFilter: f.kernelFilter } : {}),
    transitions: (f.transitions ?? []).map((t) => ({
      time: iso(t.time),
      from: t.from,
      to: t.to,
      reason: t.reason,
    })),
  };
}

/** Builds the snapshot from its parts (pure; the shell supplies `now`). */
export function buildStatus(parts: StatusParts): StatusSnapshot {
  const leases = {} as Record<LeaseState, number>;
  for (const s of LEASE_STATES) leases[s] = parts.leases[s] ?? 0;
  const failover = parts.failover === null ? null : failoverOf(parts.failover);
  const health = parts.storeHealth;
  // The machine's record outlives the link: after the partner's STATE SHUTDOWN or a lost
  // connection it still names what the partner last said (draft-12 §9.2).
  const partnerState = parts.failover?.local?.partnerState ?? failover?.partner?.state ?? null;
  return {
    state: failover?.state?.toLowerCase() ?? null,
    "partner-state": partnerState?.toLowerCase() ?? null,
    version: parts.version,
    pid: parts.pid,
    startedAt: new Date(parts.startedAt * 1000).toISOString().replace(/\.\d{3}Z$/, "Z"),
    uptimeSeconds: Math.max(0, Math.floor(parts.now - parts.startedAt)),
    database: parts.database,
    listen: [...parts.listen],
    subnets: parts.utilisation.map((u) => ({
      subnet: u.subnet,
      size: u.size,
      free: u.free,
      ...(parts.failover !== null && u.backup !== undefined ? { backup: u.backup } : {}),
    })),
    pools: (parts.pools ?? []).map((p) => ({ ...p })),
    leases,
    dhcp: {
      received: sorted(parts.dhcp.received),
      sent: sorted(parts.dhcp.sent),
      dropped: sorted(parts.dhcp.dropped),
      withheld: sorted(parts.shell.withheld),
      malformed: parts.shell.malformed,
      sendFailed: parts.shell.sendFailed,
      offersRecycled: parts.dhcp.offersRecycled,
    },
    db: {
      commits: parts.shell.commits,
      commitFailures: parts.shell.commitFailures,
      leasesCommitted: parts.shell.leasesCommitted,
      storeFailing: parts.storeFailing,
      writable: !parts.storeFailing,
      failingSince: parts.storeFailing && health?.failingSince != null
        ? isoSeconds(health.failingSince)
        : null,
      lastError: health?.lastError ?? null,
      commitLatencyMs: histogramOf(parts.shell.commitLatencyMs, parts.shell.commitLatencySumMs),
    },
    clock: {
      steps: parts.clock?.steps ?? 0,
      lastStepSeconds: parts.clock?.lastStepSeconds ?? null,
    },
    failover,
    hooks: parts.hooks ? { ...parts.hooks, events: { ...parts.hooks.events } } : null,
    reload: reloadOf(parts.reload),
  };
}

/** "3d 04h 05m 06s", dropping leading zero units. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (d > 0) return `${d}d ${pad(h)}h ${pad(m)}m ${pad(s % 60)}s`;
  if (h > 0) return `${h}h ${pad(m)}m ${pad(s % 60)}s`;
  if (m > 0) return `${m}m ${pad(s % 60)}s`;
  return `${s}s`;
}

/** "DHCPDISCOVER 3, DHCPREQUEST 2", or "none". */
function counts(r: Record<string, number>): string {
  const parts = Object.entries(r).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`);
  return parts.length > 0 ? parts.join(", ") : "none";
}

/** Used share of a pool as a percentage with one decimal ("0.0%" for an empty pool). */
export function utilisationPercent(s: SubnetStatus | PoolStatus): string {
  if (s.size <= 0) return "0.0%";
  const used = "used" in s ? s.used : s.size - s.free;
  return `${((100 * used) / s.size).toFixed(1)}%`;
}

function failoverLine(f: FailoverStatus | null): string {
  if (f === null) return "off";
  let line = `${f.role} of ${JSON.stringify(f.relationship)}`;
  if (f.state !== undefined) line += ` in ${f.state}`;
  line += `, link ${f.link}`;
  if (f.partner) line += `, partner ${f.partner.state}`;
  const extra: string[] = [];
  if (f.clockSkewSeconds !== null) extra.push(`clock skew ${f.clockSkewSeconds.toFixed(1)} s`);
  if (f.sinceContactSeconds !== null) {
    extra.push(`last contact ${formatDuration(f.sinceContactSeconds)} ago`);
  }
  return extra.length > 0 ? `${line} (${extra.join(", ")})` : line;
}

/** The human summary `duet status` prints. */
export function renderStatus(s: StatusSnapshot): string {
  const lines: string[] = [];
  const row = (label: string, value: string) => lines.push(`${label.padEnd(10)}${value}`);
  row("duet", `${s.version}, pid ${s.pid}, up ${formatDuration(s.uptimeSeconds)}`);
  row("database", s.database);
  row("listen", s.listen.length > 0 ? s.listen.join(", ") : "nothing");
  const width = Math.max(0, ...s.subnets.map((n) => n.subnet.length));
  const poolWidth = Math.max(0, ...s.pools.map((p) => p.range.length));
  for (const n of s.subnets) {
    row(
      "subnet",
      `${n.subnet.padEnd(width)}  ${n.size - n.free}/${n.size} used (${
        utilisationPercent(n)
      }), ${n.free} free${
        n.backup === undefined ? "" : ` (primary ${n.free - n.backup}, secondary ${n.backup})`
      }`,
    );
    for (const p of s.pools.filter((x) => x.subnet === n.subnet)) {
      row(
        "pool",
        `  ${p.range.padEnd(poolWidth)}  ${p.used}/${p.size} used (${
          utilisationPercent(p)
        }), ${p.free} free`,
      );
    }
  }
  const leaseCounts = LEASE_STATES.filter((st) => (s.leases[st] ?? 0) > 0)
    .map((st) => `${st} ${s.leases[st]}`);
  row("leases", leaseCounts.length > 0 ? leaseCounts.join(", ") : "none");
  row("received", counts(s.dhcp.received));
  row("sent", counts(s.dhcp.sent));
  const withheld = Object.values(s.dhcp.withheld ?? {}).some((n) => n > 0);
  if (withheld) row("withheld", counts(s.dhcp.withheld));
  const dropped = { ...s.dhcp.dropped };
  if (s.dhcp.malformed > 0) dropped.malformed = s.dhcp.malformed;
  if (s.dhcp.sendFailed > 0) dropped["send-failed"] = s.dhcp.sendFailed;
  row("dropped", counts(dropped));
  if (s.dhcp.offersRecycled > 0) {
    row("offers", `${s.dhcp.offersRecycled} taken back early (offer-limit)`);
  }
  const h = s.db.commitLatencyMs;
  const mean = h.count > 0 ? `, mean ${(h.sum / h.count).toFixed(2)} ms` : "";
  row(
    "commits",
    `${s.db.commits} (${s.db.leasesCommitted} leases${mean}), ${s.db.commitFailures} failed` +
      (s.db.storeFailing ? ", DATABASE REFUSING WRITES" : ""),
  );
  if (s.db.storeFailing) {
    row("db error", `${s.db.lastError ?? "unknown"} (since ${s.db.failingSince ?? "?"})`);
  }
  if (s.clock && s.clock.steps > 0) {
    const last = s.clock.lastStepSeconds ?? 0;
    row("clock", `${s.clock.steps} step(s) applied, last ${last > 0 ? "+" : ""}${last} s`);
  }
  row("failover", failoverLine(s.failover));
  const f = s.failover;
  if (f?.updates) {
    const u = f.updates;
    row(
      "updates",
      `${u.queued} queued, ${u.unacked} unacked; ${u.sent} sent, ${u.accepted} accepted, ` +
        `${u.rejected} rejected`,
    );
  }
  const k = f?.kernelFilter;
  if (k) {
    const dropped = k.dropped.DHCPDISCOVER + k.dropped.DHCPREQUEST;
    const what = {
      dropping: "drops the partner's requests",
      passing: "passes every request (not NORMAL)",
      off: "off (failover.kernel-filter)",
      unavailable: `unavailable: ${k.reason ?? "unknown"}`,
    }[k.state];
    row("kernel", `${what}; ${dropped} dropped`);
  }
  (f?.transitions ?? []).forEach((t, i) => {
    row(
      i === 0 ? "states" : "",
      `${t.time} ${t.from} -> ${t.to}${t.reason ? ` (${t.reason})` : ""}`,
    );
  });
  const hook = s.hooks;
  if (hook !== null) {
    const events = Object.values(hook.events).reduce((a, b) => a + b, 0);
    row(
      "hooks",
      `${(hook.command ?? []).join(" ")}: ${events} events, ${hook.succeeded} ok, ` +
        `${hook.failed} failed, ${hook.timedOut} timed out, ${hook.dropped} dropped, ` +
        `${hook.queued} queued, ${hook.running} running`,
    );
    if (hook.lastError !== null) row("", `last failure: ${hook.lastError}`);
  }
  const r = s.reload.last;
  if (r === null) row("reload", "none since start");
  else {
    const what = r.changes.length > 0 ? ` (${r.changes.join(", ")})` : "";
    row("reload", `${r.time} ${r.outcome}${what}`);
    for (const p of r.problems) row("", `${r.file}:${p.line}:${p.col}: ${p.message}`);
  }
  return lines.join("\n") + "\n";
}
