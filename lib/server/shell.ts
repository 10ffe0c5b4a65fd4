/**
 * The DHCP I/O shell: reads datagrams from a transport, runs the pure core, writes leases
 * in group-committed batches and sends each DHCPACK only after the COMMIT that made its
 * lease durable (DESIGN.md, "One DHCPREQUEST, end to end").
 *
 * While the database refuses writes (disk full, read-only file system, I/O errors) it sends
 * no DHCPOFFER and no DHCPACK, keeps answering what needs no storage (DHCPINFORM, DHCPNAK),
 * probes the database once a tick and resumes on its own when a write and its sync succeed.
 * It keeps the core on the protocol clock of lib/server/clock.ts and applies wall-clock steps
 * to the stored lease times.
 */
import type { Logger } from "../log.ts";
import type { Lease, LeaseStore } from "../store/store.ts";
import { StoreError, WireError } from "../errors.ts";
import { decodeDhcp, DhcpType, dhcpTypeName, encodeDhcp, getMessageType } from "../wire/dhcp.ts";
import { formatIpv4 } from "../wire/ip.ts";
import { type ClockSources, ProtocolClock, shiftLease } from "./clock.ts";
import type { DhcpCore, DhcpEffect, ReplyEffect } from "./dhcp.ts";
import { MAX_REQUEST_SIZE } from "./guard.ts";
import type { Received, Transport } from "./transport.ts";

/**
 * The system's clocks: Date.now() may step, performance.now() does not. Date.now() drops the
 * fraction of its millisecond; adding 1 ms keeps the protocol clock, anchored on one reading,
 * from running up to 1 ms behind the real time, so a request that arrives in the first
 * millisecond of a second is not dated in the second before (the lease would end 1 s early).
 */
export const SYSTEM_CLOCK_SOURCES: ClockSources = {
  wallMs: () => Date.now() + 1,
  monoMs: () => performance.now(),
};

/** Seconds between "still refuses writes" reminders while the database keeps failing. */
const STORE_REMINDER_SECONDS = 60;

/** Options for DhcpShell. */
export interface ShellOptions {
  core: DhcpCore;
  store: LeaseStore;
  transports: Transport[];
  logger: Logger;
  /** Longest a lease waits for its COMMIT, in milliseconds. */
  commitDelayMs: number;
  /** Most leases in one transaction. */
  commitBatch: number;
  /**
   * The protocol clock (lib/server/clock.ts); the system clock by default. When the shell
   * applies a clock step, the core MUST read the leases through a CoreLeaseView of the same
   * clock, so that it sees the times it wrote.
   */
  clock?: ProtocolClock;
  /** Seconds between expiry ticks. */
  tickSeconds?: number;
  /** Monotonic milliseconds (performance.now()); injectable for tests of the sync spacing. */
  clockMs?: () => number;
  /**
   * Called after each successful COMMIT with the addresses the DHCP core wrote in it and the
   * last lease written to each, as stored (the failover endpoint sends them to the partner,
   * draft-12 §7.1.1).
   */
  onCommitted?: (addresses: number[], leases: ReadonlyMap<number, Lease>) => void;
  /**
   * Called after each successful COMMIT with every lease the DHCP core wrote in it, in order;
   * each carries the row it replaced when `trackPrevious` is set (lease-event hooks).
   */
  onLeasesCommitted?: (changes: LeaseChange[]) => void;
  /**
   * Called once a clock step of `delta` seconds has been applied to the stored lease times
   * (the failover endpoint moves its own times with them: FailoverEndpoint.shiftTimes).
   */
  onClockStep?: (delta: number) => void;
}

/** One lease the core wrote, and the row it replaced (read only while trackPrevious is set). */
export interface LeaseChange {
  before: Lease | undefined;
  after: Lease;
}

/** Shell-level counters (the core counts per message type). */
export interface ShellCounters {
  malformed: number;
  sendFailed: number;
  commits: number;
  commitFailures: number;
  leasesCommitted: number;
  /** Commit latency histogram: count of commits at or below each bound in ms. */
  commitLatencyMs: Map<number, number>;
  /** Sum of every commit latency counted in commitLatencyMs, in ms (the histogram's _sum). */
  commitLatencySumMs: number;
  /**
   * Replies the core decided on but the shell did not send because the database could not
   * record their lease, by message type (DHCPOFFER, DHCPACK). The core's `sent` counters do
   * not include them.
   */
  withheld: Record<string, number>;
}

/** How the lease database is doing, for status and metrics. */
export interface StoreHealth {
  /** False from a failed write, commit or sync until a commit and its sync succeed again. */
  writable: boolean;
  /** Epoch seconds (stored timeline) of the first failure of the current outage, or null. */
  failingSince: number | null;
  /** The error of the latest failure (kept after recovery), or null. */
  lastError: string | null;
}

/** Clock steps seen by the shell, for status and metrics. */
export interface ClockHealth {
  /** Steps of the wall clock applied to the stored times since start. */
  steps: number;
  /** The last one in seconds (positive: forward), or null. */
  lastStepSeconds: number | null;
}

const LATENCY_BOUNDS = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, Infinity];

/**
 * Under sustained load a sync starts at most this often (ms): each fdatasync costs the CPU a
 * hand-off to Deno's I/O thread and the kernel's flush (about 0.3 ms on the bench VM), so a
 * busy server waits for a few more commits to share it. A sync after a quiet spell starts at
 * once. 8 rather than 4: a failover pair at 1,000 exchanges/s spent 361 instead of 457 µs of
 * CPU per exchange (with the UDP shell's 3 ms coalescing), for about 4 ms more per ACK.
 */
export const SYNC_INTERVAL_MS = 8;

/** A DHCP reply waiting for durability, or a caller of commitNow() (a failover BNDACK). */
type Pending =
  | { kind: "reply"; effect: ReplyEffect; transport: Transport }
  | { kind: "durable"; resolve: () => void; reject: (e: StoreError) => void };

/** Runs a DHCP server until stop() is called. */
export class DhcpShell {
  readonly counters: ShellCounters = {
    malformed: 0,
    sendFailed: 0,
    commits: 0,
    commitFailures: 0,
    leasesCommitted: 0,
    commitLatencyMs: new Map(LATENCY_BOUNDS.map((b) => [b, 0])),
    commitLatencySumMs: 0,
    withheld: {},
  };
  #o: ShellOptions;
  #core: DhcpCore;
  #clock: ProtocolClock;
  /** ACKs whose leases are not committed yet. */
  #waiting: Pending[] = [];
  /** ACKs whose leases are committed but not yet synced to disk. */
  #unsynced: Pending[] = [];
  #syncing: Promise<void> | null = null;
  /** Start a sync even with no ACK waiting: a commit made while failing proves recovery. */
  #syncWanted = false;
  /** performance.now() before which no sync starts (SYNC_INTERVAL_MS after the last one). */
  #nextSyncAt = 0;
  #dirty: number[] = [];
  /** The last lease written to each address of #dirty, as stored. */
  #dirtyLeases = new Map<number, Lease>();
  #changes: LeaseChange[] = [];
  /** Batches the store discarded (takeDiscarded()) that no flush has answered for yet. */
  #lost: { batches: number; addresses: number[] } = { batches: 0, addresses: [] };
  /** One encode buffer for every reply: transports copy what they send. */
  #scratch = new Uint8Array(1500);
  #commitTimer: ReturnType<typeof setTimeout> | undefined;
  #tickTimer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void>[] = [];
  #stopped = false;
  #failing = false;
  /** Bumped by every failure: a sync proves recovery only if none happened since it began. */
  #failures = 0;
  #failingSince: number | null = null;
  #lastError: string | null = null;
  #outage = { failures: 0, withheld: 0, startedMono: 0, reminderAt: 0 };
  /** The step last logged, so that a step whose move keeps failing is logged once. */
  #stepLogged: number | null = null;
  /**
   * Read each lease's previous row before writing it, for onLeasesCommitted (one extra read
   * per write, so only while a lease-event hook is configured).
   */
  trackPrevious = false;

  constructor(options: ShellOptions) {
    this.#o = { ...options };
    this.#core = options.core;
    this.#clock = options.clock ?? new ProtocolClock(SYSTEM_CLOCK_SOURCES);
  }

  /** The DHCP core packets go to. */
  get core(): DhcpCore {
    return this.#core;
  }

  /**
   * Swaps the DHCP core between two packets (`duet reload`): the next packet and tick go to
   * `core`. Writes and replies the old core already produced are committed and sent as usual.
   */
  set core(core: DhcpCore) {
    this.#core = core;
  }

  /** Changes the group-commit settings (`commit:`); the next batch uses them. */
  setCommit(commitDelayMs: number, commitBatch: number): void {
    this.#o.commitDelayMs = commitDelayMs;
    this.#o.commitBatch = commitBatch;
  }

  /** True while the database refuses writes; OFFERs and ACKs are withheld meanwhile. */
  get storeFailing(): boolean {
    return this.#failing;
  }

  /** The database's health (GET /status, metrics). */
  get storeHealth(): StoreHealth {
    return {
      writable: !this.#failing,
      failingSince: this.#failingSince,
      lastError: this.#lastError,
    };
  }

  /** Clock steps applied so far (GET /status, metrics). */
  get clockHealth(): ClockHealth {
    const { count, last } = this.#clock.steps;
    return { steps: count, lastStepSeconds: last };
  }

  /** The protocol clock the shell runs the core on. */
  get clock(): ProtocolClock {
    return this.#clock;
  }

  /** Starts every transport's receive loop and the expiry timer. */
  start(): void {
    const tickMs = (this.#o.tickSeconds ?? 1) * 1000;
    this.#tickTimer = setInterval(() => this.tick(), tickMs);
    for (const t of this.#o.transports) {
      this.#running.push(
        t.run((p) => this.#onPacket(p, t), () => this.#onBurstEnd()),
      );
    }
  }

  /** Resolves when every transport has stopped. */
  async done(): Promise<void> {
    await Promise.all(this.#running);
  }

  /** Stops receiving, commits what is pending and sends the replies that waited for it. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#tickTimer !== undefined) clearInterval(this.#tickTimer);
    for (const t of this.#o.transports) t.close();
    await Promise.all(this.#running);
    this.flush();
    while (this.#syncing) await this.#syncing;
  }

  #onPacket(p: Received, transport: Transport): void {
    if (p.data.length > MAX_REQUEST_SIZE) {
      // Both transports accept the same: the FFI one cannot receive more (guard.ts).
      this.#core.countDropped("oversized");
      this.#o.logger.debug("Dropped oversized DHCP packet", {
        from: `${formatIpv4(p.srcAddress)}:${p.srcPort}`,
        bytes: p.data.length,
      });
      return;
    }
    let msg;
    try {
      msg = decodeDhcp(p.data);
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      this.counters.malformed++;
      this.#o.logger.debug("Dropped malformed DHCP packet", {
        from: `${formatIpv4(p.srcAddress)}:${p.srcPort}`,
        error: e.message,
      });
      return;
    }
    const outcome = this.#core.handle(msg, p, Math.floor(this.#clock.now()));
    this.#run(outcome.effects, transport);
    if (this.#o.logger.debugEnabled) {
      this.#o.logger.debug("Handled DHCP request", {
        type: dhcpTypeName(getMessageType(msg)),
        from: `${formatIpv4(p.srcAddress)}:${p.srcPort}`,
        ifname: p.ifname ?? undefined,
        dropped: outcome.dropped,
      });
    }
  }

  #run(effects: readonly DhcpEffect[], transport: Transport | null): void {
    let writeFailed = false;
    for (const e of effects) {
      if (e.kind === "persist") {
        try {
          const before = this.trackPrevious ? this.#o.store.get(e.lease.address) : undefined;
          const stored = shiftLease(e.lease, this.#clock.offset);
          this.#o.store.put(stored);
          this.#dirty.push(e.lease.address);
          this.#dirtyLeases.set(e.lease.address, stored);
          if (this.#o.onLeasesCommitted) this.#changes.push({ before, after: e.lease });
        } catch (err) {
          if (!(err instanceof StoreError)) throw err;
          // A full or broken database: the core's view of this address is re-read from the
          // store, and no ACK for it goes out (nothing unrecorded is acknowledged).
          this.#storeFailed("Cannot write a lease; withholding its acknowledgement", err);
          this.#core.resync([e.lease.address]);
          writeFailed = true;
        }
      } else if (!transport) {
        continue;
      } else if (e.afterCommit) {
        // An ACK waits until the lease it grants is durable (draft §3.1.3, RFC 2131 §4.3.1).
        if (writeFailed) this.#withhold(e);
        else this.#waiting.push({ kind: "reply", effect: e, transport });
      } else if (this.#failing && getMessageType(e.message) === DhcpType.DHCPOFFER) {
        // An OFFER that cannot be followed by an ACK only delays the client, which may have
        // another server to ask (RFC 2131 §3.1: a server MAY offer); it retransmits its
        // DISCOVER and gets an OFFER once the database accepts writes again.
        this.#withhold(e);
      } else {
        this.#send(e, transport);
      }
    }
    if (writeFailed) {
      // The store discarded the whole batch: what waited for it is dropped now.
      this.flush();
      return;
    }
    this.#armCommit(false);
  }

  /**
   * Group commit: commits now when a batch is full, else within commitDelayMs (and at the end
   * of the current burst of packets). `waiting` also arms the timer when nothing is pending,
   * for a commitNow() caller that needs an earlier commit's sync.
   */
  #armCommit(waiting: boolean): void {
    if (this.#o.store.pending >= this.#o.commitBatch) this.flush();
    else if ((this.#o.store.pending > 0 || waiting) && this.#commitTimer === undefined) {
      this.#commitTimer = setTimeout(() => {
        this.#commitTimer = undefined;
        this.#flushWhenIdle();
      }, this.#o.commitDelayMs);
    }
  }

  #onBurstEnd(): void {
    if (this.#o.store.pending > 0 || this.#waiting.length > 0) this.#flushWhenIdle();
  }

  /**
   * Commits now unless a sync is running: what is committed meanwhile would wait for the
   * next sync anyway, so the sync's completion commits everything pending at once (fewer
   * transactions, no extra latency).
   */
  #flushWhenIdle(): void {
    if (this.#syncing === null) this.flush();
  }

  #send(e: ReplyEffect, transport: Transport): void {
    const bytes = encodeDhcp(e.message, { maxSize: e.maxSize, into: this.#scratch });
    if (!transport.send(bytes, e.to)) this.counters.sendFailed++;
  }

  /**
   * Commits the pending leases, then has them synced to disk off the event loop; the ACKs
   * that waited for them are sent once the sync that covers them has finished. Returns false
   * when the commit failed (and was rolled back), or when a batch since the last flush was
   * discarded by a failed write (the shell's own or the failover endpoint's): then everything
   * pending goes too, because nobody can tell which waiting reply needed the lost writes.
   */
  flush(): boolean {
    if (this.#commitTimer !== undefined) {
      clearTimeout(this.#commitTimer);
      this.#commitTimer = undefined;
    }
    const store = this.#o.store;
    const waiting = this.#waiting;
    this.#waiting = [];
    this.#collectDiscarded();
    if (this.#lost.batches > 0) {
      // The failed write was logged where it happened.
      this.#discardPending(waiting);
      return false;
    }
    if (store.pending > 0) {
      const started = performance.now();
      try {
        const n = store.commit();
        this.counters.commits++;
        this.counters.leasesCommitted += n;
        this.#observeLatency(performance.now() - started);
      } catch (e) {
        if (!(e instanceof StoreError)) throw e;
        this.#storeFailed("Cannot commit leases; withholding their acknowledgements", e);
        // Nothing acknowledged may be lost: the replies that needed this commit are dropped.
        this.#discardPending(waiting);
        return false;
      }
      // A commit while failing proves nothing until its sync succeeds too.
      if (this.#failing) this.#syncWanted = true;
    }
    const committed = this.#dirty;
    const committedLeases = this.#dirtyLeases;
    this.#dirty = [];
    this.#dirtyLeases = new Map();
    const changes = this.#changes;
    this.#changes = [];
    for (const w of waiting) this.#unsynced.push(w);
    this.#startSync();
    if (committed.length > 0) this.#o.onCommitted?.(committed, committedLeases);
    if (changes.length > 0) this.#o.onLeasesCommitted?.(changes);
    return true;
  }

  /** Rolls back what is pending, re-reads every address lost with it, withholds `waiting`. */
  #discardPending(waiting: Pending[]): void {
    try {
      this.#o.store.rollback();
    } catch {
      // The rollback of a failed batch may itself fail; the batch is gone either way.
    }
    this.#collectDiscarded();
    const addresses = [...this.#lost.addresses, ...this.#dirty];
    this.#lost = { batches: 0, addresses: [] };
    this.#dirty = [];
    this.#dirtyLeases.clear();
    this.#changes = [];
    this.#core.resync(addresses);
    this.#fail(waiting, new StoreError("Cannot commit the lease database"));
  }

  /** Withholds the replies and rejects the commitNow() callers among `pending`. */
  #fail(pending: readonly Pending[], e: StoreError): void {
    for (const w of pending) {
      if (w.kind === "reply") this.#withhold(w.effect);
      else w.reject(e);
    }
  }

  #collectDiscarded(): void {
    const lost = this.#o.store.takeDiscarded();
    if (lost.batches === 0 && lost.addresses.length === 0) return;
    this.#lost.batches += lost.batches;
    for (const a of lost.addresses) this.#lost.addresses.push(a);
  }

  /**
   * After a write of the shell's own that nobody waited for failed (a probe, a clock-step
   * move; both start with nothing pending and after #collectDiscarded()): its batch is not one
   * any reply depends on, so only its addresses are kept for re-reading.
   */
  #collectOwnDiscard(): void {
    for (const a of this.#o.store.takeDiscarded().addresses) this.#lost.addresses.push(a);
  }

  /** Counts a reply the core decided on that will never be sent. */
  #withhold(e: ReplyEffect): void {
    const type = dhcpTypeName(getMessageType(e.message));
    this.counters.withheld[type] = (this.counters.withheld[type] ?? 0) + 1;
    // The core counted it as sent when it decided on it.
    const sent = this.#core.counters.sent;
    if ((sent[type] ?? 0) > 0) sent[type] = (sent[type] as number) - 1;
    if (this.#failing) this.#outage.withheld++;
  }

  /**
   * Resolves once every write made so far is committed and on stable storage; rejects when
   * that commit or its sync fails (a BNDACK waits for this, draft-12 §7.1.1). It joins the
   * group commit of the DHCPACKs: the writes of every BNDUPD that arrives within commitDelayMs
   * share one COMMIT and one sync with the leases of the DHCP clients.
   */
  commitNow(): Promise<void> {
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#waiting.push({ kind: "durable", resolve, reject });
    // A write of this batch already failed: no reason to wait for company before saying so.
    this.#collectDiscarded();
    if (this.#lost.batches > 0) this.flush();
    else this.#armCommit(true);
    return promise;
  }

  /**
   * Writes made outside a request (a partner's acknowledgement) join the next group commit
   * instead of committing on their own.
   */
  commitSoon(): void {
    this.#armCommit(false);
  }

  /**
   * One sync at a time, and under load at most one per SYNC_INTERVAL_MS; commits made
   * meanwhile are covered by the next one (group commit).
   */
  #startSync(): void {
    if (this.#syncing || (this.#unsynced.length === 0 && !this.#syncWanted)) return;
    const clockMs = this.#o.clockMs ?? (() => performance.now());
    const wait = this.#nextSyncAt - clockMs();
    if (wait > 0) {
      // Commits wait with it (flushWhenIdle), so that the sync covers them too.
      this.#syncing = new Promise<void>((r) => setTimeout(r, wait)).then(() => {
        this.#syncing = null;
        this.flush();
        this.#startSync();
      });
      return;
    }
    this.#nextSyncAt = clockMs() + SYNC_INTERVAL_MS;
    const batch = this.#unsynced;
    this.#unsynced = [];
    this.#syncWanted = false;
    const failuresBefore = this.#failures;
    this.#syncing = this.#o.store.sync().then(
      () => {
        if (this.#failing && this.#failures === failuresBefore) this.#recovered();
        this.#release(batch);
      },
      (e) => {
        if (!(e instanceof StoreError)) throw e;
        this.#storeFailed("Cannot sync leases to disk; withholding their acknowledgements", e);
        this.#fail(batch, e);
      },
    ).finally(() => {
      this.#syncing = null;
      if (this.#o.store.pending > 0 || this.#waiting.length > 0) this.flush();
      else this.#startSync();
    });
  }

  /**
   * Sends the replies that waited for a sync, one batch per transport (one sendmmsg for the
   * ACKs of a group commit), and resolves the commitNow() callers among them.
   */
  #release(batch: readonly Pending[]): void {
    const transports = new Set<Transport>();
    for (const w of batch) {
      if (w.kind === "reply") transports.add(w.transport);
      else w.resolve();
    }
    for (const t of transports) {
      const sendAll = () => {
        for (const w of batch) if (w.kind === "reply" && w.transport === t) this.#send(w.effect, t);
      };
      if (t.batch) t.batch(sendAll);
      else sendAll();
    }
  }

  /**
   * Records a failed write, commit or sync. The first failure of an outage is logged as an
   * error; later ones at debug, with a reminder every STORE_REMINDER_SECONDS, so that a full
   * disk yields a few lines an hour, not one per request.
   */
  #storeFailed(message: string, e: StoreError): void {
    this.counters.commitFailures++;
    this.#failures++;
    this.#lastError = e.message;
    const log = this.#o.logger;
    const mono = this.#clock.monoMs();
    if (!this.#failing) {
      this.#failing = true;
      this.#failingSince = Math.floor(this.#clock.storeNow());
      this.#outage = {
        failures: 1,
        withheld: 0,
        startedMono: mono,
        reminderAt: mono + STORE_REMINDER_SECONDS * 1000,
      };
      log.error(
        "Lease database refuses writes: withholding DHCPOFFER and DHCPACK until it accepts them again",
        { error: e.message, during: message },
      );
      return;
    }
    this.#outage.failures++;
    log.debug(message, { error: e.message });
    if (mono >= this.#outage.reminderAt) {
      this.#outage.reminderAt = mono + STORE_REMINDER_SECONDS * 1000;
      log.error("Lease database still refuses writes", {
        since: isoSeconds(this.#failingSince ?? 0),
        failures: this.#outage.failures,
        withheld: this.#outage.withheld,
        error: e.message,
      });
    }
  }

  #recovered(): void {
    this.#failing = false;
    this.#failingSince = null;
    const seconds = (this.#clock.monoMs() - this.#outage.startedMono) / 1000;
    this.#o.logger.warn("Lease database writable again", {
      after: `${Math.max(0, Math.floor(seconds))}s`,
      failures: this.#outage.failures,
      withheld: this.#outage.withheld,
    });
  }

  /**
   * While failing, with nothing else in flight: a write that changes no lease, committed and
   * then synced, so that recovery is noticed even when no client asks for a lease.
   */
  #probe(): void {
    if (!this.#writeOwn(() => this.#o.store.probe(), "Cannot write to the lease database")) return;
    this.#syncWanted = true;
    this.#startSync();
  }

  /**
   * Writes and commits a batch of the shell's own that no reply waits for (a probe, a clock-step
   * move; both start with nothing pending). On failure it is rolled back, only its addresses are
   * kept for re-reading, and the failure is recorded; returns whether the commit succeeded.
   */
  #writeOwn(write: () => void, failure: string): boolean {
    const store = this.#o.store;
    this.#collectDiscarded();
    try {
      write();
      store.commit();
      return true;
    } catch (e) {
      if (!(e instanceof StoreError)) throw e;
      try {
        store.rollback();
      } catch {
        // Already rolled back.
      }
      this.#collectOwnDiscard();
      this.#storeFailed(failure, e);
      return false;
    }
  }

  /**
   * The wall clock stepped by `delta` seconds: every stored time moves by the step (one
   * UPDATE), so that each lease keeps the time it had left and the stored times agree with
   * the system clock again; the core's timeline does not move (lib/server/clock.ts).
   */
  #applyClockStep(delta: number): void {
    const clock = this.#clock;
    if (this.#stepLogged !== delta) {
      this.#stepLogged = delta;
      this.#o.logger.warn("System clock stepped: moving every lease time by the step", {
        step: `${delta > 0 ? "+" : ""}${delta}s`,
        clock: isoSeconds(clock.wall()),
        expected: isoSeconds(clock.storeNow()),
      });
    }
    // What is pending was written on the old timeline: commit it first, then move it along.
    if (!this.flush()) return;
    const moved = this.#writeOwn(
      () => this.#o.store.shiftTimes(delta),
      "Cannot move the lease times after a clock step; retrying",
    );
    if (!moved) return;
    clock.applyStep(delta);
    this.#stepLogged = null;
    this.#o.onClockStep?.(delta);
    // Later ACKs wait for a sync, and that sync covers this commit too.
    this.#syncWanted = true;
    this.#startSync();
  }

  #observeLatency(ms: number): void {
    this.counters.commitLatencySumMs += ms;
    for (const b of LATENCY_BOUNDS) {
      if (ms <= b) {
        this.counters.commitLatencyMs.set(b, (this.counters.commitLatencyMs.get(b) ?? 0) + 1);
        break;
      }
    }
  }

  /**
   * Runs effects the core produced outside a request (pool balancing) and commits them; the
   * committed addresses reach onCommitted like any other lease change.
   */
  apply(effects: DhcpEffect[]): void {
    if (effects.length === 0) return;
    this.#run(effects, null);
    this.flush();
  }

  /**
   * Runs every tickSeconds: applies a wall-clock step if there was one, then expires offers
   * and leases; while the database is failing it probes it instead.
   */
  tick(): void {
    const step = this.#clock.pendingStep();
    if (step !== 0) this.#applyClockStep(step);
    if (this.#failing) {
      // Expiry waits for the database: nothing is granted meanwhile.
      if (this.#syncing === null && this.#o.store.pending === 0 && this.#waiting.length === 0) {
        this.#probe();
      }
      return;
    }
    const effects = this.#core.tick(Math.floor(this.#clock.now()));
    if (effects.length > 0) {
      this.#run(effects, null);
      this.flush();
    }
  }
}

/** Epoch seconds as ISO 8601 UTC without milliseconds. */
function isoSeconds(t: number): string {
  return new Date(Math.floor(t) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}
