/**
 * A deterministic simulation of two failover endpoints (draft-ietf-dhc-failover-12 §7-§9):
 * each has a MemoryLeaseStore, a FailoverMachine (state.ts) and a BindingSync (sync.ts), wired
 * as lib/failover/endpoint.ts wires them, over a simulated in-order link with delays, cuts and
 * crashes, a simulated clock (integer seconds) and a seeded PRNG. Checks invariants as it goes
 * and throws SimError naming the seed and the step.
 */
import { maxLeaseTime } from "../../lib/failover/binding.ts";
import {
  type FailoverMachine,
  localState,
  type MachineOptions,
  type Persisted,
  resume,
  service,
  type StateAction,
  type StateInput,
  type TimerName,
  transition,
} from "../../lib/failover/state.ts";
import { BindingSync, type SyncEffect, type SyncInput } from "../../lib/failover/sync.ts";
import { MemoryLeaseStore } from "../../lib/store/memory.ts";
import { emptyLease, type Lease } from "../../lib/store/store.ts";
import {
  buildState,
  buildUpdreq,
  buildUpdreqall,
  decodeFailover,
  encodeFailover,
  type FailoverMessage,
  getBindingAcks,
  getBindingUpdates,
  getServerFlags,
  getServerState,
  getStartTimeOfState,
  MsgType,
  ServerState,
  serverStateName,
} from "../../lib/wire/failover.ts";

const S = ServerState;
export const T0 = 1_800_000_000;
/** 192.0.2.0/24 (documentation). */
const NET = 0xc0000200;
export const MCLT = 60;
const META_KEY = "failover.state";

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class SimError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SimError";
  }
}

export interface SimOptions {
  seed: number;
  /** Pool addresses 192.0.2.1..N; the first half FREE (primary), the rest BACKUP (secondary). */
  addresses?: number;
  clients?: number;
  /** Every server's max-unacked-bndupd (default random 1-4). */
  maxUnacked?: number;
  /** Keep a trace of what happened (printed on failure). */
  trace?: boolean;
}

type Role = "primary" | "secondary";

interface Transit {
  at: number;
  bytes: Uint8Array;
}

/** One endpoint: the store survives a crash; machine, sync, timers and queues do not. */
export class Server {
  readonly role: Role;
  store = new MemoryLeaseStore();
  readonly maxUnacked: number;
  alive = true;
  machine: FailoverMachine | null = null;
  sync: BindingSync | null = null;
  timers = new Map<TimerName, number>();
  #inputs: StateInput[] = [];
  #feeding = false;
  #xid = 1;
  readonly sim: Sim;

  constructor(sim: Sim, role: Role, maxUnacked: number) {
    this.sim = sim;
    this.role = role;
    this.maxUnacked = maxUnacked;
  }

  get partner(): Server {
    return this.role === "primary" ? this.sim.secondary : this.sim.primary;
  }

  get state(): number {
    return this.machine?.state ?? S.STARTUP;
  }

  inPool(address: number): boolean {
    return address > NET && address <= NET + this.sim.addressCount;
  }

  /** endpoint.ts start(): resume from the stored record, a fresh BindingSync. */
  start(now: number): void {
    this.alive = true;
    const text = this.store.getMeta(META_KEY);
    const stored = text === undefined ? null : JSON.parse(text) as Persisted;
    const options: MachineOptions = { role: this.role, mclt: MCLT, startupTimeout: 10 };
    this.sync = new BindingSync({
      role: this.role,
      view: this.store,
      inPool: (a) => this.inPool(a),
    });
    const { machine, actions } = resume(stored, now, options);
    this.machine = machine;
    this.#feeding = true;
    try {
      this.#runActions(actions);
    } finally {
      this.#feeding = false;
    }
    this.#drain();
  }

  /** A replaced disk (§9.3.2 step 1): the pool as first configured, no failover record. */
  replaceStore(): void {
    if (this.alive) throw new SimError("replaceStore() on a running server");
    this.store = this.sim.freshStore();
  }

  /** Loses everything in memory; keeps what the store committed. */
  crash(): void {
    this.store.rollback();
    this.alive = false;
    this.machine = null;
    this.sync = null;
    this.timers.clear();
    this.#inputs = [];
  }

  feed(input: StateInput): void {
    if (!this.alive) return;
    this.#inputs.push(input);
    this.#drain();
  }

  #drain(): void {
    if (this.#feeding || this.machine === null) return;
    this.#feeding = true;
    try {
      for (let i = this.#inputs.shift(); i !== undefined; i = this.#inputs.shift()) {
        const { machine, actions } = transition(this.machine as FailoverMachine, i);
        this.machine = machine;
        this.sim.note(`${this.role} ${i.kind} -> ${serverStateName(machine.state)}`);
        this.#runActions(actions);
      }
    } finally {
      this.#feeding = false;
    }
  }

  nextXid(): number {
    return this.#xid++;
  }

  #runActions(actions: readonly StateAction[]): void {
    const now = this.sim.now;
    for (const a of actions) {
      switch (a.kind) {
        case "persist":
          // §9.2: recorded (and committed) before STATE goes out.
          this.store.setMeta(META_KEY, JSON.stringify(a.persisted));
          this.store.commit();
          break;
        case "send-state":
          this.sim.send(this, buildState({ time: now, xid: this.nextXid() }, a.local));
          break;
        case "send-updreq":
        case "send-updreqall": {
          if (!this.sim.connected) break;
          const h = { time: now, xid: this.nextXid() };
          this.sim.send(this, a.kind === "send-updreq" ? buildUpdreq(h) : buildUpdreqall(h));
          break;
        }
        case "send-updates":
          this.runSync({ kind: "send-updates", now });
          break;
        case "send-poolreq":
          break;
        case "start-timer":
          this.timers.set(a.name, a.at);
          break;
        case "cancel-timer":
          this.timers.delete(a.name);
          break;
        case "log":
          break;
      }
    }
  }

  /** endpoint.ts #runSync with a synchronous commit. */
  runSync(input: SyncInput): void {
    const sync = this.sync;
    if (sync === null) return;
    const effects: SyncEffect[] = sync.step(input);
    this.sim.checkWindow(this);
    for (const e of effects) {
      switch (e.kind) {
        case "persist":
          this.store.put(e.lease);
          break;
        case "send":
          this.sim.send(this, e.message);
          break;
        case "send-after-commit":
          this.store.commit();
          if (e.connection === sync.connection) this.sim.send(this, e.message);
          break;
        case "event":
          this.feed({ kind: "upddone", now: this.sim.now });
          break;
        case "log":
          break;
      }
    }
    if (this.store.pending > 0) this.store.commit();
  }

  /** A committed local lease change: tell the engine (endpoint.ts leasesCommitted). */
  leaseWritten(lease: Lease): void {
    this.store.put(lease);
    this.store.commit();
    this.runSync({ kind: "lease-changed", now: this.sim.now, lease });
  }

  messageIn(message: FailoverMessage): void {
    const now = this.sim.now;
    if (message.type === MsgType.STATE) {
      const serverState = getServerState(message);
      if (serverState === undefined) throw new SimError("STATE without server-state");
      this.feed({
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
    this.runSync({ kind: "message", now, message });
  }
}

/** What a client was told by a DHCPACK: the address is its until `until`. */
interface Grant {
  client: number;
  address: number;
  until: number;
  by: Role;
}

export class Sim {
  readonly seed: number;
  readonly rand: () => number;
  readonly addressCount: number;
  readonly clientCount: number;
  readonly primary: Server;
  readonly secondary: Server;
  now = T0;
  step = 0;
  linkCut = false;
  connected = false;
  connection = 0;
  /** Messages on the wire, per sender. */
  #wire = new Map<Role, Transit[]>([["primary", []], ["secondary", []]]);
  /** BNDUPD xids sent by each side on this connection and not yet acked back to it. */
  #unacked = new Map<Role, Set<number>>([["primary", new Set()], ["secondary", new Set()]]);
  grants = new Map<number, Grant>();
  trace: string[] = [];
  readonly #keepTrace: boolean;
  pairsSeen = new Set<string>();
  stats = { messages: 0, allocations: 0, renewals: 0, releases: 0, crashes: 0, cuts: 0 };

  constructor(options: SimOptions) {
    this.seed = options.seed;
    this.rand = prng(options.seed);
    this.addressCount = options.addresses ?? 16;
    this.clientCount = options.clients ?? 10;
    this.#keepTrace = options.trace ?? true;
    this.primary = new Server(this, "primary", options.maxUnacked ?? 1 + this.int(4));
    this.secondary = new Server(this, "secondary", options.maxUnacked ?? 1 + this.int(4));
    this.primary.store = this.freshStore();
    this.secondary.store = this.freshStore();
  }

  /** The pools as pool balancing (§5.4) would leave them: first half FREE, the rest BACKUP. */
  freshStore(): MemoryLeaseStore {
    const store = new MemoryLeaseStore();
    for (let i = 1; i <= this.addressCount; i++) {
      store.put(emptyLease(NET + i, i <= this.addressCount / 2 ? "free" : "backup"));
    }
    store.commit();
    return store;
  }

  int(n: number): number {
    return Math.floor(this.rand() * n);
  }

  note(text: string): void {
    if (this.#keepTrace) {
      this.trace.push(`[${this.step} t+${this.now - T0}] ${text}`);
      if (this.trace.length > 400) this.trace.shift();
    }
  }

  fail(message: string): never {
    throw new SimError(
      `seed ${this.seed} step ${this.step} t+${this.now - T0}: ${message}\n` +
        `  primary ${serverStateName(this.primary.state)} secondary ${
          serverStateName(this.secondary.state)
        } connected=${this.connected}\n` + this.trace.slice(-60).join("\n"),
    );
  }

  // ---- link ---------------------------------------------------------------------------------

  /** Sends through the codec; a BNDACK or BNDUPD is checked against the sender's store first. */
  send(from: Server, message: FailoverMessage): void {
    if (!this.connected) return;
    this.checkSend(from, message);
    const bytes = encodeFailover(message);
    const q = this.#wire.get(from.role) as Transit[];
    const last = q.length > 0 ? (q[q.length - 1] as Transit).at : this.now;
    q.push({ at: Math.max(last, this.now + this.int(3)), bytes });
    this.stats.messages++;
    this.note(`${from.role} sends ${message.type} xid ${message.xid}`);
  }

  /** Effect order: nothing acknowledged or promised is only in an uncommitted batch. */
  checkSend(from: Server, message: FailoverMessage): void {
    if (message.type === MsgType.BNDACK) {
      if (from.store.pending !== 0) this.fail(`${from.role} sent BNDACK before commit`);
      for (const a of getBindingAcks(message)) {
        if (a.rejectReason !== undefined) continue;
        if (from.store.get(a.assignedIpAddress) === undefined) {
          this.fail(`${from.role} acked ${a.assignedIpAddress}: no row`);
        }
      }
    }
    if (message.type === MsgType.BNDUPD) {
      const set = this.#unacked.get(from.role) as Set<number>;
      set.add(message.xid);
      if (set.size > from.partner.maxUnacked) {
        this.fail(
          `${from.role} has ${set.size} BNDUPDs unacked, partner's window is ${from.partner.maxUnacked}`,
        );
      }
      for (const u of getBindingUpdates(message)) {
        if (u === undefined) this.fail(`${from.role} sent an undecodable binding update`);
        const row = from.store.get(u.assignedIpAddress);
        const pet = u.potentialExpirationTime ?? 0;
        // §7.1.1: the potential-expiration-time sent is in stable storage first.
        if (row === undefined || row.tstp < pet) {
          this.fail(`${from.role} sent PET ${pet} for ${u.assignedIpAddress} before storing it`);
        }
      }
    }
  }

  checkWindow(s: Server): void {
    const st = s.sync?.status;
    if (st !== undefined && st.window > 0 && st.inFlight > st.window) {
      this.fail(`${s.role} has ${st.inFlight} in flight, window ${st.window}`);
    }
  }

  /** Establishes the connection (CONNECT/CONNECTACK + first STATEs, §8.3) when it can. */
  tryConnect(): void {
    if (this.connected || this.linkCut || !this.primary.alive || !this.secondary.alive) return;
    this.connected = true;
    this.connection++;
    this.note(`connect #${this.connection}`);
    const p = this.primary;
    const s = this.secondary;
    // Each side's first STATE as sent at connect time.
    const pInfo = localState(p.machine as FailoverMachine);
    const sInfo = localState(s.machine as FailoverMachine);
    for (const [me, other, info] of [[p, s, sInfo], [s, p, pInfo]] as const) {
      me.runSync({
        kind: "link-up",
        now: this.now,
        maxUnackedBndupd: other.maxUnacked,
        nextXid: () => me.nextXid(),
      });
      me.feed({
        kind: "comm-up",
        now: this.now,
        partner: { ...info },
        mclt: me.role === "secondary" ? MCLT : null,
      });
    }
  }

  disconnect(reason: string): void {
    if (!this.connected) return;
    this.connected = false;
    this.note(`disconnect: ${reason}`);
    for (const q of this.#wire.values()) q.length = 0;
    for (const u of this.#unacked.values()) u.clear();
    for (const s of [this.primary, this.secondary]) {
      if (!s.alive) continue;
      s.runSync({ kind: "link-down", now: this.now });
      s.feed({ kind: "comm-down", now: this.now, reason });
    }
  }

  /** Delivers the next message or fires the next timer due at or before `until`. */
  #nextEvent(until: number): boolean {
    let best: { at: number; run: () => void } | null = null;
    for (const s of [this.primary, this.secondary]) {
      const q = this.#wire.get(s.role) as Transit[];
      const head = q[0];
      if (head !== undefined && head.at <= until && (best === null || head.at < best.at)) {
        best = { at: head.at, run: () => this.#deliver(s) };
      }
      if (!s.alive) continue;
      for (const [name, at] of s.timers) {
        if (at <= until && (best === null || at < best.at)) {
          best = {
            at,
            run: () => {
              if (s.timers.get(name) !== at) return;
              s.timers.delete(name);
              s.feed({ kind: "timer", now: Math.max(at, this.now), name });
            },
          };
        }
      }
    }
    if (best === null) return false;
    this.now = Math.max(this.now, best.at);
    best.run();
    this.checkAll();
    return true;
  }

  #deliver(from: Server): void {
    const q = this.#wire.get(from.role) as Transit[];
    const t = q.shift() as Transit;
    const message = decodeFailover(t.bytes);
    const to = from.partner;
    if (message.type === MsgType.BNDACK) {
      (this.#unacked.get(to.role) as Set<number>).delete(message.xid);
    }
    to.messageIn(message);
  }

  /** Runs events until `until`, then sets the clock to it. */
  advance(until: number): void {
    for (let guard = 0; guard < 10_000 && this.#nextEvent(until); guard++) {
      if (guard === 9_999) this.fail("event storm: 10000 events in one advance");
    }
    this.now = Math.max(this.now, until);
  }

  get wireEmpty(): boolean {
    return [...this.#wire.values()].every((q) => q.length === 0);
  }

  // ---- clients ------------------------------------------------------------------------------

  mac(client: number): Uint8Array {
    return new Uint8Array([2, 0, 0, 0, client >> 8, client & 0xff]);
  }

  #rowClient(row: Lease): number | null {
    if (row.hwAddress.length !== 6) return null;
    return ((row.hwAddress[4] as number) << 8) | (row.hwAddress[5] as number);
  }

  /** The two addresses a client may be given by `s` now, per service() (§9, §5.4). */
  allocate(s: Server, client: number): boolean {
    const m = s.machine;
    if (m === null) return false;
    const svc = service(m.state, s.role, {
      now: this.now,
      startTimeOfState: m.startTimeOfState,
      mclt: m.mclt,
    });
    if (!svc.allocate || svc.ownPool === null) return false;
    const own = svc.ownPool === "FREE" ? "free" : "backup";
    const other = own === "free" ? "backup" : "free";
    const candidates = [...s.store.iterate()].filter((l) =>
      l.state === own || (svc.partnerPool && l.state === other)
    );
    if (candidates.length === 0) return false;
    const row = candidates[this.int(candidates.length)] as Lease;
    const desired = 30 + this.int(270);
    const t = maxLeaseTime({ now: this.now, mclt: m.mclt, desired, lease: row });
    const lease: Lease = {
      ...row,
      state: "active",
      htype: 1,
      hwAddress: this.mac(client),
      clientId: null,
      starts: this.now,
      cltt: this.now,
      ends: t.leaseExpiration,
    };
    s.leaseWritten(lease);
    this.grant(s, client, row.address, t.leaseExpiration);
    this.stats.allocations++;
    return true;
  }

  renew(s: Server, client: number): boolean {
    const m = s.machine;
    const g = this.grants.get(client);
    if (m === null || g === undefined || g.until <= this.now) return false;
    const svc = service(m.state, s.role, {
      now: this.now,
      startTimeOfState: m.startTimeOfState,
      mclt: m.mclt,
    });
    if (!svc.renewals) return false;
    const row = s.store.get(g.address);
    if (row === undefined || row.state !== "active" || this.#rowClient(row) !== client) {
      return false; // DHCPNAK: this server does not know the binding
    }
    const desired = 30 + this.int(270);
    const t = maxLeaseTime({ now: this.now, mclt: m.mclt, desired, lease: row });
    if (t.leaseExpiration <= row.ends) return false; // nothing to extend
    s.leaseWritten({ ...row, cltt: this.now, ends: t.leaseExpiration });
    this.grant(s, client, g.address, t.leaseExpiration);
    this.stats.renewals++;
    return true;
  }

  release(s: Server, client: number): boolean {
    const m = s.machine;
    const g = this.grants.get(client);
    if (m === null || g === undefined || g.until <= this.now) return false;
    const svc = service(m.state, s.role, {
      now: this.now,
      startTimeOfState: m.startTimeOfState,
      mclt: m.mclt,
    });
    // The client gives the address up whatever the server does with the DHCPRELEASE.
    this.grants.delete(client);
    if (!svc.renewals) return true;
    const row = s.store.get(g.address);
    if (row === undefined || row.state !== "active" || this.#rowClient(row) !== client) return true;
    s.leaseWritten({ ...row, state: "released", starts: this.now, cltt: this.now });
    this.stats.releases++;
    return true;
  }

  /** Housekeeping: ACTIVE leases past their end become EXPIRED (§5.11) on a serving server. */
  expire(s: Server): void {
    const m = s.machine;
    if (m === null) return;
    const svc = service(m.state, s.role, {
      now: this.now,
      startTimeOfState: m.startTimeOfState,
      mclt: m.mclt,
    });
    if (svc.answer === "none") return;
    for (const l of [...s.store.iterate({ state: "active" })]) {
      // Strictly after `ends`, as the partner's time(2) test (§7.1.3) counts it; see the report
      // on expiring at now == ends.
      if (l.ends < this.now) s.leaseWritten({ ...l, state: "expired", starts: this.now });
    }
  }

  grant(s: Server, client: number, address: number, until: number): void {
    // Safety (§5.2.1, §5.4, §9): no address is ever given to two clients at the same time.
    for (const [other, g] of this.grants) {
      if (other !== client && g.address === address && g.until > this.now) {
        this.fail(
          `address ${address - NET} given to client ${client} by ${s.role} while client ${other} ` +
            `holds it until t+${g.until - T0} (from ${g.by})`,
        );
      }
    }
    this.grants.set(client, { client, address, until, by: s.role });
    this.note(`${s.role} grants .${address - NET} to c${client} until t+${until - T0}`);
  }

  // ---- invariants ---------------------------------------------------------------------------

  /** Checked after every event. */
  checkAll(): void {
    for (const s of [this.primary, this.secondary]) {
      this.checkWindow(s);
      if (s.alive && s.store.pending !== 0) this.fail(`${s.role} left an uncommitted batch`);
      const m = s.machine;
      if (m === null) continue;
      // §9.12.1: a secondary never enters CONFLICT-DONE.
      if (s.role === "secondary" && m.state === S.CONFLICT_DONE) {
        this.fail("secondary in CONFLICT-DONE");
      }
    }
    const p = this.primary.machine;
    const s = this.secondary.machine;
    if (p === null || s === null || !this.connected || !this.wireEmpty) return;
    if (!p.communicating || !s.communicating) return;
    // Quiet link: each side knows the other's state exactly ...
    for (const [me, other] of [[p, s], [s, p]] as const) {
      const real = localState(other);
      if (
        me.partner === null || me.partner.serverState !== real.serverState ||
        me.partner.serverFlags !== real.serverFlags
      ) {
        this.fail(
          `${me.role} thinks its partner is ${serverStateName(me.partner?.serverState ?? 0)}, ` +
            `it is ${serverStateName(real.serverState)}`,
        );
      }
    }
    // ... and no two servers that both answer everything while they talk (§9: only one may).
    const pairKey = `${serverStateName(p.state)}/${serverStateName(s.state)}`;
    this.pairsSeen.add(pairKey);
    const all = (m: FailoverMachine) =>
      service(m.state, m.role, { now: this.now, startTimeOfState: m.startTimeOfState, mclt: 1 })
        .answer === "all";
    if (all(p) && all(s)) this.fail(`both serve everything while communicating: ${pairKey}`);
    // A side in PARTNER-DOWN while its partner talks from NORMAL or COMM-INT is stuck (§9.4.3).
    if (
      (p.state === S.PARTNER_DOWN &&
        (s.state === S.NORMAL || s.state === S.COMMUNICATIONS_INTERRUPTED)) ||
      (s.state === S.PARTNER_DOWN &&
        (p.state === S.NORMAL || p.state === S.COMMUNICATIONS_INTERRUPTED))
    ) {
      this.fail(`disallowed pair while communicating: ${pairKey}`);
    }
  }

  /** After quiescence: both NORMAL, and the stores agree (§7.1.3, §5.11). */
  checkConverged(): void {
    const p = this.primary;
    const s = this.secondary;
    if (p.state !== S.NORMAL || s.state !== S.NORMAL) {
      this.fail(
        `not NORMAL after quiescence: ${serverStateName(p.state)}/${serverStateName(s.state)}`,
      );
    }
    for (const s2 of [p, s]) {
      const st = s2.sync?.status;
      if (st === undefined || st.queued !== 0 || st.inFlight !== 0 || st.pass !== "none") {
        this.fail(`${s2.role} sync not idle: ${JSON.stringify(st)}`);
      }
    }
    for (let i = 1; i <= this.addressCount; i++) {
      const a = p.store.get(NET + i);
      const b = s.store.get(NET + i);
      if (a === undefined || b === undefined) this.fail(`.${i} missing`);
      const show = (l: Lease) =>
        `${l.state} c${this.#rowClient(l)} ends t+${l.ends - T0} cltt t+${l.cltt - T0}`;
      const same = a.state === b.state &&
        (a.state !== "active" || (this.#rowClient(a) === this.#rowClient(b) && a.ends === b.ends));
      if (!same) this.fail(`stores disagree on .${i}: primary ${show(a)}, secondary ${show(b)}`);
    }
  }

  // ---- schedules ----------------------------------------------------------------------------

  start(): void {
    this.primary.start(this.now);
    this.secondary.start(this.now);
    this.tryConnect();
    this.checkAll();
  }

  /** One random step: time passes, then one thing happens. */
  randomStep(): void {
    this.step++;
    this.advance(this.now + 1 + this.int(15));
    const r = this.rand();
    const side = this.rand() < 0.5 ? this.primary : this.secondary;
    const client = this.int(this.clientCount);
    if (r < 0.35) {
      if (side.alive) this.allocate(side, client);
    } else if (r < 0.55) {
      if (side.alive) this.renew(side, client);
    } else if (r < 0.65) {
      if (side.alive) this.release(side, client);
    } else if (r < 0.72) {
      if (this.linkCut) {
        this.linkCut = false;
        this.note("link restored");
      } else {
        this.linkCut = true;
        this.stats.cuts++;
        this.disconnect("link cut");
      }
    } else if (r < 0.76) {
      if (side.alive) this.crash(side);
    } else if (r < 0.84) {
      this.restartIfSafe(side);
    } else if (r < 0.86) {
      // Operator partner-down only when the partner really is down (§9.4: the operator's duty).
      if (side.alive && !side.partner.alive) {
        side.feed({ kind: "command", now: this.now, command: "partner-down" });
      }
    }
    for (const x of [this.primary, this.secondary]) if (x.alive) this.expire(x);
    this.tryConnect();
    this.checkAll();
  }

  crash(s: Server): void {
    this.note(`${s.role} crashes`);
    this.stats.crashes++;
    this.disconnect(`${s.role} crashed`);
    s.crash();
  }

  /**
   * Restarts a crashed server. While its partner is in PARTNER-DOWN it comes back only with
   * the link up, so that it learns of it before it serves (§9.3.2 step 5).
   */
  restartIfSafe(s: Server): void {
    if (s.alive) return;
    const other = s.partner;
    if (other.alive && other.state === S.PARTNER_DOWN && this.linkCut) return;
    if (!other.alive && other.store.getMeta(META_KEY)?.includes(`"state":${S.PARTNER_DOWN}`)) {
      // Both down and the other one thinks we are down: wait until it is back.
      return;
    }
    this.note(`${s.role} restarts`);
    s.start(this.now);
    this.tryConnect();
  }

  /** No new changes: link up, both running, time passes until nothing is left to do. */
  quiesce(): void {
    this.step++;
    this.note("quiesce");
    if (this.linkCut) this.linkCut = false;
    for (const s of [this.primary, this.secondary]) {
      if (!s.alive) {
        s.start(this.now);
        this.tryConnect();
      }
    }
    this.tryConnect();
    // Housekeeping still expires leases: it settles updates that crossed on the wire (each side
    // accepting the other's, §7.1.3) into one answer.
    for (let i = 0; i < 40; i++) {
      this.advance(this.now + 10 + MCLT);
      for (const s of [this.primary, this.secondary]) this.expire(s);
    }
    this.checkAll();
  }
}
