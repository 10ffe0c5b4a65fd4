/**
 * One failover endpoint as a running thing (draft-ietf-dhc-failover-12 §7-§9): the I/O shell
 * that joins the partner link (lib/peer/tcp.ts), the server-state machine (state.ts) and the
 * binding-update engine (sync.ts) to the lease database and the DHCP shell. It routes link
 * events and partner messages to the two pure engines and runs their actions in order. Clock
 * and timers come in through `EndpointClock`, so this module itself stays free of them.
 */
import { isMine as bucketIsMine, type Polarity, shouldAnswerRequest } from "../balance/hash.ts";
import { mineBitmap } from "../balance/kernel_filter.ts";
import type { Config } from "../config/types.ts";
import type { Logger } from "../log.ts";
import type { DhcpEffect, FailoverView } from "../server/dhcp.ts";
import type { DhcpMessage } from "../wire/dhcp.ts";
import type { LinkSettings, LocalState, PartnerInfo } from "../peer/link.ts";
import type { PeerStatus } from "../peer/tcp.ts";
import type { Lease, LeaseStore, LeaseView } from "../store/store.ts";
import {
  buildPoolreq,
  buildPoolresp,
  buildUpdreq,
  buildUpdreqall,
  type FailoverMessage,
  getAddressesTransferred,
  getServerFlags,
  getServerState,
  getStartTimeOfState,
  MsgType,
  ServerState,
  serverStateName,
} from "../wire/failover.ts";
import { formatIpv4 } from "../wire/ip.ts";
import {
  type FailoverCommand,
  type FailoverMachine,
  type FailoverState,
  localState,
  type MachineOptions,
  type Persisted,
  persisted,
  resume,
  type Service,
  service,
  shiftMachineTimes,
  type StateAction,
  type StateInput,
  type TimerName,
  transition,
} from "./state.ts";
import {
  BindingSync,
  partnerTakesBatches,
  type SyncEffect,
  type SyncInput,
  type SyncStatus,
} from "./sync.ts";

/** The meta key under which the machine's stable state is kept (§9.2). */
export const STATE_META_KEY = "failover.state";

/** The failover state record stored under STATE_META_KEY; throws when the text is not one. */
export function parsePersisted(text: string): Persisted {
  const p = JSON.parse(text) as Persisted;
  if (typeof p !== "object" || p === null || typeof p.state !== "number") {
    throw new TypeError("not a failover state record");
  }
  return p;
}
/** How often a state that could not be recorded is tried again (ms). */
export const STATE_RETRY_MS = 1000;

/** MCLT assumed by a secondary that has none configured nor learned yet (ISC's default). */
const DEFAULT_MCLT = 3600;
/** How often the time of operation is recorded while serving (§9.3.2 step 5), seconds. */
const OPERATIONAL_EVERY = 10;

/** Time and timers, supplied by the caller (lib/cli/serve.ts uses the real ones). */
export interface EndpointClock {
  /** Epoch seconds (fractions allowed). */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds; returns a handle for cancel(). */
  schedule(fn: () => void, ms: number): unknown;
  cancel(handle: unknown): void;
}

/**
 * The partner link as the endpoint uses it (draft-12 §8): lib/peer/tcp.ts PeerService runs it
 * over TCP; the deterministic simulation runs the same link engine (lib/peer/link.ts) over a
 * simulated network.
 */
export interface PartnerLink {
  /** Starts listening and dialing; throws when the failover port cannot be bound. */
  start(): void;
  /** Closes every connection; resolves once nothing of the link is left running. */
  stop(): Promise<void>;
  status(): PeerStatus;
  /** Sends STATE on the up link (§7.10); nothing while it is down. */
  sendState(local: LocalState): void;
  /** Sends a message built with nextXid() on the up link; false when the link is down. */
  sendMessage(message: FailoverMessage): boolean;
  /** The next xid on the up link (draft-12 §7.2.2), or null when the link is down. */
  nextXid(): number | null;
  /**
   * Ends the up connection with a DISCONNECT (§7.12) and the reason; the link dials again as
   * after any other loss, and both sides send their unacknowledged updates on the next
   * connection (§8.6). Nothing when the link is down.
   */
  drop(reason: string): void;
}

/** What the endpoint hands its PartnerLink: its state for STATE messages and the link events. */
export interface PartnerLinkHandlers {
  /** This server's state for STATE messages (§7.10). */
  localState(): LocalState;
  /** Communications OK (§8.3): the handshake is done and the partner's STATE received. */
  onUp(partner: PartnerInfo): void;
  /** Communications lost (§8.3). */
  onDown(reason: string): void;
  /** A message after the link is up. */
  onMessage(message: FailoverMessage): void;
}

/** The store an endpoint needs: leases, the write batch and the meta table. */
export type EndpointStore = LeaseStore & LeaseView & {
  getMeta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
};

/** Options for FailoverEndpoint. */
export interface FailoverEndpointOptions {
  config: Pick<Config, "failover" | "subnets">;
  settings: LinkSettings;
  store: EndpointStore;
  /**
   * The DHCP core: re-reads addresses the partner changed (DhcpCore.resync) and, on the
   * primary, hands FREE addresses to the secondary (pool balancing, draft-12 §5.4).
   */
  core: {
    resync(addresses: Iterable<number>): void;
    /** resync() of one lease just written, without reading it back (DhcpCore.place). */
    place?(lease: Lease): void;
    utilisation(): readonly { free: number; backup: number }[];
    giveToBackup(index: number, count: number, now: number): DhcpEffect[];
  };
  /**
   * The DHCP shell: commits the shared write batch (DhcpShell.flush / commitNow) and runs the
   * core's effects like its own (DhcpShell.apply), so their BNDUPDs follow the commit.
   */
  shell: {
    flush(): boolean;
    commitNow(): Promise<void>;
    /** Has the pending writes committed with the next group commit; default: flush(). */
    commitSoon?(): void;
    apply(effects: DhcpEffect[]): void;
    /** Whether the lease database takes writes now (DhcpShell.storeFailing); default yes. */
    writable?(): boolean;
  };
  logger: Logger;
  /** The stored timeline (lib/server/clock.ts ProtocolClock.storeNow, in lib/cli/serve.ts). */
  clock: EndpointClock;
  /**
   * Seconds to add to the DHCP core's time to get the stored timeline's (ProtocolClock.offset:
   * the clock steps applied so far). service() and partnerDownSince() take and give times on
   * the core's timeline; default 0 (no step ever applied).
   */
  coreOffset?: () => number;
  /** Overrides of the machine's options (tests: startupTimeout and the like). */
  machine?: Partial<MachineOptions>;
  /** Makes the partner link, given the endpoint's handlers (lib/cli/serve.ts: a PeerService). */
  link(handlers: PartnerLinkHandlers): PartnerLink;
}

/** What `status()` reports beyond the link. */
export interface EndpointStatus {
  state: string;
  stateCode: number;
  startTimeOfState: number;
  /** The partner's last known state (§9.2), kept while the link is down; null if never heard. */
  partnerState: string | null;
  communicating: boolean;
  sync: SyncStatus;
}

/** The outcome of an operator command. */
export interface CommandResult {
  accepted: boolean;
  /** The state after the command. */
  state: string;
  previous: string;
}

/** A failover endpoint: partner link + state machine + binding sync, wired to the database. */
export class FailoverEndpoint implements FailoverView {
  readonly peer: PartnerLink;
  readonly role: "primary" | "secondary";
  readonly #o: FailoverEndpointOptions;
  readonly #log: Logger;
  readonly #sync: BindingSync;
  #machine: FailoverMachine | null = null;
  /** Machine inputs not yet fed: inputs arriving while actions run wait their turn. */
  #inputs: StateInput[] = [];
  #feeding = false;
  #timers = new Map<TimerName, unknown>();
  /** Sends wait behind a send-after-commit so that messages leave in order. */
  #outbox: Promise<void> = Promise.resolve();
  #outboxDepth = 0;
  #stopped = false;
  #pools: { start: number; end: number }[];
  /**
   * The hash bucket assignment in force, as on the wire (draft-12 §12.11): the primary's own,
   * or the one the primary sent on the current connection; null before any.
   */
  #hba: Uint8Array | null = null;
  /** kernelBalance()'s bitmap, for the assignment it was made from. */
  #mine: { hba: Uint8Array; bits: Uint8Array } | null = null;
  readonly #polarity: Polarity;
  /** Pool balancing (§5.4): when the primary last balanced, and the periodic timer. */
  #balancedAt = -Infinity;
  #balanceTimer: unknown = undefined;
  #operationalTimer: unknown = undefined;
  #resendTimer: unknown = undefined;
  /** The newest state not yet known to be on stable storage, and the timer of its next try. */
  #stateOwed: Persisted | null = null;
  #stateRetry: unknown = undefined;
  #service: {
    machine: FailoverMachine | null;
    second: number;
    timed: boolean;
    value: Service;
  } | null = null;

  constructor(options: FailoverEndpointOptions) {
    const f = options.config.failover;
    if (!f) throw new TypeError("FailoverEndpoint needs a failover configuration");
    this.#o = options;
    this.#log = options.logger;
    this.role = f.role;
    this.#polarity = f.hbaPolarity;
    if (f.role === "primary") this.#hba = options.settings.hba;
    this.#pools = options.config.subnets.flatMap((s) =>
      s.pools.map((p) => ({ start: p.start, end: p.end }))
    );
    this.#sync = new BindingSync({
      role: f.role,
      view: options.store,
      inPool: (address) => this.inPool(address),
    });
    this.peer = options.link({
      localState: () => this.#localState(),
      onUp: (partner) => this.#onUp(partner),
      onDown: (reason) => this.#onDown(reason),
      onMessage: (message) => this.#onMessage(message),
    });
  }

  /** Whole epoch seconds: the machine's times go on the wire as 32-bit integers (§12.26). */
  #now(): number {
    return Math.floor(this.#o.clock.now());
  }

  /** Whether an address is in one of this server's pools (§7.1.3 reject-reason 1). */
  inPool(address: number): boolean {
    return this.#pools.some((p) => address >= p.start && address <= p.end);
  }

  // ---- what the DHCP core asks (FailoverView) ------------------------------------------------

  /** The MCLT in force: configured on the primary, learned from CONNECT on the secondary. */
  mclt(): number {
    return this.#machine?.mclt ?? this.#o.config.failover?.mclt ?? DEFAULT_MCLT;
  }

  /**
   * What the current state allows for DHCP clients (§5.5-§5.9, §9). Asked for every request:
   * the answer is kept until the machine changes or, in PARTNER-DOWN, the second does.
   */
  service(coreNow: number): Service {
    const m = this.#machine;
    // The machine's times are on the stored timeline; the core's clock never steps.
    const now = coreNow + (this.#o.coreOffset?.() ?? 0);
    const second = Math.floor(now);
    const c = this.#service;
    if (c !== null && c.machine === m && (c.second === second || !c.timed)) return c.value;
    const value = service(m?.state ?? ServerState.STARTUP, this.role, {
      now,
      startTimeOfState: m?.startTimeOfState ?? 0,
      mclt: this.mclt(),
    });
    this.#service = { machine: m, second, timed: value.partnerPoolAt !== null, value };
    return value;
  }

  /** When this server entered PARTNER-DOWN on the core's timeline, or null (§9.4.2). */
  partnerDownSince(): number | null {
    const m = this.#machine;
    if (m === null || m.state !== ServerState.PARTNER_DOWN) return null;
    return m.startTimeOfState - (this.#o.coreOffset?.() ?? 0);
  }

  /**
   * This server's clock stepped by `delta` seconds and the stored lease times were moved by it
   * (DhcpShell, lib/server/clock.ts): the machine's own times move too, so that every wait it
   * is in keeps the time it had left (state.ts shiftMachineTimes), its timers are set again
   * for their moved times, and the moved state is recorded.
   */
  shiftTimes(delta: number): void {
    const m = this.#machine;
    if (m === null || delta === 0) return;
    const moved = shiftMachineTimes(m, delta);
    this.#machine = moved;
    for (const [name, at] of Object.entries(moved.timers) as [TimerName, number][]) {
      this.#startTimer(name, at);
    }
    this.#persistState(persisted(moved));
  }

  /**
   * NORMAL: whether this server serves the client of a load-balanced request (draft-12 §9.8.2,
   * RFC 3074): its hash bucket is ours under the assignment in force, or its `secs` is above
   * load-balance-max-seconds. Without an assignment (never connected) every client is ours.
   */
  isMine(msg: DhcpMessage): boolean {
    const hba = this.#hba;
    if (hba === null) return true;
    return shouldAnswerRequest(msg, {
      role: this.role,
      hba,
      polarity: this.#polarity,
      loadBalanceMaxSeconds: this.#o.config.failover?.loadBalanceMaxSeconds ?? 3,
    });
  }

  /**
   * What the kernel's load-balancing filter decides by (lib/balance/kernel_filter.ts): in
   * NORMAL with an assignment, the buckets this server answers (a bitmap, role and polarity
   * resolved) and load-balance-max-seconds, as isMine() uses them; null in any other state
   * (the filter then passes every request up).
   */
  kernelBalance(): { mine: Uint8Array; loadBalanceMaxSeconds: number } | null {
    const hba = this.#hba;
    if (hba === null || this.#machine?.state !== ServerState.NORMAL) return null;
    if (this.#mine?.hba !== hba) {
      const role = this.role;
      const polarity = this.#polarity;
      this.#mine = { hba, bits: mineBitmap((b) => bucketIsMine(role, hba, b, polarity)) };
    }
    return {
      mine: this.#mine.bits,
      loadBalanceMaxSeconds: this.#o.config.failover?.loadBalanceMaxSeconds ?? 3,
    };
  }

  /** Called after every change of state (the kernel filter follows NORMAL with it). */
  onStateChange: (() => void) | null = null;

  /** §5.11: this server's change of the binding has not been sent to the partner. */
  unsent(address: number): boolean {
    return this.#sync.isUnsent(address);
  }

  /**
   * Resumes the machine from stable storage (§9.3.2) and starts the partner link. Throws when
   * the failover port cannot be bound.
   */
  start(): void {
    const f = this.#o.config.failover;
    if (!f) return;
    const stored = this.#readPersisted();
    const options: MachineOptions = {
      role: f.role,
      mclt: f.mclt ?? DEFAULT_MCLT,
      safePeriod: f.autoPartnerDown,
      ...this.#o.machine,
    };
    const { machine, actions } = resume(stored, this.#now(), options);
    this.#machine = machine;
    this.#feeding = true;
    try {
      this.#runActions(actions);
    } finally {
      this.#feeding = false;
    }
    this.#drain();
    this.peer.start();
    this.#recordOperation();
  }

  /** Records, every few seconds, that this server is still operating (§9.3.2 step 5). */
  #recordOperation(): void {
    if (this.#stopped) return;
    this.#feed({ kind: "operational", now: this.#now() });
    this.#operationalTimer = this.#o.clock.schedule(
      () => this.#recordOperation(),
      OPERATIONAL_EVERY * 1000,
    );
  }

  /** The machine's current state, e.g. "NORMAL" (STARTUP before start()). */
  get state(): FailoverState | 1 {
    return this.#machine?.state ?? 1;
  }

  /** Link status, for lib/control (the PartnerLink's). */
  peerStatus(): PeerStatus {
    return this.peer.status();
  }

  /** The state and sync counters for status pages. */
  status(): EndpointStatus {
    const m = this.#machine;
    return {
      state: serverStateName(m?.state ?? 1),
      stateCode: m?.state ?? 1,
      startTimeOfState: m?.startTimeOfState ?? 0,
      partnerState: m?.partner ? serverStateName(m.partner.serverState) : null,
      communicating: m?.communicating ?? false,
      sync: this.#sync.status,
    };
  }

  /**
   * SIGTERM (draft-12 §9.14): enter SHUTDOWN, which is stored and sent to the partner in a
   * STATE message (a partner in NORMAL then takes over in PARTNER-DOWN, §9.8.4), then stop.
   */
  async shutdown(): Promise<void> {
    if (this.#stopped) return;
    if (this.#machine !== null && this.#machine.state !== ServerState.SHUTDOWN) {
      this.command("shutdown");
    }
    await this.stop();
  }

  /** Runs an operator command (§9.9.3 PARTNER-DOWN and friends); returns the state after it. */
  command(command: FailoverCommand): CommandResult {
    const before = this.#machine?.state ?? 1;
    this.#feed({ kind: "command", now: this.#now(), command });
    const after = this.#machine?.state ?? 1;
    return {
      accepted: after !== before,
      state: serverStateName(after),
      previous: serverStateName(before),
    };
  }

  /**
   * The DHCP shell committed these addresses (DhcpShell's onCommitted): each committed lease
   * goes to the partner in a BNDUPD (§7.1.1). Runs after the commit returns, never inside it.
   * `committed` holds the leases as the commit stored them; an address without one is read.
   */
  leasesCommitted(
    addresses: readonly number[],
    committed?: ReadonlyMap<number, Lease>,
  ): void {
    if (this.#stopped || addresses.length === 0) return;
    const list = [...addresses];
    queueMicrotask(() => {
      if (this.#stopped) return;
      const leases = [];
      for (const address of new Set(list)) {
        if (!this.inPool(address)) continue;
        const lease = committed?.get(address) ?? this.#o.store.get(address);
        if (lease !== undefined) leases.push(lease);
      }
      // §6.3: the leases of one commit share BNDUPDs.
      this.#runSync(this.#sync.step({ kind: "leases-changed", now: this.#now(), leases }));
      this.#balance(false);
    });
  }

  /** Stops the link and the timers; the machine's state is already stored. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const h of this.#timers.values()) this.#o.clock.cancel(h);
    this.#timers.clear();
    if (this.#balanceTimer !== undefined) this.#o.clock.cancel(this.#balanceTimer);
    this.#balanceTimer = undefined;
    if (this.#operationalTimer !== undefined) this.#o.clock.cancel(this.#operationalTimer);
    if (this.#resendTimer !== undefined) this.#o.clock.cancel(this.#resendTimer);
    if (this.#stateRetry !== undefined) this.#o.clock.cancel(this.#stateRetry);
    await this.peer.stop();
    await this.#outbox.catch(() => {});
  }

  // -------------------------------------------------------------------------------------------

  #readPersisted(): Persisted | null {
    const text = this.#o.store.getMeta(STATE_META_KEY);
    if (text === undefined) return null;
    try {
      return parsePersisted(text);
    } catch (e) {
      this.#log.error("Ignoring an unreadable stored failover state: starting as if new", {
        error: (e as Error).message,
      });
      return null;
    }
  }

  #localState(): LocalState {
    const m = this.#machine;
    if (m === null) {
      // Before start(): STARTUP with no previous state (§9.3.1).
      return { serverState: 6, serverFlags: 1, startTimeOfState: 0 };
    }
    return localState(m);
  }

  #onUp(partner: PartnerInfo): void {
    const now = this.#now();
    // §7.8.2 step 8: the secondary keeps the primary's assignment for this connection.
    if (this.role === "secondary") this.#hba = partner.hba;
    this.#log.info("Failover partner connected", {
      partner: serverStateName(partner.serverState),
      maxUnackedBndupd: partner.maxUnackedBndupd ?? 0,
    });
    // The sync first: the machine's entry actions (send-updates) need the link.
    this.#runSync(this.#sync.step({
      kind: "link-up",
      now,
      maxUnackedBndupd: partner.maxUnackedBndupd ?? 1,
      nextXid: () => this.peer.nextXid() ?? 0,
      // §6.3 batching only for a partner known to read it (ISC 4.4.3 drops the link).
      ...(partnerTakesBatches(partner.vendorClass) ? {} : { maxBindingsPerBndupd: 1 }),
    }));
    this.#feed({
      kind: "comm-up",
      now,
      partner: {
        serverState: partner.serverState,
        serverFlags: partner.serverFlags,
        startTimeOfState: partner.startTimeOfState,
      },
      mclt: this.#o.settings.role === "secondary" ? partner.mclt : null,
    });
    // §7.10, §9.2: the handshake's STATE told the state of when the connection opened; one
    // entered since (while not communicating, so not announced) is sent now. The link sends
    // nothing when it is the same.
    this.peer.sendState(this.#localState());
  }

  #onDown(reason: string): void {
    const now = this.#now();
    this.#runSync(this.#sync.step({ kind: "link-down", now }));
    this.#feed({ kind: "comm-down", now, reason });
  }

  #onMessage(message: FailoverMessage): void {
    const now = this.#now();
    switch (message.type) {
      case MsgType.STATE: {
        const serverState = getServerState(message);
        if (serverState === undefined) {
          this.#log.warn("STATE without a valid server-state ignored", { xid: message.xid });
          return;
        }
        this.#feed({
          kind: "partner-state",
          now,
          partner: {
            serverState,
            serverFlags: getServerFlags(message) ?? 0,
            startTimeOfState: getStartTimeOfState(message) ?? 0,
          },
        });
        return;
      }
      case MsgType.BNDUPD:
      case MsgType.BNDACK:
      case MsgType.UPDREQ:
      case MsgType.UPDREQALL:
      case MsgType.UPDDONE:
        this.#runSync(this.#sync.step({ kind: "message", now, message } as SyncInput));
        // The partner's changes (and its acks of ours) move addresses between the pools.
        if (message.type === MsgType.BNDUPD || message.type === MsgType.BNDACK) {
          this.#balance(false);
        }
        return;
      case MsgType.POOLREQ:
        this.#onPoolreq(message);
        return;
      case MsgType.POOLRESP: {
        const n = getAddressesTransferred(message) ?? 0;
        this.#log.info("Received POOLRESP", { xid: message.xid, addressesTransferred: n });
        // §7.7.2: ask again while the primary still transfers addresses.
        if (n > 0 && this.role === "secondary") this.#sendPoolreq();
        return;
      }
      default:
        this.#log.debug("Failover message not handled yet", { type: message.type });
    }
  }

  // ---- the state machine --------------------------------------------------------------------

  /** Feeds one input; inputs that arrive while actions run are taken in order afterwards. */
  #feed(input: StateInput): void {
    if (this.#stopped && input.kind !== "command") return;
    this.#inputs.push(input);
    this.#drain();
  }

  #drain(): void {
    if (this.#feeding || this.#machine === null) return;
    this.#feeding = true;
    try {
      for (let input = this.#inputs.shift(); input !== undefined; input = this.#inputs.shift()) {
        const m = this.#machine as FailoverMachine;
        const { machine, actions } = transition(m, input);
        this.#machine = machine;
        this.#runActions(actions);
        if (machine.state !== m.state) {
          this.#entered(machine.state);
          this.onStateChange?.();
        }
        for (const a of actions) {
          const f = a.kind === "log" ? a.fields : undefined;
          if (f?.from === undefined || f.to === undefined) continue;
          const t = { from: String(f.from), to: String(f.to), reason: String(f.reason ?? "") };
          this.transitions.push({ time: input.now, ...t });
          if (this.transitions.length > 10) this.transitions.shift();
        }
      }
    } finally {
      this.#feeding = false;
    }
  }

  /** The last 10 state transitions (§9), oldest first, with the reason each was logged with. */
  readonly transitions: { time: number; from: string; to: string; reason: string }[] = [];

  #runActions(actions: readonly StateAction[]): void {
    const now = () => this.#now();
    for (const a of actions) {
      switch (a.kind) {
        case "persist":
          // §9.2: the current state MUST be on stable storage: committed now, synced soon.
          this.#persistState(a.persisted);
          break;
        case "send-state":
          this.peer.sendState(a.local);
          break;
        case "send-updreq":
        case "send-updreqall": {
          const xid = this.peer.nextXid();
          if (xid === null) break;
          const h = { time: Math.floor(now()), xid };
          this.#send(
            a.kind === "send-updreq" ? buildUpdreq(h) : buildUpdreqall(h),
            this.#sync.connection,
          );
          this.#log.info(`Sent ${a.kind === "send-updreq" ? "UPDREQ" : "UPDREQALL"}`, { xid });
          break;
        }
        case "send-updates":
          this.#runSync(this.#sync.step({ kind: "send-updates", now: now() }));
          break;
        case "send-poolreq":
          this.#sendPoolreq();
          break;
        case "start-timer":
          this.#startTimer(a.name, a.at);
          break;
        case "cancel-timer": {
          const h = this.#timers.get(a.name);
          if (h !== undefined) this.#o.clock.cancel(h);
          this.#timers.delete(a.name);
          break;
        }
        case "log":
          this.#log[a.level](a.msg, a.fields);
          break;
      }
    }
  }

  /**
   * Writes the state and commits it at once; its sync follows with the next group commit
   * (commitNow), so that it reaches stable storage even when no DHCP write asks for a sync.
   * A failed try is logged and retried every STATE_RETRY_MS until it succeeds or a newer
   * state replaces it.
   */
  #persistState(p: Persisted): void {
    this.#stateOwed = p;
    if (this.#stateRetry !== undefined) this.#o.clock.cancel(this.#stateRetry);
    this.#stateRetry = undefined;
    this.#recordState(p, true);
  }

  #recordState(p: Persisted, first: boolean): void {
    const failed = (e: unknown) => {
      if (this.#stateOwed !== p) return;
      const fields = { state: serverStateName(p.state), error: (e as Error).message };
      if (first) this.#log.error("Cannot record the failover state; retrying", fields);
      else this.#log.debug("Cannot record the failover state yet", fields);
      if (this.#stopped) return;
      this.#stateRetry = this.#o.clock.schedule(() => {
        this.#stateRetry = undefined;
        if (this.#stateOwed === p && !this.#stopped) this.#recordState(p, false);
      }, STATE_RETRY_MS);
    };
    try {
      this.#o.store.setMeta(STATE_META_KEY, JSON.stringify(p));
      if (!this.#o.shell.flush()) throw new Error("the commit failed");
    } catch (e) {
      failed(e);
      return;
    }
    this.#o.shell.commitNow().then(() => {
      if (this.#stateOwed !== p) return;
      this.#stateOwed = null;
      if (!first) {
        this.#log.info("Recorded the failover state", { state: serverStateName(p.state) });
      }
    }, failed);
  }

  #startTimer(name: TimerName, at: number): void {
    const old = this.#timers.get(name);
    if (old !== undefined) this.#o.clock.cancel(old);
    if (this.#stopped) return;
    const ms = Math.max(0, (at - this.#o.clock.now()) * 1000);
    const h = this.#o.clock.schedule(() => {
      if (this.#timers.get(name) !== h) return;
      this.#timers.delete(name);
      // A timer may fire a little early by the wall clock; the machine wants now >= at.
      this.#feed({ kind: "timer", now: Math.max(at, this.#now()), name });
    }, ms);
    this.#timers.set(name, h);
  }

  // ---- pool balancing (§5.4, §7.6, §7.7) -------------------------------------------------------

  #entered(state: number): void {
    if (state !== ServerState.NORMAL) {
      if (this.#balanceTimer !== undefined) this.#o.clock.cancel(this.#balanceTimer);
      this.#balanceTimer = undefined;
      return;
    }
    // The primary balances on entering NORMAL; the secondary asks with POOLREQ (§9.8.1).
    if (this.role === "primary") this.#balance(true);
    this.#scheduleBalance();
  }

  /** While NORMAL: the primary rebalances, the secondary asks again, every max-balance (§7.6). */
  #scheduleBalance(): void {
    if (this.#balanceTimer !== undefined) this.#o.clock.cancel(this.#balanceTimer);
    this.#balanceTimer = undefined;
    const f = this.#o.config.failover;
    if (this.#stopped || !f) return;
    this.#balanceTimer = this.#o.clock.schedule(() => {
      this.#balanceTimer = undefined;
      if (this.#machine?.state !== ServerState.NORMAL) return;
      if (this.role === "primary") this.#balance(true);
      else this.#sendPoolreq();
      this.#scheduleBalance();
    }, f.maxBalance * 1000);
  }

  #sendPoolreq(): void {
    const xid = this.peer.nextXid();
    if (xid === null) return;
    this.#send(buildPoolreq({ time: this.#now(), xid }), this.#sync.connection);
    this.#log.info("Sent POOLREQ", { xid });
  }

  /** §7.6.2: the primary balances now and answers with the number of addresses it moved. */
  #onPoolreq(message: FailoverMessage): void {
    if (this.role !== "primary") {
      this.#log.warn("Ignoring a POOLREQ: only a primary allocates addresses (§7.6.2)", {
        xid: message.xid,
      });
      return;
    }
    const moved = this.#balance(true);
    // §7.7: the POOLRESP copies the POOLREQ's xid; its BNDUPDs may follow it.
    this.#send(
      buildPoolresp({ time: this.#now(), xid: message.xid }, moved),
      this.#sync.connection,
    );
    this.#log.info("Sent POOLRESP", { xid: message.xid, addressesTransferred: moved });
  }

  /**
   * The primary keeps about half of every subnet's available addresses with the secondary
   * (draft-12 §5.4): in NORMAL, when the FREE and BACKUP counts differ by more than
   * max-lease-misbalance percent of their sum, it moves half the difference to BACKUP.
   * Unforced checks run at most every min-balance seconds. Returns the addresses moved.
   */
  #balance(force: boolean): number {
    const f = this.#o.config.failover;
    const m = this.#machine;
    if (!f || this.#stopped || this.role !== "primary" || m?.state !== ServerState.NORMAL) {
      return 0;
    }
    const now = this.#now();
    if (!force && now - this.#balancedAt < f.minBalance) return 0;
    this.#balancedAt = now;
    let moved = 0;
    const effects: DhcpEffect[] = [];
    this.#o.core.utilisation().forEach((u, index) => {
      const free = u.free - u.backup;
      const give = balanceShare(free, u.backup, f.maxLeaseMisbalance);
      if (give === 0) return;
      const e = this.#o.core.giveToBackup(index, give, now);
      moved += e.length;
      effects.push(...e);
    });
    if (effects.length === 0) return 0;
    this.#log.info("Balanced pools: gave addresses to the secondary", { moved });
    this.#o.shell.apply(effects);
    return moved;
  }

  // ---- the binding sync ---------------------------------------------------------------------

  #runSync(effects: readonly SyncEffect[]): void {
    let wrote = false;
    let committing = false;
    for (const e of effects) {
      switch (e.kind) {
        case "persist":
          try {
            this.#o.store.put(e.lease);
            wrote = true;
            // The allocator sees what the partner did (and what its ack freed).
            if (this.#o.core.place) this.#o.core.place(e.lease);
            else this.#o.core.resync([e.lease.address]);
          } catch (err) {
            this.#log.error("Cannot store a binding from the partner", {
              address: formatIpv4(e.lease.address),
              error: (err as Error).message,
            });
          }
          break;
        case "record-ack":
          try {
            // Only tsfp changes: the allocator has nothing to learn from it.
            if (this.#o.store.recordAck(e.lease, e.tsfp)) wrote = true;
          } catch (err) {
            this.#log.error("Cannot record the partner's acknowledgement", {
              address: formatIpv4(e.lease.address),
              error: (err as Error).message,
            });
          }
          break;
        case "send":
          if (e.message.type === MsgType.BNDUPD && this.#o.store.pending > 0) {
            // §7.1.1: a BNDUPD tells of committed bindings only. The sync reads the store as
            // it is, and a DHCP write may still wait for its group commit: commit it first.
            committing = true;
            this.#sendAfterCommit(e.message, this.#sync.connection);
          } else {
            this.#send(e.message, this.#sync.connection);
          }
          break;
        case "send-after-commit":
          committing = true;
          this.#sendAfterCommit(e.message, e.connection);
          break;
        case "event":
          this.#feed({ kind: "upddone", now: this.#now() });
          break;
        case "log":
          this.#log[e.level](e.msg, e.fields);
          break;
      }
    }
    // Writes with nothing waiting on them (a BNDACK's acked times) still belong in a commit,
    // which nothing else would start: the next group commit takes them.
    if (wrote && !committing) {
      try {
        if (this.#o.shell.commitSoon) this.#o.shell.commitSoon();
        else this.#o.shell.flush();
      } catch (err) {
        this.#log.error("Cannot commit bindings from the partner", {
          error: (err as Error).message,
        });
      }
    }
  }

  /** Sends now, or after the send-after-commit messages queued before it. */
  #send(message: FailoverMessage, connection: number): void {
    if (this.#outboxDepth === 0) {
      this.peer.sendMessage(message);
      return;
    }
    this.#enqueue(() => Promise.resolve(), message, connection);
  }

  /** §7.1.1, §8.6: commit and sync first; send only on the connection that asked for it. */
  #sendAfterCommit(message: FailoverMessage, connection: number): void {
    this.#enqueue(() => this.#o.shell.commitNow(), message, connection);
  }

  /** Drops the connection as soon as the database is writable again (checked every second). */
  #resendOwed(): void {
    if (this.#resendTimer !== undefined) return;
    const connection = this.#sync.connection;
    const check = () => {
      this.#resendTimer = undefined;
      if (this.#stopped || this.#sync.connection !== connection) return;
      if (this.#o.shell.writable?.() === false) {
        this.#resendTimer = this.#o.clock.schedule(check, 1000);
        return;
      }
      this.#log.warn("Restarting the partner link: updates it sent could not be stored", {
        section: "§8.6",
      });
      this.peer.drop("Binding updates could not be stored: send them again");
    };
    this.#resendTimer = this.#o.clock.schedule(check, 1000);
  }

  #enqueue(before: () => Promise<void>, message: FailoverMessage, connection: number): void {
    this.#outboxDepth++;
    // Handled at once, so that a failed commit is never an unhandled rejection.
    const wait = before().then(() => null, (e: unknown) => e as Error);
    this.#outbox = this.#outbox.then(() => wait).then((error) => {
      this.#outboxDepth--;
      if (error !== null) {
        this.#log.error("Not sending a failover message: its bindings are not durable", {
          type: message.type,
          xid: message.xid,
          error: error.message,
        });
        // The partner waits for this BNDACK (or our BNDUPD) and will not send it again on this
        // connection: once the database takes writes again, a new connection makes both sides
        // resend what is unacknowledged (§8.6).
        if (connection === this.#sync.connection && !this.#stopped) this.#resendOwed();
      } else if (connection === this.#sync.connection && !this.#stopped) {
        this.peer.sendMessage(message);
      }
    });
  }
}

/**
 * How many FREE addresses the primary gives the secondary (draft-12 §5.4): half the
 * difference once FREE exceeds BACKUP by more than `misbalance` percent of their sum (a
 * threshold, so that balance is not chased one address at a time).
 */
export function balanceShare(free: number, backup: number, misbalance: number): number {
  const total = free + backup;
  if (total === 0 || free <= backup) return 0;
  if ((free - backup) * 100 <= misbalance * total) return 0;
  return Math.floor((free - backup) / 2);
}
