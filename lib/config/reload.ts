/**
 * What `duet reload` (SIGHUP, POST /reload) may apply to a running server: compares the
 * configuration in force with a new, already validated one. Pure. A change that needs a
 * restart (sockets, the database, the failover relationship) or that would strand ACTIVE
 * leases (a pool or subnet removed or shrunk under them) is refused with the key it is about;
 * everything else is listed as a change to apply.
 */
import type { ConfigProblem } from "../errors.ts";
import { cidrBroadcast, formatIpv4 } from "../wire/ip.ts";
import type { Config, FailoverConfig, SubnetConfig } from "./types.ts";

/**
 * What one reload did: `applied` (the new configuration is in force), `unchanged` (nothing to
 * apply), `invalid` (the file has problems) or `refused` (a change needs a restart or would
 * strand leases). In the last two cases the configuration in force stays as it was.
 */
export type ReloadOutcome = "applied" | "unchanged" | "invalid" | "refused";

/** Every outcome, in the order status and metrics list them. */
export const RELOAD_OUTCOMES: readonly ReloadOutcome[] = [
  "applied",
  "unchanged",
  "invalid",
  "refused",
];

/** The result of one reload (POST /reload's answer, `duet status`'s last reload). */
export interface ReloadResult {
  outcome: ReloadOutcome;
  /** The configuration file that was read. */
  file: string;
  /** Epoch seconds of the reload. */
  time: number;
  /** What changed (ReloadPlan.changes); empty unless applied. */
  changes: string[];
  /** Every problem, with line and column in `file`; empty when applied or unchanged. */
  problems: ConfigProblem[];
}

/** The outcome of comparing two configurations. */
export interface ReloadPlan {
  /** Why the new configuration cannot be applied live; empty when it can. */
  refused: ConfigProblem[];
  /** The dotted keys whose values differ, in file order (what applying changes). */
  changes: string[];
}

/** What planReload() reads besides the two configurations. */
export interface ReloadContext {
  /** The new configuration's text, to point problems at their line and column. */
  locate(path: string): { line: number; col: number };
  /** Number of ACTIVE leases on the addresses first..last (inclusive), from the database. */
  countActive(first: number, last: number): number;
  /** The shared secret in force and the new one (draft-12 §11.1), when failover has one. */
  secrets?: { old: Uint8Array | null; next: Uint8Array | null };
}

/** An inclusive address interval. */
type Interval = [number, number];

/** Sorted, merged intervals. */
function merge(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => a[0] - b[0]);
  const out: Interval[] = [];
  for (const [s, e] of sorted) {
    const last = out[out.length - 1];
    if (last && s <= last[1] + 1) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

/** The parts of `from` that no interval of `minus` covers. */
export function subtractIntervals(from: Interval[], minus: Interval[]): Interval[] {
  const cut = merge(minus);
  const out: Interval[] = [];
  for (const [s0, e] of merge(from)) {
    let s = s0;
    for (const [cs, ce] of cut) {
      if (ce < s || cs > e) continue;
      if (cs > s) out.push([s, cs - 1]);
      s = Math.max(s, ce + 1);
      if (s > e) break;
    }
    if (s <= e) out.push([s, e]);
  }
  return out;
}

/** A JSON form with Maps as entry lists and bytes as hex, for comparing values. */
function canon(v: unknown): string {
  return JSON.stringify(v, (k, x: unknown) => {
    // Where a key sits in the file is not part of its value.
    if (k === "commandPos" || k === "sharedSecretFilePos") return undefined;
    if (x instanceof Map) return [...x.entries()];
    if (x instanceof Uint8Array) return [...x].map((b) => b.toString(16).padStart(2, "0")).join("");
    return x;
  });
}

function cidrText(s: SubnetConfig): string {
  return `${formatIpv4(s.subnet.network)}/${s.subnet.prefix}`;
}

function rangeText([s, e]: Interval): string {
  return s === e ? formatIpv4(s) : `${formatIpv4(s)} - ${formatIpv4(e)}`;
}

/** The failover keys in file order, with their Config field. */
const FAILOVER_FIELDS: [string, keyof FailoverConfig][] = [
  ["role", "role"],
  ["address", "address"],
  ["port", "port"],
  ["peer", "peer"],
  ["peer-port", "peerPort"],
  ["relationship", "relationship"],
  ["mclt", "mclt"],
  ["split", "split"],
  ["hba", "hba"],
  ["hba-polarity", "hbaPolarity"],
  ["load-balance-max-seconds", "loadBalanceMaxSeconds"],
  ["max-lease-misbalance", "maxLeaseMisbalance"],
  ["min-balance", "minBalance"],
  ["max-balance", "maxBalance"],
  ["max-unacked-bndupd", "maxUnackedBndupd"],
  ["max-response-delay", "maxResponseDelay"],
  ["shared-secret-file", "sharedSecretFile"],
  ["auto-partner-down", "autoPartnerDown"],
  ["max-clock-skew", "maxClockSkew"],
  ["kernel-filter", "kernelFilter"],
];

/** The subnet keys whose change a reload applies, with their Config field. */
const SUBNET_FIELDS: [string, keyof SubnetConfig][] = [
  ["pools", "pools"],
  ["options", "options"],
  ["reservations", "reservations"],
  ["interface", "interface"],
  ["relays", "relays"],
  ["lease-time", "leaseTime"],
  ["authoritative", "authoritative"],
];

/** The top-level keys whose change a reload applies, with their Config field. */
const LIVE_FIELDS: [string, keyof Config][] = [
  ["authoritative", "authoritative"],
  ["lease-time", "leaseTime"],
  ["options", "options"],
  ["offer-hold", "offerHold"],
  ["server-id", "serverId"],
  ["commit", "commitDelayMs"],
  ["commit", "commitBatch"],
  ["log-level", "logLevel"],
  ["hooks", "hooks"],
  // The abuse defences live in the DHCP core, which a reload builds anew.
  ["rate-limit/offer-limit/relay-allow", "guard"],
];

const RESTART = "restart duet to apply it";

/**
 * Compares the configuration in force with a new one: what a reload would change, and every
 * reason it must not (each with the key and its place in the new file).
 */
export function planReload(old: Config, next: Config, ctx: ReloadContext): ReloadPlan {
  const refused: ConfigProblem[] = [];
  const changes: string[] = [];
  const refuse = (path: string, message: string) => {
    const { line, col } = ctx.locate(path);
    refused.push({ path, line, col, message });
  };

  // Things bound or opened at start: the database, the DHCP sockets, the control endpoint.
  if (old.database !== next.database) {
    refuse(
      "database",
      `Cannot change "database" on reload (the lease database stays open): ${RESTART}`,
    );
  }
  if (canon(old.listen) !== canon(next.listen)) {
    refuse("listen", `Cannot change "listen" on reload (the sockets stay bound): ${RESTART}`);
  }
  const oldSocket = old.control?.socket ?? null;
  const nextSocket = next.control?.socket ?? null;
  if (oldSocket !== nextSocket) {
    refuse(
      next.control ? "control.socket" : "control",
      `Cannot change "control.socket" on reload (the control socket stays bound): ${RESTART}`,
    );
  }
  if (canon(old.control?.metrics ?? null) !== canon(next.control?.metrics ?? null)) {
    refuse(
      next.control ? "control.metrics" : "control",
      `Cannot change "control.metrics" on reload (the metrics listener stays bound): ${RESTART}`,
    );
  }

  // The failover relationship (draft-12 §5, §7.8): fixed for the life of the endpoint.
  const fo = old.failover;
  const fn = next.failover;
  if ((fo === null) !== (fn === null)) {
    refuse(
      "failover",
      `Cannot ${fo === null ? "add" : "remove"} the "failover" section on reload: ${RESTART}`,
    );
  } else if (fo !== null && fn !== null) {
    const before = refused.length;
    for (const [key, field] of FAILOVER_FIELDS) {
      if (canon(fo[field]) !== canon(fn[field])) {
        refuse(
          `failover.${key}`,
          `Cannot change "failover.${key}" on reload (the failover relationship is fixed ` +
            `while duet runs): ${RESTART}`,
        );
      }
    }
    // Any other difference (a key this list does not name yet) is refused as a whole.
    if (refused.length === before && canon(fo) !== canon(fn)) {
      refuse("failover", `Cannot change the "failover" section on reload: ${RESTART}`);
    }
    const s = ctx.secrets;
    if (
      s && fo.sharedSecretFile === fn.sharedSecretFile && s.old !== null && s.next !== null &&
      canon(s.old) !== canon(s.next)
    ) {
      refuse(
        "failover.shared-secret-file",
        `Cannot change the shared secret on reload (the partner link is authenticated with ` +
          `the old one): ${RESTART}`,
      );
    }
  }

  // Subnets by CIDR: what was added, removed or changed.
  const before = new Map(old.subnets.map((s) => [cidrText(s), s]));
  const after = new Map(next.subnets.map((s, i) => [cidrText(s), { s, i }]));
  for (const [key, field] of LIVE_FIELDS) {
    if (canon(old[field]) !== canon(next[field]) && !changes.includes(key)) changes.push(key);
  }
  for (const [cidr, { s, i }] of after) {
    const was = before.get(cidr);
    if (!was) {
      changes.push(`subnets.${i} (${cidr} added)`);
      continue;
    }
    for (const [key, field] of SUBNET_FIELDS) {
      if (canon(was[field]) !== canon(s[field])) changes.push(`subnets.${i}.${key} (${cidr})`);
    }
  }
  for (const [cidr] of before) {
    if (!after.has(cidr)) changes.push(`subnets (${cidr} removed)`);
  }

  // With failover, the endpoint's pool list (draft-12 §7.1.3 reject-reason 1) is fixed at start.
  const poolsOf = (c: Config): Interval[] =>
    c.subnets.flatMap((s) => s.pools.map((p): Interval => [p.start, p.end]));
  if (fo !== null && fn !== null && canon(merge(poolsOf(old))) !== canon(merge(poolsOf(next)))) {
    const moved = next.subnets.find((s) => {
      const was = before.get(cidrText(s));
      return !was || canon(was.pools.map((p) => [p.start, p.end])) !==
          canon(s.pools.map((p) => [p.start, p.end]));
    });
    refuse(
      moved ? `subnets.${next.subnets.indexOf(moved)}.pools` : "subnets",
      `Cannot change the pools on reload while failover is configured: both partners must ` +
        `change their pools together; restart both`,
    );
  }

  // ACTIVE leases must keep their subnet and their pool.
  const subnetSpan = (s: SubnetConfig): Interval => [s.subnet.network, cidrBroadcast(s.subnet)];
  const lostSubnets = subtractIntervals(old.subnets.map(subnetSpan), next.subnets.map(subnetSpan));
  for (const gone of lostSubnets) {
    const n = ctx.countActive(gone[0], gone[1]);
    if (n === 0) continue;
    const owner = old.subnets.find((s) =>
      s.subnet.network <= gone[0] && gone[1] <= cidrBroadcast(s.subnet)
    );
    refuse(
      "subnets",
      `Cannot remove ${owner ? `subnet ${cidrText(owner)}` : `addresses ${rangeText(gone)}`} ` +
        `on reload: ${rangeText(gone)} still holds ${n} ACTIVE lease${n === 1 ? "" : "s"}; ` +
        `wait until they end, or restart duet to force it`,
    );
  }
  const lostPools = subtractIntervals(
    subtractIntervals(poolsOf(old), poolsOf(next)),
    lostSubnets,
  );
  for (const gone of lostPools) {
    const n = ctx.countActive(gone[0], gone[1]);
    if (n === 0) continue;
    const i = next.subnets.findIndex((s) =>
      s.subnet.network <= gone[0] && gone[1] <= cidrBroadcast(s.subnet)
    );
    const s = next.subnets[i];
    refuse(
      s ? `subnets.${i}.pools` : "subnets",
      `Cannot remove or shrink a pool${s ? ` of subnet ${cidrText(s)}` : ""} on reload: ` +
        `${rangeText(gone)} would leave every pool but still holds ${n} ACTIVE lease${
          n === 1 ? "" : "s"
        }; wait until they end, or restart duet to force it`,
    );
  }
  refused.sort((a, b) => a.line - b.line || a.col - b.col);
  return { refused, changes };
}
