/**
 * One simulated `duet serve` process for the failover simulation: the real DhcpCore
 * (lib/server/dhcp.ts) and the real FailoverEndpoint (lib/failover/endpoint.ts) wired as
 * lib/cli/serve.ts wires them, over a lease store that survives the process, a simulated DHCP
 * shell (SimShell: the effect order of lib/server/shell.ts on simulated time) and a SimPeer
 * partner link. kill -9 loses everything in memory and every uncommitted write; SIGTERM goes
 * through FailoverEndpoint.shutdown() (STATE SHUTDOWN, draft-12 §9.14) as serve.ts does.
 */
import type { Config } from "../../../lib/config/types.ts";
import {
  type EndpointClock,
  FailoverEndpoint,
  type PartnerLink,
} from "../../../lib/failover/endpoint.ts";
import type { FailoverCommand, MachineOptions } from "../../../lib/failover/state.ts";
import type { Logger } from "../../../lib/log.ts";
import type { LinkSettings } from "../../../lib/peer/link.ts";
import type { Arrival } from "../../../lib/server/reply.ts";
import {
  DhcpCore,
  type DhcpEffect,
  type DhcpOutcome,
  type ReplyEffect,
} from "../../../lib/server/dhcp.ts";
import { MemoryLeaseStore } from "../../../lib/store/memory.ts";
import type { Lease } from "../../../lib/store/store.ts";
import { decodeDhcp, type DhcpMessage } from "../../../lib/wire/dhcp.ts";
import type { Scheduler, TimerHandle } from "./clock.ts";
import { type Network, SimPeer } from "./network.ts";

/**
 * A MemoryLeaseStore that knows what is durable: the rows as of the last commit (what survives
 * kill -9) and, per address, the write sequence number of its first uncommitted change.
 */
export class SimStore extends MemoryLeaseStore {
  /** Committed rows by address. */
  readonly durable = new Map<number, Lease>();
  /** address -> sequence number of its first write since the last commit. */
  readonly dirty = new Map<number, number>();
  /** Counts writes (put and delete). */
  seq = 0;

  override put(lease: Lease): void {
    super.put(lease);
    this.seq++;
    if (!this.dirty.has(lease.address)) this.dirty.set(lease.address, this.seq);
  }

  override delete(address: number): void {
    super.delete(address);
    this.seq++;
    if (!this.dirty.has(address)) this.dirty.set(address, this.seq);
  }

  override commit(): number {
    const n = super.commit();
    for (const address of this.dirty.keys()) {
      const l = super.get(address);
      if (l === undefined) this.durable.delete(address);
      else this.durable.set(address, l);
    }
    this.dirty.clear();
    return n;
  }

  override rollback(): void {
    super.rollback();
    this.dirty.clear();
  }
}

/** What a simulated server needs from the simulation. */
export interface SimHost {
  readonly sched: Scheduler;
  readonly net: Network;
  logger(role: "primary" | "secondary"): Logger;
  /** Something happened (for the microtask drain). */
  touch(): void;
  /**
   * A reply leaves `from`: a DHCPACK only after the commit that holds its lease. `written` is
   * the store's write sequence number of the lease write before it (0 for none); `madeAt` the
   * exact simulated time the reply was made (handledAt is its whole second).
   */
  reply(
    from: SimServer,
    effect: ReplyEffect,
    handledAt: number,
    written: number,
    madeAt: number,
  ): void;
  /** Called after the shell committed a batch, with the addresses written. */
  committed?(from: SimServer, addresses: readonly number[]): void;
  /** The server's disk was replaced: what it knew is gone. */
  storeReplaced?(from: SimServer): void;
}

/** The fixed parts of one server. */
export interface ServerSetup {
  role: "primary" | "secondary";
  config: Config;
  settings: LinkSettings;
  /** Group commit: the longest a write waits for its COMMIT. */
  commitDelayMs: number;
  /** Between DhcpCore.tick() calls (lib/server/shell.ts: 1 s). */
  tickMs: number;
  /** Between link ticks (lib/peer/tcp.ts: 500 ms). */
  linkTickMs: number;
  /** Between dials of an unreachable partner (lib/peer/tcp.ts: 5 s). */
  retrySeconds: number;
  machine?: Partial<MachineOptions>;
}

/** lib/server/shell.ts on simulated time: effects in order, replies after the commit. */
export class SimShell {
  dead = false;
  readonly #core: DhcpCore;
  readonly #store: SimStore;
  readonly #proc: Proc;
  #waiting: { effect: ReplyEffect; handledAt: number; written: number; madeAt: number }[] = [];
  #dirty: number[] = [];
  /** The last lease written to each address of #dirty (DhcpShell hands them to the endpoint). */
  #dirtyLeases = new Map<number, Lease>();
  #commitTimer: TimerHandle | undefined;

  constructor(proc: Proc, core: DhcpCore, store: SimStore) {
    this.#proc = proc;
    this.#core = core;
    this.#store = store;
  }

  /** One datagram: decoded, handled at the whole second, effects run. */
  handle(bytes: Uint8Array, arrival: Arrival): { msg: DhcpMessage; outcome: DhcpOutcome } {
    const msg = decodeDhcp(bytes);
    const now = Math.floor(this.#proc.sched.now);
    const outcome = this.#core.handle(msg, arrival, now);
    this.#run(outcome.effects, true, now, this.#proc.sched.now);
    return { msg, outcome };
  }

  #run(effects: readonly DhcpEffect[], send: boolean, handledAt: number, madeAt = 0): void {
    let written = 0;
    for (const e of effects) {
      if (e.kind === "persist") {
        this.#store.put(e.lease);
        written = this.#store.seq;
        this.#dirty.push(e.lease.address);
        this.#dirtyLeases.set(e.lease.address, e.lease);
      } else if (!send) {
        continue;
      } else if (e.afterCommit) {
        // An ACK waits until the lease it grants is durable (draft §3.1.3, RFC 2131 §4.3.1).
        this.#waiting.push({ effect: e, handledAt, written, madeAt });
      } else {
        this.#proc.host.reply(this.#proc.server, e, handledAt, written, madeAt);
      }
    }
    if (this.#store.pending > 0 && this.#commitTimer === undefined) {
      this.#commitTimer = this.#proc.schedule(() => {
        this.#commitTimer = undefined;
        this.flush();
      }, this.#proc.server.setup.commitDelayMs);
    }
  }

  /** DhcpShell.flush(): commit, send what waited for it, tell the endpoint what was written. */
  flush(): boolean {
    if (this.dead) return true;
    this.#proc.cancel(this.#commitTimer);
    this.#commitTimer = undefined;
    const waiting = this.#waiting;
    this.#waiting = [];
    if (this.#store.pending > 0) this.#store.commit();
    this.#proc.host.touch();
    const committed = this.#dirty;
    const committedLeases = this.#dirtyLeases;
    this.#dirty = [];
    this.#dirtyLeases = new Map();
    for (const w of waiting) {
      this.#proc.host.reply(this.#proc.server, w.effect, w.handledAt, w.written, w.madeAt);
    }
    if (committed.length > 0) {
      this.#proc.host.committed?.(this.#proc.server, committed);
      this.#proc.endpoint.leasesCommitted(committed, committedLeases);
    }
    return true;
  }

  commitNow(): Promise<void> {
    this.flush();
    return Promise.resolve();
  }

  /** DhcpShell.apply(): pool balancing's writes, committed at once. */
  apply(effects: DhcpEffect[]): void {
    if (this.dead || effects.length === 0) return;
    this.#run(effects, false, Math.floor(this.#proc.sched.now));
    this.flush();
  }

  /** DhcpShell.tick(): expiry. */
  tick(): void {
    if (this.dead) return;
    const effects = this.#core.tick(Math.floor(this.#proc.sched.now));
    if (effects.length > 0) {
      this.#run(effects, false, 0);
      this.flush();
    }
  }

  /** SIGTERM: commit what is pending; the sockets are closed, so nothing more is sent. */
  stop(): void {
    if (this.dead) return;
    this.#waiting = [];
    if (this.#store.pending > 0) this.flush();
    this.dead = true;
  }
}

/** One run of the server process, from start to crash or exit. */
export class Proc {
  readonly server: SimServer;
  readonly host: SimHost;
  readonly sched: Scheduler;
  alive = true;
  readonly endpoint: FailoverEndpoint;
  readonly core: DhcpCore;
  readonly shell: SimShell;
  peer: SimPeer | null = null;
  #tick: TimerHandle | undefined;
  readonly #timers = new Set<TimerHandle>();

  constructor(server: SimServer, host: SimHost) {
    this.server = server;
    this.host = host;
    this.sched = host.sched;
    const setup = server.setup;
    const logger = host.logger(server.role);
    const clock: EndpointClock = {
      now: () => this.sched.now,
      schedule: (fn, ms) => this.schedule(fn, ms),
      cancel: (h) => this.cancel(h as TimerHandle),
    };
    // The endpoint calls into the core and the shell, which are made after it (as serve.ts).
    const late: { core?: DhcpCore; shell?: SimShell } = {};
    const f = setup.config.failover;
    if (f === null) throw new TypeError("a simulated server needs a failover section");
    this.endpoint = new FailoverEndpoint({
      config: setup.config,
      settings: setup.settings,
      store: server.store,
      core: {
        resync: (a) => late.core?.resync(a),
        utilisation: () => late.core?.utilisation() ?? [],
        giveToBackup: (i, n, now) => late.core?.giveToBackup(i, n, now) ?? [],
      },
      shell: {
        flush: () => late.shell?.flush() ?? true,
        commitNow: () => late.shell?.commitNow() ?? Promise.resolve(),
        apply: (e) => late.shell?.apply(e),
      },
      logger,
      clock,
      ...(setup.machine ? { machine: setup.machine } : {}),
      link: (handlers): PartnerLink => {
        this.peer = new SimPeer({
          net: host.net,
          role: server.role,
          settings: setup.settings,
          handlers,
          logger,
          now: () => this.sched.now,
          schedule: (fn, ms) => this.schedule(fn, ms),
          cancel: (h) => this.cancel(h),
          retrySeconds: setup.retrySeconds,
          tickMs: setup.linkTickMs,
        });
        return this.peer;
      },
    });
    this.core = late.core = new DhcpCore(setup.config, server.store, {
      logger,
      failover: this.endpoint,
    });
    this.shell = late.shell = new SimShell(this, this.core, server.store);
    this.endpoint.start();
    this.#scheduleTick();
  }

  /** A timer of this process: it never fires once the process is gone. */
  schedule(fn: () => void, ms: number): TimerHandle {
    const h = this.sched.after(ms, () => {
      this.#timers.delete(h);
      if (this.alive) fn();
    });
    this.#timers.add(h);
    return h;
  }

  cancel(h: TimerHandle | undefined): void {
    if (h === undefined) return;
    this.sched.cancel(h);
    this.#timers.delete(h);
  }

  #scheduleTick(): void {
    this.#tick = this.schedule(() => {
      this.shell.tick();
      this.#scheduleTick();
    }, this.server.setup.tickMs);
  }

  /** Ends the process: nothing of it runs any more. */
  #end(): void {
    this.alive = false;
    for (const h of this.#timers) this.sched.cancel(h);
    this.#timers.clear();
    this.#tick = undefined;
  }

  /** kill -9. */
  kill(): void {
    this.peer?.kill();
    this.shell.dead = true;
    // Makes the dead object inert (its pending microtasks see it stopped); it sends nothing.
    this.endpoint.stop().catch(() => {});
    this.#end();
    this.server.store.rollback();
  }

  /** SIGTERM, as lib/cli/serve.ts: STATE SHUTDOWN, stop the link, commit, exit. */
  terminate(): void {
    this.endpoint.shutdown().catch(() => {});
    this.shell.stop();
    this.#end();
  }
}

/** A server: its store outlives its processes. */
export class SimServer {
  readonly role: "primary" | "secondary";
  readonly setup: ServerSetup;
  readonly host: SimHost;
  store = new SimStore();
  proc: Proc | null = null;
  starts = 0;

  constructor(host: SimHost, setup: ServerSetup) {
    this.host = host;
    this.role = setup.role;
    this.setup = setup;
  }

  get alive(): boolean {
    return this.proc !== null;
  }

  start(): void {
    if (this.proc !== null) throw new TypeError(`${this.role} is already running`);
    this.starts++;
    this.proc = new Proc(this, this.host);
  }

  crash(): void {
    this.proc?.kill();
    this.proc = null;
  }

  terminate(): void {
    this.proc?.terminate();
    this.proc = null;
  }

  /** A replaced disk: nothing of the old database is left (draft-12 §9.3.2 step 1). */
  replaceStore(): void {
    if (this.proc !== null) throw new TypeError("replaceStore() on a running server");
    this.store = new SimStore();
    this.host.storeReplaced?.(this);
  }

  command(command: FailoverCommand): string | null {
    return this.proc === null ? null : this.proc.endpoint.command(command).state;
  }

  /** A datagram arrives; null when the process is not running. */
  receive(
    bytes: Uint8Array,
    arrival: Arrival,
  ): { msg: DhcpMessage; outcome: DhcpOutcome } | null {
    const p = this.proc;
    if (p === null) return null;
    return p.shell.handle(bytes, arrival);
  }
}
