/**
 * The deterministic failover simulation (DESIGN.md testing ladder, step 2): two servers running
 * the real DhcpCore and FailoverEndpoint (server.ts) over the real link engine on a simulated
 * network (network.ts), a population of RFC 2131 clients (client.ts) behind one relay, and a
 * seeded schedule of link cuts, resets, crashes (kill -9), restarts, SIGTERM shutdowns, PAUSED,
 * operator and automatic PARTNER-DOWN. Time is simulated; a seed replays exactly. After every
 * event the invariants of issue #4 and #5 are checked; a violation throws SimError with the seed
 * and the tail of the trace.
 */
import { linkSettings } from "../../../lib/cli/serve.ts";
import { parseConfig } from "../../../lib/config/config.ts";
import type { Config } from "../../../lib/config/types.ts";
import { STATE_META_KEY } from "../../../lib/failover/endpoint.ts";
import type { LogFields, Logger } from "../../../lib/log.ts";
import type { Arrival } from "../../../lib/server/reply.ts";
import type { ReplyEffect } from "../../../lib/server/dhcp.ts";
import { type Lease, type LeaseState, leaseStateOf } from "../../../lib/store/store.ts";
import {
  decodeDhcp,
  type DhcpMessage,
  DhcpType,
  dhcpTypeName,
  encodeDhcp,
  getLeaseTime,
  getMessageType,
  getRequestedIp,
  getServerId,
} from "../../../lib/wire/dhcp.ts";
import {
  type BindingUpdate,
  type FailoverMessage,
  getBindingAcks,
  getBindingUpdates,
  MsgType,
  msgTypeName,
  ServerState,
  serverStateName,
} from "../../../lib/wire/failover.ts";
import { formatIpv4 } from "../../../lib/wire/ip.ts";
import { type ClientLease, type ClientNet, RELAY, SimClient } from "./client.ts";
import { prng, Scheduler, T0 } from "./clock.ts";
import { type ConnEnd, Network } from "./network.ts";
import { type ServerSetup, type SimHost, SimServer } from "./server.ts";

const S = ServerState;
/** 192.0.2.0/24 (documentation): the clients' subnet; the pool starts at .10. */
const NET = 0xc0000200;
const POOL_START = NET + 10;
/** The servers (198.51.100.0/24, documentation): server identifier and failover address. */
export const PRIMARY_ADDRESS = 0xc6336401;
export const SECONDARY_ADDRESS = 0xc6336402;

/** Thrown when an invariant does not hold. */
export class SimError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SimError";
  }
}

/** Everything a seed decides before the first event. */
export interface SimParams {
  poolSize: number;
  clients: number;
  clientIdRate: number;
  mclt: number;
  leaseDefault: number;
  leaseMax: number;
  maxUnacked: [number, number];
  maxResponseDelay: number;
  /** Seconds; 0 = never (draft-12 §10). */
  autoPartnerDown: number;
  split: number;
  polarity: "isc" | "draft";
  loadBalanceMaxSeconds: number;
  minBalance: number;
  maxBalance: number;
  maxLeaseMisbalance: number;
  /** The secondary has the MCLT configured too (it must then match, §7.8.2 step 7). */
  secondaryMclt: boolean;
  commitDelayMs: number;
  /** Typical one-way delay on the partner link, ms, and the chance of a long one. */
  netDelayMs: number;
  netSpikeRate: number;
  dhcpDelayMs: number;
  /** Chance a DHCP datagram is lost on the way to one server. */
  loss: number;
  /** Operator mistakes allowed: PARTNER-DOWN while the partner serves, unsafe restarts. */
  misoperation: boolean;
  /** Fault steps before the final quiet period. */
  steps: number;
}

/** Draws a schedule's parameters from its seed. */
export function paramsFor(seed: number): SimParams {
  const r = prng(seed ^ 0x9e3779b9);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const poolSize = int(4, 14);
  const mclt = pick([20, 30, 45, 60, 90, 120]);
  const leaseDefault = mclt * pick([1, 2, 3, 5]) + int(0, 30);
  const maxBalance = int(30, 300);
  return {
    poolSize,
    clients: Math.max(2, Math.round(poolSize * (0.6 + r() * 1.2))),
    clientIdRate: pick([0, 0, 0.3, 1]),
    mclt,
    leaseDefault,
    leaseMax: leaseDefault * 2,
    maxUnacked: [int(1, 10), int(1, 10)],
    maxResponseDelay: pick([8, 15, 30, 30, 60]),
    autoPartnerDown: r() < 0.15 ? mclt * int(1, 4) : 0,
    split: pick([128, 128, 128, 64, 200, 0, 256]),
    polarity: pick(["isc", "draft"] as const),
    loadBalanceMaxSeconds: int(3, 8),
    minBalance: int(0, 30),
    maxBalance,
    maxLeaseMisbalance: pick([10, 15, 30]),
    secondaryMclt: r() < 0.5,
    commitDelayMs: pick([0, 2, 20, 200]),
    netDelayMs: pick([1, 5, 20, 100]),
    netSpikeRate: pick([0, 0.01, 0.05]),
    dhcpDelayMs: pick([1, 5, 30]),
    loss: pick([0, 0, 0.02, 0.1]),
    misoperation: r() < 0.06,
    steps: int(40, 120),
  };
}

function configText(p: SimParams, role: "primary" | "secondary"): string {
  const me = role === "primary" ? PRIMARY_ADDRESS : SECONDARY_ADDRESS;
  const peer = role === "primary" ? SECONDARY_ADDRESS : PRIMARY_ADDRESS;
  const lines = [
    `database: sim-${role}.db`,
    "listen:",
    `  - address: ${formatIpv4(me)}`,
    `server-id: ${formatIpv4(me)}`,
    `lease-time: { default: ${p.leaseDefault}, max: ${p.leaseMax}, min: 10 }`,
    "subnets:",
    `  - subnet: ${formatIpv4(NET)}/24`,
    "    pools:",
    `      - range: ${formatIpv4(POOL_START)} - ${formatIpv4(POOL_START + p.poolSize - 1)}`,
    "failover:",
    `  role: ${role}`,
    `  address: ${formatIpv4(me)}`,
    `  peer: ${formatIpv4(peer)}`,
    "  relationship: sim",
    `  hba-polarity: ${p.polarity}`,
    `  load-balance-max-seconds: ${p.loadBalanceMaxSeconds}`,
    `  max-unacked-bndupd: ${p.maxUnacked[role === "primary" ? 0 : 1]}`,
    `  max-response-delay: ${p.maxResponseDelay}`,
    `  auto-partner-down: ${p.autoPartnerDown}`,
    `  min-balance: ${p.minBalance}`,
    `  max-balance: ${p.maxBalance}`,
    `  max-lease-misbalance: ${p.maxLeaseMisbalance}`,
  ];
  if (role === "primary") lines.push(`  mclt: ${p.mclt}`, `  split: ${p.split}`);
  else if (p.secondaryMclt) lines.push(`  mclt: ${p.mclt}`);
  return lines.join("\n") + "\n";
}

/** Parsed configurations by text (a Config is never changed once parsed). */
const CONFIGS = new Map<string, Config>();

/** What this server knows its partner has stored for an address (§7.1.5), from the wire. */
interface PartnerView {
  state: LeaseState;
  hw: Uint8Array;
  clientId: Uint8Array | null;
  pet: number;
}

/** What one client was told by a DHCPACK: the address is its from start to end. */
interface Grant {
  client: number;
  start: number;
  end: number;
  by: string;
}

/** A broadcast DISCOVER or INIT-REBOOT REQUEST and how each server took it (#5). */
interface Broadcast {
  secs: number;
  seen: { role: string; answer: string; dropped: string | undefined }[];
}

/** Totals of one schedule. */
export interface SimStats {
  events: number;
  failoverMessages: number;
  dhcpIn: number;
  acks: number;
  crashes: number;
  terminations: number;
  pauses: number;
  cuts: number;
  resets: number;
  operatorPartnerDown: number;
  autoPartnerDown: number;
  loadBalanceChecks: number;
  duplicates: number;
  /** Leases ended by the partner's ABANDONED (Fig. 7.1.3-1), exempt from invariant (2). */
  abandonedOverActive: number;
  quiesces: number;
}

/** One simulation run. */
export class Sim implements SimHost, ClientNet {
  readonly seed: number;
  readonly p: SimParams;
  readonly sched = new Scheduler();
  readonly net: Network;
  readonly primary: SimServer;
  readonly secondary: SimServer;
  readonly clients: SimClient[] = [];
  readonly #rand: () => number;
  readonly #keepTrace: boolean;
  readonly trace: string[] = [];
  step = 0;
  readonly stats: SimStats = {
    events: 0,
    failoverMessages: 0,
    dhcpIn: 0,
    acks: 0,
    crashes: 0,
    terminations: 0,
    pauses: 0,
    cuts: 0,
    resets: 0,
    operatorPartnerDown: 0,
    autoPartnerDown: 0,
    loadBalanceChecks: 0,
    duplicates: 0,
    abandonedOverActive: 0,
    quiesces: 0,
  };
  /**
   * Why invariant (1) is relaxed in this schedule: PARTNER-DOWN while the partner was in fact
   * alive and serving (the draft's exception, §9.4, §10), or null.
   */
  relaxed: string | null = null;
  /** Duplicates found in a relaxed schedule, described. */
  readonly duplicates: string[] = [];
  readonly #duplicated = new Set<number>();
  readonly #abandonedOverActive = new Set<number>();
  /** State pairs seen while the two communicated. */
  readonly pairsSeen = new Set<string>();
  readonly #grants = new Map<number, Grant[]>();
  readonly #views = new Map<string, Map<number, PartnerView>>([
    ["primary", new Map()],
    ["secondary", new Map()],
  ]);
  /** Per connection end: BNDUPDs sent (xid -> updates) and received (xid -> updates, seq). */
  readonly #sent = new WeakMap<ConnEnd, Map<number, BindingUpdate[]>>();
  readonly #received = new WeakMap<
    ConnEnd,
    Map<number, { updates: (BindingUpdate | undefined)[]; seq: number | null }>
  >();
  readonly #broadcasts = new Map<string, Broadcast>();
  #activity = 0;
  #lastStates = ["", ""];
  /** An error from a promise chain of the code under test. */
  asyncError: unknown = undefined;
  /** Whether the fault schedule is running (off during a quiet period). */
  #faults = true;

  readonly #traceLines: number;

  constructor(
    seed: number,
    options: { trace?: boolean; traceLines?: number; params?: Partial<SimParams> } = {},
  ) {
    this.seed = seed >>> 0;
    this.p = { ...paramsFor(this.seed), ...options.params };
    this.#rand = prng(this.seed);
    this.#keepTrace = options.trace ?? false;
    this.#traceLines = options.traceLines ?? 150;
    this.net = new Network({
      sched: this.sched,
      delay: () => this.#netDelay(),
      touch: () => this.touch(),
      onSent: (end, m) => this.#onSent(end, m),
      onReceived: (end, m) => this.#onReceived(end, m),
      onHandled: (end, m) => this.#onHandled(end, m),
    });
    this.primary = new SimServer(this, this.#setup("primary"));
    this.secondary = new SimServer(this, this.#setup("secondary"));
    for (let i = 0; i < this.p.clients; i++) {
      this.clients.push(new SimClient(this, i + 1, this.#rand() < this.p.clientIdRate));
    }
  }

  #setup(role: "primary" | "secondary"): ServerSetup {
    const text = configText(this.p, role);
    let config = CONFIGS.get(text);
    if (config === undefined) {
      config = parseConfig(text, `sim-${role}.yaml`);
      if (CONFIGS.size > 500) CONFIGS.clear();
      CONFIGS.set(text, config);
    }
    const settings = linkSettings(config, null);
    if (settings === null) throw new TypeError("no failover settings");
    return {
      role,
      config,
      settings,
      commitDelayMs: this.p.commitDelayMs,
      tickMs: 1000,
      linkTickMs: 1000,
      retrySeconds: 5,
    };
  }

  // ---- the host side --------------------------------------------------------------------------

  rand(): number {
    return this.#rand();
  }

  int(n: number): number {
    return Math.floor(this.#rand() * n);
  }

  #netDelay(): number {
    const base = this.p.netDelayMs * (0.5 + this.#rand());
    return this.#rand() < this.p.netSpikeRate ? base + 500 + this.#rand() * 4000 : base;
  }

  touch(): void {
    this.#activity++;
  }

  note(text: string): void {
    if (!this.#keepTrace) return;
    this.trace.push(`[${this.step} t+${(this.sched.now - T0).toFixed(3)}] ${text}`);
    if (this.trace.length > 2 * this.#traceLines) this.trace.splice(0, this.#traceLines);
  }

  logger(role: "primary" | "secondary"): Logger {
    const keep = this.#keepTrace;
    const line = (level: string) => (msg: string, fields?: LogFields) => {
      if (!keep) return;
      const f = fields === undefined
        ? ""
        : " " + Object.entries(fields).filter(([, v]) => v !== undefined)
          .map(([k, v]) => `${k}=${v}`).join(" ");
      this.note(`${role} ${level} ${msg}${f}`);
    };
    const none = () => {};
    return {
      debug: none,
      info: line("info"),
      warn: line("warn"),
      error: line("ERROR"),
      debugEnabled: false,
    };
  }

  fail(message: string): never {
    const state = (s: SimServer) =>
      s.proc === null ? "down" : serverStateName(s.proc.endpoint.state);
    throw new SimError(
      `seed ${this.seed} step ${this.step} t+${(this.sched.now - T0).toFixed(3)}: ${message}\n` +
        `  primary ${state(this.primary)}, secondary ${state(this.secondary)}, ` +
        `link ${this.net.cut ? "cut" : "ok"}, params ${JSON.stringify(this.p)}\n` +
        this.trace.slice(-this.#traceLines).join("\n"),
    );
  }

  serverOf(role: string): SimServer {
    return role === "primary" ? this.primary : this.secondary;
  }

  partnerOf(s: SimServer): SimServer {
    return s === this.primary ? this.secondary : this.primary;
  }

  // ---- DHCP traffic ---------------------------------------------------------------------------

  #arrival(s: SimServer, relayed: boolean, ciaddr: number): Arrival {
    const local = s.role === "primary" ? PRIMARY_ADDRESS : SECONDARY_ADDRESS;
    return {
      srcAddress: relayed ? RELAY : ciaddr,
      srcPort: relayed ? 67 : 68,
      ifindex: 0,
      ifname: null,
      localAddress: local,
      dstAddress: local,
    };
  }

  broadcast(client: SimClient, bytes: Uint8Array, msg: DhcpMessage): void {
    const type = getMessageType(msg);
    this.note(`c${client.index} broadcasts ${dhcpTypeName(type)} xid ${msg.xid.toString(16)}`);
    const balanced = type === DhcpType.DHCPDISCOVER ||
      (type === DhcpType.DHCPREQUEST && getServerId(msg) === undefined &&
        getRequestedIp(msg) !== undefined && msg.ciaddr === 0);
    const key = balanced ? `${client.index}/${msg.xid}/${type}/${msg.secs}` : null;
    if (key !== null) this.#broadcasts.set(key, { secs: msg.secs, seen: [] });
    for (const s of [this.primary, this.secondary]) {
      if (this.#rand() < this.p.loss) continue;
      this.sched.after(this.p.dhcpDelayMs * (0.5 + this.#rand()), () => {
        this.#dhcpIn(s, bytes, this.#arrival(s, true, 0), key);
      });
    }
  }

  unicast(client: SimClient, serverId: number, bytes: Uint8Array, msg: DhcpMessage): void {
    const s = serverId === PRIMARY_ADDRESS
      ? this.primary
      : serverId === SECONDARY_ADDRESS
      ? this.secondary
      : null;
    this.note(`c${client.index} unicasts ${dhcpTypeName(getMessageType(msg))} to ${s?.role}`);
    if (s === null || this.#rand() < this.p.loss) return;
    this.sched.after(this.p.dhcpDelayMs * (0.5 + this.#rand()), () => {
      this.#dhcpIn(s, bytes, this.#arrival(s, false, msg.ciaddr), null);
    });
  }

  #dhcpIn(s: SimServer, bytes: Uint8Array, arrival: Arrival, key: string | null): void {
    const proc = s.proc;
    if (proc === null) return;
    this.stats.dhcpIn++;
    const now = Math.floor(this.sched.now);
    const answer = proc.endpoint.service(now).answer;
    const r = s.receive(bytes, arrival);
    if (r === null) return;
    this.touch();
    const { msg, outcome } = r;
    if (outcome.dropped !== undefined) {
      this.note(`${s.role} drops ${dhcpTypeName(getMessageType(msg))}: ${outcome.dropped}`);
    }
    // (4) §5.2.1: no DHCPACK grants more than the MCLT beyond what the partner has (§7.1.5).
    for (const e of outcome.effects) {
      if (e.kind !== "reply" || getMessageType(e.message) !== DhcpType.DHCPACK) continue;
      const address = e.message.yiaddr;
      if (address === 0) continue;
      const leaseTime = getLeaseTime(e.message) ?? 0;
      const client = this.#clientOf(e.message);
      const view = this.#views.get(s.role)?.get(address);
      const pet = view !== undefined && view.state === "active" && client !== undefined &&
          client.owns(view.hw, view.clientId)
        ? view.pet
        : 0;
      const allowed = Math.max(now, pet) + this.p.mclt;
      if (now + leaseTime > allowed) {
        this.fail(
          `(4) ${s.role} gave c${client?.index} ${formatIpv4(address)} for ${leaseTime} s, ` +
            `until ${now + leaseTime - T0}; the partner has potential expiration ${pet - T0}, ` +
            `so §5.2.1 allows until ${allowed - T0}`,
        );
      }
    }
    // (5) RFC 3074, draft-12 §9.8.2: in NORMAL exactly one server takes a balanced broadcast.
    if (key !== null) {
      const b = this.#broadcasts.get(key);
      if (b !== undefined) {
        b.seen.push({ role: s.role, answer, dropped: outcome.dropped });
        if (b.seen.length === 2) {
          this.#broadcasts.delete(key);
          const [x, y] = b.seen as [Broadcast["seen"][0], Broadcast["seen"][0]];
          if (
            x.answer === "balanced" && y.answer === "balanced" &&
            b.secs <= this.p.loadBalanceMaxSeconds
          ) {
            this.stats.loadBalanceChecks++;
            const takers = b.seen.filter((t) => t.dropped !== "load-balanced").length;
            if (takers !== 1) {
              this.fail(
                `(5) ${dhcpTypeName(getMessageType(msg))} from ${key} taken by ${takers} servers ` +
                  `in NORMAL: ${JSON.stringify(b.seen)}`,
              );
            }
          }
        }
      }
    }
  }

  #clientOf(m: DhcpMessage): SimClient | undefined {
    const i = ((m.chaddr[4] as number) << 8) | (m.chaddr[5] as number);
    return this.clients[i - 1];
  }

  reply(
    from: SimServer,
    effect: ReplyEffect,
    handledAt: number,
    written: number,
    madeAt: number,
  ): void {
    const m = effect.message;
    const type = getMessageType(m);
    const client = this.#clientOf(m);
    if (client === undefined) this.fail(`${from.role} replied to an unknown chaddr`);
    if (type === DhcpType.DHCPACK && m.yiaddr !== 0) {
      this.stats.acks++;
      // Nothing acknowledged is only in an uncommitted batch (draft-12 §3.1.3, RFC 2131 §4.3.1):
      // the lease write before the ACK is committed (a later write may have replaced it).
      const dirty = from.store.dirty.get(m.yiaddr);
      if (written === 0 || (dirty !== undefined && dirty <= written)) {
        this.fail(
          `${from.role} sent DHCPACK ${formatIpv4(m.yiaddr)} to c${client.index} before ` +
            `committing its lease`,
        );
      }
    }
    const bytes = encodeDhcp(m, { maxSize: effect.maxSize });
    this.note(
      `${from.role} sends ${dhcpTypeName(type)} ${formatIpv4(m.yiaddr)} to c${client.index}`,
    );
    if (this.#rand() < this.p.loss) return;
    this.sched.after(this.p.dhcpDelayMs * (0.5 + this.#rand()), () => {
      this.touch();
      client.receive(decodeDhcp(bytes), handledAt, madeAt);
    });
  }

  granted(client: SimClient, lease: ClientLease, _ack: DhcpMessage): void {
    const by = lease.serverId === PRIMARY_ADDRESS ? "primary" : "secondary";
    this.note(
      `c${client.index} takes ${formatIpv4(lease.address)} from ${by} until t+${lease.end - T0}`,
    );
    let list = this.#grants.get(lease.address);
    if (list === undefined) {
      list = [];
      this.#grants.set(lease.address, list);
    }
    // (1) no address is ACTIVE for two clients with overlapping lease times. The lease began
    // when the server made the ACK (its whole second is the lease's start, RFC 2131 §4.4.1).
    const start = lease.since;
    for (const g of list) {
      if (g.client === client.index || g.end <= start || g.start >= lease.end) continue;
      const text = `(1) ${formatIpv4(lease.address)} given to c${client.index} by ${by} for ` +
        `t+${lease.start - T0}..${lease.end - T0} while c${g.client} holds it ` +
        `t+${g.start - T0}..${g.end - T0} (from ${g.by})`;
      if (this.relaxed === null) this.fail(text);
      this.stats.duplicates++;
      this.duplicates.push(text);
      this.#duplicated.add(lease.address);
      this.note(`DUPLICATE ${text}`);
    }
    // Earlier grants of this client end where the new one starts.
    for (const [address, gs] of this.#grants) {
      for (const g of gs) {
        if (g.client === client.index && g.end > start && address !== lease.address) {
          g.end = start;
        }
      }
    }
    const mine = list.filter((g) => g.client !== client.index || g.end > start);
    mine.push({ client: client.index, start, end: lease.end, by });
    // Old grants that ended long ago are forgotten.
    const horizon = this.sched.now - 4 * this.p.leaseMax;
    this.#grants.set(lease.address, mine.filter((g) => g.end > horizon));
  }

  ended(client: SimClient, why: string): void {
    const l = client.lease;
    if (l === null) return;
    const now = this.sched.now;
    this.note(`c${client.index} stops using ${formatIpv4(l.address)}: ${why}`);
    for (const g of this.#grants.get(l.address) ?? []) {
      if (g.client === client.index && g.end > now) g.end = now;
    }
  }

  storeReplaced(from: SimServer): void {
    this.#views.get(from.role)?.clear();
  }

  // ---- the partner link, seen from the wire ----------------------------------------------------

  #onSent(end: ConnEnd, m: FailoverMessage): void {
    this.stats.failoverMessages++;
    const s = this.serverOf(end.peer.role);
    this.note(
      `${s.role} sends ${msgTypeName(m.type)} xid ${m.xid} on #${end.conn.id}${this.#describe(m)}`,
    );
    if (m.type === MsgType.BNDUPD) {
      const updates = getBindingUpdates(m);
      const list: BindingUpdate[] = [];
      for (const u of updates) {
        if (u === undefined) this.fail(`${s.role} sent an undecodable binding update`);
        list.push(u);
        // §7.1.1: the potential-expiration-time sent is in stable storage first.
        const row = s.store.durable.get(u.assignedIpAddress);
        const pet = u.potentialExpirationTime ?? 0;
        if (row === undefined || row.tstp < pet) {
          this.fail(
            `${s.role} sent BNDUPD ${formatIpv4(u.assignedIpAddress)} with potential expiration ` +
              `${pet - T0} before storing it (durable tstp ${row ? row.tstp - T0 : "none"})`,
          );
        }
      }
      let sent = this.#sent.get(end);
      if (sent === undefined) this.#sent.set(end, sent = new Map());
      sent.set(m.xid, list);
      // §8.4: never more unacked BNDUPDs than the partner's max-unacked-bndupd.
      end.unacked.add(m.xid);
      const window = end.partner?.maxUnackedBndupd ?? 1;
      if (end.unacked.size > window) {
        this.fail(`${s.role} has ${end.unacked.size} BNDUPDs unacked, the partner takes ${window}`);
      }
    } else if (m.type === MsgType.BNDACK) {
      const got = this.#received.get(end)?.get(m.xid);
      if (got === undefined) this.fail(`${s.role} sent BNDACK xid ${m.xid} for no BNDUPD`);
      // While the BNDUPD is still being handled, every write so far belongs to it.
      const limit = got.seq ?? s.store.seq;
      for (const a of getBindingAcks(m)) {
        if (a.rejectReason !== undefined) continue;
        // §7.1.1: a BNDACK goes out only once what it acknowledges is committed.
        const dirty = s.store.dirty.get(a.assignedIpAddress);
        if (dirty !== undefined && dirty <= limit) {
          this.fail(`${s.role} acked ${formatIpv4(a.assignedIpAddress)} before committing it`);
        }
        const u = got.updates.find((x) => x?.assignedIpAddress === a.assignedIpAddress);
        if (u !== undefined) this.#learn(s.role, u);
      }
    }
  }

  /** A BNDUPD's or BNDACK's bindings, for the trace. */
  #describe(m: FailoverMessage): string {
    if (!this.#keepTrace) return "";
    if (m.type === MsgType.BNDUPD) {
      return ": " + getBindingUpdates(m).map((u) => {
        if (u === undefined) return "?";
        const c = this.clients.find((c) =>
          c.owns(u.clientHardwareAddress?.chaddr ?? new Uint8Array(0), u.clientIdentifier ?? null)
        );
        return `.${u.assignedIpAddress & 0xff} ${leaseStateOf(u.bindingStatus)}${
          c ? ` c${c.index}` : ""
        } ends ${(u.leaseExpirationTime ?? T0) - T0} pet ${
          (u.potentialExpirationTime ?? T0) - T0
        } cltt ${(u.clientLastTransactionTime ?? T0) - T0}`;
      }).join(", ");
    }
    if (m.type === MsgType.BNDACK) {
      return ": " +
        getBindingAcks(m).map((a) =>
          `.${a.assignedIpAddress & 0xff}${
            a.rejectReason === undefined ? "" : ` reject ${a.rejectReason}`
          }`
        ).join(", ");
    }
    return "";
  }

  #onReceived(end: ConnEnd, m: FailoverMessage): void {
    this.touch();
    const s = this.serverOf(end.peer.role);
    this.note(`${s.role} receives ${msgTypeName(m.type)} xid ${m.xid} on #${end.conn.id}`);
    if (m.type === MsgType.BNDUPD) {
      let got = this.#received.get(end);
      if (got === undefined) this.#received.set(end, got = new Map());
      got.set(m.xid, { updates: getBindingUpdates(m), seq: null });
    } else if (m.type === MsgType.BNDACK) {
      end.unacked.delete(m.xid);
      const sent = this.#sent.get(end)?.get(m.xid);
      if (sent === undefined) return;
      this.#sent.get(end)?.delete(m.xid);
      for (const a of getBindingAcks(m)) {
        if (a.rejectReason !== undefined) continue;
        const u = sent.find((x) => x.assignedIpAddress === a.assignedIpAddress);
        if (u !== undefined) this.#learn(s.role, u);
      }
    }
  }

  #onHandled(end: ConnEnd, m: FailoverMessage): void {
    if (m.type !== MsgType.BNDUPD) return;
    const got = this.#received.get(end)?.get(m.xid);
    if (got !== undefined) got.seq = this.serverOf(end.peer.role).store.seq;
  }

  /** `role` now knows its partner has this binding (an ack of ours, or its update we took). */
  #learn(role: string, u: BindingUpdate): void {
    const views = this.#views.get(role) as Map<number, PartnerView>;
    const state = leaseStateOf(u.bindingStatus) ?? "free";
    const hw = u.clientHardwareAddress?.chaddr ?? new Uint8Array(0);
    const clientId = u.clientIdentifier ?? null;
    const pet = u.potentialExpirationTime ?? 0;
    const old = views.get(u.assignedIpAddress);
    if (
      old !== undefined && old.state === "active" && state === "active" &&
      sameClient(old.hw, old.clientId, hw, clientId)
    ) {
      old.pet = Math.max(old.pet, pet);
      return;
    }
    views.set(u.assignedIpAddress, { state, hw, clientId, pet });
  }

  // ---- invariants -----------------------------------------------------------------------------

  #show(l: Lease): string {
    const c = this.clients.find((c) => c.owns(l.hwAddress, l.clientId));
    return `${l.state}${c ? ` c${c.index}` : ""} ends t+${l.ends - T0}`;
  }

  #stateOf(s: SimServer): number {
    return s.proc?.endpoint.state ?? 0;
  }

  /**
   * The state a server is in or will resume: a server that is down, starting (§9.3.2) or
   * PAUSED (§9.13, it resumes with a restart) counts in the state its database records.
   */
  effectiveState(s: SimServer): number | null {
    const live = this.#stateOf(s);
    return s.alive && live !== S.STARTUP && live !== S.PAUSED ? live : this.storedState(s);
  }

  /** The state a server's database will have it resume (§9.3.2; PAUSED/SHUTDOWN: the one before). */
  storedState(s: SimServer): number | null {
    const text = s.store.getMeta(STATE_META_KEY);
    if (text === undefined) return null;
    const p = JSON.parse(text) as { state: number; previousState: number | null };
    return (p.state === S.PAUSED || p.state === S.SHUTDOWN) && p.previousState !== null
      ? p.previousState
      : p.state;
  }

  #answers(s: SimServer): string {
    const p = s.proc;
    if (p === null) return "none";
    return p.endpoint.service(Math.floor(this.sched.now)).answer;
  }

  /** After every event. */
  checkEvent(): void {
    this.stats.events++;
    if (this.asyncError !== undefined) {
      this.fail(
        `error in a promise chain: ${(this.asyncError as Error)?.stack ?? this.asyncError}`,
      );
    }
    const states = [this.#stateOf(this.primary), this.#stateOf(this.secondary)];
    for (const [i, s] of [this.primary, this.secondary].entries()) {
      const st = states[i] as number;
      const name = st === 0 ? "down" : serverStateName(st);
      if (name !== this.#lastStates[i]) {
        this.note(`${s.role} is ${name}`);
        if (st === S.PARTNER_DOWN && this.#lastStates[i] === "COMMUNICATIONS-INTERRUPTED") {
          // Counted as automatic unless an operator command just did it.
          if (!this.#operatorJustNow) this.stats.autoPartnerDown++;
        }
        this.#lastStates[i] = name;
      }
      if (s.role === "secondary" && st === S.CONFLICT_DONE) this.fail("secondary in CONFLICT-DONE");
    }
    this.#operatorJustNow = false;
    // The draft's exception (§9.4, §10): PARTNER-DOWN (live, or stored by a server that is down,
    // starting or PAUSED and will resume it) while the partner in fact serves.
    for (const s of [this.primary, this.secondary]) {
      const live = this.#stateOf(s);
      const pd = this.effectiveState(s);
      if (pd !== S.PARTNER_DOWN) continue;
      const other = this.partnerOf(s);
      const a = this.#answers(other);
      // Renewals count too while the two do not talk: RECOVER-DONE renews by the MCLT rule
      // (§5.2.1, §9.7.1) leases that PARTNER-DOWN may reclaim after the MCLT (§9.4.2).
      const talking = s.proc !== null && s.proc.endpoint.status().communicating;
      const serves = a === "all" || a === "balanced" || (a === "renewals" && !talking);
      if (serves && this.relaxed === null) {
        this.relaxed = `${s.role} in PARTNER-DOWN${
          pd === live ? "" : ` (stored, ${s.alive ? serverStateName(live) : "down"} now)`
        } while the ${other.role} serves (${serverStateName(this.#stateOf(other))}) at t+${
          Math.round(this.sched.now - T0)
        }`;
        this.note(`RELAXED: ${this.relaxed}`);
      }
    }
    this.#checkQuiet();
  }

  #operatorJustNow = false;

  /** With the link up and nothing in flight: each knows the other's state, and they agree. */
  #checkQuiet(): void {
    const p = this.primary.proc;
    const s = this.secondary.proc;
    if (p === null || s === null || this.net.inFlight !== 0) return;
    const pu = p.peer?.up;
    const su = s.peer?.up;
    if (pu === null || pu === undefined || su === null || su === undefined) return;
    if (pu.conn !== su.conn || pu.conn.broken) return;
    const ps = p.endpoint.status();
    const ss = s.endpoint.status();
    if (!ps.communicating || !ss.communicating) return;
    for (const [me, other, end] of [[p, s, pu], [s, p, su]] as const) {
      const known = end.link?.partner;
      const real = other.endpoint.state;
      if (known === null || known === undefined || known.serverState !== real) {
        this.fail(
          `${me.server.role} thinks its partner is ${serverStateName(known?.serverState ?? 0)}, ` +
            `it is ${serverStateName(real)}`,
        );
      }
    }
    const pair = `${serverStateName(p.endpoint.state)}/${serverStateName(s.endpoint.state)}`;
    this.pairsSeen.add(pair);
    const now = Math.floor(this.sched.now);
    if (p.endpoint.service(now).answer === "all" && s.endpoint.service(now).answer === "all") {
      this.fail(`both serve every client while communicating: ${pair}`);
    }
    const pd = (x: number, y: number) =>
      x === S.PARTNER_DOWN && (y === S.NORMAL || y === S.COMMUNICATIONS_INTERRUPTED);
    if (pd(p.endpoint.state, s.endpoint.state) || pd(s.endpoint.state, p.endpoint.state)) {
      this.fail(`stuck in a disallowed pair while communicating: ${pair}`);
    }
  }

  /** (2) every lease a client holds is in the database of at least one server. */
  checkKnown(): void {
    const now = this.sched.now;
    for (const c of this.clients) {
      const l = c.lease;
      if (l === null || l.end <= now || this.#duplicated.has(l.address)) continue;
      if (
        c.state !== "bound" && c.state !== "renewing" && c.state !== "rebinding" &&
        c.state !== "off" && c.state !== "rebooting"
      ) continue;
      const known = [this.primary, this.secondary].some((s) => {
        const row = s.store.durable.get(l.address);
        return row !== undefined && row.state === "active" && c.owns(row.hwAddress, row.clientId) &&
          row.ends >= l.end;
      });
      // Fig. 7.1.3-1: ACTIVE takes ABANDONED from the partner, and ABANDONED refuses ACTIVE: a
      // DHCPDECLINE on one server ends the binding the other granted meanwhile (the draft's
      // rule, not a loss by duet). Counted, not failed.
      const abandoned = !known &&
        [this.primary, this.secondary].some((s) =>
          s.store.durable.get(l.address)?.state === "abandoned"
        );
      // In a schedule under the draft's exception both servers may have given the address
      // out; POTENTIAL-CONFLICT resolution keeps one binding (§9.10, §7.1.3 rule 5), and the
      // other client loses its lease. Counted with the duplicates, not failed.
      const taken = !known && this.relaxed !== null &&
        [this.primary, this.secondary].some((s) => {
          const row = s.store.durable.get(l.address);
          return row !== undefined && row.state === "active" &&
            !c.owns(row.hwAddress, row.clientId);
        });
      if (taken) {
        if (!this.#duplicated.has(l.address)) {
          this.#duplicated.add(l.address);
          this.stats.duplicates++;
          this.duplicates.push(
            `(2) c${c.index} lost ${formatIpv4(l.address)} to another client's binding`,
          );
          this.note(`CONFLICT: c${c.index} lost ${formatIpv4(l.address)}`);
        }
        continue;
      }
      if (abandoned) {
        if (!this.#abandonedOverActive.has(l.address)) {
          this.#abandonedOverActive.add(l.address);
          this.stats.abandonedOverActive++;
          this.note(
            `ABANDONED over c${c.index}'s lease on ${formatIpv4(l.address)} (Fig. 7.1.3-1)`,
          );
        }
        continue;
      }
      if (!known) {
        const rows = [this.primary, this.secondary].map((s) => {
          const row = s.store.durable.get(l.address);
          return `${s.role}: ${row === undefined ? "none" : this.#show(row)}`;
        });
        this.fail(
          `(2) c${c.index} holds ${formatIpv4(l.address)} until t+${l.end - T0} (${c.state}), ` +
            `no database knows it: ${rows.join(", ")}`,
        );
      }
    }
  }

  /** Both running in NORMAL over one quiet connection with nothing left to send. */
  #idle(): boolean {
    const p = this.primary.proc;
    const s = this.secondary.proc;
    if (p === null || s === null) return false;
    if (p.endpoint.state !== S.NORMAL || s.endpoint.state !== S.NORMAL) return false;
    if (this.net.inFlight !== 0) return false;
    if (p.peer?.up == null || s.peer?.up == null || p.peer.up.conn !== s.peer.up.conn) {
      return false;
    }
    if (p.peer.up.conn.broken) return false;
    for (const x of [this.primary, this.secondary]) {
      if (x.store.pending > 0) return false;
      const st = (x.proc as NonNullable<typeof x.proc>).endpoint.status().sync;
      if (st.queued !== 0 || st.inFlight !== 0 || st.pass !== "none") return false;
    }
    return true;
  }

  /** (3) After a quiet period the two databases agree on every pool address. */
  /** Where the two databases disagree, or null. */
  #disagreement(): string | null {
    const now = this.sched.now;
    for (let i = 0; i < this.p.poolSize; i++) {
      const address = POOL_START + i;
      const a = this.primary.store.get(address);
      const b = this.secondary.store.get(address);
      const sa = a?.state ?? "free";
      const sb = b?.state ?? "free";
      const show = (l: Lease | undefined) => l === undefined ? "no row" : this.#show(l);
      let same = sa === sb;
      if (same && sa === "active" && a !== undefined && b !== undefined) {
        same = this.clients.some((c) =>
          c.owns(a.hwAddress, a.clientId) && c.owns(b.hwAddress, b.clientId)
        );
        // The later lease-expiration-time of one binding is kept (§7.1.5): both must cover
        // what the client was told.
        const c = this.clients.find((c) => c.owns(a.hwAddress, a.clientId));
        const l = c?.lease;
        if (same && l != null && l.address === address && l.end > now) {
          same = a.ends >= l.end && b.ends >= l.end;
        }
      }
      if (!same) return `${formatIpv4(address)}: primary ${show(a)}, secondary ${show(b)}`;
    }
    return null;
  }

  // ---- running --------------------------------------------------------------------------------

  /** Runs every event due up to `until` (epoch seconds), checking after each. */
  async advance(until: number): Promise<void> {
    const limit = Math.round(until * 1000);
    for (;;) {
      const fn = this.sched.next(limit);
      if (fn === undefined) break;
      await this.#run(fn);
    }
    if (this.sched.nowMs < limit) this.sched.nowMs = limit;
  }

  /**
   * Runs one event; when it did anything (wrote bytes, handled a datagram, committed), lets its
   * promise chains finish and checks the invariants. Returns whether it did anything. Most
   * events are timer ticks that find nothing to do.
   */
  async #run(fn: () => void): Promise<boolean> {
    const before = this.#activity;
    fn();
    if (this.#activity === before) {
      this.stats.events++;
      return false;
    }
    await this.#drain();
    this.checkEvent();
    return true;
  }

  /** Lets the promise chains of the code under test (commit, then send) run to their end. */
  async #drain(): Promise<void> {
    let seen = -1;
    for (let round = 0; round < 100 && seen !== this.#activity; round++) {
      seen = this.#activity;
      for (let i = 0; i < 8; i++) await null;
    }
  }

  /** Starts both servers and the clients. */
  async start(): Promise<void> {
    this.primary.start();
    this.sched.after(this.int(3000), () => {
      if (!this.secondary.alive) this.secondary.start();
    });
    for (const c of this.clients) {
      this.sched.after(this.int(30_000), () => c.powerOn());
    }
    await this.advance(this.sched.now);
  }

  /** One step of the fault schedule: some time passes, then maybe something happens. */
  async randomStep(): Promise<void> {
    this.step++;
    await this.advance(this.sched.now + 1 + this.int(20));
    const r = this.#rand();
    const side = this.#rand() < 0.5 ? this.primary : this.secondary;
    const client = this.clients[this.int(this.clients.length)] as SimClient;
    if (r < 0.2) {
      // Clients come and go.
      const q = this.#rand();
      if (q < 0.3) client.powerOff();
      else if (q < 0.7) client.powerOn();
      else if (q < 0.9) client.release();
      else {
        client.powerOff();
        this.sched.after(this.int(5000), () => client.powerOn());
      }
    } else if (r < 0.3) {
      this.#cut();
    } else if (r < 0.33) {
      this.note("the network resets every connection");
      this.stats.resets++;
      this.net.resetAll();
    } else if (r < 0.39) {
      if (side.alive) this.crash(side);
    } else if (r < 0.43) {
      if (side.alive) this.terminate(side);
    } else if (r < 0.45) {
      if (side.alive && side.proc?.endpoint.state !== S.PAUSED) this.pause(side);
    } else if (r < 0.5) {
      this.operatorPartnerDown(side);
    }
    this.checkKnown();
  }

  #cut(): void {
    if (this.net.cut) return;
    const q = this.#rand();
    const seconds = q < 0.4
      ? 0.2 + this.#rand() * 5
      : q < 0.8
      ? this.p.maxResponseDelay * (0.5 + this.#rand() * 2)
      : this.p.mclt * (1 + this.#rand() * 3);
    this.note(`link cut for ${seconds.toFixed(1)} s`);
    this.stats.cuts++;
    this.net.startCut();
    const cut = this.stats.cuts;
    this.sched.after(seconds * 1000, () => {
      if (!this.#faults || this.stats.cuts !== cut) return;
      this.note("link restored");
      this.net.restore();
    });
  }

  #downFor(): number {
    const q = this.#rand();
    return q < 0.5 ? 1 + this.#rand() * 20 : this.p.mclt * (0.5 + this.#rand() * 3);
  }

  crash(s: SimServer): void {
    this.note(`${s.role} is killed (kill -9)`);
    this.stats.crashes++;
    s.crash();
    this.checkKnown();
    this.#restartLater(s, this.#downFor());
  }

  terminate(s: SimServer): void {
    this.note(`${s.role} gets SIGTERM`);
    this.stats.terminations++;
    s.terminate();
    this.checkKnown();
    this.#restartLater(s, this.#downFor());
  }

  pause(s: SimServer): void {
    this.note(`${s.role}: operator pause`);
    this.stats.pauses++;
    s.command("pause");
    // §9.13: PAUSED ends with a restart.
    this.sched.after(this.#downFor() * 1000, () => {
      if (!this.#faults || s.proc === null || s.proc.endpoint.state !== S.PAUSED) return;
      this.note(`${s.role} restarts out of PAUSED`);
      s.terminate();
      this.#restartLater(s, 0.5);
    });
  }

  /**
   * The operator's PARTNER-DOWN (draft-12 §9.9.3): only when the partner is really down,
   * unless this schedule allows operator mistakes.
   */
  operatorPartnerDown(s: SimServer): void {
    if (!s.alive) return;
    const other = this.partnerOf(s);
    const down = !other.alive;
    if (!down && !this.p.misoperation) return;
    this.note(`operator: ${s.role} partner-down (the ${other.role} is ${down ? "down" : "up"})`);
    const before = this.#stateOf(s);
    s.command("partner-down");
    if (this.#stateOf(s) !== before) {
      this.stats.operatorPartnerDown++;
      this.#operatorJustNow = true;
    }
  }

  /**
   * A sane operator (§9.3.2 step 5, §9.4): a server comes back only where it will hear of its
   * partner's PARTNER-DOWN before serving; with misoperation allowed, whenever.
   */
  #mayRestart(s: SimServer): boolean {
    if (this.p.misoperation) return true;
    const other = this.partnerOf(s);
    if (other.alive) return !(this.effectiveState(other) === S.PARTNER_DOWN && this.net.cut);
    return !(this.storedState(other) === S.PARTNER_DOWN && this.storedState(s) !== S.PARTNER_DOWN);
  }

  #restartLater(s: SimServer, seconds: number): void {
    this.sched.after(seconds * 1000, () => {
      if (s.alive || !this.#faults) return;
      if (!this.#mayRestart(s)) {
        this.#restartLater(s, 5);
        return;
      }
      this.note(`${s.role} starts`);
      s.start();
    });
  }

  /**
   * (3) The quiet period: faults stop, the link is restored, both servers run; clients keep
   * going. The first time both are NORMAL with nothing in flight, the databases must agree.
   */
  async quiesce(): Promise<void> {
    this.stats.quiesces++;
    this.#faults = false;
    this.note("quiet period");
    this.net.restore();
    const start = this.sched.now;
    const deadline = start + Math.max(30 * this.p.mclt, 1200);
    // A disagreement may be one the draft resolves in time: a partner that never heard of a
    // RELEASE keeps the longer lease it knows until it ends (§7.1.3 time(2), §7.1.5). The
    // databases must agree at a quiet moment before every lease known now could have ended.
    let settleBy = start;
    for (const s of [this.primary, this.secondary]) {
      for (const l of s.store.iterate()) settleBy = Math.max(settleBy, l.ends);
    }
    settleBy = Math.min(deadline, settleBy + 3 * this.p.mclt + 60);
    let differs: string | null = null;
    for (;;) {
      for (const s of [this.primary, this.secondary]) {
        if (s.proc !== null && s.proc.endpoint.state === S.PAUSED) {
          // §9.13: PAUSED ends with a restart.
          this.note(`${s.role} restarts out of PAUSED`);
          s.terminate();
        }
        if (!s.alive && this.#mayRestartQuiet(s)) {
          this.note(`${s.role} starts`);
          s.start();
        }
      }
      if (this.#idle()) {
        differs = this.#disagreement();
        if (differs === null) break;
        this.note(`quiet but the databases differ: ${differs}`);
        if (this.sched.now >= settleBy) {
          this.fail(
            `(3) the databases still disagree ${Math.round(this.sched.now - start)} s into a ` +
              `quiet period: ${differs}`,
          );
        }
      }
      if (this.sched.now >= deadline) {
        const st = (s: SimServer) =>
          s.proc === null
            ? "down"
            : `${serverStateName(s.proc.endpoint.state)} ${
              JSON.stringify(s.proc.endpoint.status().sync)
            }`;
        this.fail(
          `(3) no quiet NORMAL/NORMAL within ${Math.round(deadline - start)} s: ` +
            `primary ${st(this.primary)}, secondary ${
              st(this.secondary)
            }, in flight ${this.net.inFlight}`,
        );
      }
      await this.#advanceUntilIdle(this.sched.now + 1, differs === null);
    }
    this.checkKnown();
    this.#faults = true;
  }

  #mayRestartQuiet(s: SimServer): boolean {
    const other = this.partnerOf(s);
    if (other.alive) return true;
    // Both down: the one that stored PARTNER-DOWN first (§9.3.2 step 5 for the other).
    return !(this.storedState(other) === S.PARTNER_DOWN && this.storedState(s) !== S.PARTNER_DOWN);
  }

  /** Like advance(), but (when `stop`) stops at the first event after which all is idle. */
  async #advanceUntilIdle(until: number, stop: boolean): Promise<void> {
    const limit = Math.round(until * 1000);
    for (;;) {
      const fn = this.sched.next(limit);
      if (fn === undefined) break;
      if (await this.#run(fn) && stop && this.#idle()) return;
    }
    if (this.sched.nowMs < limit) this.sched.nowMs = limit;
  }

  /** A whole schedule: start, the fault steps (with an occasional quiet period), quiet end. */
  async run(): Promise<void> {
    await this.start();
    for (let i = 0; i < this.p.steps; i++) {
      await this.randomStep();
      if (this.#rand() < 0.02) await this.quiesce();
    }
    await this.quiesce();
  }
}

function sameClient(
  hw1: Uint8Array,
  id1: Uint8Array | null,
  hw2: Uint8Array,
  id2: Uint8Array | null,
): boolean {
  const eq = (a: Uint8Array, b: Uint8Array) =>
    a.length === b.length && a.every((v, i) => v === b[i]);
  if (id1 !== null && id2 !== null) return eq(id1, id2);
  if (id1 !== null || id2 !== null) return false;
  return eq(hw1, hw2);
}
